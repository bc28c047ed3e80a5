"""Configuration validation and typed settings."""

import ast
import re
from pathlib import Path

import pytest
import yaml

from hccrad.config import (
    DEFAULT_STUDY_FILES,
    ConfigError,
    DeepInputSpec,
    Normalization,
    PreprocessSettings,
    Resampling,
    Segmentation,
    load_settings,
    register_params,
    settings_from_config,
    validate_config,
)

ROOT = Path(__file__).resolve().parents[1]


def test_default_config_validates_with_documented_values():
    s = load_settings(ROOT / "config" / "config.yaml")
    assert s.cohort == Path("resources/demo/cohort.tsv")
    assert s.spacing == (1.0, 1.0, 1.0)
    assert s.modality("MR").phases == ("AP", "PVP", "HBP", "DP")
    assert s.modality("MR").n4 is True
    assert s.modality("MR").normalization.scale == 100
    ct = s.modality("CT").normalization
    assert (ct.method, ct.window_width, ct.window_level) == ("window", 259, 40)
    assert s.ring_distance_mm == 10.0
    assert s.registration_method == "QuickRigid"
    assert s.all_phases == ("AP", "PVP", "HBP", "DP")


def test_defaults_are_filled_in():
    s = settings_from_config({"cohort": "c.tsv", "clinical": "k.tsv"})
    assert s.seed == 42
    assert s.n4_iterations == (50,)
    assert s.n4_spline_distance_mm == 100.0
    assert set(s.modalities) == {"MR", "CT"}
    assert s.modality("CT").reference_phase == "AP"


def test_overrides_take_precedence(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"cohort": "a.tsv", "clinical": "b.tsv", "seed": 3}))
    s = load_settings(cfg, cohort="other.tsv")
    assert s.cohort == Path("other.tsv") and s.seed == 3


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"seed": -1}, "config key seed"),
        ({"resample": {"spacing": [1, 1]}}, "config key resample.spacing"),
        ({"registration": {"method": "Affine"}}, "config key registration.method"),
        ({"unknown_key": 1}, "unknown_key"),
        (
            {
                "modalities": {
                    "MR": {
                        "phases": ["AP"],
                        "reference_phase": "PVP",
                        "n4": True,
                        "normalization": {"method": "zscore"},
                    }
                }
            },
            "reference_phase",
        ),
        ({"habitats": {"phases": ["XX"]}}, "config key habitats.phases"),
        ({"habitats": {"modalities": ["PET"]}}, "config key habitats.modalities"),
        ({"habitats": {"k_range": [6, 3]}}, "config key habitats.k_range"),
        ({"habitats": {"k_range": [1, 3]}}, "config key habitats.k_range"),
        ({"habitats": {"classes": ["shape"]}}, "config key habitats.classes"),
        ({"habitats": {"features": "some"}}, "config key habitats.features"),
        (
            {
                "deep": {
                    "inputs": {"x": {"builder": "cube", "modalities": ["MR"], "phases": ["AP"]}}
                }
            },
            "config key deep.inputs.x",
        ),
        (
            {
                "deep": {
                    "inputs": {
                        "x": {
                            "builder": "cube",
                            "modalities": ["CT"],
                            "phases": ["HBP"],
                            "region": "tumor",
                            "size": 16,
                        }
                    }
                }
            },
            "config key deep.inputs.x.phases",
        ),
        (
            {
                "deep": {
                    "inputs": {
                        "bad-name": {
                            "builder": "cube",
                            "modalities": ["CT"],
                            "phases": ["AP"],
                            "region": "tumor",
                            "size": 16,
                        }
                    }
                }
            },
            "config key deep.inputs.bad-name",
        ),
        (
            {
                "deep": {
                    "inputs": {
                        "hab": {
                            "builder": "multiphase",
                            "modalities": ["MR"],
                            "phases": ["AP", "PVP"],
                            "region": "habitats",
                            "size": 16,
                        }
                    }
                }
            },
            "config key deep.inputs.hab: region habitats takes the slices or cube",
        ),
    ],
)
def test_invalid_config_names_the_key(patch, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        validate_config({"cohort": "c.tsv", "clinical": "k.tsv", **patch})


def test_missing_required_keys():
    with pytest.raises(ConfigError, match="'cohort' is a required property"):
        validate_config({"clinical": "k.tsv"})


def test_unknown_modality_is_a_clear_error():
    s = settings_from_config({"cohort": "c.tsv", "clinical": "k.tsv"})
    with pytest.raises(ConfigError, match="modality 'PET' is not configured"):
        s.modality("PET")


def test_habitat_settings():
    s = settings_from_config(
        {"cohort": "c.tsv", "clinical": "k.tsv", "habitats": {"features": ["PVP_intensity"]}}
    )
    h = s.habitats
    assert h.phases == ("PVP",) and h.features == ("PVP_intensity",) and h.k_range == (3, 9)
    assert (h.kernel_radius, h.bin_width, h.bin_count) == (2, 25, None)
    assert h.classes == ("firstorder", "glcm", "glrlm", "gldm", "ngtdm")
    assert (h.k, h.n_init, h.silhouette_sample) == (None, 10, 3000)


def test_typed_sections_carry_the_schema_defaults():
    s = settings_from_config({"cohort": "c.tsv", "clinical": "k.tsv"})
    assert s.segmentation == Segmentation(
        enabled=True, holdout_fraction=0.2, checkpoint=None, threads=2, train={}
    )
    assert (s.deep.enabled, s.deep.train_gpus, s.deep.threads) == (True, 1, 2)
    assert s.deep.inputs == {} and s.deep_inputs is s.deep.inputs
    assert s.studies == DEFAULT_STUDY_FILES and len(s.studies) == 5
    t = settings_from_config(
        {"cohort": "c.tsv", "clinical": "k.tsv", "studies": ["a.yaml"], "deep": {"enabled": False}}
    )
    assert t.studies == ("a.yaml",) and t.deep.active_inputs == {}


def test_job_params_are_plain_data_and_read_back():
    """The preprocessing jobs rebuild what they use from their params (plain data: Snakemake
    compares only built-in values between runs)."""
    s = load_settings(Path(__file__).resolve().parents[1] / "config" / "config.yaml")
    spec = s.deep_inputs["mil_slices"]
    param = spec.as_param()
    assert isinstance(param, dict) and DeepInputSpec.from_param(param) == spec
    assert ast.literal_eval(repr(param)) == param  # Snakemake records a faithful repr
    mod = s.modality("MR")
    assert Normalization.from_param(mod.normalization.as_param()) == mod.normalization
    params = {
        **register_params(s),
        "phases": ["AP", "PVP"],
        "reference": "AP",
        "n4": True,
        "modality": "MR",
        "normalization": mod.normalization.as_param(),
        "ring": (s.ring_distance_mm, s.ring_clip_to_liver),
    }
    job = PreprocessSettings.from_params(params)
    for name in (
        "spacing",
        "n4_shrink_factor",
        "n4_iterations",
        "n4_convergence_threshold",
        "n4_spline_distance_mm",
        "registration_method",
        "registration_refine",
        "seed",
        "keep_intermediates",
        "resampling",
        "ring_distance_mm",
        "ring_clip_to_liver",
    ):
        assert getattr(job, name) == getattr(s, name), name
    assert job.modality("MR").normalization == mod.normalization
    assert job.modality("MR").reference_phase == "AP"
    with pytest.raises(ConfigError, match="'CT' is not among the job's params"):
        job.modality("CT")
    # a registration job has no modality params
    assert PreprocessSettings.from_params(register_params(s)).modalities == {}
    # a normalisation job (normalize_patient) gets the modality and ring params only
    normalize = {k: v for k, v in params.items() if k not in register_params(s)}
    job = PreprocessSettings.from_params(normalize)
    assert job.modality("MR").normalization == mod.normalization
    assert (job.ring_distance_mm, job.spacing, job.seed) == (s.ring_distance_mm, None, None)


def test_resampling_default_and_ibsi():
    """The default resampling keeps the origin and nearest-neighbour masks; IBSI-1's is one
    config block, which the preprocessing jobs read back from their params."""
    base = {"cohort": "c.tsv", "clinical": "k.tsv"}
    assert settings_from_config(base).resampling == Resampling()
    assert Resampling() == Resampling(grid="origin", mask_threshold=None, round_ct=False)
    ibsi = {"resample": {"grid": "centre", "mask_threshold": 0.5, "round_ct": True}}
    s = settings_from_config({**base, **ibsi})
    assert s.resampling == Resampling.IBSI and s.spacing == (1.0, 1.0, 1.0)
    job = PreprocessSettings.from_params({**register_params(s), "phases": ["AP"]})
    assert job.resampling == Resampling.IBSI
    with pytest.raises(ConfigError, match="mask_threshold"):
        settings_from_config({**base, "resample": {"mask_threshold": 1.5}})
    with pytest.raises(ConfigError, match="grid"):
        settings_from_config({**base, "resample": {"grid": "corner"}})


def test_habitat_inputs_without_habitats_are_allowed():
    """Switching habitats off (an overlay) leaves the per-subregion inputs without patients."""
    spec = {
        "builder": "slices",
        "modalities": ["MR"],
        "phases": ["PVP"],
        "region": "habitats",
        "size": 16,
    }
    config = {"cohort": "c.tsv", "clinical": "k.tsv", "habitats": {"enabled": False}}
    s = settings_from_config({**config, "deep": {"inputs": {"hab": spec}}})
    assert s.deep_inputs["hab"].per_subregion and not s.habitats.enabled
