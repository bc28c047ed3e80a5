"""Networks, the 2.5-D weight-sharing model, the fusion head and local pretrained weights."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from monai.networks.nets import densenet as mdensenet
from monai.networks.nets import resnet as mresnet
from torch import nn

from hccrad.deep.nets import (
    FEATURE_SIZES,
    NETWORKS,
    FusionHead,
    MultiBranch25D,
    SliceClassifier,
    VolumeClassifier,
    build_network,
    feature_size,
    features,
    head_name,
    load_pretrained,
)
from hccrad.errors import ConfigError

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt of MONAI to fetch weights fails the test."""

    def _boom(*_a: object, **_k: object) -> None:
        raise AssertionError("MONAI tried to download pretrained weights")

    monkeypatch.setattr(mresnet, "get_pretrained_resnet_medicalnet", _boom)
    monkeypatch.setattr(mresnet, "_load_state_dict", _boom)
    monkeypatch.setattr(mdensenet, "_load_state_dict", _boom)
    monkeypatch.setattr(mdensenet, "load_state_dict_from_url", _boom)


@pytest.mark.parametrize(
    ("name", "dims"),
    [(n, d) for n in NETWORKS for d in (2, 3) if not (n == "r3d_18" and d == 2)],  # r3d_18: 3-D
)
def test_every_network_builds_with_output_and_feature_size(name: str, dims: int) -> None:
    torch.manual_seed(0)
    model = build_network(name, spatial_dims=dims, in_channels=2, num_classes=3).eval()
    x = torch.randn(2, 2, *([32] * dims))
    with torch.no_grad():
        assert model(x).shape == (2, 3)
        f = features(model, x)
    assert f.shape == (2, FEATURE_SIZES[name])
    assert feature_size(model) == FEATURE_SIZES[name]
    conv = nn.Conv3d if dims == 3 else nn.Conv2d
    assert any(isinstance(m, conv) for m in model.modules())
    # the feature hook is removed again
    assert not model.get_submodule(head_name(model))._forward_pre_hooks


def test_bad_names_and_download_flags_raise() -> None:
    with pytest.raises(ConfigError, match="unknown network"):
        build_network("vgg16", spatial_dims=2, in_channels=1, num_classes=2)
    with pytest.raises(ConfigError, match="spatial_dims"):
        build_network("resnet18", spatial_dims=4, in_channels=1, num_classes=2)
    with pytest.raises(ConfigError, match="never used"):
        build_network("resnet18", spatial_dims=3, in_channels=1, num_classes=2, pretrained=True)


def test_features_equals_head_input() -> None:
    torch.manual_seed(0)
    model = build_network("resnet18", spatial_dims=2, in_channels=1, num_classes=2).eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        f = features(model, x)
        assert torch.allclose(model.fc(f), model(x), atol=1e-6)


def test_multibranch25d_shares_one_backbone() -> None:
    torch.manual_seed(0)
    backbone = build_network("resnet10", spatial_dims=2, in_channels=1, num_classes=2)
    n_backbone = sum(p.numel() for n, p in backbone.named_parameters() if not n.startswith("fc."))
    model = MultiBranch25D(backbone, n_branches=5, num_classes=2).eval()
    n_total = sum(p.numel() for p in model.parameters())
    assert n_total == n_backbone + 5 * 512 * 2 + 2  # one backbone + the head
    assert sum(isinstance(m, nn.Conv2d) and m.in_channels == 1 for m in model.modules()) == 1
    assert model.n_features == 5 * 512
    x = torch.randn(2, 5, 1, 32, 32)
    with torch.no_grad():
        base = model(x)
        assert base.shape == (2, 2)
        assert features(model, x).shape == (2, 5 * 512)
        for i in range(5):
            x2 = x.clone()
            x2[:, i] += 1.0
            assert not torch.allclose(model(x2), base), f"branch {i} has no effect"
        # weight sharing: the branch features are the backbone applied to each instance
        f = model.forward_features(x).reshape(2, 5, 512)
        assert torch.allclose(f[:, 3], model.backbone(x[:, 3]), atol=1e-5)
    with pytest.raises(ValueError):
        model(torch.randn(2, 4, 1, 32, 32))


def test_slice_and_volume_classifiers() -> None:
    torch.manual_seed(0)
    s = SliceClassifier(build_network("resnet18", spatial_dims=2, in_channels=3, num_classes=2), 2)
    v = VolumeClassifier(build_network("resnet10", spatial_dims=3, in_channels=1, num_classes=2), 4)
    with torch.no_grad():
        assert s.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 2)
        assert features(s, torch.randn(2, 3, 32, 32)).shape == (2, 512)
        assert v.eval()(torch.randn(2, 1, 16, 16, 16)).shape == (2, 4)
    with pytest.raises(ValueError):
        s(torch.randn(2, 3, 8, 32, 32))


def test_fusion_head_shapes() -> None:
    torch.manual_seed(0)
    head = FusionHead(512, 12, 2, hidden=32)
    deep, tab = torch.randn(4, 512), torch.randn(4, 12)
    assert head(deep, tab).shape == (4, 2)
    assert head.forward_features(deep, tab).shape == (4, 32)
    assert FusionHead(512, 12, 3, hidden=0)(deep, tab).shape == (4, 3)
    assert FusionHead(8, 0, 2)(torch.randn(4, 8)).shape == (4, 2)
    with pytest.raises(ValueError, match="expects"):
        head(deep, torch.randn(4, 11))


# --------------------------------------------------------------------------- pretrained


def _non_head(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}


def test_load_pretrained_round_trip_medicalnet_style(tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = build_network("resnet18", spatial_dims=3, in_channels=1, num_classes=2)
    path = tmp_path / "resnet_18_23dataset.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    torch.manual_seed(2)
    dst = build_network("resnet18", spatial_dims=3, in_channels=1, num_classes=2, pretrained=path)
    fresh = build_network("resnet18", spatial_dims=3, in_channels=1, num_classes=2)
    for k, v in _non_head(src).items():
        assert torch.equal(dst.state_dict()[k], v), k
    assert not torch.equal(dst.fc.weight, src.fc.weight)  # the head keeps its own init
    assert dst.fc.weight.shape == fresh.fc.weight.shape


def test_load_pretrained_into_wrapper_with_head_and_prefix(tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = build_network("resnet10", spatial_dims=2, in_channels=1, num_classes=5)
    path = tmp_path / "w.pt"
    torch.save({f"module.backbone.{k}": v for k, v in src.state_dict().items()}, path)
    torch.manual_seed(2)
    model = SliceClassifier(
        build_network("resnet10", spatial_dims=2, in_channels=1, num_classes=2), 2
    )
    report = load_pretrained(model, path)
    assert "fc.weight" in report["ignored"]
    for k, v in _non_head(src).items():
        assert torch.equal(model.backbone.state_dict()[k], v), k


def test_load_pretrained_adapts_rgb_stem_and_maps_densenet_keys(tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = build_network("densenet121", spatial_dims=2, in_channels=3, num_classes=1000)
    tv = {}  # torchvision's layout: no "layers.", old-style "norm.1", "classifier."
    for k, v in src.state_dict().items():
        k = re.sub(r"\.layers\.(norm|relu|conv)([12])\.", r".\1.\2.", k)
        tv[k.replace("class_layers.out.", "classifier.")] = v
    path = tmp_path / "densenet121.pth"
    torch.save(tv, path)
    dst = build_network("densenet121", spatial_dims=2, in_channels=1, num_classes=2)
    report = load_pretrained(dst, path)
    assert report["adapted"] == ["features.conv0.weight"]
    w = src.state_dict()["features.conv0.weight"]
    assert torch.allclose(dst.features.conv0.weight, w.sum(dim=1, keepdim=True))
    key = "features.denseblock4.denselayer16.layers.conv2.weight"
    assert torch.equal(dst.state_dict()[key], src.state_dict()[key])
    with pytest.raises(ConfigError, match="conv0"):
        load_pretrained(dst, path, adapt_in_channels=False)


def test_load_pretrained_wrong_shape_or_missing_file_names_the_file(tmp_path: Path) -> None:
    src = build_network("resnet10", spatial_dims=3, in_channels=1, num_classes=2)
    path = tmp_path / "medicalnet_r10.pth"
    torch.save({"state_dict": src.state_dict()}, path)
    dst = build_network("resnet10", spatial_dims=2, in_channels=1, num_classes=2)
    with pytest.raises(ConfigError) as err:
        load_pretrained(dst, path)
    msg = str(err.value)
    assert str(path) in msg and "conv1.weight" in msg and "shape" in msg
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "nope.pth"))):
        build_network(
            "resnet10",
            spatial_dims=2,
            in_channels=1,
            num_classes=2,
            pretrained=tmp_path / "nope.pth",
        )
    other = build_network("resnet18", spatial_dims=3, in_channels=1, num_classes=2)
    with pytest.raises(ConfigError, match="missing keys"):
        load_pretrained(other, path)


def test_load_pretrained_non_strict_loads_what_fits(tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = build_network("resnet10", spatial_dims=2, in_channels=1, num_classes=2)
    sd = src.state_dict()
    sd["layer4.0.conv2.weight"] = torch.zeros(1, 1, 3, 3)
    path = tmp_path / "w.pt"
    torch.save(sd, path)
    dst = build_network("resnet10", spatial_dims=2, in_channels=1, num_classes=2)
    with pytest.raises(ConfigError, match=r"layer4\.0\.conv2\.weight"):
        load_pretrained(dst, path)
    report = load_pretrained(dst, path, strict_shapes=False)
    assert any("layer4.0.conv2.weight" in s for s in report["skipped"])
    assert torch.equal(dst.layer1[0].conv1.weight, src.layer1[0].conv1.weight)
    assert not torch.equal(dst.layer4[0].conv2.weight, src.layer4[0].conv2.weight)


def test_unreadable_file_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    path.write_text("not a checkpoint")
    model = build_network("resnet10", spatial_dims=2, in_channels=1, num_classes=2)
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_pretrained(model, path)


# --------------------------------------------------------------------------- published layouts
# Key lists written from the upstream sources (not from our networks): torchvision's
# models/resnet.py (ImageNet ResNet-18/34), MedicalNet's models/resnet.py (3-D, "module."
# prefixes, a conv_seg head) and torchvision's models/video/resnet.py (r3d_18).

_STAGES = (64, 128, 256, 512)


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()
    }


def _resnet_keys(dims: int, layers: list[int], shortcut: str, block: str) -> dict:
    """torchvision (2-D) / MedicalNet (3-D) ResNet: conv1, bn1, layerN.M.{conv,bn}K, downsample."""
    k3, k1 = (3,) * dims, (1,) * dims
    keys = {"conv1.weight": (64, 3 if dims == 2 else 1, *(7,) * dims), **_bn("bn1", 64)}
    c_in = 64
    for i, (planes, n) in enumerate(zip(_STAGES, layers, strict=True)):
        c_out = planes * (4 if block == "bottleneck" else 1)
        for j in range(n):
            p, cin = f"layer{i + 1}.{j}.", c_in if j == 0 else c_out
            if block == "bottleneck":
                convs = [(planes, cin, k1), (planes, planes, k3), (c_out, planes, k1)]
            else:
                convs = [(planes, cin, k3), (planes, planes, k3)]
            for m, (a, b, k) in enumerate(convs, start=1):
                keys[f"{p}conv{m}.weight"] = (a, b, *k)
                keys |= _bn(f"{p}bn{m}", a)
            if j == 0 and (i > 0 or c_in != c_out) and shortcut == "B":
                keys[f"{p}downsample.0.weight"] = (c_out, c_in, *k1)
                keys |= _bn(f"{p}downsample.1", c_out)
        c_in = c_out
    return keys


def _r3d18_keys() -> dict:
    """torchvision VideoResNet(BasicBlock, [Conv3DSimple] * 4, [2, 2, 2, 2], BasicStem)."""
    keys = {"stem.0.weight": (64, 3, 3, 7, 7), **_bn("stem.1", 64)}
    c_in = 64
    for i, c in enumerate(_STAGES):
        for j in range(2):
            p, cin = f"layer{i + 1}.{j}.", c_in if j == 0 else c
            keys[f"{p}conv1.0.weight"] = (c, cin, 3, 3, 3)
            keys |= _bn(f"{p}conv1.1", c)
            keys[f"{p}conv2.0.weight"] = (c, c, 3, 3, 3)
            keys |= _bn(f"{p}conv2.1", c)
            if j == 0 and i > 0:
                keys[f"{p}downsample.0.weight"] = (c, c_in, 1, 1, 1)
                keys |= _bn(f"{p}downsample.1", c)
        c_in = c
    return keys | {"fc.weight": (400, 512), "fc.bias": (400,)}


def _fill(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.tensor(7) if k.endswith("num_batches_tracked") else torch.rand(s, generator=g)
        for k, s in shapes.items()
    }


def _assert_loaded(model: nn.Module, src: dict[str, torch.Tensor], stem: str) -> None:
    """Every body tensor equals the file's; the stem is the file's summed over its channels."""
    own = model.state_dict()
    body = [k for k in src if not k.startswith(("fc.", "conv_seg.", stem))]
    body = [k for k in body if not k.endswith("num_batches_tracked")]
    assert body and all(torch.equal(own[k], src[k]) for k in body)
    assert torch.allclose(own[stem], src[stem].sum(dim=1, keepdim=True))


@pytest.mark.parametrize(
    ("name", "layers"), [("resnet18", [2, 2, 2, 2]), ("resnet34", [3, 4, 6, 3])]
)
def test_torchvision_imagenet_resnet_loads_into_the_2d_resnet(
    tmp_path: Path, name: str, layers: list[int]
) -> None:
    shapes = _resnet_keys(2, layers, "B", "basic") | {"fc.weight": (1000, 512), "fc.bias": (1000,)}
    src = _fill(shapes, seed=3)
    path = tmp_path / f"{name}-imagenet.pth"
    torch.save(src, path)  # torchvision's file: a plain state dict
    model = build_network(name, spatial_dims=2, in_channels=1, num_classes=2)
    assert set(model.state_dict()) == set(shapes)  # the same names (torchvision-like MONAI)
    report = load_pretrained(model, path)
    assert report["adapted"] == ["conv1.weight"] and {"fc.weight", "fc.bias"} <= set(
        report["ignored"]
    )
    _assert_loaded(model, src, "conv1.weight")
    assert model.fc.weight.shape == (2, 512)  # the head is replaced, not loaded
    # the same file into the 2.5-D wrapper's shared backbone
    wrapped = MultiBranch25D(
        build_network(name, spatial_dims=2, in_channels=1, num_classes=2), 5, 2
    )
    load_pretrained(wrapped, path)
    _assert_loaded(wrapped.backbone, src, "conv1.weight")


@pytest.mark.parametrize(
    ("name", "layers", "shortcut", "block"),
    [("resnet10", [1, 1, 1, 1], "B", "basic"), ("resnet18", [2, 2, 2, 2], "A", "basic")],
)
def test_medicalnet_checkpoint_loads_into_the_3d_resnet(
    tmp_path: Path, name: str, layers: list[int], shortcut: str, block: str
) -> None:
    shapes = _resnet_keys(3, layers, shortcut, block)
    shapes |= {"conv_seg.0.weight": (512, 32, 2, 2, 2), "conv_seg.0.bias": (32,)}
    shapes |= _bn("conv_seg.1", 32) | {"conv_seg.3.weight": (32, 32, 3, 3, 3)}
    src = _fill(shapes, seed=4)
    path = tmp_path / f"{name}_23dataset.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.items()}}, path)
    model = build_network(name, spatial_dims=3, in_channels=1, num_classes=2)
    report = load_pretrained(model, path)
    assert report["adapted"] == [] and "conv_seg.0.weight" in report["ignored"]
    own = model.state_dict()
    body = [k for k in src if not k.startswith("conv_seg.") and "num_batches" not in k]
    assert all(torch.equal(own[k], src[k]) for k in body)  # single-channel conv1 included


def test_medicalnet_resnet50_layout_matches_the_3d_resnet50() -> None:
    shapes = _resnet_keys(3, [3, 4, 6, 3], "B", "bottleneck")
    model = build_network("resnet50", spatial_dims=3, in_channels=1, num_classes=2)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("fc.")}
    assert own == shapes


def test_torchvision_r3d_18_loads_into_r3d_18(tmp_path: Path) -> None:
    shapes = _r3d18_keys()
    model = build_network("r3d_18", spatial_dims=3, in_channels=1, num_classes=2)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert own == shapes | {
        "stem.0.weight": (64, 1, 3, 7, 7),
        "fc.weight": (2, 512),
        "fc.bias": (2,),
    }
    src = _fill(shapes, seed=5)
    path = tmp_path / "r3d_18-b3b3357e.pth"
    torch.save(src, path)
    report = load_pretrained(model, path)
    assert report["adapted"] == ["stem.0.weight"]
    _assert_loaded(model, src, "stem.0.weight")
    model.eval()
    with torch.no_grad():
        x = torch.randn(2, 1, 8, 16, 16)
        assert model(x).shape == (2, 2) and features(model, x).shape == (2, 512)
    wrapped = VolumeClassifier(
        build_network("r3d_18", spatial_dims=3, in_channels=1, num_classes=2), 2
    )
    load_pretrained(wrapped, path)
    _assert_loaded(wrapped.backbone, src, "stem.0.weight")
    with pytest.raises(ConfigError, match="3-D"):
        build_network("r3d_18", spatial_dims=2, in_channels=1, num_classes=2)


def test_a_file_of_another_layout_lists_missing_unexpected_and_misshaped_keys(
    tmp_path: Path,
) -> None:
    src = _fill(_r3d18_keys(), seed=6)
    path = tmp_path / "r3d_18.pth"
    torch.save(src, path)
    model = build_network("resnet18", spatial_dims=3, in_channels=1, num_classes=2)
    with pytest.raises(ConfigError) as err:
        load_pretrained(model, path, config_key="train.pretrained")
    msg = str(err.value)
    assert msg.startswith(f"train.pretrained: pretrained weights file {path} does not fit")
    assert "missing keys [bn1.bias" in msg and "unexpected keys [layer1.0.conv1.0.weight" in msg
    src["layer4.1.conv2.0.weight"] = torch.zeros(512, 512, 1, 1, 1)
    torch.save(src, path)
    r3d = build_network("r3d_18", spatial_dims=3, in_channels=1, num_classes=2)
    with pytest.raises(ConfigError, match=r"shape mismatches \[layer4\.1\.conv2\.0\.weight: file"):
        load_pretrained(r3d, path)
    with pytest.raises(
        ConfigError,
        match=re.escape(
            f"train.pretrained: pretrained weights file {tmp_path / 'x.pth'} not found"
        ),
    ):
        load_pretrained(r3d, tmp_path / "x.pth", config_key="train.pretrained")


# ----------------------------------------------------------------- two-stage ResNet-10 (er_fusion)


def test_resnet10_2stage_is_resnet18_cut_after_its_second_stage() -> None:
    torch.manual_seed(0)
    net = build_network("resnet10_2stage", spatial_dims=2, in_channels=3, num_classes=2)
    r18 = build_network("resnet18", spatial_dims=2, in_channels=3, num_classes=2)
    # stem + two stages of two basic blocks (64, 128 channels): 9 convolutions + 1 shortcut
    convs = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 10 and sum("downsample" in n for n, _ in convs) == 1
    assert [m.out_channels for n, m in convs if n.endswith("conv2")] == [64, 64, 128, 128]
    assert not hasattr(net, "layer3") and not hasattr(net, "layer4")
    assert (net.fc.in_features, net.fc.out_features) == (128, 2)
    # the kept layers have ResNet-18's names and shapes; nothing else is added
    own = {k: v.shape for k, v in net.state_dict().items() if not k.startswith("fc.")}
    ref = {k: v.shape for k, v in r18.state_dict().items() if k.startswith(tuple(
        ("conv1.", "bn1.", "layer1.", "layer2.")))}  # fmt: skip
    assert own == ref
    # 256 x 256 input: stride 2 (stem) x 2 (pool) x 2 (layer2) -> a 32 x 32 map of 128 channels
    x = torch.randn(2, 3, 256, 256)
    net.eval()
    with torch.no_grad():
        maps = net.layer2(net.layer1(net.maxpool(net.act(net.bn1(net.conv1(x))))))
        assert maps.shape == (2, 128, 32, 32)
        torch.testing.assert_close(features(net, x), maps.mean(dim=(2, 3)))


def test_resnet10_2stage_in_the_25d_model_trains_one_step() -> None:
    """Three phase branches share one backbone: 3 x 128 features, one SGD step changes it."""
    torch.manual_seed(0)
    backbone = build_network("resnet10_2stage", spatial_dims=2, in_channels=3, num_classes=2)
    model = MultiBranch25D(backbone, n_branches=3, num_classes=2)
    assert model.branch_features == 128 and model.n_features == 384
    x, y = torch.randn(4, 3, 3, 32, 32), torch.tensor([0, 1, 0, 1])
    assert model.forward_features(x).shape == (4, 384)
    # branch i's features are the backbone on phase i alone (shared weights)
    model.eval()
    with torch.no_grad():
        f = model.forward_features(x)
        torch.testing.assert_close(f[:, 128:256], backbone(x[:, 1]))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = model.backbone.layer2[1].conv2.weight.detach().clone()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert not torch.equal(before, model.backbone.layer2[1].conv2.weight.detach())


def test_resnet18_weights_load_into_the_two_stage_net(tmp_path: Path) -> None:
    torch.manual_seed(1)
    r18 = build_network("resnet18", spatial_dims=2, in_channels=3, num_classes=5)
    torch.save(r18.state_dict(), tmp_path / "r18.pt")
    net = build_network("resnet10_2stage", spatial_dims=2, in_channels=3, num_classes=2)
    info = load_pretrained(net, tmp_path / "r18.pt")  # strict: layer3 / layer4 are ignored
    assert any(k.startswith("layer4.") for k in info["ignored"]) and not info["skipped"]
    torch.testing.assert_close(net.layer2[1].conv2.weight, r18.layer2[1].conv2.weight)
