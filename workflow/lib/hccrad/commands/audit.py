"""``hccrad audit run|compare|privacy``: audit a run, compare two runs, search for identifiers."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from hccrad.audit import audit_from_config, compare_runs
from hccrad.audit.compare import DEFAULT_IGNORED_KEYS
from hccrad.audit.privacy import privacy_table, scan_paths, sheet_identifiers
from hccrad.config import load_settings
from hccrad.fileio import write_tsv

log = logging.getLogger("hccrad")


def run_audit_run(args: argparse.Namespace) -> int:
    """Audit a finished run (``hccrad audit run``)."""
    summary = audit_from_config(
        args.config, args.results, cohort=args.cohort, clinical=args.clinical
    )
    log.info("audit written to %s", Path(args.results) / "cohort" / "audit")
    for name, text in summary["checklist"].items():
        log.info("%s: %s", name, text)
    return 0


def run_audit_compare(args: argparse.Namespace) -> int:
    """Compare two runs (``hccrad audit compare``); 1 when they differ."""
    result = compare_runs(
        args.run_a,
        args.run_b,
        rtol=args.rtol,
        atol=args.atol,
        ignore_keys=(*DEFAULT_IGNORED_KEYS, *(args.ignore_key or [])),
    )
    print(result.report())
    if args.out is not None:
        write_tsv(result.to_frame(), args.out)
    return 0 if result.identical else 1


def run_audit_privacy(args: argparse.Namespace) -> int:
    """Search outputs for DICOM identifiers (``hccrad audit privacy``); 1 when found."""
    settings = load_settings(args.config, cohort=args.cohort)
    identifiers = sheet_identifiers(settings.cohort)
    hits, n = scan_paths(args.scan or [Path("results")], identifiers)
    print(f"searched {n} files")
    print(privacy_table(identifiers, hits).to_string(index=False))
    for h in hits:
        print(f"FOUND {h.tag} in {h.file} ({h.where})")
    return 1 if hits else 0
