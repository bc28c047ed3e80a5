"""File-level pipeline steps: each reads its inputs, calls the algorithms, writes its outputs.

Workflow scripts call exactly one of these. Every output is written atomically (temporary file,
then rename), so a failed step never leaves a half-written file; every input problem raises
:class:`~hccrad.errors.InputError` naming the patient, phase and file.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from hccrad import imageio, paths
from hccrad.config import Normalization
from hccrad.errors import InputError

log = logging.getLogger(__name__)

PathLike = str | Path


def convert_image(src: PathLike, dst: PathLike, *, patient: str, phase: str) -> None:
    """Read a DICOM series folder, NRRD or NIfTI image and write it as NIfTI (Float32, no tags)."""
    image = imageio.read_image(src, patient=patient, phase=phase)
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
    src: PathLike, dst: PathLike, *, spacing: Sequence[float], patient: str, phase: str
) -> None:
    """Resample an image to ``spacing`` (mm) with linear interpolation."""
    from hccrad.preprocess import resample_to_spacing

    image = imageio.read_image(src, patient=patient, phase=phase)
    out = resample_to_spacing(image, tuple(spacing), is_mask=False)
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
    mask_image: PathLike | None = None,
    patient: str,
    phase: str,
) -> None:
    """N4 bias-field correction; writes the corrected image and the estimated bias field.

    With ``liver_mask`` (a raw mask in the geometry of ``mask_image``, the phase's converted
    image) the field is fitted within the liver, a homogeneous tissue; otherwise within the Otsu
    foreground.
    """
    from hccrad.preprocess import n4_correct, resample_like

    image = imageio.read_image(src, patient=patient, phase=phase)
    mask = None
    if liver_mask is not None:
        if mask_image is None:
            raise ValueError("liver_mask needs mask_image, the image it was drawn on")
        raw = imageio.read_image(mask_image, patient=patient, phase=phase)
        liver = imageio.read_mask(liver_mask, raw, patient=patient, phase=phase, kind="liver")
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
) -> None:
    """Rigidly register ``moving`` onto ``fixed`` (the reference phase) and resample it there.

    The reference phase itself gets the identity transform. The JSON sidecar records the method,
    the transform and image similarity (NCC, mutual information) before and after.
    """
    from hccrad.preprocess import (
        apply_transform,
        image_similarity,
        register_rigid,
        resample_like,
        write_transform,
    )

    fixed_img = imageio.read_image(fixed, patient=patient, phase=phase)
    moving_img = imageio.read_image(moving, patient=patient, phase=phase)
    if is_reference:
        transform = sitk.Euler3DTransform()
        warped = resample_like(moving_img, fixed_img)
        before = after = image_similarity(fixed_img, warped)
    else:
        try:
            transform = register_rigid(
                fixed_img, moving_img, method=method, refine=refine, seed=seed
            )
        except (RuntimeError, ValueError) as exc:
            raise InputError(f"registration failed: {exc}", patient=patient, phase=phase) from exc
        before = image_similarity(fixed_img, resample_like(moving_img, fixed_img))
        warped = apply_transform(moving_img, fixed_img, transform)
        after = image_similarity(fixed_img, warped)
    info = {
        "patient": patient,
        "phase": phase,
        "reference": bool(is_reference),
        "method": "identity" if is_reference else method,
        "refine": bool(refine) and not is_reference,
        "seed": seed,
        "transform": rigid_parameters(transform, image_center(fixed_img)),
        "similarity_before": before,
        "similarity_after": after,
    }
    log.info("%s %s: similarity before %s after %s", patient, phase, before, after)
    imageio.write_image(warped, dst_image)
    write_transform(transform, dst_transform)
    imageio.write_json(info, dst_json)


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
) -> None:
    """Check a mask against its image, then carry it into the registered space in one resampling.

    The mask is checked against the geometry of its own (converted) image, then resampled by
    nearest neighbour directly onto the registered grid through the phase's registration
    transform (one interpolation, never two).
    """
    from hccrad.preprocess import read_transform, resample_like

    image = imageio.read_image(converted_image, patient=patient, phase=phase)
    mask = imageio.read_mask(raw_mask, image, patient=patient, phase=phase, kind=kind)
    grid = imageio.read_image(registered_image, patient=patient, phase=phase)
    out = resample_like(mask, grid, transform=read_transform(transform), is_mask=True)
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
    from hccrad.preprocess import normalize_mr, window_ct

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
    from hccrad.preprocess import largest_component, peritumoral_ring

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
    ``ring``, ``liver``, ``reader2``. The JSON records, per phase, grid, intensity range, mask
    volumes (ml), the registration's similarity before/after and the reader-2 Dice.
    """
    from hccrad.qc import plot_patient_qc

    named = split_named_inputs(inputs)
    images = named.get("image", {})
    loaded = {ph: imageio.read_image(p, patient=patient, phase=ph) for ph, p in images.items()}
    masks = {
        what: {ph: sitk.ReadImage(str(p)) for ph, p in named.get(what, {}).items()}
        for what in ("tumor", "index_tumor", "ring", "liver", "reader2")
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
        tumor, reader2 = masks["tumor"].get(ph), masks["reader2"].get(ph)
        entry["reader2_dice"] = (
            dice(tumor, reader2) if tumor is not None and reader2 is not None else None
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
    imageio.write_json(record, dst_json)


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
    from hccrad.qc import plot_cohort_montage

    records = []
    for p in qc_jsons:
        with open(p) as fh:
            records.append(json.load(fh))
    table = qc_table(records)
    tmp = Path(f"{dst_table}.tmp")
    Path(dst_table).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(tmp, index=False)
    tmp.replace(dst_table)
    titles = [f"{r['center']}/{r['patient']}" for r in records]
    plot_cohort_montage(list(qc_pngs), dst_montage, titles=titles, max_per_row=per_row)


def extract_radiomics(
    image: PathLike,
    regions: Mapping[str, PathLike],
    dst_json: PathLike,
    *,
    params: PathLike,
    patient: str,
    phase: str,
    index_lesion: bool = False,
) -> None:
    """Whole-region PyRadiomics features of one image for each region mask (e.g. tumor, ring).

    With ``index_lesion`` each mask is first reduced to its largest connected component (a
    second reader's raw tumor mask, say). Writes ``{"patient", "phase", "params", "regions":
    {name: {"features", "diagnostics"}}}``.
    """
    from hccrad.preprocess import largest_component
    from hccrad.radiomics import extract_region_features

    img = imageio.read_image(image, patient=patient, phase=phase)
    out: dict[str, Any] = {"patient": patient, "phase": phase, "params": str(params), "regions": {}}
    for name, mask_path in regions.items():
        mask = imageio.read_mask(mask_path, img, patient=patient, phase=phase, kind=name)
        if index_lesion:
            mask = largest_component(mask)
        features, diagnostics = extract_region_features(
            img, mask, params, patient=patient, phase=phase, mask_file=mask_path
        )
        out["regions"][name] = {"features": features, "diagnostics": diagnostics}
        log.info("%s %s %s: %d features", patient, phase, name, len(features))
    imageio.write_json(out, dst_json)


def _region_records(jsons: Sequence[PathLike], reader: str = "reader1") -> list[dict[str, Any]]:
    """Per patient x phase x region records (see hccrad.radiomics) from extraction JSONs.

    Each JSON is one image's extraction (:func:`extract_radiomics`) or one patient's
    (:func:`hccrad.patient.extract_patient_radiomics`: its ``reader`` list of those).
    """
    images = []
    for path in jsons:
        with open(path) as fh:
            rec = json.load(fh)
        images += rec.get(reader, [rec])
    records = []
    for rec in images:
        for region, values in rec["regions"].items():
            records.append(
                {
                    "patient": rec["patient"],
                    "phase": rec["phase"],
                    "region": region,
                    "features": values["features"],
                    "diagnostics": values["diagnostics"],
                }
            )
    return records


def _write_parquet(table: Any, dst: PathLike) -> None:
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{dst}.tmp")
    table.to_parquet(tmp)
    tmp.replace(dst)


def aggregate_radiomics(
    jsons: Sequence[PathLike], dst_features: PathLike, dst_diagnostics: PathLike
) -> None:
    """Cohort radiomics table (one row per patient, ``{phase}_{region}_{feature}`` columns)."""
    from hccrad.radiomics import cohort_diagnostics_table, cohort_feature_table

    records = _region_records(jsons)
    _write_parquet(cohort_feature_table(records), dst_features)
    _write_parquet(cohort_diagnostics_table(records), dst_diagnostics)


def reader_icc(jsons: Sequence[PathLike], dst: PathLike) -> None:
    """Per-feature inter-reader ICC(2,1) and ICC(3,1) of the tumor features, per phase.

    Reader 1's index lesion versus reader 2's (largest component of the second reader's mask),
    same image, same parameters, from per-patient radiomics JSONs
    (:func:`hccrad.patient.extract_patient_radiomics`); one row per ``{phase}_tumor_{feature}``
    with ``icc2_1``, ``icc3_1`` and ``n`` (patients with both readers on that phase).
    """
    from hccrad.icc import feature_icc
    from hccrad.radiomics import cohort_feature_table

    def tumor_table(reader: str) -> Any:
        records = [r for r in _region_records(jsons, reader) if r["region"] == "tumor"]
        return cohort_feature_table(records)

    reader2 = tumor_table("reader2")
    reader1 = tumor_table("reader1").reindex(index=reader2.index, columns=reader2.columns)
    _write_parquet(feature_icc(reader1, reader2), dst)


# ------------------------------------------------------------------------------------------------
# voxel maps and habitats
# ------------------------------------------------------------------------------------------------


def compute_voxel_maps(
    image: PathLike,
    mask: PathLike,
    maps_dir: PathLike,
    dst_image: PathLike,
    dst_mask: PathLike,
    *,
    spacing: float,
    settings: Any,
    engine: str = "fast",
    patient: str,
    phase: str,
) -> None:
    """Voxel feature maps of one image inside the index lesion, on an isotropic grid.

    The image (linear) and the mask (nearest neighbour) are resampled to ``spacing`` mm; both are
    written (``dst_image``, ``dst_mask``), and ``maps_dir`` receives one NIfTI per map plus
    ``voxels.parquet`` (see :func:`hccrad.voxelmaps.write_voxel_maps`).

    Raises:
        InputError: When the lesion vanishes at the coarser spacing.
    """
    from hccrad.preprocess import resample_to_spacing
    from hccrad.voxelmaps import write_voxel_maps

    img = imageio.read_image(image, patient=patient, phase=phase)
    msk = imageio.read_mask(mask, img, patient=patient, phase=phase, kind="tumor")
    img2 = resample_to_spacing(img, (spacing,) * 3)
    msk2 = resample_to_spacing(msk, (spacing,) * 3, is_mask=True)
    n = int(np.count_nonzero(sitk.GetArrayViewFromImage(msk2)))
    if n == 0:
        raise InputError(
            f"the tumor has no voxel at {spacing} mm", patient=patient, phase=phase, file=mask
        )
    imageio.write_image(img2, dst_image)
    imageio.write_image(msk2, dst_mask)
    write_voxel_maps(
        dst_image, dst_mask, maps_dir, settings, engine=engine, patient=patient, phase=phase
    )
    log.info("%s %s: voxel maps of %d voxels at %s mm", patient, phase, n, spacing)


def habitat_feature_matrix(
    maps_dirs: Mapping[str, PathLike],
    images: Mapping[str, PathLike],
    mask: PathLike,
    features: str | Sequence[str],
    *,
    patient: str,
) -> tuple[Any, np.ndarray, list[str]]:
    """The voxel x feature matrix of one patient's tumor for habitat clustering.

    Columns are ``{phase}_{map}`` (the phase's ``voxels.parquet``) and ``{phase}_intensity`` (the
    voxel's value in the phase's resampled image). ``features="all"`` takes every map of every
    phase (no intensities).

    Returns:
        ``(coords, X, names)``: the ``z, y, x`` table of the tumor voxels, the matrix, the names.

    Raises:
        InputError: When phases disagree on the tumor voxels or a feature is missing.
    """
    import pandas as pd

    from hccrad.habitats import INTENSITY

    ref = imageio.read_mask(mask, imageio.read_image(mask), patient=patient)
    inside = sitk.GetArrayFromImage(ref) != 0
    z, y, x = np.nonzero(inside)
    coords = pd.DataFrame({"z": z, "y": y, "x": x})
    columns: dict[str, np.ndarray] = {}
    for phase, folder in maps_dirs.items():
        table = pd.read_parquet(Path(folder) / "voxels.parquet")
        if not np.array_equal(table[["z", "y", "x"]].to_numpy(), coords.to_numpy()):
            raise InputError(
                "voxel maps and tumor mask disagree on the tumor voxels",
                patient=patient,
                phase=phase,
                file=Path(folder) / "voxels.parquet",
            )
        for col in table.columns.drop(["z", "y", "x"]):
            columns[f"{phase}_{col}"] = table[col].to_numpy(np.float64)
    for phase, path in images.items():
        arr = sitk.GetArrayFromImage(imageio.read_image(path, patient=patient, phase=phase))
        columns[f"{phase}_{INTENSITY}"] = arr[inside].astype(np.float64)
    if isinstance(features, str):
        if features != "all":
            raise ValueError(f"features must be 'all' or a list of names, not {features!r}")
        names = [c for c in columns if not c.endswith(f"_{INTENSITY}")]
    else:
        names = list(features)
    missing = [n for n in names if n not in columns]
    if missing:
        raise InputError(f"habitat features not computed: {missing}", patient=patient, file=mask)
    return coords, np.column_stack([columns[n] for n in names]), names


def cluster_habitats(
    maps_dirs: Mapping[str, PathLike],
    images: Mapping[str, PathLike],
    mask: PathLike,
    dst_clusters: PathLike,
    dst_metrics: PathLike,
    dst_centroids: PathLike,
    *,
    features: str | Sequence[str],
    settings: Any,
    patient: str,
) -> None:
    """Per-patient K-means for every k of the range (see :mod:`hccrad.habitats`).

    Writes ``clusters.parquet`` (``z, y, x`` + one label column ``k{k}`` per k), the validity
    indices per k (TSV) and the raw-unit cluster means per k (parquet).
    """
    import pandas as pd

    from hccrad.habitats import cluster_patient

    coords, X, names = habitat_feature_matrix(maps_dirs, images, mask, features, patient=patient)
    try:
        result = cluster_patient(X, names, settings)
    except ValueError as exc:
        raise InputError(str(exc), patient=patient, file=mask) from exc
    labels = coords.assign(**{f"k{k}": lab for k, lab in result.labels.items()})
    _write_parquet(labels, dst_clusters)
    result.metrics.insert(0, "patient", patient)
    tmp = Path(f"{dst_metrics}.tmp")
    result.metrics.to_csv(tmp, sep="\t", index=False)
    tmp.replace(dst_metrics)
    cents = pd.concat(
        [result.centroid_table(k).assign(k=k) for k in result.labels], ignore_index=True
    )
    _write_parquet(cents, dst_centroids)
    best = result.metrics.set_index("k")
    log.info(
        "%s: %d voxels, %d features; silhouette by k %s",
        patient,
        len(X),
        len(names),
        best["silhouette"].round(3).to_dict(),
    )


def select_habitat_k(
    metrics: Sequence[PathLike],
    centroids: Sequence[PathLike],
    dst_summary: PathLike,
    dst_reference: PathLike,
    dst_png: PathLike,
    *,
    fixed_k: int | None,
    seed: int,
    order_by: str | None,
) -> None:
    """Cohort k (vote of the three indices, or the configured k) and the reference habitats."""
    import pandas as pd

    from hccrad.habitat_figures import plot_k_selection
    from hccrad.habitats import choose_k, reference_centroids

    table = pd.concat([pd.read_csv(p, sep="\t") for p in metrics], ignore_index=True)
    k, summary = choose_k(table, fixed_k)
    tmp = Path(f"{dst_summary}.tmp")
    summary.to_csv(tmp, sep="\t", index=False)
    tmp.replace(dst_summary)
    per_patient = []
    features: list[str] = []
    for path in centroids:
        cents = pd.read_parquet(path)
        cents = cents[cents["k"] == k]
        if cents.empty:
            log.warning("%s: no clustering at k = %d; left out of the reference", path, k)
            continue
        features = [c for c in cents.columns if c not in ("cluster", "size", "k")]
        per_patient.append(cents[features].to_numpy(np.float64))
    if order_by is None:
        # default: the (first) local mean intensity, else a raw intensity, else the first feature
        means = [f for f in features if f.endswith("_firstorder_Mean")]
        raw = [f for f in features if f.endswith("_intensity")]
        order_by = (means or raw or features)[0]
    reference = reference_centroids(per_patient, features, k, seed=seed, order_by=order_by)
    _write_parquet(reference.to_table(), dst_reference)
    plot_k_selection(table, summary, k, dst_png)
    log.info("k = %d from %d patients (%s)", k, table["patient"].nunique(), dst_summary)


def assign_habitats(
    clusters: PathLike,
    centroids: PathLike,
    reference: PathLike,
    mask: PathLike,
    image: PathLike,
    phase_images: Mapping[str, PathLike],
    dst_labels: PathLike,
    dst_masks: PathLike,
    dst_stats: PathLike,
    dst_png: PathLike,
    *,
    patient: str,
    spacing: float,
    dst_deep: PathLike | None = None,
    deep_specs: Sequence[Any] = (),
    deep_images: Mapping[str, PathLike] | None = None,
    deep_scale: float = 1.0,
    center: str = "",
    root: PathLike = "results",
) -> None:
    """Relabel one patient's clusters to the cohort's reference habitats and summarise them.

    Writes the subregion label map (0 outside the tumor, 1..k), one binary mask per subregion
    (``dst_masks/subregion_{i}.nii.gz``), ``stats.json`` (voxels, fraction and volume per
    subregion, and the mean intensity of every phase's image inside each subregion, the label
    map being carried onto that image's grid by nearest neighbour) and an overlay figure.

    With ``dst_deep``, also the per-subregion deep-input tensors of ``deep_specs`` (the
    ``region: habitats`` entries of ``deep.inputs``, from the normalised ``deep_images``;
    :func:`build_subregion_inputs`) and their manifest ``dst_deep`` (empty without specs).
    """
    import pandas as pd

    from hccrad.habitat_figures import plot_habitat_overlay
    from hccrad.habitats import Reference, match_clusters

    ref = Reference.from_table(pd.read_parquet(reference))
    k = len(ref.centers)
    labels = pd.read_parquet(clusters)
    if f"k{k}" not in labels:
        raise InputError(f"no clustering at the cohort's k = {k}", patient=patient, file=clusters)
    cents = pd.read_parquet(centroids)
    cents = cents[cents["k"] == k].sort_values("cluster")
    subregion = match_clusters(cents[ref.features].to_numpy(np.float64), ref)
    sub = subregion[labels[f"k{k}"].to_numpy()]
    img = imageio.read_image(image, patient=patient)
    msk = imageio.read_mask(mask, img, patient=patient)
    arr = np.zeros(sitk.GetArrayViewFromImage(msk).shape, np.uint8)
    arr[labels["z"], labels["y"], labels["x"]] = sub
    label_img = sitk.GetImageFromArray(arr)
    label_img.CopyInformation(msk)
    imageio.write_image(label_img, dst_labels)
    out = Path(dst_masks)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(1, k + 1):
        imageio.write_image(
            sitk.Cast(label_img == i, sitk.sitkUInt8), out / f"subregion_{i}.nii.gz"
        )
    voxel_ml = spacing**3 / 1000.0
    n = len(sub)
    stats: dict[str, Any] = {"patient": patient, "k": k, "n_voxels": n, "subregions": {}}
    means: dict[str, np.ndarray] = {}
    for phase, path in phase_images.items():
        pimg = imageio.read_image(path, patient=patient, phase=phase)
        lab = sitk.Resample(label_img, pimg, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        la = sitk.GetArrayViewFromImage(lab).ravel()
        va = sitk.GetArrayViewFromImage(pimg).ravel().astype(np.float64)
        sums = np.bincount(la, weights=va, minlength=k + 1)
        counts = np.bincount(la, minlength=k + 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            means[phase] = sums / counts
    for i in range(1, k + 1):
        count = int(np.count_nonzero(sub == i))
        stats["subregions"][str(i)] = {
            "n_voxels": count,
            "fraction": count / n,
            "volume_ml": count * voxel_ml,
            **{f"{phase}_mean": float(m[i]) for phase, m in means.items()},
        }
    if dst_deep is not None:
        from hccrad.manifest import OutputSet

        with OutputSet(dst_deep, patient=patient, stage="habitat_deep_inputs") as deep_out:
            if deep_specs:
                if deep_images is None:
                    raise ValueError("deep_specs need deep_images")
                missing = build_subregion_inputs(
                    label_img, k, deep_images, deep_out, specs=deep_specs, scale=deep_scale,
                    center=center, patient=patient, root=root,
                )  # fmt: skip
                if missing:
                    stats["subregions_without_deep_input"] = missing
    imageio.write_json(stats, dst_stats)
    plot_habitat_overlay(img, label_img, dst_png, title=f"{patient}: {k} habitats")
    fractions = [round(s["fraction"], 3) for s in stats["subregions"].values()]
    log.info("%s: %d habitats, fractions %s", patient, k, fractions)


def aggregate_habitats(stats: Sequence[PathLike], dst: PathLike) -> None:
    """Cohort habitat features: one row per patient, ``habitat{i}_{fraction|volume_ml|...}``."""
    import pandas as pd

    rows = []
    for path in stats:
        with open(path) as fh:
            rec = json.load(fh)
        row: dict[str, Any] = {"patient": rec["patient"], "habitat_k": rec["k"]}
        for i, values in rec["subregions"].items():
            for name, value in values.items():
                if name != "n_voxels":
                    row[f"habitat{i}_{name}"] = value
        rows.append(row)
    _write_parquet(pd.DataFrame(rows).set_index("patient").sort_index(), dst)


# ------------------------------------------------------------------------------------------------
# deep-learning inputs
# ------------------------------------------------------------------------------------------------


def build_deep_input(
    images: Mapping[str, PathLike],
    mask: PathLike,
    dst: PathLike,
    *,
    spec: Any,
    scale: float,
    patient: str,
) -> None:
    """Write one patient's input tensor (``.npz``) as configured by a ``deep.inputs`` entry.

    Args:
        images: Phase -> registered normalised image (one phase for slices/cube builders; the
            stacked phases, in order, for multiphase).
        mask: Region mask on the same grid.
        dst: Destination ``.npz``.
        spec: The :class:`hccrad.config.DeepInputSpec`.
        scale: Intensity divisor (:attr:`hccrad.config.Normalization.unit_scale`).
        patient: Patient id (errors and provenance).

    Raises:
        InputError: When the region is empty.
    """
    phases = list(images)
    loaded = {ph: imageio.read_image(p, patient=patient, phase=ph) for ph, p in images.items()}
    region = imageio.read_mask(mask, loaded[phases[0]], patient=patient, phase=phases[0])
    if not sitk.GetArrayViewFromImage(region).any():
        raise InputError(
            f"empty {spec.region} region: no {spec.name} input",
            patient=patient,
            phase=phases[0],
            file=mask,
        )
    _build_deep_tensor(loaded, region, dst, spec=spec, scale=scale, patient=patient)


def _build_deep_tensor(
    loaded: Mapping[str, sitk.Image],
    region: sitk.Image,
    dst: PathLike,
    *,
    spec: Any,
    scale: float,
    patient: str,
    meta: Mapping[str, Any] | None = None,
) -> None:
    """:func:`build_deep_input` on images already read and a non-empty region mask."""
    from hccrad.deep import inputs as builders

    phases = list(loaded)
    meta = {
        "patient": patient,
        "input": spec.name,
        "region": spec.region,
        "phases": phases,
        **(meta or {}),
    }
    common = {
        "size": spec.size,
        "margin_mm": spec.margin_mm,
        "scale": scale,
        "mask_to_region": spec.mask_to_region,
        "meta": meta,
    }
    if spec.builder == "slices":
        out = builders.build_slices(
            loaded[phases[0]],
            region,
            offsets=list(spec.offsets) if spec.offsets is not None else None,
            neighbours=spec.neighbours,
            **common,
        )
    elif spec.builder == "cube":
        out = builders.build_cube(loaded[phases[0]], region, **common)
    elif spec.builder == "multiphase":
        out = builders.build_multiphase(loaded, region, k=spec.k, **common)
    else:
        raise ValueError(f"unknown builder {spec.builder!r}")
    out.save(dst)
    log.info("%s %s: %s %s", patient, spec.name, out.kind, tuple(out.x.shape))


def build_subregion_inputs(
    labels: sitk.Image,
    k: int,
    images: Mapping[str, PathLike],
    out: Any,
    *,
    specs: Sequence[Any],
    scale: float,
    center: str,
    patient: str,
    root: PathLike = "results",
) -> dict[str, list[int]]:
    """The ``region: habitats`` deep inputs of one patient: one tensor per phase and subregion.

    The subregion label map (habitat grid) is carried onto each phase's normalised image by
    nearest neighbour; subregion ``i``'s tensor is the input's builder (slices or cube) applied
    to the mask ``label == i``, written to ``{phase}/deep/{input}_h{i}.npz`` and listed in the
    manifest under ``deep/{input}/{phase}/h{i}`` (:func:`hccrad.patient.subregion_key`). A
    subregion with no voxel on the image grid (a habitat smaller than one image voxel) gets no
    tensor: the deep models leave that patient out of that subregion, and its features are
    missing (imputed by the studies from the training patients).

    Args:
        labels: Subregion labels (0 outside the tumor, 1..k).
        k: The cohort's number of habitats.
        images: Phase -> registered normalised image, every phase the inputs need.
        out: The :class:`hccrad.manifest.OutputSet` receiving the files.
        specs: :class:`hccrad.config.DeepInputSpec` entries with ``region: habitats``.
        scale: Intensity divisor (:attr:`hccrad.config.Normalization.unit_scale`).

    Returns:
        ``{"{input}/{phase}": [subregions without a tensor]}``.
    """
    from hccrad.patient import subregion_key

    missing: dict[str, list[int]] = {}
    grids: dict[str, tuple[sitk.Image, sitk.Image]] = {}  # phase -> image, labels on its grid
    for spec in specs:
        for phase in spec.phases:
            if phase not in grids:  # read and carried once per phase, shared by the inputs
                img = imageio.read_image(images[phase], patient=patient, phase=phase)
                grids[phase] = (
                    img,
                    sitk.Resample(labels, img, sitk.Transform(), sitk.sitkNearestNeighbor, 0),
                )
            img, lab = grids[phase]
            lab_arr = sitk.GetArrayViewFromImage(lab)
            for i in range(1, k + 1):
                if not (lab_arr == i).any():
                    missing.setdefault(f"{spec.name}/{phase}", []).append(i)
                    log.warning(
                        "%s %s %s: habitat %d has no voxel on the image grid: no tensor",
                        patient, spec.name, phase, i,
                    )  # fmt: skip
                    continue
                region = sitk.Cast(lab == i, sitk.sitkUInt8)
                dst = out.add(
                    subregion_key(spec.name, phase, i),
                    paths.image_path(
                        "deep",
                        f"{spec.name}_h{i}.npz",
                        center=center,
                        patient=patient,
                        phase=phase,
                        root=root,
                    ),
                )
                _build_deep_tensor(
                    {phase: img}, region, dst, spec=spec, scale=scale, patient=patient,
                    meta={"subregion": i, "k": k},
                )  # fmt: skip
    return missing


# ------------------------------------------------------------------------------------------------
# segmentation (3-D U-Net)
# ------------------------------------------------------------------------------------------------


def segmentation_holdout(patient: str, seed: int, fraction: float) -> bool:
    """Whether a patient with masks is held out of U-Net training (for the Dice report).

    A stable per-patient draw (``hccrad.habitats.derive_seed``), so adding patients never moves
    another patient between training and hold-out.
    """
    from hccrad.habitats import derive_seed

    return derive_seed(seed, "segmentation-holdout", patient) / 2**32 < fraction


def train_segmentation(
    cases: Mapping[str, Mapping[str, PathLike]],
    out_dir: PathLike,
    *,
    overrides: Mapping[str, Any],
    seed: int,
    threads: int = 1,
) -> None:
    """Train the liver + tumor U-Net on ``{patient: {"image", "liver", "tumor"}}``."""
    from hccrad.deep.segmentation import SegCase, SegConfig, train_segmentation

    config = SegConfig.from_dict({"seed": seed, "num_threads": threads, **overrides})
    items = [
        SegCase(patient=p, image=c["image"], liver=c["liver"], tumor=c["tumor"])
        for p, c in sorted(cases.items())
    ]
    metrics = train_segmentation(config, items, out_dir)
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
    from hccrad.deep.segmentation import segment

    img = imageio.read_image(image, patient=patient, phase=phase)
    result = segment(checkpoint, img, name=f"{patient} {phase}")
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

    from hccrad.deep.segmentation import dice
    from hccrad.preprocess import largest_component

    if checkpoint is not None:
        from hccrad.deep.segmentation import load_model

        if dst_predictions is None:
            raise ValueError("segmenting the held-out patients needs dst_predictions")
        out = Path(dst_predictions)
        out.mkdir(parents=True, exist_ok=True)
        model = load_model(checkpoint) if cases else None
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
                "dice_liver": dice(pred_liver, liver, labels=[1])[1],
                "dice_tumor": dice(pred_tumor, tumor, labels=[1])[1],
                "dice_index_tumor": dice(pred_index, largest_component(tumor), labels=[1])[1],
            }
        )
    table = pd.DataFrame(rows, columns=["patient", "dice_liver", "dice_tumor", "dice_index_tumor"])
    if len(table):
        mean = table.drop(columns="patient").mean().to_dict()
        table = pd.concat([table, pd.DataFrame([{"patient": "mean", **mean}])], ignore_index=True)
    _write_parquet(table.set_index("patient"), dst)
    log.info("segmentation Dice on %d held-out patients:\n%s", len(rows), table.round(3))


# ------------------------------------------------------------------------------------------------
# deep models (per study): training, features, MIL features, Grad-CAM
# ------------------------------------------------------------------------------------------------


def _training_labels(
    inputs: Mapping[str, PathLike], splits: PathLike, clinical: PathLike, label: str
) -> tuple[list[str], list[int]]:
    """The training patients (split ``train``, label known, input present) and their labels."""
    import pandas as pd

    from hccrad.sheets import read_clinical

    split = pd.read_parquet(splits)
    split = split.set_index("patient")["split"] if "patient" in split else split["split"]
    table = read_clinical(clinical).set_index("patient")
    if label not in table:
        raise InputError(f"label column {label!r} not in the clinical table", file=clinical)
    train = [p for p in sorted(inputs) if split.get(p) == "train"]
    y = pd.to_numeric(table[label].reindex(train), errors="coerce")
    keep = [p for p in train if pd.notna(y.get(p))]
    return keep, [int(y[p]) for p in keep]


def train_deep_model(
    inputs: Mapping[str, PathLike],
    splits: PathLike,
    clinical: PathLike,
    out_dir: PathLike,
    *,
    label: str,
    preset: str,
    overrides: Mapping[str, Any],
    seed: int,
    threads: int = 1,
    mark_untrained: bool = False,
) -> None:
    """Train one deep model of a study on its **training** patients only.

    Args:
        inputs: ``{patient: input .npz}`` of every patient of the study that has the input.
        splits: The study's ``splits.parquet`` (``patient, split``).
        clinical: The clinical table (labels).
        out_dir: Receives ``checkpoint.pt``, ``metrics.json``, ``curves.png``, ``config.json``
            and ``patients.json`` (the training patients and labels used).
        label: Label column (0/1).
        preset: A :data:`hccrad.deep.train.STUDY_PRESETS` name.
        overrides: :class:`~hccrad.deep.train.TrainConfig` overrides (e.g. CPU-sized epochs).
        seed: Training seed.
        threads: Torch CPU threads.
        mark_untrained: Without two patients of each class, write an "untrained" checkpoint
            (and say why) instead of raising.
    """
    import torch

    from hccrad.deep.train import TrainConfig, train

    patients, labels = _training_labels(inputs, splits, clinical, label)
    if len(set(labels)) < 2 or min(labels.count(0), labels.count(1)) < 2:
        reason = (
            f"deep model needs both classes of {label!r} (2+ patients each) among its training "
            f"patients ({len(patients)} patients, {sum(labels)} cases)"
        )
        if not mark_untrained:
            raise InputError(reason, file=splits)
        # a tiny or one-class training split: record it instead of failing the workflow; the
        # outputs step then writes constant features (the study reports the degenerate split)
        log.warning("%s: not trained", reason)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        torch.save({"untrained": True, "reason": reason}, out / "checkpoint.pt")
        info = {"trained": False, "reason": reason}
        imageio.write_json(info, out / "metrics.json")
        imageio.write_json({"untrained": True, "preset": preset, **overrides}, out / "config.json")
        imageio.write_json({"label": label, "patients": patients, "labels": labels},
                           out / "patients.json")  # fmt: skip
        _placeholder_png(out / "curves.png", f"not trained: {reason}")
        return
    torch.set_num_threads(max(1, threads))
    config = TrainConfig.preset(preset, **{"seed": seed, **overrides})
    metrics = train(config, [inputs[p] for p in patients], labels, out_dir)
    # provenance: exactly who the model saw (its validation fold is carved from these)
    imageio.write_json(
        {"label": label, "patients": patients, "labels": labels}, Path(out_dir) / "patients.json"
    )
    log.info(
        "%s on %d training patients: best epoch %s of %d",
        preset,
        len(patients),
        metrics.get("best_epoch"),
        len(metrics.get("epochs", [])),
    )


def train_subregion_models(
    inputs: Mapping[int, Mapping[str, PathLike]],
    splits: PathLike,
    clinical: PathLike,
    out_dir: PathLike,
    *,
    label: str,
    preset: str,
    overrides: Mapping[str, Any],
    seed: int,
    threads: int = 1,
    mark_untrained: bool = False,
) -> None:
    """One deep model per habitat subregion (the habitat study's per-subregion networks).

    Each subregion's network is trained exactly as :func:`train_deep_model` trains one model
    (same preset, overrides and seed; **training** patients only; its validation fold carved
    from them) on that subregion's tensors. The outputs are those of one model: ``checkpoint.pt``
    bundles the subregions' checkpoints (:func:`hccrad.deep.train.write_subregion_bundle`),
    ``metrics.json``, ``config.json`` and ``patients.json`` hold one entry per subregion, and
    ``curves.png`` draws every subregion's curves.

    Args:
        inputs: Subregion -> ``{patient: tensor}`` (:func:`hccrad.patient.subregion_input_files`).
        Others: As :func:`train_deep_model`.
    """
    import shutil
    import tempfile

    import torch

    from hccrad.deep.train import plot_subregion_curves, write_subregion_bundle

    if not inputs:
        raise InputError(
            "no per-subregion input tensors: no patient has a habitat subregion tensor",
            file=splits,
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    members: dict[int, dict[str, Any]] = {}
    metrics: dict[str, Any] = {}
    configs: dict[str, Any] = {}
    who: dict[str, Any] = {}
    histories: dict[int, list[dict[str, Any]]] = {}
    tmp = Path(tempfile.mkdtemp(prefix=".subregions.", dir=out))
    try:
        for i, sub_inputs in inputs.items():
            log.info("habitat %d: %d patients with a tensor", i, len(sub_inputs))
            sub = tmp / f"h{i}"
            train_deep_model(
                sub_inputs, splits, clinical, sub, label=label, preset=preset,
                overrides=overrides, seed=seed, threads=threads, mark_untrained=mark_untrained,
            )  # fmt: skip
            members[i] = torch.load(sub / "checkpoint.pt", map_location="cpu", weights_only=False)
            for name, store in (("metrics", metrics), ("config", configs), ("patients", who)):
                with open(sub / f"{name}.json") as fh:
                    store[str(i)] = json.load(fh)
            if "history" in metrics[str(i)]:
                histories[i] = metrics[str(i)]["history"]
        write_subregion_bundle(members, out / "checkpoint.pt")
        trained = [i for i, m in members.items() if not m.get("untrained")]
        imageio.write_json(
            {"per_subregion": True, "trained_subregions": trained, "subregions": metrics},
            out / "metrics.json",
        )
        imageio.write_json({"per_subregion": True, "subregions": configs}, out / "config.json")
        imageio.write_json({"label": label, "subregions": who}, out / "patients.json")
        if histories:
            plot_subregion_curves(histories, out / "curves.png")
        else:
            _placeholder_png(out / "curves.png", "no subregion model trained (see metrics.json)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def deep_subregion_outputs(
    checkpoint: PathLike,
    inputs: Mapping[int, Mapping[str, PathLike]],
    dst_features: PathLike,
    dst_predictions: PathLike,
    *,
    threads: int = 1,
) -> None:
    """Deep features and predictions of every patient from a per-subregion bundle.

    ``features.parquet``: index patient, columns ``h{i}_deep_{j}`` (subregion ``i``'s frozen
    penultimate activations; missing where the patient has no tensor for that subregion, which
    the studies impute from the training patients; a subregion whose model could not be trained
    gives the constant ``h{i}_deep_0``). ``predictions.parquet``: ``subregion, patient, prob``.
    """
    import pandas as pd
    import torch

    from hccrad.deep.extract import extract_features
    from hccrad.deep.train import model_from_checkpoint, predict, read_subregion_bundle

    torch.set_num_threads(max(1, threads))
    bundle = read_subregion_bundle(checkpoint)
    feats, preds = [], []
    for i, ckpt in bundle.items():
        sub = inputs.get(i, {})
        patients = sorted(sub)
        if not patients:
            continue
        index = pd.Index(patients, name="patient")
        if ckpt.get("untrained"):
            feats.append(pd.DataFrame({f"h{i}_deep_0": 0.0}, index=index))
            preds.append(pd.DataFrame({"subregion": i, "patient": patients, "prob": 0.5}))
            continue
        model, _ = model_from_checkpoint(ckpt, device="auto", source=checkpoint)
        paths_ = [sub[p] for p in patients]
        feats.append(extract_features(model, paths_, patients).add_prefix(f"h{i}_"))
        pred = predict(model, paths_, patients=patients).drop(columns="path")
        pred.insert(0, "subregion", i)
        preds.append(pred)
    if not feats:
        raise InputError("no patient has a tensor of a modelled subregion", file=checkpoint)
    table = pd.concat(feats, axis=1, join="outer").sort_index()
    table.index.name = "patient"
    _write_parquet(table, dst_features)
    _write_parquet(pd.concat(preds, ignore_index=True), dst_predictions)
    log.info("%d patients: %d deep features over %d subregions", len(table), table.shape[1],
             len(bundle))  # fmt: skip


def deep_subregion_gradcam(
    checkpoint: PathLike,
    inputs: Mapping[int, Mapping[str, PathLike]],
    out_dir: PathLike,
    *,
    max_patients: int = 6,
) -> None:
    """Grad-CAM overlays ``{patient}_h{i}.png`` of every subregion's model for the first
    ``max_patients`` patients (sorted) that have that subregion's tensor."""
    from hccrad.deep.gradcam import gradcam_overlay
    from hccrad.deep.inputs import DeepInput
    from hccrad.deep.train import model_from_checkpoint, read_subregion_bundle

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    drawn = 0
    for i, ckpt in read_subregion_bundle(checkpoint).items():
        if ckpt.get("untrained"):
            _placeholder_png(out / f"untrained_h{i}.png", f"habitat {i}: model not trained")
            continue
        model, _ = model_from_checkpoint(ckpt, device="cpu", source=checkpoint)
        for patient in sorted(inputs.get(i, {}))[:max_patients]:
            x = DeepInput.load(inputs[i][patient]).x
            gradcam_overlay(model, x, out / f"{patient}_h{i}.png", title=f"{patient}, habitat {i}")
            drawn += 1
    log.info("Grad-CAM overlays: %d in %s", drawn, out)


def deep_model_outputs(
    checkpoint: PathLike,
    inputs: Mapping[str, PathLike],
    splits: PathLike,
    dst_features: PathLike,
    dst_predictions: PathLike,
    dst_mil: PathLike | None = None,
    *,
    mil_bins: int = 10,
    mil_words: int = 10,
    threads: int = 1,
) -> None:
    """Deep features and predictions of every patient; MIL features for slice models.

    Writes ``features.parquet`` (index patient, ``deep_i``: frozen penultimate activations),
    ``predictions.parquet`` (per patient, or per instance for MIL: ``prob``) and, for slice-level
    (MIL) models, ``mil_features.parquet`` (PLH + BoW TF-IDF, the IDF fitted on the training
    patients' bags only, :mod:`hccrad.deep.mil`).
    """
    import pandas as pd
    import torch

    from hccrad.deep.extract import extract_features
    from hccrad.deep.mil import MILFeatures, bags_from_table
    from hccrad.deep.train import predict

    torch.set_num_threads(max(1, threads))
    patients = sorted(inputs)
    paths_ = [inputs[p] for p in patients]
    if is_untrained(checkpoint):
        index = pd.Index(patients, name="patient")
        _write_parquet(pd.DataFrame({"deep_0": 0.0}, index=index), dst_features)
        _write_parquet(pd.DataFrame({"patient": patients, "prob": 0.5}), dst_predictions)
        if dst_mil is not None:
            _write_parquet(pd.DataFrame({"plh_0": 1.0}, index=index), dst_mil)
        log.warning("untrained model: constant features for %d patients", len(patients))
        return
    feats = extract_features(checkpoint, paths_, patients, device="auto")
    _write_parquet(feats, dst_features)
    pred = predict(checkpoint, paths_, patients=patients, device="auto")
    _write_parquet(pred.drop(columns="path"), dst_predictions)
    if dst_mil is not None:
        if "instance" not in pred:
            raise ValueError("MIL features need a slice-level model (input_kind 'slice')")
        names, bags = bags_from_table(pred)
        split = pd.read_parquet(splits).set_index("patient")["split"]
        train = [b for n, b in zip(names, bags, strict=True) if split.get(n) == "train"]
        mil = MILFeatures(plh_bins=mil_bins, bow_words=mil_words).fit(train)
        table = pd.DataFrame(
            mil.transform(bags), index=pd.Index(names, name="patient"),
            columns=list(mil.get_feature_names_out()),
        )  # fmt: skip
        _write_parquet(table, dst_mil)
    log.info("%d patients: %d deep features", len(patients), feats.shape[1])


def deep_gradcam(
    checkpoint: PathLike,
    inputs: Mapping[str, PathLike],
    out_dir: PathLike,
    *,
    max_patients: int = 6,
) -> None:
    """Grad-CAM overlays (``{patient}.png``) for the first ``max_patients`` patients (sorted)."""
    from hccrad.deep.gradcam import gradcam_overlay
    from hccrad.deep.inputs import DeepInput
    from hccrad.deep.train import resolve_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if is_untrained(checkpoint):
        _placeholder_png(out / "untrained.png", "model not trained (see its metrics.json)")
        return
    model, _kind = resolve_model(checkpoint, "cpu")
    for patient in sorted(inputs)[:max_patients]:
        x = DeepInput.load(inputs[patient]).x
        gradcam_overlay(model, x, out / f"{patient}.png", title=patient)
    log.info("Grad-CAM overlays for %d patients in %s", min(len(inputs), max_patients), out)


def is_untrained(checkpoint: PathLike) -> bool:
    """Whether ``checkpoint`` is the marker :func:`train_deep_model` writes when it cannot train."""
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return isinstance(ckpt, dict) and bool(ckpt.get("untrained"))


def _placeholder_png(path: PathLike, text: str) -> None:
    """A small PNG that says why a figure is missing (declared outputs always exist)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(6, 1.5))
    fig.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=9)
    tmp = Path(f"{path}.tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)
