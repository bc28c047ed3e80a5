"""The workflow's job plan is a reviewed artifact: a change to any job (rule, wildcards, inputs,
outputs, params as Snakemake records them, threads, resources) fails this test until the snapshot
is renewed on purpose.

Two cohorts: the demo cohort (`hccrad synth --seed 42 --patients 96`, as `make demo` writes it,
with the demo overlay config/demo.yaml as `make demo` runs it) and a generated 2,000-patient x
3-phase MR sheet (tests/bench/bench_dryrun.py; full scale, no overlay). The plan is dumped by
tests/plan_dump.py in a fresh process; temporary folders are written as ``<cohort>``. Without
the overlay the demo cohort plans the papers' full-scale models.

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

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "tests" / "data" / "plan_snapshot.json"
sys.path.insert(0, str(ROOT / "tests" / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from bench_dryrun import write_sheets  # noqa: E402 (tests/bench is not a package)
from plan_dump import plan_digest  # noqa: E402 (tests/ is not a package)

from conftest import DEMO_PATIENTS  # noqa: E402 (the demo_cohort fixture's size)

DEMO_OVERLAY = ROOT / "config" / "demo.yaml"


def dump_plan(
    work: Path, cohort: Path, clinical: Path, alias: Path, overlay: Path | None = None
) -> list[dict]:
    out = work / "plan.json"
    cmd = [
        sys.executable,
        str(ROOT / "tests" / "plan_dump.py"),
        "--workdir",
        str(work / "run"),
        "--config",
        f"cohort={cohort}",
        f"clinical={clinical}",
        *([f"overlay={overlay}"] if overlay else []),
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


def test_the_demo_cohort_is_the_makefiles() -> None:
    """This module plans the cohort `make demo` writes (its size is the Makefile's)."""
    import re

    found = re.search(r"^DEMO_PATIENTS := (\d+)$", (ROOT / "Makefile").read_text(), re.M)
    assert found and int(found.group(1)) == DEMO_PATIENTS


def test_the_demo_cohort_plan_is_unchanged(demo_cohort: Path, tmp_path: Path) -> None:
    sheets = (demo_cohort / "cohort.tsv", demo_cohort / "clinical.tsv")
    jobs = dump_plan(tmp_path, *sheets, demo_cohort, DEMO_OVERLAY)
    check("demo", jobs)


def _train_params(jobs: list[dict]) -> dict[str, dict]:
    """{study/model: the training job's spec} (params as Snakemake records them: reprs)."""
    import ast

    return {
        f"{j['wildcards']['study']}/{j['wildcards']['model']}": ast.literal_eval(
            j["params"]["spec"]
        )
        for j in jobs
        if j["rule"] == "train_deep_model"
    }


def test_without_the_overlay_the_demo_plans_the_full_scale_models(
    demo_cohort: Path, tmp_path: Path
) -> None:
    from hccrad.deep.train_config import STUDY_PRESETS

    sheets = (demo_cohort / "cohort.tsv", demo_cohort / "clinical.tsv")
    full = dump_plan(tmp_path / "full", *sheets, demo_cohort)
    demo = dump_plan(tmp_path / "demo", *sheets, demo_cohort, DEMO_OVERLAY)
    # the same jobs, but for the extractions with the studies' own radiomics parameter files
    # (the demo reads its light preset for every study: radiomics.study_params false)
    own_files = (
        "extract_study_radiomics",
        "aggregate_study_radiomics",
        "compute_study_reader_icc",
        "compute_study_reader_icc_intra",
    )
    assert not [j for j in demo if j["rule"] in own_files]
    assert [j["rule"] for j in full if j["rule"] not in own_files] == [j["rule"] for j in demo]
    full_train, demo_train = _train_params(full), _train_params(demo)
    assert set(full_train) == set(demo_train) and full_train
    for name, spec in full_train.items():
        # the paper's training (its preset, and the study file's own values): full length
        epochs = {**STUDY_PRESETS[spec["preset"]], **spec.get("train", {})}["epochs"]
        assert epochs >= 50, name
        assert demo_train[name]["train"]["epochs"] <= 20  # the demo's CPU-sized training
    sizes = {
        j["wildcards"]["patient"]: ast_sizes(j["params"]["deep_inputs"])
        for j in full
        if j["rule"] == "preprocess_patient"
    }
    seen = {name: size for per in sizes.values() for name, size in per.items()}
    assert seen == {
        "habitat_slices": 224,
        "habitat_tumor_cube": 96,
        "mvi_tumor_cube": 64,
        "mvi_ring_cube": 64,
        "er_stack": 256,
        "mil_slices": 224,
    }
    summary = next(j for j in demo if j["rule"] == "summarize_results")
    assert "scaled" in summary["output"] and "'reason'" in summary["params"]["overlay"]
    assert summary["params"]["overlay"].count("'key':") > 20  # every changed value listed
    full_summary = next(j for j in full if j["rule"] == "summarize_results")
    assert "scaled" not in full_summary["output"] and full_summary["params"]["overlay"] == "None"


def ast_sizes(deep_inputs: str) -> dict[str, int]:
    import ast

    return {name: spec["size"] for name, spec in ast.literal_eval(deep_inputs).items()}


@pytest.mark.parametrize("patients", [2000])
def test_the_large_cohort_plan_is_unchanged(tmp_path: Path, patients: int) -> None:
    sheets = tmp_path / "sheets"
    cohort, clinical = write_sheets(sheets, patients, ["AP", "PVP", "HBP"])
    jobs = dump_plan(tmp_path, cohort, clinical, sheets)
    check(f"mr_{patients}x3", jobs)
