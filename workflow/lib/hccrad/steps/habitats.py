"""Habitat steps: voxel feature maps, per-patient clustering, the cohort's k and reference
habitats, each patient's subregions (masks, statistics, per-subregion deep inputs), the cohort
table."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from hccrad import fileio, imageio
from hccrad.errors import InputError
from hccrad.fileio import PathLike
from hccrad.habitat_figures import plot_habitat_overlay, plot_k_selection
from hccrad.habitats import (
    INTENSITY,
    Reference,
    choose_k,
    cluster_patient,
    match_clusters,
    reference_centroids,
)
from hccrad.manifest import OutputSet
from hccrad.preprocess import resample_to_spacing
from hccrad.steps.deep_inputs import build_subregion_inputs
from hccrad.voxelmaps import write_voxel_maps

log = logging.getLogger(__name__)


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
    written (``dst_image``, ``dst_mask``), and ``maps_dir`` receives one NIfTI per map (cropped to
    the lesion plus the kernel radius) and ``voxels.parquet`` (see
    :func:`hccrad.voxelmaps.write_voxel_maps`).

    Raises:
        InputError: When the lesion vanishes at the coarser spacing.
    """
    img = imageio.read_image(image, patient=patient, phase=phase)
    msk = imageio.read_mask(mask, img, patient=patient, phase=phase, kind="tumor")
    img2 = resample_to_spacing(img, (spacing,) * 3)
    msk2 = resample_to_spacing(msk, (spacing,) * 3, is_mask=True)
    n = int(np.count_nonzero(sitk.GetArrayViewFromImage(msk2)))
    if n == 0:
        raise InputError(
            f"the tumor has no voxel at {spacing} mm", patient=patient, phase=phase, file=mask
        )
    # maps of the resampled images in memory (not read back from files); the images are written
    # while the maps are
    write_voxel_maps(
        img2,
        msk2,
        maps_dir,
        settings,
        engine=engine,
        patient=patient,
        phase=phase,
        images={dst_image: img2, dst_mask: msk2},
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

    coords, X, names = habitat_feature_matrix(maps_dirs, images, mask, features, patient=patient)
    try:
        result = cluster_patient(X, names, settings)
    except ValueError as exc:
        raise InputError(str(exc), patient=patient, file=mask) from exc
    labels = coords.assign(**{f"k{k}": lab for k, lab in result.labels.items()})
    fileio.write_parquet(labels, dst_clusters)
    result.metrics.insert(0, "patient", patient)
    fileio.write_tsv(result.metrics, dst_metrics)
    cents = pd.concat(
        [result.centroid_table(k).assign(k=k) for k in result.labels], ignore_index=True
    )
    fileio.write_parquet(cents, dst_centroids)
    best = result.metrics.set_index("k")
    log.info(
        "%s: %d voxels, %d features; silhouette by k %s",
        patient,
        len(X),
        len(names),
        best["silhouette"].round(3).to_dict(),
    )


def habitat_training_patients(splits: Mapping[str, PathLike]) -> set[str] | None:
    """The patients that every study in ``splits`` (``{study: its splits.parquet}``) trains on:
    those the cohort's k and reference habitats are fitted on. None when no study reads the
    subregions (every patient is then used: no study is evaluated on them).

    Raises:
        InputError: a split table without ``patient``/``split`` columns, or no patient that
            every one of the studies trains on.
    """
    import pandas as pd

    if not splits:
        return None
    common: set[str] | None = None
    for study, path in splits.items():
        table = pd.read_parquet(path)
        if not {"patient", "split"} <= set(table.columns):
            raise InputError(
                f"study {study}: the split table lacks the patient/split columns", file=path
            )
        train = set(table.loc[table["split"] == "train", "patient"].astype(str))
        common = train if common is None else common & train
    if not common:
        raise InputError(
            "habitats: no patient is in the training split of every study that reads the "
            f"subregions ({', '.join(splits)}); the reference habitats cannot be fitted on "
            "training patients only (set habitats.reference to a frozen reference instead)"
        )
    return common


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
    splits: Mapping[str, PathLike] | None = None,
) -> None:
    """The cohort's k (vote of the three indices, or the configured k) and the reference
    habitats, from the training patients of the studies that read the subregions.

    ``metrics`` and ``centroids`` are per patient, in the same order (every patient with
    habitats); ``splits`` maps each study that reads the subregions to its split table. Only
    the patients every one of those studies trains on vote for k and shape the reference (no
    validation or test patient defines the subregions the studies are evaluated with); the
    others are assigned to it like new patients. Without ``splits`` every patient is used.
    """
    import pandas as pd

    if len(metrics) != len(centroids):
        raise ValueError(f"{len(metrics)} metric tables but {len(centroids)} centroid tables")
    training = habitat_training_patients(splits or {})
    tables, chosen_centroids = [], []
    for m_path, c_path in zip(metrics, centroids, strict=True):
        table = pd.read_csv(m_path, sep="\t", dtype={"patient": str})
        patients = set(table["patient"])
        if training is not None and not patients & training:
            continue
        tables.append(table)
        chosen_centroids.append(c_path)
    if not tables:
        raise InputError(
            "habitats: none of the patients with habitats is in the training split of "
            f"{', '.join(splits or {})}",
            file=metrics[0] if metrics else None,
        )
    table = pd.concat(tables, ignore_index=True)
    k, summary = choose_k(table, fixed_k)
    fileio.write_tsv(summary, dst_summary)
    per_patient = []
    features: list[str] = []
    for path in chosen_centroids:
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
    fileio.write_parquet(reference.to_table(), dst_reference)
    plot_k_selection(table, summary, k, dst_png)
    if training is None:
        log.info("k = %d from all %d patients (no study reads the subregions)", k, len(tables))
    else:
        log.info(
            "k = %d and the reference habitats from the %d training patients of %s; "
            "%d other patient(s) are assigned to them (%s)",
            k,
            len(tables),
            ", ".join(splits or {}),
            len(metrics) - len(tables),
            dst_summary,
        )


@dataclass(frozen=True, kw_only=True)
class HabitatAssignment:
    """What :func:`assign_habitats` reads and writes for one patient, and its options.

    Attributes:
        clusters: The patient's cluster labels per k (:func:`cluster_habitats`).
        centroids: The patient's cluster means per k (:func:`cluster_habitats`).
        reference: The cohort's reference habitats (:func:`select_habitat_k`).
        mask: The tumor mask on the habitat grid (:func:`compute_voxel_maps`).
        image: The image on that grid (the overlay's background).
        phase_images: Phase -> image whose mean inside each subregion the statistics record.
        dst_labels: Destination of the subregion label map.
        dst_masks: Folder receiving one ``subregion_{i}.nii.gz`` per subregion.
        dst_stats: Destination of ``stats.json``.
        dst_png: Destination of the overlay figure.
        patient: Patient id.
        spacing: Isotropic spacing (mm) of the habitat grid (subregion volumes).
        dst_deep: Manifest of the per-subregion deep-input tensors; None: no tensors.
        deep_specs: The ``region: habitats`` entries of ``deep.inputs``.
        deep_images: Phase -> normalised image the tensors are built from (needed with specs).
        deep_scale: Intensity divisor of the tensors.
        center: The patient's center (where the tensors go).
        root: The results folder (where the tensors go).
    """

    clusters: PathLike
    centroids: PathLike
    reference: PathLike
    mask: PathLike
    image: PathLike
    phase_images: Mapping[str, PathLike]
    dst_labels: PathLike
    dst_masks: PathLike
    dst_stats: PathLike
    dst_png: PathLike
    patient: str
    spacing: float
    dst_deep: PathLike | None = None
    deep_specs: Sequence[Any] = ()
    deep_images: Mapping[str, PathLike] | None = None
    deep_scale: float = 1.0
    center: str = ""
    root: PathLike = "results"


def assign_habitats(job: HabitatAssignment) -> None:
    """Relabel one patient's clusters to the cohort's reference habitats and summarise them.

    Writes the subregion label map (0 outside the tumor, 1..k), one binary mask per subregion
    (``dst_masks/subregion_{i}.nii.gz``), ``stats.json`` (voxels, fraction and volume per
    subregion, and the mean intensity of every phase's image inside each subregion, the label
    map being carried onto that image's grid by nearest neighbour) and an overlay figure.

    With ``dst_deep``, also the per-subregion deep-input tensors of ``deep_specs`` (the
    ``region: habitats`` entries of ``deep.inputs``, from the normalised ``deep_images``;
    :func:`build_subregion_inputs`) and their manifest ``dst_deep`` (empty without specs).
    """

    img, label_img, sub, k = _subregion_labels(job)
    imageio.write_image(label_img, job.dst_labels)
    out = Path(job.dst_masks)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(1, k + 1):
        imageio.write_image(
            sitk.Cast(label_img == i, sitk.sitkUInt8), out / f"subregion_{i}.nii.gz"
        )
    stats = _subregion_stats(label_img, sub, k, job)
    if job.dst_deep is not None:
        missing = _subregion_deep_inputs(label_img, k, job.dst_deep, job)
        if missing:
            stats["subregions_without_deep_input"] = missing
    fileio.write_json(stats, job.dst_stats)
    plot_habitat_overlay(img, label_img, job.dst_png, title=f"{job.patient}: {k} habitats")
    fractions = [round(s["fraction"], 3) for s in stats["subregions"].values()]
    log.info("%s: %d habitats, fractions %s", job.patient, k, fractions)


def _subregion_labels(job: HabitatAssignment) -> tuple[sitk.Image, sitk.Image, np.ndarray, int]:
    """The patient's clusters at the cohort's k matched to the reference habitats.

    Returns:
        ``(image, label map, subregion of each tumor voxel, k)``; the label map is on the
        mask's grid (0 outside the tumor, 1..k).
    """
    import pandas as pd

    patient = job.patient
    ref = Reference.from_table(pd.read_parquet(job.reference))
    k = len(ref.centers)
    labels = pd.read_parquet(job.clusters)
    if f"k{k}" not in labels:
        raise InputError(
            f"no clustering at the cohort's k = {k}", patient=patient, file=job.clusters
        )
    cents = pd.read_parquet(job.centroids)
    cents = cents[cents["k"] == k].sort_values("cluster")
    subregion = match_clusters(cents[ref.features].to_numpy(np.float64), ref)
    sub = subregion[labels[f"k{k}"].to_numpy()]
    img = imageio.read_image(job.image, patient=patient)
    msk = imageio.read_mask(job.mask, img, patient=patient)
    arr = np.zeros(sitk.GetArrayViewFromImage(msk).shape, np.uint8)
    arr[labels["z"], labels["y"], labels["x"]] = sub
    label_img = sitk.GetImageFromArray(arr)
    label_img.CopyInformation(msk)
    return img, label_img, sub, k


def _subregion_means(
    label_img: sitk.Image, k: int, image: PathLike, *, patient: str, phase: str
) -> np.ndarray:
    """Mean of ``image`` inside each label 0..k, the label map carried onto its grid by nearest
    neighbour (NaN for a label without a voxel there)."""
    pimg = imageio.read_image(image, patient=patient, phase=phase)
    lab = sitk.Resample(label_img, pimg, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    la = sitk.GetArrayViewFromImage(lab).ravel()
    va = sitk.GetArrayViewFromImage(pimg).ravel().astype(np.float64)
    sums = np.bincount(la, weights=va, minlength=k + 1)
    counts = np.bincount(la, minlength=k + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def _subregion_stats(
    label_img: sitk.Image, sub: np.ndarray, k: int, job: HabitatAssignment
) -> dict[str, Any]:
    """``stats.json`` of :func:`assign_habitats`: voxels, fraction, volume and the phases' mean
    intensities of every subregion."""
    voxel_ml = job.spacing**3 / 1000.0
    n = len(sub)
    stats: dict[str, Any] = {"patient": job.patient, "k": k, "n_voxels": n, "subregions": {}}
    means = {
        phase: _subregion_means(label_img, k, path, patient=job.patient, phase=phase)
        for phase, path in job.phase_images.items()
    }
    for i in range(1, k + 1):
        count = int(np.count_nonzero(sub == i))
        stats["subregions"][str(i)] = {
            "n_voxels": count,
            "fraction": count / n,
            "volume_ml": count * voxel_ml,
            **{f"{phase}_mean": float(m[i]) for phase, m in means.items()},
        }
    return stats


def _subregion_deep_inputs(
    label_img: sitk.Image, k: int, manifest: PathLike, job: HabitatAssignment
) -> dict[str, list[int]]:
    """The per-subregion deep-input tensors and their ``manifest`` (empty without specs);
    returns the subregions without a tensor (:func:`build_subregion_inputs`)."""
    with OutputSet(manifest, patient=job.patient, stage="habitat_deep_inputs") as out:
        if not job.deep_specs:
            return {}
        if job.deep_images is None:
            raise ValueError("deep_specs need deep_images")
        return build_subregion_inputs(
            label_img, k, job.deep_images, out, specs=job.deep_specs, scale=job.deep_scale,
            center=job.center, patient=job.patient, root=job.root,
        )  # fmt: skip


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
    fileio.write_parquet(pd.DataFrame(rows).set_index("patient").sort_index(), dst, index=True)
