"""The workflow's job plan is a reviewed artifact: a change to any job (rule, wildcards, inputs,
outputs, params as Snakemake records them, threads, resources) fails this test until the snapshot
is renewed on purpose.

Two cohorts: the demo cohort (`hccrad synth --seed 42`, as `make demo` writes it) and a generated
2,000-patient x 3-phase MR sheet (tests/bench/bench_dryrun.py). The plan is dumped by
tests/plan_dump.py in a fresh process; temporary folders are written as ``<cohort>``.

To renew after an intended change, run
``UPDATE_PLAN_SNAPSHOT=1 .venv/bin/python -m pytest tests/test_plan_snapshot.py`` and commit
tests/data/plan_snapshot.json with a message that says what changed in the plan and why; for the
job-by-job differences, dump both plans with tests/plan_dump.py and compare them.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hccrad.synth import write_cohort

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "tests" / "data" / "plan_snapshot.json"
sys.path.insert(0, str(ROOT / "tests" / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from bench_dryrun import write_sheets  # noqa: E402 (tests/bench is not a package)
from plan_dump import plan_digest  # noqa: E402 (tests/ is not a package)


def dump_plan(work: Path, cohort: Path, clinical: Path, alias: Path) -> list[dict]:
    out = work / "plan.json"
    cmd = [
        sys.executable,
        str(ROOT / "tests" / "plan_dump.py"),
        "--workdir",
        str(work / "run"),
        "--config",
        f"cohort={cohort}",
        f"clinical={clinical}",
        "--out",
        str(out),
        "--alias",
        f"{alias}=<cohort>",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-4000:]
    return json.loads(out.read_text())


def summary(jobs: list[dict]) -> dict:
    return {
        "jobs": len(jobs),
        "rules": dict(sorted(collections.Counter(j["rule"] for j in jobs).items())),
        "sha256": plan_digest(jobs),
    }


def check(name: str, jobs: list[dict]) -> None:
    got = summary(jobs)
    recorded = json.loads(SNAPSHOT.read_text()) if SNAPSHOT.exists() else {}
    if os.environ.get("UPDATE_PLAN_SNAPSHOT"):
        recorded[name] = got
        SNAPSHOT.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
        return
    want = recorded.get(name)
    assert want is not None, f"no recorded plan for {name}: see this module's docstring"
    assert got["rules"] == want["rules"], f"{name}: jobs per rule changed"
    assert got["sha256"] == want["sha256"], (
        f"{name}: the plan changed (same jobs per rule, other wildcards, files, params, threads "
        "or resources); renew the snapshot only if that was intended (module docstring)"
    )


def test_the_demo_cohort_plan_is_unchanged(tmp_path: Path) -> None:
    cohort = tmp_path / "demo"
    write_cohort(cohort, seed=42)
    jobs = dump_plan(tmp_path, cohort / "cohort.tsv", cohort / "clinical.tsv", cohort)
    check("demo", jobs)


@pytest.mark.parametrize("patients", [2000])
def test_the_large_cohort_plan_is_unchanged(tmp_path: Path, patients: int) -> None:
    sheets = tmp_path / "sheets"
    cohort, clinical = write_sheets(sheets, patients, ["AP", "PVP", "HBP"])
    jobs = dump_plan(tmp_path, cohort, clinical, sheets)
    check(f"mr_{patients}x3", jobs)
