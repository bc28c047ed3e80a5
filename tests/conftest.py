"""Shared test helpers: paths, the real-data folder and a Snakemake runner."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
#: The demo overlay (CPU-sized networks, inputs and radiomics): every workflow test runs with it.
DEMO_OVERLAY = ROOT / "config" / "demo.yaml"


def shared_data(name: str) -> Path:
    """A folder of ``../shared/data``; skips the test with a reason when it is absent, and
    fails it in CI (``CI=true``), where the folder is always there."""
    path = SHARED_DATA / name
    if not path.exists():
        why = f"real test data {path} not present (only in the project's shared folder)"
        if os.environ.get("CI") == "true":  # CI has the shared folder: its absence is a failure
            pytest.fail(why)
        pytest.skip(why)
    return path


def snakemake_command(workdir: Path, cohort: Path, clinical: Path, *args: str) -> list[str]:
    """The command that runs the workflow of this checkout in ``workdir`` on the given sheets."""
    return [
        str(SNAKEMAKE),
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(ROOT / "config" / "config.yaml"),
        "--config",
        f"cohort={cohort}",
        f"clinical={clinical}",
        f"overlay={DEMO_OVERLAY}",
        *args,
    ]


def run_snakemake(
    workdir: Path, *args: str, cohort: Path, clinical: Path, timeout: int = 900
) -> subprocess.CompletedProcess:
    """Run the workflow of this checkout in ``workdir`` on the given sheets."""
    cmd = snakemake_command(
        workdir,
        cohort,
        clinical,
        # as the local profile (config/profiles/local)
        "--scheduler",
        "greedy",
        "--max-jobs-per-timespan",
        "10000/60s",
        *args,
    )
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def job_counts(output: str) -> dict[str, int]:
    """Parse the 'Job stats' table Snakemake prints for a (dry) run into {rule: count}."""
    counts: dict[str, int] = {}
    lines = output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("Job stats:"))
    except StopIteration:
        return counts
    for line in lines[start + 3 :]:
        m = re.match(r"^(\S+)\s+(\d+)\s*$", line)
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    return counts


def without_deep_tables(raw: dict, primary: str, keep: tuple[str, ...] = ()) -> dict:
    """A study file's dict without its ``table`` blocks (the deep networks' feature tables)
    other than ``keep``, the models reading them, training a network end to end (``head.
    backbone``) or pooling / stacking those models, its deep
    networks, its key comparison and published results; ``primary`` becomes the primary model
    (and the survival / explained / nomogram model where those were dropped; a pathology
    correlation of a dropped model is left out)."""
    raw = dict(raw)
    deep = {b for b, v in raw["blocks"].items() if v["source"] == "table" and b not in keep}
    drop = {  # and the models that train a (dropped) network end to end
        n
        for n, m in raw["models"].items()
        if set(m.get("blocks", ())) & deep or (m.get("head") or {}).get("backbone")
    }
    while True:
        uses = {n: {*m.get("pool", ()), *m.get("scores", ()), *m.get("models", ())}
                for n, m in raw["models"].items()}  # fmt: skip
        more = {n for n, u in uses.items() if n not in drop and u & drop}
        if not more:
            break
        drop |= more
    raw["models"] = {n: m for n, m in raw["models"].items() if n not in drop}
    raw["blocks"] = {b: v for b, v in raw["blocks"].items() if b not in deep}
    raw["comparisons"] = [c for c in raw.get("comparisons", []) if not set(c) & drop]
    assert primary in raw["models"], (primary, sorted(raw["models"]))
    raw["primary"] = primary
    for key in ("explain", "nomogram"):
        if raw.get(key) in drop:
            raw[key] = None
    survival = raw.get("survival")
    if isinstance(survival, dict) and survival.get("model") in drop:
        raw["survival"] = {**survival, "model": primary}
    if (raw.get("pathology") or {}).get("model") in drop:
        raw.pop("pathology")  # its model reads a dropped table
    for key in ("deep_models", "key_comparison", "published"):
        raw.pop(key, None)
    return raw


@pytest.fixture(scope="session")
def cohort_dir(tmp_path_factory) -> Path:
    from hccrad.synth import write_cohort

    out = tmp_path_factory.mktemp("tiny") / "cohort"
    write_cohort(out, seed=7, n_patients=3, modality="both")
    return out


#: Patients per modality of the demo cohort (the Makefile's DEMO_PATIENTS).
DEMO_PATIENTS = 96


@pytest.fixture(scope="session")
def demo_cohort(tmp_path_factory) -> Path:
    """The cohort `make demo` writes (seed 42, 96 patients per modality), written once per
    session (about 4 minutes on 2 cores): the plan snapshot plans it, the science test runs its
    MR patients. Read-only."""
    from hccrad.synth import write_cohort

    out = tmp_path_factory.mktemp("demo") / "cohort"
    write_cohort(out, seed=42, n_patients=DEMO_PATIENTS)
    return out


def write_sheets(cohort_dir: Path, dest: Path, *, centers=None, edit=None) -> tuple[Path, Path]:
    """Write (a subset of) the tiny cohort's sheets into ``dest`` with absolute paths."""
    dest.mkdir(parents=True, exist_ok=True)
    sheet = pd.read_csv(cohort_dir / "cohort.tsv", sep="\t", dtype=str, keep_default_na=False)
    clinical = pd.read_csv(cohort_dir / "clinical.tsv", sep="\t", dtype=str, keep_default_na=False)
    for col in ("image", "tumor_mask", "liver_mask", "reader2_mask", "reader1_repeat_mask"):
        sheet[col] = [str(cohort_dir / v) if v else "" for v in sheet[col]]
    if centers is not None:
        sheet = sheet[sheet["center"].isin(centers)]
        clinical = clinical[clinical["patient"].isin(set(sheet["patient"]))]
    if edit is not None:
        sheet, clinical = edit(sheet, clinical)
    sheet.to_csv(dest / "cohort.tsv", sep="\t", index=False)
    clinical.to_csv(dest / "clinical.tsv", sep="\t", index=False)
    return dest / "cohort.tsv", dest / "clinical.tsv"


@pytest.fixture(scope="session", autouse=True)
def slurm_head_start(request, tmp_path_factory):
    """When the session runs the slurm tests (as root: ``make test``), their first SLURM run
    starts now in the background (test_slurm.FirstRun) and the slurm tests wait for it; else
    None. Its wall time is mostly SLURM's submission and polling latency."""
    if os.geteuid() != 0 or not any(i.get_closest_marker("slurm") for i in request.session.items):
        return None
    import test_slurm

    cohort_dir = request.getfixturevalue("cohort_dir")
    return test_slurm.FirstRun(cohort_dir, tmp_path_factory.mktemp("slurm"))


# wall seconds of the session's shared runs, by fixture name (reported by the SLURM tests)
RUN_SECONDS: dict[str, float] = {}


@pytest.fixture(scope="session")
def ab_run(cohort_dir, tmp_path_factory) -> Path:
    """The whole workflow run once with ``--cores 2`` on centers A and B of the tiny cohort
    (sheets in ``sheets/``). Shared, read-only: the workflow tests inspect it and the SLURM
    tests compare their runs with it; a test that changes a run works on a copy."""
    work = tmp_path_factory.mktemp("run")
    cohort, clinical = write_sheets(cohort_dir, work / "sheets", centers=["A", "B"])
    t0 = time.perf_counter()
    res = run_snakemake(work, "--cores", "2", cohort=cohort, clinical=clinical)
    RUN_SECONDS["ab_run"] = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr[-4000:]
    return work
