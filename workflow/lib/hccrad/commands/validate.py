"""``hccrad validate``: check a configuration, its sheet and clinical table; print the plan."""

from __future__ import annotations

import argparse
import logging

from hccrad.config import load_settings, project_file
from hccrad.plan import CohortPlan
from hccrad.sheets import load_cohort
from hccrad.studies import load_studies

log = logging.getLogger("hccrad")


def run_validate(args: argparse.Namespace) -> int:
    """Validate a configuration and print its plan (``hccrad validate``)."""
    settings = load_settings(
        args.config, cohort=args.cohort, clinical=args.clinical, overlay=args.overlay
    )
    cohort = load_cohort(settings, check_files=not args.no_file_check)
    by_center: dict[str, int] = {}
    for p in cohort.patients:
        by_center[cohort.center(p)] = by_center.get(cohort.center(p), 0) + 1
    centers = ", ".join(f"{c}: {n}" for c, n in sorted(by_center.items()))
    log.info("ok: %d patients, %d images (%s)", len(cohort.patients), len(cohort.records), centers)
    for patient, reasons in cohort.excluded.items():
        log.warning("excluded %s: %s", patient, "; ".join(reasons))
    studies = load_studies(
        [project_file(f) for f in settings.studies], settings.overlay, check_estimators=False
    )
    print(format_plan(CohortPlan(settings, cohort, studies).summary()))
    return 0


def format_plan(summary: dict[str, object], indent: str = "") -> str:
    """The plan summary (:meth:`hccrad.plan.CohortPlan.summary`) as indented text lines."""
    lines = []
    for key, value in summary.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:" + ("" if value else " none"))
            lines.extend(
                f"{indent}  {k}: {v}" if not isinstance(v, dict) else format_plan(v, indent + "  ")
                for k, v in value.items()
            )
        else:
            lines.append(f"{indent}{key}: {value}")
    return "\n".join(lines)
