"""Benchmark: hccrad's fast voxel-map engine against PyRadiomics' voxel mode, side by side.

Run on demand (not part of the test suite):

    .venv/bin/python tests/bench/bench_voxelmaps.py [--spacing 1.0] [--radius-mm 20]
        [--bin-width 5] [--classes firstorder glcm glrlm gldm ngtdm] [--threads 1]

Writes a seeded synthetic tumor (a textured sphere) to a temporary folder, then runs
`hccrad voxelmaps` once per engine, each in its own process, and prints whole-process wall time
(start-up included, as a per-patient DAG job pays it) and peak memory (max RSS) of each, their
ratio, and the largest relative difference between the two engines' maps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

RUNNER = """
import json, resource, sys
from hccrad.cli import main
rc = main(sys.argv[1:])
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rc": rc, "max_rss_mb": peak_mb}))
"""


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
    sitk.WriteImage(image, str(folder / "image.nii.gz"))
    sitk.WriteImage(m, str(folder / "mask.nii.gz"))
    return folder / "image.nii.gz", folder / "mask.nii.gz"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spacing", type=float, default=1.0)
    ap.add_argument("--radius-mm", type=float, default=20.0)
    ap.add_argument("--bin-width", type=float, default=5.0)
    ap.add_argument(
        "--classes", nargs="+", default=["firstorder", "glcm", "glrlm", "gldm", "ngtdm"]
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hccrad-voxelmaps-"))
    image, mask = tumor(work, args.spacing, args.radius_mm)
    n_voxels = int(sitk.GetArrayViewFromImage(sitk.ReadImage(str(mask))).sum())
    results = {}
    for engine in ("fast", "pyradiomics"):
        out = work / engine
        cmd = [sys.executable, "-c", RUNNER, "voxelmaps", str(image), str(mask), "--out", str(out)]
        cmd += ["--bin-width", str(args.bin_width), "--engine", engine, "--classes", *args.classes]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        results[engine] = {"wall_s": wall, "max_rss_mb": info["max_rss_mb"], "out": out}
    fast = pd.read_parquet(results["fast"]["out"] / "voxels.parquet")
    ref = pd.read_parquet(results["pyradiomics"]["out"] / "voxels.parquet")
    worst = 0.0
    for col in ref.columns.drop(["z", "y", "x"]):
        a, b = fast[col].to_numpy(), ref[col].to_numpy()
        ok = np.isfinite(a) & np.isfinite(b) & (np.abs(b) > 1e-9)
        if ok.any():
            worst = max(worst, float(np.max(np.abs(a[ok] - b[ok]) / np.abs(b[ok]))))
    f, p = results["fast"], results["pyradiomics"]
    print(
        f"tumor: {n_voxels} voxels at {args.spacing} mm, bin width {args.bin_width}, "
        f"classes {' '.join(args.classes)}, {len(ref.columns) - 3} maps"
    )
    print("| engine | wall s | max RSS MB |\n|---|---|---|")
    print(f"| pyradiomics | {p['wall_s']:.1f} | {p['max_rss_mb']:.0f} |")
    print(f"| hccrad fast | {f['wall_s']:.1f} | {f['max_rss_mb']:.0f} |")
    print(
        f"speed-up {p['wall_s'] / f['wall_s']:.1f}x, memory ratio "
        f"{f['max_rss_mb'] / p['max_rss_mb']:.2f}, max relative difference {worst:.2e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
