"""The torch device of a ``device`` setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``)."""

from __future__ import annotations

import torch

from hccrad.errors import ConfigError


def resolve_device(device: str = "auto") -> torch.device:
    """The device of a setting: ``auto`` is CUDA when available, else the CPU.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        The :class:`torch.device` (use ``.type`` where only ``"cpu"`` / ``"cuda"`` is needed).

    Raises:
        ConfigError: A CUDA device is requested but CUDA is not available.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return dev
