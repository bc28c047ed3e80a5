"""Study mil_er is the paper's design: Cen et al., CT-based 2.5D deep learning-multi-instance
learning for early recurrence of HCC (J Hepatocell Carcinoma, 2025).

The study file, loaded at full scale (no overlay), must hold every step of the paper's Methods
with the paper's parameters (or a listed deviation); the demo delta only shrinks sizes. These
tests fail when the configuration drifts from the paper.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from sklearn.linear_model import LassoCV
from sklearn.model_selection import StratifiedKFold

from hccrad.config import load_settings
from hccrad.deep.train_config import STUDY_PRESETS, TrainConfig
from hccrad.stats.selection import make_step
from hccrad.studies import load_study
from hccrad.studies.splits import study_splits
from hccrad.synth.cohort import clinical_tables

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "config" / "studies" / "mil_er.yaml"
CONFIG = ROOT / "config" / "config.yaml"

#: The paper's MIL selection (Feature Selection): t / Mann-Whitney P < 0.05, |Pearson r| > 0.9
#: removed, Lasso regression with lambda by 10-fold CV (the linear Lasso; the path: LassoCV's
#: default, ours).
MIL_CHAIN = [
    {"step": "univariate", "alpha": 0.05, "test": "auto"},
    {"step": "correlation", "method": "pearson", "threshold": 0.9},
    {"step": "lasso", "kind": "linear", "cv": 10, "Cs": 100, "c_ratio": 1000},
]
#: Table 3's comparison slice networks (deep model -> backbone) and their pooled feature sizes.
COMPARISON_NETS = {"slice_resnet101": "resnet101", "slice_densenet121": "densenet121"}
FEATURES = {"resnet101": 2048, "densenet121": 1024}
#: The paper's 2.5D slice offsets around the largest cross-section (11 slices).
MIL_OFFSETS = (0, -1, 1, -2, 2, -4, 4, -7, 7, -9, 9)


@pytest.fixture(scope="module")
def spec():
    return load_study(STUDY, check_estimators=True)


def demo_delta() -> dict:
    return yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())["studies"]["mil_er"]


def test_label_modality_and_the_single_center_7_3_split(spec) -> None:
    assert (spec.modality, spec.label) == ("CT", "early_recurrence")
    s = spec.splits
    # one center, random 7:3, no external or temporal test: every center is development
    assert s.primary_centers == ("A", "B", "C")
    assert s.temporal_cutoff is None and s.validation_fraction == 0.3
    rows, _ = clinical_tables(seed=42, n_patients=191, modality="CT")
    splits = study_splits(spec, pd.DataFrame(rows), seed=42)
    counts = splits["split"].value_counts().to_dict()
    assert set(counts) == {"train", "validation"}
    assert counts["train"] == pytest.approx(133, abs=2)  # the paper's 133 / 58
    assert counts["validation"] == pytest.approx(58, abs=2)


def test_the_mil_model_is_the_papers_recipe(spec) -> None:
    m = spec.models["mil"]
    assert m.kind == "pipeline" and m.blocks == ("mil",)
    assert spec.blocks["mil"].source == "table"
    assert spec.blocks["mil"].path.endswith("studies/mil_er/deep/mil_slices/mil_features.parquet")
    # z-score is the pipeline's first step (StandardScaler); then the paper's chain
    assert [dict(s) for s in m.selection] == MIL_CHAIN
    assert m.classifier == "extra_trees" and m.smote is True and m.cv == 5
    assert m.grid is not None and len(m.grid) == 3
    points = 1
    for values in m.grid.values():
        points *= len(values)
    assert points == 32 and None in m.grid["classifier__max_depth"]


def test_the_radiomics_model_adds_the_icc_filter(spec) -> None:
    r = spec.models["radiomics"]
    block = spec.blocks[r.blocks[0]]
    assert r.blocks == ("radiomics",) and block.source == "radiomics"
    assert block.phases == ("AP",) and block.regions == ("tumor",)  # arterial phase, tumor ROI
    assert r.selection[0] == {"step": "icc", "threshold": 0.75, "column": "icc2_1"}
    assert [dict(s) for s in r.selection[1:]] == MIL_CHAIN  # "analogous to the DL-MIL model"
    assert r.uses_icc
    mil = spec.models["mil"]
    assert (r.classifier, r.smote, r.cv, r.grid) == (mil.classifier, mil.smote, mil.cv, mil.grid)


def test_the_clinical_model_tests_then_fits_the_mil_classifier(spec) -> None:
    c = spec.models["clinical"]
    assert c.kind == "pipeline" and c.blocks == ("clinical",)
    # the paper's variables that the clinical table has (BMI, alcohol, HBsAg: a deviation)
    assert spec.blocks["clinical"].columns == ("age", "male", "afp", "alb", "ast", "alt")
    assert spec.derived["male"] == {"column": "sex", "op": "eq", "value": "M"}
    assert [dict(s) for s in c.selection] == [{"step": "univariate", "alpha": 0.05, "test": "auto"}]
    assert c.classifier == "extra_trees" and c.smote is True and c.cv == 5


def test_the_clinical_test_is_chosen_by_data_type(spec) -> None:
    """Shapiro-Wilk -> t / Mann-Whitney for continuous variables, chi2 for sex (P < 0.05)."""
    rows, _ = clinical_tables(seed=42, n_patients=191, modality="CT")
    df = pd.DataFrame(rows)
    X = df[["age", "afp", "alb"]].assign(male=(df["sex"] == "M").astype(float))
    y = df["early_recurrence"].to_numpy()
    (step,) = spec.models["clinical"].selection
    f = make_step(step, seed=42)[1].fit(X, y)
    table = pd.crosstab(y, X["male"]).to_numpy()
    assert f.tests_[3] == "chi2"  # no expected count < 5 in 191 patients
    assert f.pvalues_[3] == pytest.approx(stats.chi2_contingency(table).pvalue, rel=1e-12)
    for j, col in enumerate(("age", "afp", "alb")):
        pos, neg = X[col][y == 1], X[col][y == 0]
        normal = min(stats.shapiro(pos).pvalue, stats.shapiro(neg).pvalue) > 0.05
        assert f.tests_[j] == ("ttest" if normal else "mannwhitney")
        ref = stats.ttest_ind(pos, neg, equal_var=False) if normal else stats.mannwhitneyu(pos, neg)
        assert f.pvalues_[j] == pytest.approx(ref.pvalue, rel=1e-12)
    assert not f.fallback_ and f.support_.tolist() == (f.pvalues_ < 0.05).tolist()


def test_the_lasso_is_lassocv_with_10_folds(spec) -> None:
    """The configured LASSO step is scikit-learn's LassoCV (linear, lambda by 10-fold CV)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(133, 26))  # 133 training patients, 13 PLH + 13 BoW features
    y = (X[:, 0] + 0.8 * rng.normal(size=133) > 0.3).astype(int)
    las = make_step(MIL_CHAIN[-1], seed=42)[1].fit(X, y)
    folds = list(StratifiedKFold(10, shuffle=True, random_state=42).split(X, y))
    ref = LassoCV(cv=folds, max_iter=5000).fit(X, y.astype(float))  # 100 alphas, eps 1e-3
    np.testing.assert_allclose(las.coef_, ref.coef_, atol=1e-10)
    assert las.support_.tolist() == (ref.coef_ != 0).tolist()


def test_primary_comparisons_and_key_comparison(spec) -> None:
    assert spec.primary == "mil" and spec.explain == "mil" and spec.nomogram is None
    pairs = (("mil", "radiomics"), ("mil", "clinical"), ("radiomics", "clinical"))
    assert spec.comparisons == pairs
    assert spec.key_pair == ("mil", "radiomics")
    key = spec.key_comparison
    assert (key["split"], key["direction"], key["p"]) == ("validation", "greater", 0.047)
    assert "0.840" in key["claim"] and "0.678" in key["claim"]
    assert spec.survival is None  # binary early recurrence only
    assert spec.baseline["variables"] == ["age", "sex", "afp", "alb", "ast", "alt"]
    assert spec.baseline["categorical"] == ["sex"] and spec.baseline["nonnormal"] == []


def test_the_slice_network_and_mil_features(spec) -> None:
    assert list(spec.deep_models) == ["mil_slices", *COMPARISON_NETS]
    d = spec.deep_models["mil_slices"]
    assert (d.input, d.phase, d.preset, d.mil) == ("mil_slices", "AP", "mil_slice", True)
    assert d.raw.get("cam", "gradcam") == "gradcam"  # "Grad-CAM" of the last conv layer
    assert d.raw["mil_bins"] == 13 and d.raw["mil_words"] == 13  # 13 PLH + 13 BoW features
    assert d.gradcam > 0
    resolved = {**STUDY_PRESETS[d.preset], **d.train}
    assert resolved["network"] == "resnet18" and resolved["input_kind"] == "slice"
    cfg = TrainConfig.preset(d.preset, **d.train)
    assert cfg.network == "resnet18" and cfg.spatial_dims == 2
    # the preset's unpublished values (Supplementary 1A): Adam 1e-4, 50 epochs, batch 32
    assert (cfg.optimizer, cfg.lr, cfg.epochs, cfg.batch_size) == ("adam", 1e-4, 50, 32)
    # the MIL block reads the ResNet18's features only (the paper's choice, fixed beforehand)
    assert spec.blocks["mil"].path.endswith("deep/mil_slices/mil_features.parquet")


def test_table3_comparison_slice_networks(spec) -> None:
    """ResNet101 and DenseNet121 (Table 3): the ResNet18's input and preset, another backbone;
    compared by their own per-split slice metrics, feeding no model (no MIL features)."""
    import torch

    from hccrad.deep.train import build_model

    base = TrainConfig.preset("mil_slice", **spec.deep_models["mil_slices"].train)
    for name, network in COMPARISON_NETS.items():
        d = spec.deep_models[name]
        assert (d.input, d.phase, d.preset, d.mil) == ("mil_slices", "AP", "mil_slice", False)
        assert d.train == {"network": network} and d.gradcam == 0
        cfg = TrainConfig.preset(d.preset, **d.train)
        assert (cfg.network, cfg.input_kind, cfg.spatial_dims) == (network, "slice", 2)
        assert dataclasses.replace(cfg, network="resnet18") == base  # only the backbone differs
        assert not any(name in str(b.path) for b in spec.blocks.values())
        # hccrad.deep.nets builds the backbone on 2-D slices: 2048 / 1024 pooled features
        model = build_model(cfg, in_channels=1).eval()
        with torch.no_grad():
            x = torch.zeros(2, 1, 64, 64)
            assert model(x).shape == (2, 2)
            assert model.forward_features(x).shape == (2, FEATURES[network])
    demo = load_study(STUDY, check_estimators=False, override=demo_delta())
    for name, network in COMPARISON_NETS.items():
        small = TrainConfig.preset("mil_slice", **demo.deep_models[name].train)
        # the demo keeps the architecture and shortens the training (64 px slices)
        assert (small.network, small.epochs, small.patience) == (network, 1, None)


def test_the_papers_preprocessing_in_the_workflow_config() -> None:
    settings = load_settings(CONFIG)
    inp = settings.deep_inputs["mil_slices"]
    assert inp.builder == "slices" and inp.modalities == ("CT",) and inp.phases == ("AP",)
    assert inp.region == "tumor" and inp.offsets == MIL_OFFSETS and inp.size == 224
    norm = settings.modalities["CT"].normalization
    assert (norm.method, norm.window_width, norm.window_level) == ("window", 259, 40)
    assert settings.spacing == (1.0, 1.0, 1.0)
    assert str(settings.radiomics_params["CT"]).endswith("ct_original_wavelet_log.yaml")
    assert "config/studies/mil_er.yaml" in settings.studies


def test_published_numbers(spec) -> None:
    pub = spec.published
    assert pub["cohorts"]["train"]["n"] == 133 and pub["cohorts"]["train"]["positives"] == 56
    assert pub["cohorts"]["validation"]["n"] == 58
    assert pub["cohorts"]["validation"]["positives"] == 23
    models = pub["models"]
    assert set(models) == set(spec.models)
    assert models["mil"]["auc"]["validation"] == [0.840, 0.737, 0.943]
    assert models["mil"]["auc"]["train"] == [0.861, 0.800, 0.923]
    assert models["mil"]["n_features"] == 6
    assert models["radiomics"]["auc"]["validation"] == [0.678, 0.539, 0.816]
    assert models["radiomics"]["n_features"] == 8
    assert models["clinical"]["auc"]["validation"] == [0.598, 0.452, 0.743]
    assert models["mil"]["sensitivity"]["validation"] == 0.870
    assert models["clinical"]["specificity"]["validation"] == 0.543
    # Table 3's slice networks are deep models, not study models: listed as missing models; the
    # deep models of the same names give this run's rows (split_metrics.parquet)
    missing = pub["missing_models"]
    assert set(missing) == {"slice_resnet18", "slice_densenet121", "slice_resnet101"}
    assert set(COMPARISON_NETS) <= set(missing) and not set(missing) & set(spec.models)
    assert missing["slice_resnet18"]["auc"]["validation"] == [0.716, 0.674, 0.758]
    assert missing["slice_resnet101"]["auc"]["train"] == [0.590, 0.561, 0.619]
    assert missing["slice_densenet121"]["specificity"]["validation"] == 0.800
    p = {tuple(c["pair"]): c["p"] for c in pub["comparisons"]}
    assert p[("mil", "radiomics")] == 0.047 and p[("mil", "clinical")] == 0.009


def test_every_deviation_has_a_reason(spec) -> None:
    assert spec.deviations
    for dev in spec.deviations:
        assert set(dev) == {"step", "paper", "ours", "reason"}
        assert all(isinstance(v, str) and v.strip() for v in dev.values()), dev
    steps = [d["step"] for d in spec.deviations]
    assert len(steps) == len(set(steps))
    for step in (
        "design and centers",
        "clinical variables",
        "slice networks",
        "slice-level training protocol",
        "MIL features",
        "LASSO",
        "radiomics ICC",
        "pathology indicators and correlation (Table 5, Fig. 6)",
    ):
        assert step in steps, step
    todo = [d["step"] for d in spec.deviations if d["reason"].startswith("not implemented yet")]
    # the three slice networks are trained; the force plot is drawn (shap_force.png), only the
    # paper's example patient is unknown
    assert "SHAP" not in todo and "slice networks" not in todo
    nets = next(d for d in spec.deviations if d["step"] == "slice networks")
    assert "fixed beforehand" in nets["ours"] and "slice_densenet121" in nets["ours"]
    shap = next(d for d in spec.deviations if d["step"] == "SHAP")
    assert "force plot" in shap["ours"]
    # the slice-level table is computed now (deep_model_outputs' split_metrics.parquet)
    step3 = "slice-level evaluation (Table 3)"
    table3 = next(d for d in spec.deviations if d["step"] == step3)
    assert "split_metrics.parquet" in table3["ours"] and step3 not in todo
    # matched now: the chi2 test of categorical clinical variables; the LASSO kind is decided
    assert "clinical selection test" not in steps and "LASSO" not in todo


def test_the_demo_delta_only_shrinks_sizes(spec) -> None:
    demo = load_study(STUDY, check_estimators=True, override=demo_delta())
    assert demo.splits == spec.splits and demo.blocks == spec.blocks
    assert demo.primary == spec.primary and demo.comparisons == spec.comparisons
    assert demo.key_comparison == spec.key_comparison and demo.published == spec.published
    assert demo.deviations == spec.deviations
    for name, m in spec.models.items():
        d = demo.models[name]
        assert (d.kind, d.blocks, d.classifier, d.smote, d.cv) == (
            m.kind,
            m.blocks,
            m.classifier,
            m.smote,
            m.cv,
        )
        assert [s["step"] for s in d.selection] == [s["step"] for s in m.selection]
        assert set(d.grid) == set(m.grid)
    deep = demo.deep_models["mil_slices"]
    assert deep.raw["mil_bins"] == 13 and deep.preset == "mil_slice"
    assert TrainConfig.preset(deep.preset, **deep.train).network in ("resnet10", "resnet18")
    # the demo cohort (hccrad synth --seed 42 --patients 96): each split holds both classes
    rows, _ = clinical_tables(seed=42, n_patients=96, modality="CT")
    table = pd.DataFrame(rows)
    splits = study_splits(demo, table, seed=42).merge(table[["patient", demo.label]])
    per_split = splits.groupby("split")[demo.label].agg(["size", "sum"])
    assert set(per_split.index) == {"train", "validation"}
    assert (per_split["sum"] > 0).all() and (per_split["sum"] < per_split["size"]).all()


# ---- Table 5: the MIL features against the pathology indicators ------------------------------


def test_pathology_correlation_is_configured(spec):
    from hccrad.studies import study_outputs

    assert spec.pathology == {"model": "mil", "columns": ("mvi", "grade_pd"), "method": "pearson"}
    assert study_outputs(spec)["pathology"] == "pathology_correlation.parquet"
    dev = next(d for d in spec.deviations if d["step"].startswith("pathology indicators"))
    assert not dev["reason"].startswith("not implemented yet") and "Ki-67" in dev["reason"]


def test_pathology_model_must_be_a_pipeline_model_and_not_the_label():
    from hccrad.errors import ConfigError

    with pytest.raises(ConfigError, match=r"pathology\.model"):
        load_study(STUDY, override={"pathology": {"model": "clinical_lr", "columns": ["mvi"]}})
    with pytest.raises(ConfigError, match=r"pathology\.columns"):
        load_study(STUDY, override={"pathology": {"model": "mil", "columns": ["early_recurrence"]}})


def test_pathology_table_against_scipy_and_statsmodels(spec):
    from statsmodels.stats.multitest import multipletests

    from hccrad.studies.evaluation import benjamini_hochberg, pathology_table

    rng = np.random.default_rng(5)
    idx = pd.Index([f"p{i}" for i in range(60)], name="patient")
    mvi = pd.Series(rng.integers(0, 2, 60), index=idx)
    feats = pd.DataFrame(
        {"a": mvi + rng.normal(0, 0.7, 60), "b": rng.normal(size=60), "c": np.ones(60)}, index=idx
    )
    clinical = pd.DataFrame({"mvi": mvi, "grade_pd": rng.integers(0, 2, 60)}, index=idx)
    clinical.loc["p0", "grade_pd"] = np.nan  # unknown grade: left out of that pair
    out = pathology_table(spec, feats, clinical, level=0.95)
    assert list(out.columns) == [
        "model", "feature", "pathology", "method", "n", "r", "r_lower", "r_upper", "p", "q", "note",
    ]  # fmt: skip
    row = out[(out.feature == "a") & (out.pathology == "mvi")].iloc[0]
    r, p = stats.pearsonr(feats["a"], mvi)
    assert (row.n, row.r, row.p) == (60, pytest.approx(r), pytest.approx(p))
    z, se = np.arctanh(r), 1 / np.sqrt(57)
    assert row.r_lower == pytest.approx(np.tanh(z - 1.959964 * se), abs=1e-6)
    assert row.r_upper == pytest.approx(np.tanh(z + 1.959964 * se), abs=1e-6)
    assert row.r > 0.3 and row.r_lower > 0
    grade = out[(out.feature == "b") & (out.pathology == "grade_pd")].iloc[0]
    assert grade.n == 59
    # a constant feature: noted, no statistics; the q values are Benjamini-Hochberg's
    const = out[out.feature == "c"]
    assert const["r"].isna().all() and (const["note"] != "").all()
    ok = out["p"].notna()
    want = multipletests(out.loc[ok, "p"], method="fdr_bh")[1]
    np.testing.assert_allclose(out.loc[ok, "q"], want, rtol=1e-12)
    assert np.isnan(benjamini_hochberg([np.nan])[0])
    # a column the table lacks: one row with a note
    lacking = pathology_table(dataclasses.replace(spec, pathology={**spec.pathology,
                              "columns": ("ki67",)}), feats, clinical)  # fmt: skip
    assert len(lacking) == 1 and "no column" in lacking["note"].iloc[0]
