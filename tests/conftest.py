"""Shared test helpers: paths, the real-data folder and a Snakemake runner."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def shared_data(name: str) -> Path:
    """A folder of ``../shared/data``; skips the test with a reason when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real test data {path} not present (only in the project's shared folder)")
    return path


def run_snakemake(
    workdir: Path, *args: str, cohort: Path, clinical: Path, timeout: int = 900
) -> subprocess.CompletedProcess:
    """Run the workflow of this checkout in ``workdir`` on the given sheets."""
    cmd = [
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
        "--scheduler",
        "greedy",
        *args,
    ]
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
