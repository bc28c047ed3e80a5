"""Fitting a study's models on the training patients: ``pipeline`` (encoder, [pooled columns],
selection chain with kept columns bypassing it, classifier or fusion head, optional grid
search), ``clinical`` (uni- then multivariable logistic regression, optionally pruned) and
``score_fusion``; the scores other models stack on (``stacking``)."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from hccrad.deep.fusion import FusionHeadClassifier
from hccrad.deep.joint import JointFusionClassifier
from hccrad.errors import InputError
from hccrad.stats.encoding import TableEncoder
from hccrad.stats.models import (
    build_pipeline,
    clinical_model,
    grid_search,
    radiomics_score,
    score_fusion,
)
from hccrad.stats.selection import GroupedPCA, LassoSelector
from hccrad.studies.spec import ModelSpec, StudySpec

log = logging.getLogger(__name__)


@dataclass
class Fitted:
    """A model fitted on training patients: ``predict(patients) -> (probability, log-odds)``."""

    name: str
    kind: str
    predict: Callable[[pd.Index], tuple[np.ndarray, np.ndarray]]
    estimator: Any = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class StudyData:
    """Everything the fitting needs: the study's design per model and the label."""

    spec: StudySpec
    seed: int
    clinical: pd.DataFrame  # study patients x clinical (+ derived) columns
    y: pd.Series  # 0/1 label of the study patients
    X: dict[str, pd.DataFrame]  # fused design per pipeline model
    categorical: dict[str, list[str]]  # categorical fused columns per pipeline model
    icc: pd.DataFrame | None  # reader ICC table (index: feature)
    radiomics_cols: dict[str, dict[str, str]]  # model -> fused name -> radiomics name
    #: Intra-observer ICC table (reader 1 against reader 1's repeat; index: feature), read when
    #: an ``icc`` step has ``intra: true``.
    icc_intra: pd.DataFrame | None = None
    #: Selected features per (model, training patients): fits are deterministic, so a pooled
    #: model reuses its pool's selections on the same patients instead of refitting them.
    selections: dict[tuple[str, tuple[str, ...]], list[str]] = field(default_factory=dict)
    #: Deep model -> (its ``checkpoint.pt``, ``{patient: network input .npz}``): the networks a
    #: model's ``head.backbone`` trains end to end with its tabular columns.
    backbones: dict[str, tuple[Path, dict[str, Path]]] = field(default_factory=dict)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def min_class_count(y: pd.Series) -> int:
    """Patients of the smaller class (0 unless both classes are present)."""
    counts = y.value_counts()
    return int(counts.min()) if len(counts) == 2 else 0


def _matches(column: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(column, p) for p in patterns)


def _frame(X: Any) -> pd.DataFrame:
    return X if isinstance(X, pd.DataFrame) else pd.DataFrame(X).rename(columns=str)


class KeepColumns(TransformerMixin, BaseEstimator):
    """A selection step whose ``keep`` columns (``fnmatch`` patterns) bypass it: ``selector``
    is fitted on the other columns, and the kept ones are appended to its output. Parameters
    other than ``selector`` and ``keep`` go to ``selector`` (grid keys stay ``{step}__{arg}``).
    """

    def __init__(self, selector: Any, keep: Sequence[str] = ()) -> None:
        self.selector = selector
        self.keep = keep

    def set_params(self, **params: Any) -> KeepColumns:
        """Own parameters here, the others forwarded to ``selector``."""
        own = {k: v for k, v in params.items() if k in ("selector", "keep") or "__" in k}
        inner = {k: v for k, v in params.items() if k not in own}
        super().set_params(**own)
        if inner:
            self.selector.set_params(**inner)
        return self

    def set_output(self, *, transform: str | None = None) -> KeepColumns:
        """Forwarded to ``selector`` (the kept columns stay a DataFrame)."""
        if hasattr(self.selector, "set_output"):
            self.selector.set_output(transform=transform)
        return self

    def fit(self, X: Any, y: Any = None) -> KeepColumns:
        """Fit ``selector`` on the columns not kept."""
        X = _frame(X)
        self.kept_ = [c for c in X.columns if _matches(str(c), self.keep)]
        rest = X.drop(columns=self.kept_)
        if rest.shape[1]:
            self.selector.fit(rest, y)
        return self

    def transform(self, X: Any) -> pd.DataFrame:
        """The selector's output for the other columns, then the kept columns."""
        X = _frame(X)
        rest = X.drop(columns=self.kept_)
        if not rest.shape[1]:
            return X[self.kept_]
        out = _frame(self.selector.transform(rest))
        out.index = X.index
        return pd.concat([out, X[self.kept_]], axis=1)


class ColumnPick(TransformerMixin, BaseEstimator):
    """Keeps the named ``columns`` and those matching ``keep`` patterns (in input order)."""

    def __init__(self, columns: Sequence[str] = (), keep: Sequence[str] = ()) -> None:
        self.columns = columns
        self.keep = keep

    def fit(self, X: Any, y: Any = None) -> ColumnPick:
        """Check that every named column is there."""
        X = _frame(X)
        absent = [c for c in self.columns if c not in X.columns]
        if absent:
            raise ValueError(f"pooled feature(s) {absent[:5]} not in the model's columns")
        named = set(self.columns)
        self.columns_ = [c for c in X.columns if c in named or _matches(str(c), self.keep)]
        return self

    def transform(self, X: Any) -> pd.DataFrame:
        """The picked columns."""
        return _frame(X)[self.columns_]

    def set_output(self, *, transform: str | None = None) -> ColumnPick:
        """A DataFrame in, a DataFrame out: nothing to configure."""
        return self


def keep_patterns(spec: StudySpec, m: ModelSpec) -> list[str]:
    """``m.keep`` as patterns on the model's columns (a block name -> all its columns)."""
    return [f"{k}__*" if k in m.blocks else k for k in m.keep]


def _head(data: StudyData, m: ModelSpec) -> Any:
    """The fusion head classifier of ``m``: with ``head.backbone`` the named deep model's
    network trained end to end with the model's columns (:class:`JointFusionClassifier`), else
    a head on the model's ``table`` blocks as deep input (:class:`FusionHeadClassifier`)."""
    settings = dict(m.head or {})
    backbone = settings.pop("backbone", None)
    if backbone is not None:
        if backbone not in data.backbones:  # reported as the model's failure, not the study's
            raise ValueError(
                f"model {m.name} trains deep model {backbone!r} (head.backbone) but its "
                "checkpoint and inputs were not given to this run"
            )
        checkpoint, inputs = data.backbones[backbone]
        return JointFusionClassifier(
            checkpoint=checkpoint, inputs=inputs, random_state=data.seed, **settings
        )
    deep = [f"{b}__*" for b in m.blocks if data.spec.blocks[b].source == "table"]
    return FusionHeadClassifier(deep=deep, random_state=data.seed, **settings)


def _fused_icc(table: pd.DataFrame, mapping: Mapping[str, str]) -> pd.DataFrame:
    """An ICC table (index: radiomics feature) on the model's fused column names."""
    out = table.reindex([mapping[c] for c in mapping])
    out.index = list(mapping)
    return out


def _pipeline(
    data: StudyData, m: ModelSpec, n_min: int, pooled: Sequence[str] | None = None
) -> Any:
    steps = []
    for st in m.selection:
        st = dict(st)
        if st["step"] == "icc":
            if data.icc is None:
                raise InputError(
                    f"study {data.spec.name}: model {m.name} needs the reader-ICC table"
                )
            mapping = data.radiomics_cols[m.name]
            st.update(icc_table=_fused_icc(data.icc, mapping), missing="keep")
            if st.get("intra"):
                if data.icc_intra is None:
                    raise InputError(
                        f"study {data.spec.name}: model {m.name} needs the intra-observer ICC "
                        "table (reader 1's repeat outlines)"
                    )
                st.update(intra_table=_fused_icc(data.icc_intra, mapping))
            # non-radiomics columns are exempt (missing: keep)
        steps.append(st)
    smote: bool | dict[str, Any] = m.smote
    if smote:
        kw = dict(smote) if isinstance(smote, Mapping) else {}
        kw.setdefault("k_neighbors", max(1, min(5, n_min // 2 - 1)))
        smote = kw
    pipe = build_pipeline(steps, m.classifier, m.params, data.seed, smote)
    keep = keep_patterns(data.spec, m)
    if keep:
        pipe.steps[1 : 1 + len(steps)] = [
            (name, KeepColumns(step, tuple(keep))) for name, step in pipe.steps[1 : 1 + len(steps)]
        ]
    if m.head is not None:
        pipe.steps[-1] = ("classifier", _head(data, m))
    if pooled is not None:
        pipe.steps.insert(0, ("pool", ColumnPick(tuple(pooled), tuple(keep))))
    pipe.steps.insert(0, ("encode", TableEncoder(tuple(data.categorical[m.name]))))
    pipe.set_output(transform="pandas")
    return pipe


def _pooled_features(data: StudyData, m: ModelSpec, train: pd.Index) -> list[str]:
    """The features the ``pool`` models select when fitted on ``train``, as this model's
    columns (a clinical model's variable ``v``: ``{block}__v`` and its dummies)."""
    out: list[str] = []
    for src_name in m.pool:
        src = data.spec.models[src_name]
        key = (src_name, tuple(map(str, train)))
        if key not in data.selections:
            data.selections[key] = list(fit_model(data, src, train, {}).info["features"])
        if src.kind == "pipeline":
            found = list(data.selections[key])
        else:
            cols = [str(c) for c in data.X[m.name].columns]
            found = [
                c
                for v in data.selections[key]
                for c in cols
                if c.split("__", 1)[-1] == v or c.split("__", 1)[-1].startswith(f"{v}[T.")
            ]
            if not found:
                raise ValueError(f"pool {src_name}: no column of {m.name} holds its variables")
        out.extend(f for f in found if f not in out)
    return out


def _walk(pipe: Any, X: pd.DataFrame) -> tuple[list[str], dict[str, int]]:
    """Feature names reaching the classifier and the number of columns after each step."""
    counts = {"input": X.shape[1]}
    Xt: Any = X
    for name, step in pipe.steps[:-1]:
        if hasattr(step, "fit_resample"):
            continue
        Xt = step.transform(Xt)
        counts[name] = int(Xt.shape[1])
    names = (
        list(Xt.columns) if isinstance(Xt, pd.DataFrame) else [f"x{i}" for i in range(Xt.shape[1])]
    )
    return names, counts


def _fit_pipeline(data: StudyData, m: ModelSpec, train: pd.Index) -> Fitted:
    X, y = data.X[m.name], data.y
    Xtr, ytr = X.loc[train], y.loc[train]
    n_min = min_class_count(ytr)
    pooled = _pooled_features(data, m, train) if m.pool else None
    pipe = _pipeline(data, m, n_min, pooled)
    info: dict[str, Any] = {"pooled": pooled} if pooled is not None else {}
    if m.grid:
        cv = min(m.cv, n_min)
        if cv >= 2:
            search = grid_search(pipe, m.grid, Xtr, ytr, cv=cv, seed=data.seed)
            est = search.best_estimator_
            info["best_params"] = dict(search.best_params_)
            info["cv_auc"] = float(search.best_score_)
            info["cv_folds"] = cv
        else:
            est = pipe.fit(Xtr, ytr)
            info["note"] = "grid search skipped (a class has < 2 training patients)"
    else:
        est = pipe.fit(Xtr, ytr)
    names, counts = _walk(est, Xtr)
    info.update(features=names, n_features=len(names), step_features=counts)
    head = est.steps[-1][1]
    if m.head is not None:
        info["head"] = {"best_epoch": head.best_epoch_, "epochs_run": head.n_epochs_}
    selectors = [getattr(st, "selector", st) for _, st in est.steps]
    lasso = next((st for st in selectors if isinstance(st, LassoSelector)), None)
    if lasso is not None:
        names_in = getattr(lasso, "feature_names_in_", None)
        if names_in is None:
            names_in = [f"x{i}" for i in range(lasso.n_features_in_)]
        kept = np.flatnonzero(lasso.support_)
        info["lasso"] = {
            "C": lasso.C_,
            "intercept": lasso.intercept_,
            "coef": {str(names_in[i]): float(lasso.coef_[i]) for i in kept},
        }

    pca = next((st for _, st in est.steps if isinstance(st, GroupedPCA)), None)
    if pca is not None:  # components per group, and where the training rows clipped them
        info["pca"] = {"n_components": dict(pca.n_components_), "clipped": dict(pca.clipped_)}

    def predict(idx: pd.Index, est: Any = est) -> tuple[np.ndarray, np.ndarray]:
        return _pipe_predict(data, m, est, idx)

    return Fitted(m.name, m.kind, predict, est, info)


def _impute_frame(df: pd.DataFrame, train: pd.Index, categorical: Sequence[str]) -> pd.DataFrame:
    """Training median / mode imputation; levels unseen in training -> the training mode.

    Not :class:`~hccrad.stats.encoding.TableEncoder`: the clinical model dummy-codes (and
    tests) each categorical variable itself, so its columns stay text here; and an unseen
    level takes the mode (the encoder: the reference level), infinite values are kept, text
    columns count as categorical, and a column without a training value is an error.
    """
    out = df.copy()
    for col in out.columns:
        tr = out.loc[train, col]
        if col in categorical or not pd.api.types.is_numeric_dtype(out[col]):
            text = out[col].map(lambda v: v if pd.isna(v) else str(v)).astype(object)
            seen = tr.dropna().astype(str)
            if seen.empty:
                raise ValueError(f"column {col!r} has no training value")
            counts = seen.value_counts()
            mode = min(counts.index[counts == counts.max()])
            text = text.where(text.isin(set(seen)) | text.isna(), mode)
            out[col] = text.fillna(mode)
        else:
            vals = pd.to_numeric(out[col], errors="coerce")
            med = vals.loc[train].median()
            if not np.isfinite(med):
                raise ValueError(f"column {col!r} has no training value")
            out[col] = vals.fillna(med).astype(float)
    return out


def _fit_clinical(
    data: StudyData, m: ModelSpec, train: pd.Index, stack: Mapping[str, pd.Series]
) -> Fitted:
    keep = [k for k in m.keep if k not in m.candidates]
    variables = [*m.candidates, *keep]
    missing = [c for c in variables if c not in data.clinical.columns]
    if missing:
        raise InputError(f"study {data.spec.name}, model {m.name}: clinical column(s) {missing}")
    df = data.clinical[variables].copy()
    for dep in m.scores:
        df[f"{dep}_score"] = stack[dep]
    df = _impute_frame(df, train, m.categorical)
    fit_df = df.loc[train].assign(**{data.spec.label: data.y.loc[train].to_numpy()})
    cm = clinical_model(
        fit_df,
        data.spec.label,
        [c for c in df.columns if c not in keep],
        alpha=m.alpha,
        multivariable=m.multivariable,
        keep=list(m.keep),
    )
    info = {
        "features": list(cm.selected),
        "n_features": len(cm.selected),
        "entered": list(cm.entered),
        "removed": [str(v) for v in cm.pruning.get("removed", [])],
        "fallback": bool(cm.fallback),
        "odds_ratios": dict(zip(cm.multivariable["term"], cm.multivariable["OR"], strict=True)),
    }

    def predict(idx: pd.Index) -> tuple[np.ndarray, np.ndarray]:
        p = cm.predict(df.loc[idx])
        return p, _logit(p)

    return Fitted(m.name, m.kind, predict, cm, info)


def _fit_fusion(
    data: StudyData, m: ModelSpec, train: pd.Index, stack: Mapping[str, pd.Series]
) -> Fitted:
    ytr = data.y.loc[train]
    tr_scores = {d: stack[d].loc[train].to_numpy() for d in m.models}
    if m.method == "logistic":
        sf = score_fusion(tr_scores, ytr.to_numpy())
        recal = None
    else:
        sf = score_fusion(tr_scores)
        z = sf.transform(tr_scores).reshape(-1, 1)
        recal = LogisticRegression(C=np.inf, max_iter=10000).fit(z, ytr.to_numpy())
    info = {
        "features": list(m.models),
        "n_features": len(m.models),
        "weights": dict(zip(sf.names, sf.weights.tolist(), strict=True)),
        "intercept": sf.intercept,
    }

    def predict(idx: pd.Index) -> tuple[np.ndarray, np.ndarray]:
        fused = sf.transform({d: stack[d].loc[idx].to_numpy() for d in m.models})
        if recal is not None:
            fused = recal.decision_function(fused.reshape(-1, 1))
        return _expit(fused), np.asarray(fused, dtype=float)

    return Fitted(m.name, m.kind, predict, sf, info)


def fit_model(
    data: StudyData, m: ModelSpec, train: pd.Index, stack: Mapping[str, pd.Series]
) -> Fitted:
    """Fit one model on the ``train`` patients (``stack``: the scores it stacks on); pipeline
    and clinical selections are remembered for the models that pool them."""
    if m.kind == "score_fusion":
        return _fit_fusion(data, m, train, stack)
    if m.kind == "pipeline":
        fitted = _fit_pipeline(data, m, train)
    else:
        fitted = _fit_clinical(data, m, train, stack)
    data.selections[(m.name, tuple(map(str, train)))] = list(fitted.info["features"])
    return fitted


def stack_scores(
    data: StudyData, m: ModelSpec, fitted: Fitted, train: pd.Index, patients: pd.Index
) -> pd.Series:
    """The log-odds other models stack on (``stacking``).

    * ``in_sample``: the full training fit's prediction for every patient;
    * ``oof``: out-of-fold predictions for training patients (each from a fold model that did
      not see it), the full training fit's prediction for everyone else;
    * ``crossfit``: out-of-fold for training patients, the mean of the fold models' predictions
      for everyone else (so that both come from models of the same size and scale).
    """
    _, lp = fitted.predict(patients)
    out = pd.Series(lp, index=patients)
    if data.spec.stacking == "in_sample":
        return out
    ytr = data.y.loc[train]
    k = min(data.spec.stacking_folds, min_class_count(ytr))
    if k < 2:
        log.warning("model %s: too few training patients for out-of-fold scores", m.name)
        return out
    others = patients.difference(train, sort=False)
    fold_mean = pd.Series(0.0, index=others)
    folds = StratifiedKFold(k, shuffle=True, random_state=data.seed)
    for fit_i, held_i in folds.split(np.zeros(len(train)), ytr.to_numpy()):
        fit_idx, held_idx = train[fit_i], train[held_i]
        if m.kind == "pipeline" and not m.pool:  # pooled: the pool is refitted per fold
            est = clone(fitted.estimator).fit(data.X[m.name].loc[fit_idx], ytr.loc[fit_idx])
            sub = Fitted(m.name, m.kind, lambda idx, e=est: _pipe_predict(data, m, e, idx), est)
        else:
            sub = fit_model(data, m, fit_idx, {})
        out.loc[held_idx] = sub.predict(held_idx)[1]
        if data.spec.stacking == "crossfit" and len(others):
            fold_mean += sub.predict(others)[1] / k
    if data.spec.stacking == "crossfit" and len(others):
        out.loc[others] = fold_mean
    return out


def _pipe_predict(
    data: StudyData, m: ModelSpec, est: Any, idx: pd.Index
) -> tuple[np.ndarray, np.ndarray]:
    Xi = data.X[m.name].loc[idx]
    if m.output == "radscore":
        lp = np.asarray(radiomics_score(est, Xi), dtype=float)
        return _expit(lp), lp
    p = est.predict_proba(Xi)[:, 1]
    return p, _logit(p)
