"""The ``hccrad`` command line.

``hccrad synth``     write the embedded synthetic multi-center demo cohort
``hccrad voxelmaps`` voxel-level radiomics feature maps of one image and mask
``hccrad validate``  check a configuration, its cohort sheet and clinical table (what the workflow
                     checks before any job runs), then print the plan: patients per stage, deep
                     inputs and models, studies and the skipped ones with the reason
``hccrad sheet``     a cohort sheet (and a report) from a DICOM tree; docs/dicom_sheet.md
``hccrad ibsi``      one IBSI-1 configuration (CT phantom A-E, digital phantom) through the
                     project's IBSI processing and extraction: ``tag``/``value`` rows; docs/ibsi1.md
``hccrad audit``     audit a run (``run``), compare two runs (``compare``), search outputs for DICOM
                     identifiers (``privacy``); docs/audit.md

This module only parses arguments; each command runs from its own module of
:mod:`hccrad.commands`, imported when that command runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hccrad import __version__, commands
from hccrad.errors import HccradError

log = logging.getLogger("hccrad")


def _add_sheet(sub: Any) -> None:
    """The ``sheet`` subcommand."""
    p = sub.add_parser(
        "sheet",
        help="build a cohort sheet from a DICOM tree (docs/dicom_sheet.md)",
        description="Scan a DICOM tree (headers only), place CT/MR series as phases, attach "
        "DICOM SEG / RTSTRUCT masks, and write the cohort sheet and <out stem>.report.tsv "
        "(every series, object and other file with what happened to it).",
    )
    p.add_argument(
        "dicom_root", type=Path, nargs="?", metavar="DICOM_ROOT", help="top of the DICOM tree"
    )
    p.add_argument("--out", type=Path, metavar="SHEET", help="cohort sheet to write (TSV)")
    p.add_argument(
        "--phase-map", type=Path, help="phase map YAML (default: the one --print-phase-map shows)"
    )
    p.add_argument("--center", help="center of every patient (default: InstitutionName)")
    p.add_argument(
        "--min-slices", type=int, default=5, help="skip series with fewer images (default 5)"
    )
    p.add_argument(
        "--print-phase-map", action="store_true", help="print the default phase map and exit"
    )
    p.set_defaults(handler="run_sheet")


def _add_synth(sub: Any) -> None:
    """The ``synth`` subcommand."""
    p = sub.add_parser("synth", help="write the synthetic multi-center demo cohort")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.add_argument("--patients", type=int, default=48, help="patients per modality (default 48)")
    p.add_argument("--modality", choices=["MR", "CT", "both"], default="both", help="default: both")
    p.add_argument(
        "--null",
        action="store_true",
        help="permute labels and survival across patients (shows what chance looks like)",
    )
    p.set_defaults(handler="run_synth")


def _add_voxelmaps(sub: Any) -> None:
    """The ``voxelmaps`` subcommand."""
    p = sub.add_parser("voxelmaps", help="voxel-level radiomics feature maps of one image and mask")
    p.add_argument("image", type=Path, help="image (NIfTI, NRRD or DICOM series folder)")
    p.add_argument("mask", type=Path, help="mask in the image's geometry (non-zero = ROI)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--kernel-radius", type=int, default=2, help="default 2 (5x5x5 kernel)")
    binning = p.add_mutually_exclusive_group()
    binning.add_argument("--bin-width", type=float, help="fixed bin width (default 25)")
    binning.add_argument("--bin-count", type=int, help="fixed number of bins")
    p.add_argument(
        "--classes", nargs="+", help="feature classes (default: all the fast engine implements)"
    )
    p.add_argument(
        "--engine", choices=["fast", "pyradiomics"], default="fast", help="default: fast"
    )
    p.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="fast engine: worker processes (default: all CPUs this process may use; results "
        "do not depend on it)",
    )
    p.set_defaults(handler="run_voxelmaps")


def _add_validate(sub: Any) -> None:
    """The ``validate`` subcommand."""
    p = sub.add_parser(
        "validate", help="validate a config with its cohort sheet and clinical table"
    )
    p.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    p.add_argument("--cohort", help="cohort sheet (overrides the config's)")
    p.add_argument("--clinical", help="clinical table (overrides the config's)")
    p.add_argument(
        "--overlay", help="a configuration overlay, e.g. config/demo.yaml (overrides the config's)"
    )
    p.add_argument("--no-file-check", action="store_true", help="do not check that files exist")
    p.set_defaults(handler="run_validate")


def _add_ibsi(sub: Any) -> None:
    """The ``ibsi`` subcommand."""
    p = sub.add_parser(
        "ibsi",
        help="one IBSI-1 configuration through the project's processing (docs/ibsi1.md)",
        description="Process IMAGE and MASK as IBSI-1's configuration says (grid centred on the "
        "original, interpolation, rounding, mask threshold 0.5, re-segmentation, binning from "
        "the range's lower bound), extract with PyRadiomics and write one row per IBSI tag "
        "(tag, value) in IBSI's conventions (excess kurtosis; aggregation as the tag says).",
    )
    p.add_argument("image", type=Path, metavar="IMAGE", help="image (NIfTI, NRRD)")
    p.add_argument("mask", type=Path, metavar="MASK", help="ROI mask (non-zero = ROI)")
    p.add_argument(
        "--config",
        required=True,
        choices=["A", "B", "C", "D", "E", "phantom"],
        help="IBSI-1 CT phantom configuration, or 'phantom' (digital phantom: no processing)",
    )
    p.add_argument("--out", type=Path, required=True, metavar="FILE.tsv", help="output table")
    p.add_argument(
        "--check",
        action="store_true",
        help="also compare with IBSI's reference values (<out stem>.check.tsv; CT configs only)",
    )
    p.add_argument(
        "--reference", type=Path, help="reference CSV for --check (default: the shipped one)"
    )
    p.set_defaults(handler="run_ibsi")


def _add_audit(sub: Any) -> None:
    """The ``audit`` subcommands (run, compare, privacy)."""
    p = sub.add_parser("audit", help="reproducibility and privacy audit of a run (docs/audit.md)")
    audit = p.add_subparsers(dest="audit_command", required=True)
    a = audit.add_parser("run", help="write results/cohort/audit/ for a finished run")
    a.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    a.add_argument("--results", type=Path, default=Path("results"), help="default: results")
    a.add_argument("--cohort", help="cohort sheet (overrides the config's)")
    a.add_argument("--clinical", help="clinical table (overrides the config's)")
    a.set_defaults(handler="run_audit_run")
    a = audit.add_parser(
        "compare",
        help="compare two runs file by file; exit status 1 when they differ",
        description="Compare two results folders (or working directories holding results/): "
        "tables value for value, images voxel for voxel, figures pixel for pixel, other files "
        "by hash. Logs, benchmarks and the audit manifest are not compared.",
    )
    a.add_argument("run_a", type=Path, help="first results folder")
    a.add_argument("run_b", type=Path, help="second results folder")
    a.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0)")
    a.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")
    a.add_argument(
        "--ignore-key",
        action="append",
        metavar="PATTERN",
        help="JSON key (fnmatch pattern) not compared; repeatable (timings are always ignored)",
    )
    a.add_argument("--out", type=Path, help="also write the differences as TSV")
    a.set_defaults(handler="run_audit_compare")
    a = audit.add_parser(
        "privacy",
        help="search outputs for the DICOM identifiers of the inputs; exit status 1 when found",
    )
    a.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    a.add_argument("--cohort", help="cohort sheet (overrides the config's)")
    a.add_argument(
        "--scan",
        type=Path,
        action="append",
        metavar="PATH",
        help="folder or file to search (repeatable; default: results)",
    )
    a.set_defaults(handler="run_audit_privacy")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``hccrad`` command."""
    parser = argparse.ArgumentParser(prog="hccrad", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"hccrad {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    for add in (_add_synth, _add_voxelmaps, _add_validate, _add_sheet, _add_ibsi, _add_audit):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hccrad`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        # each subcommand's module (and what it imports) loads only when that command runs
        return int(getattr(commands, args.handler)(args))
    except HccradError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
