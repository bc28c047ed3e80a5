"""The segmentation U-Net: network, determinism, mixed precision, prediction, augmentation.

torch and MONAI are imported on first use, so that importing :mod:`hccrad.deep.segmentation`
stays fast (the Dice of given masks needs neither).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from hccrad.deep.segmentation.config import CLASSES, SegConfig

if TYPE_CHECKING:
    import torch



def _torch() -> ModuleType:
    """torch, imported lazily so that importing this module stays fast."""
    import torch

    return torch


def build_net(config: SegConfig) -> torch.nn.Module:
    """The MONAI 3-D U-Net of ``config`` (1 input channel, 3 classes, instance norm)."""
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=len(CLASSES),
        channels=config.channels,
        strides=config.strides,
        num_res_units=config.num_res_units,
        dropout=config.dropout,
    )


@contextlib.contextmanager
def _torch_state(config: SegConfig, device: torch.device) -> Iterator[None]:
    """Seeded RNG, deterministic algorithms and thread count for a block; restored afterwards."""
    torch = _torch()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_threads = torch.get_num_threads()
    prev_bench = torch.backends.cudnn.benchmark
    prev_cudnn_det = torch.backends.cudnn.deterministic
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            torch.manual_seed(config.seed)
            if config.num_threads:
                torch.set_num_threads(config.num_threads)
            if config.deterministic:
                torch.use_deterministic_algorithms(True, warn_only=True)
                torch.backends.cudnn.benchmark = False
                torch.backends.cudnn.deterministic = True
            yield
        finally:
            torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
            torch.set_num_threads(prev_threads)
            torch.backends.cudnn.benchmark = prev_bench
            torch.backends.cudnn.deterministic = prev_cudnn_det


def _autocast(config: SegConfig, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    torch = _torch()
    if config.amp and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _predict_probs(
    net: Any, x: np.ndarray, config: SegConfig, device: torch.device
) -> np.ndarray:
    """Softmax probabilities ``(3, z, y, x)`` for one normalised grid array."""
    torch = _torch()
    net.eval()
    with torch.no_grad(), _autocast(config, device):
        logits = net(torch.from_numpy(x[None, None]).to(device))
    return torch.softmax(logits.float(), dim=1)[0].cpu().numpy()


def _augment(
    x: np.ndarray, y: np.ndarray, config: SegConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded flips and intensity scaling/shift (a fixed number of draws per sample)."""
    flips = rng.random(3) < config.flip_prob
    scale = 1.0 + rng.uniform(-config.intensity_scale, config.intensity_scale)
    shift = rng.uniform(-config.intensity_shift, config.intensity_shift)
    axes = tuple(a for a in config.flip_axes if flips[a])
    if axes:
        x, y = np.flip(x, axes), np.flip(y, axes)
    return np.ascontiguousarray(x * scale + shift, dtype=np.float32), np.ascontiguousarray(y)
