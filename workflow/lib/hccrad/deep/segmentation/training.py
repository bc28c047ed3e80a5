"""Training of the segmentation U-Net (:func:`train_segmentation`).

A seeded held-out subset of the training cases gives the per-epoch validation Dice (on the grid,
before post-processing); the weights of the best epoch (or the last) are written to
``checkpoint.pt`` with ``config.json`` and ``metrics.json``.
"""

from __future__ import annotations

import copy
import logging
import math
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hccrad.deep.segmentation.config import CHECKPOINT_FORMAT, CLASSES, SegConfig
from hccrad.deep.segmentation.grid import PreparedCase, SegCase, prepare_case
from hccrad.deep.segmentation.metrics import _grid_dice
from hccrad.deep.segmentation.net import (
    _augment,
    _autocast,
    _predict_probs,
    _torch,
    _torch_state,
    build_net,
)
from hccrad.errors import InputError
from hccrad.fileio import PathLike, save_torch, write_json

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def _split(n: int, config: SegConfig) -> tuple[list[int], list[int]]:
    """Seeded (train, validation) case indices."""
    n_val = 0
    if n >= 2 and config.val_fraction > 0:
        n_val = min(n - 1, max(1, round(n * config.val_fraction)))
    order = np.random.default_rng([config.seed, 0]).permutation(n)
    return sorted(int(i) for i in order[n_val:]), sorted(int(i) for i in order[:n_val])


def _versions() -> dict[str, str]:
    import monai

    torch = _torch()
    return {
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _prepare_cases(
    cases: Sequence[SegCase | PreparedCase], config: SegConfig
) -> tuple[list[PreparedCase], list[str]]:
    """Every case on the training grid with its labels, and the case names."""
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
    return prepared, names


def _train_epoch(
    net: Any,
    prepared: list[PreparedCase],
    train_idx: list[int],
    config: SegConfig,
    rng: np.random.Generator,
    step: tuple[Any, Any],
    device: torch.device,
) -> float:
    """One pass over the training cases in a seeded order (augmented); the mean loss."""
    torch = _torch()
    loss_fn, opt = step
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
    return total / max(count, 1)


def _validation_dice(
    net: Any,
    prepared: list[PreparedCase],
    val_idx: list[int],
    config: SegConfig,
    device: torch.device,
) -> tuple[float, float]:
    """Mean (liver, tumor) Dice of the validation cases on the grid."""
    scores = []
    for i in val_idx:
        pred = np.argmax(_predict_probs(net, prepared[i].x, config, device), axis=0)
        scores.append(_grid_dice(pred, prepared[i].y))
    return float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores]))


def _fit(
    config: SegConfig,
    prepared: list[PreparedCase],
    split: tuple[list[int], list[int]],
    device: torch.device,
) -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
    """The epoch loop: per-epoch history, the best epoch and its weights (on the CPU)."""
    from monai.losses import DiceCELoss

    torch = _torch()
    train_idx, val_idx = split
    rng = np.random.default_rng([config.seed, 1])
    history: list[dict[str, Any]] = []
    best_score, best_epoch, best_state = -math.inf, 0, None
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
        loss = _train_epoch(net, prepared, train_idx, config, rng, (loss_fn, opt), device)
        row: dict[str, Any] = {"epoch": epoch, "loss": loss}
        if val_idx:
            row["val_dice_liver"], row["val_dice_tumor"] = _validation_dice(
                net, prepared, val_idx, config, device
            )
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
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in net.state_dict().items()})
    if best_state is None:  # epochs == 0: the initial weights
        best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    return history, best_epoch, best_state


def _write_checkpoint(
    path: Path, config: SegConfig, best_state: dict[str, Any], metrics: dict[str, Any]
) -> None:
    """``checkpoint.pt``: the config, the classes, the best epoch's weights and the split."""
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "classes": list(CLASSES),
        "state_dict": best_state,
        "epoch": metrics["best_epoch"],
        "train_patients": metrics["train_patients"],
        "val_patients": metrics["val_patients"],
    }
    save_torch(checkpoint, path)


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
    from hccrad.deep.device import resolve_device  # imports torch: keeps this package light

    torch = _torch()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not cases:
        raise InputError("no training cases for the segmentation U-Net")
    t_start = time.perf_counter()
    prepared, names = _prepare_cases(cases, config)
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
    with _torch_state(config, device):
        history, best_epoch, best_state = _fit(config, prepared, (train_idx, val_idx), device)
    metrics: dict[str, Any] = {
        "epochs": history,
        "best_epoch": best_epoch,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": config.num_threads or torch.get_num_threads(),
        "train_patients": [names[i] for i in train_idx],
        "val_patients": [names[i] for i in val_idx],
        "prepare_seconds": t_prep,
        "seconds": time.perf_counter() - t_start,
        "versions": _versions(),
    }
    _write_checkpoint(out / "checkpoint.pt", config, best_state, metrics)
    write_json(config.to_dict(), out / "config.json")
    write_json(metrics, out / "metrics.json")
    return metrics
