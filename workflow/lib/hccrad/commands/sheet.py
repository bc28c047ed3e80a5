"""``hccrad sheet``: a cohort sheet (and a report) from a DICOM tree."""

from __future__ import annotations

import argparse

from hccrad.dicomsheet import build_sheet, default_phase_map_text
from hccrad.errors import InputError


def run_sheet(args: argparse.Namespace) -> int:
    """Build a cohort sheet from a DICOM tree (``hccrad sheet``)."""
    if args.print_phase_map:
        print(default_phase_map_text(), end="")
        return 0
    if args.dicom_root is None or args.out is None:
        raise InputError("hccrad sheet needs DICOM_ROOT and --out (or --print-phase-map)")
    result = build_sheet(
        args.dicom_root,
        args.out,
        phase_map=args.phase_map,
        center=args.center,
        min_slices=args.min_slices,
    )
    print(result.summary())
    return 0
