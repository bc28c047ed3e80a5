"""Preprocessing steps of one image: conversion, resampling, N4, registration, masks carried into
the registered space, normalisation, tumor regions; the per-patient QC and the cohort summary."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from hccrad import fileio, imageio
from hccrad.config import Normalization, Resampling
from hccrad.errors import InputError
from hccrad.fileio import PathLike
from hccrad.preprocess import (
    apply_transform,
    image_similarity,
    largest_component,
    n4_correct,
    normalize_mr,
    peritumoral_ring,
    read_transform,
    register_rigid,
    resample_like,
    resample_to_spacing,
    round_image,
    window_ct,
    write_transform,
)
from hccrad.qc import plot_cohort_montage, plot_patient_qc

log = logging.getLogger(__name__)


def convert_image(
    src: PathLike, dst: PathLike, *, patient: str, phase: str, series: str | None = None
) -> None:
    """Read a DICOM series folder, NRRD or NIfTI image and write it as NIfTI (Float32, no tags).

    ``series`` selects one series of a folder holding several (the sheet's ``series`` column).
    """
    image = imageio.read_image(src, patient=patient, phase=phase, series=series)
    log.info(
        "%s %s: %s -> size %s spacing %s",
        patient,
        phase,
        src,
        image.GetSize(),
        tuple(round(s, 4) for s in image.GetSpacing()),
    )
    imageio.write_image(image, dst)


def resample_image(
    src: PathLike,
    dst: PathLike,
    *,
    spacing: Sequence[float],
    patient: str,
    phase: str,
    resampling: Resampling | None = None,
    round_intensities: bool = False,
) -> None:
    """Resample an image to ``spacing`` (mm) on the grid and with the interpolator of
    ``resampling`` (default: the origin-anchored grid, linear), intensities rounded to integers
    when ``round_intensities`` (CT: HU)."""
    image = imageio.read_image(src, patient=patient, phase=phase)
    how = resampling or Resampling()
    out = resample_to_spacing(
        image, tuple(spacing), is_mask=False, grid=how.grid, interpolation=how.interpolation
    )
    if round_intensities:
        out = round_image(out)
    log.info("%s %s: resampled %s -> %s", patient, phase, image.GetSize(), out.GetSize())
    imageio.write_image(out, dst)


def correct_bias(
    src: PathLike,
    dst_image: PathLike,
    dst_bias: PathLike,
    *,
    shrink_factor: int,
    iterations: Sequence[int],
    convergence_threshold: float,
    spline_distance_mm: float | None = None,
    liver_mask: PathLike | None = None,
    liver_segment: str | None = None,
    mask_image: PathLike | None = None,
    patient: str,
    phase: str,
) -> None:
    """N4 bias-field correction; writes the corrected image and the estimated bias field.

    With ``liver_mask`` (a raw mask in the geometry of ``mask_image``, the phase's converted
    image; ``liver_segment`` selects within its file) the field is fitted within the liver, a
    homogeneous tissue; otherwise within the Otsu foreground.
    """
    image = imageio.read_image(src, patient=patient, phase=phase)
    mask = None
    if liver_mask is not None:
        if mask_image is None:
            raise ValueError("liver_mask needs mask_image, the image it was drawn on")
        raw = imageio.read_image(mask_image, patient=patient, phase=phase)
        liver = imageio.read_mask(
            liver_mask, raw, patient=patient, phase=phase, kind="liver", segment=liver_segment
        )
        mask = resample_like(liver, image, is_mask=True)
    corrected, bias = n4_correct(
        image,
        mask,
        shrink_factor=shrink_factor,
        iterations=tuple(iterations),
        convergence_threshold=convergence_threshold,
        spline_distance_mm=spline_distance_mm,
    )
    arr = sitk.GetArrayViewFromImage(bias)
    log.info(
        "%s %s: N4 bias field range %.3f..%.3f", patient, phase, float(arr.min()), float(arr.max())
    )
    imageio.write_image(bias, dst_bias)
    imageio.write_image(corrected, dst_image)


def rigid_parameters(transform: sitk.Transform, center: Sequence[float]) -> dict[str, Any]:
    """Rotation angle (degrees), matrix and translation (mm) of a rigid transform about ``center``.

    Works for any SimpleITK transform type (Euler, versor, affine, composite) by probing it at
    ``center`` and at unit steps from it, so a report never depends on the transform's class.
    """
    c = np.asarray(center, dtype=float)
    tc = np.asarray(transform.TransformPoint(tuple(c)))
    matrix = np.stack(
        [np.asarray(transform.TransformPoint(tuple(c + e))) - tc for e in np.eye(3)], axis=1
    )
    cos = max(-1.0, min(1.0, (float(np.trace(matrix)) - 1.0) / 2.0))
    return {
        "rotation_deg": math.degrees(math.acos(cos)),
        "translation_mm": [float(v) for v in tc - c],
        "center_mm": [float(v) for v in c],
        "matrix": [float(v) for v in matrix.ravel()],
    }


def image_center(image: sitk.Image) -> tuple[float, float, float]:
    """Physical position of the centre of an image's grid."""
    idx = [(n - 1) / 2.0 for n in image.GetSize()]
    x, y, z = image.TransformContinuousIndexToPhysicalPoint(idx)
    return (x, y, z)


def register_phase(
    fixed: PathLike,
    moving: PathLike,
    dst_image: PathLike,
    dst_transform: PathLike,
    dst_json: PathLike,
    *,
    is_reference: bool,
    method: str,
    refine: bool,
    seed: int,
    patient: str,
    phase: str,
    interpolation: str | None = None,
    round_intensities: bool = False,
) -> None:
    """Rigidly register ``moving`` onto ``fixed`` (the reference phase) and resample it there
    (``interpolation``, default linear; rounded to integers when ``round_intensities``).

    The reference phase itself gets the identity transform. The JSON sidecar records the method,
    the grid ANTs registered on (``registration_grid``: size and spacing of the copy, cropped and
    binned above the voxel budget; None for the reference), the transform and image similarity
    (NCC, mutual information) before and after.
    """
    fixed_img = imageio.read_image(fixed, patient=patient, phase=phase)
    moving_img = imageio.read_image(moving, patient=patient, phase=phase)
    grid: dict[str, Any] | None = None
    if is_reference:
        transform = sitk.Euler3DTransform()
        warped = resample_like(moving_img, fixed_img, interpolation=interpolation)
        before = after = image_similarity(fixed_img, warped)
    else:
        grid = {}
        try:
            transform = register_rigid(
                fixed_img, moving_img, method=method, refine=refine, seed=seed, grid=grid
            )
        except (RuntimeError, ValueError) as exc:
            raise InputError(f"registration failed: {exc}", patient=patient, phase=phase) from exc
        before = image_similarity(fixed_img, resample_like(moving_img, fixed_img))
        warped = apply_transform(moving_img, fixed_img, transform, interpolation=interpolation)
        if round_intensities:
            warped = round_image(warped)
        after = image_similarity(fixed_img, warped)
    info = {
        "patient": patient,
        "phase": phase,
        "reference": bool(is_reference),
        "method": "identity" if is_reference else method,
        "refine": bool(refine) and not is_reference,
        "seed": seed,
        "registration_grid": grid,
        "transform": rigid_parameters(transform, image_center(fixed_img)),
        "similarity_before": before,
        "similarity_after": after,
    }
    log.info("%s %s: similarity before %s after %s", patient, phase, before, after)
    imageio.write_image(warped, dst_image)
    write_transform(transform, dst_transform)
    fileio.write_json(info, dst_json)


def carry_mask(
    raw_mask: PathLike,
    converted_image: PathLike,
    registered_image: PathLike,
    transform: PathLike,
    dst: PathLike,
    *,
    kind: str,
    patient: str,
    phase: str,
    segment: str | None = None,
    mask_threshold: float | None = None,
) -> None:
    """Check a mask against its image, then carry it into the registered space in one resampling.

    The mask (any format :func:`hccrad.imageio.read_mask` reads; ``segment`` selects within its
    file) is checked against the geometry of its own (converted) image, then resampled directly
    onto the registered grid through the phase's registration transform (one interpolation,
    never two): linearly, keeping the voxels at or above the partial-volume fraction
    ``mask_threshold`` (IBSI-1), or by nearest neighbour when it is None.
    """
    image = imageio.read_image(converted_image, patient=patient, phase=phase)
    mask = imageio.read_mask(
        raw_mask, image, patient=patient, phase=phase, kind=kind, segment=segment
    )
    grid = imageio.read_image(registered_image, patient=patient, phase=phase)
    out = resample_like(
        mask,
        grid,
        transform=read_transform(transform),
        is_mask=True,
        mask_threshold=mask_threshold,
    )
    n = int(sitk.GetArrayViewFromImage(out).sum())
    if n == 0:
        raise InputError(
            f"{kind} mask is empty after resampling to the registered grid",
            patient=patient,
            phase=phase,
            file=raw_mask,
        )
    log.info("%s %s: %s mask carried, %d voxels", patient, phase, kind, n)
    imageio.write_image(out, dst)


def normalize_image(
    src: PathLike,
    dst: PathLike,
    *,
    normalization: Normalization,
    liver_mask: PathLike | None,
    patient: str,
    phase: str,
) -> None:
    """Normalise intensities: MR z-score/percentile within the liver, CT window (width/level)."""
    image = imageio.read_image(src, patient=patient, phase=phase)
    method = normalization.method
    if method == "window":
        out = window_ct(
            image,
            width=normalization.window_width,
            level=normalization.window_level,
            rescale=normalization.rescale,
        )
    elif method == "none":
        out = image
    else:
        mask = None
        if liver_mask is not None:
            mask = imageio.read_mask(liver_mask, image, patient=patient, phase=phase, kind="liver")
        else:
            log.warning("%s %s: no liver mask, normalising within the foreground", patient, phase)
        try:
            out = normalize_mr(
                image, mask, method=method, percentiles=tuple(normalization.percentiles)
            )
            if normalization.scale != 1.0:
                out = sitk.Cast(out * float(normalization.scale), sitk.sitkFloat32)
        except ValueError as exc:
            raise InputError(str(exc), patient=patient, phase=phase, file=src) from exc
    imageio.write_image(out, dst)


def make_tumor_regions(
    tumor: PathLike,
    liver: PathLike | None,
    dst_index: PathLike,
    dst_ring: PathLike,
    *,
    distance_mm: float,
    patient: str,
    phase: str,
) -> None:
    """Index lesion (largest connected component) and its peritumoral ring clipped to the liver.

    The ring is the index lesion dilated outward by ``distance_mm`` minus every tumor voxel (a
    satellite nodule is not peritumoral liver), intersected with the liver mask when given.
    """
    tumor_img = imageio.read_image(tumor, patient=patient, phase=phase)
    tumor_mask = sitk.Cast(tumor_img > 0.5, sitk.sitkUInt8)
    liver_mask = None
    if liver is not None:
        liver_mask = imageio.read_mask(
            liver, tumor_mask, patient=patient, phase=phase, kind="liver"
        )
    index = largest_component(tumor_mask)
    ring = peritumoral_ring(index, liver_mask, distance_mm=distance_mm)
    ring = sitk.Cast(ring * sitk.Cast(tumor_mask == 0, sitk.sitkUInt8), sitk.sitkUInt8)
    n_ring = int(sitk.GetArrayViewFromImage(ring).sum())
    if n_ring == 0:
        raise InputError(
            "peritumoral ring is empty (tumor outside the liver mask?)",
            patient=patient,
            phase=phase,
            file=tumor,
        )
    imageio.write_image(index, dst_index)
    imageio.write_image(ring, dst_ring)


def split_named_inputs(inputs: Mapping[str, PathLike]) -> dict[str, dict[str, PathLike]]:
    """Group inputs named ``{what}_{phase}`` (``index_tumor_AP``) as ``{what: {phase: path}}``."""
    grouped: dict[str, dict[str, PathLike]] = {}
    for key, path in inputs.items():
        what, _, phase = key.rpartition("_")
        if not what:
            raise ValueError(f"input name {key!r} is not of the form what_phase")
        grouped.setdefault(what, {})[phase] = path
    return grouped


def dice(a: sitk.Image, b: sitk.Image) -> float:
    """Dice overlap 2|A∩B| / (|A| + |B|) of two binary masks on the same grid."""
    x = sitk.GetArrayViewFromImage(a) > 0
    y = sitk.GetArrayViewFromImage(b) > 0
    denom = int(x.sum()) + int(y.sum())
    return float(2 * np.logical_and(x, y).sum() / denom) if denom else float("nan")


def patient_qc(
    *,
    center: str,
    patient: str,
    modality: str,
    inputs: Mapping[str, PathLike],
    dst_png: PathLike,
    dst_json: PathLike,
) -> None:
    """One QC figure (index-lesion slice of every phase, mask contours) and a QC JSON per patient.

    ``inputs`` are named ``{what}_{phase}`` with ``what`` one of ``image`` (normalised image in the
    registered space), ``registration`` (the registration JSON), ``tumor``, ``index_tumor``,
    ``ring``, ``liver``, ``reader2``, ``reader1_repeat``. The JSON records, per phase, grid,
    intensity range, mask volumes (ml), the registration's similarity before/after and the Dice of
    reader 1's outline with reader 2's (``reader2_dice``) and with reader 1's repeat outline
    (``reader1_repeat_dice``).
    """

    named = split_named_inputs(inputs)
    images = named.get("image", {})
    loaded = {ph: imageio.read_image(p, patient=patient, phase=ph) for ph, p in images.items()}
    masks = {
        what: {ph: sitk.ReadImage(str(p)) for ph, p in named.get(what, {}).items()}
        for what in ("tumor", "index_tumor", "ring", "liver", "reader2", "reader1_repeat")
    }
    record: dict[str, Any] = {"center": center, "patient": patient, "modality": modality}
    phases: dict[str, Any] = {}
    for ph, img in loaded.items():
        arr = sitk.GetArrayViewFromImage(img)
        entry: dict[str, Any] = {
            "size": list(img.GetSize()),
            "spacing_mm": [float(s) for s in img.GetSpacing()],
            "intensity_p1": float(np.percentile(arr, 1)),
            "intensity_p99": float(np.percentile(arr, 99)),
        }
        for what, by_phase in masks.items():
            m = by_phase.get(ph)
            entry[f"{what}_ml"] = (
                float((sitk.GetArrayViewFromImage(m) > 0).sum() * np.prod(m.GetSpacing()) / 1000)
                if m is not None
                else None
            )
        for what in ("liver", "index_tumor", "ring"):
            m = masks[what].get(ph)
            values = arr[sitk.GetArrayViewFromImage(m) > 0] if m is not None else arr[:0]
            entry[f"{what}_mean"] = float(values.mean()) if values.size else None
        tumor = masks["tumor"].get(ph)
        for second in ("reader2", "reader1_repeat"):
            other = masks[second].get(ph)
            entry[f"{second}_dice"] = (
                dice(tumor, other) if tumor is not None and other is not None else None
            )
        reg_path = named.get("registration", {}).get(ph)
        if reg_path is not None:
            with open(reg_path) as fh:
                reg = json.load(fh)
            entry["registration"] = {
                k: reg[k] for k in ("method", "refine", "similarity_before", "similarity_after")
            }
            entry["registration"]["rotation_deg"] = reg["transform"].get("rotation_deg")
            entry["registration"]["translation_mm"] = reg["transform"].get("translation_mm")
        phases[ph] = entry
    record["phases"] = phases

    def _first(by_phase: Mapping[str, sitk.Image]) -> sitk.Image | None:
        return next((by_phase[ph] for ph in loaded if ph in by_phase), None)

    plot_patient_qc(
        loaded,
        dst_png,
        tumor=_first(masks["index_tumor"]) or _first(masks["tumor"]),
        liver=_first(masks["liver"]),
        ring=_first(masks["ring"]),
        title=f"{center} / {patient} ({modality})",
    )
    fileio.write_json(record, dst_json)


def qc_table(records: Sequence[Mapping[str, Any]]) -> Any:
    """Flatten per-patient QC records into one row per patient x phase (a pandas DataFrame)."""
    import pandas as pd

    rows = []
    for rec in records:
        for ph, e in rec["phases"].items():
            reg = e.get("registration", {})
            sb, sa = reg.get("similarity_before", {}), reg.get("similarity_after", {})
            rows.append(
                {
                    "center": rec["center"],
                    "patient": rec["patient"],
                    "modality": rec["modality"],
                    "phase": ph,
                    "size_x": e["size"][0],
                    "size_y": e["size"][1],
                    "size_z": e["size"][2],
                    "spacing_x": e["spacing_mm"][0],
                    "spacing_y": e["spacing_mm"][1],
                    "spacing_z": e["spacing_mm"][2],
                    "intensity_p1": e["intensity_p1"],
                    "intensity_p99": e["intensity_p99"],
                    "tumor_ml": e.get("tumor_ml"),
                    "index_tumor_ml": e.get("index_tumor_ml"),
                    "liver_ml": e.get("liver_ml"),
                    "ring_ml": e.get("ring_ml"),
                    "reader2_ml": e.get("reader2_ml"),
                    "reader2_dice": e.get("reader2_dice"),
                    "reader1_repeat_ml": e.get("reader1_repeat_ml"),
                    "reader1_repeat_dice": e.get("reader1_repeat_dice"),
                    "liver_mean": e.get("liver_mean"),
                    "index_tumor_mean": e.get("index_tumor_mean"),
                    "ring_mean": e.get("ring_mean"),
                    "registration_method": reg.get("method"),
                    "rotation_deg": reg.get("rotation_deg"),
                    "ncc_before": sb.get("ncc"),
                    "ncc_after": sa.get("ncc"),
                    "mi_before": sb.get("mi"),
                    "mi_after": sa.get("mi"),
                }
            )
    return pd.DataFrame(rows)


def cohort_summary(
    qc_jsons: Sequence[PathLike],
    qc_pngs: Sequence[PathLike],
    dst_table: PathLike,
    dst_montage: PathLike,
    *,
    per_row: int = 4,
) -> None:
    """Preprocessing summary table (parquet, one row per patient x phase) and a QC montage."""

    records = []
    for p in qc_jsons:
        with open(p) as fh:
            records.append(json.load(fh))
    table = qc_table(records)
    fileio.write_parquet(table, dst_table)
    titles = [f"{r['center']}/{r['patient']}" for r in records]
    plot_cohort_montage(list(qc_pngs), dst_montage, titles=titles, max_per_row=per_row)
