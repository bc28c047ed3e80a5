"""hccrad.overlay: the demo's scaled values kept apart from the full-scale design, and listed."""

from __future__ import annotations

from pathlib import Path

import pytest

from hccrad.config import ConfigError, load_settings, read_overlay, settings_from_config
from hccrad.overlay import UNSET, Change, changes, parse_overlay
from hccrad.report import scaled_markdown
from hccrad.studies import load_studies

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "config.yaml"
DEMO = ROOT / "config" / "demo.yaml"


def test_changes_list_every_leaf_that_differs() -> None:
    base = {"deep": {"threads": 2, "inputs": {"a": {"size": 224, "region": "tumor"}}}}
    delta = {"deep": {"threads": 2, "inputs": {"a": {"size": 64}, "b": {"size": 8}}}, "new": []}
    assert changes("config", base, delta) == (
        Change("config", "deep.inputs.a.size", 224, 64),
        Change("config", "deep.inputs.b.size", UNSET, 8),
        Change("config", "new", UNSET, []),
    )  # threads: the same value, not a change
    row = Change("s", "k", [1, 2], None).as_row()
    assert row == {"where": "s", "key": "k", "this_run": "null", "full_scale": "[1, 2]"}


def test_the_demo_overlay_scales_the_config_and_says_so() -> None:
    full = load_settings(CONFIG)
    demo = load_settings(CONFIG, overlay=str(DEMO))
    assert full.overlay is None and full.overlay_changes == ()
    assert full.deep_inputs["er_stack"].size == 256 and demo.deep_inputs["er_stack"].size == 64
    assert demo.segmentation.train == {"grid_size": 48, "epochs": 12}
    assert full.segmentation.train == {}
    keys = {c.key: c for c in demo.overlay_changes}
    er = "deep.inputs.er_stack.size"
    assert keys[er] == Change("config", er, 256, 64)
    assert keys["radiomics.params.MR"].full_scale == "config/radiomics/mr_original_wavelet_log.yaml"
    # everything else is untouched
    assert demo.habitats == full.habitats and demo.modalities == full.modalities
    assert demo.overlay.reason.startswith("Scaled for the demo")


def test_study_deltas_are_merged_last_and_listed() -> None:
    settings = load_settings(CONFIG, overlay=str(DEMO))
    files = [str(ROOT / f) for f in settings.studies]
    full = load_studies(files, check_estimators=False)
    demo = load_studies(files, settings.overlay, check_estimators=False)
    whole = "habitat_grade"
    assert full[whole].deep_models["whole_25d"].train == {}
    assert demo[whole].deep_models["whole_25d"].train["network"] == "resnet10"
    assert demo[whole].deep_models["whole_25d"].raw["train"]["epochs"] == 15
    changes = {c.key: c for c in demo[whole].overlay_changes}
    assert all(c.where == whole for c in changes.values())
    train = changes["deep_models.whole_25d.train.network"]
    assert (train.full_scale, train.value) == (UNSET, "resnet10")  # the preset's ResNet-18
    centers = changes["splits.primary_centers"]  # the paper's one center, the demo's two
    assert (centers.full_scale, centers.value) == (["A"], ["A", "B"])
    assert demo[whole].splits.primary_centers == ("A", "B")
    assert full[whole].splits.primary_centers == ("A",)
    # keys the overlay does not name keep the study file's values
    assert demo[whole].primary == full[whole].primary == "deep_habitat_25d"
    assert demo[whole].models["whole_tumor"] == full[whole].models["whole_tumor"]
    assert demo[whole].published == full[whole].published
    text = scaled_markdown(
        [c.as_row() for c in (*settings.overlay_changes, *demo[whole].overlay_changes)],
        "config/demo.yaml",
        settings.overlay.reason,
    )
    assert "## Scaled for this run (config/demo.yaml)" in text
    assert "| habitat_grade | deep_models.whole_25d.train.network | resnet10 | (not set) |" in text


def test_bad_overlays_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        parse_overlay("x.yaml", {"reason": "r", "configs": {}})
    with pytest.raises(ConfigError, match=r"studies\.a must be a mapping"):
        parse_overlay("x.yaml", {"studies": {"a": [1]}})
    with pytest.raises(ConfigError, match="cannot name another overlay"):
        parse_overlay("x.yaml", {"config": {"overlay": "y.yaml"}})
    with pytest.raises(ConfigError, match=r"file nope\.yaml not found"):
        read_overlay("nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("config: {deep: {threads: -3}}\n")
    with pytest.raises(ConfigError, match=r"deep\.threads"):
        settings_from_config({"cohort": "c.tsv", "clinical": "k.tsv", "overlay": str(bad)})
