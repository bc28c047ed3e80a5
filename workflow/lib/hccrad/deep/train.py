"""Seeded training and prediction of the deep models on per-patient ``.npz`` inputs.

:func:`train` fits one model (:class:`TrainConfig`) and writes ``checkpoint.pt`` (the best
validation epoch), ``metrics.json``, ``curves.png`` and ``config.json`` into ``out_dir``;
:func:`predict` gives per-sample (per-instance for ``slice`` inputs) probabilities.

Input kinds (see the tensor contract in :mod:`hccrad.deep`):

* ``slices25d`` — one sample per patient, ``x`` ``(N, C, H, W)`` → :class:`MultiBranch25D`;
* ``slice`` — one sample per instance, ``(C, H, W)``, carrying the patient's label (MIL);
  padding instances (``z == -1``) are skipped in training → :class:`SliceClassifier`;
* ``volume`` — one sample per patient, ``(C, D, H, W)`` → :class:`VolumeClassifier` (3-D).

**Validation and early stopping.** A stratified, seeded fold (``val_fraction``) is carved from the
*training* patients only (for ``slice`` inputs by patient, never by instance). Each epoch is scored
on it: validation loss (the class-weighted loss) and AUC (``slice``: of patient probabilities =
mean over the patient's real instances). With ``monitor="auc"`` an epoch improves on the best when
its AUC is higher by more than ``min_delta``, or equal and its loss lower by more than
``min_delta`` (AUC ties are common on small folds); ``monitor="loss"`` uses the loss alone. The
best epoch's weights are saved; training stops after ``patience`` consecutive epochs without
improvement (so at epoch ``best_epoch + patience`` at the latest).

**Class weights.** ``n / (K · n_k)`` from the labels of the training samples that are fitted
(after the validation fold is removed; instances for ``slice`` inputs), passed to
``CrossEntropyLoss(weight=…)``.

**Determinism.** ``random``, NumPy and torch are seeded with ``seed``; the validation split, the
shuffling (a seeded ``torch.Generator``) and the MONAI augmentations (``set_random_state``) too.
With ``deterministic`` torch runs ``use_deterministic_algorithms(True)`` (CUDA: ``warn_only``,
``CUBLAS_WORKSPACE_CONFIG`` set, cuDNN deterministic, no benchmark); the previous global settings
are restored afterwards. On the CPU, the same seed, data, thread count and software give bitwise
identical weights.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import random
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from monai.data import MetaTensor
from monai.data.utils import worker_init_fn
from monai.transforms import Compose, RandFlipd, RandRotate90d, RandScaleIntensityd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hccrad.deep.nets import (
    MultiBranch25D,
    SliceClassifier,
    VolumeClassifier,
    build_network,
    input_kind_of,
    num_outputs,
)
from hccrad.errors import ConfigError, InputError

log = logging.getLogger(__name__)

#: Input kind → (the ``kind`` stored in the ``.npz``, spatial dims of the backbone).
INPUT_KINDS: dict[str, tuple[str, int]] = {
    "slices25d": ("slices", 2),
    "slice": ("slices", 2),
    "volume": ("volume", 3),
}
CHECKPOINT_FORMAT = "hccrad-deep-checkpoint/1"
#: A bundle of one checkpoint per habitat subregion (:func:`write_subregion_bundle`).
SUBREGION_FORMAT = "hccrad-deep-subregions/1"

#: The studies' published settings (MISSION.md) as :class:`TrainConfig` overrides. Values the
#: papers do not give (epochs where absent, the optimizer of the 3-D habitat model) are marked.
STUDY_PRESETS: dict[str, dict[str, Any]] = {
    # Study 1, 2.5D: five weight-sharing ResNet18 branches, lr 1e-3, 200 epochs, batch 32.
    "habitat_25d": {
        "network": "resnet18",
        "input_kind": "slices25d",
        "optimizer": "adam",
        "lr": 1e-3,
        "epochs": 200,
        "batch_size": 32,
    },
    # Study 1, 3D: 96³ cubes, 3D ResNet50, lr 1e-2, flips on x/y/z (SGD: not published).
    "habitat_3d": {
        "network": "resnet50",
        "input_kind": "volume",
        "optimizer": "sgd",
        "lr": 1e-2,
        "epochs": 200,
        "batch_size": 32,
    },
    # Study 2: 3D ResNet-18 on 64³ crops, Adam lr 1e-4, x0.1 every 5 epochs, batch 32
    # (epochs: not published).
    "mvi_3d": {
        "network": "resnet18",
        "input_kind": "volume",
        "optimizer": "adam",
        "lr": 1e-4,
        "lr_step_size": 5,
        "lr_gamma": 0.1,
        "epochs": 30,
        "batch_size": 32,
    },
    # Study 3: 3 largest slices per phase (phases as branches, slices as channels), ResNet-10,
    # class-weighted cross-entropy, early stopping (lr, epochs: not published).
    "recurrence_25d": {
        "network": "resnet10",
        "input_kind": "slices25d",
        "optimizer": "adam",
        "lr": 1e-4,
        "epochs": 100,
        "batch_size": 32,
        "class_weighted": True,
        "patience": 10,
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


# --------------------------------------------------------------------------- inputs


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU; an explicit CUDA device must exist."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return dev


def _npz_shape(path: Path) -> tuple[int, ...]:
    """Shape of ``x`` in an ``.npz`` without reading the array."""
    with zipfile.ZipFile(path) as zf, zf.open("x.npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, _ = np.lib.format.read_array_header_2_0(f)
    return tuple(shape)


def read_input(path: str | Path, input_kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``x`` (float32) and ``z`` (or None) of one ``.npz`` input, checked against ``input_kind``.

    Raises:
        InputError: Missing / unreadable file, no ``x``, wrong ``kind`` or dimensionality.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("deep-learning input not found", file=path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if "x" not in data:
                raise InputError("no array 'x' in the .npz", file=path)
            x = np.asarray(data["x"], dtype=np.float32)
            kind = str(data["kind"]) if "kind" in data else None
            z = np.asarray(data["z"]) if "z" in data else None
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read .npz: {exc}", file=path) from exc
    want = INPUT_KINDS[input_kind][0]
    if kind is not None and kind != want:
        raise InputError(f"input kind {kind!r} does not suit {input_kind!r} models", file=path)
    if x.ndim != 4:
        raise InputError(f"x must be 4-D ((N, C, H, W) or (C, D, H, W)), got {x.shape}", file=path)
    if not np.all(np.isfinite(x)):
        raise InputError("x holds NaN or infinite values", file=path)
    return x, z


def _augmentations(cfg: TrainConfig, spatial_shape: Sequence[int], seed: int) -> Compose:
    """Flips on every spatial axis, in-plane rot90 (square planes), random intensity scaling."""
    nd = len(spatial_shape)
    ts: list[Any] = [
        RandFlipd(keys="x", prob=cfg.flip_prob, spatial_axis=axis) for axis in range(nd)
    ]
    plane = (nd - 2, nd - 1)
    if spatial_shape[plane[0]] == spatial_shape[plane[1]]:
        ts.append(RandRotate90d(keys="x", prob=cfg.rot90_prob, max_k=3, spatial_axes=plane))
    ts.append(RandScaleIntensityd(keys="x", factors=cfg.intensity_factor, prob=cfg.intensity_prob))
    compose = Compose(ts)
    compose.set_random_state(seed=seed)
    return compose


class NpzDataset(Dataset):
    """Samples from ``.npz`` inputs: one per file (``slices25d``, ``volume``) or per instance.

    Items are dicts ``{"x": float32 tensor, "label": int (-1 without labels), "file": int,
    "instance": int (-1 for whole-file samples)}``. ``transform`` (MONAI dictionary transforms on
    key ``x``) sees ``(N·C, H, W)`` for ``slices25d`` (so all instances get the same flip),
    ``(C, H, W)`` for ``slice`` and ``(C, D, H, W)`` for ``volume``.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        labels: Sequence[int] | None,
        input_kind: str,
        *,
        transform: Compose | None = None,
        skip_padding: bool = False,
        cache: bool = False,
    ) -> None:
        if input_kind not in INPUT_KINDS:
            raise ConfigError(f"unknown input kind {input_kind!r}")
        self.paths = [Path(p) for p in paths]
        self.labels = None if labels is None else [int(v) for v in labels]
        if self.labels is not None and len(self.labels) != len(self.paths):
            raise InputError(f"{len(self.paths)} inputs but {len(self.labels)} labels")
        self.input_kind = input_kind
        self.transform = transform
        self._cache: dict[int, np.ndarray] | None = {} if cache else None
        self.items: list[tuple[int, int]] = []
        self.z: list[np.ndarray | None] = []
        for i, p in enumerate(self.paths):
            if input_kind == "slice":
                n, z = self._instances(p)
                real = [j for j in range(n) if z is None or z[j] >= 0]
                keep = real if (skip_padding and real) else list(range(n))
                self.items += [(i, j) for j in keep]
                self.z.append(z)
            else:
                if not p.is_file():
                    raise InputError("deep-learning input not found", file=p)
                self.items.append((i, -1))
                self.z.append(None)

    @staticmethod
    def _instances(path: Path) -> tuple[int, np.ndarray | None]:
        if not path.is_file():
            raise InputError("deep-learning input not found", file=path)
        try:
            n = _npz_shape(path)[0]
            with np.load(path, allow_pickle=False) as data:
                z = np.asarray(data["z"]) if "z" in data else None
        except Exception as exc:
            raise InputError(f"cannot read .npz: {exc}", file=path) from exc
        if z is not None and len(z) != n:
            z = None
        return n, z

    def array(self, i: int) -> np.ndarray:
        """The ``x`` array of file ``i``."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        x, _ = read_input(self.paths[i], self.input_kind)
        if self._cache is not None:
            self._cache[i] = x
        return x

    def sample_labels(self) -> np.ndarray:
        """The label of every sample (instances carry their patient's label)."""
        if self.labels is None:
            return np.full(len(self.items), -1)
        return np.array([self.labels[i] for i, _ in self.items], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> dict[str, Any]:
        i, j = self.items[k]
        arr = self.array(i)
        x = torch.from_numpy(arr[j] if j >= 0 else arr)
        if self.transform is not None:
            shape = x.shape
            flat = x.reshape(-1, *shape[2:]) if self.input_kind == "slices25d" else x
            out = self.transform({"x": flat})["x"]
            if isinstance(out, MetaTensor):
                out = out.as_tensor()
            x = torch.as_tensor(out, dtype=torch.float32).reshape(shape)
        label = -1 if self.labels is None else self.labels[i]
        return {"x": x.contiguous(), "label": label, "file": i, "instance": j}


# --------------------------------------------------------------------------- models


def build_model(
    cfg: TrainConfig, in_channels: int, n_instances: int = 1, *, load_weights: bool = True
) -> nn.Module:
    """The model for ``cfg.input_kind`` (pretrained backbone weights when ``load_weights``)."""
    backbone = build_network(
        cfg.network,
        spatial_dims=int(cfg.spatial_dims or INPUT_KINDS[cfg.input_kind][1]),
        in_channels=in_channels,
        num_classes=cfg.num_classes,
        pretrained=cfg.pretrained if load_weights else None,
    )
    if cfg.input_kind == "slices25d":
        return MultiBranch25D(backbone, n_instances, cfg.num_classes)
    if cfg.input_kind == "slice":
        return SliceClassifier(backbone, cfg.num_classes)
    return VolumeClassifier(backbone, cfg.num_classes)


def class_weights(labels: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray:
    """Balanced class weights ``n / (K · n_k)`` from training labels.

    Raises:
        InputError: A class has no training sample.
    """
    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y, minlength=num_classes)[:num_classes]
    if np.any(counts == 0):
        raise InputError(
            f"class(es) {np.flatnonzero(counts == 0).tolist()} have no training sample"
        )
    return len(y) / (num_classes * counts.astype(np.float64))


@contextlib.contextmanager
def seeded(
    seed: int, *, deterministic: bool = True, device: torch.device | None = None
) -> Iterator[None]:
    """Seed ``random``/NumPy/torch and (optionally) switch on deterministic algorithms.

    The previous deterministic-algorithm and cuDNN settings are restored on exit.
    """
    prev = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    cuda = device is not None and device.type == "cuda"
    if deterministic:
        if cuda:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=cuda)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.backends.cudnn.deterministic = prev[2]
        torch.backends.cudnn.benchmark = prev[3]


def auc_score(y: np.ndarray, prob: np.ndarray) -> float:
    """ROC AUC (binary: of the class-1 probability; else macro one-vs-rest); NaN if undefined."""
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return float("nan")
    try:
        if prob.shape[1] == 2:
            return float(roc_auc_score(y, prob[:, 1]))
        return float(roc_auc_score(y, prob, multi_class="ovr", labels=list(range(prob.shape[1]))))
    except ValueError:
        return float("nan")


def _loader(
    ds: Dataset, batch_size: int, *, shuffle: bool, seed: int, workers: int, pin: bool
) -> DataLoader:
    gen = torch.Generator()
    gen.manual_seed(seed)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        generator=gen,
        worker_init_fn=worker_init_fn if workers > 0 else None,
        pin_memory=pin,
    )


def _images(x: torch.Tensor, kind: str) -> int:
    return x.shape[0] * x.shape[1] if kind == "slices25d" else x.shape[0]


@torch.no_grad()
def _evaluate(
    model: nn.Module, loader: DataLoader, criterion: nn.Module, device: torch.device, kind: str
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean loss and per-sample (probabilities, labels, file, instance)."""
    model.eval()
    total, n = 0.0, 0
    probs, labels, files, inst = [], [], [], []
    for batch in loader:
        x = batch["x"].to(device, non_blocking=True)
        logits = model(x)
        y = batch["label"]
        if (y >= 0).all():
            total += float(criterion(logits, y.to(device))) * len(y)
            n += len(y)
        probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        labels.append(y.numpy())
        files.append(batch["file"].numpy())
        inst.append(batch["instance"].numpy())
    return (
        total / n if n else float("nan"),
        np.concatenate(probs),
        np.concatenate(labels),
        np.concatenate(files),
        np.concatenate(inst),
    )


def _patient_level(
    prob: np.ndarray, y: np.ndarray, files: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean probability per file (patient) for instance-level predictions."""
    order = list(dict.fromkeys(files.tolist()))
    p = np.stack([prob[files == f].mean(axis=0) for f in order])
    lab = np.array([y[files == f][0] for f in order])
    return p, lab


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _json_bytes(obj: Any) -> bytes:
    def _clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: _clean(u) for k, u in v.items()}
        if isinstance(v, (list, tuple)):
            return [_clean(u) for u in v]
        if isinstance(v, np.generic):
            return _clean(v.item())
        return v

    return (json.dumps(_clean(obj), indent=2, sort_keys=True) + "\n").encode()


def plot_subregion_curves(
    histories: Mapping[int, list[dict[str, Any]]], out_png: str | Path
) -> None:
    """Training loss and validation AUC per epoch of every subregion's model, one line each."""
    fig = Figure(figsize=(9, 3.6))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    for i, history in histories.items():
        ep = [h["epoch"] for h in history]
        ax1.plot(ep, [h["train_loss"] for h in history], "o-", ms=3, label=f"habitat {i}")
        auc = [np.nan if h["val_auc"] is None else h["val_auc"] for h in history]
        ax2.plot(ep, auc, "o-", ms=3, label=f"habitat {i}")
    ax1.set(xlabel="epoch", ylabel="training loss (class-weighted CE)", title="Loss")
    ax2.set(xlabel="epoch", ylabel="AUC", title="Validation AUC", ylim=(0, 1.02))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if histories:
            ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _atomic_write(Path(out_png), buf.getvalue())


def plot_curves(history: list[dict[str, Any]], best_epoch: int, out_png: str | Path) -> None:
    """Loss (train, validation) and validation-AUC curves per epoch, best epoch marked."""
    ep = [h["epoch"] for h in history]
    fig = Figure(figsize=(9, 3.6))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(ep, [h["train_loss"] for h in history], "o-", ms=3, label="train")
    val = [h["val_loss"] for h in history]
    if any(v is not None and math.isfinite(v) for v in val):
        ax1.plot(ep, [np.nan if v is None else v for v in val], "o-", ms=3, label="validation")
    ax1.set(xlabel="epoch", ylabel="loss (class-weighted CE)", title="Loss")
    ax1.legend()
    auc = [np.nan if h["val_auc"] is None else h["val_auc"] for h in history]
    ax2.plot(ep, auc, "o-", ms=3, color="tab:green")
    ax2.set(xlabel="epoch", ylabel="AUC", title="Validation AUC", ylim=(0, 1.02))
    for ax in (ax1, ax2):
        ax.axvline(best_epoch, color="grey", ls="--", lw=1)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _atomic_write(Path(out_png), buf.getvalue())


def _split(labels: np.ndarray, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(len(labels))
    if cfg.val_fraction <= 0:
        return idx, np.zeros(0, dtype=np.int64)
    counts = np.bincount(labels, minlength=cfg.num_classes)
    if np.any(counts < 2):
        raise InputError(
            f"every class needs >= 2 training patients for a stratified validation fold "
            f"(counts {counts.tolist()})"
        )
    n_val = max(round(cfg.val_fraction * len(labels)), cfg.num_classes)
    if len(labels) - n_val < cfg.num_classes:
        raise InputError(f"too few training patients ({len(labels)}) for a validation fold")
    tr, va = train_test_split(idx, test_size=n_val, stratify=labels, random_state=cfg.seed)
    return np.sort(tr), np.sort(va)


def _better(cur: tuple[float, float], best: tuple[float, float] | None, cfg: TrainConfig) -> bool:
    if best is None:
        return True
    (auc, loss), (b_auc, b_loss) = cur, best
    if cfg.monitor == "auc" and math.isfinite(auc) and math.isfinite(b_auc):
        if auc > b_auc + cfg.min_delta:
            return True
        return auc >= b_auc and loss < b_loss - cfg.min_delta
    return math.isfinite(loss) and (not math.isfinite(b_loss) or loss < b_loss - cfg.min_delta)


def train(
    config: TrainConfig | Mapping[str, Any],
    train_paths: Sequence[str | Path],
    train_labels: Sequence[int],
    out_dir: str | Path,
) -> dict[str, Any]:
    """Fit a model on the training patients; write checkpoint, metrics, curves and config.

    Args:
        config: A :class:`TrainConfig` or a mapping of its fields.
        train_paths: One ``.npz`` per training patient.
        train_labels: Integer labels ``0..num_classes-1``, aligned with ``train_paths``.
        out_dir: Receives ``checkpoint.pt`` (best epoch), ``metrics.json``, ``curves.png`` and
            ``config.json`` (all written atomically).

    Returns:
        The metrics written to ``metrics.json``.

    Raises:
        ConfigError: Bad settings, an unavailable device or unfitting pretrained weights.
        InputError: Missing / inconsistent inputs or labels, too few patients per class.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    cfg.validate()
    out = Path(out_dir)
    paths = [Path(p) for p in train_paths]
    y = np.asarray(train_labels)
    if len(paths) != len(y):
        raise InputError(f"{len(paths)} training inputs but {len(y)} labels")
    if len(paths) == 0:
        raise InputError("no training inputs")
    if not np.issubdtype(y.dtype, np.integer) and not np.all(np.mod(y, 1) == 0):
        raise InputError("labels must be integers")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= cfg.num_classes:
        raise InputError(
            f"labels must lie in 0..{cfg.num_classes - 1}, got {sorted(set(y.tolist()))}"
        )
    device = resolve_device(cfg.device)

    x0, _ = read_input(paths[0], cfg.input_kind)
    shape0 = x0.shape
    if cfg.input_kind == "volume":
        in_channels, n_instances, spatial = shape0[0], 1, shape0[1:]
    else:
        in_channels, n_instances, spatial = shape0[1], shape0[0], shape0[2:]

    t_start = time.perf_counter()
    with seeded(cfg.seed, deterministic=cfg.deterministic, device=device):
        tr_idx, va_idx = _split(y, cfg)
        aug = _augmentations(cfg, spatial, cfg.seed) if cfg.augment else None
        ds_kw = {"skip_padding": cfg.skip_padding, "cache": cfg.cache_inputs}
        ds_tr = NpzDataset(
            [paths[i] for i in tr_idx], y[tr_idx], cfg.input_kind, transform=aug, **ds_kw
        )
        ds_va = (
            NpzDataset([paths[i] for i in va_idx], y[va_idx], cfg.input_kind, **ds_kw)
            if len(va_idx)
            else None
        )
        for ds in (ds_tr, ds_va):
            if ds is None:
                continue
            for i in range(len(ds.paths)):
                shp = _npz_shape(ds.paths[i])
                if shp != shape0:
                    raise InputError(
                        f"x has shape {shp}, expected {shape0} (as the first input)",
                        file=ds.paths[i],
                    )

        weights = (
            class_weights(ds_tr.sample_labels(), cfg.num_classes) if cfg.class_weighted else None
        )
        model = build_model(cfg, in_channels, n_instances).to(device)
        criterion = nn.CrossEntropyLoss(
            weight=None
            if weights is None
            else torch.as_tensor(weights, dtype=torch.float32, device=device)
        )
        if cfg.optimizer == "adam":
            opt: torch.optim.Optimizer = torch.optim.Adam(
                model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
            )
        else:
            opt = torch.optim.SGD(
                model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
            )
        sched = (
            torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step_size, gamma=cfg.lr_gamma)
            if cfg.lr_step_size
            else None
        )
        pin = device.type == "cuda"
        dl_tr = _loader(
            ds_tr, cfg.batch_size, shuffle=True, seed=cfg.seed, workers=cfg.num_workers, pin=pin
        )
        dl_va = (
            _loader(
                ds_va,
                cfg.batch_size,
                shuffle=False,
                seed=cfg.seed,
                workers=cfg.num_workers,
                pin=pin,
            )
            if ds_va is not None
            else None
        )

        history: list[dict[str, Any]] = []
        best: tuple[float, float] | None = None
        best_epoch, best_state, since_best = 0, None, 0
        n_images, train_seconds, stopped_early = 0, 0.0, False
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            t0 = time.perf_counter()
            total, n = 0.0, 0
            for batch in dl_tr:
                x = batch["x"].to(device, non_blocking=True)
                yb = batch["label"].to(device, non_blocking=True)
                if _images(x, cfg.input_kind) < 2:
                    continue  # BatchNorm cannot train on a single image (a 1-sample last batch)
                opt.zero_grad(set_to_none=True)
                loss = criterion(model(x), yb)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(yb)
                n += len(yb)
                n_images += _images(x, cfg.input_kind)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_seconds += time.perf_counter() - t0
            lr_now = opt.param_groups[0]["lr"]
            if sched is not None:
                sched.step()
            train_loss = total / n if n else float("nan")
            val_loss, val_auc = float("nan"), float("nan")
            if dl_va is not None:
                val_loss, prob, lab, files, _ = _evaluate(
                    model, dl_va, criterion, device, cfg.input_kind
                )
                if cfg.input_kind == "slice":
                    prob, lab = _patient_level(prob, lab, files)
                val_auc = auc_score(lab, prob)
            history.append(
                {
                    "epoch": epoch,
                    "lr": lr_now,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "val_auc": val_auc,
                    "seconds": time.perf_counter() - t0,
                }
            )
            log.info(
                "epoch %d/%d: train loss %.4f, val loss %.4f, val AUC %.3f",
                epoch,
                cfg.epochs,
                train_loss,
                val_loss,
                val_auc,
            )
            if dl_va is None:
                best_epoch, best_state = epoch, None
                continue
            if _better((val_auc, val_loss), best, cfg):
                best, best_epoch, since_best = (val_auc, val_loss), epoch, 0
                best_state = {
                    k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                }
            else:
                since_best += 1
                if cfg.patience is not None and since_best >= cfg.patience:
                    stopped_early = True
                    break
        if best_state is None:
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    seconds = time.perf_counter() - t_start

    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "config": cfg.to_dict(),
        "in_channels": int(in_channels),
        "n_instances": int(n_instances),
        "input_shape": [int(s) for s in shape0],
        "best_epoch": int(best_epoch),
        "state_dict": best_state,
    }
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    _atomic_write(out / "checkpoint.pt", buf.getvalue())
    best_row = history[best_epoch - 1]
    metrics = {
        "history": history,
        "best_epoch": best_epoch,
        "best_val_auc": best_row["val_auc"],
        "best_val_loss": best_row["val_loss"],
        "epochs_run": len(history),
        "stopped_early": stopped_early,
        "monitor": cfg.monitor,
        "device": str(device),
        "seconds": seconds,
        "train_seconds": train_seconds,
        "images_per_s": n_images / train_seconds if train_seconds > 0 else None,
        "class_weights": None if weights is None else weights.tolist(),
        "n_train_patients": len(tr_idx),
        "n_val_patients": len(va_idx),
        "n_train_samples": len(ds_tr),
        "val_indices": va_idx.tolist(),
        "input_shape": [int(s) for s in shape0],
        "seed": cfg.seed,
        "deterministic": cfg.deterministic,
        "torch": torch.__version__,
    }
    _atomic_write(out / "metrics.json", _json_bytes(metrics))
    plot_curves(history, best_epoch, out / "curves.png")
    _atomic_write(out / "config.json", _json_bytes(cfg.to_dict()))
    return metrics


# --------------------------------------------------------------------------- prediction


def _read_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError("checkpoint not found", file=path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"cannot read checkpoint: {exc}", file=path) from exc
    if not isinstance(ckpt, dict):
        raise InputError("not an hccrad deep-learning checkpoint", file=path)
    return ckpt


def model_from_checkpoint(
    ckpt: Mapping[str, Any],
    *,
    device: str | torch.device = "cpu",
    source: str | Path | None = None,
) -> tuple[nn.Module, TrainConfig]:
    """Rebuild the model (eval mode) of a checkpoint dictionary written by :func:`train`."""
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError("not an hccrad deep-learning checkpoint", file=source)
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = build_model(cfg, ckpt["in_channels"], ckpt["n_instances"], load_weights=False)
    model.load_state_dict(ckpt["state_dict"])
    dev = resolve_device(device) if isinstance(device, str) else device
    return model.to(dev).eval(), cfg


def load_model(
    checkpoint: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, TrainConfig]:
    """Rebuild the model of a ``checkpoint.pt`` written by :func:`train` (eval mode)."""
    path = Path(checkpoint)
    return model_from_checkpoint(_read_checkpoint(path), device=device, source=path)


def write_subregion_bundle(members: Mapping[int, Mapping[str, Any]], path: str | Path) -> None:
    """Write one checkpoint per habitat subregion as a single ``checkpoint.pt``.

    ``members`` maps the subregion to the dictionary :func:`train` saved (or the
    ``{"untrained": True, "reason": ...}`` marker of a subregion that could not be trained).
    """
    buf = io.BytesIO()
    torch.save(
        {"format": SUBREGION_FORMAT, "members": {str(i): dict(m) for i, m in members.items()}},
        buf,
    )
    _atomic_write(Path(path), buf.getvalue())


def read_subregion_bundle(checkpoint: str | Path) -> dict[int, dict[str, Any]]:
    """Subregion -> its checkpoint dictionary (or untrained marker), in subregion order."""
    path = Path(checkpoint)
    ckpt = _read_checkpoint(path)
    if ckpt.get("format") != SUBREGION_FORMAT:
        raise InputError("not a per-subregion deep-model bundle", file=path)
    return {int(i): m for i, m in sorted(ckpt["members"].items(), key=lambda kv: int(kv[0]))}


def resolve_model(
    checkpoint_or_model: str | Path | nn.Module, device: str | torch.device = "auto"
) -> tuple[nn.Module, str]:
    """A model in eval mode on ``device`` and its input kind."""
    dev = resolve_device(device) if isinstance(device, str) else device
    if isinstance(checkpoint_or_model, nn.Module):
        model = checkpoint_or_model.to(dev).eval()
        return model, input_kind_of(model)
    model, cfg = load_model(checkpoint_or_model, device=dev)
    return model, cfg.input_kind


def predict(
    checkpoint: str | Path | nn.Module,
    paths: Sequence[str | Path],
    *,
    patients: Sequence[str] | None = None,
    device: str = "auto",
    batch_size: int = 32,
) -> pd.DataFrame:
    """Class probabilities per sample (per instance for ``slice`` models).

    Returns:
        One row per input (``slice``: per instance, padding included), columns ``path``,
        ``patient`` (when given), ``instance`` and ``z`` (``slice`` only), ``prob_0..prob_{K-1}``
        and ``prob`` (= ``prob_1`` for two classes, else the highest). Row order follows ``paths``.
    """
    model, kind = resolve_model(checkpoint, device)
    dev = next(model.parameters()).device
    if patients is not None and len(patients) != len(paths):
        raise InputError(f"{len(paths)} inputs but {len(patients)} patients")
    ds = NpzDataset(paths, None, kind)
    dl = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)
    crit = nn.CrossEntropyLoss()
    _, prob, _, files, inst = _evaluate(model, dl, crit, dev, kind)
    k = num_outputs(model)
    df = pd.DataFrame({"path": [str(ds.paths[f]) for f in files]})
    if patients is not None:
        df["patient"] = [str(patients[f]) for f in files]
    if kind == "slice":
        df["instance"] = inst
        df["z"] = [
            int(ds.z[f][j]) if ds.z[f] is not None else int(j)
            for f, j in zip(files, inst, strict=True)
        ]
    for c in range(k):
        df[f"prob_{c}"] = prob[:, c].astype(np.float64)
    df["prob"] = prob[:, 1] if k == 2 else prob.max(axis=1)
    return df
