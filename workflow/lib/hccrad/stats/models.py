"""Classifier pipelines, grid search, clinical logistic models, nomograms, fusion and SHAP.

* :func:`build_pipeline` turns a declarative spec into an imblearn ``Pipeline``
  ``StandardScaler -> selection steps -> [SMOTE] -> classifier``; everything is refitted inside
  each CV training fold, so selection and oversampling never see held-out patients. The pipeline
  outputs DataFrames between steps (``set_output(transform="pandas")``), so feature names reach
  the selectors and the classifier.
* :func:`clinical_model`: univariable logistic regressions (statsmodels ``Logit``), then one
  multivariable model of the candidates with P < alpha.
* :func:`nomogram` / :func:`plot_nomogram`: points-based nomogram of a fitted logistic model.
* :func:`fuse_blocks` (feature-level) and :func:`score_fusion` (score-level) fusion.
* :func:`shap_figures`: SHAP beeswarm and waterfall figures of a fitted model.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import Pipeline
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy.special import expit, logit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted

from hccrad.stats.selection import LassoSelector, binary_labels, make_step

log = logging.getLogger(__name__)

#: Classifier names accepted by :func:`make_classifier` / :func:`build_pipeline`.
CLASSIFIERS = ("logistic", "svm", "knn", "random_forest", "extra_trees", "xgboost", "mlp")


# --------------------------------------------------------------------------------------------
# Classifiers and pipelines
# --------------------------------------------------------------------------------------------


class PlattSVC(ClassifierMixin, BaseEstimator):
    """SVC with Platt-scaled probabilities (replaces the deprecated ``SVC(probability=True)``).

    ``CalibratedClassifierCV(SVC(...), method="sigmoid", ensemble=False)`` on
    ``StratifiedKFold(cv, shuffle=True, random_state)``: a sigmoid
    ``P(y=1) = 1 / (1 + exp(A f + B))`` is fitted to out-of-fold SVC decision values ``f``, and
    the SVC is refitted on all the data. Grid-search keys are the plain SVC ones
    (``classifier__C``, ``classifier__gamma``...).
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
        """Fit the SVC and its sigmoid calibration."""
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
        self.calibrated_ = CalibratedClassifierCV(
            svc, method="sigmoid", cv=folds, ensemble=False
        ).fit(X, y)
        if hasattr(self.calibrated_, "feature_names_in_"):
            self.feature_names_in_ = self.calibrated_.feature_names_in_
        self.n_features_in_ = self.calibrated_.n_features_in_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Platt-scaled class probabilities (columns in ``classes_`` order)."""
        check_is_fitted(self, "calibrated_")
        return self.calibrated_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        """Class with the larger calibrated probability."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def decision_function(self, X: Any) -> np.ndarray:
        """Decision value of the SVC refitted on all the training data."""
        check_is_fitted(self, "calibrated_")
        return self.calibrated_.calibrated_classifiers_[0].estimator.decision_function(X)


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
    steps: list[tuple[str, Any]] = [("scaler", StandardScaler())]
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
# Clinical model (statsmodels Logit)
# --------------------------------------------------------------------------------------------

_TERM = re.compile(r"^(?P<var>.+)\[T\.(?P<level>.+)\]$")


def _is_categorical(s: pd.Series) -> bool:
    return isinstance(s.dtype, pd.CategoricalDtype) or s.dtype.kind in "OSU" or s.dtype == "string"


def _learn_levels(s: pd.Series) -> list[str] | None:
    """Levels of a categorical column (reference first), ``None`` for a numeric one."""
    if not _is_categorical(s):
        return None
    if isinstance(s.dtype, pd.CategoricalDtype):
        return [str(c) for c in s.cat.categories if (s == c).any()]
    return sorted(s.dropna().astype(str).unique().tolist())


def _design(df: pd.DataFrame, levels: Mapping[str, list[str] | None]) -> pd.DataFrame:
    """Encode ``df``: numeric columns as floats, categorical ones as ``var[T.level]`` dummies
    (reference = first level). Missing values stay NaN on every column of the variable."""
    cols: dict[str, pd.Series] = {}
    for var, lv in levels.items():
        s = df[var]
        if lv is None:
            cols[var] = pd.to_numeric(s, errors="raise").astype(float)
            continue
        text = s.astype(str).where(s.notna())
        unknown = sorted(set(text.dropna()) - set(lv))
        if unknown:
            raise ValueError(f"variable {var!r}: level(s) {unknown} not seen when fitting ({lv})")
        for level in lv[1:]:
            cols[f"{var}[T.{level}]"] = (text == level).astype(float).where(s.notna())
    return pd.DataFrame(cols, index=df.index)


def _fit_logit(y: np.ndarray, X: pd.DataFrame) -> Any:
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import (
        ConvergenceWarning,
        PerfectSeparationError,
        PerfectSeparationWarning,
    )

    exog = sm.add_constant(X, has_constant="add")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            res = sm.Logit(y, exog).fit(disp=0, method="newton", maxiter=100)
        except (
            PerfectSeparationWarning,
            PerfectSeparationError,
            ConvergenceWarning,
            np.linalg.LinAlgError,
        ) as err:
            raise ValueError(f"logistic fit failed ({type(err).__name__}: {err})") from err
    if not np.all(np.isfinite(res.bse)):
        raise ValueError("logistic fit failed (non-finite standard errors)")
    return res


def _or_table(res: Any, level: float) -> pd.DataFrame:
    ci = res.conf_int(alpha=1 - level)
    terms = [t for t in res.params.index if t != "const"]
    return pd.DataFrame(
        {
            "term": terms,
            "coef": res.params[terms].to_numpy(),
            "se": res.bse[terms].to_numpy(),
            "OR": np.exp(res.params[terms].to_numpy()),
            "ci_low": np.exp(ci.loc[terms, 0].to_numpy()),
            "ci_high": np.exp(ci.loc[terms, 1].to_numpy()),
            "p": res.pvalues[terms].to_numpy(),
        }
    )


@dataclass
class ClinicalModel:
    """Result of :func:`clinical_model`.

    Attributes:
        label: Outcome column.
        univariable: One row per term: ``variable, term, n, events, coef, se, OR, ci_low,
            ci_high, p, p_variable, selected`` (``note`` says why a fit failed).
        multivariable: One row per term of the multivariable model: ``variable, term, coef,
            se, OR, ci_low, ci_high, p``.
        selected: Variables in the multivariable model.
        result: The fitted statsmodels ``LogitResults`` of the multivariable model.
        levels: ``{variable: levels (reference first) or None for numeric}``.
        fallback: ``True`` when no candidate had P < alpha and the best one was used.
    """

    label: str
    univariable: pd.DataFrame
    multivariable: pd.DataFrame
    selected: list[str]
    result: Any
    levels: dict[str, list[str] | None] = field(default_factory=dict)
    fallback: bool = False

    def design(self, df: pd.DataFrame) -> pd.DataFrame:
        """Model matrix of ``df`` (``const`` + encoded variables, the fit's column order)."""
        X = _design(df, {v: self.levels[v] for v in self.selected})
        X.insert(0, "const", 1.0)
        return X[list(self.result.model.exog_names)]

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Predicted probability per row of ``df`` (NaN where a variable is missing)."""
        X = self.design(df)
        out = np.full(len(X), np.nan)
        ok = X.notna().all(axis=1).to_numpy()
        out[ok] = np.asarray(self.result.predict(X[ok]))
        return out


def clinical_model(
    df: pd.DataFrame,
    label: str,
    candidates: Sequence[str],
    alpha: float = 0.05,
    level: float = 0.95,
) -> ClinicalModel:
    """Univariable then multivariable logistic regression (statsmodels ``Logit``, Newton).

    Rules: every candidate is fitted alone on the patients with both the label and the
    candidate (OR = ``exp(coef)``, CI = ``exp(conf_int())`` (Wald), P = Wald P). A candidate is
    selected when its variable P < ``alpha``: the Wald P of its coefficient, or for a
    categorical variable with more than 2 levels the likelihood-ratio P of the univariable
    model against the intercept-only one. The selected candidates enter one multivariable
    model fitted on the complete cases. Categorical columns (object, string, category) are
    dummy-coded with the first level (sorted text, or the category order) as reference; term
    names follow the ``var[T.level]`` convention. A univariable fit that fails (perfect
    separation, no convergence) is reported with NaN and a ``note`` and is not selected. If no
    candidate passes, the one with the smallest variable P is used alone (``fallback=True``).

    Raises:
        ValueError: Missing columns, a label that is not binary, no usable candidate, or a
            failed multivariable fit.
    """
    missing = [c for c in [label, *candidates] if c not in df.columns]
    if missing:
        raise ValueError(f"clinical_model: missing column(s) {missing}")
    if not candidates:
        raise ValueError("clinical_model: no candidate variable")
    levels = {v: _learn_levels(df[v]) for v in candidates}
    rows: list[pd.DataFrame] = []
    p_var: dict[str, float] = {}
    for var in candidates:
        sub = df[[label, var]].dropna()
        y = binary_labels(sub[label])
        X = _design(sub, {var: levels[var]})
        base = {"variable": var, "n": len(sub), "events": int(y.sum())}
        try:
            if X.shape[1] == 0:
                raise ValueError("a single level")
            res = _fit_logit(y, X)
        except ValueError as err:
            log.warning("clinical_model: univariable %s not estimable: %s", var, err)
            rows.append(pd.DataFrame([{**base, "term": var, "p": np.nan, "note": str(err)}]))
            p_var[var] = np.nan
            continue
        table = _or_table(res, level)
        p_var[var] = float(res.llr_pvalue) if X.shape[1] > 1 else float(table["p"].iloc[0])
        rows.append(table.assign(**base, note=""))
    uni = pd.concat(rows, ignore_index=True)
    uni["p_variable"] = uni["variable"].map(p_var)
    selected = [v for v in candidates if np.isfinite(p_var[v]) and p_var[v] < alpha]
    fallback = False
    if not selected:
        finite = {v: p for v, p in p_var.items() if np.isfinite(p)}
        if not finite:
            raise ValueError("clinical_model: no candidate could be estimated")
        selected = [min(finite, key=lambda v: (finite[v], candidates.index(v)))]
        fallback = True
        log.warning("clinical_model: no P < %g; using the best candidate %s", alpha, selected[0])
    uni["selected"] = uni["variable"].isin(selected)
    cols = ["variable", "term", "n", "events", "coef", "se", "OR", "ci_low", "ci_high", "p"]
    uni = uni.reindex(columns=[*cols, "p_variable", "selected", "note"])

    sub = df[[label, *selected]].dropna()
    X = _design(sub, {v: levels[v] for v in selected})
    try:
        res = _fit_logit(binary_labels(sub[label]), X)
    except ValueError as err:
        raise ValueError(f"clinical_model: multivariable model {selected}: {err}") from err
    multi = _or_table(res, level)
    multi.insert(0, "variable", [_variable_of(t) for t in multi["term"]])
    return ClinicalModel(
        label=label,
        univariable=uni,
        multivariable=multi,
        selected=selected,
        result=res,
        levels={v: levels[v] for v in candidates},
        fallback=fallback,
    )


# --------------------------------------------------------------------------------------------
# Nomogram
# --------------------------------------------------------------------------------------------


def _variable_of(term: str) -> str:
    m = _TERM.match(term)
    return m.group("var") if m else term


@dataclass(frozen=True)
class NomogramAxis:
    """One covariate axis: its model terms, tick values and their contributions ``b . x``."""

    variable: str
    terms: tuple[str, ...]
    coefs: tuple[float, ...]
    kind: str  # "continuous", "binary" or "categorical"
    tick_labels: tuple[str, ...]
    tick_contrib: tuple[float, ...]
    contrib_min: float
    contrib_max: float


@dataclass(frozen=True)
class Nomogram:
    """Points scale of a logistic model ``LP = b0 + sum_v c_v`` (``c_v`` = contribution of
    covariate ``v``, ``sum_j b_j x_j`` over its terms).

    ``points_v = scale * (c_v - min c_v)`` with ``scale = 100 / max_v (max c_v - min c_v)``
    (min/max over the training range of continuous covariates and over the levels of
    categorical ones), so the most influential covariate spans 0-100 points; ``total = sum_v
    points_v`` and ``LP = b0 + sum_v min c_v + total / scale``, ``P = 1 / (1 + exp(-LP))``.
    """

    intercept: float
    scale: float
    axes: tuple[NomogramAxis, ...]

    @property
    def max_total(self) -> float:
        """Largest possible total points (every covariate at its maximum contribution)."""
        return float(sum(a.contrib_max - a.contrib_min for a in self.axes) * self.scale)

    def points(self, design: pd.DataFrame) -> pd.DataFrame:
        """Points per covariate and ``total`` for the rows of a model matrix (``design``: the
        model's term columns, e.g. :meth:`ClinicalModel.design`; ``const`` is ignored)."""
        out = {}
        for a in self.axes:
            absent = [t for t in a.terms if t not in design.columns]
            if absent:
                raise ValueError(f"nomogram points: design lacks column(s) {absent}")
            c = design[list(a.terms)].to_numpy(dtype=float) @ np.asarray(a.coefs)
            out[a.variable] = self.scale * (c - a.contrib_min)
        table = pd.DataFrame(out, index=design.index)
        table["total"] = table.sum(axis=1, skipna=False)
        return table

    def linear_predictor(self, total: Any) -> np.ndarray:
        """Log-odds of a total-points value."""
        offset = self.intercept + sum(a.contrib_min for a in self.axes)
        return offset + np.asarray(total, dtype=float) / self.scale

    def probability(self, total: Any) -> np.ndarray:
        """Predicted probability of a total-points value."""
        return expit(self.linear_predictor(total))

    def total_for(self, p: Any) -> np.ndarray:
        """Total points giving probability ``p``."""
        offset = self.intercept + sum(a.contrib_min for a in self.axes)
        return (logit(np.asarray(p, dtype=float)) - offset) * self.scale


def _nice_ticks(lo: float, hi: float, n: int = 6) -> np.ndarray:
    ticks = MaxNLocator(nbins=n).tick_values(lo, hi)
    ticks = ticks[(ticks >= lo - 1e-9 * abs(hi - lo)) & (ticks <= hi + 1e-9 * abs(hi - lo))]
    return ticks if ticks.size else np.array([lo, hi])


def nomogram(model: Any) -> Nomogram:
    """The points scale of a fitted logistic model.

    Args:
        model: A :class:`ClinicalModel` (categorical level names taken from it) or a statsmodels
            ``LogitResults`` with named exog columns (``const`` = intercept; ``var[T.level]``
            columns grouped into one categorical axis whose reference is labelled ``ref``).
            Continuous ranges are the min/max of the model's own (training) exog columns.

    Raises:
        ValueError: Every coefficient is zero (nothing to scale).
    """
    levels: Mapping[str, list[str] | None] = {}
    if isinstance(model, ClinicalModel):
        levels = model.levels
        model = model.result
    names = [str(n) for n in model.model.exog_names]
    params = np.asarray(model.params, dtype=float)
    exog = np.asarray(model.model.exog, dtype=float)
    intercept = 0.0
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        if name in ("const", "Intercept"):
            intercept += params[j]
        else:
            groups.setdefault(_variable_of(name), []).append(j)
    axes = []
    for var, idx in groups.items():
        terms = tuple(names[j] for j in idx)
        coefs = tuple(float(params[j]) for j in idx)
        if all(_TERM.match(t) for t in terms):
            lv = levels.get(var)
            labels = (lv[0] if lv else "ref", *(_TERM.match(t).group("level") for t in terms))
            contrib = (0.0, *coefs)
            span = contrib
            kind = "categorical"
        elif len(idx) == 1:
            x = exog[:, idx[0]]
            values = np.unique(x)
            kind = "binary" if values.size <= 2 else "continuous"
            ticks = values if kind == "binary" else _nice_ticks(float(x.min()), float(x.max()))
            labels = tuple(f"{v:g}" for v in ticks)
            contrib = tuple(float(coefs[0] * v) for v in ticks)
            span = (coefs[0] * x.min(), coefs[0] * x.max())  # the data range, not the ticks
        else:
            raise ValueError(f"nomogram: cannot group terms {terms} of {var!r}")
        axes.append(
            NomogramAxis(
                variable=var,
                terms=terms,
                coefs=coefs,
                kind=kind,
                tick_labels=tuple(labels),
                tick_contrib=tuple(contrib),
                contrib_min=float(min(span)),
                contrib_max=float(max(span)),
            )
        )
    widest = max((a.contrib_max - a.contrib_min for a in axes), default=0.0)
    if not widest > 0:
        raise ValueError("nomogram: every coefficient is zero")
    return Nomogram(intercept=float(intercept), scale=100.0 / widest, axes=tuple(axes))


def _save_png(fig: Figure, out_png: str | os.PathLike[str], dpi: int = 120) -> None:
    from hccrad.fileio import write_png as write_png_atomic

    write_png_atomic(fig, out_png, dpi=dpi, bbox_inches="tight")


def plot_nomogram(
    model: Any, out_png: str | os.PathLike[str], *, title: str | None = None
) -> Nomogram:
    """Draw the points nomogram of a fitted logistic model (see :func:`nomogram`) to a PNG.

    Rows: a 0-100 ``Points`` ruler, one axis per covariate (tick labels in the covariate's
    units, or its levels), ``Total points`` and ``Predicted probability`` (ticks at 0.01-0.99
    within reach). Matplotlib Agg canvas; atomic write.

    Returns:
        The :class:`Nomogram` drawn.
    """
    nomo = nomogram(model)
    rows = len(nomo.axes) + 3
    fig = Figure(figsize=(10.0, 0.62 * rows + 0.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xlim(-32, 104)
    ax.set_ylim(-rows + 0.4, 0.8)
    ax.axis("off")

    def ruler(y: float, label: str, xs: Sequence[float], texts: Sequence[str]) -> None:
        ax.text(-3, y, label, ha="right", va="center", fontsize=9, fontweight="bold")
        if len(xs):
            ax.plot([min(xs), max(xs)], [y, y], color="black", lw=1)
        for x, t in zip(xs, texts, strict=True):
            ax.plot([x, x], [y, y + 0.12], color="black", lw=1)
            ax.text(x, y + 0.18, t, ha="center", va="bottom", fontsize=7)

    ticks = np.arange(0, 101, 10)
    ruler(0, "Points", ticks.tolist(), [f"{t:g}" for t in ticks])
    for i, a in enumerate(nomo.axes, start=1):
        xs = [nomo.scale * (c - a.contrib_min) for c in a.tick_contrib]
        ruler(-i, a.variable, xs, list(a.tick_labels))
        span = [0.0, nomo.scale * (a.contrib_max - a.contrib_min)]
        ax.plot(span, [-i, -i], color="black", lw=1)
    tmax = nomo.max_total
    to_x = 100.0 / tmax
    tt = _nice_ticks(0.0, tmax, 8)
    ruler(-(rows - 2), "Total points", (tt * to_x).tolist(), [f"{t:g}" for t in tt])
    probs = np.array([0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99])
    tp = nomo.total_for(probs)
    ok = (tp >= 0) & (tp <= tmax)
    ruler(
        -(rows - 1),
        "Predicted probability",
        (tp[ok] * to_x).tolist(),
        [f"{p:g}" for p in probs[ok]],
    )
    if title:
        ax.set_title(title, fontsize=11)
    _save_png(fig, out_png)
    return nomo


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
            _save_png(plt.gcf(), out)
        finally:
            for num in set(plt.get_fignums()) - before:
                plt.close(num)
    return expl
