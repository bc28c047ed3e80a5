"""``hccrad synth``: write the synthetic multi-center demo cohort."""

from __future__ import annotations

import argparse
import logging

from hccrad.synth import write_cohort

log = logging.getLogger("hccrad")


def run_synth(args: argparse.Namespace) -> int:
    """Write the demo cohort (``hccrad synth``)."""
    paths = write_cohort(
        args.out,
        seed=args.seed,
        n_patients=args.patients,
        modality=args.modality,
        null=args.null,
    )
    for name, path in paths.items():
        log.info("%s: %s", name, path)
    return 0
