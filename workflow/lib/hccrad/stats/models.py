"""Classifier pipelines, grid search, radiomics scores, fusion and SHAP.

* :func:`build_pipeline` turns a declarative spec into an imblearn ``Pipeline``
  ``StandardScaler -> selection steps -> [SMOTE] -> classifier``; everything is refitted inside
  each CV training fold, so selection and oversampling never see held-out patients. The pipeline
  outputs DataFrames between steps (``set_output(transform="pandas")``), so feature names reach
  the selectors and the classifier.
* :func:`fuse_blocks` (feature-level) and :func:`score_fusion` (score-level) fusion.
* :func:`shap_figures`: SHAP beeswarm and waterfall figures of a fitted model.

The clinical logistic model (:func:`clinical_model`) and its nomogram (:func:`nomogram`,
:func:`plot_nomogram`) live in :mod:`hccrad.stats.clinical` and are re-exported here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import Pipeline
from scipy.special import expit, logit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted

from hccrad.fileio import write_png
from hccrad.stats.clinical import (
    ClinicalModel,
    Nomogram,
    NomogramAxis,
    clinical_model,
    nomogram,
    plot_nomogram,
)
from hccrad.stats.selection import LassoSelector, binary_labels, make_step

__all__ = [
    "CLASSIFIERS",
    "ClinicalModel",
    "Nomogram",
    "NomogramAxis",
    "PlattSVC",
    "ScoreFusion",
    "build_pipeline",
    "clinical_model",
    "fuse_blocks",
    "grid_search",
    "make_classifier",
    "nomogram",
    "platt_sigmoid",
    "plot_nomogram",
    "radiomics_score",
    "score_fusion",
    "shap_explanation",
    "shap_figures",
]

#: Classifier names accepted by :func:`make_classifier` / :func:`build_pipeline`.
CLASSIFIERS = ("logistic", "svm", "knn", "random_forest", "extra_trees", "xgboost", "mlp")


# --------------------------------------------------------------------------------------------
# Classifiers and pipelines
# --------------------------------------------------------------------------------------------


def platt_sigmoid(f: Any, y: Any, min_slope: float = 0.0) -> tuple[float, float]:
    """Platt's sigmoid ``P(y=1 | f) = 1 / (1 + exp(-(a f + b)))`` with the slope ``a >= min_slope``.

    Maximum likelihood on Platt's smoothed targets (``(N+ + 1) / (N+ + 2)`` for positives,
    ``1 / (N- + 2)`` for negatives), L-BFGS-B with ``a`` bounded below; decision values larger
    than 30 in magnitude are rescaled first (as scikit-learn's ``_sigmoid_calibration``). Note
    the sign: scikit-learn's calibrator stores ``A = -a``.
    """
    from scipy.optimize import minimize

    f = np.asarray(f, dtype=float).ravel()
    yb = binary_labels(y)
    scale = max(float(np.abs(f).max(initial=0.0)), 30.0) / 30.0
    F = f / scale
    n_pos = float(yb.sum())
    n_neg = yb.size - n_pos
    t = np.where(yb == 1, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))

    def loss_grad(ab: np.ndarray) -> tuple[float, np.ndarray]:
        z = ab[0] * F + ab[1]
        loss = float(np.sum(np.logaddexp(0.0, z) - t * z))
        r = expit(z) - t
        return loss, np.array([r @ F, r.sum()])

    start = np.array([max(1.0, min_slope * scale), np.log((n_pos + 1.0) / (n_neg + 1.0))])
    res = minimize(
        loss_grad,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=[(min_slope * scale, None), (None, None)],
    )
    return float(res.x[0]) / scale, float(res.x[1])


class PlattSVC(ClassifierMixin, BaseEstimator):
    """SVC with Platt-scaled probabilities that cannot invert the decision function.

    Replaces ``SVC(probability=True)`` and ``CalibratedClassifierCV(method="sigmoid")``: the
    SVC's decision values ``f`` are taken out of fold on ``StratifiedKFold(cv, shuffle=True,
    random_state)`` and Platt's sigmoid ``P(y=1) = 1 / (1 + exp(-(a f + b)))`` is fitted to them
    with the slope constrained to ``a >= 0`` (:func:`platt_sigmoid`); the SVC is refitted on all
    the data. Unconstrained, a small cohort whose out-of-fold decision values rank the classes
    backwards (no signal, anti-learning of cross-validation) gets a negative slope, and the
    probabilities rank the training patients in the reverse of the SVC (a training AUC of 0.00).
    When the constrained slope is 0 (``calibration_ == "in_sample"``), the sigmoid is fitted to
    the refitted SVC's own training decision values instead, slope at least ``1e-6 / max|f|``:
    the probabilities are then over-confident, but always strictly increasing in the decision
    function, so every AUC of the probabilities is that of ``decision_function``. Grid-search
    keys are the plain SVC ones (``classifier__C``, ``classifier__gamma``...).
    """

    def __init__(
        self,
        C: float = 1.0,
        kernel: str = "rbf",
        gamma: str | float = "scale",
        degree: int = 3,
        class_weight: Any = None,
        cv: int = 5,
        random_state: int | None = 0,
    ) -> None:
        self.C = C
        self.kernel = kernel
        self.gamma = gamma
        self.degree = degree
        self.class_weight = class_weight
        self.cv = cv
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> PlattSVC:
        """Fit the SVC and its slope-constrained sigmoid calibration."""
        from sklearn.model_selection import cross_val_predict

        self.classes_ = np.unique(np.asarray(y))
        yb = binary_labels(y)
        n_min = int(np.bincount(yb).min())
        if n_min < 2:
            raise ValueError("PlattSVC needs at least 2 patients of each class")
        svc = SVC(
            C=self.C,
            kernel=self.kernel,
            gamma=self.gamma,
            degree=self.degree,
            class_weight=self.class_weight,
        )
        folds = StratifiedKFold(min(self.cv, n_min), shuffle=True, random_state=self.random_state)
        oof = cross_val_predict(svc, X, yb, cv=folds, method="decision_function")
        self.svc_ = svc.fit(X, yb)
        self.slope_, self.intercept_ = platt_sigmoid(oof, yb)
        self.calibration_ = "out_of_fold"
        if self.slope_ <= 0.0:
            f = self.svc_.decision_function(X)
            floor = 1e-6 / max(float(np.abs(f).max(initial=0.0)), 1e-12)
            self.slope_, self.intercept_ = platt_sigmoid(f, yb, min_slope=floor)
            self.calibration_ = "in_sample"
        if hasattr(self.svc_, "feature_names_in_"):
            self.feature_names_in_ = self.svc_.feature_names_in_
        self.n_features_in_ = self.svc_.n_features_in_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Platt-scaled class probabilities (columns in ``classes_`` order)."""
        check_is_fitted(self, "svc_")
        z = self.slope_ * self.decision_function(X) + self.intercept_
        p = expit(z)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        """Class with the larger calibrated probability."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def decision_function(self, X: Any) -> np.ndarray:
        """Decision value of the SVC refitted on all the training data."""
        check_is_fitted(self, "svc_")
        return self.svc_.decision_function(X)


def make_classifier(name: str, params: Mapping[str, Any] | None = None, seed: int = 0) -> Any:
    """A seeded, probability-producing classifier with study defaults, ``params`` overriding.

    Defaults: ``logistic`` L2 ``LogisticRegression(C=1, max_iter=5000)``; ``svm``
    :class:`PlattSVC` (RBF, C=1); ``knn`` ``KNeighborsClassifier(5)``; ``random_forest`` /
    ``extra_trees`` 300 trees, ``n_jobs=1``; ``xgboost`` ``XGBClassifier(n_estimators=200,
    max_depth=3, learning_rate=0.1, tree_method="hist", n_jobs=1)``; ``mlp``
    ``MLPClassifier((32,), alpha=1e-3, max_iter=2000)``. The seed goes to ``random_state``
    (knn has none: it is deterministic).
    """
    params = dict(params or {})
    if name == "logistic":
        defaults: dict[str, Any] = {"C": 1.0, "max_iter": 5000, "random_state": seed}
        return LogisticRegression(**{**defaults, **params})
    if name == "svm":
        return PlattSVC(**{"random_state": seed, **params})
    if name == "knn":
        return KNeighborsClassifier(**{"n_neighbors": 5, **params})
    if name in ("random_forest", "extra_trees"):
        cls = RandomForestClassifier if name == "random_forest" else ExtraTreesClassifier
        return cls(**{"n_estimators": 300, "random_state": seed, "n_jobs": 1, **params})
    if name == "xgboost":
        from xgboost import XGBClassifier

        defaults = {
            "n_estimators": 200,
            "max_depth": 3,
            "learning_rate": 0.1,
            "tree_method": "hist",
            "n_jobs": 1,
            "random_state": seed,
            "eval_metric": "logloss",
        }
        return XGBClassifier(**{**defaults, **params})
    if name == "mlp":
        defaults = {
            "hidden_layer_sizes": (32,),
            "alpha": 1e-3,
            "max_iter": 2000,
            "random_state": seed,
        }
        return MLPClassifier(**{**defaults, **params})
    raise ValueError(f"unknown classifier {name!r}; expected one of {CLASSIFIERS}")


def build_pipeline(
    selection: Sequence[Mapping[str, Any]],
    classifier: str,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    smote: bool | Mapping[str, Any] = False,
) -> Pipeline:
    """``StandardScaler -> selection steps -> [SMOTE] -> classifier`` from a declarative spec.

    A chain that names a ``{"step": "scaler"}`` gets its ``StandardScaler`` there instead of first
    (e.g. a PCA of the raw features before the z-score).

    Args:
        selection: Steps in order, e.g. ``[{"step": "univariate", "alpha": 0.05},
            {"step": "correlation", "threshold": 0.9}, {"step": "lasso"}]`` (names and
            arguments: :func:`hccrad.stats.selection.make_step`).
        classifier: One of :data:`CLASSIFIERS`.
        params: Classifier keyword arguments (:func:`make_classifier`).
        seed: Seed of every random step (LASSO folds, RFE, PCA, SMOTE, classifier).
        smote: ``True`` for ``SMOTE(random_state=seed)`` or a dict of SMOTE arguments; applied
            only when fitting (imblearn samplers are skipped at predict time).

    Returns:
        Unfitted pipeline; step names are ``scaler``, the step names (``_2``, ``_3``... on
        repeats), ``smote`` and ``classifier`` (grid keys like ``classifier__C``).
    """
    steps: list[tuple[str, Any]] = []
    if not any(spec.get("step") == "scaler" for spec in selection):
        steps.append(("scaler", StandardScaler()))
    used: dict[str, int] = {}
    for spec in selection:
        name, step = make_step(spec, seed=seed)
        used[name] = used.get(name, 0) + 1
        steps.append((name if used[name] == 1 else f"{name}_{used[name]}", step))
    if smote:
        kwargs = dict(smote) if isinstance(smote, Mapping) else {}
        steps.append(("smote", SMOTE(**{"random_state": seed, **kwargs})))
    steps.append(("classifier", make_classifier(classifier, params, seed)))
    pipe = Pipeline(steps)
    pipe.set_output(transform="pandas")
    return pipe


def grid_search(
    pipeline: Any,
    param_grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Sequence[Any]]],
    X: Any,
    y: Any,
    cv: int = 5,
    seed: int = 0,
    n_jobs: int | None = 1,
) -> GridSearchCV:
    """Exhaustive search maximising the mean ROC AUC over ``StratifiedKFold(cv, shuffle=True,
    random_state=seed)``; refits the best parameters on all of ``(X, y)``.

    Returns:
        The fitted ``GridSearchCV`` (``best_params_``, ``best_score_``, ``best_estimator_``,
        ``cv_results_``). Fit errors are raised, not scored as NaN.
    """
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    search = GridSearchCV(
        pipeline,
        param_grid,
        scoring="roc_auc",
        cv=folds,
        refit=True,
        n_jobs=n_jobs,
        error_score="raise",
    )
    return search.fit(X, y)


def _is_sampler(step: Any) -> bool:
    return hasattr(step, "fit_resample")


def _transform_until(pipe: Any, stop: int, X: Any) -> Any:
    Xt = X
    for _, step in pipe.steps[:stop]:
        if step is None or step == "passthrough" or _is_sampler(step):
            continue
        Xt = step.transform(Xt)
    return Xt


def radiomics_score(model: Any, X: Any) -> np.ndarray:
    """Radiomics score (log-odds scale) of a fitted model for the rows of ``X``.

    * a :class:`~hccrad.stats.selection.LassoSelector`: its linear predictor
      ``X @ coef_ + intercept_``;
    * a pipeline containing a ``LassoSelector``: the same, on ``X`` passed through the steps
      before it (the classic LASSO rad-score);
    * otherwise the classifier's log-odds: ``decision_function`` for a logistic regression,
      ``logit(predict_proba[:, 1])`` (probabilities clipped to ``[1e-12, 1 - 1e-12]``) else.
    """
    if isinstance(model, LassoSelector):
        return model.score(X)
    steps = getattr(model, "steps", None)
    if steps is not None:
        for i, (_, step) in enumerate(steps):
            if isinstance(step, LassoSelector):
                return step.score(_transform_until(model, i, X))
        final = steps[-1][1]
    else:
        final = model
    if isinstance(final, LogisticRegression):
        return np.asarray(model.decision_function(X), dtype=float)
    p = np.clip(model.predict_proba(X)[:, 1], 1e-12, 1 - 1e-12)
    return logit(p)


# --------------------------------------------------------------------------------------------
# Fusion
# --------------------------------------------------------------------------------------------


def fuse_blocks(
    blocks: Mapping[str, pd.DataFrame],
    patients: Sequence[str] | pd.Index | None = None,
    sep: str = "__",
) -> pd.DataFrame:
    """Feature-level fusion: concatenate feature blocks (rows = patients) column-wise.

    Columns become ``{block}{sep}{feature}``; rows follow ``patients`` (or the first block's
    order when ``None``, in which case every block must hold the same patients). Patients of a
    block not in ``patients`` are left out.

    Raises:
        ValueError: No block, a block with duplicate patients, or patients missing from a
            block (every missing patient is named, per block).
    """
    if not blocks:
        raise ValueError("fuse_blocks: no block")
    indexes = {}
    for name, block in blocks.items():
        idx = block.index.astype(str)
        if idx.has_duplicates:
            dup = sorted(set(idx[idx.duplicated()]))
            raise ValueError(f"fuse_blocks: block {name!r} has duplicate patient(s) {dup}")
        indexes[name] = idx
    first = next(iter(indexes.values()))
    wanted = pd.Index([str(p) for p in patients]) if patients is not None else first
    if wanted.has_duplicates:
        raise ValueError(
            f"fuse_blocks: duplicate patient(s) {sorted(set(wanted[wanted.duplicated()]))}"
        )
    problems = []
    for name, idx in indexes.items():
        lacking = [p for p in wanted if p not in set(idx)]
        if patients is None:
            lacking += [p for p in idx if p not in set(first)]
        if lacking:
            problems.append(f"block {name!r} lacks patient(s) {', '.join(lacking)}")
    if problems:
        raise ValueError("fuse_blocks: " + "; ".join(problems))
    parts = []
    for name, block in blocks.items():
        b = block.copy()
        b.index = indexes[name]
        parts.append(b.reindex(wanted).add_prefix(f"{name}{sep}"))
    out = pd.concat(parts, axis=1)
    out.index.name = "patient"
    return out


@dataclass(frozen=True)
class ScoreFusion:
    """A fitted score-level fusion (see :func:`score_fusion`).

    ``fused = intercept + sum_k weights[k] * (s_k - mean[k]) / sd[k]`` with the training means
    and SDs; ``method`` is ``"logistic"`` (fused = log-odds) or ``"mean"`` (weighted mean of
    z-scores, ``intercept = 0`` and weights summing to 1).
    """

    names: tuple[str, ...]
    method: str
    mean: np.ndarray
    sd: np.ndarray
    weights: np.ndarray
    intercept: float

    def transform(self, scores: Mapping[str, Any]) -> np.ndarray:
        """Fused score of new score vectors (training statistics; nothing is refitted)."""
        Z = (_score_matrix(scores, self.names) - self.mean) / self.sd
        return self.intercept + Z @ self.weights


def _score_matrix(scores: Mapping[str, Any], names: Sequence[str]) -> np.ndarray:
    missing = [n for n in names if n not in scores]
    if missing:
        raise ValueError(f"score fusion: missing score(s) {missing}")
    series = [scores[n] for n in names]
    idx = [s.index for s in series if isinstance(s, pd.Series)]
    if idx and not all(i.equals(idx[0]) for i in idx):
        raise ValueError("score fusion: the score Series have different indexes")
    cols = [np.asarray(s, dtype=float).ravel() for s in series]
    if len({c.size for c in cols}) != 1:
        raise ValueError(f"score fusion: scores differ in length {[c.size for c in cols]}")
    M = np.column_stack(cols)
    if not np.isfinite(M).all():
        raise ValueError("score fusion: scores must be finite")
    return M


def score_fusion(
    scores: Mapping[str, Any],
    y: Any = None,
    weights: Mapping[str, float] | Sequence[float] | None = None,
) -> ScoreFusion:
    """Score-level fusion, fitted on **training** scores only.

    * ``y`` given (``method="logistic"``): each score is z-scored with its training mean/SD and
      an unpenalised logistic regression of ``y`` on the z-scores gives the weights and
      intercept (the fused score is the model's log-odds). ``weights`` must be ``None``.
    * ``y`` ``None`` (``method="mean"``): the fused score is the weighted mean of the z-scores,
      weights equal by default and normalised to sum 1.

    A constant score gets SD 1 (its z-score is 0). Apply to validation/test scores with
    :meth:`ScoreFusion.transform`.
    """
    names = tuple(scores)
    if not names:
        raise ValueError("score fusion: no score")
    M = _score_matrix(scores, names)
    mean = M.mean(axis=0)
    sd = M.std(axis=0, ddof=1) if M.shape[0] > 1 else np.ones(M.shape[1])
    sd = np.where(sd > 0, sd, 1.0)
    Z = (M - mean) / sd
    if y is not None:
        if weights is not None:
            raise ValueError("score fusion: weights are fitted when y is given; pass one or other")
        yb = binary_labels(y)
        if len(yb) != M.shape[0]:
            raise ValueError(f"score fusion: {M.shape[0]} scores but {len(yb)} labels")
        lr = LogisticRegression(C=np.inf, max_iter=10000).fit(Z, yb)
        return ScoreFusion(names, "logistic", mean, sd, lr.coef_.ravel(), float(lr.intercept_[0]))
    if weights is None:
        w = np.ones(len(names))
    elif isinstance(weights, Mapping):
        w = np.array([float(weights[n]) for n in names])
    else:
        w = np.asarray(weights, dtype=float)
    if w.shape != (len(names),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"score fusion: need {len(names)} non-negative weights, got {weights}")
    return ScoreFusion(names, "mean", mean, sd, w / w.sum(), 0.0)


# --------------------------------------------------------------------------------------------
# SHAP
# --------------------------------------------------------------------------------------------

_TREE_NAMES = ("RandomForest", "ExtraTrees", "GradientBoosting", "DecisionTree", "XGB", "LGBM")


def _is_tree(est: Any) -> bool:
    return any(type(est).__name__.startswith(n) for n in _TREE_NAMES)


def shap_explanation(
    model: Any,
    X: pd.DataFrame | np.ndarray,
    *,
    seed: int = 0,
    background: int = 20,
    nsamples: int | None = None,
) -> Any:
    """SHAP values of the positive class for the rows of ``X``.

    A pipeline is split into its preprocessing (samplers skipped) and final classifier; the
    values explain the classifier on the transformed (selected) features. Tree models
    (random forest, extra trees, gradient boosting, XGBoost): exact ``shap.TreeExplainer``
    (output = probability for scikit-learn forests, log-odds margin for XGBoost). Others:
    ``shap.KernelExplainer`` of ``predict_proba[:, 1]`` on a seeded random background of
    ``background`` rows with ``nsamples`` coalitions per row (default ``max(100, 10 F)`` for
    ``F`` features; exact when ``2^F <= nsamples``), no L1 regularisation, NumPy's global
    generator seeded with ``seed`` during the call and restored afterwards. Both are additive:
    ``base_values + values.sum(1)`` = the explained output.
    """
    import shap

    if not isinstance(X, pd.DataFrame):
        X = pd.DataFrame(np.asarray(X, dtype=float), columns=[f"x{i}" for i in range(X.shape[1])])
    steps = getattr(model, "steps", None)
    final = steps[-1][1] if steps is not None else model
    Xt = _transform_until(model, len(steps) - 1, X) if steps is not None else X
    if not isinstance(Xt, pd.DataFrame):
        Xt = pd.DataFrame(
            np.asarray(Xt), index=X.index, columns=[f"x{i}" for i in range(Xt.shape[1])]
        )
    named = hasattr(final, "feature_names_in_")
    if _is_tree(final):
        expl = shap.TreeExplainer(final)(Xt if named else Xt.to_numpy())
        if expl.values.ndim == 3:
            expl = expl[:, :, 1]
        expl.feature_names = list(Xt.columns)
        return expl
    cols = list(Xt.columns)
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(len(Xt), size=min(background, len(Xt)), replace=False))
    bg = Xt.iloc[take].to_numpy(dtype=float)

    def f(data: np.ndarray) -> np.ndarray:
        return final.predict_proba(pd.DataFrame(data, columns=cols) if named else data)[:, 1]

    data = Xt.to_numpy(dtype=float)
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        explainer = shap.KernelExplainer(f, bg, feature_names=cols)
        values = explainer.shap_values(
            data, nsamples=nsamples or max(100, 10 * len(cols)), l1_reg=False, silent=True
        )
    finally:
        np.random.set_state(state)
    values = np.asarray(values, dtype=float).reshape(len(data), len(cols))
    base = np.full(len(data), float(np.ravel(explainer.expected_value)[0]))
    return shap.Explanation(values, base_values=base, data=data, feature_names=cols)


def shap_figures(
    model: Any,
    X: pd.DataFrame | np.ndarray,
    out_beeswarm: str | os.PathLike[str],
    out_waterfall: str | os.PathLike[str],
    patient_index: int | str = 0,
    *,
    seed: int = 0,
    background: int = 20,
    nsamples: int | None = None,
    max_display: int = 10,
) -> Any:
    """SHAP beeswarm (all rows of ``X``) and waterfall (one patient) figures; atomic writes.

    Args:
        model: Fitted classifier or pipeline (see :func:`shap_explanation`).
        X: Patients to explain (raw features, as given to ``model``).
        out_beeswarm: PNG of the beeswarm summary.
        out_waterfall: PNG of one patient's waterfall.
        patient_index: Row position (int) or, for a DataFrame, patient id (str) of that patient.
        seed: Seed of the background sample and permutations.
        background: Background rows for non-tree models.
        nsamples: Kernel SHAP coalitions per row for non-tree models (:func:`shap_explanation`).
        max_display: Features shown per figure.

    Returns:
        The ``shap.Explanation`` of every row.
    """
    import matplotlib.pyplot as plt
    import shap

    if isinstance(patient_index, str):
        if not isinstance(X, pd.DataFrame):
            raise ValueError("a patient id needs X as a DataFrame indexed by patient")
        row = int(X.index.get_loc(patient_index))
    else:
        row = int(patient_index)
    expl = shap_explanation(model, X, seed=seed, background=background, nsamples=nsamples)
    if not -len(expl.values) <= row < len(expl.values):
        raise ValueError(f"patient_index {patient_index} out of range for {len(expl.values)} rows")
    drawers = (
        (out_beeswarm, lambda: shap.plots.beeswarm(expl, max_display=max_display, show=False)),
        (
            out_waterfall,
            lambda: shap.plots.waterfall(expl[row], max_display=max_display, show=False),
        ),
    )
    for out, draw in drawers:
        before = set(plt.get_fignums())
        plt.figure()
        try:
            draw()
            write_png(plt.gcf(), out, dpi=120, bbox_inches="tight")
        finally:
            for num in set(plt.get_fignums()) - before:
                plt.close(num)
    return expl
