"""End-to-end fusion: a trained network and tabular columns joined in one fully connected layer.

:class:`JointFusionClassifier` is the DLRCR model of Zhao et al. (2024) as the paper builds it:
"the high-level DL features and CR and radiomics features were combined with the fully
connected layer to conduct joint training via the best-performing ResNet architecture
variation". It starts from a study's trained deep model (``checkpoint.pt`` written by
:func:`hccrad.deep.train.train`), replaces the network's own head by one fully connected layer
over ``[network features, standardised tabular columns]`` and trains the **whole** network on the
images and the table together (the backbone is not frozen). The new layer starts as the
network's own head for the deep part; its tabular part starts where a ridge logistic regression of
the label on the tabular columns puts it, with the network's own log-odds as an offset
(:func:`offset_logistic`, fitted on the fitting rows only), so the first epoch starts from the
network's prediction plus what the table adds to it. A tabular part started at zero
(``tabular_init="zero"``) barely moves at a network's learning rate: Adam moves a weight by about
``lr`` a step, so 10 epochs of two batches at 1e-3 leave it near 0.02 and the table is ignored.

The rows of ``X`` are patients (the DataFrame's index): their images are the network's inputs
(``inputs``: patient -> ``.npz``); the columns are the tabular part (selected radiomics features,
clinical factors). Early stopping uses a stratified inner split of the fitting rows only; the
backbone's own training augmentations apply (``augment``). Seeded and deterministic on the CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from monai.data import MetaTensor
from scipy.optimize import minimize
from scipy.special import expit, log_expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn

from hccrad.deep.dataset import augmentations, read_input
from hccrad.deep.fusion import (
    LogOddsClassifierMixin,
    class_weighted_loss,
    inner_split,
    make_optimizer,
)
from hccrad.deep.train import model_from_checkpoint, read_checkpoint
from hccrad.stats.selection import binary_labels

__all__ = ["JointFusionClassifier", "JointFusionNet", "offset_logistic"]


class JointFusionNet(nn.Module):
    """A trained network's penultimate features and tabular columns in one linear layer.

    ``network`` is a model of :func:`hccrad.deep.train.build_model` (``forward_features`` and a
    linear ``head``). Its head is replaced by ``head``: ``Linear(n_deep + n_tabular, classes)``,
    initialised with the network's head weights on the deep part and zeros on the tabular part
    (so that ``forward(x, tab)`` equals the network's own logits before any training).
    """

    def __init__(self, network: nn.Module, n_tabular: int) -> None:
        super().__init__()
        old = network.head
        if not isinstance(old, nn.Linear):
            raise ValueError(f"JointFusionNet: the network's head is {type(old).__name__}")
        self.n_deep, self.n_tabular = old.in_features, int(n_tabular)
        self.head = nn.Linear(self.n_deep + self.n_tabular, old.out_features)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.weight[:, : self.n_deep] = old.weight
            self.head.bias.copy_(old.bias)
        network.head = nn.Identity()
        self.network = network

    def forward(self, x: torch.Tensor, tabular: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, classes)`` of a batch of images and its tabular rows."""
        deep = self.network.forward_features(x)
        return self.head(torch.cat([deep, tabular], dim=1))

    def add_tabular(self, coef: np.ndarray, intercept: float) -> None:
        """Add ``intercept + tabular @ coef`` to the log-odds of class 1 (two-class head: half
        to each logit, with opposite signs)."""
        if self.head.out_features != 2 or len(coef) != self.n_tabular:
            raise ValueError("JointFusionNet.add_tabular: a two-class head and one coefficient "
                             "per tabular column")  # fmt: skip
        half = torch.as_tensor(np.asarray(coef, dtype=np.float64) / 2.0, dtype=torch.float32)
        with torch.no_grad():
            self.head.weight[1, self.n_deep :] += half
            self.head.weight[0, self.n_deep :] -= half
            self.head.bias[1] += float(intercept) / 2.0
            self.head.bias[0] -= float(intercept) / 2.0


def offset_logistic(
    X: np.ndarray,
    y: np.ndarray,
    offset: np.ndarray,
    sample_weight: np.ndarray | None = None,
    C: float = 1.0,
) -> tuple[np.ndarray, float]:
    """Ridge logistic regression with a fixed offset: ``logit P(y=1) = offset + b + X w``.

    Minimises ``sum_i s_i * logloss_i + ||w||^2 / (2 C)`` (scikit-learn's convention; the
    intercept ``b`` is not penalised) by L-BFGS on the convex objective. Returns ``(w, b)``.
    """
    A = np.asarray(X, dtype=np.float64)
    yv = np.asarray(y, dtype=np.float64)
    off = np.asarray(offset, dtype=np.float64)
    sw = np.ones(len(yv)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    if A.ndim != 2 or not (len(A) == len(yv) == len(off) == len(sw)):
        raise ValueError("offset_logistic: X (n, p), y, offset and weights of n rows")
    if not (np.isfinite(A).all() and np.isfinite(off).all()):
        raise ValueError("offset_logistic: non-finite input")

    def objective(beta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = off + beta[0] + A @ beta[1:]
        # -log-likelihood: y log(1 + e^-eta) + (1 - y) log(1 + e^eta)
        loss = -(sw * (yv * log_expit(eta) + (1.0 - yv) * log_expit(-eta))).sum()
        resid = sw * (expit(eta) - yv)
        w = beta[1:]
        grad = np.concatenate([[resid.sum()], A.T @ resid + w / C])
        return float(loss + 0.5 * (w @ w) / C), grad

    res = minimize(objective, np.zeros(A.shape[1] + 1), jac=True, method="L-BFGS-B",
                   options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-14})  # fmt: skip
    return res.x[1:].copy(), float(res.x[0])


def _log_odds(
    net: JointFusionNet, images: _Images, tab: torch.Tensor, rows: Sequence[int]
) -> np.ndarray:
    """The layer's log-odds of class 1 for ``rows`` (eval mode, no augmentation, batches of
    32)."""
    net.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(rows), 32):
            batch = list(rows[start : start + 32])
            logits = net(images.batch(batch), tab[batch]).double().numpy()
            out.append(logits[:, 1] - logits[:, 0])
    return np.concatenate(out) if out else np.zeros(0)


class _Images:
    """The network inputs of a list of ``.npz`` files, read once, augmented on request."""

    def __init__(self, paths: Sequence[Path], kind: str) -> None:
        self.kind = kind
        self.arrays = [read_input(p, kind)[0] for p in paths]

    def batch(self, rows: Sequence[int], transform: Any = None) -> torch.Tensor:
        out = []
        for i in rows:
            x = torch.from_numpy(self.arrays[i])
            if transform is not None:
                shape = x.shape
                flat = x.reshape(-1, *shape[2:]) if self.kind == "slices25d" else x
                t = transform({"x": flat})["x"]
                t = t.as_tensor() if isinstance(t, MetaTensor) else t
                x = torch.as_tensor(t, dtype=torch.float32).reshape(shape)
            out.append(x)
        return torch.stack(out).contiguous()


class JointFusionClassifier(LogOddsClassifierMixin, ClassifierMixin, BaseEstimator):
    """A trained deep model fine-tuned end to end with tabular columns in its FC layer (binary).

    Args:
        checkpoint: The deep model's ``checkpoint.pt`` (its network, weights and input kind).
        inputs: ``{patient: .npz}`` network input of every patient ``X`` may hold.
        optimizer: ``sgd`` (with ``momentum``) or ``adam``, on every weight of the network and
            the layer.
        lr, momentum, weight_decay: Optimiser settings.
        epochs: Training epochs at most.
        batch_size: Mini-batch size (patients; batches reshuffled every epoch).
        patience: Epochs without a lower inner-validation loss before stopping (``None``: the
            last epoch's weights).
        val_fraction: Share of the fitting rows held out (stratified) for early stopping.
        class_weighted: Cross-entropy weights ``n / (2 n_c)`` from the fitting rows.
        augment: The backbone's own training augmentations (its checkpoint's settings).
        tabular_init: Where the layer's tabular weights start: ``"logistic"`` (default) a ridge
            logistic regression (``C`` 1) of the fitting rows' labels on the standardised
            columns, offset by the network's own log-odds and weighted as the loss;
            ``"zero"`` at zero (the first epoch starts from the network's prediction alone).
        threads: Torch CPU threads while fitting and predicting.
        random_state: Seed of the inner split, the batch order and the augmentations.

    Fitted attributes: ``classes_``, ``mean_``, ``scale_`` (standardisation of the fitting
    rows), ``tabular_columns_``, ``n_deep_`` (network features), ``network_`` (its name),
    ``module_`` (:class:`JointFusionNet`, eval mode), ``best_epoch_``, ``n_epochs_``,
    ``history_`` (per epoch: train and inner-validation loss), ``val_rows_``,
    ``init_coef_`` and ``init_intercept_`` (the tabular start; zeros with ``"zero"``).
    """

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        inputs: Mapping[str, str | Path] | None = None,
        optimizer: str = "sgd",
        lr: float = 1e-4,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        epochs: int = 200,
        batch_size: int = 64,
        patience: int | None = 20,
        val_fraction: float = 0.2,
        class_weighted: bool = True,
        augment: bool = True,
        tabular_init: str = "logistic",
        threads: int = 1,
        random_state: int = 0,
    ) -> None:
        self.checkpoint = checkpoint
        self.inputs = inputs
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.patience = patience
        self.val_fraction = val_fraction
        self.class_weighted = class_weighted
        self.augment = augment
        self.tabular_init = tabular_init
        self.threads = threads
        self.random_state = random_state

    # ---- inputs --------------------------------------------------------------------------

    def _paths(self, X: Any) -> list[Path]:
        if not isinstance(X, pd.DataFrame):
            raise ValueError("JointFusionClassifier: X must be a DataFrame indexed by patient")
        inputs = {str(k): Path(v) for k, v in (self.inputs or {}).items()}
        lacking = [str(p) for p in X.index if str(p) not in inputs]
        if lacking:
            raise ValueError(
                f"JointFusionClassifier: no network input for patient(s) {lacking[:10]}"
                f"{' ...' if len(lacking) > 10 else ''} ({len(lacking)} of {len(X)})"
            )
        return [inputs[str(p)] for p in X.index]

    def _tabular(self, X: pd.DataFrame) -> torch.Tensor:
        A = X.to_numpy(dtype=np.float64)
        if A.shape[1] != self.mean_.size:
            raise ValueError(f"JointFusionClassifier: expected {self.mean_.size} columns")
        if not np.isfinite(A).all():
            raise ValueError("JointFusionClassifier: non-finite input")
        return torch.from_numpy(((A - self.mean_) / self.scale_).astype(np.float32))

    def _network(self) -> tuple[nn.Module, Any]:
        if self.checkpoint is None:
            raise ValueError("JointFusionClassifier: no checkpoint")
        path = Path(self.checkpoint)
        ckpt = read_checkpoint(path)
        if ckpt.get("untrained"):
            raise ValueError(f"the deep model was not trained ({ckpt.get('reason', '')})")
        model, cfg = model_from_checkpoint(ckpt, source=path)
        if cfg.input_kind not in ("slices25d", "volume"):
            raise ValueError(
                f"JointFusionClassifier: a {cfg.input_kind!r} network has no per-patient input"
            )
        return model, cfg

    # ---- fitting -------------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> JointFusionClassifier:
        """Standardise the tabular columns, hold out the inner split, train end to end."""
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"JointFusionClassifier: optimizer {self.optimizer!r} (sgd, adam)")
        if self.tabular_init not in ("logistic", "zero"):
            raise ValueError(
                f"JointFusionClassifier: tabular_init {self.tabular_init!r} (logistic, zero)"
            )
        paths = self._paths(X)
        yb = binary_labels(y)
        self.classes_ = np.array([0, 1])
        self.tabular_columns_ = [str(c) for c in X.columns]
        A = X.to_numpy(dtype=np.float64)
        self.mean_ = A.mean(axis=0)
        sd = A.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        self.n_features_in_ = A.shape[1]
        tab = self._tabular(X)
        fit_rows, self.val_rows_ = inner_split(
            yb, self.val_fraction, self.patience, self.random_state
        )
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(max(1, int(self.threads)))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(self.random_state))
                model, cfg = self._network()
                images = _Images(paths, cfg.input_kind)
                transform = None
                if self.augment and cfg.augment:
                    spatial = (
                        images.arrays[0].shape[2:]
                        if cfg.input_kind == "slices25d"
                        else (images.arrays[0].shape[1:])
                    )
                    transform = augmentations(cfg, spatial, int(self.random_state))
                net = JointFusionNet(model, tab.shape[1])
                self.n_deep_, self.network_ = net.n_deep, cfg.network
                target = torch.from_numpy(yb.astype(np.int64))
                self._start_tabular(net, images, tab, yb, fit_rows)
                self._train(net, images, transform, tab, target, fit_rows)
        finally:
            torch.set_num_threads(threads)
        return self

    def _start_tabular(
        self,
        net: JointFusionNet,
        images: _Images,
        tab: torch.Tensor,
        y: np.ndarray,
        fit_rows: np.ndarray,
    ) -> None:
        """Set the layer's tabular start (``init_coef_``, ``init_intercept_``): the ridge
        logistic fit of the fitting rows, the network's own log-odds (eval mode, no
        augmentation) as its offset, class weights as the loss's."""
        self.init_coef_, self.init_intercept_ = np.zeros(tab.shape[1]), 0.0
        if self.tabular_init == "zero" or tab.shape[1] == 0:
            return
        offset = _log_odds(net, images, tab, fit_rows.tolist())
        y_fit = y[fit_rows]
        weight = class_weighted_loss(y_fit, self.class_weighted).weight
        sw = None if weight is None else weight.double().numpy()[y_fit]
        coef, intercept = offset_logistic(tab[fit_rows].double().numpy(), y_fit, offset, sw)
        net.add_tabular(coef, intercept)
        self.init_coef_, self.init_intercept_ = coef, intercept

    def _train(
        self,
        net: JointFusionNet,
        images: _Images,
        transform: Any,
        tab: torch.Tensor,
        y: torch.Tensor,
        fit_rows: np.ndarray,
    ) -> None:
        """The training loop (global torch RNG already seeded by :meth:`fit`)."""
        val_rows = self.val_rows_
        loss_fn = class_weighted_loss(y[fit_rows].numpy(), self.class_weighted)
        opt = make_optimizer(
            net.parameters(), self.optimizer, self.lr, self.momentum, self.weight_decay
        )
        gen = torch.Generator().manual_seed(int(self.random_state))
        best, best_state, since = np.inf, copy.deepcopy(net.state_dict()), 0
        history: list[dict[str, float]] = []
        self.best_epoch_ = 0
        fit_t = torch.from_numpy(fit_rows)
        x_val = images.batch(val_rows) if len(val_rows) else None
        for epoch in range(1, int(self.epochs) + 1):
            net.train()
            total, n = 0.0, 0
            order = fit_t[torch.randperm(len(fit_t), generator=gen)]
            for start in range(0, len(order), int(self.batch_size)):
                idx = order[start : start + int(self.batch_size)]
                if len(idx) < 2:
                    continue  # BatchNorm cannot train on one sample (a 1-sample last batch)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(net(images.batch(idx.tolist(), transform), tab[idx]), y[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                n += len(idx)
            entry = {"epoch": float(epoch), "train_loss": total / max(n, 1)}
            if x_val is not None:
                net.eval()
                with torch.no_grad():
                    v = torch.from_numpy(val_rows)
                    entry["val_loss"] = float(loss_fn(net(x_val, tab[v]), y[v]))
                if entry["val_loss"] < best - 1e-12:
                    best, best_state, since = entry["val_loss"], copy.deepcopy(net.state_dict()), 0
                    self.best_epoch_ = epoch
                else:
                    since += 1
            history.append(entry)
            if x_val is not None and self.patience is not None and since >= int(self.patience):
                break
        if x_val is not None:
            net.load_state_dict(best_state)
        else:
            self.best_epoch_ = len(history)
        self.module_ = net.eval()
        self.n_epochs_ = len(history)
        self.history_ = history

    # ---- prediction ----------------------------------------------------------------------

    def decision_function(self, X: Any) -> np.ndarray:
        """Log-odds of class 1 (logit difference of the layer's two outputs)."""
        check_is_fitted(self, "module_")
        paths = self._paths(X)
        tab = self._tabular(X)
        kind = self.module_.network.input_kind
        images = _Images(paths, kind)
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(max(1, int(self.threads)))
            return _log_odds(self.module_, images, tab, range(len(paths)))
        finally:
            torch.set_num_threads(threads)
