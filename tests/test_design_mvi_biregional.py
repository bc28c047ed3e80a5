"""config/studies/mvi_biregional.yaml is the design of Zhu et al. 2025 (Gd-EOB-DTPA MRI, CR + DLR,
intratumoral / peritumoral / bi-regional, MVI; BMC Medical Imaging), at full scale: every step of
the paper's Methods with the paper's parameters, its Table 3 as ``published``, and a reason for
each step where we differ. Also: the demo's delta for this study validates and keeps every model.

The values asserted here are the paper's (section names in the comments); a change of the study
file that drifts from the paper fails this test.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT
from hccrad.config import load_settings
from hccrad.deep.train_config import STUDY_PRESETS, TrainConfig
from hccrad.stats.models import PlattSVC, build_pipeline
from hccrad.stats.selection import CorrelationFilter, RFESelector
from hccrad.studies import load_study
from hccrad.studies.splits import study_splits
from hccrad.studies.tables import study_clinical

STUDY = ROOT / "config" / "studies" / "mvi_biregional.yaml"
CONFIG = ROOT / "config" / "config.yaml"

#: Feature screening and model construction: Pearson > 0.90 removed, then RFE, then an SVM.
CHAIN = (
    {"step": "correlation", "method": "pearson", "threshold": 0.9},
    {"step": "rfe", "n_features": 10, "C": 1.0},
)
#: The six CR and DLR models (3 VOI types) and their blocks: Pearson -> RFE -> SVM.
PIPELINES = {
    "intratumoral": ("tumor",),
    "peritumoral": ("ring",),
    "biregional": ("tumor", "ring"),
    "dlr_intratumoral": ("deep_tumor",),
    "dlr_peritumoral": ("deep_ring",),
    "dlr": ("deep_tumor", "deep_ring"),
}
#: The CR-DLR models: the features of the VOI's CR and DLR models pooled into an SVM.
POOLED = {
    "cr_dlr_intratumoral": (("tumor", "deep_tumor"), ("intratumoral", "dlr_intratumoral")),
    "cr_dlr_peritumoral": (("ring", "deep_ring"), ("peritumoral", "dlr_peritumoral")),
    "cr_dlr": (("tumor", "ring", "deep_tumor", "deep_ring"), ("biregional", "dlr")),
}
#: Clinical data: the seven variables (Table 1's cut-offs: AFP 400 ng/mL, ALT / AST 40).
CLINICAL = {"male", "age", "tumor_size_mm", "afp_ge_400", "alt_ge_40", "ast_ge_40",
            "viral_hepatitis"}  # fmt: skip
#: The DeLong pairs the Results report (P values) and the ones covered by "all P > 0.05".
PAPER_PAIRS = {
    ("biregional", "intratumoral"): 0.921,
    ("biregional", "peritumoral"): 0.931,
    ("dlr", "dlr_intratumoral"): 0.811,
    ("dlr", "dlr_peritumoral"): 0.907,
    ("dlr_intratumoral", "dlr_peritumoral"): 0.985,
    ("cr_dlr", "cr_dlr_intratumoral"): 0.279,
    ("cr_dlr", "cr_dlr_peritumoral"): 0.062,
    ("cr_dlr", "dlr_intratumoral"): 0.135,
    ("cr_dlr", "dlr_peritumoral"): 0.151,
    ("cr_dlr", "dlr"): 0.118,
    ("cr_dlr", "biregional"): ">0.05",
    ("clin_r", "clinical"): ">0.05",
    ("clin_r", "cr_dlr"): ">0.05",
}


@pytest.fixture(scope="module")
def spec():
    return load_study(STUDY, check_estimators=True)


def demo_delta() -> dict:
    """The study's delta of the demo overlay (config/demo.yaml)."""
    return yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())["studies"]["mvi_biregional"]


def test_cohorts_label_and_clinical_variables(spec):
    assert (spec.modality, spec.label) == ("MR", "mvi")
    # Dataset description: one hospital trains, the two others test; no validation, no temporal
    s = spec.splits
    assert s.primary_centers == ("A",) and s.validation_fraction == 0.0
    assert s.temporal_cutoff is None and s.names == ("train", "external")
    assert spec.evaluation["figure_split"] == "external"
    d = spec.derived
    assert d["afp_ge_400"] == {"column": "afp", "op": "ge", "value": 400}
    assert d["alt_ge_40"] == {"column": "alt", "op": "ge", "value": 40}
    assert d["ast_ge_40"] == {"column": "ast", "op": "ge", "value": 40}
    # "viral hepatitis status": any virus
    assert d["viral_hepatitis"] == {"columns": ["hbv", "hcv"], "op": "any"}
    # Tables 1 and 2: the seven variables by cohort and by MVI
    assert set(spec.baseline["variables"]) == CLINICAL - {"male"} | {"sex"}
    assert spec.baseline["nonnormal"] == ["tumor_size_mm"]
    assert spec.survival is None  # no prognostic data


def test_regions_phases_and_radiomics_settings(spec):
    # Image segmentation / Extraction of CR features: AP, PP, HBP; tumor and its 10 mm ring
    for name, region in (("tumor", "tumor"), ("ring", "ring")):
        b = spec.blocks[name]
        assert (b.source, b.phases, b.regions) == ("radiomics", ("AP", "PVP", "HBP"), (region,))
        assert b.image_types == ("original", "wavelet-*", "log-sigma-1-0-mm-3D")
    settings = load_settings(CONFIG)
    assert settings.ring_distance_mm == 10.0 and settings.ring_clip_to_liver is True
    assert settings.modalities["MR"].phases[:3] == ("AP", "PVP", "HBP")
    preset = Path(settings.radiomics_params["MR"])
    params = yaml.safe_load((preset if preset.is_absolute() else ROOT / preset).read_text())
    assert params["setting"]["binWidth"] == 5
    assert {"Original", "Wavelet", "LoG"} <= set(params["imageType"])
    assert 1.0 in params["imageType"]["LoG"]["sigma"]
    assert set(params["featureClass"]) == {
        "shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"}  # fmt: skip
    # DLR blocks: the features of the study's two networks
    for block, model in (("deep_tumor", "tumor_3d"), ("deep_ring", "ring_3d")):
        b = spec.blocks[block]
        assert b.source == "table"
        assert b.path == f"results/cohort/studies/mvi_biregional/deep/{model}/features.parquet"


def test_chain_classifier_and_tuning_of_every_radiomics_model(spec):
    pipelines = {n: spec.models[n] for n in PIPELINES}
    assert {n: m.blocks for n, m in pipelines.items()} == PIPELINES
    for name, m in pipelines.items():
        assert m.selection == CHAIN, name
        assert m.classifier == "svm" and m.params == {"kernel": "linear", "C": 1.0}, name
        # RFE to the optimal feature set: FAE's 5 % per round, the count by 5-fold CV
        assert m.grid == {"rfe__n_features": list(range(1, 21)), "rfe__step": [0.05]}, name
        assert m.cv == 5 and m.smote is False and m.output == "probability", name
    # the paper's final counts are reachable: bi-regional CR 11 (CR-DLR 14 = 8 CR + 6 DLR)
    assert 11 in pipelines["biregional"].grid["rfe__n_features"]
    for name, (blocks, pool) in POOLED.items():
        m = spec.models[name]
        assert (m.kind, m.blocks, m.pool) == ("pipeline", blocks, pool), name
        assert not m.selection and m.grid is None and not m.keep, name
        assert m.classifier == "svm" and m.params == {"kernel": "linear", "C": 1.0}, name
    # the built pipeline: z-score -> Pearson 0.9 -> RFE (linear SVM) -> linear SVM
    m = pipelines["biregional"]
    pipe = build_pipeline(list(m.selection), m.classifier, m.params, 0, m.smote)
    pipe.set_params(**{k: v[0] for k, v in m.grid.items()})
    assert [n for n, _ in pipe.steps] == ["scaler", "correlation", "rfe", "classifier"]
    corr, rfe, svm = pipe.named_steps["correlation"], pipe.named_steps["rfe"], pipe[-1]
    assert isinstance(corr, CorrelationFilter) and isinstance(rfe, RFESelector)
    assert (corr.method, corr.threshold) == ("pearson", 0.9)
    assert (rfe.step, rfe.C) == (0.05, 1.0)
    assert isinstance(svm, PlattSVC) and (svm.kernel, svm.C) == ("linear", 1.0)


def test_clinical_and_clin_r_models(spec):
    # univariable, then multivariable logistic regression to the independent factors (P < 0.05)
    lr = spec.models["clinical_lr"]
    assert lr.kind == "clinical" and set(lr.candidates) == CLINICAL
    assert lr.alpha == 0.05 and lr.multivariable == "backward_p" and not lr.scores
    assert set(spec.blocks["clin"].columns) == CLINICAL and spec.blocks["clin"].source == "clinical"
    # then an SVM on the independent factors
    clinical = spec.models["clinical"]
    assert (clinical.kind, clinical.blocks, clinical.pool) == ("pipeline", ("clin",),
                                                               ("clinical_lr",))  # fmt: skip
    # Clin-R: the clinical factors + the best radiomics model's (bi-regional CR-DLR) features
    clin_r = spec.models["clin_r"]
    assert clin_r.pool == ("cr_dlr", "clinical_lr")
    assert clin_r.blocks == ("tumor", "ring", "deep_tumor", "deep_ring", "clin")
    for m in (clinical, clin_r):
        assert not m.selection and m.grid is None
        assert m.classifier == "svm" and m.params == {"kernel": "linear", "C": 1.0}


def test_primary_key_comparison_and_delong_pairs(spec):
    assert spec.primary == "cr_dlr"  # the bi-regional CR-DLR model (Abstract, Conclusion)
    key = spec.key_comparison
    assert key["pair"] == ["cr_dlr", "biregional"] and spec.key_pair == ("cr_dlr", "biregional")
    assert (key["direction"], key["split"], key["p"]) == ("greater", "external", ">0.05")
    assert "0.740" in key["claim"] and "0.648" in key["claim"]
    assert set(spec.comparisons) == set(PAPER_PAIRS)
    assert next(p for p in spec.comparisons if p[0] == "cr_dlr") == ("cr_dlr", "biregional")
    published = {tuple(c["pair"]): c["p"] for c in spec.published["comparisons"]}
    assert published == PAPER_PAIRS
    assert spec.explain is None and spec.nomogram is None  # no SHAP, no nomogram in the paper


def test_deep_models_resolve_to_the_papers_training(spec):
    # Extraction of DLR features: 3D ResNet-18, 64^3 (linear resize), batch 32, Adam lr 1e-4
    # x 0.1 every 5 epochs, 50-100 epochs, CrossEntropyLoss, no validation fold
    assert list(spec.deep_models) == ["tumor_3d", "ring_3d"]
    settings = load_settings(CONFIG)
    for name, inp, region in (("tumor_3d", "mvi_tumor_cube", "tumor"),
                              ("ring_3d", "mvi_ring_cube", "ring")):  # fmt: skip
        d = spec.deep_models[name]
        # one network per phase of "the three-phase combined MRI images": 3 x 512 per VOI
        assert (d.input, d.preset, d.phases, d.gradcam) == (inp, "mvi_3d", ("AP", "PVP", "HBP"), 4)
        assert d.phase is None
        cfg = TrainConfig.preset(d.preset, **d.train)
        # torchvision's 3D ResNet-18 layout (Kinetics weights load into it from a local file)
        assert {**STUDY_PRESETS["mvi_3d"], **d.train}["network"] == "r3d_18"
        assert (cfg.network, cfg.input_kind, cfg.spatial_dims) == ("r3d_18", "volume", 3)
        assert cfg.pretrained is None and not cfg.freeze_backbone  # no weights file: deviations
        assert (cfg.optimizer, cfg.lr, cfg.batch_size) == ("adam", 1e-4, 32)
        assert (cfg.lr_step_size, cfg.lr_gamma) == (5, 0.1)
        assert 50 <= cfg.epochs <= 100
        assert cfg.class_weighted is False  # plain CrossEntropyLoss
        assert cfg.val_fraction == 0.0 and cfg.patience is None  # weights kept at the end
        assert cfg.augment and cfg.flip_prob > 0 and cfg.rot90_prob > 0  # RandFlipd, RandRotate90d
        spec_in = settings.deep_inputs[inp]
        assert (spec_in.builder, spec_in.region, spec_in.size) == ("cube", region, 64)
        assert spec_in.window == (-5.0, 5.0)  # ScaleIntensityRanged (range: ours)
        assert spec_in.phases == d.phases
        # "each intratumoral and peritumoral region image": the region alone, no margin
        assert spec_in.mask_to_region and spec_in.margin_mm == 0


def test_published_numbers(spec):
    pub = spec.published
    assert pub["cohorts"]["train"]["n"] == 216 and pub["cohorts"]["train"]["positives"] == 90
    assert pub["cohorts"]["external"] == {"n": 88, "positives": 30}
    models = pub["models"]
    # Table 3's 11 models, all built here (clinical_lr: the logistic step of the clinical model)
    assert set(models) == set(spec.models) - {"clinical_lr"}
    assert not pub.get("missing_models")
    assert models["cr_dlr"]["auc"]["external"] == [0.740, 0.629, 0.851]
    assert models["cr_dlr"]["auc"]["train"] == [0.844, 0.792, 0.897]
    assert models["cr_dlr"]["sensitivity"]["external"] == 0.500  # Table 3 (not the text's 0.80)
    assert models["biregional"]["auc"]["external"] == [0.648, 0.530, 0.767]
    assert models["dlr_peritumoral"]["auc"]["train"] == [0.685, 0.610, 0.759]  # Table 3 row
    assert models["clinical"]["auc"]["external"] == [0.655, 0.537, 0.772]
    assert models["clin_r"]["specificity"]["train"] == 0.849
    for name, m in models.items():
        for split, (auc, lo, hi) in m["auc"].items():
            assert lo < auc < hi, (name, split)


def test_every_deviation_has_a_reason(spec):
    devs = spec.deviations
    assert devs and len({d["step"] for d in devs}) == len(devs)
    for d in devs:
        assert set(d) == {"step", "paper", "ours", "reason"}
        assert all(isinstance(v, str) and v.strip() for v in d.values()), d
    steps = {d["step"] for d in devs}
    # what the code cannot do yet, and what the synthetic cohort lacks
    assert {"DLR network", "DLR fine-tuning", "DLR phases", "DLR input", "CR-DLR fusion",
            "clinical model",
            "patient criteria", "cohort (synthetic demo)"} <= steps  # fmt: skip
    # matched now: the hepatitis variable, the Clin-R feature pooling
    assert not steps & {"clinical variables", "Clin-R"}
    not_yet = {d["step"] for d in devs if d["reason"].startswith("not implemented yet")}
    # the r3d_18 layout, freeze_backbone, the intensity window, the pooled CR-DLR, the pruned
    # clinical model and the patient criteria exist now (left: columns the cohort lacks)
    assert not_yet == set()


def test_patient_criteria(spec):
    """Inclusion (2) and (5): a known MVI label and complete labs; exclusion (2) and (3):
    macrovascular invasion (CNLC IIIa) and extrahepatic metastasis (IIIb). On the synthetic
    cohort they remove exactly its CNLC IIIa patients, before the split."""
    from hccrad.synth import clinical_tables

    assert [(c["column"], c["op"]) for c in spec.include] == [
        ("mvi", "notna"), ("afp", "notna"), ("alt", "notna"), ("ast", "notna")
    ]  # fmt: skip
    assert [(c["column"], c["op"], c["value"]) for c in spec.exclude] == [
        ("cnlc", "isin", ["IIIa", "IIIb"])
    ]
    rows, _ = clinical_tables(seed=42, n_patients=120, modality="MR", null=False)
    raw = pd.DataFrame(rows)
    raw.loc[3, "alt"] = None  # incomplete labs
    raw.loc[5, "mvi"] = None  # MVI not diagnosed
    out = raw["cnlc"].isin(["IIIa", "IIIb"]) | raw["alt"].isna() | raw["mvi"].isna()
    assert raw["cnlc"].eq("IIIa").sum() > 0
    clinical = study_clinical(spec, raw)
    assert set(clinical.index) == set(raw.loc[~out, "patient"])
    record = clinical.attrs["criteria"]
    assert record["n_excluded"] == int(out.sum())
    assert record["patients"][raw.loc[3, "patient"]] == "laboratory tests incomplete"
    assert record["patients"][raw.loc[5, "patient"]] == "MVI not diagnosed at pathology"
    split = study_splits(spec, raw, seed=42)
    assert set(split["patient"]) == set(raw.loc[~out, "patient"])


def test_demo_delta_validates_and_keeps_the_design(spec):
    demo = load_study(STUDY, check_estimators=True, override=demo_delta())
    assert set(demo.models) == set(spec.models) and demo.blocks == spec.blocks
    assert demo.splits == spec.splits and demo.primary == spec.primary
    assert demo.comparisons == spec.comparisons and demo.key_pair == spec.key_pair
    for name, m in demo.models.items():
        full = spec.models[name]
        assert (m.selection, m.classifier, m.params) == (full.selection, full.classifier,
                                                         full.params)  # fmt: skip
        if m.grid:
            assert set(m.grid["rfe__n_features"]) <= set(full.grid["rfe__n_features"])
            assert m.grid["rfe__step"] == [0.05]
    changed = {c.key.split(".")[0] for c in demo.overlay_changes}
    assert changed <= {"models", "deep_models"}
    for name, d in demo.deep_models.items():
        cfg = TrainConfig.preset(d.preset, **d.train)
        assert cfg.input_kind == "volume" and cfg.epochs <= 10, name


def test_demo_cohort_splits_keep_both_classes(spec):
    from hccrad.synth import clinical_tables

    rows, _ = clinical_tables(seed=42, n_patients=96, modality="MR", null=False)
    clinical = pd.DataFrame(rows).set_index("patient")
    split = study_splits(spec, clinical, seed=42).set_index("patient")["split"]
    label = clinical["mvi"].reindex(split.index)
    for name in spec.splits.names:
        counts = label[split == name].value_counts()
        assert counts.get(0, 0) >= 2 and counts.get(1, 0) >= 2, (name, counts.to_dict())
