"""Settings of the deep models' training: :class:`TrainConfig` and the studies' presets.

:data:`INPUT_KINDS` names the input kinds a model can take (see :mod:`hccrad.deep.train`).
:func:`resolve_pretrained` finds the local weights file a config names (``pretrained``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from hccrad.config import project_file
from hccrad.errors import ConfigError

#: How errors name the setting of the weights file (a study's ``deep_models.<model>.train``).
PRETRAINED_KEY = "train.pretrained"

#: Input kind → (the ``kind`` stored in the ``.npz``, spatial dims of the backbone).
INPUT_KINDS: dict[str, tuple[str, int]] = {
    "slices25d": ("slices", 2),
    "slice": ("slices", 2),
    "volume": ("volume", 3),
}

#: The studies' published settings (MISSION.md) as :class:`TrainConfig` overrides. Values the
#: papers do not give (epochs where absent, the optimizer of the 3-D habitat model) are marked.
STUDY_PRESETS: dict[str, dict[str, Any]] = {
    # Study 1, 2.5D: five weight-sharing ResNet18 branches, cross-entropy, lr 1e-3, 200 epochs,
    # batch 32; "the network parameters were fixed after training was completed": the last
    # epoch's weights, no validation fold, early stopping or class weighting. Optimizer and
    # augmentation kinds are not published (Adam; the default flips, rot90, intensity).
    "habitat_25d": {
        "network": "resnet18",
        "input_kind": "slices25d",
        "optimizer": "adam",
        "lr": 1e-3,
        "epochs": 200,
        "batch_size": 32,
        "class_weighted": False,
        "val_fraction": 0.0,
        "patience": None,
    },
    # Study 1, 3D: 96³ cubes, 3D ResNet50, lr 1e-2, 200 epochs, "inversion" (flips) on x/y/z only;
    # trained to the end like the 2.5D model (SGD and batch 32: not published).
    "habitat_3d": {
        "network": "resnet50",
        "input_kind": "volume",
        "optimizer": "sgd",
        "lr": 1e-2,
        "epochs": 200,
        "batch_size": 32,
        "class_weighted": False,
        "val_fraction": 0.0,
        "patience": None,
        "rot90_prob": 0.0,
        "intensity_prob": 0.0,
    },
    # Study 2: torchvision's 3D ResNet-18 (r3d_18) on 64³ crops, Adam lr 1e-4, x0.1 every 5
    # epochs, batch 32, 50-100 epochs (the paper's range; its upper end here).
    "mvi_3d": {
        "network": "r3d_18",
        "input_kind": "volume",
        "optimizer": "adam",
        "lr": 1e-4,
        "lr_step_size": 5,
        "lr_gamma": 0.1,
        "epochs": 100,
        "batch_size": 32,
    },
    # Study 3: 3 largest slices per phase (phases as branches, slices as channels), SGD lr 1e-4,
    # momentum 0.9, weight decay 1e-4, 200 iterations, batch 64; class-weighted cross-entropy.
    # Augmentation "rotation, scaling, flipping, and shifting" (ranges not published; ours:
    # +-15 degrees, zoom +-10 %, shift +-10 % of the side, each sample with probability 0.5; no
    # rot90 or intensity scaling).
    # The paper's network is a ResNet-18 cut to two stages (hccrad.deep.nets resnet10_2stage; the
    # study file names the networks it trains, e.g. its ResNet-18/34 variants).
    "recurrence_25d": {
        "network": "resnet10_2stage",
        "input_kind": "slices25d",
        "optimizer": "sgd",
        "lr": 1e-4,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "epochs": 200,
        "batch_size": 64,
        "class_weighted": True,
        "patience": 10,
        "rotate_range": 15.0,
        "zoom_range": 0.1,
        "translate_range": 0.1,
        "affine_prob": 0.5,
        "rot90_prob": 0.0,
        "intensity_prob": 0.0,
    },
    # Study 4: slice-level ResNet18 (or resnet101 / densenet121) on the 11 MIL slices.
    "mil_slice": {
        "network": "resnet18",
        "input_kind": "slice",
        "optimizer": "adam",
        "lr": 1e-4,
        "epochs": 50,
        "batch_size": 32,
    },
}


@dataclass
class TrainConfig:
    """Training settings; every field is a config value (defaults: the habitat study's 2.5D)."""

    network: str = "resnet18"
    input_kind: str = "slices25d"
    spatial_dims: int | None = None  # resolved from input_kind
    num_classes: int = 2
    pretrained: str | None = None
    epochs: int = 200
    batch_size: int = 32
    optimizer: str = "adam"  # adam | sgd
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    lr_step_size: int | None = None  # StepLR: multiply by lr_gamma every lr_step_size epochs
    lr_gamma: float = 0.1
    class_weighted: bool = True
    val_fraction: float = 0.2
    monitor: str = "auc"  # auc | loss
    patience: int | None = 20  # stop after this many epochs without improvement; None: never
    min_delta: float = 0.0
    augment: bool = True
    flip_prob: float = 0.5  # per spatial axis
    rot90_prob: float = 0.5  # in-plane, square slices only
    intensity_prob: float = 0.5
    intensity_factor: float = 0.1  # x * (1 + U(-f, f))
    # random affine (one draw per sample, in-plane for 3-D; 0 switches a part off)
    rotate_range: float = 0.0  # degrees: angle ~ U(-r, r)
    zoom_range: float = 0.0  # scale ~ 1 + U(-z, z)
    translate_range: float = 0.0  # fraction of the in-plane side: shift ~ U(-t, t) * side
    affine_prob: float = 0.5
    freeze_backbone: bool = False  # train the head only (backbone weights, BN stats fixed)
    skip_padding: bool = True  # slice inputs: drop z == -1 instances from training
    cache_inputs: bool = True  # keep loaded arrays in memory
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_workers: int = 0
    deterministic: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check values and resolve ``spatial_dims``; raises :class:`ConfigError`."""
        if self.input_kind not in INPUT_KINDS:
            raise ConfigError(
                f"input_kind must be one of {', '.join(INPUT_KINDS)}, got {self.input_kind!r}"
            )
        dims = INPUT_KINDS[self.input_kind][1]
        if self.spatial_dims is None:
            self.spatial_dims = dims
        elif self.spatial_dims != dims:
            raise ConfigError(
                f"input_kind {self.input_kind!r} needs spatial_dims {dims}, got {self.spatial_dims}"
            )
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"optimizer must be adam or sgd, got {self.optimizer!r}")
        if self.monitor not in ("auc", "loss"):
            raise ConfigError(f"monitor must be auc or loss, got {self.monitor!r}")
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.num_classes >= 2, "num_classes must be >= 2"),
            (self.lr >= 0, "lr must be >= 0"),
            (0 <= self.val_fraction < 1, "val_fraction must be in [0, 1)"),
            (self.patience is None or self.patience >= 1, "patience must be >= 1 or null"),
            (self.lr_step_size is None or self.lr_step_size >= 1, "lr_step_size must be >= 1"),
            (self.num_workers >= 0, "num_workers must be >= 0"),
            (0 <= self.rotate_range <= 180, "rotate_range must be in [0, 180] degrees"),
            (0 <= self.zoom_range < 1, "zoom_range must be in [0, 1)"),
            (0 <= self.translate_range < 1, "translate_range must be in [0, 1)"),
            (0 <= self.affine_prob <= 1, "affine_prob must be in [0, 1]"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping (e.g. a config section or ``config.json``); unknown keys fail."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**dict(values))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TrainConfig:
        """A study preset (:data:`STUDY_PRESETS`) with overrides."""
        if name not in STUDY_PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(STUDY_PRESETS)}")
        return cls.from_dict({**STUDY_PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)

    @property
    def affine(self) -> bool:
        """Whether a random affine (rotation, zoom or translation) is configured."""
        return self.affine_prob > 0 and (
            self.rotate_range > 0 or self.zoom_range > 0 or self.translate_range > 0
        )


def resolve_pretrained(path: str | Path, key: str = PRETRAINED_KEY) -> Path:
    """The weights file a config names: absolute, relative to the working directory (the
    project, where the workflow runs) or else to this checkout (:func:`hccrad.config.project_file`).

    Raises:
        ConfigError: No such file; the message names the config key and the path.
    """
    found = Path(project_file(path))
    if not found.is_file():
        where = "" if str(found) == str(path) else f" (nor {found})"
        raise ConfigError(
            f"{key}: pretrained weights file {path} not found{where}; nothing is downloaded, "
            "put the file in the project or set the key to null"
        )
    return found
