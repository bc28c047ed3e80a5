"""hccrad.deep.joint.JointFusionClassifier: a trained network and tabular columns joined in one
fully connected layer and trained end to end (er_fusion's DLRCR).

A toy 2.5D problem where the label shows in the images of three quarters of the cases only and in a
tabular column for everyone: the joint model must beat the network alone on fresh patients,
weight the tabular column as planted, move the backbone's weights (end to end, not frozen),
start from the network's own prediction, and be deterministic under a seed."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from hccrad.deep.joint import JointFusionClassifier, JointFusionNet
from hccrad.deep.train import TrainConfig, load_model, predict, train
from hccrad.fileio import save_torch

SIZE, N_INST = 32, 3


def cohort(
    root: Path, n: int, seed: int, image_share: float = 0.75
) -> tuple[pd.DataFrame, np.ndarray, dict[str, Path]]:
    """Patients whose label shows as a bright square in the images of ``image_share`` of the
    cases and as a shift of the tabular column ``t`` for everyone (``u`` is noise)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    y = np.array([i % 2 for i in range(n)])
    rng.shuffle(y)
    inputs, rows = {}, []
    for i, label in enumerate(y):
        x = rng.normal(0, 0.5, (N_INST, 1, SIZE, SIZE)).astype(np.float32)
        if label and rng.uniform() < image_share:
            a, b = rng.integers(0, SIZE - 10, 2)
            x[:, 0, a : a + 10, b : b + 10] += 2.0
        pid = f"P{seed}_{i:03d}"
        path = root / f"{pid}.npz"
        np.savez(path, x=x, kind=np.array("slices"), z=np.arange(N_INST))
        inputs[pid] = path
        rows.append({"t": 1.2 * label + rng.normal(), "u": rng.normal()})
    X = pd.DataFrame(rows, index=pd.Index(list(inputs), name="patient"))
    return X, y, inputs


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("joint")
    X, y, inputs = cohort(root / "train", 64, 1)
    Xte, yte, inputs_te = cohort(root / "test", 200, 2)
    cfg = TrainConfig(network="resnet10", input_kind="slices25d", optimizer="sgd", lr=0.01,
                      batch_size=8, epochs=6, patience=None, seed=0)  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same weights whatever the machine's core count
    try:
        train(cfg, [str(inputs[p]) for p in X.index], list(y), root / "net")
    finally:
        torch.set_num_threads(threads)
    return {
        "X": X, "y": y, "Xte": Xte, "yte": yte, "inputs": {**inputs, **inputs_te},
        "checkpoint": root / "net" / "checkpoint.pt", "root": root,
    }  # fmt: skip


def joint(toy: dict, **kw: object) -> JointFusionClassifier:
    settings = {"optimizer": "adam", "lr": 3e-3, "weight_decay": 0.0, "epochs": 15,
                "batch_size": 16, "patience": None, "random_state": 0, **kw}  # fmt: skip
    return JointFusionClassifier(toy["checkpoint"], toy["inputs"], **settings)


@pytest.fixture(scope="module")
def fitted(toy: dict) -> JointFusionClassifier:
    return joint(toy).fit(toy["X"], toy["y"])


def test_offset_logistic_matches_statsmodels_and_scikit_learn() -> None:
    """Unpenalised with an offset and frequency weights: statsmodels' GLM; penalised without
    an offset: scikit-learn's LogisticRegression (the same C convention)."""
    import statsmodels.api as sm
    from sklearn.linear_model import LogisticRegression

    from hccrad.deep.joint import offset_logistic

    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 3))
    offset = rng.normal(0, 1.5, 300)
    y = (rng.uniform(size=300) < 1 / (1 + np.exp(-(offset + 0.4 + X @ [1.0, -0.5, 0.0])))) * 1
    sw = np.where(y == 1, 1.7, 0.6)
    w, b = offset_logistic(X, y, offset, sw, C=1e12)
    ref = sm.GLM(y, sm.add_constant(X), family=sm.families.Binomial(), offset=offset,
                 freq_weights=sw).fit().params  # fmt: skip
    np.testing.assert_allclose(np.r_[b, w], ref, atol=1e-5)
    w, b = offset_logistic(X, y, np.zeros(300), None, C=0.05)
    lr = LogisticRegression(C=0.05, tol=1e-12, max_iter=10000).fit(X, y)
    np.testing.assert_allclose(np.r_[b, w], np.r_[lr.intercept_, lr.coef_[0]], atol=1e-5)
    with pytest.raises(ValueError, match="non-finite"):
        offset_logistic(X, y, np.full(300, np.nan))


def test_the_table_counts_from_the_first_epoch(toy: dict) -> None:
    """Images that show nothing, a table that shows the label: a few epochs at a network's
    learning rate (the demo's DLRCR: Adam 1e-3, two batches an epoch) leave a tabular part
    started at zero near zero; started at the offset logistic fit, the table ranks the fresh
    patients as well as it can."""
    X, y, inputs = cohort(toy["root"] / "blind_train", 32, 5, image_share=0.0)
    Xte, yte, inputs_te = cohort(toy["root"] / "blind_test", 200, 6, image_share=0.0)
    every = {**toy["inputs"], **inputs, **inputs_te}
    aucs, weights = {}, {}
    for init in ("logistic", "zero"):
        clf = JointFusionClassifier(
            toy["checkpoint"], every, optimizer="adam", lr=1e-3, weight_decay=0.0, epochs=3,
            batch_size=16, patience=None, tabular_init=init, random_state=0,
        ).fit(X, y)  # fmt: skip
        aucs[init] = roc_auc_score(yte, clf.decision_function(Xte))
        w = clf.module_.head.weight.detach().numpy()
        weights[init] = (w[1] - w[0])[clf.n_deep_ :]
        if init == "zero":
            np.testing.assert_array_equal(clf.init_coef_, 0.0)
        else:
            assert clf.init_coef_[0] > 0.5 and abs(clf.init_coef_[1]) < clf.init_coef_[0]
    auc_table = roc_auc_score(yte, Xte["t"])
    assert aucs["logistic"] > auc_table - 0.03, (aucs, auc_table)
    assert weights["logistic"][0] > 0.5 and abs(weights["zero"][0]) < 0.05, weights
    assert aucs["logistic"] > aucs["zero"] + 0.05, aucs


def test_the_new_layer_starts_as_the_networks_own_prediction(toy: dict) -> None:
    """Deep part = the network's head, tabular part zero: logits equal the network's."""
    model, _ = load_model(toy["checkpoint"])
    ref = predict(model, [toy["inputs"][p] for p in toy["Xte"].index])["prob"].to_numpy()
    net = JointFusionNet(copy.deepcopy(model), 2).eval()
    x = torch.stack([torch.from_numpy(np.load(toy["inputs"][p])["x"]) for p in toy["Xte"].index])
    with torch.no_grad():
        logits = net(x, torch.randn(len(x), 2))
    prob = torch.softmax(logits, dim=1)[:, 1].numpy()
    np.testing.assert_allclose(prob, ref, atol=1e-5)
    assert net.head.weight[:, -2:].abs().sum() == 0
    assert net.n_deep == N_INST * model.branch_features


def test_joint_training_beats_the_network_alone_on_fresh_patients(toy, fitted) -> None:
    """The image carries three quarters of the cases, the table everyone: fused, both count."""
    net_alone = predict(toy["checkpoint"], [toy["inputs"][p] for p in toy["Xte"].index])
    auc_net = roc_auc_score(toy["yte"], net_alone["prob"])
    auc_joint = roc_auc_score(toy["yte"], fitted.predict_proba(toy["Xte"])[:, 1])
    auc_tab = roc_auc_score(toy["yte"], toy["Xte"]["t"])
    # fused, both count: better than the network alone and than the table alone
    assert auc_joint > max(auc_net, auc_tab) + 0.02, (auc_joint, auc_net, auc_tab)
    w = fitted.module_.head.weight.detach().numpy()
    w = w[1] - w[0]
    n_deep = fitted.n_deep_
    assert w[n_deep] > 0.03 and abs(w[n_deep + 1]) < 0.5 * w[n_deep], w[n_deep:]  # as planted
    assert fitted.tabular_columns_ == ["t", "u"]
    assert fitted.network_ == "resnet10" and fitted.n_epochs_ == 15


def test_the_backbone_is_trained_too(toy, fitted) -> None:
    model, _ = load_model(toy["checkpoint"])
    before = dict(model.backbone.named_parameters())
    after = dict(fitted.module_.network.backbone.named_parameters())
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(moved) == len(before), "every backbone weight is trained"


def test_deterministic_under_a_seed_and_a_sklearn_estimator(toy, fitted) -> None:
    again = clone(fitted).fit(toy["X"], toy["y"])
    np.testing.assert_array_equal(again.predict_proba(toy["Xte"]), fitted.predict_proba(toy["Xte"]))
    assert again.history_ == fitted.history_
    proba = fitted.predict_proba(toy["Xte"])
    assert proba.shape == (len(toy["Xte"]), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(fitted.predict(toy["Xte"]), (proba[:, 1] >= 0.5).astype(int))


def test_early_stopping_keeps_the_best_inner_validation_epoch(toy) -> None:
    clf = joint(toy, epochs=12, patience=3, val_fraction=0.25).fit(toy["X"], toy["y"])
    losses = [h["val_loss"] for h in clf.history_]
    assert clf.best_epoch_ == int(np.argmin(losses)) + 1
    assert clf.n_epochs_ <= min(12, clf.best_epoch_ + 3)
    assert len(clf.val_rows_) == 16  # a quarter of 64, stratified
    assert sorted(toy["y"][clf.val_rows_]) == [0] * 8 + [1] * 8


def test_bad_inputs_say_what_is_wrong(toy, tmp_path) -> None:
    X, y = toy["X"], toy["y"]
    lacking = {k: v for k, v in toy["inputs"].items() if k != X.index[3]}
    with pytest.raises(ValueError, match=f"no network input for patient.*{X.index[3]}"):
        JointFusionClassifier(toy["checkpoint"], lacking, epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="DataFrame indexed by patient"):
        joint(toy, epochs=1).fit(X.to_numpy(), y)
    untrained = tmp_path / "checkpoint.pt"
    save_torch({"untrained": True, "reason": "one class"}, untrained)
    with pytest.raises(ValueError, match=r"not trained.*one class"):
        JointFusionClassifier(untrained, toy["inputs"], epochs=1).fit(X, y)
    bad = X.copy()
    bad.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        joint(toy, epochs=1).fit(bad, y)


# ---- in a study ------------------------------------------------------------------------------

JOINT_DELTA = {
    "deep_models": {"net": {"input": "er_stack", "preset": "recurrence_25d"}},
    "models": {
        "joint": {
            "blocks": ["rad", "clin"],
            "selection": "uni_lasso",
            "keep": ["clin"],
            "head": {
                "backbone": "net",
                "optimizer": "adam",
                "lr": 1e-3,
                "weight_decay": 0.0,
                "epochs": 4,
                "batch_size": 16,
                "patience": None,
            },
        }
    },
}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny study of test_studies with a joint model, its MR patients' toy images (grade
    shows as a square) and a network trained on the study's training patients."""
    import yaml
    from test_studies import TINY_SPEC, synthetic_tables, write_spec

    from hccrad import studies

    tmp = tmp_path_factory.mktemp("joint_study")
    raw = studies.deep_merge(yaml.safe_load(TINY_SPEC), JOINT_DELTA)
    spec = studies.load_study(write_spec(tmp, yaml.safe_dump(raw)))
    tables = synthetic_tables(60, seed=5)
    clinical = studies.study_clinical(spec, tables["clinical"].reset_index())
    splits = studies.study_splits(spec, clinical, 3)
    rng = np.random.default_rng(0)
    inputs = {}
    for pid in clinical.index:
        x = rng.normal(0, 0.5, (N_INST, 1, SIZE, SIZE)).astype(np.float32)
        if clinical.loc[pid, "grade_pd"] == 1:
            x[:, 0, 8:18, 8:18] += 1.5
        inputs[str(pid)] = tmp / "npz" / f"{pid}.npz"
        inputs[str(pid)].parent.mkdir(exist_ok=True)
        np.savez(inputs[str(pid)], x=x, kind=np.array("slices"), z=np.arange(N_INST))
    train_ids = [p for p in splits.loc[splits["split"] == "train", "patient"] if p in inputs]
    y = [int(clinical.loc[p, "grade_pd"]) for p in train_ids]
    cfg = TrainConfig(network="resnet10", input_kind="slices25d", optimizer="sgd", lr=0.01,
                      batch_size=8, epochs=3, patience=None, seed=0)  # fmt: skip
    train(cfg, [str(inputs[p]) for p in train_ids], y, tmp / "net")
    return {"spec": spec, "tables": tables, "splits": splits, "inputs": inputs,
            "checkpoint": tmp / "net" / "checkpoint.pt", "tmp": tmp}  # fmt: skip


def test_a_study_trains_its_joint_model_on_training_patients_only(study, monkeypatch) -> None:
    from hccrad import studies

    seen: list[set[str]] = []
    orig = JointFusionClassifier.fit

    def fit(self, X, y):
        seen.append(set(map(str, X.index)))
        return orig(self, X, y)

    monkeypatch.setattr(JointFusionClassifier, "fit", fit)
    out = study["tmp"] / "out"
    backbones = {"net": (study["checkpoint"], study["inputs"])}
    metrics = studies.run_study(study["spec"], study["tables"], out, 3, splits=study["splits"],
                                backbones=backbones)  # fmt: skip
    assert metrics["models"]["joint"]["status"] == "fitted", metrics["models"]["joint"]
    assert metrics["models"]["joint"]["auc"]["train"] > 0.6  # learned, not backwards
    train_ids = set(study["splits"].loc[study["splits"]["split"] == "train", "patient"])
    assert seen and all(rows <= train_ids for rows in seen)
    sel = json.loads((out / "selected_features.json").read_text())["joint"]
    assert {"clin__tumor_size_mm", "clin__ast"} <= set(sel["features"])
    assert sel["head"] == {"best_epoch": 4, "epochs_run": 4}
    pred = pd.read_parquet(out / "predictions.parquet")
    joint_pred = pred[pred["model"] == "joint"]
    assert len(joint_pred) == len(pred[pred["model"] == "rad"]) > 0
    assert np.isfinite(joint_pred["score"]).all() and joint_pred["score"].nunique() > 10
    # an untrained network: the model is reported as failed, the others still fit
    save_torch({"untrained": True, "reason": "one class"}, study["tmp"] / "untrained.pt")
    metrics = studies.run_study(
        study["spec"], study["tables"], study["tmp"] / "out2", 3, splits=study["splits"],
        backbones={"net": (study["tmp"] / "untrained.pt", study["inputs"])},
    )  # fmt: skip
    joint = metrics["models"]["joint"]
    assert joint["status"] != "fitted" and "not trained" in json.dumps(joint), joint
    assert metrics["models"]["rad"]["status"] == "fitted"
    # no network given at all (a run outside the workflow): the same, with the reason
    metrics = studies.run_study(study["spec"], study["tables"], study["tmp"] / "out3", 3,
                                splits=study["splits"])  # fmt: skip
    assert "head.backbone" in json.dumps(metrics["models"]["joint"])
    assert metrics["models"]["rad"]["status"] == "fitted"
