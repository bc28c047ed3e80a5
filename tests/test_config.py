"""Configuration validation and typed settings."""

import re
from pathlib import Path

import pytest
import yaml

from hccrad.config import ConfigError, load_settings, settings_from_config, validate_config

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
    vm = h.voxelmap_settings()
    assert (vm.kernel_radius, vm.bin_width, vm.bin_count) == (2, 25, None)
    assert vm.classes == ("firstorder", "glcm", "glrlm", "gldm", "ngtdm")
    cs = h.cluster_settings(seed=5)
    assert cs.seed == 5 and cs.ks() == list(range(3, 10))


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
