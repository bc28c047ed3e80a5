"""hccrad.deep.fusion.FusionHeadClassifier: a planted linear signal is learned (AUC on fresh
data), fits are deterministic under a seed, the standardisation and early stopping use the
fitting rows only, and it behaves as a scikit-learn classifier."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hccrad.deep.fusion import FusionHeadClassifier

N_DEEP, N_TAB = 32, 6


def planted(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Deep block (shifted and scaled: the head must standardise) + tabular columns; the
    log-odds are linear in two deep and two tabular columns."""
    rng = np.random.default_rng(seed)
    deep = rng.normal(size=(n, N_DEEP))
    tab = rng.normal(size=(n, N_TAB))
    lp = 1.5 * deep[:, 0] - 1.5 * deep[:, 5] + 1.5 * tab[:, 0] + 1.0 * tab[:, 1]
    y = rng.binomial(1, 1 / (1 + np.exp(-lp)))
    cols = [f"deep__deep_{i}" for i in range(N_DEEP)] + [f"rad__f{i}" for i in range(N_TAB)]
    return pd.DataFrame(np.hstack([3 * deep + 5, tab]), columns=cols), y


@pytest.fixture(scope="module")
def data():
    return planted(200, 0), planted(3000, 1)


@pytest.fixture(scope="module")
def fitted(data):
    (X, y), _ = data
    return FusionHeadClassifier(deep=["deep__*"], random_state=3).fit(X, y)


def test_learns_a_planted_linear_signal(data, fitted):
    """The paper's recipe (SGD 1e-4, momentum 0.9, decay 1e-4, 200 epochs, batch 64, class
    weights, early stopping) on a linear head: fresh-data AUC > 0.8, close to a logistic
    regression fitted on the same rows."""
    (X, y), (Xte, yte) = data
    auc = roc_auc_score(yte, fitted.predict_proba(Xte)[:, 1])
    ref = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    ref_auc = roc_auc_score(yte, ref.predict_proba(Xte)[:, 1])
    assert auc > 0.8 and auc > ref_auc - 0.05, (auc, ref_auc)
    assert fitted.deep_columns_ == [f"deep__deep_{i}" for i in range(N_DEEP)]
    assert fitted.tabular_columns_ == [f"rad__f{i}" for i in range(N_TAB)]
    # the planted columns carry the largest weights (signs as planted)
    w = fitted.module_.head.weight.detach().numpy()
    w = w[1] - w[0]
    top = set(np.argsort(-np.abs(w))[:4])
    assert top == {0, 5, N_DEEP, N_DEEP + 1}
    assert w[0] > 0 and w[5] < 0 and w[N_DEEP] > 0


def test_adam_and_a_hidden_layer_also_learn(data):
    (X, y), (Xte, yte) = data
    clf = FusionHeadClassifier(
        deep=["deep__*"], hidden=16, dropout=0.1, optimizer="adam", lr=1e-3, weight_decay=1e-3
    ).fit(X, y)
    assert roc_auc_score(yte, clf.predict_proba(Xte)[:, 1]) > 0.75


def test_deterministic_under_a_seed(data, fitted):
    (X, y), (Xte, _) = data
    again = FusionHeadClassifier(deep=["deep__*"], random_state=3).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(Xte), fitted.predict_proba(Xte))
    assert again.history_ == fitted.history_
    other = FusionHeadClassifier(deep=["deep__*"], random_state=4).fit(X, y)
    assert not np.array_equal(other.val_rows_, fitted.val_rows_)
    assert not np.allclose(other.predict_proba(Xte), fitted.predict_proba(Xte))


def test_fitting_rows_only(data, fitted):
    """Standardisation from the fitting rows; the inner split is a stratified subset of them;
    the kept weights are the best inner-validation epoch's; a row's prediction does not
    depend on the other rows predicted with it."""
    (X, y), (Xte, _) = data
    np.testing.assert_allclose(fitted.mean_, X.to_numpy().mean(axis=0))
    np.testing.assert_allclose(fitted.scale_, X.to_numpy().std(axis=0))
    val = fitted.val_rows_
    assert len(val) == 40 and set(val) <= set(range(len(X)))
    assert abs(y[val].mean() - y.mean()) < 0.05
    losses = [h["val_loss"] for h in fitted.history_]
    assert fitted.best_epoch_ == int(np.argmin(losses)) + 1
    assert fitted.n_epochs_ - fitted.best_epoch_ <= 20  # patience
    np.testing.assert_allclose(
        fitted.predict_proba(Xte.iloc[:7]), fitted.predict_proba(Xte)[:7], rtol=1e-12
    )


def test_without_early_stopping_trains_every_epoch(data):
    (X, y), _ = data
    clf = FusionHeadClassifier(epochs=7, patience=None, random_state=0).fit(X, y)
    assert clf.n_epochs_ == clf.best_epoch_ == 7 and len(clf.val_rows_) == 0
    assert "val_loss" not in clf.history_[0]


def test_too_few_rows_for_an_inner_split_train_every_epoch(data):
    (X, y), _ = data
    rows = np.r_[np.flatnonzero(y == 1)[:1], np.flatnonzero(y == 0)[:6]]
    clf = FusionHeadClassifier(epochs=5, random_state=0).fit(X.iloc[rows], y[rows])
    assert len(clf.val_rows_) == 0 and clf.n_epochs_ == 5


def test_scikit_learn_contract(data):
    (X, y), _ = data
    clf = FusionHeadClassifier(deep=["deep__*"], epochs=3, lr=1e-2)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    clf.fit(X.to_numpy(), y)  # an array: every column is tabular
    assert clf.deep_columns_ == [] and len(clf.tabular_columns_) == X.shape[1]
    proba = clf.predict_proba(X.to_numpy())
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.predict(X.to_numpy()), (proba[:, 1] >= 0.5).astype(int))
    np.testing.assert_allclose(
        clf.decision_function(X.to_numpy()), np.log(proba[:, 1] / proba[:, 0]), rtol=1e-6
    )
    with pytest.raises(ValueError, match="optimizer"):
        FusionHeadClassifier(optimizer="rmsprop").fit(X, y)
    with pytest.raises(ValueError, match="columns"):
        clf.predict_proba(X.to_numpy()[:, :3])
