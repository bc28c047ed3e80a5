"""The study layer (hccrad.studies): spec loading and validation, run_study on synthetic tables
(splits, leakage, planted signal, numbers equal to direct hccrad.stats calls, degenerate splits),
the five seed studies (planted effect direction and the null cohort) and the workflow rules.

Synthetic tables come from :func:`hccrad.synth.clinical_tables` (the demo cohort's clinical rows
and hidden variables, no images): radiomics-like columns are noisy functions of the hidden
image-generating values (necrosis, viable heterogeneity, margin irregularity, peritumoral
enhancement, satellites, rim enhancement) plus pure-noise columns; ``null=True`` permutes the
labels and survival exactly as ``hccrad synth --null`` does.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT, SNAKEMAKE, job_counts, without_deep_tables
from hccrad import stats, studies
from hccrad.errors import ConfigError, InputError
from hccrad.stats.encoding import TableEncoder
from hccrad.studies import fitting, load_study, loading, run_study, study_outputs

STUDY_DIR = ROOT / "config" / "studies"
PHASES = {"MR": ("AP", "PVP", "HBP", "DP"), "CT": ("AP", "PVP")}


# ---------------------------------------------------------------------------------------------
# synthetic tables
# ---------------------------------------------------------------------------------------------


def _z(x) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return (x - x.mean()) / x.std()


def synthetic_tables(n: int = 60, seed: int = 0, null: bool = False, n_noise: int = 20) -> dict:
    """Clinical, radiomics, habitat, reader-ICC and MIL-like tables for ``n`` patients per
    modality (centers A/B/C, dates, labels and survival of the synthetic cohort)."""
    from hccrad.synth import clinical_tables

    rows, hidden = clinical_tables(seed=seed, n_patients=n, modality="both", null=null)
    clin = pd.DataFrame(rows).set_index("patient")
    hid = pd.DataFrame(hidden).set_index("patient")
    mr = clin["modality"] == "MR"
    clin["field_strength"] = np.where(mr, np.where(clin["center"] == "B", 1.5, 3.0), np.nan)
    rng = np.random.default_rng([seed, 99])
    blocks = []
    for mod, phases in PHASES.items():
        ids = clin.index[clin["modality"] == mod]
        h, k = hid.loc[ids], len(ids)
        sig = {
            key: _z(h[col])
            for key, col in (
                ("nec", "necrotic_fraction"),
                ("het", "viable_heterogeneity"),
                ("peri", "peritumoral_enhancement"),
                ("irr", "margin_irregularity"),
                ("sat", "satellite_rate"),
                ("rim", "rim_enhancement"),
            )
        }
        cols = {}
        for ph in phases:
            for reg in ("tumor", "ring"):
                pre = f"{ph}_{reg}_original"
                if reg == "tumor":
                    mean = -0.8 * sig["nec"] + rng.normal(size=k)
                    cols[f"{pre}_firstorder_Mean"] = mean
                    cols[f"{pre}_firstorder_Median"] = mean + 0.2 * rng.normal(size=k)
                    cols[f"{pre}_glcm_Contrast"] = 0.5 * sig["het"] + rng.normal(size=k)
                    sat = (0.8 if ph == "AP" else 0.3) * sig["sat"]
                    cols[f"{pre}_glcm_JointEnergy"] = sat + rng.normal(size=k)
                    cols[f"{pre}_shape_Sphericity"] = -0.7 * sig["irr"] + rng.normal(size=k)
                    rim = (1.2 if ph == "AP" else 0.4) * sig["rim"]
                    cols[f"{pre}_firstorder_90Percentile"] = rim + rng.normal(size=k)
                else:
                    peri = (0.9 if ph in ("AP", "HBP") else 0.3) * sig["peri"]
                    cols[f"{pre}_firstorder_Mean"] = peri + rng.normal(size=k)
                    sat = (1.0 if ph == "AP" else 0.3) * sig["sat"]
                    cols[f"{pre}_glcm_Contrast"] = sat + rng.normal(size=k)
                for j in range(n_noise):
                    cols[f"{pre}_glszm_Noise{j}"] = rng.normal(size=k)
        blocks.append(pd.DataFrame(cols, index=ids))
    radiomics = pd.concat(blocks)
    radiomics.index.name = "patient"
    ids = clin.index[mr]
    h = hid.loc[ids]
    volume = (clin.loc[ids, "tumor_size_mm"].to_numpy() / 10) ** 3 * 0.5
    hab: dict[str, np.ndarray] = {"habitat_k": np.full(len(ids), 3)}
    names = ("necrotic_fraction", "intermediate_fraction", "viable_fraction")
    for i, name in enumerate(names, start=1):
        frac = h[name].to_numpy() + rng.normal(0, 0.04, len(ids))
        hab[f"habitat{i}_fraction"] = frac
        hab[f"habitat{i}_volume_ml"] = frac * volume
        het = 0.8 * _z(h["viable_heterogeneity"]) if i == 3 else 0.0
        hab[f"habitat{i}_PVP_mean"] = rng.normal(size=len(ids)) + het
    habitats = pd.DataFrame(hab, index=pd.Index(ids, name="patient"))
    tumor = [c for c in radiomics.columns if "_tumor_" in c]
    icc = pd.DataFrame(
        {"icc2_1": rng.uniform(0.6, 1.0, len(tumor)), "icc3_1": 0.9, "n": 20},
        index=pd.Index(tumor, name="feature"),
    )
    icc.loc[[c for c in tumor if "Noise" not in c], "icc2_1"] = 0.97
    # intra-observer (reader 1's repeat): a stream of its own, so the other tables stay as they
    # were; higher than the inter-observer ICC on the whole, the noise features still spread out
    icc_intra = icc.assign(
        icc2_1=np.random.default_rng([seed, 1]).uniform(0.7, 1.0, len(tumor)), icc3_1=0.95
    )
    icc_intra.loc[[c for c in tumor if "Noise" not in c], "icc2_1"] = 0.98
    # MIL-like patient features (slice-probability histograms) driven by the satellites
    ct = clin.index[clin["modality"] == "CT"]
    sat = _z(hid.loc[ct, "satellite_rate"]) + 0.5 * _z(hid.loc[ct, "mvi_latent"])
    mil = pd.DataFrame(
        {f"plh_{b}": sat * (b - 2) / 2 + rng.normal(size=len(ct)) for b in range(5)},
        index=pd.Index(ct, name="patient"),
    )
    return {
        "clinical": clin.reset_index(),
        "radiomics": radiomics,
        "habitats": habitats,
        "reader_icc": icc,
        "reader_icc_intra": icc_intra,
        "table_mil": mil,
    }


TINY_SPEC = """
title: tiny test study
modality: MR
label: grade_pd
splits: {primary_centers: [A, B], temporal_cutoff: "2019-01-01", validation_fraction: 0.3}
stacking_folds: 3
blocks:
  rad: {source: radiomics, phases: [AP, PVP], regions: [tumor]}
  clin: {source: clinical, columns: [tumor_size_mm, child_pugh, ast]}
chains:
  uni_lasso:
    - {step: univariate, alpha: 0.1}
    - {step: lasso, cv: 3, Cs: 8}
models:
  rad:
    blocks: [rad]
    selection: uni_lasso
    classifier: logistic
  rad_clin:
    blocks: [rad, clin]
    selection: uni_lasso
    classifier: logistic
  clinical:
    kind: clinical
    candidates: [tumor_size_mm, log10_afp, child_pugh]
    alpha: 1.0
  fusion:
    kind: score_fusion
    models: [rad, clinical]
primary: rad
nomogram: clinical
comparisons:
  - [rad, clinical]
  - [fusion, rad]
survival:
  endpoints:
    os: {time: os_months, event: os_event}
  covariates: [tumor_size_mm, child_pugh]
shap: {max_patients: 15, background: 10, nsamples: 50}
"""


def write_spec(tmp: Path, text: str = TINY_SPEC, name: str = "tiny", defaults: bool = True) -> Path:
    folder = tmp / "studies"
    folder.mkdir(parents=True, exist_ok=True)
    if defaults:
        (folder / "defaults.yaml").write_text((STUDY_DIR / "defaults.yaml").read_text())
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny study run once on 60 + 60 synthetic patients."""
    tmp = tmp_path_factory.mktemp("tiny_study")
    spec = load_study(write_spec(tmp))
    tables = synthetic_tables(60, seed=5)
    out = tmp / "out"
    metrics = run_study(spec, tables, out, seed=11)
    return spec, tables, out, metrics


def test_study_data_is_what_run_study_fits_on(tiny_run):
    """study_data (diagnostics): the analysed patients, labels, designs and split of the run."""
    spec, tables, out, _ = tiny_run
    data, split = studies.study_data(spec, tables, _read(out, "splits"), seed=11)
    pred = _read(out, "predictions")
    first = pred[pred["model"] == pred["model"].iloc[0]].set_index("patient")
    assert sorted(data.y.index) == sorted(first.index)
    assert (data.y == first.loc[data.y.index, "label"]).all()
    assert (split == first.loc[split.index, "split"]).all()
    pipelines = [n for n, m in spec.models.items() if m.kind == "pipeline"]
    assert sorted(data.X) == sorted(pipelines)
    assert all(set(data.y.index) <= set(x.index) for x in data.X.values())


def _read(out: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(out / f"{name}.parquet")


def held_out_auc(pred: pd.DataFrame, model: str) -> float:
    sub = pred[(pred["model"] == model) & (pred["split"] != "train")]
    return stats.auc(sub["label"].to_numpy(float), sub["score"].to_numpy(float))


# ---------------------------------------------------------------------------------------------
# loading and validation
# ---------------------------------------------------------------------------------------------


def test_seed_studies_load_and_declare_outputs():
    specs = studies.load_studies([STUDY_DIR / f"{s}.yaml" for s in studies.SEED_STUDIES])
    assert list(specs) == list(studies.SEED_STUDIES)
    assert {s.modality for s in specs.values()} == {"MR", "CT"}
    hg = specs["habitat_grade"]
    # the paper's primary: the subregions' 2.5D deep features, fused; its key comparison first
    assert hg.label == "grade_pd" and hg.primary == "deep_habitat_25d"
    assert hg.comparisons == (
        ("deep_habitat_25d", "deep_whole_25d"),
        ("deep_habitat_3d", "deep_whole_3d"),
        ("deep_habitat_25d", "deep_habitat_3d"),
        ("habitat_fusion", "whole_tumor"),
        ("deep_whole_25d", "whole_tumor"),
    )
    assert hg.key_pair == ("deep_habitat_25d", "deep_whole_25d")
    assert hg.raw["deep_models"]["whole_25d"]["input"] == "habitat_slices"
    assert hg.raw["deep_models"]["habitat_25d"]["input"] == "habitat_subregion_slices"
    # the chain name resolves to its steps; defaults are merged under the study
    assert [s["step"] for s in hg.models["whole_tumor"].selection] == ["correlation", "lasso"]
    assert hg.splits.primary_centers == ("A",) and hg.splits.temporal_cutoff == "2022-08-01"
    assert "afp_gt_200" in hg.derived
    out = study_outputs(hg)
    assert {"km_os.png", "km_rfs.png", "cox.parquet", "shap_beeswarm.png"} <= set(out.values())
    assert "nomogram.png" not in out.values()  # no clinical model in this study
    pt = specs["proliferative_tace"]
    assert pt.models["radscore"].output == "radscore" and pt.stacking == "in_sample"
    assert pt.nomogram == "rad_afp" and pt.explain is None
    assert set(pt.survival.endpoints) == {"pfs", "os"}
    assert specs["er_fusion"].models["rad_lr"].uses_icc
    assert "reader_icc" in studies.study_inputs(specs["er_fusion"], "c.tsv")
    # intra-observer ICC too: er_fusion's and proliferative_tace's ICC steps, not mil_er's
    for name in studies.SEED_STUDIES:
        intra = "reader_icc_intra" in studies.study_inputs(specs[name], "c.tsv")
        assert intra == (name in ("er_fusion", "proliferative_tace")), name
    assert specs["mil_er"].models["radiomics"].smote is True


def test_deep_models_are_typed_in_config_order():
    specs = studies.load_studies([STUDY_DIR / f"{s}.yaml" for s in studies.SEED_STUDIES])
    hg = specs["habitat_grade"]
    assert list(hg.deep_models) == list(hg.raw["deep_models"])
    assert list(hg.deep_models) == ["whole_25d", "habitat_25d", "habitat_3d", "whole_3d"]
    whole = hg.deep_models["whole_25d"]
    assert (whole.name, whole.input, whole.preset) == ("whole_25d", "habitat_slices", "habitat_25d")
    assert whole.phase is None and whole.mil is False and whole.gradcam == 4
    assert whole.train == {}  # the paper's preset at full scale; the demo overlay scales it
    assert whole.raw is hg.raw["deep_models"]["whole_25d"]  # the configured mapping, untouched
    assert hg.deep_models["habitat_25d"].gradcam == 2
    assert hg.deep_models["habitat_3d"].input == "habitat_subregion_cubes"
    assert hg.deep_models["whole_3d"].input == "habitat_tumor_cube"
    tumor = specs["mvi_biregional"].deep_models["tumor_3d"]
    assert tumor.phase is None and tumor.phases == ("AP", "PVP", "HBP")
    mil = specs["mil_er"].deep_models["mil_slices"]
    assert mil.mil is True and mil.raw["mil_bins"] == 13  # the paper's 13 likelihood bins
    # Table 3's comparison slice networks: the same input, no MIL features
    assert list(specs["mil_er"].deep_models) == [
        "mil_slices",
        "slice_resnet101",
        "slice_densenet121",
    ]
    assert not any(
        specs["mil_er"].deep_models[n].mil for n in ("slice_resnet101", "slice_densenet121")
    )
    assert specs["proliferative_tace"].deep_models == {}


def test_study_file_is_a_delta_over_the_defaults(tmp_path):
    path = write_spec(tmp_path, TINY_SPEC + "\nsplits: {validation_fraction: 0.25}\n")
    spec = load_study(path)
    assert spec.splits.validation_fraction == 0.25
    assert spec.splits.primary_centers == ("A", "B")  # kept from the study's own splits
    assert spec.evaluation["calibration_bins"] == 5  # from defaults.yaml
    assert spec.stacking == "crossfit" and spec.stacking_folds == 3
    assert spec.explain == "rad" and spec.nomogram == "clinical"
    assert spec.model_order().index("rad") < spec.model_order().index("fusion")
    merged = studies.deep_merge({"a": {"b": 1, "c": [1]}, "d": 1}, {"a": {"c": [2]}, "e": 2})
    assert merged == {"a": {"b": 1, "c": [2]}, "d": 1, "e": 2}


@pytest.mark.parametrize(
    ("edit", "key", "message"),
    [
        ({"models": {"rad": {"classifier": "forest"}}}, "models.rad.classifier", "forest"),
        ({"modality": "PET"}, "key modality", "PET"),
        ({"models": {"rad": {"blocks": ["nope"]}}}, "models.rad.blocks", "unknown block"),
        ({"models": {"rad": {"selection": "nochain"}}}, "models.rad.selection", "unknown chain"),
        ({"comparisons": [["rad", "ghost"]]}, "comparisons[0]", "unknown model"),
        ({"primary": "ghost"}, "key primary", "unknown model"),
        ({"models": {"rad": {"output": "radscore", "selection": []}}}, "rad.output", "lasso"),
        ({"explain": "clinical"}, "key explain", "not a pipeline model"),
        ({"models": {"clinical": {"candidates": ["grade_pd"]}}}, "candidates", "leakage"),
        ({"models": {"fusion": {"models": ["rad", "fusion"]}}}, "fusion.models", "own score"),
        ({"models": {"rad": {"grid": {"classifier__nope": [1]}}}}, "models.rad", "grid key"),
        ({"models": {"rad": {"params": {"bogus": 1}}}}, "models.rad", "bogus"),
        ({"blocks": {"rad": {"columns": ["x"]}}}, "blocks.rad", "not allowed"),
        ({"derived": {"x": {"column": "afp", "op": "gt", "value": "a"}}}, "derived.x", "number"),
        ({"blocks": {"t": {"source": "table"}}}, "key blocks.t", "path"),
        ({"models": {"rad": {"keep": ["nope"]}}}, "models.rad.keep", "neither a block"),
        ({"models": {"rad": {"head": {"lr": 0.1}, "params": {"C": 1}}}}, "rad.head", "params"),
        ({"models": {"rad": {"head": {"backbone": "ghost"}}}}, "head.backbone", "not a deep model"),
        ({"models": {"rad": {"head": {"augment": False}}}}, "rad.head", "end-to-end training"),
        (
            {
                "deep_models": {
                    "net": {"input": "cube", "preset": "mvi_3d", "phases": ["AP", "PVP"]}
                },
                "models": {"rad": {"head": {"backbone": "net"}}},
            },
            "rad.head.backbone",
            "one network per phase",
        ),
        (
            {
                "deep_models": {
                    "net": {"input": "cube", "preset": "mvi_3d", "phase": "AP", "phases": ["AP"]}
                }
            },
            "deep_models.net",
            "exclude each other",
        ),
        ({"models": {"rad": {"pool": ["fusion"]}}}, "models.rad.pool", "pool takes"),
        ({"models": {"rad": {"pool": ["rad_clin"]}}}, "models.rad.pool", "lacks"),
        ({"models": {"rad_clin": {"pool": ["rad_clin"]}}}, "rad_clin.pool", "cycle"),
        ({"models": {"clinical": {"keep": ["grade_pd"]}}}, "clinical.keep", "leakage"),
        ({"models": {"clinical": {"multivariable": "forward"}}}, "multivariable", "forward"),
        ({"radiomics": {"params": "config/radiomics/my preset.yaml"}}, "radiomics.params", "match"),
        ({"radiomics": {"preset": "x.yaml"}}, "key radiomics", "preset"),
        (
            {"chains": {"uni_lasso": [{"step": "univariate", "intra": True}]}},
            "models.rad.selection[0].intra",
            "only an icc step",
        ),
        ({"chains": {"uni_lasso": [{"step": "icc", "intra": "yes"}]}}, "intra", "boolean"),
    ],
)
def test_invalid_study_names_file_and_key(tmp_path, edit, key, message):
    spec = studies.deep_merge(yaml.safe_load(TINY_SPEC), edit)
    path = write_spec(tmp_path, yaml.safe_dump(spec), name="broken")
    with pytest.raises(ConfigError) as err:
        load_study(path)
    text = str(err.value)
    assert str(path) in text and key in text and message in text, text


def test_a_study_names_its_radiomics_parameter_file(tmp_path):
    """radiomics.params (default null: the modality's file) names the tables the study reads:
    results/cohort/radiomics/{file name}/ for its own file, today's paths without one."""
    spec = load_study(write_spec(tmp_path))
    assert spec.radiomics_params is None
    default = studies.study_inputs(spec, "c.tsv")
    assert default["radiomics"] == "results/cohort/radiomics/features.parquet"
    er = "config/radiomics/mr_er_original_wavelet_log.yaml"
    spec = load_study(write_spec(tmp_path, TINY_SPEC + f"radiomics: {{params: {er}}}\n"))
    assert spec.radiomics_params == er and spec.reads_radiomics
    icc = load_study(
        STUDY_DIR / "er_fusion.yaml", override={"radiomics": {"params": er}}, check_estimators=False
    )
    assert icc.radiomics_params == er and icc.uses_icc
    inputs = studies.study_inputs(icc, "c.tsv", "mr_er_original_wavelet_log")
    folder = "results/cohort/radiomics/mr_er_original_wavelet_log"
    assert inputs["radiomics"] == f"{folder}/features.parquet"
    assert inputs["reader_icc"] == f"{folder}/reader_icc.parquet"  # the ICC of the same file


def test_estimator_check_is_remembered_per_model_digest(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    path = write_spec(tmp_path, TINY_SPEC)
    calls = []
    check = loading._check_estimators
    monkeypatch.setattr(loading, "_check_estimators", lambda *a: (calls.append(a), check(*a)))
    spec = load_study(path, estimator_cache=cache)
    assert calls and [p.name for p in cache.iterdir()] == [
        f"estimators-{studies.estimator_check_digest(spec)}.ok"
    ]
    calls.clear()
    load_study(path, estimator_cache=cache)  # same models, same packages: not checked again
    assert not calls
    # a bad parameter changes the digest: checked (and refused) although a marker exists
    bad = studies.deep_merge(yaml.safe_load(TINY_SPEC), {"models": {"rad": {"params": {"x": 1}}}})
    broken = write_spec(tmp_path / "b", yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=r"models\.rad"):
        load_study(broken, estimator_cache=cache)
    assert len(list(cache.iterdir())) == 1
    # a failed check leaves no marker; without a cache every load checks
    calls.clear()
    load_study(path)
    assert calls


def test_missing_and_duplicate_study_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_study(tmp_path / "absent.yaml")
    a = write_spec(tmp_path / "a")
    b = write_spec(tmp_path / "b")
    with pytest.raises(ConfigError, match="also used by"):
        studies.load_studies([a, b])


def test_derived_columns_and_block_columns():
    clin = pd.DataFrame(
        {"afp": [10.0, 250.0, np.nan, 0.0], "bclc": ["0", "B", None, "C"]},
        index=pd.Index(list("abcd"), name="patient"),
    )
    derived = {
        "afp_gt_200": {"column": "afp", "op": "gt", "value": 200},
        "log10_afp": {"column": "afp", "op": "log10"},
        "bclc_stage": {"column": "bclc", "op": "map", "value": {"0": 0, "B": 2, "C": 3}},
        "late": {"column": "bclc", "op": "isin", "value": ["B", "C"]},
    }
    out = studies.derive_columns(clin, derived)
    np.testing.assert_array_equal(out["afp_gt_200"], [0, 1, np.nan, 0])
    np.testing.assert_allclose(out["log10_afp"], [1, np.log10(250), np.nan, np.nan])
    np.testing.assert_array_equal(out["bclc_stage"], [0, 2, np.nan, 3])
    np.testing.assert_array_equal(out["late"], [0, 1, np.nan, 1])

    # one source column, range cuts: between [low, high) and cut with labelled intervals
    afp = pd.DataFrame({"afp": [5.0, 20.0, 399.9, 400.0, np.nan, 1e5]})
    out = studies.derive_columns(
        afp,
        {
            "afp_20_400": {"column": "afp", "op": "between", "value": [20, 400]},
            "afp_band": {"column": "afp", "op": "cut", "bins": [0, 20, 400, 1e9]},
            "afp_text": {
                "column": "afp",
                "op": "cut",
                "bins": [20, 400],
                "labels": ["mid"],
            },
        },
    )
    np.testing.assert_array_equal(out["afp_20_400"], [0, 1, 1, 0, np.nan, 0])
    np.testing.assert_array_equal(out["afp_band"], [0, 1, 1, 2, np.nan, 2])
    assert out["afp_text"].tolist()[1:3] == ["mid", "mid"]
    assert out["afp_text"].isna().tolist() == [True, False, False, True, True, True]

    cols = [
        "AP_tumor_original_firstorder_Mean",
        "AP_ring_original_firstorder_Mean",
        "PVP_tumor_wavelet-LLH_glcm_Contrast",
        "PVP_tumor_original_shape_Sphericity",
        "habitat_k",
    ]
    block = studies.BlockSpec("b", "radiomics", phases=("PVP",), image_types=("original",))
    assert studies.select_block_columns(block, cols) == ["PVP_tumor_original_shape_Sphericity"]
    block = studies.BlockSpec("b", "radiomics", regions=("tumor",), exclude=("*shape*",))
    assert studies.select_block_columns(block, cols) == [cols[0], cols[2]]
    hab = studies.BlockSpec("h", "habitats")
    assert studies.select_block_columns(hab, ["habitat_k", "habitat1_fraction"]) == [
        "habitat1_fraction"
    ]


def test_derived_columns_from_several_columns():
    """any / all / sum over several columns, three-valued where a source is missing; a derived
    column can use an earlier one."""
    nan = np.nan
    clin = pd.DataFrame(
        {
            "hbv": [1, 0, 0, 1, nan, nan, 0],
            "hcv": [0, 0, 1, 1, 1, 0, nan],
            "size_cm": [2.0, 3.5, 1.0, 6.0, 2.0, nan, 4.0],
            "number": [1, 2, 1, 3, 1, 1, 2],
        }
    )
    derived = {
        "viral": {"columns": ["hbv", "hcv"], "op": "any"},
        "both": {"columns": ["hbv", "hcv"], "op": "all"},
        "burden": {"columns": ["size_cm", "number"], "op": "sum"},
        "heavy": {"column": "burden", "op": "gt", "value": 5},
    }
    out = studies.derive_columns(clin, derived)
    # any: 1 once a known value is 1, 0 only when both are known and 0, else missing
    np.testing.assert_array_equal(out["viral"], [1, 0, 1, 1, 1, nan, nan])
    # all: 0 once a known value is 0, 1 only when both are known and 1, else missing
    np.testing.assert_array_equal(out["both"], [0, 0, 0, 1, nan, 0, 0])
    np.testing.assert_array_equal(out["burden"], [3, 5.5, 2, 9, 3, nan, 6])
    np.testing.assert_array_equal(out["heavy"], [0, 1, 0, 1, 0, nan, 1])
    with pytest.raises(InputError, match="hdv"):
        studies.derive_columns(clin, {"x": {"columns": ["hbv", "hdv"], "op": "any"}})


@pytest.mark.parametrize(
    ("derived", "message"),
    [
        ({"column": "hbv", "op": "any"}, "takes columns"),
        ({"columns": ["hbv", "hcv"], "op": "gt", "value": 1}, "takes one column"),
        ({"columns": ["hbv", "hcv"], "op": "sum", "value": 1}, "takes no value"),
        ({"column": "afp", "op": "between", "value": [400, 20]}, "low < high"),
        ({"column": "afp", "op": "cut", "bins": [400, 20]}, "bins must increase"),
        ({"column": "afp", "op": "cut", "bins": [0, 20, 400], "labels": ["a"]}, "one label"),
        ({"column": "afp", "op": "gt", "value": 1, "bins": [0, 1]}, "belong to op cut"),
    ],
)
def test_invalid_derived_columns(tmp_path, derived, message):
    spec = studies.deep_merge(yaml.safe_load(TINY_SPEC), {"derived": {"x": derived}})
    path = write_spec(tmp_path, yaml.safe_dump(spec), name="broken")
    with pytest.raises(ConfigError, match=message):
        load_study(path, check_estimators=False)


def test_table_encoder_learns_from_training_rows_only():
    train = pd.DataFrame({"x": [1.0, np.nan, 3.0], "cp": ["A", "B", "A"]}, index=["a", "b", "c"])
    test = pd.DataFrame({"x": [np.nan, 10.0], "cp": ["C", None]}, index=["d", "e"])
    enc = TableEncoder(("cp",)).fit(train)
    assert list(enc.get_feature_names_out()) == ["x", "cp[T.B]"]
    out = enc.transform(test)
    # missing x -> training median 2; unseen level C -> reference A; missing level -> mode A
    np.testing.assert_array_equal(out.to_numpy(), [[2.0, 0.0], [10.0, 0.0]])
    assert list(out.index) == ["d", "e"]


# ---------------------------------------------------------------------------------------------
# run_study on the tiny spec
# ---------------------------------------------------------------------------------------------


def test_all_outputs_written(tiny_run):
    spec, _, out, metrics = tiny_run
    expected = set(study_outputs(spec).values()) | {"splits.parquet"}
    assert expected <= {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert {"roc_train.png", "roc_temporal.png", "km_os.png", "nomogram.png"} <= expected
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["study"] == "tiny" and on_disk["seed"] == 11
    assert set(on_disk["models"]) == {"rad", "rad_clin", "clinical", "fusion"}
    assert all(m["status"] == "fitted" for m in on_disk["models"].values()), on_disk["models"]
    sel = json.loads((out / "selected_features.json").read_text())
    assert sel["rad"]["features"] and all(f.startswith("rad__") for f in sel["rad"]["features"])
    assert sel["fusion"]["weights"].keys() == {"rad", "clinical"}
    assert metrics["primary_auc"].keys() == {"train", "validation", "external", "temporal"}


def test_splits_as_defined(tiny_run):
    _, tables, out, _ = tiny_run
    clin = tables["clinical"].set_index("patient")
    clin = clin[clin["modality"] == "MR"]
    splits = _read(out, "splits").set_index("patient")["split"]
    assert set(splits.index) == set(clin.index)  # every MR patient, and only them
    date = pd.to_datetime(clin["acquisition_date"])
    primary = clin["center"].isin(["A", "B"])
    assert (splits[~primary] == "external").all()
    assert (splits[primary & (date >= "2019-01-01")] == "temporal").all()
    dev = splits[primary & (date < "2019-01-01")]
    assert set(dev) == {"train", "validation"}
    frac = (dev == "validation").mean()
    assert 0.2 < frac < 0.4
    # stratified: the label's prevalence is close in train and validation
    y = clin.loc[dev.index, "grade_pd"]
    assert abs(y[dev == "train"].mean() - y[dev == "validation"].mean()) < 0.15
    # predictions: one row per analysed patient and model, with its split
    pred = _read(out, "predictions")
    assert set(pred["model"]) == {"rad", "rad_clin", "clinical", "fusion"}
    joined = pred.merge(splits.rename("s"), left_on="patient", right_index=True)
    assert (joined["split"] == joined["s"]).all()
    assert list(pred.columns) == ["patient", "split", "model", "score", "linear_predictor", "label"]


def test_performance_equals_direct_stats_calls(tiny_run):
    spec, _, out, _ = tiny_run
    pred = _read(out, "predictions")
    perf = _read(out, "performance").set_index(["model", "split"])
    for model in spec.models:
        pm = pred[pred["model"] == model]
        tr = pm[pm["split"] == "train"]
        cut = stats.youden_cutoff(tr["label"].to_numpy(float), tr["score"].to_numpy(float))
        for split in spec.splits.names:
            sub = pm[pm["split"] == split]
            y, s = sub["label"].to_numpy(float), sub["score"].to_numpy(float)
            row = perf.loc[(model, split)]
            assert row["n"] == len(sub) and row["cutoff"] == pytest.approx(cut, abs=0)
            a, lo, hi = stats.auc_ci(y, s)
            assert (row["auc"], row["auc_lower"], row["auc_upper"]) == pytest.approx((a, lo, hi))
            m = stats.classification_metrics(y, s, cut)
            for k in ("accuracy", "sensitivity", "specificity", "ppv", "npv", "tp", "fn"):
                assert row[k] == pytest.approx(m[k], nan_ok=True), (model, split, k)
    comp = _read(out, "comparisons").set_index(["model", "reference", "split"])
    wide = pred.pivot(index="patient", columns="model", values="score")
    info = pred.drop_duplicates("patient").set_index("patient")
    for split in spec.splits.names:
        ids = info.index[info["split"] == split]
        y = info.loc[ids, "label"].to_numpy(float)
        d = stats.delong_test(y, wide.loc[ids, "rad"], wide.loc[ids, "clinical"])
        row = comp.loc[("rad", "clinical", split)]
        assert (row["delong_z"], row["delong_p"]) == pytest.approx((d.z, d.p))
        cont = stats.nri(y, wide.loc[ids, "clinical"], wide.loc[ids, "rad"])
        assert row["nri_continuous"] == pytest.approx(cont.nri)
        ca, cb = perf.loc[("rad", split), "cutoff"], perf.loc[("clinical", split), "cutoff"]
        old = (wide.loc[ids, "clinical"] >= cb).astype(float)
        new = (wide.loc[ids, "rad"] >= ca).astype(float)
        assert row["nri_categorical"] == pytest.approx(stats.nri(y, old, new, [0.5]).nri)
    calib = _read(out, "calibration")
    sub = pred[(pred["model"] == "rad") & (pred["split"] == "validation")]
    ref = stats.calibration(sub["label"], sub["score"], n_bins=5)
    row = calib[(calib["model"] == "rad") & (calib["split"] == "validation")].iloc[0]
    assert (row["slope"], row["brier"]) == pytest.approx((ref.slope, ref.brier))


def test_survival_cutpoint_is_fitted_on_training_patients(tiny_run):
    _, tables, out, _ = tiny_run
    cut = json.loads((out / "cutpoint.json").read_text())["os"]
    pred = _read(out, "predictions")
    tr = pred[(pred["model"] == "rad") & (pred["split"] == "train")].set_index("patient")
    clin = tables["clinical"].set_index("patient").loc[tr.index]
    ref = stats.optimal_cutpoint(clin["os_months"], clin["os_event"], tr["linear_predictor"])
    assert cut["cutpoint"] == pytest.approx(ref.cutpoint)
    assert cut["n_low_train"] == ref.n_low and cut["statistic"] == pytest.approx(ref.statistic)
    cox = _read(out, "cox")
    assert {"univariable", "multivariable"} <= set(cox["analysis"])
    assert "score_high" in set(cox["covariate"]) and "child_pugh=B" in set(cox["covariate"])


def test_fitted_steps_see_training_patients_only(tmp_path, monkeypatch):
    """Every fit (encoder, selectors, classifier, clinical model) gets training rows only."""
    from hccrad.stats import selection

    seen: list[set[str]] = []

    def spy(cls):
        orig = cls.fit

        def fit(self, X, y=None, **kw):
            seen.append(set(map(str, X.index)))
            return orig(self, X, y, **kw)

        monkeypatch.setattr(cls, "fit", fit)

    for cls in (selection.UnivariateFilter, selection.LassoSelector, TableEncoder):
        spy(cls)
    orig_clinical = fitting.clinical_model

    def clinical(df, *a, **kw):
        seen.append(set(map(str, df.index)))
        return orig_clinical(df, *a, **kw)

    monkeypatch.setattr(fitting, "clinical_model", clinical)
    spec = load_study(write_spec(tmp_path))
    run_study(spec, synthetic_tables(40, seed=2), tmp_path / "out", seed=3)
    splits = _read(tmp_path / "out", "splits")
    train = set(splits.loc[splits["split"] == "train", "patient"])
    assert len(seen) > 10
    assert all(rows <= train for rows in seen)
    analysed = set(_read(tmp_path / "out", "predictions")["patient"])
    assert max(len(rows) for rows in seen) == len(train & analysed)


#: The tiny study with a fusion head (deep table block + selected radiomics + kept clinical
#: columns), a kept clinical block, a pooled model and a pruned clinical model.
FUSION_DELTA = {
    "blocks": {"deep": {"source": "table", "path": "deep/features.parquet"}},
    "models": {
        "rad_keep": {"blocks": ["rad", "clin"], "selection": "uni_lasso", "keep": ["clin"]},
        "head": {
            "blocks": ["rad", "clin", "deep"],
            "selection": "uni_lasso",
            "keep": ["clin", "deep"],
            "head": {"optimizer": "adam", "lr": 0.01, "epochs": 60, "patience": 10},
        },
        "pooled": {
            "blocks": ["rad", "clin"],
            "pool": ["rad", "clin_pruned"],
            "keep": ["clin__ast"],
            "classifier": "svm",
            "params": {"kernel": "linear"},
        },
        "clin_pruned": {
            "kind": "clinical",
            "candidates": ["tumor_size_mm", "log10_afp", "alt"],
            "keep": ["ast"],
            "alpha": 0.5,
            "multivariable": "backward_p",
        },
        "stacked": {"kind": "clinical", "candidates": ["ast"], "scores": ["pooled"], "alpha": 1},
    },
}


def with_deep_table(tables: dict, seed: int) -> dict:
    """A deep-feature table for the MR patients (one column follows the radiomics signal)."""
    rad = tables["radiomics"]
    mr = rad.index[rad.index.isin(tables["habitats"].index)]
    rng = np.random.default_rng(seed)
    deep = pd.DataFrame(rng.normal(size=(len(mr), 12)), index=mr,
                        columns=[f"deep_{i}" for i in range(12)])  # fmt: skip
    deep["deep_0"] += _z(rad.loc[mr, "AP_tumor_original_firstorder_Mean"])
    return {**tables, "table_deep": deep}


def test_fusion_head_kept_and_pooled_columns_see_training_patients_only(tmp_path, monkeypatch):
    """Every fit of the fusion head, the selectors behind kept columns, the pooled models and
    the pruned clinical model gets training rows only; kept columns always reach the
    classifier; a pooled model's columns are its pool's selections (+ kept)."""
    from hccrad.deep import fusion
    from hccrad.stats import selection

    seen: dict[str, list[set[str]]] = {}

    def spy(cls, key):
        orig = cls.fit

        def fit(self, X, y=None, **kw):
            seen.setdefault(key, []).append(set(map(str, X.index)))
            return orig(self, X, y, **kw)

        monkeypatch.setattr(cls, "fit", fit)

    spy(fusion.FusionHeadClassifier, "head")
    spy(selection.LassoSelector, "lasso")
    spy(TableEncoder, "encoder")
    orig_clinical = fitting.clinical_model

    def clinical(df, *a, **kw):
        seen.setdefault("clinical", []).append(set(map(str, df.index)))
        return orig_clinical(df, *a, **kw)

    monkeypatch.setattr(fitting, "clinical_model", clinical)
    raw = studies.deep_merge(yaml.safe_load(TINY_SPEC), FUSION_DELTA)
    spec = load_study(write_spec(tmp_path, yaml.safe_dump(raw)))
    assert spec.models["head"].head["lr"] == 0.01 and spec.models["pooled"].pool
    tables = with_deep_table(synthetic_tables(60, seed=5), seed=5)
    metrics = run_study(spec, tables, tmp_path / "out", seed=3)
    status = {k: (m["status"], m.get("note")) for k, m in metrics["models"].items()}
    assert all(st == "fitted" for st, _ in status.values()), status
    splits = _read(tmp_path / "out", "splits")
    train = set(splits.loc[splits["split"] == "train", "patient"])
    assert set(seen) == {"head", "lasso", "encoder", "clinical"}
    for key, fits in seen.items():
        assert fits and all(rows <= train for rows in fits), key
    sel = json.loads((tmp_path / "out" / "selected_features.json").read_text())
    clin_cols = {"clin__tumor_size_mm", "clin__ast"}
    assert clin_cols <= set(sel["rad_keep"]["features"])
    head = sel["head"]
    assert clin_cols <= set(head["features"])
    assert {f"deep__deep_{i}" for i in range(12)} <= set(head["features"])
    assert 1 <= head["head"]["best_epoch"] <= head["head"]["epochs_run"] <= 60
    pooled = sel["pooled"]
    rad_or_clin = [f for f in pooled["features"] if f.startswith("rad__")]
    assert set(rad_or_clin) == {f for f in pooled["pooled"] if f.startswith("rad__")}
    assert "clin__ast" in pooled["features"]
    assert "ast" in sel["clin_pruned"]["features"]  # kept, never pruned
    assert set(sel["clin_pruned"]["features"]) <= set(sel["clin_pruned"]["entered"])
    pred = _read(tmp_path / "out", "predictions")
    assert np.isfinite(pred["score"]).all()
    # the same seed gives the same head predictions
    run_study(spec, tables, tmp_path / "again", seed=3)
    again = _read(tmp_path / "again", "predictions")
    pd.testing.assert_frame_equal(pred, again)


def test_planted_signal_found_and_null_is_chance(tmp_path):
    """Planted: the radiomics model finds grade on validation. Null (labels permuted as by
    ``hccrad synth --null``): the held-out AUC averages near 0.5 over seeds."""
    spec = load_study(write_spec(tmp_path))
    tables = synthetic_tables(80, seed=1)
    run_study(spec, tables, tmp_path / "planted", seed=1)
    perf = _read(tmp_path / "planted", "performance").set_index(["model", "split"])
    assert perf.loc[("rad", "validation"), "auc"] > 0.7
    assert perf.loc[("rad_clin", "validation"), "auc"] > 0.7
    null_auc = []
    for seed in range(3):
        out = tmp_path / f"null{seed}"
        run_study(spec, synthetic_tables(60, seed=seed, null=True), out, seed=seed)
        null_auc.append(held_out_auc(_read(out, "predictions"), "rad"))
    assert 0.35 < np.mean(null_auc) < 0.65, null_auc


def test_deterministic_for_a_seed(tmp_path, tiny_run):
    spec, tables, out, _ = tiny_run
    run_study(spec, tables, tmp_path / "again", seed=11)
    for name in ("splits", "predictions", "performance", "comparisons", "cox"):
        pd.testing.assert_frame_equal(_read(out, name), _read(tmp_path / "again", name))
    assert (out / "selected_features.json").read_text() == (
        tmp_path / "again" / "selected_features.json"
    ).read_text()


# ---------------------------------------------------------------------------------------------
# degenerate data
# ---------------------------------------------------------------------------------------------


def test_degenerate_splits_are_reported_not_fatal(tmp_path):
    spec = load_study(write_spec(tmp_path))
    tables = synthetic_tables(40, seed=4)
    clin = tables["clinical"]
    # external test set with a single class, and no temporal patient at all
    clin.loc[(clin["modality"] == "MR") & (clin["center"] == "C"), "grade_pd"] = 0
    late = clin["acquisition_date"] >= "2019-01-01"
    clin.loc[late & clin["center"].isin(["A", "B"]), "acquisition_date"] = "2018-06-01"
    metrics = run_study(spec, tables, tmp_path / "out", seed=1)
    perf = _read(tmp_path / "out", "performance").set_index(["model", "split"])
    ext = perf.loc[("rad", "external")]
    assert np.isnan(ext["auc"]) and "one class" in ext["note"]
    assert ext["specificity"] == ext["specificity"]  # still defined with controls only
    tmp = perf.loc[("rad", "temporal")]
    assert tmp["n"] == 0 and tmp["note"] == "no patients"
    assert any("external" in n for n in metrics["notes"])
    assert (tmp_path / "out" / "roc_temporal.png").stat().st_size > 0  # a placeholder
    comp = _read(tmp_path / "out", "comparisons")
    assert comp.loc[comp["split"] == "external", "note"].str.contains("one class").all()


def test_untrainable_study_writes_placeholders(tmp_path):
    spec = load_study(write_spec(tmp_path))
    tables = synthetic_tables(12, seed=0)
    clin = tables["clinical"]
    clin.loc[clin["modality"] == "MR", "grade_pd"] = 0
    clin.loc[clin["patient"] == "CMR001", "grade_pd"] = 1
    metrics = run_study(spec, tables, tmp_path / "out", seed=0)
    assert all(m["status"] == "failed" for m in metrics["models"].values())
    assert any("no model trained" in n for n in metrics["notes"])
    assert set(study_outputs(spec).values()) <= {p.name for p in (tmp_path / "out").iterdir()}
    assert _read(tmp_path / "out", "predictions").empty


def test_modality_without_patients_is_an_error(tmp_path):
    spec = load_study(write_spec(tmp_path))
    tables = synthetic_tables(10, seed=0)
    tables["clinical"] = tables["clinical"][tables["clinical"]["modality"] == "CT"]
    with pytest.raises(InputError, match="study tiny: no MR patient"):
        run_study(spec, tables, tmp_path / "out", seed=0)


# ---------------------------------------------------------------------------------------------
# the five seed studies on synthetic tables (planted effects and the null cohort)
# ---------------------------------------------------------------------------------------------

#: How the MIL block of mil_er will be added once the deep rules write it: a ``table`` block and
#: a model, no code change (here on the synthetic MIL-like table).
MIL_DELTA = {
    "blocks": {"mil": {"source": "table", "path": "results/cohort/deep/mil/mil_features.parquet"}},
    "models": {
        "mil": {
            "blocks": ["mil"],
            "selection": "test_pearson_lasso",
            "classifier": "extra_trees",
            "smote": True,
            "grid": {"classifier__n_estimators": [100, 200], "classifier__max_depth": [3, None]},
            "cv": 5,
        }
    },
    "primary": "mil",
    "comparisons": [["mil", "radiomics"], ["mil", "clinical"]],
}


#: The primary models of the seed studies without their deep networks' tables.
HANDCRAFTED_PRIMARY = {
    "habitat_grade": "habitat_fusion",
    "mvi_biregional": "biregional",
    "er_fusion": "rc",
}


def seed_study_specs(tmp: Path) -> dict:
    """The five seed studies as configured (mil_er with the MIL table block added)."""
    folder = tmp / "seed_studies"
    folder.mkdir(exist_ok=True)
    (folder / "defaults.yaml").write_text((STUDY_DIR / "defaults.yaml").read_text())
    for name in studies.SEED_STUDIES:
        raw = yaml.safe_load((STUDY_DIR / f"{name}.yaml").read_text())
        if name == "mil_er":
            raw = studies.deep_merge(raw, MIL_DELTA)
        # the deep networks' feature tables are not simulated: their models leave, and a
        # handcrafted or clinical model of the study stands in as primary
        primary = HANDCRAFTED_PRIMARY.get(name, raw["primary"])
        raw = without_deep_tables(raw, primary, keep=("mil",))
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    return studies.load_studies([folder / f"{s}.yaml" for s in studies.SEED_STUDIES])


def run_seed_studies(tmp: Path, n: int, seeds, null: bool) -> dict:
    """Held-out AUC per study, model and seed (and the PFS hazard ratio of the rad-score)."""
    specs = seed_study_specs(tmp)
    found: dict = {name: {} for name in specs}
    for seed in seeds:
        tables = synthetic_tables(n, seed=seed, null=null)
        for name, spec in specs.items():
            out = tmp / f"{name}_{seed}_{null}"
            run_study(spec, tables, out, seed=seed)
            pred = _read(out, "predictions")
            for model in spec.models:
                found[name].setdefault(model, []).append(held_out_auc(pred, model))
            if spec.survival is not None:
                cox = _read(out, "cox")
                hr = cox[(cox["analysis"] == "univariable") & (cox["covariate"] == "score_high")]
                for endpoint, value in zip(hr["endpoint"], hr["hr"], strict=True):
                    found[name].setdefault(f"{endpoint}_hr", []).append(float(value))
    return {s: {m: float(np.mean(v)) for m, v in d.items()} for s, d in found.items()}


@pytest.mark.slow
def test_seed_studies_planted_effects_and_null(tmp_path):
    """Each seed study on 150 + 150 synthetic patients, 2 seeds (about 2 minutes on 2 cores).

    Planted cohort: the paper's effect in the expected direction (held-out AUC averaged over
    the seeds). Null cohort (labels and survival permuted): chance-level held-out AUCs."""
    auc = run_seed_studies(tmp_path, 150, (1, 2), null=False)
    print("planted", json.dumps(auc, indent=1))
    assert auc["habitat_grade"]["habitat_fusion"] > auc["habitat_grade"]["whole_tumor"]
    assert auc["habitat_grade"]["habitat_fusion"] > 0.7
    assert auc["mvi_biregional"]["biregional"] > 0.6
    assert auc["er_fusion"]["rc"] > auc["er_fusion"]["clinical"]
    assert auc["er_fusion"]["rad_lr"] > 0.6
    assert auc["mil_er"]["mil"] > auc["mil_er"]["radiomics"]
    assert auc["proliferative_tace"]["radscore"] > 0.6
    assert auc["proliferative_tace"]["rad_afp"] >= auc["proliferative_tace"]["radscore"]
    assert auc["habitat_grade"]["os_hr"] > 1  # held-out OS worse in the high-score group
    null = run_seed_studies(tmp_path, 150, (1, 2), null=True)
    print("null", json.dumps(null, indent=1))
    for name, models in null.items():
        values = [v for m, v in models.items() if not m.endswith("_hr")]
        assert 0.4 < np.mean(values) < 0.6, (name, models)
        assert all(0.3 < v < 0.7 for v in values), (name, models)


# ---------------------------------------------------------------------------------------------
# the workflow rules
# ---------------------------------------------------------------------------------------------

MINI_SNAKEFILE = """
configfile: "{root}/config/config.yaml"


config["studies"] = {studies!r}


include: "{root}/workflow/rules/common.smk"
include: "{root}/workflow/rules/studies.smk"


rule all:
    input:
        study_targets(),
"""


def write_table_cohort(dest: Path, n: int, seed: int) -> tuple[Path, Path]:
    """Sheets whose images exist but are never read (only the study rules run), and the cohort
    tables the study rules read, placed where the upstream rules would write them."""
    tables = synthetic_tables(n, seed=seed)
    clin = tables["clinical"]
    image = dest / "image.nii.gz"
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes(b"")
    rows = []
    for i, (patient, center, modality) in enumerate(
        clin[["patient", "center", "modality"]].itertuples(index=False)
    ):
        for phase in PHASES[modality]:
            rows.append(
                {
                    "center": center,
                    "patient": patient,
                    "phase": phase,
                    "modality": modality,
                    "image": str(image),
                    "tumor_mask": str(image),
                    "liver_mask": "",
                    "reader2_mask": str(image) if i % 3 == 0 else "",
                    "reader1_repeat_mask": str(image) if i % 3 == 0 else "",
                }
            )
    pd.DataFrame(rows).to_csv(dest / "cohort.tsv", sep="\t", index=False)
    clin.to_csv(dest / "clinical.tsv", sep="\t", index=False)
    work = dest / "work" / "results" / "cohort"
    for key, path in (
        ("radiomics", "radiomics/features.parquet"),
        ("reader_icc", "radiomics/reader_icc.parquet"),
        ("reader_icc_intra", "radiomics/reader_icc_intra.parquet"),
        ("habitats", "habitats/features.parquet"),
    ):
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        tables[key].to_parquet(work / path)
    return dest / "cohort.tsv", dest / "clinical.tsv"


@pytest.mark.workflow
def without_deep_models(folder: Path) -> list[Path]:
    """Copies of the seed studies without their deep models (which need images): the deep
    blocks, the models using them and their comparisons are dropped; a study's own radiomics
    file too (only the modality's default table is placed where the radiomics rules would
    write it)."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(STUDY_DIR / "defaults.yaml", folder / "defaults.yaml")
    out = []
    for name in studies.SEED_STUDIES:
        raw = yaml.safe_load((STUDY_DIR / f"{name}.yaml").read_text())
        raw.pop("deep_models", None)
        raw.pop("radiomics", None)
        deep = {b for b, v in raw["blocks"].items() if "/deep/" in str(v.get("path", ""))}
        raw["blocks"] = {b: v for b, v in raw["blocks"].items() if b not in deep}
        gone = {
            m
            for m, v in raw["models"].items()
            if set(v.get("blocks", [])) & deep or (v.get("head") or {}).get("backbone")
        }  # models on deep-feature tables, and those that train a network end to end
        while True:  # and the models that stack a dropped model's score
            uses = {
                m
                for m, v in raw["models"].items()
                if set(v.get("scores", [])) & gone
                or set(v.get("models", [])) & gone
                or set(v.get("pool", [])) & gone
            }
            if uses <= gone:
                break
            gone |= uses
        raw["models"] = {m: v for m, v in raw["models"].items() if m not in gone}
        raw["comparisons"] = [c for c in raw.get("comparisons", []) if not set(c) & gone]
        if raw["primary"] in gone:
            raw["primary"] = next(iter(raw["models"]))
        for key in ("explain", "nomogram"):
            if raw.get(key) in gone:
                raw.pop(key)
        if set(raw.get("key_comparison", {}).get("pair", [])) & gone:
            raw.pop("key_comparison")
        published = raw.get("published", {})
        for m in gone & set(published.get("models", {})):  # reported by the paper, not built here
            model = published["models"].pop(m)
            if model:
                published.setdefault("missing_models", {})[m] = model
        survival = raw.get("survival") or {}
        if survival.get("model") in gone:
            survival.pop("model")
        if (raw.get("pathology") or {}).get("model") in gone:
            raw.pop("pathology")
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(raw))
        out.append(folder / f"{name}.yaml")
    return out


def test_study_rules_run_the_seed_studies(tmp_path):
    """study_splits + run_study_{study} for the five seed studies on 48 + 48 synthetic patients
    (the demo cohort's size), from a Snakefile holding only common.smk and studies.smk."""
    import subprocess

    cohort, clinical = write_table_cohort(tmp_path, 48, seed=42)
    files = [str(f) for f in without_deep_models(tmp_path / "studies")]
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(MINI_SNAKEFILE.format(root=ROOT, studies=files))
    cmd = [
        str(SNAKEMAKE),
        "--snakefile",
        str(snakefile),
        "--directory",
        str(tmp_path / "work"),
        "--cores",
        "2",
        "--config",
        f"cohort={cohort}",
        f"clinical={clinical}",
    ]
    dry = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stderr[-3000:]
    counts = job_counts(dry.stdout)
    assert counts["study_splits"] == 5, counts
    assert all(counts[f"run_study_{s}"] == 1 for s in studies.SEED_STUDIES), counts
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-5000:]
    results = tmp_path / "work" / "results"
    for name in studies.SEED_STUDIES:
        folder = results / "cohort" / "studies" / name
        spec = load_study(tmp_path / "studies" / f"{name}.yaml")
        assert set(study_outputs(spec).values()) | {"splits.parquet"} <= {
            p.name for p in folder.iterdir()
        }
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["n_analysed"] > 30
        assert (results / "logs" / "run_study" / f"{name}.log").exists()
    # nothing left to do: a second dry run schedules no job
    again = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_a_stacked_score_the_clinical_model_cannot_estimate_is_a_study_note(tmp_path):
    """An in-sample score that separates the training patients cannot enter a logistic model:
    the clinical model stands without it, and the study says so (metrics.json notes, shown in
    the summary and the report) instead of reporting the nomogram as if it held the score."""
    text = TINY_SPEC.replace("stacking_folds: 3\n", "stacking_folds: 3\nstacking: in_sample\n")
    text = text.replace(
        """  rad:
    blocks: [rad]
    selection: uni_lasso
    classifier: logistic
""",
        """  rad:
    blocks: [rad]
    classifier: logistic
    params: {C: 1.0e+6}
""",
    )
    text = text.replace(
        "    candidates: [tumor_size_mm, log10_afp, child_pugh]\n",
        "    candidates: [tumor_size_mm]\n    scores: [rad]\n",
    )
    text = text.replace("  fusion:\n    kind: score_fusion\n    models: [rad, clinical]\n", "")
    text = text.replace("  - [fusion, rad]\n", "")
    spec = load_study(write_spec(tmp_path, text))
    out = tmp_path / "out"
    run_study(spec, synthetic_tables(48, seed=3), out, seed=42)
    metrics = json.loads((out / "metrics.json").read_text())
    pred = pd.read_parquet(out / "predictions.parquet")
    train = pred[(pred["model"] == "rad") & (pred["split"] == "train")]
    assert stats.auc(train["label"].to_numpy(float), train["score"].to_numpy(float)) == 1.0
    notes = [n for n in metrics["notes"] if n.startswith("model clinical: the rad score")]
    assert len(notes) == 1 and "separation" in notes[0].lower(), metrics["notes"]
    selected = json.loads((out / "selected_features.json").read_text())
    assert selected["clinical"]["features"] == ["tumor_size_mm"]
