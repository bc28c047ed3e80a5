"""Grad-CAM (``monai.visualize.GradCAM``) and Score-CAM heat maps and PNG overlays for 2-D, 2.5-D
and 3-D models (:data:`CAM_METHODS`; a study's deep model picks one with ``cam``).

**Target layers** (:func:`target_layer`) — the last convolutional block, whose output is the
last spatial feature map before global pooling:

* MONAI ResNet (10…101) and ``r3d_18``: ``layer4`` (the output of the last residual stage,
  after its ReLU); the two-stage ResNet-10 (``resnet10_2stage``): ``layer2``;
* MONAI DenseNet-121: ``class_layers.relu`` (the ReLU after ``features.norm5`` that follows the
  last dense block; MONAI switches its ``inplace`` off for the backward hook);
* wrappers (:class:`~hccrad.deep.nets.SliceClassifier`, ``VolumeClassifier``,
  ``MultiBranch25D``): the same layer under ``backbone.``.

For :class:`~hccrad.deep.nets.MultiBranch25D` the backbone sees the ``N`` instances as a batch,
so the map is computed for every instance in one backward pass and the ``N`` maps are normalised
together (an unimportant branch stays dark). The map is ``ReLU(Σ_c w_c A_c)`` with ``w_c`` the
spatially averaged gradient of the class score, upsampled (bi/trilinear) to the input size and
scaled to [0, 1] per patient. MONAI's default post-processing maps (min, max) to (1, 0) — it
*inverts* the map — so it is replaced here by a plain min-max scaling.

The model is deep-copied before the hooks are attached (MONAI never removes them), so the caller's
model is left untouched. The explained class defaults to class 1 for binary models (the positive
label) and to the predicted class otherwise.

**Score-CAM** (:func:`scorecam`; Wang et al., CVPR Workshops 2020) needs no gradient. The target
layer's ``K`` activation maps ``A_k`` of the sample are upsampled to the input size
(bi/trilinear) and min-max scaled to [0, 1] (``H_k``); each masks the input (``X ∘ H_k``) and the
model's softmax probability of the target class on the masked input is the channel's score
``s_k``. The weights are ``a = softmax_k(s_k - s_b)`` — the baseline score ``s_b`` (black image)
cancels in the softmax, so it is not computed — and the map is ``ReLU(sum_k a_k up(A_k))``, scaled
to [0, 1] per patient. Constant maps (no location to mask) are left out, as in the authors' code.
For a 2.5-D model a channel's maps of the ``N`` instances mask their instances together (one
score per channel of the shared backbone), giving ``N`` maps normalised together. The model runs
in eval mode (restored afterwards), ``batch_size`` masked inputs per forward pass.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from monai.networks import nets as mnets
from monai.visualize import GradCAM
from torch import nn
from torch.nn import functional

from hccrad.deep.nets import (
    BackboneClassifier,
    MultiBranch25D,
    ResNet2Stage,
    VideoResNet3D,
    input_kind_of,
    num_outputs,
)
from hccrad.errors import ConfigError, InputError
from hccrad.fileio import write_png


def target_layer(model: nn.Module) -> str:
    """Name of the Grad-CAM target layer of ``model`` (see the module docstring)."""
    if isinstance(model, (BackboneClassifier, MultiBranch25D)):
        return "backbone." + target_layer(model.backbone)
    if isinstance(model, ResNet2Stage):
        return "layer2"
    if isinstance(model, (mnets.ResNet, VideoResNet3D)):
        return "layer4"
    if isinstance(model, mnets.DenseNet):
        return "class_layers.relu"
    raise ConfigError(f"no Grad-CAM target layer known for {type(model).__name__}")


class _Stacked25D(nn.Module):
    """Feeds ``(B, N·C, H, W)`` to a MultiBranch25D as ``(B, N, C, H, W)`` (2-D CAM upsampling)."""

    def __init__(self, model: MultiBranch25D, n: int, c: int) -> None:
        super().__init__()
        self.model, self.n, self.c = model, n, c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.reshape(x.shape[0], self.n, self.c, *x.shape[2:]))


def _sample(model: nn.Module, x: Any) -> tuple[torch.Tensor, str]:
    kind = input_kind_of(model)
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()
    want = {"slices25d": 4, "slice": 3, "volume": 4}[kind]
    if t.ndim == want + 1 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != want:
        raise InputError(
            f"Grad-CAM of a {kind} model needs one sample of {want} dims, got {tuple(t.shape)}"
        )
    return t, kind


def gradcam(
    model: nn.Module,
    x: np.ndarray | torch.Tensor,
    *,
    class_idx: int | None = None,
    layer: str | None = None,
) -> np.ndarray:
    """Grad-CAM of one sample, scaled to [0, 1], same spatial size as the input.

    Args:
        model: A wrapper from :mod:`hccrad.deep.nets` or a bare MONAI ResNet / DenseNet.
        x: One sample as stored in the ``.npz``: ``(N, C, H, W)`` (2.5-D), ``(C, H, W)`` (slice)
            or ``(C, D, H, W)`` (volume); a leading batch axis of 1 is accepted.
        class_idx: Class to explain (default: 1 for binary models, else the predicted class).
        layer: Target layer name (default :func:`target_layer`).

    Returns:
        ``(N, H, W)`` for 2.5-D, ``(H, W)`` for slices, ``(D, H, W)`` for volumes (float32).
    """
    t, kind = _sample(model, x)
    net_src = copy.deepcopy(model)
    dev = next(net_src.parameters()).device
    layer = layer or target_layer(net_src)
    if kind == "slices25d":
        n, c = t.shape[:2]
        net: nn.Module = _Stacked25D(net_src, n, c)
        inp = t.reshape(1, n * c, *t.shape[2:])
        layer = "model." + layer
    else:
        net, inp = net_src, t[None]
    if layer not in dict(net.named_modules()):
        raise ConfigError(f"Grad-CAM target layer {layer!r} not found in {type(model).__name__}")
    inp = inp.to(dev).requires_grad_(True)
    if class_idx is None:
        k = num_outputs(model)
        if k == 2:
            class_idx = 1
    cam = GradCAM(nn_module=net, target_layers=layer, postprocessing=lambda a: a)
    with torch.enable_grad():
        out = cam(inp, class_idx=class_idx)
    arr = out.detach().float().cpu().numpy()[:, 0]  # (B', *spatial)
    lo, hi = float(arr.min()), float(arr.max())
    arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    arr = arr.astype(np.float32)
    return arr if kind == "slices25d" else arr[0]


#: Heat-map methods (a deep model's ``cam``) and their names in the overlays.
CAM_METHODS: dict[str, str] = {"gradcam": "Grad-CAM", "scorecam": "Score-CAM"}


def _capture(model: nn.Module, module: nn.Module, inp: torch.Tensor) -> torch.Tensor:
    """The output of ``module`` while ``model`` runs on ``inp`` (a forward hook, removed)."""
    got: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _a, out: got.append(out.detach()))
    try:
        model(inp)
    finally:
        handle.remove()
    return got[0]


def _minmax_maps(maps: torch.Tensor) -> torch.Tensor:
    """Each map of ``(K, B', *S)`` scaled to [0, 1]; a constant map becomes 0."""
    flat = maps.reshape(*maps.shape[:2], -1)
    lo, hi = flat.min(dim=2).values, flat.max(dim=2).values
    span = (hi - lo).reshape(*maps.shape[:2], *([1] * (maps.ndim - 2)))
    low = lo.reshape(span.shape)
    return torch.where(span > 0, (maps - low) / span.clamp_min(1e-12), torch.zeros_like(maps))


def _score_masks(
    model: nn.Module,
    t: torch.Tensor,
    acts: torch.Tensor,
    channels: list[int],
    class_idx: int,
    kind: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Upsampled maps ``(k, B', *S)`` of ``channels`` and the target-class probabilities of
    the input masked by their min-max scaled copies."""
    mode = "trilinear" if kind == "volume" else "bilinear"
    size = tuple(t.shape[-(acts.ndim - 2) :])
    up = functional.interpolate(acts[:, channels], size=size, mode=mode, align_corners=False)
    up = up.transpose(0, 1)
    masks = _minmax_maps(up)
    # slices25d: (k, N, 1, H, W) on (N, C, H, W); slice / volume: (k, 1, *S) on (C, *S)
    masked = t[None] * (masks[:, :, None] if kind == "slices25d" else masks)
    prob = torch.softmax(model(masked), dim=1)[:, class_idx]
    return up, prob


def scorecam(
    model: nn.Module,
    x: np.ndarray | torch.Tensor,
    *,
    class_idx: int | None = None,
    layer: str | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """Score-CAM of one sample (see the module docstring), scaled to [0, 1], input-sized.

    Args and returns as :func:`gradcam`; ``batch_size``: masked inputs per forward pass.
    """
    t, kind = _sample(model, x)
    layer = layer or target_layer(model)
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ConfigError(f"Score-CAM target layer {layer!r} not found in {type(model).__name__}")
    t = t.to(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            acts = _capture(model, modules[layer], t[None])  # (B', K, *s); B' = N for 2.5-D
            if class_idx is None:
                k = num_outputs(model)
                class_idx = 1 if k == 2 else int(model(t[None]).argmax(dim=1)[0])
            flat = acts.reshape(*acts.shape[:2], -1)
            varying = (flat.max(dim=2).values > flat.min(dim=2).values).any(dim=0)
            keep = [int(c) for c in torch.nonzero(varying).flatten()]
            # softmax over channels, accumulated chunk by chunk (scores are in [0, 1])
            total = torch.zeros((acts.shape[0], *t.shape[-(acts.ndim - 2) :]), device=t.device)
            norm = torch.zeros((), device=t.device)
            for i in range(0, len(keep), max(1, batch_size)):
                up, prob = _score_masks(model, t, acts, keep[i : i + batch_size], class_idx, kind)
                w = torch.exp(prob.double()).float()
                total += torch.einsum("k,k...->...", w, up)
                norm += w.sum()
    finally:
        model.train(was_training)
    arr = torch.relu(total / norm if keep else total).cpu().numpy()
    lo, hi = float(arr.min()), float(arr.max())
    arr = ((arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)).astype(np.float32)
    return arr if kind == "slices25d" else arr[0]


def cam(
    model: nn.Module, x: np.ndarray | torch.Tensor, method: str = "gradcam", **kwargs: Any
) -> np.ndarray:
    """The heat map of ``method`` (:data:`CAM_METHODS`): :func:`gradcam` or :func:`scorecam`."""
    if method == "gradcam":
        return gradcam(model, x, **kwargs)
    if method == "scorecam":
        return scorecam(model, x, **kwargs)
    raise ConfigError(f"unknown CAM method {method!r}; choose one of {', '.join(CAM_METHODS)}")


def gradcam_overlay(
    model: nn.Module,
    x: np.ndarray | torch.Tensor,
    out_png: str | Path,
    title: str = "",
    *,
    class_idx: int | None = None,
    layer: str | None = None,
    alpha: float = 0.45,
    method: str = "gradcam",
) -> np.ndarray:
    """Write a PNG of the input slice with the heat map of ``method`` (:data:`CAM_METHODS`,
    default Grad-CAM) overlaid; return the CAM.

    Shown slice: slice inputs — the sample itself; a bag of slices ``(N, C, H, W)`` given to a
    slice model (multi-instance learning) — every instance in a row, each with its own CAM and
    the model's probability of ``class_idx`` (default: the positive class), the most likely
    instance marked; 2.5-D — every instance in a row (instance with the largest CAM mass
    marked); volumes — the axial slice (along ``D``) with the largest CAM mass. Of several
    channels the middle one is drawn. The PNG is written atomically.

    Returns:
        The CAM as from :func:`gradcam`; ``(N, H, W)`` for a bag.
    """
    bag = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()
    panels: list[tuple[np.ndarray, np.ndarray, str]] = []
    if input_kind_of(model) == "slice" and bag.ndim == 4 and bag.shape[0] > 1:
        cams = np.stack([cam(model, s, method, class_idx=class_idx, layer=layer) for s in bag])
        probs = _instance_probabilities(model, bag, class_idx)
        best = int(np.argmax(probs))
        img = bag.numpy()
        for i in range(len(img)):
            mark = " *" if i == best else ""
            panels.append(
                (img[i, img.shape[1] // 2], cams[i], f"slice {i}, p={probs[i]:.2f}{mark}")
            )
        _draw(panels, out_png, title, alpha, CAM_METHODS[method])
        return cams
    t, kind = _sample(model, x)
    heat = cam(model, t, method, class_idx=class_idx, layer=layer)
    img = t.detach().cpu().numpy()
    if kind == "slice":
        panels.append((img[img.shape[0] // 2], heat, "slice"))
    elif kind == "volume":
        z = int(np.argmax(heat.reshape(heat.shape[0], -1).sum(axis=1)))
        panels.append((img[img.shape[0] // 2, z], heat[z], f"axial slice {z}"))
    else:
        best = int(np.argmax(heat.reshape(heat.shape[0], -1).sum(axis=1)))
        for i in range(img.shape[0]):
            mark = " *" if i == best else ""
            panels.append((img[i, img.shape[1] // 2], heat[i], f"instance {i}{mark}"))
    _draw(panels, out_png, title, alpha, CAM_METHODS[method])
    return heat


def _instance_probabilities(
    model: nn.Module, bag: torch.Tensor, class_idx: int | None
) -> np.ndarray:
    """The slice model's probability of ``class_idx`` (default: the last class) per instance."""
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            prob = torch.softmax(model(bag.to(dev)), dim=1).cpu().numpy()
    finally:
        model.train(was_training)
    return prob[:, prob.shape[1] - 1 if class_idx is None else class_idx]


def _draw(
    panels: list[tuple[np.ndarray, np.ndarray, str]],
    out_png: str | Path,
    title: str,
    alpha: float,
    name: str = "Grad-CAM",
) -> None:
    """One row of heat-map panels (plus the input when there is a single panel), written
    atomically."""
    n = len(panels)
    show_input = n == 1
    ncols = n + (1 if show_input else 0)
    fig = Figure(figsize=(3.0 * ncols, 3.3))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    col = 0
    if show_input:
        axes[0].imshow(panels[0][0], cmap="gray")
        axes[0].set_title("input", fontsize=9)
        col = 1
    for (im, heat, label), ax in zip(panels, axes[col:], strict=True):
        ax.imshow(im, cmap="gray")
        ax.imshow(heat, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
        ax.set_title(f"{name}, {label}", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    write_png(fig, out_png, dpi=100)
