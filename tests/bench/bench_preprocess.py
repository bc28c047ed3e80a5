"""Benchmark: synthetic cohort generation and the preprocessing DAG on the demo cohort.

Run on demand (not part of the test suite):

    .venv/bin/python tests/bench/bench_preprocess.py [--patients 48] [--cores 2] [--workdir DIR]

Prints a Markdown table for docs/benchmarks.md: wall time of `hccrad synth`, of the whole
Snakemake run, and per rule the job count, mean/max wall seconds and max RSS from the rules'
`benchmark:` files.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=48, help="patients per modality")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="hccrad-bench-"))
    work.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    subprocess.run(
        [BIN / "hccrad", "synth", "--out", work / "cohort", "--patients", str(args.patients)],
        check=True,
    )
    t_synth = time.perf_counter() - t0

    t0 = time.perf_counter()
    subprocess.run(
        [
            BIN / "snakemake",
            "--snakefile", ROOT / "Snakefile",
            "--directory", work,
            "--configfile", ROOT / "config/config.yaml",
            "--config", f"cohort={work / 'cohort/cohort.tsv'}",
            f"clinical={work / 'cohort/clinical.tsv'}",
            "--cores", str(args.cores),
            "--scheduler", "greedy",
            "--quiet",
        ],
        check=True,
    )
    t_run = time.perf_counter() - t0

    rows = []
    for rule_dir in sorted((work / "results/benchmarks").iterdir()):
        frames = [pd.read_csv(p, sep="\t") for p in rule_dir.rglob("*.tsv")]
        b = pd.concat(frames)
        rows.append(
            {
                "rule": rule_dir.name,
                "jobs": len(frames),
                "mean_s": round(b["s"].mean(), 2),
                "max_s": round(b["s"].max(), 2),
                "max_rss_mb": round(b["max_rss"].max(), 0),
            }
        )
    table = pd.DataFrame(rows)
    n_images = len(pd.read_csv(work / "cohort/cohort.tsv", sep="\t"))
    print(f"\nwork dir: {work}")
    print(f"hccrad synth ({args.patients} patients per modality): {t_synth:.1f} s")
    print(f"workflow ({n_images} images, {args.cores} cores): {t_run:.1f} s wall")
    print(f"jobs: {table['jobs'].sum()}\n")
    print(table.to_markdown(index=False) if hasattr(table, "to_markdown") else table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
