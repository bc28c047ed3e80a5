"""Registration accuracy on the synthetic demo cohort's known motion, before and after a change.

For each of ``--patients`` MR and CT patients of the generator (seed ``--seed``), every phase is
resampled to 1 mm (and N4-corrected for MR) as the workflow does, and each moving phase is
registered onto the reference phase with each setting; the error is the distance between the
found and the true transform at every 40th liver voxel. Prints one Markdown row per setting:
mean over phases of the mean error, worst phase mean, worst point, seconds per phase.

    .venv/bin/python tests/bench/registration_synth.py --patients 12
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "workflow" / "lib"))

from hccrad.config import load_settings  # noqa: E402  (after the path set-up above)
from hccrad.preprocess import n4_correct, register_rigid, resample_to_spacing  # noqa: E402
from hccrad.synth import generate_patient, true_relative_transform  # noqa: E402

#: Name -> keyword arguments of register_rigid.
SETTINGS: dict[str, dict] = {
    "QuickRigid, 1 mm (before)": {"refine": False, "max_voxels": None, "crop": False},
    "QuickRigid, body crop (now: under the voxel budget)": {"refine": False},
    "QuickRigid, body crop + 2 mm grid": {"refine": False, "grid_mm": 2.0},
    "QuickRigid + refine, 1 mm (before)": {"refine": True, "max_voxels": None, "crop": False},
    "QuickRigid + refine, body crop (now)": {"refine": True},
    "QuickRigid + refine, body crop + 2 mm grid": {"refine": True, "grid_mm": 2.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=12, help="patients per modality")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=None, help="ITK threads (default: all)")
    args = parser.parse_args()
    settings = load_settings(ROOT / "config" / "config.yaml")
    rows: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for modality in ("MR", "CT"):
        ref = settings.modality(modality).reference_phase
        for index in range(args.patients):
            p = generate_patient(modality, index, seed=args.seed)
            images = {}
            for phase, image in p.images.items():
                img = resample_to_spacing(image, settings.spacing)
                if settings.modality(modality).n4:
                    img, _ = n4_correct(
                        img,
                        shrink_factor=settings.n4_shrink_factor,
                        iterations=settings.n4_iterations,
                        convergence_threshold=settings.n4_convergence_threshold,
                    )
                images[phase] = img
            liver = resample_to_spacing(p.masks[ref]["liver"], settings.spacing, is_mask=True)
            voxels = np.argwhere(sitk.GetArrayViewFromImage(liver) > 0)[::40][:, ::-1]
            points = [
                images[ref].TransformIndexToPhysicalPoint([int(i) for i in v]) for v in voxels
            ]
            for phase in images:
                if phase == ref:
                    continue
                truth = true_relative_transform(p.motion, phase, ref)
                for name, kwargs in SETTINGS.items():
                    t0 = time.perf_counter()
                    found = register_rigid(
                        images[ref],
                        images[phase],
                        seed=settings.seed,
                        threads=args.threads,
                        **kwargs,
                    )
                    seconds = time.perf_counter() - t0
                    err = [
                        np.linalg.norm(
                            np.subtract(found.TransformPoint(x), truth.TransformPoint(x))
                        )
                        for x in points
                    ]
                    rows.setdefault((modality, name), []).append(
                        (float(np.mean(err)), float(np.max(err)), seconds)
                    )
        print(f"# {modality}: {args.patients} patients, image {images[ref].GetSize()}", flush=True)
    print("| setting | modality | phases | mean / worst-phase mean / worst point (mm) | s/phase |")
    print("|---|---|---|---|---|")
    for (modality, name), r in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        a = np.asarray(r)
        print(
            f"| {name} | {modality} | {len(a)} | {a[:, 0].mean():.2f} / {a[:, 0].max():.2f} / "
            f"{a[:, 1].max():.2f} | {a[:, 2].mean():.2f} |"
        )


if __name__ == "__main__":
    main()
