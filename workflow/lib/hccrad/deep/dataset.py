"""Per-patient ``.npz`` inputs of the deep models: reading, checking and the torch dataset.

See the tensor contract in :mod:`hccrad.deep` and the input kinds in :mod:`hccrad.deep.train`.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, RandAffined, RandFlipd, RandRotate90d, RandScaleIntensityd
from torch.utils.data import Dataset

from hccrad.deep.train_config import INPUT_KINDS, TrainConfig
from hccrad.errors import ConfigError, InputError


def npz_shape(path: Path) -> tuple[int, ...]:
    """Shape of ``x`` in an ``.npz`` without reading the array."""
    with zipfile.ZipFile(path) as zf, zf.open("x.npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, _ = np.lib.format.read_array_header_2_0(f)
    return tuple(shape)


def augmentations(cfg: TrainConfig, spatial_shape: Sequence[int], seed: int) -> Compose:
    """The training transforms of ``x``, seeded with ``seed``.

    Flips on every spatial axis (``flip_prob`` each); in-plane rot90 (``rot90_prob``, square
    planes only); a random affine (:attr:`TrainConfig.affine`, ``affine_prob``): rotation by
    ``U(-r, r)`` degrees in the axial plane, zoom ``1 + U(-z, z)`` per in-plane axis and shift
    ``U(-t, t)`` times the in-plane side, bilinear, zeros outside; random intensity scaling.
    """
    nd = len(spatial_shape)
    ts: list[Any] = [
        RandFlipd(keys="x", prob=cfg.flip_prob, spatial_axis=axis) for axis in range(nd)
    ]
    plane = (nd - 2, nd - 1)
    if spatial_shape[plane[0]] == spatial_shape[plane[1]]:
        ts.append(RandRotate90d(keys="x", prob=cfg.rot90_prob, max_k=3, spatial_axes=plane))
    if cfg.affine:
        lead = [0.0] * (nd - 2)  # no zoom or shift along the depth of a volume
        ts.append(
            RandAffined(
                keys="x",
                prob=cfg.affine_prob,
                # 3-D: the first angle turns the (H, W) plane of a (D, H, W) volume
                rotate_range=(math.radians(cfg.rotate_range),) + (0.0,) * (2 * nd - 4),
                scale_range=lead + [cfg.zoom_range] * 2,
                translate_range=lead + [cfg.translate_range * n for n in spatial_shape[-2:]],
                mode="bilinear",
                padding_mode="zeros",
            )
        )
    ts.append(RandScaleIntensityd(keys="x", factors=cfg.intensity_factor, prob=cfg.intensity_prob))
    compose = Compose(ts)
    compose.set_random_state(seed=seed)
    return compose


def read_input(path: str | Path, input_kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``x`` (float32) and ``z`` (or None) of one ``.npz`` input, checked against ``input_kind``.

    Raises:
        InputError: Missing / unreadable file, no ``x``, wrong ``kind`` or dimensionality.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("deep-learning input not found", file=path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if "x" not in data:
                raise InputError("no array 'x' in the .npz", file=path)
            x = np.asarray(data["x"], dtype=np.float32)
            kind = str(data["kind"]) if "kind" in data else None
            z = np.asarray(data["z"]) if "z" in data else None
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read .npz: {exc}", file=path) from exc
    want = INPUT_KINDS[input_kind][0]
    if kind is not None and kind != want:
        raise InputError(f"input kind {kind!r} does not suit {input_kind!r} models", file=path)
    if x.ndim != 4:
        raise InputError(f"x must be 4-D ((N, C, H, W) or (C, D, H, W)), got {x.shape}", file=path)
    if not np.all(np.isfinite(x)):
        raise InputError("x holds NaN or infinite values", file=path)
    return x, z


class NpzDataset(Dataset):
    """Samples from ``.npz`` inputs: one per file (``slices25d``, ``volume``) or per instance.

    Items are dicts ``{"x": float32 tensor, "label": int (-1 without labels), "file": int,
    "instance": int (-1 for whole-file samples)}``. ``transform`` (MONAI dictionary transforms on
    key ``x``) sees ``(N·C, H, W)`` for ``slices25d`` (so all instances get the same flip),
    ``(C, H, W)`` for ``slice`` and ``(C, D, H, W)`` for ``volume``.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        labels: Sequence[int] | None,
        input_kind: str,
        *,
        transform: Compose | None = None,
        skip_padding: bool = False,
        cache: bool = False,
    ) -> None:
        if input_kind not in INPUT_KINDS:
            raise ConfigError(f"unknown input kind {input_kind!r}")
        self.paths = [Path(p) for p in paths]
        self.labels = None if labels is None else [int(v) for v in labels]
        if self.labels is not None and len(self.labels) != len(self.paths):
            raise InputError(f"{len(self.paths)} inputs but {len(self.labels)} labels")
        self.input_kind = input_kind
        self.transform = transform
        self._cache: dict[int, np.ndarray] | None = {} if cache else None
        self.items: list[tuple[int, int]] = []
        self.z: list[np.ndarray | None] = []
        for i, p in enumerate(self.paths):
            if input_kind == "slice":
                n, z = self._instances(p)
                real = [j for j in range(n) if z is None or z[j] >= 0]
                keep = real if (skip_padding and real) else list(range(n))
                self.items += [(i, j) for j in keep]
                self.z.append(z)
            else:
                if not p.is_file():
                    raise InputError("deep-learning input not found", file=p)
                self.items.append((i, -1))
                self.z.append(None)

    @staticmethod
    def _instances(path: Path) -> tuple[int, np.ndarray | None]:
        if not path.is_file():
            raise InputError("deep-learning input not found", file=path)
        try:
            n = npz_shape(path)[0]
            with np.load(path, allow_pickle=False) as data:
                z = np.asarray(data["z"]) if "z" in data else None
        except Exception as exc:
            raise InputError(f"cannot read .npz: {exc}", file=path) from exc
        if z is not None and len(z) != n:
            z = None
        return n, z

    def array(self, i: int) -> np.ndarray:
        """The ``x`` array of file ``i``."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        x, _ = read_input(self.paths[i], self.input_kind)
        if self._cache is not None:
            self._cache[i] = x
        return x

    def sample_labels(self) -> np.ndarray:
        """The label of every sample (instances carry their patient's label)."""
        if self.labels is None:
            return np.full(len(self.items), -1)
        return np.array([self.labels[i] for i, _ in self.items], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> dict[str, Any]:
        i, j = self.items[k]
        arr = self.array(i)
        x = torch.from_numpy(arr[j] if j >= 0 else arr)
        if self.transform is not None:
            shape = x.shape
            flat = x.reshape(-1, *shape[2:]) if self.input_kind == "slices25d" else x
            out = self.transform({"x": flat})["x"]
            if isinstance(out, MetaTensor):
                out = out.as_tensor()
            x = torch.as_tensor(out, dtype=torch.float32).reshape(shape)
        label = -1 if self.labels is None else self.labels[i]
        return {"x": x.contiguous(), "label": label, "file": i, "instance": j}
