"""Deep-model steps: training on the training split only, features, MIL, Grad-CAM."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from hccrad import steps
from hccrad.deep.inputs import MIL_OFFSETS, DeepInput
from hccrad.errors import InputError


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def toy_inputs(folder, n: int, kind: str) -> tuple[dict[str, str], list[int]]:
    """Bright square (label 1) vs none (label 0) inputs, 2.5D stacks or MIL slices."""
    rng = np.random.default_rng(0)
    inputs, labels = {}, []
    for i in range(n):
        y = i % 2
        count = 5 if kind == "stack" else len(MIL_OFFSETS)
        x = rng.normal(0, 1, size=(count, 1, 32, 32)).astype(np.float32)
        if y:
            x[:, :, 10:22, 10:22] += 3.0
        z = np.arange(count) if kind == "stack" else np.array([5 + o for o in MIL_OFFSETS])
        path = folder / f"P{i:02d}.npz"
        DeepInput(x, "slices", z, z - z[0], {"patient": f"P{i:02d}"}).save(path)
        inputs[f"P{i:02d}"] = str(path)
        labels.append(y)
    return inputs, labels


def write_tables(folder, labels, train_n: int):
    patients = [f"P{i:02d}" for i in range(len(labels))]
    split = ["train" if i < train_n else "validation" for i in range(len(labels))]
    pd.DataFrame({"patient": patients, "split": split}).to_parquet(folder / "splits.parquet")
    pd.DataFrame({"patient": patients, "grade": labels}).to_csv(
        folder / "clinical.tsv", sep="\t", index=False
    )
    return folder / "splits.parquet", folder / "clinical.tsv"


def test_train_features_and_gradcam_on_the_training_split(tmp_path):
    inputs, labels = toy_inputs(tmp_path, 24, "stack")
    splits, clinical = write_tables(tmp_path, labels, train_n=16)
    out = tmp_path / "model"
    steps.train_deep_model(
        inputs, splits, clinical, out, label="grade", preset="habitat_25d",
        overrides={"epochs": 4, "batch_size": 8, "optimizer": "sgd", "lr": 0.01,
                   "val_fraction": 0.25, "patience": None, "network": "resnet10"},
        seed=3,
    )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    used = json.loads((out / "patients.json").read_text())
    # only training-split patients were used (the early-stopping fold is carved from them)
    assert used["patients"] == [f"P{i:02d}" for i in range(16)]
    assert used["labels"] == labels[:16]
    assert metrics["n_train_patients"] + metrics["n_val_patients"] == 16
    steps.deep_model_outputs(
        out / "checkpoint.pt", inputs, splits, tmp_path / "f.parquet", tmp_path / "p.parquet"
    )
    feats = pd.read_parquet(tmp_path / "f.parquet")
    assert list(feats.index) == sorted(inputs) and feats.shape[1] > 10
    pred = pd.read_parquet(tmp_path / "p.parquet")
    from sklearn.metrics import roc_auc_score

    held = pred[pred["patient"] >= "P16"]
    assert roc_auc_score([labels[int(p[1:])] for p in held["patient"]], held["prob"]) > 0.9
    steps.deep_gradcam(out / "checkpoint.pt", inputs, tmp_path / "cam", max_patients=2)
    assert sorted(p.name for p in (tmp_path / "cam").iterdir()) == ["P00.png", "P01.png"]


def test_mil_features_fit_idf_on_training_bags(tmp_path):
    inputs, labels = toy_inputs(tmp_path, 16, "mil")
    splits, clinical = write_tables(tmp_path, labels, train_n=12)
    out = tmp_path / "mil"
    steps.train_deep_model(
        inputs, splits, clinical, out, label="grade", preset="mil_slice",
        overrides={"epochs": 3, "batch_size": 16, "optimizer": "sgd", "lr": 0.01,
                   "val_fraction": 0.25, "patience": None, "network": "resnet10"},
        seed=1,
    )  # fmt: skip
    steps.deep_model_outputs(
        out / "checkpoint.pt", inputs, splits, tmp_path / "f.parquet", tmp_path / "p.parquet",
        tmp_path / "mil.parquet", mil_bins=4, mil_words=4,
    )  # fmt: skip
    mil = pd.read_parquet(tmp_path / "mil.parquet")
    assert list(mil.columns) == [f"plh_{i}" for i in range(4)] + [f"bow_{i}" for i in range(4)]
    np.testing.assert_allclose(mil.filter(like="plh_").sum(1), 1.0)
    pred = pd.read_parquet(tmp_path / "p.parquet")
    assert len(pred) == 16 * len(MIL_OFFSETS)
    # the slice-level table (the MIL study's Table 3) per split, written by the same step
    steps.deep_model_outputs(
        out / "checkpoint.pt", inputs, splits, tmp_path / "f2.parquet", tmp_path / "p2.parquet",
        dst_metrics=tmp_path / "m.parquet", clinical=clinical, label="grade",
    )  # fmt: skip
    table = pd.read_parquet(tmp_path / "m.parquet").set_index("split")
    assert list(table.index) == ["train", "validation"] and set(table["level"]) == {"instance"}
    # z = 5 + offsets: offsets -7 and -9 fall outside the volume (z < 0, padding), not scored
    assert table.loc["train", "n"] == 12 * 9 and table.loc["validation", "n"] == 4 * 9
    assert table.loc["validation", "n_patients"] == 4
    from sklearn.metrics import roc_auc_score

    y = pred["patient"].map(dict(zip(sorted(inputs), labels, strict=True)))
    val = ((pred["patient"] >= "P12") & (pred["z"] >= 0)).to_numpy()
    assert table.loc["validation", "auc"] == pytest.approx(roc_auc_score(y[val], pred["prob"][val]))


def test_training_needs_both_classes(tmp_path):
    inputs, _ = toy_inputs(tmp_path, 6, "stack")
    splits, clinical = write_tables(tmp_path, [0] * 6, train_n=4)
    with pytest.raises(Exception, match="both classes"):
        steps.train_deep_model(
            inputs, splits, clinical, tmp_path / "m", label="grade", preset="habitat_25d",
            overrides={"epochs": 1}, seed=0,
        )  # fmt: skip


def test_untrained_marker_gives_constant_outputs(tmp_path):
    inputs, _ = toy_inputs(tmp_path, 6, "stack")
    splits, clinical = write_tables(tmp_path, [0, 1, 0, 0, 0, 1], train_n=4)  # one case only
    out = tmp_path / "m"
    steps.train_deep_model(
        inputs, splits, clinical, out, label="grade", preset="habitat_25d",
        overrides={"epochs": 1}, seed=0, mark_untrained=True,
    )  # fmt: skip
    assert json.loads((out / "metrics.json").read_text())["trained"] is False
    assert steps.is_untrained(out / "checkpoint.pt")
    steps.deep_model_outputs(
        out / "checkpoint.pt", inputs, splits, tmp_path / "f.parquet", tmp_path / "p.parquet",
        tmp_path / "mil.parquet",
    )  # fmt: skip
    feats = pd.read_parquet(tmp_path / "f.parquet")
    assert list(feats.index) == sorted(inputs) and (feats["deep_0"] == 0).all()
    steps.deep_gradcam(out / "checkpoint.pt", inputs, tmp_path / "cam")
    assert (tmp_path / "cam" / "untrained.png").exists()


# ---------------------------------------------------------------------------------------------
# one network per habitat subregion
# ---------------------------------------------------------------------------------------------

SUB_TRAIN = {"epochs": 3, "batch_size": 8, "optimizer": "sgd", "lr": 0.01,
             "val_fraction": 0.25, "patience": None, "network": "resnet10"}  # fmt: skip


def subregion_inputs(folder, n: int) -> tuple[dict[int, dict[str, str]], list[int]]:
    """Habitat 1 carries the label (bright square), habitat 2 is noise; P05 has no habitat 2."""
    rng = np.random.default_rng(1)
    inputs: dict[int, dict[str, str]] = {1: {}, 2: {}}
    labels = []
    for i in range(n):
        y = i % 2
        labels.append(y)
        for h in (1, 2):
            if h == 2 and i == 5:
                continue
            x = rng.normal(0, 1, size=(5, 1, 32, 32)).astype(np.float32)
            if h == 1 and y:
                x[:, :, 10:22, 10:22] += 3.0
            path = folder / f"P{i:02d}_h{h}.npz"
            DeepInput(x, "slices", np.arange(5), np.arange(5) - 2, {"subregion": h}).save(path)
            inputs[h][f"P{i:02d}"] = str(path)
    return inputs, labels


def test_subregion_models_are_the_single_models_bundled(tmp_path):
    from hccrad.deep.train import read_bundle

    inputs, labels = subregion_inputs(tmp_path, 24)
    splits, clinical = write_tables(tmp_path, labels, train_n=16)
    out = tmp_path / "habitat"
    steps.train_subregion_models(
        inputs, splits, clinical, out, label="grade", preset="habitat_25d",
        overrides=SUB_TRAIN, seed=3,
    )  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt",
        "config.json",
        "curves.png",
        "metrics.json",
        "patients.json",
    ]  # no leftover per-subregion folder
    bundle = read_bundle(out / "checkpoint.pt")
    assert list(bundle) == [1, 2]
    # each member is exactly the model train_deep_model fits on that subregion alone (CPU,
    # same seed): the bundle changes nothing about how a subregion's network is trained
    alone = tmp_path / "alone_h2"
    steps.train_deep_model(
        inputs[2], splits, clinical, alone, label="grade", preset="habitat_25d",
        overrides=SUB_TRAIN, seed=3,
    )  # fmt: skip
    ref = torch.load(alone / "checkpoint.pt", weights_only=True)["state_dict"]
    for key, value in ref.items():
        assert torch.equal(bundle[2]["state_dict"][key], value), key
    who = json.loads((out / "patients.json").read_text())["subregions"]
    assert who["1"]["patients"] == [f"P{i:02d}" for i in range(16)]
    assert "P05" not in who["2"]["patients"] and len(who["2"]["patients"]) == 15
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trained_subregions"] == [1, 2] and set(metrics["subregions"]) == {"1", "2"}

    steps.bundle_outputs(
        out / "checkpoint.pt", inputs, tmp_path / "f.parquet", tmp_path / "p.parquet"
    )
    feats = pd.read_parquet(tmp_path / "f.parquet")
    assert list(feats.index) == [f"P{i:02d}" for i in range(24)]
    h1 = [c for c in feats if c.startswith("h1_deep_")]
    h2 = [c for c in feats if c.startswith("h2_deep_")]
    assert len(h1) == len(h2) > 10 and len(h1) + len(h2) == feats.shape[1]
    assert feats.loc["P05", h2].isna().all() and feats.drop(index="P05").notna().all().all()
    pred = pd.read_parquet(tmp_path / "p.parquet")
    assert sorted(pred["subregion"].unique()) == [1, 2]
    held = pred[(pred["subregion"] == 1) & (pred["patient"] >= "P16")]
    from sklearn.metrics import roc_auc_score

    # the informative habitat separates held-out patients
    assert roc_auc_score([labels[int(p[1:])] for p in held["patient"]], held["prob"]) > 0.9
    steps.bundle_gradcam(out / "checkpoint.pt", inputs, tmp_path / "cam", max_patients=1)
    assert sorted(p.name for p in (tmp_path / "cam").iterdir()) == ["P00_h1.png", "P00_h2.png"]


def test_a_subregion_without_both_classes_is_marked_untrained(tmp_path):
    inputs, labels = subregion_inputs(tmp_path, 8)
    # habitat 2 only in label-0 patients of the training split
    inputs[2] = {p: v for p, v in inputs[2].items() if labels[int(p[1:])] == 0}
    splits, clinical = write_tables(tmp_path, labels, train_n=8)
    out = tmp_path / "habitat"
    steps.train_subregion_models(
        inputs, splits, clinical, out, label="grade", preset="habitat_25d",
        overrides={**SUB_TRAIN, "epochs": 1}, seed=0, mark_untrained=True,
    )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trained_subregions"] == [1]
    assert metrics["subregions"]["2"]["trained"] is False
    steps.bundle_outputs(
        out / "checkpoint.pt", inputs, tmp_path / "f.parquet", tmp_path / "p.parquet"
    )
    feats = pd.read_parquet(tmp_path / "f.parquet")
    assert (feats["h2_deep_0"].dropna() == 0).all() and feats["h2_deep_0"].notna().sum() == 4
    steps.bundle_gradcam(out / "checkpoint.pt", inputs, tmp_path / "cam", max_patients=1)
    assert sorted(p.name for p in (tmp_path / "cam").iterdir()) == [
        "P00_h1.png",
        "untrained_h2.png",
    ]


# ---------------------------------------------------------------------------------------------
# one network per phase (the MVI study's 3 x 512 per region)
# ---------------------------------------------------------------------------------------------


def test_phase_models_are_the_single_models_bundled(tmp_path):
    from hccrad import patient
    from hccrad.deep.train import read_bundle
    from hccrad.manifest import OutputSet

    sub, labels = subregion_inputs(tmp_path, 24)  # habitat 1 informative, habitat 2 noise
    # the same tensors stand for two phases (AP informative, HBP noise; every patient has both)
    sub[2]["P05"] = sub[2]["P04"]
    manifests = {}
    for p in sorted(sub[1]):
        manifests[p] = tmp_path / f"{p}.json"
        with OutputSet(manifests[p], patient=p, stage="normalize") as out:
            out.add("deep/cube/AP", sub[1][p])
            out.add("deep/cube/HBP", sub[2][p])
    inputs = patient.phase_input_files(manifests, {"AP": "deep/cube/AP", "HBP": "deep/cube/HBP"})
    assert list(inputs) == ["AP", "HBP"] and inputs["HBP"]["P03"].name == "P03_h2.npz"
    splits, clinical = write_tables(tmp_path, labels, train_n=16)
    out = tmp_path / "bundle"
    steps.train_phase_models(
        inputs, splits, clinical, out, label="grade", preset="habitat_25d",
        overrides=SUB_TRAIN, seed=3,
    )  # fmt: skip
    bundle = read_bundle(out / "checkpoint.pt", by="phase")
    assert list(bundle) == ["AP", "HBP"]
    with pytest.raises(InputError, match="not a per-subregion"):
        read_bundle(out / "checkpoint.pt", by="subregion")
    alone = tmp_path / "alone_hbp"  # each phase's network is the one model trained alone
    steps.train_deep_model(
        inputs["HBP"], splits, clinical, alone, label="grade", preset="habitat_25d",
        overrides=SUB_TRAIN, seed=3,
    )  # fmt: skip
    ref = torch.load(alone / "checkpoint.pt", weights_only=True)["state_dict"]
    for key, value in ref.items():
        assert torch.equal(bundle["HBP"]["state_dict"][key], value), key
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["per_phase"] and metrics["trained_phases"] == ["AP", "HBP"]
    who = json.loads((out / "patients.json").read_text())["phases"]
    assert who["AP"]["patients"] == who["HBP"]["patients"] == [f"P{i:02d}" for i in range(16)]

    steps.bundle_outputs(
        out / "checkpoint.pt", inputs, tmp_path / "f.parquet", tmp_path / "p.parquet",
        by="phase", dst_metrics=tmp_path / "m.parquet", splits=splits, clinical=clinical,
        label="grade",
    )  # fmt: skip
    # each phase's network scored on its own per split (the report's network table)
    own = pd.read_parquet(tmp_path / "m.parquet").set_index(["member", "split"])
    assert list(own.index) == [(m, s) for m in ("AP", "HBP") for s in ("train", "validation")]
    assert (own["n_patients"].to_numpy() == [16, 8, 16, 8]).all()
    assert own.loc[("AP", "validation"), "auc"] > 0.9
    feats = pd.read_parquet(tmp_path / "f.parquet")
    ap = [c for c in feats if c.startswith("AP_deep_")]
    hbp = [c for c in feats if c.startswith("HBP_deep_")]
    assert len(ap) == len(hbp) > 10 and len(ap) + len(hbp) == feats.shape[1]
    assert feats.notna().all().all() and list(feats.index) == sorted(manifests)
    pred = pd.read_parquet(tmp_path / "p.parquet")
    from sklearn.metrics import roc_auc_score

    held = pred[(pred["phase"] == "AP") & (pred["patient"] >= "P16")]
    assert roc_auc_score([labels[int(p[1:])] for p in held["patient"]], held["prob"]) > 0.9
    steps.bundle_gradcam(out / "checkpoint.pt", inputs, tmp_path / "cam", by="phase",
                         max_patients=1)  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "cam").iterdir()) == ["P00_AP.png", "P00_HBP.png"]


# ---------------------------------------------------------------------------------------------
# the early-recurrence study's 2.5-D model: two-stage ResNet-10, Score-CAM
# ---------------------------------------------------------------------------------------------


def test_er_25d_model_trains_with_the_two_stage_resnet10_and_draws_score_cams(tmp_path):
    """3 phases x 3 slices per patient (er_stack), preset recurrence_25d, resnet10_2stage:
    training runs, the features are 3 x 128, the overlays are Score-CAMs."""
    rng = np.random.default_rng(5)
    inputs, labels = {}, []
    for i in range(12):
        x = rng.normal(0, 1, size=(3, 3, 32, 32)).astype(np.float32)
        x[:, :, 8:20, 8:20] += 3.0 * (i % 2)
        z = np.arange(3)
        path = tmp_path / f"P{i:02d}.npz"
        DeepInput(x, "slices", z, z - 1, {"patient": f"P{i:02d}"}).save(path)
        inputs[f"P{i:02d}"], _ = str(path), labels.append(i % 2)
    splits, clinical = write_tables(tmp_path, labels, train_n=8)
    out = tmp_path / "er"
    steps.train_deep_model(
        inputs, splits, clinical, out, label="grade", preset="recurrence_25d",
        overrides={"network": "resnet10_2stage", "epochs": 2, "batch_size": 4,
                   "val_fraction": 0.25, "patience": None},
        seed=0,
    )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    history = metrics["history"]
    assert metrics["epochs_run"] == 2 and all(np.isfinite(e["train_loss"]) for e in history)
    steps.deep_model_outputs(
        out / "checkpoint.pt", inputs, splits, tmp_path / "f.parquet", tmp_path / "p.parquet",
        dst_metrics=tmp_path / "m.parquet", clinical=clinical, label="grade",
    )  # fmt: skip
    feats = pd.read_parquet(tmp_path / "f.parquet")
    assert feats.shape == (12, 384)  # 3 phase branches x 128 features
    table = pd.read_parquet(tmp_path / "m.parquet")
    assert list(table["split"]) == ["train", "validation"] and set(table["level"]) == {"patient"}
    assert list(table["n"]) == [8, 4]
    steps.deep_gradcam(out / "checkpoint.pt", inputs, tmp_path / "cam", max_patients=1,
                       method="scorecam")  # fmt: skip
    assert [p.name for p in (tmp_path / "cam").iterdir()] == ["P00.png"]
    with pytest.raises(Exception, match="unknown CAM method"):
        steps.deep_gradcam(out / "checkpoint.pt", inputs, tmp_path / "c2", method="cam")


def test_split_metrics_score_real_slices_at_the_training_cutoff():
    from hccrad.deep.split_metrics import split_metrics
    from hccrad.stats.roc import auc_ci, youden_cutoff

    rows = []
    probs = {"A": [0.9, 0.8, 0.1], "B": [0.2, 0.3, 0.6], "C": [0.7, 0.4, 0.5], "D": [0.1, 0.6, 0.2],
             "E": [0.8, 0.9, 0.3], "F": [0.4, 0.2, 0.1], "G": [0.5, 0.5, 0.5]}  # fmt: skip
    for p, ps in probs.items():
        for j, prob in enumerate(ps):
            rows.append({"patient": p, "instance": j, "z": j, "prob": prob})
    rows.append({"patient": "A", "instance": 3, "z": -1, "prob": 0.0})  # padding: not scored
    pred = pd.DataFrame(rows)
    labels = {"A": 1, "B": 0, "C": 1, "D": 0, "E": 1, "F": 0, "G": float("nan")}
    split = {"A": "train", "B": "train", "C": "train", "D": "train", "E": "validation",
             "F": "validation", "G": "validation"}  # fmt: skip
    table = split_metrics(pred, labels, split).set_index("split")
    train_y = [1] * 3 + [0] * 3 + [1] * 3 + [0] * 3
    train_p = probs["A"] + probs["B"] + probs["C"] + probs["D"]
    cut = youden_cutoff(train_y, train_p)
    assert table.loc["train", "n"] == 12 and table.loc["train", "positives"] == 6
    assert table.loc["validation", "n"] == 6  # G has no label
    assert (table["cutoff"] == cut).all()
    a, lo, hi = auc_ci(train_y, train_p)
    got = table.loc["train", ["auc", "auc_lower", "auc_upper"]]
    assert tuple(got) == pytest.approx((a, lo, hi))
    val_p = np.array(probs["E"] + probs["F"])
    val_y = np.array([1, 1, 1, 0, 0, 0])
    assert table.loc["validation", "accuracy"] == pytest.approx(np.mean((val_p >= cut) == val_y))
    assert table.loc["validation", "sensitivity"] == pytest.approx(np.mean(val_p[:3] >= cut))
