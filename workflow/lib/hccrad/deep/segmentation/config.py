"""Settings of the segmentation U-Net (:class:`SegConfig`), its classes and checkpoint format."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from hccrad.errors import ConfigError

#: Class names, in label order.
CLASSES: tuple[str, ...] = ("background", "liver", "tumor")
#: Checkpoint format tag.
CHECKPOINT_FORMAT = "hccrad.segmentation/1"


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


def requested_gpus(train: Mapping[str, Any], cluster_gpus: int) -> int:
    """GPUs the U-Net training job requests (``resources: gpu``) for the config's ``train``.

    ``device: cpu`` requests none; ``cuda`` one and ``cuda:N`` N + 1 (a job sees only its
    allocated GPUs, numbered from 0); ``auto`` (the default) follows ``deep.train_gpus``
    (``cluster_gpus``: 0 on a CPU-only cluster), at most one: the training uses one device.
    """
    device = str(train.get("device", SegConfig.device))
    if device == "cpu":
        return 0
    if device == "auto":
        return min(1, max(0, int(cluster_gpus)))
    if device == "cuda":
        return 1
    index = device.partition(":")[2]
    if device.startswith("cuda:") and index.isdigit():
        return int(index) + 1
    raise ConfigError(f"segmentation.train.device {device!r} is not auto, cpu or cuda[:N]")


def cpus_per_gpu(threads: int, gpus: int) -> int:
    """CPUs per GPU of a GPU job (``resources: cpus_per_gpu``): its threads spread over its
    GPUs, rounded up; 0 when it requests no GPU (the SLURM plugin then asks for ``threads``
    CPUs per task)."""
    return -(-max(1, int(threads)) // int(gpus)) if gpus > 0 else 0
