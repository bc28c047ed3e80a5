"""er_fusion is Zhao et al. 2024 (Front. Oncol. 14:1446386) at full scale: every step of the
paper's Methods with the paper's parameters, the published numbers, a reason for every
deviation, and the demo overlay's delta still validating. Fails when the configuration drifts
from the paper."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from hccrad.config import load_settings
from hccrad.deep.train_config import STUDY_PRESETS, TrainConfig
from hccrad.errors import ConfigError
from hccrad.stats import unpaired_auc_test
from hccrad.studies import derive_columns, load_study, run_study, study_outputs
from hccrad.synth import clinical_tables

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "config" / "studies" / "er_fusion.yaml"
DEMO = ROOT / "config" / "demo.yaml"
DEFAULTS = STUDY.parent / "defaults.yaml"

RADIOMICS = ["rad_lr", "rad_svm", "rad_knn", "rad_xgb", "rad_mlp"]
CLASSIFIERS = {
    "rad_lr": "logistic",
    "rad_svm": "svm",
    "rad_knn": "knn",
    "rad_xgb": "xgboost",
    "rad_mlp": "mlp",
}
#: Table 1 cut-offs of the CR variables.
CUTOFFS = {
    "afp_gt_400": ("afp", "gt", 400),
    "ast_gt_40": ("ast", "gt", 40),
    "alt_gt_50": ("alt", "gt", 50),
    "ggt_gt_60": ("ggt", "gt", 60),
    "tbil_gt_19": ("tbil", "gt", 19),
    "alb_lt_40": ("alb", "lt", 40),
    "large_tumor": ("tumor_size_mm", "gt", 50),
}
#: Deep learning model construction: SGD, lr 1e-4, decay 1e-4, momentum 0.9, 200 iterations,
#: batch 64, early stopping, class-weighted cross-entropy, 2.5D slices.
DL_TRAIN = {
    "input_kind": "slices25d",
    "optimizer": "sgd",
    "lr": 1e-4,
    "weight_decay": 1e-4,
    "momentum": 0.9,
    "epochs": 200,
    "batch_size": 64,
    "class_weighted": True,
    "pretrained": None,
}
#: The paper's ResNet-10 is ResNet-18 cut after its second stage (64, 128 channels; Figure 3).
NETWORKS = {"er_25d": "resnet10_2stage", "er_25d_r18": "resnet18", "er_25d_r34": "resnet34"}
DEEP_BLOCK = {"dl": "er_25d", "dl_r18": "er_25d_r18", "dl_r34": "er_25d_r34"}
#: "Evaluation of MRI features": reader 1's columns (the models'), reader 2's for the kappa.
READER_FEATURES = [
    "nonsmooth_margin", "intratumoral_necrosis", "intratumoral_hemorrhage", "capsule",
    "arterial_peritumoral_enhancement", "radiological_cirrhosis",
]  # fmt: skip
#: The clinical prediction methods compared with DLRCR: score -> one-variable logistic model.
ONE_SCORE_COMPARATORS = {"bclc": "bclc_stage", "cnlc": "cnlc_stage", "nlr": "nlr",
                         "plr": "plr", "lmr": "lmr"}  # fmt: skip
COMPARATORS = [*ONE_SCORE_COMPARATORS, "erasl_pre"]


@pytest.fixture(scope="module")
def spec():
    return load_study(STUDY, check_estimators=True)


def demo_delta() -> dict:
    """This study's delta of the demo overlay (config/demo.yaml, studies: er_fusion)."""
    return (yaml.safe_load(DEMO.read_text()).get("studies") or {}).get("er_fusion", {})


def test_cohort_label_and_split(spec):
    assert spec.modality == "MR" and spec.label == "early_recurrence"
    # one center, random 8:2, no temporal set
    assert spec.splits.primary_centers == ("A",)
    assert spec.splits.validation_fraction == pytest.approx(0.2)
    assert spec.splits.temporal_cutoff is None
    assert spec.splits.names == ("train", "validation", "external")


def test_radiomics_block_and_selection_chain(spec):
    block = spec.blocks["radiomics"]
    assert block.source == "radiomics"
    assert block.phases == ("AP", "PVP", "DP") and block.regions == ("tumor",)
    chain = [
        {"step": "icc", "threshold": 0.9, "intra": True},  # intra- and inter-observer ICC
        {"step": "univariate", "alpha": 0.05, "test": "auto"},
        {"step": "lasso", "cv": 5, "Cs": 100},
    ]
    assert spec.raw["chains"]["icc_test_lasso"] == chain
    for name in RADIOMICS:
        m = spec.models[name]
        assert m.kind == "pipeline" and m.blocks == ("radiomics",)
        assert list(m.selection) == chain and m.uses_icc and m.uses_icc_intra
        assert m.classifier == CLASSIFIERS[name]
        assert m.grid is None and m.smote is False  # no tuning, no resampling published
    # hyperparameters not published: the libraries' own defaults
    assert spec.models["rad_xgb"].params == {
        "n_estimators": 100,
        "max_depth": 6,
        "learning_rate": 0.3,
    }
    assert spec.models["rad_mlp"].params == {"hidden_layer_sizes": [100], "alpha": 1e-4}
    assert spec.models["rad_lr"].params == spec.models["rad_svm"].params == {}
    assert spec.models["rad_knn"].params == {}


def test_clinical_radiological_model(spec):
    for name, (column, op, value) in CUTOFFS.items():
        assert spec.derived[name] == {"column": column, "op": op, "value": value}, name
    # "history of hepatitis B or C": one variable
    assert spec.derived["viral_hepatitis"] == {"columns": ["hbv", "hcv"], "op": "any"}
    cr = spec.models["clinical"]
    assert cr.kind == "clinical" and cr.alpha == pytest.approx(0.05)
    # univariable P < 0.05, then the multivariable model pruned to its independent factors
    assert cr.multivariable == "backward_p" and not cr.keep
    # Table 3's 18 variables: 10 clinical, diameter, number and reader 1's six MRI features
    assert list(cr.candidates) == [
        "male", "age", "viral_hepatitis", "afp_gt_400", "alt_gt_50", "ast_gt_40", "ggt_gt_60",
        "tbil_gt_19", "alb_lt_40", "child_pugh_b", "large_tumor", "multiple_tumors",
        *READER_FEATURES,
    ]  # fmt: skip
    assert len(cr.candidates) == 18 and not cr.scores
    # Table 1 holds the same variables (sex and Child-Pugh class as categories)
    base = spec.baseline["variables"]
    assert base[-len(READER_FEATURES) :] == READER_FEATURES
    assert set(READER_FEATURES) <= set(spec.baseline["categorical"])


def test_fusion_models(spec):
    cr = spec.models["clinical"]
    assert spec.blocks["cr_candidates"].columns == cr.candidates
    # RCR: the radiomics chain's features (rad_lr's selection) + the CR model's independent
    # factors (the paper's: AST and diameter), each refitted on the same patients, LR
    rc = spec.models["rc"]
    assert rc.kind == "pipeline" and rc.blocks == ("radiomics", "cr_candidates")
    assert rc.pool == ("rad_lr", "clinical") and not rc.selection and not rc.keep
    assert rc.classifier == "logistic" and rc.head is None
    # DLRCR: the trained ResNet-10 (the best variant, er_25d) with the same columns joined in
    # its fully connected layer, trained end to end with its recipe
    dlrcr = spec.models["dlrcr"]
    assert dlrcr.kind == "pipeline" and not dlrcr.selection
    assert dlrcr.blocks == ("radiomics", "cr_candidates") and dlrcr.pool == rc.pool
    assert dlrcr.head == {
        "backbone": "er_25d", "optimizer": "sgd", "lr": 1e-4, "momentum": 0.9,
        "weight_decay": 1e-4, "epochs": 200, "batch_size": 64, "patience": 20,
        "val_fraction": 0.2, "class_weighted": True,
    }  # fmt: skip
    for key in ("optimizer", "lr", "momentum", "weight_decay", "epochs", "batch_size"):
        assert dlrcr.head[key] == DL_TRAIN[key], key
    assert spec.backbones == ["er_25d"]
    assert spec.deep_models["er_25d"].train["network"] == "resnet10_2stage"
    # ours: the same layer on the frozen network's features (the table of its 3 x 128)
    frozen = spec.models["dlrcr_frozen"]
    assert frozen.blocks == ("radiomics", "cr_candidates", "deep_er_features")
    assert frozen.pool == rc.pool and frozen.keep == ("deep_er_features",)
    deep = spec.blocks["deep_er_features"]
    assert deep.source == "table"
    assert deep.path == "results/cohort/studies/er_fusion/deep/er_25d/features.parquet"
    assert frozen.head == {**{k: v for k, v in dlrcr.head.items() if k != "backbone"}, "hidden": 0}
    assert ("dlrcr", "dlrcr_frozen") in spec.comparisons
    # the score-level variant kept for comparison
    stack = spec.models["dlrcr_stack"]
    assert stack.kind == "clinical" and stack.alpha == 1.0
    assert stack.candidates == ("ast_gt_40", "large_tumor") and stack.scores == ("rad_lr", "dl")
    assert ("dlrcr", "dlrcr_stack") in spec.comparisons
    assert spec.stacking == "crossfit"
    for name, column in ONE_SCORE_COMPARATORS.items():
        assert spec.blocks[name].source == "clinical" and spec.blocks[name].columns == (column,)
        m = spec.models[name]
        assert m.kind == "pipeline" and m.blocks == (name,) and m.classifier == "logistic"
        assert not m.selection and m.grid is None


def test_reader_features_and_their_agreement(spec):
    # reader 1 scores the models' columns; reader 2 is only compared (Cohen's kappa)
    assert spec.agreement == {f: f"{f}_r2" for f in READER_FEATURES}
    assert study_outputs(spec)["agreement"] == "agreement.parquet"
    used = {c for m in spec.models.values() for c in (*m.candidates, *m.keep)}
    used |= {c for b in spec.blocks.values() if b.source == "clinical" for c in b.columns}
    assert set(READER_FEATURES) <= used and not {f"{f}_r2" for f in READER_FEATURES} & used
    assert spec.published["agreement"]["kappa_range"] == [0.834, 1.0]


def test_comparators_are_the_papers(spec):
    ratios = {"nlr": ["neutrophils", "lymphocytes"], "plr": ["platelets", "lymphocytes"],
              "lmr": ["lymphocytes", "monocytes"]}  # fmt: skip
    for name, columns in ratios.items():
        assert spec.derived[name] == {"columns": columns, "op": "ratio"}
    # ALBI grade (Johnson et al. 2015): 0.66 log10 bilirubin (umol/L) - 0.085 albumin (g/L)
    assert spec.derived["albi_score"] == {
        "columns": ["log10_tbil", "alb"], "op": "sum", "weights": [0.66, -0.085],
    }  # fmt: skip
    grade = spec.derived["albi_grade"]
    assert grade["bins"][1:3] == [-2.60, -1.39] and grade["labels"] == [1, 2, 3]
    # preoperative ERASL's predictors (Chan et al. 2018), refitted: all enter
    erasl = spec.models["erasl_pre"]
    assert erasl.kind == "clinical" and erasl.alpha == 1.0 and erasl.multivariable == "all"
    assert erasl.candidates == (
        "male", "tumor_size_mm", "multiple_tumors", "albi_grade", "log10_afp",
    )  # fmt: skip
    assert {("dlrcr", c) for c in COMPARATORS} <= set(spec.comparisons)


def test_dl_models_are_the_networks_outputs(spec):
    for model, deep in DEEP_BLOCK.items():
        m = spec.models[model]
        assert m.kind == "pipeline" and m.classifier == "logistic" and not m.selection
        (block,) = m.blocks
        b = spec.blocks[block]
        assert b.source == "table" and b.columns == ("prob",)
        assert b.path == f"results/cohort/studies/er_fusion/deep/{deep}/predictions.parquet"


def test_deep_models_resolve_to_the_papers_training(spec):
    assert list(spec.deep_models) == list(NETWORKS)
    for name, network in NETWORKS.items():
        d = spec.deep_models[name]
        assert d.input == "er_stack" and d.preset == "recurrence_25d"
        assert d.preset in STUDY_PRESETS
        cfg = TrainConfig.preset(d.preset, **d.train)
        for key, value in {**DL_TRAIN, "network": network}.items():
            assert getattr(cfg, key) == value, (name, key)
        assert cfg.patience is not None  # early stopping
        assert cfg.augment and cfg.intensity_prob == 0.0  # no intensity augmentation
    assert spec.deep_models["er_25d"].gradcam > 0  # activation maps of the ResNet-10 ...
    assert spec.deep_models["er_25d"].raw["cam"] == "scorecam"  # ... by Score-CAM
    for name in ("er_25d_r18", "er_25d_r34"):  # no maps of the variants
        assert spec.deep_models[name].gradcam == 0


def test_architecture_and_explanation_deviations_name_what_is_built(spec):
    dev = {d["step"]: d for d in spec.deviations}
    assert "resnet10_2stage" in dev["DL architecture"]["ours"]
    assert "Score-CAM" in dev["DL explanation"]["ours"]
    for step in ("DL architecture", "DL explanation"):
        assert "not implemented" not in dev[step]["reason"]


def test_deep_input_is_three_largest_slices_of_three_phases():
    inp = load_settings(ROOT / "config" / "config.yaml").deep_inputs["er_stack"]
    assert inp.size == 256 and inp.k == 3
    assert tuple(inp.phases) == ("AP", "PVP", "DP") and inp.region == "tumor"


def test_primary_comparisons_and_key_comparison(spec):
    assert spec.primary == "dlrcr"
    assert spec.key_pair == ("dlrcr", "clinical")
    assert spec.comparisons[0] == ("dlrcr", "clinical")
    key = spec.key_comparison
    assert key["direction"] == "greater" and key["split"] == "validation"
    assert key["p"] == pytest.approx(0.232)
    paper_pairs = {
        ("rc", "clinical"),
        ("dlrcr", "rc"),
        ("dlrcr", "dl"),
        ("dlrcr", "rad_lr"),
        ("dl", "rad_lr"),
        ("dlrcr", "bclc"),
        ("dlrcr", "cnlc"),
        ("dlrcr", "erasl_pre"),
        ("dlrcr", "nlr"),
        ("dlrcr", "plr"),
        ("dlrcr", "lmr"),
        ("dl", "dl_r18"),
        ("dl", "dl_r34"),
    }
    assert paper_pairs <= set(spec.comparisons)
    # no SHAP, no nomogram, no survival analysis in the paper; scanner subgroups
    assert spec.explain is None and spec.nomogram is None and spec.survival is None
    assert spec.evaluation["by"] == ["field_strength"]


def test_published_numbers(spec):
    pub = spec.published
    assert pub["cohorts"]["train"] == {"n": 132, "positives": 78}
    assert pub["cohorts"]["validation"] == {"n": 33, "positives": 18}
    models = pub["models"]
    assert set(models) <= set(spec.models)
    assert set(models) == {*RADIOMICS, "clinical", "dl", "dl_r18", "dl_r34", "rc", "dlrcr",
                           *COMPARATORS}  # fmt: skip
    assert models["dlrcr"]["auc"]["validation"] == [0.844, 0.702, 0.987]
    assert models["dlrcr"]["auc"]["train"] == [0.917, None, None]  # printed CI unusable
    assert models["clinical"]["auc"]["validation"] == [0.752, 0.593, 0.911]
    assert models["rad_lr"]["auc"]["train"] == [0.839, 0.772, 0.906]
    assert models["dl"]["sensitivity"] == {"train": 0.861, "validation": 0.824}
    assert models["rc"]["auc"]["validation"][0] == 0.811
    assert models["rad_lr"]["features"] == {
        "extracted": 3111,
        "icc_kept": 2739,
        "univariate_kept": 961,
        "lasso_kept": 34,
    }
    assert models["clinical"]["multivariable"]["ast_gt_40"]["or"] == 2.49
    assert pub["missing_models"] == {}  # every model the paper reports is built
    assert models["erasl_pre"]["auc"]["validation"] == [0.572, 0.433, 0.711]
    assert models["lmr"]["auc"]["train"] == [0.507, 0.422, 0.592]
    key = [c for c in pub["comparisons"] if c.get("pair") == ["dlrcr", "clinical"]]
    assert key == [{"pair": ["dlrcr", "clinical"], "train": "<0.001", "validation": 0.232}]


def _auc_var(ci: list[float]) -> tuple[float, float]:
    """AUC and DeLong variance recovered from a printed 95 % CI (the unclipped half when the
    upper bound is clipped at 1)."""
    a, lo, hi = ci
    half = (a - lo) if hi >= 1.0 else (hi - lo) / 2
    return a, (half / 1.959964) ** 2


def test_published_p_values_are_the_unpaired_delong_test(spec):
    """Table 2's training vs validation P and the 1.5 T vs 3.0 T P follow from the paper's AUCs
    and CIs under pROC's unpaired DeLong test (t with Welch-Satterthwaite df): the test behind
    performance.parquet's train_delong_p and by_center.parquet's delong_p. The normal reference
    misses Table 2's small P (SVM 0.0016, KNN 0.024, XGBoost 0.022); the LR's printed P (0.436)
    does not follow from its AUCs (0.839 vs 0.804 gives about 0.68)."""
    pub = spec.published
    n_train, n_val = pub["cohorts"]["train"]["n"], pub["cohorts"]["validation"]["n"]
    tests = {c["model"]: c for c in pub["comparisons"] if c.get("test") == "train vs validation"}
    assert set(tests) == set(RADIOMICS)
    for model in ("rad_svm", "rad_knn", "rad_xgb", "rad_mlp"):
        auc = pub["models"][model]["auc"]
        res = unpaired_auc_test(
            *_auc_var(auc["train"]), n_train, *_auc_var(auc["validation"]), n_val
        )
        if tests[model]["p"] == "<0.001":
            assert res.p < 0.001
        else:
            # printed P and CIs have 3 decimals
            assert res.p == pytest.approx(tests[model]["p"], abs=1e-3)
            assert abs(res.p_normal - tests[model]["p"]) > max(1e-3, abs(res.p - tests[model]["p"]))
    lr = pub["models"]["rad_lr"]["auc"]
    res = unpaired_auc_test(*_auc_var(lr["train"]), n_train, *_auc_var(lr["validation"]), n_val)
    assert tests["rad_lr"]["p"] == 0.436 and 0.6 < res.p < 0.75
    # 1.5 T vs 3.0 T per cohort: 74 of the 165 patients on 1.5 T (subgroup sizes per cohort not
    # printed: taken proportional)
    scanner = [c for c in pub["comparisons"] if c.get("test") == "1.5 T vs 3.0 T"]
    assert [c["split"] for c in scanner] == ["train", "validation"]
    for c in scanner:
        n = n_train if c["split"] == "train" else n_val
        n15 = round(n * 74 / 165)
        res = unpaired_auc_test(*_auc_var(c["auc_1_5t"]), n15, *_auc_var(c["auc_3t"]), n - n15)
        assert res.p == pytest.approx(c["p"], abs=0.005)


def test_overfitting_and_scanner_tests_are_no_deviations(spec):
    steps = {d["step"] for d in spec.deviations}
    assert not steps & {"overfitting test", "scanner subgroups"}
    # the scanner subgroups of the paper's stratified analysis
    assert spec.evaluation["by"] == ["field_strength"]


def test_every_deviation_has_a_reason(spec):
    assert len(spec.deviations) >= 10
    for d in spec.deviations:
        assert set(d) == {"step", "paper", "ours", "reason"}
        assert all(isinstance(v, str) and v.strip() for v in d.values()), d
    steps = {d["step"] for d in spec.deviations}
    for step in ("DLRCR model", "RCR model", "CR model", "DL architecture", "radiomics features",
                 "radiological features", "preoperative ERASL comparator"):  # fmt: skip
        assert step in steps
    dev = {d["step"]: d for d in spec.deviations}
    # built now: the reader-scored features with their kappa, the blood-count indices, the
    # intra-observer ICC (reader 1's repeat outline)
    for step in ("radiological features", "preoperative ERASL comparator", "reproducibility (ICC)",
                 "DLRCR model"):  # fmt: skip
        assert "not implemented" not in dev[step]["reason"], step
    assert not [d["step"] for d in spec.deviations if "not implemented" in d["reason"]]
    assert "end to end" in dev["DLRCR model"]["ours"] and "S3" in dev["DLRCR model"]["reason"]
    icc = dev["reproducibility (ICC)"]
    assert "intra-observer" in icc["ours"] and "> 0.90" in icc["ours"]
    assert "not published" in icc["reason"] and "model" in icc["reason"]
    assert "clinical comparators" not in steps


def test_the_demo_delta_validates_and_keeps_the_design(spec):
    demo = load_study(STUDY, check_estimators=True, override=demo_delta())
    assert set(demo.models) == set(spec.models) and set(demo.deep_models) == set(spec.deep_models)
    assert demo.splits == spec.splits and demo.primary == spec.primary
    assert demo.comparisons == spec.comparisons and demo.key_pair == spec.key_pair
    assert demo.overlay_changes  # scaled values are listed
    for name, d in demo.deep_models.items():
        cfg = TrainConfig.preset(d.preset, **d.train)
        assert cfg.network == NETWORKS[name] and cfg.epochs <= 4
    for m in RADIOMICS:
        steps = [s["step"] for s in demo.models[m].selection]
        assert steps == ["icc", "univariate", "lasso"]
        assert demo.models[m].selection[0] == spec.models[m].selection[0]  # intra kept


# ---------------------------------------------------------------------------------------------
# the study run on planted synthetic tables: kappa, the comparators, the CR model's candidates
# (and the generic pieces it needs: the derived op ratio, the agreement table)
# ---------------------------------------------------------------------------------------------

#: The models that need no image feature: the CR model and the comparators.
TABLE_MODELS = ["clinical", *COMPARATORS]


def clinical_only_study(tmp_path: Path) -> Path:
    """er_fusion's study file with only the models of the clinical table (CR model and
    comparators): no radiomics, no networks."""
    raw = yaml.safe_load(STUDY.read_text())
    raw.pop("deep_models")
    raw["models"] = {m: raw["models"][m] for m in TABLE_MODELS}
    used = {b for m in raw["models"].values() for b in m.get("blocks", [])}
    raw["blocks"] = {b: v for b, v in raw["blocks"].items() if b in used}
    raw["comparisons"] = [["clinical", c] for c in COMPARATORS]
    raw["primary"] = "clinical"
    raw.pop("key_comparison")
    raw.pop("published")
    path = tmp_path / "er_fusion.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """The clinical-table models of er_fusion on 600 planted MR patients (seed 42): center A
    (300) split 8:2, B and C (300) the external test. Reader 1 and 2's capsule scores are
    replaced by a constructed pair whose kappa has a closed form."""
    tmp = tmp_path_factory.mktemp("er_fusion_planted")
    spec = load_study(clinical_only_study(tmp), DEFAULTS, check_estimators=True)
    rows, _ = clinical_tables(seed=42, n_patients=600, modality="MR")
    clinical = pd.DataFrame(rows)
    # constructed 2 x 2 table: a = both present, b = reader 1 only, c = reader 2 only, d = none
    a, b, c = 300, 60, 30
    d = len(clinical) - a - b - c
    clinical["capsule"] = [1] * (a + b) + [0] * (c + d)
    clinical["capsule_r2"] = [1] * a + [0] * b + [1] * c + [0] * d
    metrics = run_study(spec, {"clinical": clinical}, tmp / "out", seed=42)
    return spec, clinical, tmp / "out", metrics, (a, b, c, d)


def test_kappa_table_is_cohens_kappa(planted_run):
    _, _, out, metrics, (a, b, c, d) = planted_run
    table = pd.read_parquet(out / "agreement.parquet").set_index("reader1")
    assert list(table.index) == READER_FEATURES
    capsule = table.loc["capsule"]
    n = a + b + c + d
    assert capsule["n"] == n == 600 and capsule["reader2"] == "capsule_r2"
    # Cohen's kappa of a 2 x 2 table: 2 (ad - bc) / ((a + b)(b + d) + (a + c)(c + d))
    closed = 2 * (a * d - b * c) / ((a + b) * (b + d) + (a + c) * (c + d))
    assert capsule["kappa"] == pytest.approx(closed, abs=1e-12)
    assert capsule["observed"] == pytest.approx((a + d) / n)
    assert capsule["kappa_lower"] < closed < capsule["kappa_upper"] and capsule["p"] < 1e-10
    # the synthetic readers: substantial to excellent agreement, as the paper's 0.834-1.000
    for f in READER_FEATURES:
        if f != "capsule":
            assert 0.65 < table.loc[f, "kappa"] < 0.95, f
    summary = {r["reader1"]: r["kappa"] for r in metrics["agreement"]}
    assert summary["capsule"] == pytest.approx(closed)


def test_cr_model_screens_reader_ones_features(planted_run):
    spec, _, out, metrics, _ = planted_run
    uni = pd.read_parquet(out / "clinical_univariable.parquet")
    cr = uni[uni["model"] == "clinical"]
    assert set(cr["variable"]) == set(spec.models["clinical"].candidates)
    assert not any(str(v).endswith("_r2") for v in uni["variable"])
    # the margin and arterial peritumoral enhancement carry the planted MVI latent: both
    # pass the univariable screen on 240 training patients (P < 0.05, OR > 1)
    for f in ("nonsmooth_margin", "arterial_peritumoral_enhancement"):
        row = cr[cr["variable"] == f].iloc[0]
        assert row["p"] < 0.05 and row["OR"] > 1, f
    assert metrics["models"]["clinical"]["status"] == "fitted"


def test_comparators_fit_and_rank_as_planted(planted_run):
    _, clinical, out, metrics, _ = planted_run
    perf = pd.read_parquet(out / "performance.parquet").set_index(["model", "split"])
    for m in COMPARATORS:
        assert metrics["models"][m]["status"] == "fitted", m
    ext = perf.xs("external", level="split")
    assert ext.loc["erasl_pre", "n"] == 300
    # ERASL's size, number and AFP drive the planted early recurrence: above chance on the
    # external test (its 95 % CI above 0.5)
    assert ext.loc["erasl_pre", "auc"] > 0.6 and ext.loc["erasl_pre", "auc_lower"] > 0.5
    # the blood counts carry no planted signal: the indices stay at chance (paper: 0.47-0.56)
    for m in ("nlr", "plr", "lmr"):
        assert abs(ext.loc[m, "auc"] - 0.5) < 0.1, m
        assert ext.loc[m, "auc_lower"] < 0.5 < ext.loc[m, "auc_upper"], m
    # a one-variable logistic model ranks patients by its index (either direction)
    pred = pd.read_parquet(out / "predictions.parquet")
    nlr = pred[pred["model"] == "nlr"].set_index("patient")
    ratio = (
        clinical.set_index("patient")["neutrophils"] / clinical.set_index("patient")["lymphocytes"]
    ).loc[nlr.index]
    rho = np.corrcoef(ratio.rank(), nlr["score"].rank())[0, 1]
    assert abs(rho) == pytest.approx(1.0)
    mv = pd.read_parquet(out / "clinical_multivariable.parquet")
    assert set(mv[mv["model"] == "erasl_pre"]["variable"]) == {
        "male", "tumor_size_mm", "multiple_tumors", "albi_grade", "log10_afp",
    }  # fmt: skip


def test_derived_ratio_and_albi_grade(spec):
    table = pd.DataFrame(
        {
            "neutrophils": [3.0, 2.0, np.nan, 4.0],
            "lymphocytes": [1.5, 0.0, 1.0, 2.0],
            "tbil": [10.0, 14.5, 40.0, 100.0],
            "alb": [45.0, 41.0, 30.0, 25.0],
        }
    )
    derived = {k: spec.derived[k] for k in ("nlr", "log10_tbil", "albi_score", "albi_grade")}
    out = derive_columns(table, derived)
    # first over second; a zero denominator or a missing value gives a missing ratio
    assert out["nlr"].iloc[0] == pytest.approx(2.0) and out["nlr"].iloc[3] == pytest.approx(2.0)
    assert math.isnan(out["nlr"].iloc[1]) and math.isnan(out["nlr"].iloc[2])
    albi = 0.66 * np.log10(table["tbil"]) - 0.085 * table["alb"]
    np.testing.assert_allclose(out["albi_score"], albi)
    expected = np.where(albi <= -2.60, 1, np.where(albi <= -1.39, 2, 3))
    assert list(out["albi_grade"]) == list(expected) == [1, 1, 2, 3]
    # a derived column waits for the derived columns it reads (a YAML dump may sort the keys)
    backwards = derive_columns(table, dict(reversed(derived.items())))
    pd.testing.assert_frame_equal(backwards[out.columns], out)
    with pytest.raises(ConfigError, match="ratio takes two columns"):
        load_study(
            STUDY, override={"derived": {"bad": {"columns": ["a", "b", "c"], "op": "ratio"}}}
        )


def test_agreement_pair_without_columns_is_a_note(planted_run, tmp_path):
    from hccrad.studies.evaluation import agreement_table

    clinical = planted_run[1]
    spec = load_study(
        clinical_only_study(tmp_path),
        DEFAULTS,
        override={"agreement": {"nonsmooth_margin": "absent"}},
    )
    table = agreement_table(spec, clinical.set_index("patient"))
    row = table.set_index("reader1").loc["nonsmooth_margin"]
    assert row["reader2"] == "absent" and row["n"] == 0 and "absent" in row["note"]
    assert math.isnan(row["kappa"])
