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

`--real` runs real regions of `../shared/data` instead (`REAL_ROIS`): the IBSI CT phantom's
tumor and four liver regions of the HCC_048 portal-venous CT with different vessel content,
each resampled (image linear, mask nearest neighbour, `hccrad.preprocess.resample_to_spacing`)
to 1 mm and 2 mm and run at bin width 5 and 25 (`REAL_SETTINGS`; `--rois` and `--settings` pick
some), and prints the grey levels present in each ROI beside the timings. Bound PyRadiomics with
`--pyradiomics-timeout` (at 1 mm it takes minutes to hours on these ROIs).
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

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

#: Real ROIs: name -> (source, region). The HCC_048 regions are physical ellipsoids (radii in mm
#: along x, y, z) centred on a voxel (x = column, y = row, z = array slice) of the 0.703 x 0.703
#: x 2.5 mm CT; vessel content = fraction of voxels >= 150 HU (portal-venous phase).
REAL_ROIS: dict[str, tuple[str, tuple[tuple[int, int, int], tuple[float, float, float]] | None]] = {
    # lung tumor with air and soft tissue (-835 to 147 HU), 125,256 voxels at 0.977 x 0.977 x 3 mm
    "ibsi-ct-tumor": ("ibsi1/ct_phantom", None),
    # homogeneous parenchyma, ~1 % vessel voxels, SD 18 HU
    "liver-parenchyma": ("hcc048_ct_dicom", ((200, 235, 64), (20.0, 20.0, 20.0))),
    # near the hilum, ~16 % vessel voxels, SD 42 HU
    "liver-vessels": ("hcc048_ct_dicom", ((200, 185, 56), (20.0, 20.0, 20.0))),
    # a larger region spanning both, flattened along z
    "liver-large": ("hcc048_ct_dicom", ((190, 205, 58), (32.0, 28.0, 16.0))),
    # a 10 mm slab through the hilar vessels: 7,549 voxels at 1 mm with 69 levels at bin width 5,
    # small enough for PyRadiomics' voxel mode to finish at 1 mm in minutes
    "liver-vessels-slab": ("hcc048_ct_dicom", ((200, 185, 52), (20.0, 20.0, 5.0))),
}

#: (spacing mm, bin width) of every real ROI; 2 mm / 25 is the habitat study's setting.
REAL_SETTINGS = [(1.0, 5.0), (2.0, 5.0), (2.0, 25.0)]


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
    failed: str = ""  # why a PyRadiomics run did not finish (e.g. killed for memory)


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
    if proc.returncode != 0 and engine == "pyradiomics":
        print(stderr[-1000:], file=sys.stderr)
        return Run(
            wall_s=None, load=load, failed=f"failed after {wall:.0f} s (rc {proc.returncode})"
        )
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
        return run.failed if run is not None and run.failed else "-"
    if run.wall_s == float("inf"):
        return f"> {timeout:.0f}"
    return f"{run.wall_s:.1f}"


def real_roi(name: str, folder: Path, spacing: float) -> tuple[Path, Path]:
    """Write the real ROI ``name`` of ``REAL_ROIS`` resampled to ``spacing`` mm (cached)."""
    from hccrad import imageio
    from hccrad.preprocess import resample_to_spacing

    image_path, mask_path = folder / "image.nii.gz", folder / "mask.nii.gz"
    if image_path.exists():
        return image_path, mask_path
    source, region = REAL_ROIS[name]
    if region is None:
        image = imageio.read_image(SHARED / source / "image.nii.gz")
        mask = imageio.read_mask(SHARED / source / "mask.nii.gz", image)
    else:
        image = imageio.read_image(SHARED / source)
        centre, radii = region
        assert np.allclose(image.GetDirection(), np.eye(3).ravel()), "axis-aligned CT expected"
        # open grids (a full index array of the CT would hold 1.5 GB)
        zyx = np.ogrid[tuple(slice(0, n) for n in sitk.GetArrayViewFromImage(image).shape)]
        # physical distance along x, y, z over the radius, summed squared
        terms = [
            ((zyx[2 - axis] - centre[axis]) * image.GetSpacing()[axis] / radii[axis]) ** 2
            for axis in range(3)
        ]
        mask = sitk.GetImageFromArray((sum(terms) <= 1.0).astype(np.uint8))
        mask.CopyInformation(image)
    image = resample_to_spacing(image, (spacing,) * 3)
    mask = resample_to_spacing(mask, (spacing,) * 3, is_mask=True)
    folder.mkdir(parents=True, exist_ok=True)
    imageio.write_image(image, image_path)
    imageio.write_image(mask, mask_path)
    return image_path, mask_path


def grey_levels(image: Path, mask: Path, bin_width: float) -> int:
    """Grey levels present in the ROI after PyRadiomics' fixed-bin-width discretisation."""
    from hccrad.voxelmaps.core import bin_edges

    inside = sitk.GetArrayFromImage(sitk.ReadImage(str(mask))) != 0
    values = sitk.GetArrayFromImage(sitk.ReadImage(str(image)))[inside].astype(np.float64)
    return len(np.unique(np.digitize(values, bin_edges(values, bin_width))))


def run_real(args: argparse.Namespace, work: Path) -> int:
    """The real ROIs at ``REAL_SETTINGS``: both engines per case, one Markdown table."""
    rows = []
    rois = args.rois or list(REAL_ROIS)
    settings = [
        s for s in REAL_SETTINGS if not args.settings or f"{s[0]:g}/{s[1]:g}" in args.settings
    ]
    # every input first, in a spawned process: a child's peak RSS (RUSAGE) counts its parent's
    # pages at the fork, and reading the 512 x 512 x 89 CT would inflate every run's figure
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    tasks = [(n, work / f"{n}-{sp:g}mm", sp) for n in rois for sp in {sp for sp, _ in settings}]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(real_roi, *zip(*tasks, strict=True)))
    for name in rois:
        for spacing, bw in settings:
            image, mask = real_roi(name, work / f"{name}-{spacing:g}mm", spacing)
            n_vox = int(np.count_nonzero(sitk.GetArrayFromImage(sitk.ReadImage(str(mask)))))
            levels = grey_levels(image, mask, bw)
            out = work / f"{name}-{spacing:g}-{bw:g}"
            fast = min(
                (
                    run_engine("fast", image, mask, out / "fast", bw, args.classes, args.jobs, None)
                    for _ in range(max(1, args.repeat))
                ),
                key=lambda run: run.wall_s,
            )
            label = f"{name}, {spacing:g} mm, bin width {bw:g}"
            print(
                f"[{label}] {n_vox} voxels, {levels} levels, fast {fast.wall_s:.2f} s, "
                f"load {fast.load}",
                flush=True,
            )
            ref = None
            skip = {"all", name, f"{name}@{spacing:g}/{bw:g}"} & set(args.skip_pyradiomics)
            if not skip:
                ref = run_engine(
                    "pyradiomics",
                    image,
                    mask,
                    out / "ref",
                    bw,
                    args.classes,
                    None,
                    args.pyradiomics_timeout,
                )
                print(
                    f"[{label}] pyradiomics {fmt_wall(ref, args.pyradiomics_timeout)} s, "
                    f"load {ref.load}",
                    flush=True,
                )
            rows.append((label, n_vox, levels, ref, fast))
    print_real_table(rows, args)
    return 0


def print_real_table(rows: list, args: argparse.Namespace) -> None:
    """The real-ROI rows as Markdown."""
    cols = (
        "case | voxels | grey levels | PyRadiomics s | PyRadiomics RSS / PSS MB | fast s | "
        "fast CPU s | fast RSS / PSS MB | speed-up | max rel. diff | load fast; PyRadiomics"
    )
    print(f"\nclasses {' '.join(args.classes)}\n")
    print("| " + cols + " |")
    print("|" + "---|" * (cols.count("|") + 1))
    for label, n_vox, levels, ref, fast in rows:
        done = ref is not None and ref.wall_s not in (None, float("inf"))
        if done:
            speed = f"{ref.wall_s / fast.wall_s:.1f}x"
            worst, nan_mis = max_rel_diff(fast.out, ref.out)
            diff = f"{worst:.1e}" + (f" ({nan_mis} NaN mismatches)" if nan_mis else "")
            ref_mb = f"{ref.peak_mb:.0f} / {ref.pss_mb:.0f}"
        else:
            timed_out = ref is not None and ref.wall_s == float("inf")
            speed = f"> {args.pyradiomics_timeout / fast.wall_s:.0f}x" if timed_out else "-"
            diff, ref_mb = "-", "-"
        print(
            f"| {label} | {n_vox:,} | {levels} | {fmt_wall(ref, args.pyradiomics_timeout)} | "
            f"{ref_mb} | {fast.wall_s:.2f} | {fast.cpu_s:.1f} | {fast.peak_mb:.0f} / "
            f"{fast.pss_mb:.0f} | {speed} | {diff} | {fast.load}; {ref.load if ref else '-'} |"
        )


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
        help="cases (default, 2mm, bw25, bw2; with --real ROI names or ROI@MM/BW, e.g. "
        "liver-large@1/5; 'all') without PyRadiomics",
    )
    ap.add_argument("--pyradiomics-timeout", type=float, help="seconds; longer runs are killed")
    ap.add_argument("--repeat", type=int, default=1, help="fast runs per case (fastest kept)")
    ap.add_argument("--real", action="store_true", help="real ROIs of ../shared/data (REAL_ROIS)")
    ap.add_argument("--rois", nargs="+", choices=list(REAL_ROIS), help="with --real: these ROIs")
    ap.add_argument("--settings", nargs="+", metavar="MM/BW", help="with --real: e.g. 2/25")
    ap.add_argument("--work", type=Path, help="folder for inputs and outputs (default: a new temp)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="hccrad-voxelmaps-"))
    if args.real:
        return run_real(args, work)
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
