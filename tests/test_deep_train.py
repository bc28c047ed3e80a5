"""Seeded training, prediction and deep features on tiny generated ``.npz`` inputs (CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from hccrad.deep import train as train_module
from hccrad.deep.dataset import augmentations
from hccrad.deep.device import resolve_device
from hccrad.deep.extract import extract_features
from hccrad.deep.nets import MultiBranch25D
from hccrad.deep.train import (
    NpzDataset,
    TrainConfig,
    class_weights,
    load_model,
    predict,
    train,
)
from hccrad.deep.train_config import resolve_pretrained
from hccrad.errors import ConfigError, InputError

torch.set_num_threads(1)
PNG = b"\x89PNG\r\n\x1a\n"


def make_inputs(
    root: Path,
    labels: list[int],
    *,
    kind: str,
    size: int,
    seed: int,
    n_inst: int = 3,
    square: int = 8,
    pad_last: bool = False,
) -> list[str]:
    """Noise; label 1 adds a bright square (cube) at a random place. Written as in the contract."""
    rng = np.random.default_rng(seed)
    square = min(square, size // 2)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, y in enumerate(labels):
        if kind == "volume":
            x = rng.normal(0, 0.5, (1, size, size, size)).astype(np.float32)
            if y:
                z, a, b = rng.integers(0, size - square, 3)
                x[0, z : z + square, a : a + square, b : b + square] += 2.0
            zs = np.zeros(0, dtype=np.int64)
        else:
            x = rng.normal(0, 0.5, (n_inst, 1, size, size)).astype(np.float32)
            if y:
                a, b = rng.integers(0, size - square, 2)
                x[:, 0, a : a + square, b : b + square] += 2.0
            zs = np.arange(10, 10 + n_inst)
            if pad_last:
                zs[-1] = -1
                x[-1] = 0.0
        p = root / f"s{seed}_{i}.npz"
        np.savez(
            p,
            x=x,
            kind=np.array("volume" if kind == "volume" else "slices"),
            z=zs,
            offsets=np.arange(len(zs)),
            meta=np.array(json.dumps({"patient": f"P{seed}_{i}"})),
        )
        paths.append(str(p))
    return paths


def _cfg(**kw: object) -> TrainConfig:
    base = {
        "network": "resnet10",
        "optimizer": "sgd",  # Adam at this scale leaves BatchNorm running stats behind
        "lr": 0.01,
        "batch_size": 8,
        "val_fraction": 0.25,
        "seed": 0,
    }
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def toy25d(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("toy25d")
    y_tr = [i % 2 for i in range(24)]
    y_te = [i % 2 for i in range(12)]
    tr = make_inputs(root / "in", y_tr, kind="slices25d", size=32, seed=1)
    te = make_inputs(root / "in", y_te, kind="slices25d", size=32, seed=2)
    cfg = _cfg(input_kind="slices25d", epochs=4, patience=None, lr_step_size=2, lr_gamma=0.5)
    metrics = train(cfg, tr, y_tr, root / "out")
    return {"root": root, "cfg": cfg, "metrics": metrics, "test": (te, y_te), "train": tr}


def test_25d_model_learns_and_writes_outputs(toy25d: dict) -> None:
    out, m = toy25d["root"] / "out", toy25d["metrics"]
    hist = m["history"]
    assert len(hist) == 4 and m["epochs_run"] == 4 and not m["stopped_early"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert [h["lr"] for h in hist] == pytest.approx([0.01, 0.01, 0.005, 0.005])  # step schedule
    te, y_te = toy25d["test"]
    pred = predict(out / "checkpoint.pt", te, patients=[f"T{i}" for i in range(len(te))])
    assert list(pred.columns) == ["path", "patient", "prob_0", "prob_1", "prob"]
    assert len(pred) == len(te)
    assert roc_auc_score(y_te, pred["prob"]) > 0.9
    on_disk = json.loads((out / "metrics.json").read_text())
    for key in ("history", "best_epoch", "device", "seconds", "images_per_s", "class_weights"):
        assert key in on_disk
    assert on_disk["device"] == "cpu" and on_disk["images_per_s"] > 0
    assert {"train_loss", "val_loss", "val_auc"} <= set(on_disk["history"][0])
    assert (out / "curves.png").read_bytes()[:8] == PNG
    snap = json.loads((out / "config.json").read_text())
    assert snap == toy25d["cfg"].to_dict() and snap["spatial_dims"] == 2
    model, cfg = load_model(out / "checkpoint.pt")
    assert isinstance(model, MultiBranch25D) and model.n_branches == 3
    assert cfg.input_kind == "slices25d"


def test_feature_extraction_shape_and_determinism(toy25d: dict) -> None:
    te, _ = toy25d["test"]
    ckpt = toy25d["root"] / "out" / "checkpoint.pt"
    ids = [f"T{i}" for i in range(len(te))]
    a = extract_features(ckpt, te, ids)
    b = extract_features(ckpt, te, ids, batch_size=5)
    assert a.shape == (len(te), 3 * 512)
    assert list(a.index) == ids and a.index.name == "patient"
    assert list(a.columns[:2]) == ["deep_0", "deep_1"] and a.columns[-1] == f"deep_{3 * 512 - 1}"
    assert np.allclose(a.to_numpy(), b.to_numpy(), atol=1e-5)
    assert a.equals(extract_features(ckpt, te, ids))  # bitwise identical on a rerun
    assert np.isfinite(a.to_numpy()).all()
    with pytest.raises(InputError, match="per_instance"):
        extract_features(ckpt, te, ids, per_instance=True)


def test_identical_seeds_give_identical_weights(tmp_path: Path) -> None:
    labels = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    paths = make_inputs(tmp_path / "in", labels, kind="slice", size=16, seed=3, pad_last=True)
    cfg = _cfg(input_kind="slice", epochs=2, patience=None, optimizer="adam", lr=1e-3)
    runs = [train(cfg, paths, labels, tmp_path / name) for name in ("a", "b")]
    train(TrainConfig(**{**cfg.to_dict(), "seed": 1}), paths, labels, tmp_path / "c")
    sd = [
        torch.load(tmp_path / n / "checkpoint.pt", weights_only=True)["state_dict"] for n in "abc"
    ]
    assert sd[0].keys() == sd[1].keys()
    for k in sd[0]:
        assert torch.equal(sd[0][k], sd[1][k]), k
    assert any(not torch.equal(sd[0][k], sd[2][k]) for k in sd[0] if sd[0][k].is_floating_point())
    assert runs[0]["history"][-1]["train_loss"] == runs[1]["history"][-1]["train_loss"]
    # the validation fold comes from the training patients, stratified, and is the same again
    val = runs[0]["val_indices"]
    assert val == runs[1]["val_indices"] and len(val) == 3
    assert sorted(labels[i] for i in val) == [0, 0, 1]
    # class weights from the fitted training instances (padding instances skipped: 2 per patient)
    fit = [labels[i] for i in range(len(labels)) if i not in val]
    assert runs[0]["n_train_samples"] == 2 * len(fit)
    assert runs[0]["class_weights"] == pytest.approx(class_weights(np.repeat(fit, 2), 2).tolist())
    # MIL: per-instance probabilities and features, padding marked by z == -1
    pred = predict(tmp_path / "a" / "checkpoint.pt", paths[:2], patients=["A", "B"])
    assert list(pred["instance"]) == [0, 1, 2, 0, 1, 2]
    assert list(pred["z"]) == [10, 11, -1, 10, 11, -1]
    assert np.allclose(pred[["prob_0", "prob_1"]].sum(axis=1), 1.0)
    ckpt = tmp_path / "a" / "checkpoint.pt"
    inst = extract_features(ckpt, paths[:2], ["A", "B"], per_instance=True)
    assert inst.shape == (6, 512) and inst.index.names == ["patient", "instance", "z"]
    pat = extract_features(ckpt, paths[:2], ["A", "B"])
    real = inst.xs("A", level="patient").query("z >= 0").mean()
    assert np.allclose(pat.loc["A"].to_numpy(), real.to_numpy(), atol=1e-6)


def test_class_weights() -> None:
    assert class_weights([0, 0, 0, 1], 2) == pytest.approx([4 / 6, 2.0])
    assert class_weights([0, 1, 2, 2], 3) == pytest.approx([4 / 3, 4 / 3, 2 / 3])
    with pytest.raises(InputError, match="no training sample"):
        class_weights([0, 0], 2)


def test_3d_model_learns(tmp_path: Path) -> None:
    y_tr = [i % 2 for i in range(20)]
    y_te = [i % 2 for i in range(10)]
    tr = make_inputs(tmp_path / "in", y_tr, kind="volume", size=16, seed=4, square=6)
    te = make_inputs(tmp_path / "in", y_te, kind="volume", size=16, seed=5, square=6)
    m = train(_cfg(input_kind="volume", epochs=4, patience=None), tr, y_tr, tmp_path / "out")
    assert m["history"][-1]["train_loss"] < m["history"][0]["train_loss"]
    pred = predict(tmp_path / "out" / "checkpoint.pt", te)
    assert roc_auc_score(y_te, pred["prob"]) > 0.9
    assert extract_features(tmp_path / "out" / "checkpoint.pt", te, list("abcdefghij")).shape == (
        10,
        512,
    )


def test_early_stopping_stops_without_improvement(tmp_path: Path) -> None:
    labels = [i % 2 for i in range(12)]
    paths = make_inputs(tmp_path / "in", labels, kind="slice", size=16, seed=6, n_inst=1)
    cfg = _cfg(input_kind="slice", epochs=20, patience=2, monitor="loss", min_delta=1e6)
    m = train(cfg, paths, labels, tmp_path / "out")
    assert m["stopped_early"] and m["best_epoch"] == 1 and m["epochs_run"] == 3
    assert len(json.loads((tmp_path / "out" / "metrics.json").read_text())["history"]) == 3


def test_augmentation_is_seeded_and_optional(tmp_path: Path) -> None:
    paths = make_inputs(tmp_path, [1, 0], kind="slices25d", size=8, seed=7)
    raw = np.load(paths[0])["x"]
    plain = NpzDataset(paths, [1, 0], "slices25d")  # validation / prediction: no transform
    assert np.array_equal(plain[0]["x"].numpy(), raw)
    assert plain[0]["x"].shape == (3, 1, 8, 8) and plain[0]["label"] == 1
    cfg = TrainConfig(flip_prob=0.5, rot90_prob=0.5, intensity_prob=1.0)
    draws = []
    for _ in range(2):
        ds = NpzDataset(paths, [1, 0], "slices25d", transform=augmentations(cfg, (8, 8), 5))
        draws.append([ds[0]["x"].numpy() for _ in range(4)])
    assert all(np.array_equal(a, b) for a, b in zip(*draws, strict=True))
    assert all(d.shape == raw.shape and not np.array_equal(d, raw) for d in draws[0])
    # every instance of a 2.5-D sample gets the same transform: identical instances stay identical
    same = tmp_path / "same.npz"
    img = np.random.default_rng(0).normal(size=(1, 1, 8, 8)).astype(np.float32)
    np.savez(same, x=np.repeat(img, 3, axis=0), kind=np.array("slices"))
    ds = NpzDataset([same], [0], "slices25d", transform=augmentations(cfg, (8, 8), 6))
    for _ in range(4):
        x = ds[0]["x"].numpy()
        assert np.array_equal(x[0], x[1]) and np.array_equal(x[0], x[2])


def test_config_and_input_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown training settings"):
        TrainConfig.from_dict({"netwrok": "resnet18"})
    with pytest.raises(ConfigError, match="input_kind"):
        TrainConfig(input_kind="cube")
    with pytest.raises(ConfigError, match="spatial_dims"):
        TrainConfig(input_kind="volume", spatial_dims=2)
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    assert TrainConfig.preset("mvi_3d").lr_step_size == 5
    assert resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            resolve_device("cuda")
    assert train_module.resolve_device is resolve_device  # the old import location still works
    vol = make_inputs(tmp_path, [0, 1, 0, 1], kind="volume", size=8, seed=8)
    with pytest.raises(InputError, match=r"s8_0\.npz"):
        train(_cfg(input_kind="slice", epochs=1), vol, [0, 1, 0, 1], tmp_path / "o")
    sl = make_inputs(tmp_path, [0, 0, 0, 1], kind="slice", size=8, seed=9)
    with pytest.raises(InputError, match="stratified"):
        train(_cfg(input_kind="slice", epochs=1), sl, [0, 0, 0, 1], tmp_path / "o")
    with pytest.raises(InputError, match="labels"):
        train(_cfg(input_kind="slice", epochs=1), sl, [0, 0, 2, 1], tmp_path / "o")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_short_training_runs_on_cuda(tmp_path: Path) -> None:
    labels = [i % 2 for i in range(16)]
    paths = make_inputs(tmp_path / "in", labels, kind="volume", size=32, seed=10, square=8)
    m = train(_cfg(input_kind="volume", epochs=2, device="auto"), paths, labels, tmp_path / "out")
    assert m["device"].startswith("cuda")
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["device"].startswith("cuda")
    pred = predict(tmp_path / "out" / "checkpoint.pt", paths, device="cuda")
    assert len(pred) == 16


# --------------------------------------------------------------------------- issue 16


def test_affine_augmentation_is_seeded_and_in_plane(tmp_path: Path) -> None:
    # slice d of the volume is the constant d + 1: an in-plane rotation / zoom keeps every slice
    # constant in its interior; a transform mixing the depth axis would not
    depth, side = 4, 16
    vol = np.broadcast_to(
        np.arange(1, depth + 1, dtype=np.float32)[:, None, None], (depth, side, side)
    )
    path = tmp_path / "v.npz"
    np.savez(path, x=vol[None].copy(), kind=np.array("volume"))
    off = {"flip_prob": 0.0, "rot90_prob": 0.0, "intensity_prob": 0.0, "affine_prob": 1.0}
    cfg = TrainConfig(input_kind="volume", rotate_range=90.0, zoom_range=0.3, **off)
    assert cfg.affine and not TrainConfig(**off).affine
    runs = []
    for _ in range(2):
        ds = NpzDataset([path], [0], "volume", transform=augmentations(cfg, (depth, side, side), 3))
        runs.append([ds[0]["x"].numpy() for _ in range(3)])
    assert all(np.array_equal(a, b) for a, b in zip(*runs, strict=True))  # seeded
    for x in runs[0]:
        assert x.shape == (1, depth, side, side) and not np.array_equal(x, vol[None])
        centre = x[0, :, side // 2 - 2 : side // 2 + 2, side // 2 - 2 : side // 2 + 2]
        assert np.allclose(centre, np.arange(1, depth + 1)[:, None, None], atol=1e-4)
    # translation only: a bright dot moves by at most translate_range x side, mass kept
    img = np.zeros((1, 1, 32, 32), dtype=np.float32)
    img[0, 0, 14:18, 14:18] = 1.0
    dot = tmp_path / "dot.npz"
    np.savez(dot, x=img, kind=np.array("slices"))
    cfg = TrainConfig(input_kind="slice", translate_range=0.25, **off)
    ds = NpzDataset([dot], [0], "slice", transform=augmentations(cfg, (32, 32), 4))
    shifts = []
    for _ in range(6):
        x = ds[0]["x"].numpy()[0]
        assert x.sum() == pytest.approx(16.0, abs=0.05)
        ys, xs = np.nonzero(x > 0.5)
        if len(ys):
            shifts.append((ys.mean() - 15.5, xs.mean() - 15.5))
    assert shifts and all(abs(a) <= 8.5 and abs(b) <= 8.5 for a, b in shifts)
    assert any(abs(a) > 1 or abs(b) > 1 for a, b in shifts)


def test_freeze_backbone_trains_the_head_only_from_pretrained_weights(tmp_path: Path) -> None:
    labels = [i % 2 for i in range(8)]
    paths = make_inputs(tmp_path / "in", labels, kind="slices25d", size=16, seed=11)
    torch.manual_seed(5)
    src = train_module.build_network("resnet10", spatial_dims=2, in_channels=1, num_classes=2)
    for m in src.modules():  # non-trivial BatchNorm statistics, which must not move either
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    (tmp_path / "weights").mkdir()
    torch.save(src.state_dict(), tmp_path / "weights" / "r10.pth")
    cfg = _cfg(input_kind="slices25d", epochs=2, val_fraction=0.0, patience=None,
               pretrained="weights/r10.pth", freeze_backbone=True)  # fmt: skip
    init = train_module.build_model(cfg, 1, 3, load_weights=False).head.weight.detach().clone()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)  # the path is relative to the project (the working directory)
        train(cfg, paths, labels, tmp_path / "out")
    ckpt = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=True)
    sd = ckpt["state_dict"]
    for k, v in src.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(sd[f"backbone.{k}"], v), k
    assert not torch.equal(sd["head.weight"], init)  # the head trained
    model, _ = load_model(tmp_path / "out" / "checkpoint.pt")
    assert all(p.requires_grad for p in model.parameters())  # rebuilt: Grad-CAM needs gradients


def test_missing_pretrained_file_names_the_key_and_path(tmp_path: Path) -> None:
    labels = [0, 1, 0, 1]
    paths = make_inputs(tmp_path, labels, kind="volume", size=8, seed=12)
    cfg = _cfg(input_kind="volume", epochs=1, val_fraction=0.0, pretrained="weights/nope.pth")
    with pytest.raises(ConfigError, match=r"train\.pretrained: .*weights/nope\.pth not found"):
        train(cfg, paths, labels, tmp_path / "o")
    assert resolve_pretrained(str(paths[0])) == Path(paths[0])


def test_presets_follow_the_papers() -> None:
    h = TrainConfig.preset("habitat_25d")  # paper 000: 200 epochs, weights fixed at the end
    assert (h.epochs, h.lr, h.batch_size) == (200, 1e-3, 32)
    assert h.val_fraction == 0.0 and h.patience is None and not h.class_weighted
    h3 = TrainConfig.preset("habitat_3d")  # flips on x, y, z only
    assert h3.network == "resnet50" and h3.lr == 1e-2 and h3.flip_prob > 0
    assert h3.rot90_prob == 0.0 and h3.intensity_prob == 0.0 and not h3.affine
    er = TrainConfig.preset("recurrence_25d")  # paper 002: rotation, scaling, flips, shifts
    assert (er.rotate_range, er.zoom_range, er.translate_range) == (15.0, 0.1, 0.1)
    assert er.affine and er.flip_prob > 0 and er.rot90_prob == 0.0
    assert TrainConfig.preset("mvi_3d").network == "r3d_18"
    for bad in ({"rotate_range": -1.0}, {"zoom_range": 1.0}, {"affine_prob": 2.0}):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)
