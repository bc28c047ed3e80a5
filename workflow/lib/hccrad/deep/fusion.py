"""A scikit-learn classifier that trains :class:`hccrad.deep.nets.FusionHead` on tables.

:class:`FusionHeadClassifier` joins a patient's deep-feature block (a trained network's
penultimate features, one row per patient) with tabular columns (selected radiomics features,
clinical variables) in the fully connected layer and trains it: inputs standardised on the
fitting rows, class-weighted cross-entropy (optional), SGD or Adam with weight decay, early
stopping on a stratified inner split of the fitting rows only, the best epoch's weights kept.
Seeded and deterministic; it runs on the CPU (a head on a few hundred patients).
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted
from torch import nn

from hccrad.deep.nets import FusionHead
from hccrad.stats.selection import binary_labels

__all__ = [
    "FusionHeadClassifier",
    "LogOddsClassifierMixin",
    "class_weighted_loss",
    "inner_split",
    "make_optimizer",
]


def inner_split(
    y: np.ndarray, val_fraction: float, patience: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (fitting rows, inner-validation rows) of labels ``y`` for early stopping: a
    stratified, seeded ``val_fraction`` of the rows, or no validation rows at all when early
    stopping is off (``patience`` None, ``val_fraction`` 0) or the rows are too few for a
    stratified split (a class with < 2 rows, < 2 rows on either side)."""
    rows = np.arange(len(y))
    n_val = int(np.ceil(val_fraction * len(y)))
    counts = np.bincount(y, minlength=2)
    if val_fraction > 0 and patience is not None and counts.min() >= 2 and 2 <= n_val <= len(y) - 2:
        fit_rows, val_rows = train_test_split(
            rows, test_size=val_fraction, stratify=y, random_state=seed
        )
        return np.sort(fit_rows), np.sort(val_rows)
    return rows, rows[:0]


def class_weighted_loss(y_fit: np.ndarray, weighted: bool) -> nn.CrossEntropyLoss:
    """Cross-entropy, with class weights ``n / (2 n_c)`` from the fitting labels ``y_fit`` when
    ``weighted``."""
    if not weighted:
        return nn.CrossEntropyLoss()
    counts = np.bincount(y_fit, minlength=2).astype(np.float64)
    weight = torch.tensor(len(y_fit) / (2 * np.maximum(counts, 1)), dtype=torch.float32)
    return nn.CrossEntropyLoss(weight=weight)


def make_optimizer(
    params: Any, name: str, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """SGD (with ``momentum``) or Adam on ``params``."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


class LogOddsClassifierMixin:
    """``predict_proba`` and ``predict`` of a binary classifier from its ``decision_function``
    (the log-odds of class 1)."""

    def decision_function(self, X: Any) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def predict_proba(self, X: Any) -> np.ndarray:
        """``(n, 2)`` probabilities (softmax of the two outputs)."""
        z = self.decision_function(X)
        p1 = 1.0 / (1.0 + np.exp(-z))
        return np.column_stack([1.0 - p1, p1])

    def predict(self, X: Any) -> np.ndarray:
        """Class 1 where its probability is >= 0.5."""
        return (self.decision_function(X) >= 0).astype(int)


class FusionHeadClassifier(LogOddsClassifierMixin, ClassifierMixin, BaseEstimator):
    """Deep features + tabular columns joined in a fully connected layer, trained (binary).

    Args:
        deep: ``fnmatch`` patterns of the deep-feature columns (the head's ``deep`` input); the
            other columns are its ``tabular`` input. Without column names (an array) every
            column counts as tabular.
        hidden: Hidden units (``0``: the fully connected layer alone, a linear head).
        dropout: Dropout after the hidden layer.
        optimizer: ``sgd`` (with ``momentum``) or ``adam``.
        lr, momentum, weight_decay: Optimiser settings (``weight_decay``: L2 on every weight).
        epochs: Training epochs at most.
        batch_size: Mini-batch size (batches reshuffled every epoch).
        patience: Epochs without a lower inner-validation loss before stopping (``None``: no
            early stopping, the last epoch's weights).
        val_fraction: Share of the fitting rows held out (stratified) for early stopping; ``0``
            trains on every row for all ``epochs``.
        class_weighted: Cross-entropy weights ``n / (2 n_c)`` from the training rows.
        zero_init: A linear head (``hidden=0``) starts from zero weights, so that the fit does
            not depend on random initial weights (gradient descent from 0 shrinks like a
            ridge penalty while early stopping holds it back); else PyTorch's default init.
        random_state: Seed of the inner split, the initial weights and the batch order.

    Fitted attributes: ``classes_``, ``mean_``, ``scale_`` (standardisation of the fitting
    rows), ``deep_columns_``, ``tabular_columns_``, ``module_`` (the trained head, eval mode),
    ``best_epoch_``, ``n_epochs_``, ``history_`` (per epoch: train and inner-validation loss),
    ``val_rows_`` (positions of the inner-validation rows among the fitting rows).
    """

    def __init__(
        self,
        deep: Sequence[str] = (),
        hidden: int = 0,
        dropout: float = 0.0,
        optimizer: str = "sgd",
        lr: float = 1e-4,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        epochs: int = 200,
        batch_size: int = 64,
        patience: int | None = 20,
        val_fraction: float = 0.2,
        class_weighted: bool = True,
        zero_init: bool = True,
        random_state: int = 0,
    ) -> None:
        self.deep = deep
        self.hidden = hidden
        self.dropout = dropout
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.patience = patience
        self.val_fraction = val_fraction
        self.class_weighted = class_weighted
        self.zero_init = zero_init
        self.random_state = random_state

    # ---- inputs --------------------------------------------------------------------------

    def _split_columns(self, X: Any) -> tuple[list[int], list[int], list[str]]:
        names = [str(c) for c in X.columns] if isinstance(X, pd.DataFrame) else []
        if not names:
            n = np.asarray(X).shape[1]
            return [], list(range(n)), [f"x{i}" for i in range(n)]
        deep = [i for i, c in enumerate(names) if any(fnmatch.fnmatchcase(c, p) for p in self.deep)]
        tab = [i for i in range(len(names)) if i not in set(deep)]
        return deep, tab, names

    def _tensors(self, X: Any) -> tuple[torch.Tensor, torch.Tensor]:
        A = np.asarray(X, dtype=np.float64)
        if A.ndim != 2 or A.shape[1] != self.mean_.size:
            raise ValueError(f"FusionHeadClassifier: expected {self.mean_.size} columns")
        if not np.isfinite(A).all():
            raise ValueError("FusionHeadClassifier: non-finite input")
        Z = ((A - self.mean_) / self.scale_).astype(np.float32)
        return torch.from_numpy(Z[:, self._deep_idx]), torch.from_numpy(Z[:, self._tab_idx])

    # ---- fitting -------------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> FusionHeadClassifier:
        """Standardise on ``X``'s rows, hold out the inner split, train the head."""
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"FusionHeadClassifier: optimizer {self.optimizer!r} (sgd, adam)")
        yb = binary_labels(y)
        self.classes_ = np.array([0, 1])
        self._deep_idx, self._tab_idx, names = self._split_columns(X)
        self.deep_columns_ = [names[i] for i in self._deep_idx]
        self.tabular_columns_ = [names[i] for i in self._tab_idx]
        A = np.asarray(X, dtype=np.float64)
        self.mean_ = A.mean(axis=0)
        sd = A.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        self.n_features_in_ = A.shape[1]
        fit_rows, self.val_rows_ = inner_split(
            yb, self.val_fraction, self.patience, self.random_state
        )
        deep, tab = self._tensors(A)
        target = torch.from_numpy(yb.astype(np.int64))
        threads = torch.get_num_threads()
        try:  # one thread: a small head is faster so, and the sums are reproducible
            torch.set_num_threads(1)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(self.random_state))
                self._train(deep, tab, target, fit_rows, self.val_rows_)
        finally:
            torch.set_num_threads(threads)
        return self

    def _train(
        self,
        deep: torch.Tensor,
        tab: torch.Tensor,
        y: torch.Tensor,
        fit_rows: np.ndarray,
        val_rows: np.ndarray,
    ) -> None:
        """The training loop (global torch RNG already seeded by :meth:`fit`)."""
        head = FusionHead(deep.shape[1], tab.shape[1], 2, hidden=self.hidden, dropout=self.dropout)
        if self.hidden == 0 and self.zero_init:
            nn.init.zeros_(head.head.weight)  # a linear head: gradient descent from 0
        loss_fn = class_weighted_loss(y[fit_rows].numpy(), self.class_weighted)
        opt = make_optimizer(
            head.parameters(), self.optimizer, self.lr, self.momentum, self.weight_decay
        )
        gen = torch.Generator().manual_seed(int(self.random_state))
        best, best_state, since = np.inf, copy.deepcopy(head.state_dict()), 0
        history: list[dict[str, float]] = []
        self.best_epoch_ = 0
        fit_t = torch.from_numpy(fit_rows)
        for epoch in range(1, int(self.epochs) + 1):
            head.train()
            total = 0.0
            order = fit_t[torch.randperm(len(fit_t), generator=gen)]
            for start in range(0, len(order), int(self.batch_size)):
                idx = order[start : start + int(self.batch_size)]
                opt.zero_grad()
                loss = loss_fn(head(deep[idx], tab[idx]), y[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            entry = {"epoch": float(epoch), "train_loss": total / len(fit_t)}
            if len(val_rows):
                head.eval()
                with torch.no_grad():
                    v = torch.from_numpy(val_rows)
                    entry["val_loss"] = float(loss_fn(head(deep[v], tab[v]), y[v]))
                if entry["val_loss"] < best - 1e-12:
                    best, best_state, since = entry["val_loss"], copy.deepcopy(head.state_dict()), 0
                    self.best_epoch_ = epoch
                else:
                    since += 1
            history.append(entry)
            if len(val_rows) and self.patience is not None and since >= int(self.patience):
                break
        if len(val_rows):
            head.load_state_dict(best_state)
        else:
            self.best_epoch_ = len(history)
        head.eval()
        self.module_ = head
        self.n_epochs_ = len(history)
        self.history_ = history

    # ---- prediction ----------------------------------------------------------------------

    def decision_function(self, X: Any) -> np.ndarray:
        """Log-odds of class 1 (logit difference of the head's two outputs)."""
        check_is_fitted(self, "module_")
        deep, tab = self._tensors(X)
        with torch.no_grad():
            logits = self.module_(deep, tab).double().numpy()
        return logits[:, 1] - logits[:, 0]
