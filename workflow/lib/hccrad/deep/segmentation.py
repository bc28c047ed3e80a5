"""Liver + tumor segmentation with a MONAI 3-D U-Net (train, segment, post-process, Dice).

Conventions (details and defaults in ``docs/segmentation.md``):

* **Grid.** Every image is resampled onto a cubic ``grid_size³`` grid that shares the image's
  direction and is centred on the centre of its field of view (FOV). The spacing is isotropic:
  ``grid_spacing_mm`` when given (the grid then covers ``grid_size * grid_spacing_mm`` mm and
  crops a larger FOV), otherwise the longest physical FOV side divided by ``grid_size`` (the whole
  FOV fits, shorter sides are padded). Images and masks are smoothed with a Gaussian before
  downsampling (anti-aliasing, variance ``(s_grid² - s_image²) / 4`` per axis) and resampled
  linearly; masks are thresholded at 0.5 afterwards.
* **Normalisation** (modality independent, MR and CT): on the grid voxels inside the FOV, clip to
  the ``clip_percentiles`` (default 0.5 and 99.5); the *body* is the Otsu foreground of the
  clipped FOV voxels (all FOV voxels when it holds < 5 % of them); z-score with the body's mean
  and standard deviation. Voxels outside the FOV get the normalised low clip value.
* **Labels.** 0 background, 1 liver, 2 tumor (the tumor mask overrides the liver mask).
* **Model.** ``monai.networks.nets.UNet`` (3-D, 1 input channel, 3 output classes), loss
  ``monai.losses.DiceCELoss`` (softmax, one-hot targets), Adam. Seeded flips and intensity
  scaling/shift as augmentation; a seeded held-out subset of the training cases gives the
  per-epoch validation Dice (on the grid, before post-processing).
* **Back to the image.** Class probabilities are resampled *linearly* onto the input image's grid,
  then arg-maxed (smoother boundaries than nearest-neighbour label resampling).
* **Post-processing.** liver = largest 6-connected component of labels {1, 2} (so the liver mask
  contains its tumors, like the cohort's given liver masks); tumor = the 6-connected label-2
  components with at least ``tumor_inside_fraction`` of their voxels inside the liver dilated by
  ``tumor_margin_mm``; ``index_tumor`` = the largest of them. Empty results are returned as empty
  masks with an :class:`EmptySegmentationWarning` (never an exception).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import platform
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from hccrad.errors import ConfigError, InputError
from hccrad.imageio import read_image, read_mask, write_json
from hccrad.preprocess.regions import largest_component

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: Class names, in label order.
CLASSES: tuple[str, ...] = ("background", "liver", "tumor")
#: Checkpoint format tag.
CHECKPOINT_FORMAT = "hccrad.segmentation/1"

PathLike = str | os.PathLike[str]


class EmptySegmentationWarning(UserWarning):
    """A predicted liver or tumor mask is empty (returned as an empty mask)."""


@dataclass(frozen=True)
class SegConfig:
    """Settings of the segmentation U-Net (grid, network, training, post-processing).

    The defaults are the CPU-sized demo (64³ grid, ~1.2 M parameters, lr 3e-3 and no flips so that
    a short CPU run converges; minutes on 2 cores for a few dozen cases); :meth:`study` gives the
    study-sized GPU setting.

    Attributes:
        grid_size: voxels per side of the cubic training/inference grid (divisible by the product
            of ``strides``).
        grid_spacing_mm: isotropic grid spacing; ``None`` fits the whole FOV (see module doc).
        clip_percentiles: intensity clipping percentiles before the z-score.
        channels, strides, num_res_units, dropout: :class:`monai.networks.nets.UNet` arguments.
        epochs, batch_size, lr, weight_decay: Adam training.
        lambda_dice, lambda_ce: weights of the Dice and cross-entropy terms of ``DiceCELoss``.
        val_fraction: fraction of the training cases held out for validation Dice (at least one
            when there are two or more cases and the fraction is > 0).
        select_best: keep the weights of the epoch with the best mean validation Dice
            (liver, tumor); otherwise (or without validation cases) the last epoch's.
        flip_prob, flip_axes: random flip probability per grid axis (0 = z, 1 = y, 2 = x).
        intensity_scale, intensity_shift: multiply by U(1 ± scale), add U(± shift) (z units).
        seed: seeds the weights, the validation split, the case order and the augmentation.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        amp: bfloat16 autocast on CUDA devices that support it (ignored on CPU).
        deterministic: ``torch.use_deterministic_algorithms`` during training (CPU runs with the
            same seed and thread count give identical weights).
        num_threads: torch CPU threads during training/inference (``None``: leave as is).
        tumor_margin_mm: liver dilation within which tumor components are kept.
        tumor_inside_fraction: fraction of a tumor component's voxels that must lie in the
            dilated liver for it to be kept.
    """

    grid_size: int = 64
    grid_spacing_mm: float | None = None
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2)
    num_res_units: int = 2
    dropout: float = 0.0
    epochs: int = 40
    batch_size: int = 2
    lr: float = 3e-3
    weight_decay: float = 1e-5
    lambda_dice: float = 1.0
    lambda_ce: float = 1.0
    val_fraction: float = 0.2
    select_best: bool = True
    flip_prob: float = 0.0
    flip_axes: tuple[int, ...] = (0, 1, 2)
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1
    seed: int = 42
    device: str = "auto"
    amp: bool = True
    deterministic: bool = True
    num_threads: int | None = None
    tumor_margin_mm: float = 5.0
    tumor_inside_fraction: float = 0.5

    def __post_init__(self) -> None:
        for name in ("clip_percentiles", "channels", "strides", "flip_axes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        problems = []
        if len(self.channels) < 2 or len(self.strides) != len(self.channels) - 1:
            problems.append("channels needs >= 2 entries and strides exactly one fewer")
        if any(c < 1 for c in self.channels) or any(s < 1 for s in self.strides):
            problems.append("channels and strides must be positive")
        factor = math.prod(self.strides) if self.strides else 1
        if self.grid_size < 8 or self.grid_size % factor:
            problems.append(f"grid_size {self.grid_size} must be >= 8 and divisible by {factor}")
        if self.grid_spacing_mm is not None and self.grid_spacing_mm <= 0:
            problems.append("grid_spacing_mm must be > 0")
        lo, hi = self.clip_percentiles
        if not 0 <= lo < hi <= 100:
            problems.append("clip_percentiles must satisfy 0 <= low < high <= 100")
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            problems.append("epochs >= 0, batch_size >= 1 and lr > 0 are required")
        if not 0 <= self.val_fraction < 1:
            problems.append("val_fraction must be in [0, 1)")
        if not 0 <= self.flip_prob <= 1 or any(a not in (0, 1, 2) for a in self.flip_axes):
            problems.append("flip_prob must be in [0, 1] and flip_axes in {0, 1, 2}")
        if self.intensity_scale < 0 or self.intensity_shift < 0:
            problems.append("intensity_scale and intensity_shift must be >= 0")
        if not 0 < self.tumor_inside_fraction <= 1 or self.tumor_margin_mm < 0:
            problems.append("tumor_inside_fraction in (0, 1] and tumor_margin_mm >= 0 required")
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            problems.append(f"device {self.device!r} is not auto, cpu or cuda[:N]")
        if problems:
            raise ConfigError("invalid segmentation config: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SegConfig:
        """Build from a mapping (e.g. ``config.json`` or the workflow config); unknown keys fail."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown segmentation config keys: {', '.join(unknown)}")
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dictionary (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def demo(cls, **overrides: Any) -> SegConfig:
        """CPU-sized default (the dataclass defaults), with overrides."""
        return cls(**overrides)

    @classmethod
    def study(cls, **overrides: Any) -> SegConfig:
        """Study-sized GPU setting: 128³ grid at 2.5 mm (320 mm FOV), wider net, flips, 300 ep."""
        values: dict[str, Any] = {
            "grid_size": 128,
            "grid_spacing_mm": 2.5,
            "channels": (32, 64, 128, 256, 320),
            "strides": (2, 2, 2, 2),
            "num_res_units": 2,
            "epochs": 300,
            "batch_size": 2,
            "lr": 1e-3,
            "flip_prob": 0.5,
            "val_fraction": 0.15,
        }
        values.update(overrides)
        return cls(**values)


# ---------------------------------------------------------------------------------------------
# Cases and grid preparation


@dataclass
class SegCase:
    """One training/evaluation case: an image and its given masks (images or file paths).

    Training needs both masks; :func:`evaluate` reports NaN Dice for a missing one.
    """

    patient: str
    image: sitk.Image | PathLike
    liver: sitk.Image | PathLike | None = None
    tumor: sitk.Image | PathLike | None = None
    phase: str | None = None

    def load(self) -> tuple[sitk.Image, sitk.Image | None, sitk.Image | None]:
        """The image and masks as SimpleITK images (files read with :mod:`hccrad.imageio`)."""
        image = self.image
        if not isinstance(image, sitk.Image):
            image = read_image(image, patient=self.patient, phase=self.phase)
        masks: list[sitk.Image | None] = []
        for kind, m in (("liver", self.liver), ("tumor", self.tumor)):
            if m is not None and not isinstance(m, sitk.Image):
                m = read_mask(
                    m, image, patient=self.patient, phase=self.phase, kind=kind, allow_empty=True
                )
            masks.append(m)
        return image, masks[0], masks[1]


@dataclass
class PreparedCase:
    """A case on the training grid: ``x`` float32 ``(z, y, x)``, ``y`` uint8 labels or None."""

    x: np.ndarray
    y: np.ndarray | None
    grid: sitk.Image
    meta: dict[str, Any] = field(default_factory=dict)


def make_grid(image: sitk.Image, config: SegConfig) -> sitk.Image:
    """The (empty, ``UInt8``) cubic grid of ``config`` for ``image`` (see module doc)."""
    n = config.grid_size
    size = np.asarray(image.GetSize(), float)
    spacing = np.asarray(image.GetSpacing(), float)
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    s = config.grid_spacing_mm or float(np.max(size * spacing) / n)
    centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2).tolist()))
    origin = centre - direction @ np.full(3, (n - 1) / 2 * s)
    grid = sitk.Image([n, n, n], sitk.sitkUInt8)
    grid.SetSpacing([s, s, s])
    grid.SetOrigin([float(v) for v in origin])
    grid.SetDirection(image.GetDirection())
    return grid


def _to_grid(image: sitk.Image, grid: sitk.Image, default: float) -> np.ndarray:
    """Anti-aliased linear resampling of a float image onto ``grid`` → array ``(z, y, x)``."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    s_in = np.asarray(image.GetSpacing(), float)
    s_out = np.asarray(grid.GetSpacing(), float)
    variance = np.maximum(s_out**2 - s_in**2, 0.0) / 4.0
    if np.any(variance > 0):
        image = sitk.DiscreteGaussian(image, [float(v) for v in variance], 32, 0.01, True)
    out = sitk.Resample(
        image, grid, sitk.Transform(), sitk.sitkLinear, float(default), sitk.sitkFloat32
    )
    return sitk.GetArrayFromImage(out)


def _otsu_threshold(values: np.ndarray, bins: int = 128) -> float:
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(float)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        m0 = s0 / w0
        m1 = (s0[-1] - s0) / w1
        between = w0 * w1 * (m0 - m1) ** 2
    between = np.nan_to_num(between[:-1], nan=-1.0)
    return float(edges[int(np.argmax(between)) + 1])


def normalize_on_grid(
    x: np.ndarray, fov: np.ndarray, percentiles: tuple[float, float]
) -> tuple[np.ndarray, dict[str, float]]:
    """Percentile clip + z-score within the Otsu body of the FOV (see module doc).

    Args:
        x: intensities on the grid.
        fov: boolean, grid voxels inside the image's field of view.
        percentiles: clipping percentiles.

    Returns:
        The normalised float32 array and the statistics used (``lo``, ``hi``, ``mean``, ``std``,
        ``body_fraction``).
    """
    values = x[fov] if fov.any() else x.ravel()
    lo, hi = (float(v) for v in np.percentile(values, percentiles))
    clipped = np.clip(x, lo, hi)
    v = np.clip(values, lo, hi)
    body = v > _otsu_threshold(v) if hi > lo else np.ones_like(v, bool)
    if body.sum() < 0.05 * v.size:
        body = np.ones_like(v, bool)
    mean, std = float(v[body].mean()), float(v[body].std())
    if not np.isfinite(std) or std <= 1e-12:
        std = 1.0
    out = (clipped - mean) / std
    out[~fov] = (lo - mean) / std
    stats = {"lo": lo, "hi": hi, "mean": mean, "std": std, "body_fraction": float(body.mean())}
    return out.astype(np.float32), stats


def prepare_case(
    image: sitk.Image,
    liver: sitk.Image | None,
    tumor: sitk.Image | None,
    config: SegConfig,
) -> PreparedCase:
    """Resample and normalise an image (and its masks) onto the training grid.

    Args:
        image: the 3-D image (any modality).
        liver: liver mask on the image grid (liver envelope incl. tumors), or ``None``.
        tumor: tumor mask on the image grid, or ``None`` (taken as empty when ``liver`` is given).
        config: grid and normalisation settings.

    Returns:
        :class:`PreparedCase` with ``x`` (normalised intensities) and ``y`` (labels 0/1/2, tumor
        overriding liver; ``None`` when no liver mask is given) as ``(z, y, x)`` arrays.
    """
    if image.GetDimension() != 3:
        raise InputError(f"segmentation needs a 3-D image, got {image.GetDimension()}-D")
    grid = make_grid(image, config)
    raw = _to_grid(image, grid, default=float(np.min(sitk.GetArrayViewFromImage(image))))
    ones = sitk.Image(image.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(image)
    fov = sitk.GetArrayViewFromImage(
        sitk.Resample(ones, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    ).astype(bool)
    x, stats = normalize_on_grid(raw, fov, config.clip_percentiles)
    y = None
    if liver is not None:
        y = (_to_grid(sitk.NotEqual(liver, 0), grid, 0.0) >= 0.5).astype(np.uint8)
        if tumor is not None:
            y[_to_grid(sitk.NotEqual(tumor, 0), grid, 0.0) >= 0.5] = 2
    meta = {"spacing_mm": grid.GetSpacing()[0], "fov_fraction": float(fov.mean()), **stats}
    return PreparedCase(x=x, y=y, grid=grid, meta=meta)


# ---------------------------------------------------------------------------------------------
# Dice


def dice(
    a: sitk.Image | np.ndarray,
    b: sitk.Image | np.ndarray,
    labels: Sequence[int] | None = None,
) -> dict[int, float]:
    """Dice coefficient per label between two label maps (or binary masks) of equal shape.

    Args:
        a, b: label maps (SimpleITK images or arrays).
        labels: labels to score; default every nonzero label present in ``a`` or ``b`` (``[1]``
            when both are empty).

    Returns:
        ``{label: dice}``; 1.0 for a label absent from both maps.
    """
    A = sitk.GetArrayViewFromImage(a) if isinstance(a, sitk.Image) else np.asarray(a)
    B = sitk.GetArrayViewFromImage(b) if isinstance(b, sitk.Image) else np.asarray(b)
    if A.shape != B.shape:
        raise ValueError(f"label maps differ in shape: {A.shape} vs {B.shape}")
    if labels is None:
        labels = [int(v) for v in np.union1d(np.unique(A), np.unique(B)) if v != 0] or [1]
    out: dict[int, float] = {}
    for lab in labels:
        ma, mb = np.equal(A, lab), np.equal(B, lab)
        denom = int(ma.sum()) + int(mb.sum())
        out[int(lab)] = 1.0 if denom == 0 else 2.0 * int(np.logical_and(ma, mb).sum()) / denom
    return out


def _grid_dice(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(liver incl. tumor, tumor) Dice on the grid."""
    liver = dice(pred >= 1, truth >= 1, [1])[1]
    tumor = dice(pred == 2, truth == 2, [1])[1]
    return liver, tumor


# ---------------------------------------------------------------------------------------------
# Network, devices, determinism


def _torch() -> ModuleType:
    """torch, imported lazily so that importing this module stays fast."""
    import torch

    return torch


def build_net(config: SegConfig) -> torch.nn.Module:
    """The MONAI 3-D U-Net of ``config`` (1 input channel, 3 classes, instance norm)."""
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=len(CLASSES),
        channels=config.channels,
        strides=config.strides,
        num_res_units=config.num_res_units,
        dropout=config.dropout,
    )


def resolve_device(device: str) -> str:
    """``"auto"`` → ``"cuda"`` when available, else ``"cpu"``; other values unchanged."""
    torch = _torch()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return device


@contextlib.contextmanager
def _torch_state(config: SegConfig, device: str) -> Iterator[None]:
    """Seeded RNG, deterministic algorithms and thread count for a block; restored afterwards."""
    torch = _torch()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_threads = torch.get_num_threads()
    prev_bench = torch.backends.cudnn.benchmark
    prev_cudnn_det = torch.backends.cudnn.deterministic
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        try:
            torch.manual_seed(config.seed)
            if config.num_threads:
                torch.set_num_threads(config.num_threads)
            if config.deterministic:
                torch.use_deterministic_algorithms(True, warn_only=True)
                torch.backends.cudnn.benchmark = False
                torch.backends.cudnn.deterministic = True
            yield
        finally:
            torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
            torch.set_num_threads(prev_threads)
            torch.backends.cudnn.benchmark = prev_bench
            torch.backends.cudnn.deterministic = prev_cudnn_det


def _autocast(config: SegConfig, device: str) -> contextlib.AbstractContextManager[Any]:
    torch = _torch()
    if config.amp and device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _predict_probs(net: Any, x: np.ndarray, config: SegConfig, device: str) -> np.ndarray:
    """Softmax probabilities ``(3, z, y, x)`` for one normalised grid array."""
    torch = _torch()
    net.eval()
    with torch.no_grad(), _autocast(config, device):
        logits = net(torch.from_numpy(x[None, None]).to(device))
    return torch.softmax(logits.float(), dim=1)[0].cpu().numpy()


def _augment(
    x: np.ndarray, y: np.ndarray, config: SegConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded flips and intensity scaling/shift (a fixed number of draws per sample)."""
    flips = rng.random(3) < config.flip_prob
    scale = 1.0 + rng.uniform(-config.intensity_scale, config.intensity_scale)
    shift = rng.uniform(-config.intensity_shift, config.intensity_shift)
    axes = tuple(a for a in config.flip_axes if flips[a])
    if axes:
        x, y = np.flip(x, axes), np.flip(y, axes)
    return np.ascontiguousarray(x * scale + shift, dtype=np.float32), np.ascontiguousarray(y)


# ---------------------------------------------------------------------------------------------
# Training


def _split(n: int, config: SegConfig) -> tuple[list[int], list[int]]:
    """Seeded (train, validation) case indices."""
    n_val = 0
    if n >= 2 and config.val_fraction > 0:
        n_val = min(n - 1, max(1, round(n * config.val_fraction)))
    order = np.random.default_rng([config.seed, 0]).permutation(n)
    return sorted(int(i) for i in order[n_val:]), sorted(int(i) for i in order[:n_val])


def _atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through a buffer, then an atomic write: the same object gives the same bytes
    (saving to a file names the archive inside after the file, here a random temporary name)."""
    import io

    from hccrad.fileio import write_bytes as write_bytes_atomic

    buf = io.BytesIO()
    _torch().save(obj, buf)
    write_bytes_atomic(buf.getvalue(), path)


def _versions() -> dict[str, str]:
    import monai

    torch = _torch()
    return {
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def train_segmentation(
    config: SegConfig,
    cases: Sequence[SegCase | PreparedCase],
    out_dir: PathLike,
) -> dict[str, Any]:
    """Train the U-Net on ``cases`` and write ``checkpoint.pt``, ``metrics.json``, ``config.json``.

    Args:
        config: settings; ``config.seed`` makes CPU runs reproducible (identical weights).
        cases: training cases with liver and tumor masks (:class:`SegCase`, or
            :class:`PreparedCase` made with the same grid settings); a seeded
            ``val_fraction`` of them is held out for validation Dice.
        out_dir: output folder (created).

    Returns:
        The metrics written to ``metrics.json``: ``epochs`` (per epoch ``epoch``, ``loss``,
        ``val_dice_liver``, ``val_dice_tumor``, ``seconds``), ``best_epoch``, ``device``,
        ``train_patients``, ``val_patients``, ``seconds`` (total) and ``versions``.

    Raises:
        InputError: a case without a liver or tumor mask, or no case at all.
    """
    from monai.losses import DiceCELoss

    torch = _torch()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not cases:
        raise InputError("no training cases for the segmentation U-Net")
    t_start = time.perf_counter()
    prepared: list[PreparedCase] = []
    names: list[str] = []
    for k, case in enumerate(cases):
        if isinstance(case, PreparedCase):
            pc, name = case, str(case.meta.get("patient", f"case{k}"))
        else:
            image, liver, tumor = case.load()
            if liver is None or tumor is None:
                raise InputError(
                    "training needs both a liver and a tumor mask",
                    patient=case.patient,
                    phase=case.phase,
                )
            pc, name = prepare_case(image, liver, tumor, config), case.patient
        if pc.y is None:
            raise InputError("prepared training case has no labels", patient=name)
        prepared.append(pc)
        names.append(name)
    t_prep = time.perf_counter() - t_start
    train_idx, val_idx = _split(len(prepared), config)
    device = resolve_device(config.device)
    log.info(
        "segmentation U-Net: %d training, %d validation cases on %s (grids prepared in %.1f s)",
        len(train_idx),
        len(val_idx),
        device,
        t_prep,
    )
    rng = np.random.default_rng([config.seed, 1])
    history: list[dict[str, Any]] = []
    best_score, best_epoch, best_state = -math.inf, 0, None
    with _torch_state(config, device):
        net = build_net(config).to(device)
        loss_fn = DiceCELoss(
            to_onehot_y=True,
            softmax=True,
            lambda_dice=config.lambda_dice,
            lambda_ce=config.lambda_ce,
        )
        opt = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            net.train()
            order = rng.permutation(train_idx)
            total, count = 0.0, 0
            for b in range(0, len(order), config.batch_size):
                batch = [
                    _augment(prepared[i].x, prepared[i].y, config, rng)
                    for i in order[b : b + config.batch_size]
                ]
                xb = torch.from_numpy(np.stack([x for x, _ in batch])[:, None]).to(device)
                yb = torch.from_numpy(np.stack([y for _, y in batch])[:, None].astype(np.int64))
                yb = yb.to(device)
                opt.zero_grad(set_to_none=True)
                with _autocast(config, device):
                    logits = net(xb)
                loss = loss_fn(logits.float(), yb)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(batch)
                count += len(batch)
            row: dict[str, Any] = {"epoch": epoch, "loss": total / max(count, 1)}
            if val_idx:
                scores = []
                for i in val_idx:
                    pred = np.argmax(_predict_probs(net, prepared[i].x, config, device), axis=0)
                    scores.append(_grid_dice(pred, prepared[i].y))
                row["val_dice_liver"] = float(np.mean([s[0] for s in scores]))
                row["val_dice_tumor"] = float(np.mean([s[1] for s in scores]))
                score = (row["val_dice_liver"] + row["val_dice_tumor"]) / 2
            else:
                row["val_dice_liver"] = row["val_dice_tumor"] = None
                score = float(epoch)
            row["seconds"] = time.perf_counter() - t0
            history.append(row)
            log.info(
                "epoch %d/%d loss %.4f val Dice liver %s tumor %s (%.1f s)",
                epoch,
                config.epochs,
                row["loss"],
                row["val_dice_liver"],
                row["val_dice_tumor"],
                row["seconds"],
            )
            if not config.select_best or score > best_score:
                best_score, best_epoch = score, epoch
                best_state = copy.deepcopy(
                    {k: v.detach().cpu() for k, v in net.state_dict().items()}
                )
        if best_state is None:  # epochs == 0: the initial weights
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    metrics: dict[str, Any] = {
        "epochs": history,
        "best_epoch": best_epoch,
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
        "torch_threads": config.num_threads or torch.get_num_threads(),
        "train_patients": [names[i] for i in train_idx],
        "val_patients": [names[i] for i in val_idx],
        "prepare_seconds": t_prep,
        "seconds": time.perf_counter() - t_start,
        "versions": _versions(),
    }
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "classes": list(CLASSES),
        "state_dict": best_state,
        "epoch": best_epoch,
        "train_patients": metrics["train_patients"],
        "val_patients": metrics["val_patients"],
    }
    _atomic_torch_save(checkpoint, out / "checkpoint.pt")
    write_json(config.to_dict(), out / "config.json")
    write_json(metrics, out / "metrics.json")
    return metrics


# ---------------------------------------------------------------------------------------------
# Inference and post-processing


@dataclass
class SegModel:
    """A loaded checkpoint: the network in eval mode, its config and device."""

    net: Any
    config: SegConfig
    device: str
    epoch: int = 0


def load_model(
    checkpoint: PathLike | Mapping[str, Any] | SegModel, device: str | None = None
) -> SegModel:
    """Load a ``checkpoint.pt`` written by :func:`train_segmentation`.

    Args:
        checkpoint: file path, the loaded dictionary, or an already loaded model (returned as is).
        device: override of the checkpoint config's device (``"auto"``, ``"cpu"``, ``"cuda"``).
    """
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
