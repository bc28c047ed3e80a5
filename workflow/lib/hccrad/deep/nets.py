"""Networks (MONAI, no torchvision): ResNet-10..101 and DenseNet-121, 2-D and 3-D, the video
ResNet ``r3d_18`` (3-D only), the two-stage ResNet-10 ``resnet10_2stage``, plus wrappers.

* :func:`build_network` — a bare MONAI network with its classifier head (``fc`` for ResNet,
  ``class_layers.out`` for DenseNet). MONAI's ``pretrained`` download flags are never set; weights
  only come from a local file through :func:`load_pretrained`.
* :class:`SliceClassifier` / :class:`VolumeClassifier` — one backbone on ``(B, C, H, W)`` slices
  (MIL instances) or ``(B, C, D, H, W)`` volumes; :class:`MultiBranch25D` — the habitat study's
  2.5-D model: ONE backbone applied to each of the ``N`` instances of a ``(B, N, C, H, W)`` input
  (weight sharing), penultimate features concatenated (``N * F``), one linear head.
* :class:`FusionHead` — deep features joined with radiomics + clinical vectors in the fully
  connected layer (the early-recurrence study's DLRCR model).
* :func:`features` — penultimate activations (the input of the classifier head).

**Architecture choices.** The stem is the standard one (7-wide conv, stride 2, then max-pool), as
in torchvision's ImageNet ResNets and MedicalNet. 3-D ResNets use MedicalNet's shortcut type and
down-sampling bias per depth (MONAI's ``resnet_params``: A for ResNet-18/34, B otherwise) so that
MedicalNet checkpoints load; 2-D ResNets use shortcut B without bias (torchvision's layout), so
ImageNet state dicts converted from torchvision load key for key. ``r3d_18``
(:class:`VideoResNet3D`) has the key layout of torchvision's Kinetics-400 ``r3d_18`` (``stem.0``,
``layerN.M.conv1.0``, ``downsample``), so those weights load from a local file.
``resnet10_2stage`` (:class:`ResNet2Stage`) is ResNet-18 cut after its second stage: the stem,
then two basic blocks of 64 and two of 128 channels (eight 3x3 convolutions; with the stem and
the head, ten weighted layers), global average pooling to 128 features — the early-recurrence
study's ResNet-10 (MONAI's ``resnet10`` instead keeps four stages of one block each). Its keys
are ResNet-18's for the layers it keeps. Feature sizes: 512 (ResNet-10, 18, 34, r3d_18), 128
(``resnet10_2stage``), 2048 (ResNet-50, 101), 1024 (DenseNet-121).

**Pretrained layouts** (:func:`load_pretrained`): torchvision ImageNet ResNet-18/34 state dicts
into the 2-D ResNets; MedicalNet checkpoints (``{"state_dict": …}``, ``module.`` prefixes, a
``conv_seg`` head) into the 3-D ResNets; torchvision Kinetics ``r3d_18`` into ``r3d_18``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from monai.networks import nets as mnets
from monai.networks.nets.resnet import resnet_params
from torch import nn

from hccrad.errors import ConfigError

log = logging.getLogger(__name__)

#: Supported network names.
NETWORKS: tuple[str, ...] = (
    "resnet10",
    "resnet10_2stage",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "densenet121",
    "r3d_18",
)
#: Penultimate feature size of each network.
FEATURE_SIZES: dict[str, int] = {
    "resnet10": 512,
    "resnet10_2stage": 128,
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "densenet121": 1024,
    "r3d_18": 512,
}
#: Keys of a weights file that belong to a classifier / segmentation head and are never loaded.
HEAD_PREFIXES: tuple[str, ...] = ("fc.", "class_layers.out.", "classifier.", "conv_seg.", "head.")
#: The first convolution, whose input channels may be adapted (see :func:`load_pretrained`).
STEM_KEYS: tuple[str, ...] = ("conv1.weight", "features.conv0.weight", "stem.0.weight")

_RESNETS = {
    "resnet10": mnets.resnet10,
    "resnet18": mnets.resnet18,
    "resnet34": mnets.resnet34,
    "resnet50": mnets.resnet50,
    "resnet101": mnets.resnet101,
}


# --------------------------------------------------------------------------- r3d_18


def _conv_bn(
    c_in: int,
    c_out: int,
    kernel: int | tuple[int, int, int],
    stride: int | tuple[int, int, int] = 1,
    padding: int | tuple[int, int, int] = 0,
    relu: bool = True,
) -> nn.Sequential:
    """``Conv3d`` (no bias) → ``BatchNorm3d`` (→ ``ReLU``): keys ``0.weight`` and ``1.*``."""
    layers: list[nn.Module] = [
        nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm3d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _VideoBlock(nn.Module):
    """Basic residual block of the video ResNet: ``conv1`` (conv-bn-relu), ``conv2`` (conv-bn),
    an optional ``downsample`` (1³ conv-bn) on the shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(c_in, c_out, 3, stride, 1)
        self.conv2 = _conv_bn(c_out, c_out, 3, 1, 1, relu=False)
        self.downsample = (
            _conv_bn(c_in, c_out, 1, stride, relu=False) if stride != 1 or c_in != c_out else None
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual sum, then ReLU."""
        short = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + short)


class VideoResNet3D(nn.Module):
    """R3D-18 (Tran et al. 2018) with the parameter names of torchvision's ``r3d_18``.

    Stem: 3x7x7 convolution, stride 1x2x2 (no max-pool); four stages of two basic blocks
    (64, 128, 256, 512 channels; stride 2 from the second stage on, in every axis); global average
    pool and ``fc``. Input ``(B, C, D, H, W)`` — torchvision's ``(B, 3, T, H, W)`` with depth as
    time. Written here (torchvision is not a dependency) so that Kinetics-400 weights saved from
    torchvision load key for key (:func:`load_pretrained`; the stem adapted to ``C`` channels).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 400) -> None:
        super().__init__()
        self.stem = _conv_bn(in_channels, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3))
        stages, c_in = [], 64
        for i, c_out in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            stages.append(
                nn.Sequential(_VideoBlock(c_in, c_out, stride), _VideoBlock(c_out, c_out, 1))
            )
            c_in = c_out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)``."""
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ResNet2Stage(mnets.ResNet):
    """ResNet-18 cut to its first two stages (64 and 128 channels): 128 penultimate features.

    Built as MONAI's ResNet-18 (same arguments: ``spatial_dims``, ``n_input_channels``,
    ``shortcut_type``…) whose ``layer3`` and ``layer4`` are removed; ``forward`` runs stem →
    ``layer1`` → ``layer2`` → global average pool → ``fc`` (128 → ``num_classes``).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(block="basic", layers=[2, 2, 2, 2], block_inplanes=[64, 128, 256, 512],
                         **kwargs)  # fmt: skip
        del self.layer3, self.layer4
        convs = [m for m in self.layer2.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
        self.n_features = convs[-1].out_channels
        if self.fc is not None:
            self.fc = nn.Linear(self.n_features, self.fc.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` (pooled features without a head)."""
        x = self.act(self.bn1(self.conv1(x)))
        if not self.no_max_pool:
            x = self.maxpool(x)
        x = self.avgpool(self.layer2(self.layer1(x)))
        x = x.view(x.size(0), -1)
        return self.fc(x) if self.fc is not None else x


def build_network(
    name: str,
    *,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    pretrained: str | Path | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A MONAI ResNet / DenseNet-121 (or ``r3d_18``, ``resnet10_2stage``) with a ``num_classes``
    head.

    Args:
        name: One of :data:`NETWORKS`.
        spatial_dims: 2 or 3.
        in_channels: Input channels.
        num_classes: Outputs of the head.
        pretrained: A local weights file (see :func:`load_pretrained`); ``None`` for random init.
        **kwargs: Passed to the MONAI constructor (e.g. ``no_max_pool=True`` for tiny inputs).

    Raises:
        ConfigError: Unknown name, bad dimensions, or weights that do not fit.
    """
    if name not in NETWORKS:
        raise ConfigError(f"unknown network {name!r}; choose one of {', '.join(NETWORKS)}")
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if in_channels < 1 or num_classes < 1:
        raise ConfigError(
            f"in_channels and num_classes must be >= 1 ({in_channels}, {num_classes})"
        )
    if isinstance(pretrained, bool):  # MONAI's meaning (download) is refused
        if pretrained:
            raise ConfigError("MONAI's own pretrained download is never used; pass a local file")
        pretrained = None
    if name == "r3d_18":
        if spatial_dims != 3:
            raise ConfigError("r3d_18 is a 3-D network (spatial_dims 3)")
        model: nn.Module = VideoResNet3D(in_channels, num_classes, **kwargs)
    elif name == "densenet121":
        model = mnets.DenseNet121(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=num_classes,
            pretrained=False,
            **kwargs,
        )
    else:
        if spatial_dims == 3:  # MedicalNet's layout (the two-stage net: ResNet-18's)
            key = "resnet18" if name == "resnet10_2stage" else name
            _block, _layers, shortcut, bias_ds, _ = resnet_params[key]
        else:  # torchvision's layout
            shortcut, bias_ds = "B", False
        opts: dict[str, Any] = {
            "spatial_dims": spatial_dims,
            "n_input_channels": in_channels,
            "num_classes": num_classes,
            "conv1_t_size": 7,
            "conv1_t_stride": 2,
            "shortcut_type": shortcut,
            "bias_downsample": bias_ds,
            **kwargs,
        }
        if name == "resnet10_2stage":
            model = ResNet2Stage(**opts)
        else:
            model = _RESNETS[name](pretrained=False, **opts)
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model


# --------------------------------------------------------------------------- heads and features


def head_name(model: nn.Module) -> str:
    """The final linear layer: ``fc`` (ResNet), ``class_layers.out`` (DenseNet) or ``head``."""
    if isinstance(model, (BackboneClassifier, MultiBranch25D, FusionHead)):
        return "head"
    if isinstance(model, (mnets.ResNet, VideoResNet3D)):
        return "fc"
    if isinstance(model, mnets.DenseNet):
        return "class_layers.out"
    raise ConfigError(f"no known classifier head in {type(model).__name__}")


def feature_size(model: nn.Module) -> int:
    """Size of the penultimate feature vector (the head's ``in_features``)."""
    if isinstance(model, (BackboneClassifier, MultiBranch25D)):
        return model.n_features
    head = model.get_submodule(head_name(model))
    if not isinstance(head, nn.Linear):
        raise ConfigError(f"the head of {type(model).__name__} is not a linear layer")
    return head.in_features


def num_outputs(model: nn.Module) -> int:
    """Number of classes (the head's ``out_features``)."""
    head = model.get_submodule(head_name(model))
    if isinstance(head, nn.Linear):
        return head.out_features
    raise ConfigError(f"the head of {type(model).__name__} is not a linear layer")


def _strip_head(backbone: nn.Module) -> tuple[nn.Module, int]:
    """Replace the backbone's head by Identity; return it and the feature size."""
    name = head_name(backbone)
    n = feature_size(backbone)
    parent_name, _, attr = name.rpartition(".")
    parent = backbone.get_submodule(parent_name) if parent_name else backbone
    setattr(parent, attr, nn.Identity())
    return backbone, n


def _linear(n_in: int, n_out: int) -> nn.Linear:
    lin = nn.Linear(n_in, n_out)
    nn.init.zeros_(lin.bias)
    return lin


class BackboneClassifier(nn.Module):
    """A backbone whose head became Identity, followed by its own linear ``head``.

    ``forward_features(x)`` gives the penultimate activations (the backbone's pooled output).
    """

    input_kind: ClassVar[str] = ""
    input_ndim: ClassVar[int] = 0

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone, self.n_features = _strip_head(backbone)
        self.head = _linear(self.n_features, num_classes)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != self.input_ndim:
            raise ValueError(
                f"{type(self).__name__} expects a {self.input_ndim}-D batch, got {tuple(x.shape)}"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations ``(B, F)``."""
        self._check(x)
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)``."""
        return self.head(self.forward_features(x))


class SliceClassifier(BackboneClassifier):
    """A 2-D backbone on single slices ``(B, C, H, W)`` — the MIL study's slice-level model."""

    input_kind = "slice"
    input_ndim = 4


class VolumeClassifier(BackboneClassifier):
    """A 3-D backbone on volumes ``(B, C, D, H, W)``."""

    input_kind = "volume"
    input_ndim = 5


class MultiBranch25D(nn.Module):
    """2.5-D weight sharing: one 2-D backbone on each of ``N`` instances, features concatenated.

    Input ``(B, N, C, H, W)``; the backbone sees ``(B·N, C, H, W)``, its ``(B·N, F)`` output is
    reshaped to ``(B, N·F)`` (instance order kept) and a linear head gives the logits. There is
    exactly one set of backbone parameters, so the ``N`` branches share weights.
    """

    input_kind: ClassVar[str] = "slices25d"

    def __init__(self, backbone: nn.Module, n_branches: int, num_classes: int) -> None:
        super().__init__()
        if n_branches < 1:
            raise ConfigError(f"n_branches must be >= 1, got {n_branches}")
        self.backbone, self.branch_features = _strip_head(backbone)
        self.n_branches = n_branches
        self.n_features = n_branches * self.branch_features
        self.head = _linear(self.n_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenated branch features ``(B, N·F)``."""
        if x.ndim != 5 or x.shape[1] != self.n_branches:
            raise ValueError(
                f"MultiBranch25D expects (B, {self.n_branches}, C, H, W), got {tuple(x.shape)}"
            )
        b, n = x.shape[:2]
        f = self.backbone(x.reshape(b * n, *x.shape[2:]))
        return f.reshape(b, n * f.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)``."""
        return self.head(self.forward_features(x))


class FusionHead(nn.Module):
    """Deep features + tabular (radiomics, clinical) vectors joined in the fully connected layer.

    ``forward(deep, tabular)``: concatenation ``(B, n_deep + n_tabular)`` → (``hidden > 0``:
    Linear → ReLU → Dropout) → Linear to ``num_classes``. ``hidden=0`` is a single linear layer.
    """

    def __init__(
        self,
        n_deep: int,
        n_tabular: int,
        num_classes: int,
        hidden: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if n_deep < 0 or n_tabular < 0 or n_deep + n_tabular == 0:
            raise ConfigError(f"FusionHead needs inputs (n_deep={n_deep}, n_tabular={n_tabular})")
        self.n_deep, self.n_tabular = n_deep, n_tabular
        n_in = n_deep + n_tabular
        if hidden > 0:
            self.body: nn.Module = nn.Sequential(
                nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout)
            )
            self.head = _linear(hidden, num_classes)
        else:
            self.body = nn.Identity()
            self.head = _linear(n_in, num_classes)

    def forward_features(
        self, deep: torch.Tensor, tabular: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The fused hidden layer (the head's input)."""
        parts = [t for t in (deep, tabular) if t is not None and t.shape[-1] > 0]
        z = torch.cat(parts, dim=1)
        if z.shape[1] != self.n_deep + self.n_tabular:
            raise ValueError(
                f"FusionHead expects {self.n_deep} + {self.n_tabular} inputs, got {z.shape[1]}"
            )
        return self.body(z)

    def forward(self, deep: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, num_classes)``."""
        return self.head(self.forward_features(deep, tabular))


def features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Penultimate activations of ``model`` for ``x`` (the input of the classifier head).

    Wrappers (:class:`SliceClassifier`, :class:`VolumeClassifier`, :class:`MultiBranch25D`) call
    ``forward_features``. Bare MONAI networks get a forward pre-hook on the head (``fc`` for
    ResNet — i.e. everything before ``fc``: stem, ``layer1..4``, global average pool, flatten;
    ``class_layers.out`` for DenseNet) that captures its input; the hook is removed afterwards.
    Grad mode and train/eval mode are left to the caller.
    """
    fwd = getattr(model, "forward_features", None)
    if callable(fwd):
        return fwd(x)
    head = model.get_submodule(head_name(model))
    captured: list[torch.Tensor] = []

    def _hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        captured.append(args[0])

    handle = head.register_forward_pre_hook(_hook)
    try:
        model(x)
    finally:
        handle.remove()
    return captured[0]


# --------------------------------------------------------------------------- pretrained weights


_DENSE_OLD = re.compile(r"^(.*denselayer\d+)\.(norm|relu|conv)\.?([12])\.(.+)$")


def _map_key(key: str) -> str:
    while key.startswith("module."):
        key = key[len("module.") :]
    m = _DENSE_OLD.match(key)
    if m and ".layers." not in key:  # torchvision DenseNet (norm.1 / norm1) -> MONAI (layers.norm1)
        key = f"{m.group(1)}.layers.{m.group(2)}{m.group(3)}.{m.group(4)}"
    return key


def _read_state_dict(path: Path, config_key: str) -> dict[str, torch.Tensor]:
    """The file's tensors, keys mapped by :func:`_map_key`; errors name ``config_key``."""
    if not path.is_file():
        raise ConfigError(f"{config_key}: pretrained weights file {path} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(
            f"{config_key}: pretrained weights file {path} is not a PyTorch state dict: {exc}"
        ) from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{config_key}: pretrained weights file {path} holds no state dict")
    sd = {_map_key(str(k)): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise ConfigError(f"{config_key}: pretrained weights file {path} holds no tensors")
    return sd


def _is_head(key: str) -> bool:
    return key.startswith(HEAD_PREFIXES)


def _load_target(model: nn.Module) -> nn.Module:
    if isinstance(model, (BackboneClassifier, MultiBranch25D)):
        return model.backbone
    return model


def _fmt(items: list[str], n: int = 8) -> str:
    more = f" … (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def _strip_prefix(src: dict[str, torch.Tensor], own_keys: set[str]) -> dict[str, torch.Tensor]:
    """Drop the common prefix (``backbone.``, ``model.``…) under which most keys match."""
    best_prefix, best_hits = "", -1
    for prefix in ("", "backbone.", "model.", "encoder.", "net."):
        hits = sum(1 for k in src if k.startswith(prefix) and k[len(prefix) :] in own_keys)
        if hits > best_hits:
            best_prefix, best_hits = prefix, hits
    if best_prefix:
        src = {k[len(best_prefix) :]: v for k, v in src.items() if k.startswith(best_prefix)}
    return src


def _fitting_tensors(
    body: dict[str, torch.Tensor],
    own: Mapping[str, torch.Tensor],
    own_keys: set[str],
    adapt_in_channels: bool,
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """The file's tensors that fit the model (stem adapted), adapted keys and shape mismatches."""
    adapted: list[str] = []
    mismatched: list[str] = []
    fitting: dict[str, torch.Tensor] = {}
    for k in sorted(set(body) & own_keys):
        w, ref = body[k], own[k]
        if (
            tuple(w.shape) != tuple(ref.shape)
            and adapt_in_channels
            and k in STEM_KEYS
            and w.ndim == ref.ndim
            and w.shape[0] == ref.shape[0]
            and w.shape[2:] == ref.shape[2:]
        ):
            w = w.sum(dim=1, keepdim=True).repeat(1, ref.shape[1], *([1] * (w.ndim - 2)))
            w = w / ref.shape[1]
            adapted.append(k)
        if tuple(w.shape) != tuple(ref.shape):
            mismatched.append(f"{k}: file {tuple(w.shape)} vs model {tuple(ref.shape)}")
            continue
        fitting[k] = w.to(dtype=ref.dtype)
    return fitting, adapted, mismatched


def load_pretrained(
    model: nn.Module,
    path: str | Path,
    *,
    strict_shapes: bool = True,
    adapt_in_channels: bool = True,
    config_key: str = "pretrained",
) -> dict[str, Any]:
    """Load local pretrained weights into ``model`` (its backbone for the wrappers), head excluded.

    Accepted files (``torch.load(weights_only=True)``): a plain state dict; a checkpoint holding
    one under ``state_dict`` (MedicalNet), ``model_state_dict`` or ``model``. Key mapping: leading
    ``module.`` prefixes (DataParallel) are removed; torchvision DenseNet keys (``norm.1`` /
    ``norm1``) become MONAI's ``layers.norm1``; a common prefix ``backbone.``/``model.``/
    ``encoder.`` is stripped when that matches more keys. Head keys (:data:`HEAD_PREFIXES`) and
    BatchNorm ``num_batches_tracked`` counters are ignored, and so are a ResNet-18 file's
    ``layer3`` / ``layer4`` for :class:`ResNet2Stage`. With ``adapt_in_channels`` the first
    convolution (:data:`STEM_KEYS`) of a file with another number of input channels is summed
    over its channels and spread evenly over the model's (e.g. RGB ImageNet → 1-channel MR).

    Args:
        model: The network (bare or wrapped).
        path: The weights file.
        strict_shapes: Raise on any missing / unexpected key or shape mismatch; ``False`` loads
            what fits and logs the rest.
        adapt_in_channels: See above.
        config_key: The setting that named the file (leads every error message).

    Returns:
        ``{"file", "loaded", "ignored", "adapted", "skipped"}`` (key lists; counts for loaded).

    Raises:
        ConfigError: The file is missing or unreadable, or (``strict_shapes``) does not fit, with
            the file name and the mismatching keys and shapes.
    """
    path = Path(path)
    src = _read_state_dict(path, config_key)
    target = _load_target(model)
    own = target.state_dict()
    own_keys = {k for k in own if not _is_head(k) and not k.endswith("num_batches_tracked")}
    src = _strip_prefix(src, own_keys)
    cut = ("layer3.", "layer4.") if isinstance(target, ResNet2Stage) else ()
    ignored = sorted(
        k for k in src if _is_head(k) or k.endswith("num_batches_tracked") or k.startswith(cut)
    )
    body = {k: v for k, v in src.items() if k not in set(ignored)}
    missing = sorted(own_keys - set(body))
    unexpected = sorted(set(body) - own_keys)
    fitting, adapted, mismatched = _fitting_tensors(body, own, own_keys, adapt_in_channels)
    problems = []
    if missing:
        problems.append(f"missing keys [{_fmt(missing)}]")
    if unexpected:
        problems.append(f"unexpected keys [{_fmt(unexpected)}]")
    if mismatched:
        problems.append(f"shape mismatches [{_fmt(mismatched)}]")
    if problems and (strict_shapes or not fitting):
        raise ConfigError(
            f"{config_key}: pretrained weights file {path} does not fit "
            f"{type(target).__name__}: " + "; ".join(problems)
        )
    if problems:
        log.warning(
            "pretrained weights %s: loading %d tensors; %s", path, len(fitting), "; ".join(problems)
        )
    merged = dict(own)
    merged.update(fitting)
    target.load_state_dict(merged)
    log.info("loaded %d pretrained tensors from %s", len(fitting), path)
    return {
        "file": str(path),
        "loaded": len(fitting),
        "ignored": ignored,
        "adapted": adapted,
        "skipped": missing + unexpected + mismatched,
    }


def input_kind_of(model: nn.Module) -> str:
    """``slices25d``, ``slice`` or ``volume`` for a wrapper or a bare 2-D / 3-D MONAI network."""
    kind = getattr(model, "input_kind", "")
    if kind:
        return kind
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            return "volume"
        if isinstance(m, nn.Conv2d):
            return "slice"
    raise ConfigError(f"cannot tell the input kind of {type(model).__name__}")
