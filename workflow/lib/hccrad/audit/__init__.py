"""Multi-center reproducibility audit and privacy check of a run (``docs/audit.md``).

One concept per module:

* :mod:`~hccrad.audit.manifest` — provenance: hashes of inputs and outputs, package versions,
  config hash, seeds, git commit;
* :mod:`~hccrad.audit.compare` — rerun-and-compare of two results folders;
* :mod:`~hccrad.audit.drift` — per-center feature drift (standardised mean differences);
* :mod:`~hccrad.audit.reproducibility` — reader-ICC summary;
* :mod:`~hccrad.audit.planted` — planted-signal recovery on the synthetic cohort;
* :mod:`~hccrad.audit.checklist` — TRIPOD+AI / CLAIM / METRICS evidence;
* :mod:`~hccrad.audit.privacy` — search of every output for the DICOM identifiers of the inputs;
* :mod:`~hccrad.audit.run` — the audit of one run (the workflow's ``audit`` rule).
"""

from __future__ import annotations

from hccrad.audit.compare import CompareResult, Difference, compare_runs
from hccrad.audit.drift import center_drift, drift_summary, standardized_mean_difference
from hccrad.audit.privacy import Hit, dicom_identifiers, scan_tree
from hccrad.audit.run import (
    AUDIT_OUTPUTS,
    AuditInputs,
    AuditOptions,
    PrivacyError,
    audit_from_config,
    run_audit,
    run_audit_job,
)

__all__ = [
    "AUDIT_OUTPUTS",
    "AuditInputs",
    "AuditOptions",
    "CompareResult",
    "Difference",
    "Hit",
    "PrivacyError",
    "audit_from_config",
    "center_drift",
    "compare_runs",
    "dicom_identifiers",
    "drift_summary",
    "run_audit",
    "run_audit_job",
    "scan_tree",
    "standardized_mean_difference",
]
