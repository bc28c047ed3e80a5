"""Per-patient steps (hccrad.patient): which mask stands for a phase, input-name parsing."""

from __future__ import annotations

from pathlib import Path

from hccrad.manifest import OutputSet, read_manifest
from hccrad.patient import key, registered_mask, segmentation_case, split_raw_inputs


def _manifest(tmp_path: Path, keys: list[str]):
    with OutputSet(tmp_path / "manifest.json", patient="P1", stage="register") as out:
        for k in keys:
            f = tmp_path / (k.replace("/", "_") + ".nii.gz")
            f.write_bytes(b"x")
            out.add(k, f)
    return read_manifest(tmp_path / "manifest.json")


def test_registered_mask_own_then_reference_then_predicted(tmp_path):
    reg = _manifest(
        tmp_path,
        [
            key("AP", "register", "tumor"),
            key("PVP", "register", "tumor"),
            key("AP", "register", "liver"),
        ],
    )
    own = registered_mask(reg, "PVP", "tumor", "AP", {})
    assert own == tmp_path / "PVP_register_tumor.nii.gz"
    # no PVP liver mask: the reference phase's stands for it (same registered grid)
    assert registered_mask(reg, "PVP", "liver", "AP", {}) == tmp_path / "AP_register_liver.nii.gz"
    # no second reader anywhere: nothing, unless the U-Net predicted one
    assert registered_mask(reg, "PVP", "reader2", "AP", {}) is None
    predicted = {"reader2": tmp_path / "pred.nii.gz"}
    assert registered_mask(reg, "HBP", "reader2", "AP", predicted) == tmp_path / "pred.nii.gz"
    # a given mask wins over a prediction
    assert (
        registered_mask(reg, "AP", "tumor", "AP", {"tumor": "x"})
        == tmp_path / "AP_register_tumor.nii.gz"
    )


def test_registered_mask_drawn_on_a_later_phase_reaches_every_phase(tmp_path):
    """Tumor outlined on HBP and DP only: the phases without their own take HBP's, the first in
    the modality's phase order (AP, PVP, HBP, DP), as the plan says; without an order, by name."""
    reg = _manifest(
        tmp_path,
        [
            key("AP", "register", "image"),
            key("PVP", "register", "image"),
            key("HBP", "register", "tumor"),
            key("DP", "register", "tumor"),
        ],
    )
    hbp, dp = tmp_path / "HBP_register_tumor.nii.gz", tmp_path / "DP_register_tumor.nii.gz"
    order = ("AP", "PVP", "HBP", "DP")
    assert [registered_mask(reg, ph, "tumor", "AP", {}, order) for ph in order] == [
        hbp,
        hbp,
        hbp,
        dp,
    ]
    assert registered_mask(reg, "AP", "tumor", "AP", {}) == dp  # no order given: by name
    # a given mask on some phase wins over the U-Net's
    pred = {"tumor": tmp_path / "pred.nii.gz"}
    assert registered_mask(reg, "AP", "tumor", "AP", pred, order) == hbp
    # the U-Net's training case of this patient: the reference image and HBP's tumor
    case = segmentation_case(tmp_path / "manifest.json", "AP", order)
    assert case == {"image": tmp_path / "AP_register_image.nii.gz", "tumor": hbp}


def test_split_raw_inputs():
    images, masks = split_raw_inputs(
        {
            "image_AP": "a.nii",
            "image_PVP": "p.nii",
            "tumor_AP": "t.nii",
            "reader2_AP": "r.nii",
            "reader1_repeat_AP": "rr.nii",
            "liver_PVP": "l.nii",
            "params": "x.yaml",
        }
    )
    assert images == {"AP": "a.nii", "PVP": "p.nii"}
    assert masks == {
        "AP": {"tumor": "t.nii", "reader2": "r.nii", "reader1_repeat": "rr.nii"},
        "PVP": {"liver": "l.nii"},
    }
