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

The settings (:class:`TrainConfig`, :data:`STUDY_PRESETS`) live in :mod:`hccrad.deep.train_config`,
the ``.npz`` dataset in :mod:`hccrad.deep.dataset`, the curves in :mod:`hccrad.deep.curves` and the
device choice in :mod:`hccrad.deep.device`; their public names are importable from here too.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from monai.data.utils import worker_init_fn
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hccrad.deep.curves import plot_curves, plot_member_curves
from hccrad.deep.dataset import NpzDataset, augmentations, npz_shape, read_input
from hccrad.deep.device import resolve_device
from hccrad.deep.nets import (
    MultiBranch25D,
    SliceClassifier,
    VolumeClassifier,
    build_network,
    input_kind_of,
    load_pretrained,
    num_outputs,
)
from hccrad.deep.train_config import (
    INPUT_KINDS,
    PRETRAINED_KEY,
    STUDY_PRESETS,
    TrainConfig,
    resolve_pretrained,
)
from hccrad.errors import InputError
from hccrad.fileio import save_torch, write_json

__all__ = [
    "BUNDLE_FORMATS",
    "CHECKPOINT_FORMAT",
    "INPUT_KINDS",
    "PHASE_FORMAT",
    "STUDY_PRESETS",
    "SUBREGION_FORMAT",
    "NpzDataset",
    "TrainConfig",
    "auc_score",
    "build_model",
    "class_weights",
    "freeze_backbone",
    "load_model",
    "model_from_checkpoint",
    "plot_curves",
    "plot_member_curves",
    "predict",
    "read_bundle",
    "read_input",
    "resolve_device",
    "resolve_model",
    "seeded",
    "train",
    "write_bundle",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "hccrad-deep-checkpoint/1"
#: A bundle of one checkpoint per habitat subregion (:func:`write_bundle`).
SUBREGION_FORMAT = "hccrad-deep-subregions/1"
#: A bundle of one checkpoint per image phase (:func:`write_bundle` with ``by="phase"``).
PHASE_FORMAT = "hccrad-deep-phases/1"
#: Bundle kind -> its format tag: one network per habitat subregion or per phase.
BUNDLE_FORMATS = {"subregion": SUBREGION_FORMAT, "phase": PHASE_FORMAT}


# --------------------------------------------------------------------------- models


def build_model(
    cfg: TrainConfig, in_channels: int, n_instances: int = 1, *, load_weights: bool = True
) -> nn.Module:
    """The model for ``cfg.input_kind``. With ``load_weights`` (training) the backbone gets the
    local ``cfg.pretrained`` weights (:func:`resolve_pretrained`) and ``cfg.freeze_backbone``
    stops its gradients (:func:`freeze_backbone`); a model rebuilt from a checkpoint
    (``load_weights=False``) keeps them, which Grad-CAM needs."""
    backbone = build_network(
        cfg.network,
        spatial_dims=int(cfg.spatial_dims or INPUT_KINDS[cfg.input_kind][1]),
        in_channels=in_channels,
        num_classes=cfg.num_classes,
    )
    model: nn.Module
    if cfg.input_kind == "slices25d":
        model = MultiBranch25D(backbone, n_instances, cfg.num_classes)
    elif cfg.input_kind == "slice":
        model = SliceClassifier(backbone, cfg.num_classes)
    else:
        model = VolumeClassifier(backbone, cfg.num_classes)
    if load_weights and cfg.pretrained:
        path = resolve_pretrained(cfg.pretrained)
        load_pretrained(model, path, config_key=PRETRAINED_KEY)
    if load_weights and cfg.freeze_backbone:
        freeze_backbone(model)
    return model


def freeze_backbone(model: nn.Module) -> None:
    """No gradients for the backbone of a wrapper (only ``head`` trains); see :func:`_train_epoch`
    for its BatchNorm statistics."""
    for p in model.backbone.parameters():
        p.requires_grad_(False)


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


def _check_training_set(
    cfg: TrainConfig, train_paths: Sequence[str | Path], train_labels: Sequence[int]
) -> tuple[list[Path], np.ndarray]:
    """The input paths and the labels as int64, checked against each other and the classes."""
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
    return paths, y


@dataclass(frozen=True)
class _Layout:
    """The shape of ``x`` every input must have, and what it means for the model."""

    shape: tuple[int, ...]
    in_channels: int
    n_instances: int
    spatial: tuple[int, ...]

    @classmethod
    def of(cls, path: Path, input_kind: str) -> _Layout:
        """The layout of the input at ``path`` (read and checked)."""
        x0, _ = read_input(path, input_kind)
        shape = tuple(x0.shape)
        if input_kind == "volume":
            return cls(shape, shape[0], 1, shape[1:])
        return cls(shape, shape[1], shape[0], shape[2:])


def _datasets(
    cfg: TrainConfig,
    paths: list[Path],
    y: np.ndarray,
    split: tuple[np.ndarray, np.ndarray],
    layout: _Layout,
) -> tuple[NpzDataset, NpzDataset | None]:
    """Training (augmented) and validation datasets; every input must have ``layout.shape``."""
    tr_idx, va_idx = split
    aug = augmentations(cfg, layout.spatial, cfg.seed) if cfg.augment else None
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
            shp = npz_shape(ds.paths[i])
            if shp != layout.shape:
                raise InputError(
                    f"x has shape {shp}, expected {layout.shape} (as the first input)",
                    file=ds.paths[i],
                )
    return ds_tr, ds_va


def _optimizer(
    cfg: TrainConfig, model: nn.Module
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.StepLR | None]:
    """Adam or SGD on the trainable parameters, and the StepLR schedule when configured."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(
            params, lr=cfg.lr, weight_decay=cfg.weight_decay
        )
    else:
        opt = torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    sched = (
        torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step_size, gamma=cfg.lr_gamma)
        if cfg.lr_step_size
        else None
    )
    return opt, sched


def _loaders(
    cfg: TrainConfig, ds_tr: NpzDataset, ds_va: NpzDataset | None, device: torch.device
) -> tuple[DataLoader, DataLoader | None]:
    """The shuffled training loader and the validation loader (seeded generators)."""
    kw = {"seed": cfg.seed, "workers": cfg.num_workers, "pin": device.type == "cuda"}
    dl_tr = _loader(ds_tr, cfg.batch_size, shuffle=True, **kw)
    dl_va = _loader(ds_va, cfg.batch_size, shuffle=False, **kw) if ds_va is not None else None
    return dl_tr, dl_va


def _train_epoch(
    model: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    opt: torch.optim.Optimizer,
    device: torch.device,
    kind: str,
) -> tuple[float, int]:
    """One pass over the training batches: mean training loss and the images fitted.

    A frozen backbone (no parameter needs a gradient) stays in eval mode, so that its BatchNorm
    running statistics do not move either.
    """
    model.train()
    backbone = getattr(model, "backbone", None)
    if backbone is not None and not any(p.requires_grad for p in backbone.parameters()):
        backbone.eval()
    total, n, n_images = 0.0, 0, 0
    for batch in loader:
        x = batch["x"].to(device, non_blocking=True)
        yb = batch["label"].to(device, non_blocking=True)
        if _images(x, kind) < 2:
            continue  # BatchNorm cannot train on a single image (a 1-sample last batch)
        opt.zero_grad(set_to_none=True)
        loss = criterion(model(x), yb)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(yb)
        n += len(yb)
        n_images += _images(x, kind)
    return (total / n if n else float("nan")), n_images


def _validate(
    model: nn.Module,
    loader: DataLoader | None,
    criterion: nn.Module,
    device: torch.device,
    kind: str,
) -> tuple[float, float]:
    """Validation loss and AUC (``slice``: of the patients' mean probabilities); NaN without."""
    if loader is None:
        return float("nan"), float("nan")
    val_loss, prob, lab, files, _ = _evaluate(model, loader, criterion, device, kind)
    if kind == "slice":
        prob, lab = _patient_level(prob, lab, files)
    return val_loss, auc_score(lab, prob)


@dataclass
class _EarlyStopping:
    """Tracks the best validation epoch (:func:`_better`) and the epochs since."""

    cfg: TrainConfig
    best: tuple[float, float] | None = None
    since_best: int = 0

    def improved(self, val_auc: float, val_loss: float) -> bool:
        """Whether this epoch is the new best (else one more epoch without improvement)."""
        if _better((val_auc, val_loss), self.best, self.cfg):
            self.best, self.since_best = (val_auc, val_loss), 0
            return True
        self.since_best += 1
        return False

    def should_stop(self) -> bool:
        """``patience`` epochs in a row without improvement."""
        return self.cfg.patience is not None and self.since_best >= self.cfg.patience


@dataclass
class _Fit:
    """What the epoch loop leaves: per-epoch history, the best epoch and its weights."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    n_images: int = 0
    train_seconds: float = 0.0
    stopped_early: bool = False


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _fit(
    cfg: TrainConfig,
    model: nn.Module,
    loaders: tuple[DataLoader, DataLoader | None],
    criterion: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.StepLR | None,
    device: torch.device,
) -> _Fit:
    """The epoch loop: train, validate, keep the best epoch's weights, stop early."""
    dl_tr, dl_va = loaders
    fit, stopping = _Fit(), _EarlyStopping(cfg)
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        train_loss, n_images = _train_epoch(model, dl_tr, criterion, opt, device, cfg.input_kind)
        fit.n_images += n_images
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        fit.train_seconds += time.perf_counter() - t0
        lr_now = opt.param_groups[0]["lr"]
        if sched is not None:
            sched.step()
        val_loss, val_auc = _validate(model, dl_va, criterion, device, cfg.input_kind)
        fit.history.append(
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
            fit.best_epoch, fit.best_state = epoch, None
        elif stopping.improved(val_auc, val_loss):
            fit.best_epoch, fit.best_state = epoch, _cpu_state(model)
        elif stopping.should_stop():
            fit.stopped_early = True
            break
    if fit.best_state is None:
        fit.best_state = _cpu_state(model)
    return fit


def _write_checkpoint(path: Path, cfg: TrainConfig, layout: _Layout, fit: _Fit) -> None:
    """``checkpoint.pt``: the config, the input layout and the best epoch's weights."""
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "config": cfg.to_dict(),
        "in_channels": int(layout.in_channels),
        "n_instances": int(layout.n_instances),
        "input_shape": [int(s) for s in layout.shape],
        "best_epoch": int(fit.best_epoch),
        "state_dict": fit.best_state,
    }
    save_torch(ckpt, path)


def _metrics(
    cfg: TrainConfig,
    fit: _Fit,
    *,
    device: torch.device,
    seconds: float,
    weights: np.ndarray | None,
    split: tuple[np.ndarray, np.ndarray],
    n_train_samples: int,
    layout: _Layout,
) -> dict[str, Any]:
    """The content of ``metrics.json``."""
    tr_idx, va_idx = split
    best_row = fit.history[fit.best_epoch - 1]
    return {
        "history": fit.history,
        "best_epoch": fit.best_epoch,
        "best_val_auc": best_row["val_auc"],
        "best_val_loss": best_row["val_loss"],
        "epochs_run": len(fit.history),
        "stopped_early": fit.stopped_early,
        "monitor": cfg.monitor,
        "device": str(device),
        "seconds": seconds,
        "train_seconds": fit.train_seconds,
        "images_per_s": fit.n_images / fit.train_seconds if fit.train_seconds > 0 else None,
        "class_weights": None if weights is None else weights.tolist(),
        "n_train_patients": len(tr_idx),
        "n_val_patients": len(va_idx),
        "n_train_samples": n_train_samples,
        "val_indices": va_idx.tolist(),
        "input_shape": [int(s) for s in layout.shape],
        "seed": cfg.seed,
        "deterministic": cfg.deterministic,
        "torch": torch.__version__,
    }


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
    paths, y = _check_training_set(cfg, train_paths, train_labels)
    device = resolve_device(cfg.device)
    layout = _Layout.of(paths[0], cfg.input_kind)

    t_start = time.perf_counter()
    with seeded(cfg.seed, deterministic=cfg.deterministic, device=device):
        split = _split(y, cfg)
        ds_tr, ds_va = _datasets(cfg, paths, y, split, layout)
        weights = (
            class_weights(ds_tr.sample_labels(), cfg.num_classes) if cfg.class_weighted else None
        )
        model = build_model(cfg, layout.in_channels, layout.n_instances).to(device)
        criterion = nn.CrossEntropyLoss(
            weight=None
            if weights is None
            else torch.as_tensor(weights, dtype=torch.float32, device=device)
        )
        opt, sched = _optimizer(cfg, model)
        loaders = _loaders(cfg, ds_tr, ds_va, device)
        fit = _fit(cfg, model, loaders, criterion, opt, sched, device)
    seconds = time.perf_counter() - t_start

    _write_checkpoint(out / "checkpoint.pt", cfg, layout, fit)
    metrics = _metrics(
        cfg,
        fit,
        device=device,
        seconds=seconds,
        weights=weights,
        split=split,
        n_train_samples=len(ds_tr),
        layout=layout,
    )
    write_json(metrics, out / "metrics.json")
    plot_curves(fit.history, fit.best_epoch, out / "curves.png")
    write_json(cfg.to_dict(), out / "config.json")
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


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The dictionary of a ``checkpoint.pt`` (a trained model, or the ``untrained`` marker)."""
    return _read_checkpoint(Path(path))


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


def write_bundle(
    members: Mapping[Any, Mapping[str, Any]], path: str | Path, *, by: str = "subregion"
) -> None:
    """Write one checkpoint per member (habitat subregion, or phase with ``by="phase"``) as a
    single ``checkpoint.pt``.

    ``members`` maps the member (subregion number or phase name) to the dictionary :func:`train`
    saved, or to the ``{"untrained": True, "reason": ...}`` marker of a member that could not be
    trained.
    """
    if by not in BUNDLE_FORMATS:
        raise ValueError(f"bundle kind {by!r}: choose one of {sorted(BUNDLE_FORMATS)}")
    save_torch(
        {"format": BUNDLE_FORMATS[by], "members": {str(k): dict(m) for k, m in members.items()}},
        path,
    )


def read_bundle(checkpoint: str | Path, *, by: str = "subregion") -> dict[Any, dict[str, Any]]:
    """Member -> its checkpoint dictionary (or untrained marker) of a bundle written by
    :func:`write_bundle`: subregions as integers in subregion order, phases in written order."""
    path = Path(checkpoint)
    ckpt = _read_checkpoint(path)
    if by not in BUNDLE_FORMATS or ckpt.get("format") != BUNDLE_FORMATS[by]:
        raise InputError(f"not a per-{by} deep-model bundle", file=path)
    if by == "subregion":
        return {int(i): m for i, m in sorted(ckpt["members"].items(), key=lambda kv: int(kv[0]))}
    return dict(ckpt["members"])


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
