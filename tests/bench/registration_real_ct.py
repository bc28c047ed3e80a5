"""Rigid registration at real CT size: time, peak memory and target registration error (TRE).

The real portal-venous CT series HCC_048 (``../shared/data/hcc048_ct_dicom``, 512x512x89,
0.703x0.703x2.5 mm) is read with :func:`hccrad.imageio.read_image` and resampled to 1 mm as the
pipeline does (the fixed image, 360x360x222). The moving image is the same scan with another
contrast (:func:`arterial_remap`: a non-linear remap of HU inside the body, liver darker and
vessels brighter as in an arterial phase, plus Gaussian noise), moved by a known rigid transform
(:func:`known_motion`) on its native grid and then resampled to 1 mm, so the two images share
neither intensities nor voxel grid. The TRE is the distance between where the found and the
true transform send points of the body (every ``--every``-th voxel of the fixed image above
-300 HU, largest component), reported as mean and max.

Each setting runs in a fresh child process, which loads antspyx and the images, resets its peak
RSS to the current one (Linux ``/proc/self/clear_refs``) and reports the ``resource.getrusage``
peak RSS of the registration beside that baseline; the time is the wall time of
:func:`hccrad.preprocess.register_rigid` alone, the best of ``--repeat`` runs.

    .venv/bin/python tests/bench/registration_real_ct.py            # every setting
    .venv/bin/python tests/bench/registration_real_ct.py --settings old new --repeat 3

Prints one Markdown table row per setting (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "workflow" / "lib"))

from hccrad.imageio import read_image  # noqa: E402  (after the path set-up above)
from hccrad.preprocess import register_rigid, resample_like, resample_to_spacing  # noqa: E402

SERIES = ROOT.parent / "shared" / "data" / "hcc048_ct_dicom"

#: Name -> (what it is, keyword arguments of register_rigid). "body_mask" in the arguments
#: means: the fixed image's body mask as ``fixed_mask``.
SETTINGS: dict[str, tuple[str, dict]] = {
    "old": (
        "QuickRigid + refine 10+5 at 1 mm (before)",
        {"max_voxels": None, "crop": False},
    ),
    "old_norefine": (
        "QuickRigid alone at 1 mm (before, demo overlay)",
        {"max_voxels": None, "crop": False, "refine": False},
    ),
    "crop": ("old, cropped to the body", {"max_voxels": None, "crop": True}),
    "grid2": ("old, on a 2 mm grid", {"grid_mm": 2.0, "crop": False}),
    "new": ("body crop + 2 mm grid (4.2 M voxel budget; new default)", {}),
    "new_norefine": ("new, QuickRigid alone (demo overlay)", {"refine": False}),
    "new_mask": ("new + metric restricted to the body", {"body_mask": True}),
    "new_rate05": ("new, metric sampling 5 % instead of 20 %", {"sampling_rate": 0.05}),
    "new_1thread": ("new, one ITK thread", {"threads": 1}),
    "grid3": ("body crop + 3 mm grid", {"grid_mm": 3.0}),
}


def known_motion(image: sitk.Image) -> sitk.Euler3DTransform:
    """The true motion (fixed point -> moving point): 4, -3, 5 degrees about the image centre,
    then 6, -8, 5 mm."""
    centre = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])
    truth = sitk.Euler3DTransform()
    truth.SetCenter(centre)
    truth.SetRotation(*np.deg2rad([4.0, -3.0, 5.0]))
    truth.SetTranslation((6.0, -8.0, 5.0))
    return truth


def body_mask(image: sitk.Image, threshold: float = -300.0) -> sitk.Image:
    """Largest connected component above ``threshold`` HU, holes filled (``UInt8``)."""
    above = sitk.Cast(sitk.Greater(image, threshold), sitk.sitkUInt8)
    largest = sitk.RelabelComponent(sitk.ConnectedComponent(above), sortByObjectSize=True) == 1
    return sitk.Cast(sitk.BinaryFillhole(largest), sitk.sitkUInt8)


def arterial_remap(image: sitk.Image, *, seed: int = 0, noise_hu: float = 20.0) -> sitk.Image:
    """Another contrast of a CT: inside the body a piecewise-linear, non-linear map of HU (fat and
    liver parenchyma darker, enhancing vessels brighter, bone compressed) plus Gaussian noise of
    ``noise_hu``; outside the body unchanged (air, field-of-view padding)."""
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    inside = sitk.GetArrayFromImage(body_mask(image)).astype(bool)
    knots_in = [-1024, -100, 0, 60, 120, 200, 400, 1500, 3071]
    knots_out = [-1000, -160, -30, 20, 55, 270, 430, 900, 1500]
    remapped = np.interp(hu, knots_in, knots_out).astype(np.float32)
    rng = np.random.default_rng(seed)
    remapped += rng.normal(0.0, noise_hu, hu.shape).astype(np.float32)
    out = sitk.GetImageFromArray(np.where(inside, remapped, hu).astype(np.float32))
    out.CopyInformation(image)
    return out


def make_case(
    series: Path = SERIES, spacing: float = 1.0
) -> tuple[sitk.Image, sitk.Image, sitk.Euler3DTransform]:
    """``(fixed, moving, truth)`` at ``spacing`` mm from a CT DICOM series (module docstring)."""
    native = read_image(series, patient="HCC048", phase="PVP")
    fixed = resample_to_spacing(native, (spacing,) * 3)
    truth = known_motion(fixed)
    # the moved scan on its own native grid, as a scanner would have sampled it
    moved_native = resample_like(arterial_remap(native), native, transform=truth.GetInverse())
    moving = resample_to_spacing(moved_native, (spacing,) * 3)
    return fixed, moving, truth


def body_points(fixed: sitk.Image, every: int) -> np.ndarray:
    """Physical points (n, 3) of every ``every``-th voxel of the fixed image's body."""
    idx = np.argwhere(sitk.GetArrayFromImage(body_mask(fixed)) > 0)[::every][:, ::-1]
    origin = np.asarray(fixed.GetOrigin())
    scaled = np.asarray(fixed.GetDirection()).reshape(3, 3) * np.asarray(fixed.GetSpacing())
    return origin + idx @ scaled.T


def transform_points(tx: sitk.Transform, points: np.ndarray) -> np.ndarray:
    """Apply a matrix + offset transform (Euler3D, affine) to an (n, 3) array of points."""
    matrix = np.asarray(tx.GetMatrix()).reshape(3, 3)
    centre = np.asarray(tx.GetCenter())
    return (points - centre) @ matrix.T + centre + np.asarray(tx.GetTranslation())


def tre(found: sitk.Transform, truth: sitk.Transform, points: np.ndarray) -> tuple[float, float]:
    """Mean and max distance (mm) between where ``found`` and ``truth`` send ``points``."""
    d = np.linalg.norm(transform_points(found, points) - transform_points(truth, points), axis=1)
    return float(d.mean()), float(d.max())


def _reset_peak_rss() -> float:
    """Reset the process's peak RSS to its current RSS (Linux ``/proc/self/clear_refs``, so the
    peak of what follows is measured, not that of loading the images); return it in MB."""
    with contextlib.suppress(OSError, AttributeError):  # glibc: give freed heap back first
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    clear_refs = Path("/proc/self/clear_refs")
    if clear_refs.exists():
        clear_refs.write_text("5")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _build(folder: Path, every: int) -> None:
    """Write the case (fixed, moving, truth, body points) into ``folder``; print a summary."""
    t0 = time.perf_counter()
    fixed, moving, truth = make_case()
    points = body_points(fixed, every)
    sitk.WriteImage(fixed, str(folder / "fixed.nii"))
    sitk.WriteImage(moving, str(folder / "moving.nii"))
    sitk.WriteTransform(truth, str(folder / "truth.tfm"))
    np.save(folder / "points.npy", points)
    print(
        f"# fixed {fixed.GetSize()}, moving {moving.GetSize()} at 1 mm, "
        f"{len(points)} body points; case built in {time.perf_counter() - t0:.1f} s; "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    )


def _child(folder: Path, name: str, repeat: int) -> None:
    """Run one setting on the images in ``folder``; print a JSON line."""
    from hccrad.preprocess.register import import_ants

    import_ants()
    fixed = sitk.ReadImage(str(folder / "fixed.nii"))
    moving = sitk.ReadImage(str(folder / "moving.nii"))
    truth = sitk.ReadTransform(str(folder / "truth.tfm"))
    points = np.load(folder / "points.npy")
    kwargs = dict(SETTINGS[name][1])
    if kwargs.pop("body_mask", False):
        kwargs["fixed_mask"] = body_mask(fixed)
    loaded = _reset_peak_rss()
    times, errors = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        found = register_rigid(fixed, moving, seed=0, **kwargs)
        times.append(time.perf_counter() - t0)
        errors.append(tre(found, truth, points))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mean, worst = max(errors, key=lambda e: e[0])
    print(
        json.dumps(
            {
                "name": name,
                "seconds": min(times),
                "all_seconds": times,
                "loaded_mb": loaded,
                "peak_mb": peak,
                "tre_mean": mean,
                "tre_max": worst,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--repeat", type=int, default=1, help="runs per setting (best time)")
    parser.add_argument("--every", type=int, default=97, help="body voxel stride of the points")
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "SETTING"), help=argparse.SUPPRESS)
    parser.add_argument("--build", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(Path(args.child[0]), args.child[1], args.repeat)
        return
    if args.build:
        _build(Path(args.build), args.every)
        return
    if not SERIES.is_dir():
        sys.exit(f"{SERIES} not found (the project's shared real-data folder)")
    with tempfile.TemporaryDirectory(prefix="hccrad_bench_reg_") as tmp:
        # built in a child too: Linux hands a parent's peak RSS on to the children it starts
        out = subprocess.run(
            [sys.executable, __file__, "--build", tmp, "--every", str(args.every)],
            check=True,
            capture_output=True,
            text=True,
        )
        print(out.stdout.strip(), flush=True)
        print("| setting | what | time (s) | peak RSS, MB (before) | TRE mean / max (mm) |")
        print("|---|---|---|---|---|")
        for name in args.settings:
            out = subprocess.run(
                [sys.executable, __file__, "--child", tmp, name, "--repeat", str(args.repeat)],
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"| {name} | {SETTINGS[name][0]} | {r['seconds']:.1f} | "
                f"{r['peak_mb']:.0f} ({r['loaded_mb']:.0f}) | "
                f"{r['tre_mean']:.3f} / {r['tre_max']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
