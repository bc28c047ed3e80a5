"""Every output path of the workflow, built by one set of helpers.

Per-image outputs live under ``results/{center}/{patient}/{phase}/{stage}/``, per-patient outputs
(all phases together) under ``results/{center}/{patient}/{stage}/``, cohort outputs under
``results/cohort/{stage}/``, logs under ``results/logs/{rule}/`` and benchmarks under
``results/benchmarks/{rule}/``. Arguments left at their defaults stay Snakemake wildcards.
"""

from __future__ import annotations

RESULTS = "results"
CENTER, PATIENT, PHASE = "{center}", "{patient}", "{phase}"


def image_path(
    stage: str,
    name: str,
    *,
    center: str = CENTER,
    patient: str = PATIENT,
    phase: str = PHASE,
    root: str = RESULTS,
) -> str:
    """Path of a per-image output, e.g. ``results/A/AMR001/AP/n4/image.nii.gz``."""
    return f"{root}/{center}/{patient}/{phase}/{stage}/{name}"


def patient_path(
    stage: str, name: str, *, center: str = CENTER, patient: str = PATIENT, root: str = RESULTS
) -> str:
    """Path of a per-patient output, e.g. ``results/A/AMR001/qc/qc.png``."""
    return f"{root}/{center}/{patient}/{stage}/{name}"


def cohort_path(stage: str, name: str, *, root: str = RESULTS) -> str:
    """Path of a cohort-level output, e.g. ``results/cohort/preprocess/summary.parquet``."""
    return f"{root}/cohort/{stage}/{name}"


def log_path(rule: str, *parts: str, root: str = RESULTS) -> str:
    """Log file of one job: ``results/logs/{rule}/{part}/.../{last}.log``."""
    tail = "/".join(parts) if parts else "all"
    return f"{root}/logs/{rule}/{tail}.log"


def benchmark_path(rule: str, *parts: str, root: str = RESULTS) -> str:
    """Benchmark file of one job: ``results/benchmarks/{rule}/{part}/.../{last}.tsv``."""
    tail = "/".join(parts) if parts else "all"
    return f"{root}/benchmarks/{rule}/{tail}.tsv"
