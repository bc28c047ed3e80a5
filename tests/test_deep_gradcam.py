"""Grad-CAM and Score-CAM maps and overlays for 2-D, 2.5-D and 3-D models (CPU, tiny inputs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hccrad.deep.gradcam import cam as cam_map
from hccrad.deep.gradcam import gradcam, gradcam_overlay, scorecam, target_layer
from hccrad.deep.nets import MultiBranch25D, SliceClassifier, VolumeClassifier, build_network
from hccrad.deep.train import TrainConfig, load_model, train
from hccrad.errors import ConfigError, InputError

torch.set_num_threads(1)
PNG = b"\x89PNG\r\n\x1a\n"
SIZE, SQUARE = 64, 12


def _write(path: Path, x: np.ndarray) -> str:
    np.savez(path, x=x, kind=np.array("slices"), z=np.arange(len(x)), meta=np.array("{}"))
    return str(path)


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A slice classifier trained on noise vs noise + bright square (64 x 64)."""
    root = tmp_path_factory.mktemp("cam")
    rng = np.random.default_rng(0)
    paths, labels, held = [], [], []
    for i in range(34):
        y = i % 2
        x = rng.normal(0, 0.5, (1, 1, SIZE, SIZE)).astype(np.float32)
        box = None
        if y:
            a, b = (int(v) for v in rng.integers(0, SIZE - SQUARE, 2))
            x[0, 0, a : a + SQUARE, b : b + SQUARE] += 2.0
            box = (a, b)
        if i < 24:
            paths.append(_write(root / f"p{i}.npz", x))
            labels.append(y)
        else:
            held.append((x[0], box))
    cfg = TrainConfig(
        network="resnet10",
        input_kind="slice",
        optimizer="sgd",
        lr=0.01,
        epochs=4,
        batch_size=8,
        val_fraction=0.25,
        patience=None,
    )
    train(cfg, paths, labels, root / "out")
    model, _ = load_model(root / "out" / "checkpoint.pt")
    return {"root": root, "model": model, "held": held}


def test_target_layers_per_family() -> None:
    r = build_network("resnet18", spatial_dims=2, in_channels=1, num_classes=2)
    d = build_network("densenet121", spatial_dims=3, in_channels=1, num_classes=2)
    assert target_layer(r) == "layer4"
    assert target_layer(d) == "class_layers.relu"
    assert target_layer(SliceClassifier(r, 2)) == "backbone.layer4"
    assert target_layer(VolumeClassifier(d, 2)) == "backbone.class_layers.relu"
    two = build_network("resnet10_2stage", spatial_dims=2, in_channels=3, num_classes=2)
    assert target_layer(MultiBranch25D(two, 3, 2)) == "backbone.layer2"


def test_cam_is_higher_inside_the_planted_square(toy: dict) -> None:
    model = toy["model"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inside, outside = [], []
    for x, box in toy["held"]:
        cam = gradcam(model, x)
        assert cam.shape == (SIZE, SIZE) and cam.dtype == np.float32
        assert cam.min() >= 0.0 and cam.max() <= 1.0
        if box is None:
            continue
        assert cam.std() > 0.05  # not constant
        mask = np.zeros((SIZE, SIZE), dtype=bool)
        mask[box[0] : box[0] + SQUARE, box[1] : box[1] + SQUARE] = True
        inside.append(cam[mask].mean())
        outside.append(cam[~mask].mean())
    assert np.mean(inside) > np.mean(outside) + 0.05
    # the caller's model is untouched: same weights, no hooks left behind
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert not model.backbone.layer4._forward_hooks
    assert not model.backbone.layer4._backward_hooks


def test_overlay_png_is_written_atomically(toy: dict, tmp_path: Path) -> None:
    x, _ = next(h for h in toy["held"] if h[1] is not None)
    out = tmp_path / "figs" / "cam.png"
    cam = gradcam_overlay(toy["model"], x, out, "patient T1 — positive")
    assert out.read_bytes()[:8] == PNG
    assert not list(out.parent.glob(".*tmp"))
    assert np.array_equal(cam, gradcam(toy["model"], x))


def test_mil_bag_cam_per_slice(toy: dict, tmp_path: Path) -> None:
    """A bag of slices (N, C, H, W) given to a slice model: one CAM per slice, the same as the
    slice's own, and the slice with the planted square is the most likely one."""
    blank = next(h[0] for h in toy["held"] if h[1] is None)
    square = next(h[0] for h in toy["held"] if h[1] is not None)
    bag = np.stack([blank, square, blank])
    out = tmp_path / "bag.png"
    cam = gradcam_overlay(toy["model"], bag, out, "MIL bag")
    assert cam.shape == (3, SIZE, SIZE)
    for i in range(3):
        np.testing.assert_array_equal(cam[i], gradcam(toy["model"], bag[i]))
    assert out.read_bytes()[:8] == PNG
    model = toy["model"].eval()
    with torch.no_grad():
        prob = torch.softmax(model(torch.as_tensor(bag)), 1)[:, 1].numpy()
    assert int(np.argmax(prob)) == 1


def test_25d_cam_per_instance(tmp_path: Path) -> None:
    torch.manual_seed(0)
    backbone = build_network("resnet10", spatial_dims=2, in_channels=1, num_classes=2)
    model = MultiBranch25D(backbone, n_branches=3, num_classes=2)
    x = np.random.default_rng(1).normal(size=(3, 1, SIZE, SIZE)).astype(np.float32)
    cam = gradcam_overlay(model, x, tmp_path / "c25.png", "2.5D")
    assert cam.shape == (3, SIZE, SIZE)
    assert cam.max() == pytest.approx(1.0) and cam.min() == pytest.approx(0.0)
    assert (tmp_path / "c25.png").read_bytes()[:8] == PNG
    assert gradcam(model, x[None]).shape == (3, SIZE, SIZE)  # a batch axis of 1 is accepted


@pytest.mark.parametrize("name", ["resnet10", "densenet121"])
def test_3d_cam_shape_and_overlay(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build_network(name, spatial_dims=3, in_channels=1, num_classes=2)
    model = VolumeClassifier(net, 2) if name == "resnet10" else net  # bare MONAI nets work too
    x = np.random.default_rng(2).normal(size=(1, 32, 32, 32)).astype(np.float32)
    cam = gradcam_overlay(model, x, tmp_path / "c3.png", name)
    assert cam.shape == (32, 32, 32)
    assert np.isfinite(cam).all() and cam.min() >= 0.0 and cam.max() <= 1.0
    assert (tmp_path / "c3.png").read_bytes()[:8] == PNG


def test_bad_sample_or_layer_raises() -> None:
    model = SliceClassifier(
        build_network("resnet10", spatial_dims=2, in_channels=1, num_classes=2), 2
    )
    with pytest.raises(InputError, match="needs one sample"):
        gradcam(model, np.zeros((2, 3, 1, 16, 16), dtype=np.float32))
    with pytest.raises(ConfigError, match="not found"):
        gradcam(model, np.zeros((1, 32, 32), dtype=np.float32), layer="backbone.layer9")


def test_meta_json_is_ignored_by_cam(tmp_path: Path) -> None:
    """Inputs come straight from the .npz contract (x is all Grad-CAM needs)."""
    path = tmp_path / "p.npz"
    x = np.random.default_rng(3).normal(size=(1, 1, 32, 32)).astype(np.float32)
    np.savez(path, x=x, kind=np.array("slices"), meta=np.array(json.dumps({"patient": "P"})))
    model = SliceClassifier(
        build_network("resnet10", spatial_dims=2, in_channels=1, num_classes=2), 2
    )
    with np.load(path) as data:
        assert gradcam(model, data["x"][0]).shape == (32, 32)


# --------------------------------------------------------------------------- Score-CAM


def _scorecam_by_hand(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, c: int):
    """Wang et al. 2020, Algorithm 1, one channel at a time: upsample A_k, min-max scale it to
    H_k, score S_k = p_c(X o H_k) - p_c(black baseline), a = softmax(S), ReLU(sum_k a_k A_k).
    ``x``: one slice (C, H, W) or a 2.5-D sample (N, C, H, W) (a channel masks every instance
    with its own map)."""
    model.eval()
    got = []
    hook = layer.register_forward_hook(lambda _m, _a, out: got.append(out))
    with torch.no_grad():
        model(x[None])
        hook.remove()
        acts = got[0]  # (B', K, h, w)
        base = torch.softmax(model(torch.zeros_like(x)[None]), 1)[0, c]
        scores, maps = [], []
        for k in range(acts.shape[1]):
            up = torch.nn.functional.interpolate(
                acts[:, k : k + 1], size=x.shape[-2:], mode="bilinear", align_corners=False
            )[:, 0]  # (B', H, W)
            lo = up.amin(dim=(1, 2), keepdim=True)
            hi = up.amax(dim=(1, 2), keepdim=True)
            if bool((hi == lo).all()):
                continue
            h = torch.where(hi > lo, (up - lo) / (hi - lo).clamp_min(1e-12), 0.0)
            masked = x * (h[:, None] if x.ndim == 4 else h)
            scores.append(torch.softmax(model(masked[None]), 1)[0, c] - base)
            maps.append(up)
        weights = torch.softmax(torch.stack(scores), 0)
        out = torch.relu(sum(w * m for w, m in zip(weights, maps, strict=True)))
    out = (out - out.min()) / (out.max() - out.min())
    return (out if x.ndim == 4 else out[0]).numpy(), len(maps)


def test_scorecam_matches_the_formula_on_a_slice_model() -> None:
    torch.manual_seed(0)
    net = build_network("resnet10_2stage", spatial_dims=2, in_channels=1, num_classes=2)
    model = SliceClassifier(net, 2)
    x = torch.randn(1, 32, 32)
    x[0, 8:20, 8:20] += 2.0
    model.train()  # Score-CAM runs in eval mode and restores the mode
    expected, kept = _scorecam_by_hand(model, model.backbone.layer2, x, c=1)
    model.train()
    got = scorecam(model, x.numpy(), batch_size=7)  # chunks that do not divide the channels
    assert model.training and not model.backbone.layer2._forward_hooks
    assert 0 < kept <= 128
    assert got.shape == (32, 32) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # the other class gives another map; Grad-CAM is a different method
    assert not np.allclose(scorecam(model, x, class_idx=0), got, atol=1e-3)
    assert not np.allclose(cam_map(model, x, "gradcam"), got, atol=1e-3)


def test_scorecam_matches_the_formula_on_a_25d_model(tmp_path: Path) -> None:
    torch.manual_seed(1)
    backbone = build_network("resnet10_2stage", spatial_dims=2, in_channels=2, num_classes=2)
    model = MultiBranch25D(backbone, n_branches=3, num_classes=2)
    x = torch.randn(3, 2, 32, 32)
    expected, _ = _scorecam_by_hand(model, model.backbone.layer2, x, c=1)
    got = scorecam(model, x)
    assert got.shape == (3, 32, 32)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    heat = gradcam_overlay(model, x, tmp_path / "s.png", "2.5D", method="scorecam")
    np.testing.assert_array_equal(heat, got)
    assert (tmp_path / "s.png").read_bytes()[:8] == PNG
    with pytest.raises(ConfigError, match="unknown CAM method"):
        gradcam_overlay(model, x, tmp_path / "t.png", method="lime")


def test_scorecam_of_a_volume_model() -> None:
    torch.manual_seed(2)
    rng = np.random.default_rng(4)
    two = build_network("resnet10_2stage", spatial_dims=3, in_channels=1, num_classes=2)
    heat = scorecam(VolumeClassifier(two, 2), rng.normal(size=(1, 32, 32, 32)))  # 4^3 maps
    assert heat.shape == (32, 32, 32) and heat.min() == 0.0 and heat.max() == 1.0
    # MONAI's ResNet-10 leaves 1 x 1 x 1 maps of 32^3: all constant, nothing locates, map 0
    deep = build_network("resnet10", spatial_dims=3, in_channels=1, num_classes=2)
    assert not scorecam(VolumeClassifier(deep, 2), rng.normal(size=(1, 32, 32, 32))).any()
