"""Deep-learning input steps: one patient's input tensors (``.npz``) of the configured
``deep.inputs``, per region or per habitat subregion."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import SimpleITK as sitk

from hccrad import imageio, paths
from hccrad.deep import inputs as builders
from hccrad.errors import InputError
from hccrad.fileio import PathLike
from hccrad.steps.keys import subregion_key

log = logging.getLogger(__name__)


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

    phases = list(loaded)
    meta = {
        "patient": patient,
        "input": spec.name,
        "region": spec.region,
        "phases": phases,
        **({"window": list(spec.window)} if spec.window is not None else {}),
        **(meta or {}),
    }
    common = {
        "size": spec.size,
        "margin_mm": spec.margin_mm,
        "scale": scale,
        "mask_to_region": spec.mask_to_region,
        "window": spec.window,
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
    manifest under ``deep/{input}/{phase}/h{i}`` (:func:`hccrad.steps.keys.subregion_key`). A
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
