"""Benchmark: the dry run of a generated large cohort (default 2,000 patients x 3 MR phases).

Run on demand (not part of the test suite):

    .venv/bin/python tests/bench/bench_dryrun.py [--patients 2000] [--phases AP PVP HBP]
        [--workdir DIR] [--profile config/profiles/slurm ...]

The sheet's files are empty placeholders: the sheet checks only test that files exist, and a dry
run reads no image. Every phase has a tumor and a liver mask, every fifth patient a second
reader's mask; patients are spread over four centers. Prints a Markdown table for
docs/benchmarks.md: the wall time of `snakemake -n` (which loads and validates the sheets and
builds the whole DAG) without a profile and with each given profile, and the planned job count.
Target: <= 30 s for 2,000 patients x 3 phases.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
CENTERS = ("A", "B", "C", "D")


def write_sheets(out: Path, n_patients: int, phases: list[str]) -> tuple[Path, Path]:
    """A cohort sheet and clinical table of MR patients with placeholder image and mask files."""
    files = out / "files"
    rows, clinical = [], []
    for i in range(n_patients):
        center = CENTERS[i % len(CENTERS)]
        patient = f"{center}P{i:05d}"
        folder = files / patient
        folder.mkdir(parents=True, exist_ok=True)
        for phase in phases:
            paths = {
                "image": folder / f"{phase}.nii.gz",
                "tumor_mask": folder / f"{phase}_tumor.nii.gz",
                "liver_mask": folder / f"{phase}_liver.nii.gz",
                "reader2_mask": folder / f"{phase}_tumor_reader2.nii.gz" if i % 5 == 0 else None,
                # reader 1's repeat outline for the same patients (the intra-observer ICC that
                # er_fusion's ICC step needs), as the synthetic cohort gives it
                "reader1_repeat_mask": (
                    folder / f"{phase}_tumor_reader1_repeat.nii.gz" if i % 5 == 0 else None
                ),
            }
            for p in paths.values():
                if p is not None:
                    p.touch()
            rows.append(
                {
                    "center": center,
                    "patient": patient,
                    "phase": phase,
                    "modality": "MR",
                    **{k: str(v) if v else "" for k, v in paths.items()},
                }
            )
        clinical.append({"patient": patient, "center": center, "modality": "MR"})
    cohort, table = out / "cohort.tsv", out / "clinical.tsv"
    pd.DataFrame(rows).to_csv(cohort, sep="\t", index=False)
    pd.DataFrame(clinical).to_csv(table, sep="\t", index=False)
    return cohort, table


def dry_run(work: Path, cohort: Path, clinical: Path, profile: str | None) -> tuple[float, int]:
    cmd = [
        str(SNAKEMAKE),
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(ROOT / "config" / "config.yaml"),
        "--config",
        f"cohort={cohort}",
        f"clinical={clinical}",
        "-n",
    ]
    cmd += ["--profile", profile] if profile else ["--cores", "1", "--scheduler", "greedy"]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"dry run failed ({profile or 'no profile'}):\n{res.stderr[-4000:]}")
    m = re.search(r"^total\s+(\d+)\s*$", res.stdout, flags=re.M)
    return seconds, int(m.group(1)) if m else -1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--phases", nargs="+", default=["AP", "PVP", "HBP"])
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument(
        "--profile",
        action="append",
        default=None,
        help="also time the dry run with this profile (repeatable; default: the SLURM profile)",
    )
    args = ap.parse_args()
    profiles = args.profile or [str(ROOT / "config" / "profiles" / "slurm")]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="hccrad-dryrun-"))
    work.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    cohort, clinical = write_sheets(work / "sheets", args.patients, args.phases)
    t_sheet = time.perf_counter() - t0
    rows = args.patients * len(args.phases)
    print(f"sheet: {args.patients} patients x {len(args.phases)} phases = {rows} rows, ", end="")
    print(f"written in {t_sheet:.1f} s ({work})")

    print("\n| dry run | jobs | wall (s) |\n|---|---:|---:|")
    for profile in [None, *profiles]:
        run = work / "run"
        run.mkdir(exist_ok=True)
        seconds, jobs = dry_run(run, cohort, clinical, profile)
        name = f"`--profile {Path(profile).name}`" if profile else "no profile (`--cores 1`)"
        print(f"| {name} | {jobs} | {seconds:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
