"""Inference of the segmentation U-Net: loading, label maps, post-processing, evaluation.

Post-processing conventions: see :mod:`hccrad.deep.segmentation`.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from hccrad.deep.segmentation.config import CHECKPOINT_FORMAT, CLASSES, SegConfig
from hccrad.deep.segmentation.grid import SegCase, prepare_case
from hccrad.deep.segmentation.metrics import dice
from hccrad.deep.segmentation.net import _predict_probs, _torch, build_net
from hccrad.errors import InputError
from hccrad.fileio import PathLike
from hccrad.preprocess.regions import largest_component

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


class EmptySegmentationWarning(UserWarning):
    """A predicted liver or tumor mask is empty (returned as an empty mask)."""


@dataclass
class SegModel:
    """A loaded checkpoint: the network in eval mode, its config and device."""

    net: Any
    config: SegConfig
    device: torch.device
    epoch: int = 0


def load_model(
    checkpoint: PathLike | Mapping[str, Any] | SegModel, device: str | None = None
) -> SegModel:
    """Load a ``checkpoint.pt`` written by :func:`train_segmentation`.

    Args:
        checkpoint: file path, the loaded dictionary, or an already loaded model (returned as is).
        device: the device to run on (``"auto"``, ``"cpu"``, ``"cuda"``); None: the
            checkpoint config's device, except that a CUDA device (where the model trained)
            becomes the CPU on a machine without CUDA: a GPU-trained U-Net segments on CPU
            nodes. The tensors are always read onto the CPU first.
    """
    from hccrad.deep.device import resolve_device  # imports torch: keeps this package light

    if isinstance(checkpoint, SegModel):
        return checkpoint
    torch = _torch()
    data = checkpoint
    if not isinstance(data, Mapping):
        try:
            data = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise InputError(
                f"cannot read segmentation checkpoint: {exc}", file=checkpoint
            ) from exc
    if data.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"not a {CHECKPOINT_FORMAT} checkpoint (format {data.get('format')!r})")
    config = SegConfig.from_dict(data["config"])
    if device is None and config.device.startswith("cuda") and not torch.cuda.is_available():
        log.info("U-Net trained on %s; no CUDA here: running on the CPU", config.device)
        device = "cpu"
    dev = resolve_device(device or config.device)
    net = build_net(config)
    net.load_state_dict(data["state_dict"])
    net.to(dev).eval()
    return SegModel(net=net, config=config, device=dev, epoch=int(data.get("epoch", 0)))


@dataclass
class SegResult:
    """Post-processed masks on the input image's grid (``UInt8`` 0/1).

    Unpacks as ``liver, tumor = result``; ``index_tumor`` is the largest tumor component,
    ``labels`` the raw arg-max label map (0/1/2) before post-processing and ``warnings`` the
    messages of any :class:`EmptySegmentationWarning` raised.
    """

    liver: sitk.Image
    tumor: sitk.Image
    index_tumor: sitk.Image
    labels: sitk.Image | None = None
    warnings: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[sitk.Image]:
        yield self.liver
        yield self.tumor


def _mask_like(arr: np.ndarray, reference: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(arr.astype(np.uint8))
    out.CopyInformation(reference)
    return out


def _warn(message: str, messages: list[str]) -> None:
    log.warning(message)
    warnings.warn(message, EmptySegmentationWarning, stacklevel=3)
    messages.append(message)


def postprocess(
    labels: sitk.Image,
    *,
    tumor_margin_mm: float = 5.0,
    tumor_inside_fraction: float = 0.5,
    name: str | None = None,
) -> SegResult:
    """Turn a 0/1/2 label map into liver, tumor and index-tumor masks (see module doc).

    Args:
        labels: label map (0 background, 1 liver, 2 tumor) on the image grid.
        tumor_margin_mm: liver dilation (physical mm) within which tumor components are kept.
        tumor_inside_fraction: share of a tumor component's voxels that must lie in the dilated
            liver.
        name: patient/case name for the warning messages.

    Returns:
        :class:`SegResult`; empty masks (with an :class:`EmptySegmentationWarning`) when the
        liver or tumor comes out empty.
    """
    who = f"{name}: " if name else ""
    msgs: list[str] = []
    lab = sitk.GetArrayFromImage(labels)
    liver = largest_component(_mask_like(lab >= 1, labels))
    liver_arr = sitk.GetArrayFromImage(liver).astype(bool)
    tumor_arr = np.zeros(lab.shape, bool)
    if not liver_arr.any():
        _warn(f"{who}predicted liver is empty; returning empty liver and tumor masks", msgs)
    elif (lab == 2).any():
        if tumor_margin_mm > 0:
            dist = sitk.SignedMaurerDistanceMap(
                liver, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
            )
            near = sitk.GetArrayViewFromImage(dist) <= tumor_margin_mm
        else:
            near = liver_arr
        cc = sitk.GetArrayFromImage(sitk.ConnectedComponent(_mask_like(lab == 2, labels), False))
        n_cc = int(cc.max())
        total = np.bincount(cc.ravel(), minlength=n_cc + 1)
        inside = np.bincount(cc[near].ravel(), minlength=n_cc + 1)
        keep = [k for k in range(1, n_cc + 1) if inside[k] >= tumor_inside_fraction * total[k]]
        if len(keep) < n_cc:
            log.info("%sdropped %d tumor component(s) outside the liver", who, n_cc - len(keep))
        tumor_arr = np.isin(cc, keep)
    if liver_arr.any() and not tumor_arr.any():
        _warn(f"{who}predicted tumor is empty; returning an empty tumor mask", msgs)
    tumor = _mask_like(tumor_arr, labels)
    index = largest_component(tumor) if tumor_arr.any() else _mask_like(tumor_arr, labels)
    return SegResult(liver=liver, tumor=tumor, index_tumor=index, labels=labels, warnings=msgs)


def predict_labels(model: SegModel, image: sitk.Image) -> sitk.Image:
    """Arg-max label map (0/1/2, ``UInt8``) on ``image``'s grid, before post-processing."""
    torch = _torch()
    cfg = model.config
    pc = prepare_case(image, None, None, cfg)
    prev = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    try:
        probs = _predict_probs(model.net, pc.x, cfg, model.device)
    finally:
        torch.set_num_threads(prev)

    def back(c: int) -> np.ndarray:
        p = sitk.GetImageFromArray(probs[c].astype(np.float32))
        p.CopyInformation(pc.grid)
        default = 1.0 if c == 0 else 0.0
        return sitk.GetArrayFromImage(
            sitk.Resample(p, image, sitk.Transform(), sitk.sitkLinear, default, sitk.sitkFloat32)
        )

    # running arg-max (ties: the lower label), one full-size probability map at a time
    best = back(0)
    labels = np.zeros(best.shape, np.uint8)
    for c in range(1, len(CLASSES)):
        prob = back(c)
        higher = prob > best
        best[higher] = prob[higher]
        labels[higher] = c
    return _mask_like(labels, image)


def segment(
    checkpoint: PathLike | Mapping[str, Any] | SegModel,
    image: sitk.Image,
    *,
    device: str | None = None,
    tumor_margin_mm: float | None = None,
    tumor_inside_fraction: float | None = None,
    name: str | None = None,
) -> SegResult:
    """Segment liver and tumor in ``image``; masks on the input image's grid.

    Args:
        checkpoint: ``checkpoint.pt`` path, its loaded dictionary, or a :class:`SegModel`
            (load once with :func:`load_model` when segmenting many images).
        image: 3-D image (same modality/phase family as the training data).
        device: inference device override.
        tumor_margin_mm, tumor_inside_fraction: post-processing overrides (default: the
            checkpoint config's values).
        name: patient name for warnings.

    Returns:
        :class:`SegResult` — unpacks as ``liver, tumor``; ``index_tumor`` the index lesion.
    """
    model = load_model(checkpoint, device)
    cfg = model.config
    labels = predict_labels(model, image)
    return postprocess(
        labels,
        tumor_margin_mm=cfg.tumor_margin_mm if tumor_margin_mm is None else tumor_margin_mm,
        tumor_inside_fraction=(
            cfg.tumor_inside_fraction if tumor_inside_fraction is None else tumor_inside_fraction
        ),
        name=name,
    )


def evaluate(
    checkpoint: PathLike | Mapping[str, Any] | SegModel,
    cases: Sequence[SegCase],
    *,
    device: str | None = None,
) -> pd.DataFrame:
    """Segment every case and score the post-processed masks against the given ones.

    Dice is computed on each case's own image grid (not the training grid): the returned liver
    mask (tumors included) against the given liver mask, all kept tumor components against the
    given tumor mask, and the index tumor against the largest given tumor component.

    Returns:
        One row per case: ``patient``, ``phase``, ``dice_liver``, ``dice_tumor``,
        ``dice_index_tumor`` (NaN where the given mask is missing), ``liver_ml`` / ``tumor_ml``
        (predicted volumes) and ``empty`` (an empty liver or tumor was predicted).
    """
    model = load_model(checkpoint, device)
    rows = []
    for case in cases:
        image, liver, tumor = case.load()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmptySegmentationWarning)
            res = segment(model, image, name=case.patient)
        voxel_ml = math.prod(image.GetSpacing()) / 1000.0
        row: dict[str, Any] = {
            "patient": case.patient,
            "phase": case.phase,
            "dice_liver": math.nan,
            "dice_tumor": math.nan,
            "dice_index_tumor": math.nan,
            "liver_ml": float(sitk.GetArrayViewFromImage(res.liver).sum()) * voxel_ml,
            "tumor_ml": float(sitk.GetArrayViewFromImage(res.tumor).sum()) * voxel_ml,
            "empty": bool(res.warnings),
        }
        if liver is not None:
            row["dice_liver"] = dice(res.liver, sitk.NotEqual(liver, 0), [1])[1]
        if tumor is not None:
            row["dice_tumor"] = dice(res.tumor, sitk.NotEqual(tumor, 0), [1])[1]
            row["dice_index_tumor"] = dice(res.index_tumor, largest_component(tumor), [1])[1]
        rows.append(row)
    return pd.DataFrame(
        rows,
        columns=[
            "patient",
            "phase",
            "dice_liver",
            "dice_tumor",
            "dice_index_tumor",
            "liver_ml",
            "tumor_ml",
            "empty",
        ],
    )
