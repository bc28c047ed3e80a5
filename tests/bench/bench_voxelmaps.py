"""Benchmark: hccrad's fast voxel-map engine against PyRadiomics' voxel mode, side by side.

Run on demand (not part of the test suite):

    .venv/bin/python tests/bench/bench_voxelmaps.py [--spacing 1.0] [--radius-mm 20]
        [--bin-width 5] [--classes firstorder glcm glrlm gldm ngtdm] [--jobs N]
    .venv/bin/python tests/bench/bench_voxelmaps.py --matrix [--skip-pyradiomics bw2]
        [--pyradiomics-timeout 1800]

Writes a seeded synthetic tumor (a textured sphere) to a temporary folder, then runs
`hccrad voxelmaps` once per engine, each in its own process, as a user runs it, and prints
whole-process wall time (start-up, reading and writing included, as a per-patient DAG job pays
it), CPU time (user + system, children included) and peak memory of each, their ratio, and the
largest relative difference between the two engines' maps. PyRadiomics runs with its own
settings in one process; `--jobs` goes to the fast engine only (default: all CPUs this process
may use). On a shared machine compare the CPU times too: PyRadiomics' is about its wall time on
an idle machine.

Peak memory counts the child processes (the fast engine's forked workers and NIfTI writers, also
used for PyRadiomics' maps): "RSS MB" is the runner's own max RSS plus the largest child's
(`RUSAGE_CHILDREN`; a forked child's RSS includes the pages it shares with the parent, e.g. the
~95 MB of SimpleITK's library, so this double counts), "PSS MB" the largest sampled sum of the
proportional set sizes (shared pages split between the processes) of the runner and all its
children, every 20 ms. `--repeat N` runs the fast engine N times and keeps the fastest run
(the machine may be shared; PyRadiomics runs once).

`--matrix` runs the default case, then a single-core fast run (`--jobs 1`), 2 mm, bin width 25
and bin width 2 (the last is slow for PyRadiomics: skip it with `--skip-pyradiomics bw2`, or
bound it with `--pyradiomics-timeout`; a skipped or timed-out PyRadiomics run shows as "-" or
"> limit") and prints a Markdown table. The machine's load average is printed with every run:
compare wall times only on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

RUNNER = """
import json, resource, sys
from hccrad.cli import main
rc = main(sys.argv[1:])
me = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({
    "rc": rc,
    "self_rss_mb": me.ru_maxrss / 1024,
    "child_rss_mb": kids.ru_maxrss / 1024,
    "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
}))
"""

CLASSES = ["firstorder", "glcm", "glrlm", "gldm", "ngtdm"]


def tumor(folder: Path, spacing: float, radius_mm: float, seed: int = 0) -> tuple[Path, Path]:
    """A textured spherical tumor with a necrotic-looking core, written as NIfTI."""
    rng = np.random.default_rng(seed)
    n = int(np.ceil(2 * radius_mm / spacing)) + 6
    grid = (np.arange(n) - (n - 1) / 2) * spacing
    zz, yy, xx = np.meshgrid(grid, grid, grid, indexing="ij")
    r = np.sqrt(zz**2 + yy**2 + xx**2)
    mask = (r <= radius_mm).astype(np.uint8)
    texture = rng.normal(size=r.shape)
    img = 120 + 40 * np.tanh((r - radius_mm / 2) / 3) + 15 * texture
    image = sitk.GetImageFromArray(img.round().astype(np.int16))
    image.SetSpacing((spacing,) * 3)
    m = sitk.GetImageFromArray(mask)
    m.CopyInformation(image)
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(folder / "image.nii.gz"))
    sitk.WriteImage(m, str(folder / "mask.nii.gz"))
    return folder / "image.nii.gz", folder / "mask.nii.gz"


def _pss_kb(pid: int) -> int:
    """Proportional set size of a process and its descendants, in kB (0 if gone)."""
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                total += sum(_pss_kb(int(c)) for c in fh.read().split())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return total


@dataclass
class Run:
    """One engine run."""

    wall_s: float | None  # None: skipped; inf: timed out
    cpu_s: float = float("nan")
    peak_mb: float = float("nan")
    pss_mb: float = float("nan")
    load: str = ""
    out: Path | None = None


def run_engine(
    engine: str,
    image: Path,
    mask: Path,
    out: Path,
    bin_width: float,
    classes: list[str],
    jobs: int | None,
    timeout: float | None,
) -> Run:
    """Run ``hccrad voxelmaps`` in a fresh process; time it and sample its memory."""
    cmd = [sys.executable, "-c", RUNNER, "voxelmaps", str(image), str(mask), "--out", str(out)]
    cmd += ["--bin-width", str(bin_width), "--engine", engine, "--classes", *classes]
    if engine == "fast" and jobs is not None:
        cmd += ["--jobs", str(jobs)]
    load = f"{os.getloadavg()[0]:.2f}"
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _pss_kb(proc.pid))
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        done.set()
        return Run(wall_s=float("inf"), load=load)
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} failed:\n{stderr[-3000:]}")
    info = json.loads(stdout.strip().splitlines()[-1])
    return Run(
        wall_s=wall,
        cpu_s=info["cpu_s"],
        peak_mb=info["self_rss_mb"] + info["child_rss_mb"],
        pss_mb=peak[0] / 1024,
        load=f"{load}/{os.getloadavg()[0]:.2f}",
        out=out,
    )


def max_rel_diff(fast: Path, ref: Path) -> tuple[float, int]:
    """Largest relative difference where |reference| > 1e-9, and the NaN-position mismatches."""
    a_tab = pd.read_parquet(fast / "voxels.parquet")
    b_tab = pd.read_parquet(ref / "voxels.parquet")
    worst, nan_mismatch = 0.0, 0
    for col in b_tab.columns.drop(["z", "y", "x"]):
        a, b = a_tab[col].to_numpy(), b_tab[col].to_numpy()
        nan_mismatch += int(np.sum(np.isnan(a) != np.isnan(b)))
        ok = np.isfinite(a) & np.isfinite(b) & (np.abs(b) > 1e-9)
        if ok.any():
            worst = max(worst, float(np.max(np.abs(a[ok] - b[ok]) / np.abs(b[ok]))))
    return worst, nan_mismatch


def fmt_wall(run: Run | None, timeout: float | None) -> str:
    if run is None or run.wall_s is None:
        return "-"
    if run.wall_s == float("inf"):
        return f"> {timeout:.0f}"
    return f"{run.wall_s:.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spacing", type=float, default=1.0)
    ap.add_argument("--radius-mm", type=float, default=20.0)
    ap.add_argument("--bin-width", type=float, default=5.0)
    ap.add_argument("--classes", nargs="+", default=CLASSES)
    ap.add_argument("--jobs", type=int, help="fast engine's worker processes (default: all CPUs)")
    ap.add_argument("--matrix", action="store_true", help="run the set of cases, Markdown table")
    ap.add_argument(
        "--skip-pyradiomics",
        nargs="*",
        default=[],
        metavar="CASE",
        help="cases (default, 2mm, bw25, bw2; 'all') without a PyRadiomics run",
    )
    ap.add_argument("--pyradiomics-timeout", type=float, help="seconds; longer runs are killed")
    ap.add_argument("--repeat", type=int, default=1, help="fast runs per case (fastest kept)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hccrad-voxelmaps-"))
    if args.matrix:
        cases = [
            ("default", 1.0, 5.0, args.jobs),
            ("default, --jobs 1", 1.0, 5.0, 1),
            ("2mm", 2.0, 5.0, args.jobs),
            ("bw25", 1.0, 25.0, args.jobs),
            ("bw2", 1.0, 2.0, args.jobs),
        ]
    else:
        cases = [("default", args.spacing, args.bin_width, args.jobs)]
    rows = []
    ref_runs: dict[tuple[float, float], Run | None] = {}
    for name, spacing, bw, jobs in cases:
        folder = work / f"tumor-{spacing:g}mm"
        image, mask = folder / "image.nii.gz", folder / "mask.nii.gz"
        if not image.exists():
            tumor(folder, spacing, args.radius_mm)
        n_vox = int(np.count_nonzero(sitk.GetArrayFromImage(sitk.ReadImage(str(mask)))))
        key = (spacing, bw)
        out = work / f"{name.split(',')[0]}-{spacing:g}-{bw:g}"
        fast_runs = [
            run_engine("fast", image, mask, out / f"fast-{jobs}", bw, args.classes, jobs, None)
            for _ in range(max(1, args.repeat))
        ]
        fast = min(fast_runs, key=lambda run: run.wall_s)
        walls = ", ".join(f"{run.wall_s:.2f}" for run in fast_runs)
        print(f"[{name}] fast: {walls} s, load {fast.load}", flush=True)
        if key not in ref_runs:
            base = name.split(",")[0]
            if base in args.skip_pyradiomics or "all" in args.skip_pyradiomics:
                ref_runs[key] = None
            else:
                ref_runs[key] = run_engine(
                    "pyradiomics",
                    image,
                    mask,
                    out / "pyradiomics",
                    bw,
                    args.classes,
                    None,
                    args.pyradiomics_timeout,
                )
                ref = ref_runs[key]
                print(
                    f"[{name}] pyradiomics: {fmt_wall(ref, args.pyradiomics_timeout)} s, "
                    f"load {ref.load}",
                    flush=True,
                )
        ref = ref_runs[key]
        worst, nan_mis = (float("nan"), 0)
        if ref is not None and ref.out is not None:
            worst, nan_mis = max_rel_diff(fast.out, ref.out)
        n_maps = len(pd.read_parquet(fast.out / "voxels.parquet").columns) - 3
        rows.append((name, spacing, bw, n_vox, n_maps, jobs, ref, fast, worst, nan_mis))

    cols = "case | voxels | maps | PyRadiomics s | PyRadiomics CPU s | PyRadiomics RSS MB | "
    cols += "PyRadiomics PSS MB | "
    cols += "fast s | fast CPU s | fast RSS MB | fast PSS MB | speed-up | max rel. diff | "
    cols += "load fast; PyRadiomics"
    print(f"\ntumor radius {args.radius_mm} mm, classes {' '.join(args.classes)}\n")
    print("| " + cols + " |")
    print("|" + "---|" * (cols.count("|") + 1))
    for name, spacing, bw, n_vox, n_maps, jobs, ref, fast, worst, nan_mis in rows:
        ok_ref = ref is not None and ref.wall_s not in (None, float("inf"))
        if ok_ref:
            speed = f"{ref.wall_s / fast.wall_s:.1f}x"
        elif ref is not None and ref.wall_s == float("inf"):
            speed = f"> {args.pyradiomics_timeout / fast.wall_s:.0f}x"
        else:
            speed = "-"
        diff = f"{worst:.1e}" + (f" ({nan_mis} NaN mismatches)" if nan_mis else "")
        diff = diff if ok_ref else "-"
        ref_mb = (
            f"{ref.cpu_s:.0f} | {ref.peak_mb:.0f} | {ref.pss_mb:.0f}" if ok_ref else "- | - | -"
        )
        label = f"{name} ({spacing:g} mm, bin width {bw:g}, jobs {jobs or 'all'})"
        print(
            f"| {label} | {n_vox} | {n_maps} | {fmt_wall(ref, args.pyradiomics_timeout)} | "
            f"{ref_mb} | {fast.wall_s:.2f} | {fast.cpu_s:.1f} | {fast.peak_mb:.0f} | "
            f"{fast.pss_mb:.0f} | {speed} | {diff} | {fast.load}; {ref.load if ref else '-'} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
