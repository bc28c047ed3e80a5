"""Segmentation steps (3-D U-Net): training, segmenting one image, the Dice report of the
held-out patients (who is held out: :func:`hccrad.plan.segmentation_holdout`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from hccrad import fileio, imageio
from hccrad.deep import segmentation as unet
from hccrad.errors import InputError
from hccrad.fileio import PathLike
from hccrad.preprocess import largest_component

log = logging.getLogger(__name__)


def train_segmentation(
    cases: Mapping[str, Mapping[str, PathLike]],
    out_dir: PathLike,
    *,
    overrides: Mapping[str, Any],
    seed: int,
    threads: int = 1,
) -> None:
    """Train the liver + tumor U-Net on ``{patient: {"image", "liver", "tumor"}}``."""

    config = unet.SegConfig.from_dict({"seed": seed, "num_threads": threads, **overrides})
    items = [
        unet.SegCase(patient=p, image=c["image"], liver=c["liver"], tumor=c["tumor"])
        for p, c in sorted(cases.items())
    ]
    metrics = unet.train_segmentation(config, items, out_dir)
    log.info("U-Net trained on %d patients: %s", len(items), metrics.get("best_epoch"))


def segment_patient(
    checkpoint: Any,
    image: PathLike,
    dst_liver: PathLike,
    dst_tumor: PathLike,
    *,
    patient: str,
    phase: str,
) -> None:
    """Predict liver and tumor masks on one registered image (tumor: components in the liver).

    ``checkpoint``: the U-Net's ``checkpoint.pt`` or a model loaded once for many images
    (:func:`hccrad.deep.segmentation.load_model`).
    """

    img = imageio.read_image(image, patient=patient, phase=phase)
    result = unet.segment(checkpoint, img, name=f"{patient} {phase}")
    imageio.write_image(result.liver, dst_liver)
    imageio.write_image(result.tumor, dst_tumor)
    for message in result.warnings:
        log.warning("%s %s: %s", patient, phase, message)


def evaluate_segmentation(
    cases: Mapping[str, Mapping[str, PathLike]],
    dst: PathLike,
    *,
    checkpoint: PathLike | None = None,
    dst_predictions: PathLike | None = None,
) -> None:
    """Dice of the predicted masks against the given ones for the held-out patients.

    ``cases``: ``{patient: {"liver", "tumor", "pred_liver", "pred_tumor"}}``, or, with
    ``checkpoint``, ``{patient: {"image", "phase", "liver", "tumor"}}``: the U-Net is loaded once
    and segments every held-out image here (one job for all of them instead of a job each, which
    would pay the torch import per patient), writing its masks to ``dst_predictions``
    (``{patient}_liver.nii.gz``, ``{patient}_tumor.nii.gz``). Writes one row per patient
    (``dice_liver``, ``dice_tumor``, ``dice_index_tumor``) plus a ``mean`` row.
    """
    import pandas as pd

    if checkpoint is not None:
        if dst_predictions is None:
            raise ValueError("segmenting the held-out patients needs dst_predictions")
        out = Path(dst_predictions)
        out.mkdir(parents=True, exist_ok=True)
        model = unet.load_model(checkpoint) if cases else None
        segmented: dict[str, dict[str, PathLike]] = {}
        for patient, c in sorted(cases.items()):
            pred_liver = out / f"{patient}_liver.nii.gz"
            pred_tumor = out / f"{patient}_tumor.nii.gz"
            segment_patient(
                model, c["image"], pred_liver, pred_tumor, patient=patient, phase=str(c["phase"])
            )
            segmented[patient] = {**c, "pred_liver": pred_liver, "pred_tumor": pred_tumor}
        cases = segmented
    rows = []
    for patient, c in sorted(cases.items()):
        liver = imageio.read_mask(c["liver"], imageio.read_image(c["liver"]), patient=patient)
        tumor = imageio.read_mask(c["tumor"], liver, patient=patient)
        # predictions may be empty (a miss scores 0): read them as plain images on the same grid
        pred_liver = imageio.read_image(c["pred_liver"], patient=patient)
        pred_tumor = imageio.read_image(c["pred_tumor"], patient=patient)
        problems = imageio.check_geometry(pred_liver, liver)
        if problems:
            raise InputError(
                "prediction and mask grids differ: " + "; ".join(problems),
                patient=patient,
                file=c["pred_liver"],
            )
        pred_tumor = sitk.Cast(pred_tumor != 0, sitk.sitkUInt8)
        pred_index = (
            largest_component(pred_tumor)
            if sitk.GetArrayViewFromImage(pred_tumor).any()
            else pred_tumor
        )
        rows.append(
            {
                "patient": patient,
                "dice_liver": unet.dice(pred_liver, liver, labels=[1])[1],
                "dice_tumor": unet.dice(pred_tumor, tumor, labels=[1])[1],
                "dice_index_tumor": unet.dice(pred_index, largest_component(tumor), labels=[1])[1],
            }
        )
    table = pd.DataFrame(rows, columns=["patient", "dice_liver", "dice_tumor", "dice_index_tumor"])
    if len(table):
        mean = table.drop(columns="patient").mean().to_dict()
        table = pd.concat([table, pd.DataFrame([{"patient": "mean", **mean}])], ignore_index=True)
    fileio.write_parquet(table.set_index("patient"), dst, index=True)
    log.info("segmentation Dice on %d held-out patients:\n%s", len(rows), table.round(3))
