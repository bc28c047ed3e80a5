"""Deep features from a trained (frozen) model: penultimate activations per patient or instance.

The model runs in eval mode under ``torch.no_grad()`` (BatchNorm uses its running statistics,
nothing is updated), so the features are a deterministic function of the weights and the input.
The feature layer is the input of the classifier head (:func:`hccrad.deep.nets.features`):

* ``slices25d`` (:class:`~hccrad.deep.nets.MultiBranch25D`): the ``N`` branch feature vectors
  concatenated, ``N * F`` columns (branch-major: ``deep_0..deep_{F-1}`` are instance 0);
* ``volume``: ``F`` columns;
* ``slice`` (MIL): ``F`` columns per instance; per patient the mean over its real instances
  (``z >= 0``; all instances when every one is padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from hccrad.deep.dataset import NpzDataset
from hccrad.deep.nets import features
from hccrad.deep.train import resolve_model
from hccrad.errors import InputError


def extract_features(
    checkpoint_or_model: str | Path | nn.Module,
    paths: Sequence[str | Path],
    patients: Sequence[str],
    *,
    per_instance: bool = False,
    device: str = "auto",
    batch_size: int = 32,
) -> pd.DataFrame:
    """Penultimate-layer features of each input.

    Args:
        checkpoint_or_model: A ``checkpoint.pt`` from :func:`hccrad.deep.train.train` or a model.
        paths: One ``.npz`` input per patient.
        patients: Patient ids aligned with ``paths`` (unique).
        per_instance: ``slice`` models only: one row per instance instead of per patient.
        device: ``auto``, ``cpu``, ``cuda``…
        batch_size: Inference batch size (does not change the values beyond float rounding).

    Returns:
        float64 columns ``deep_0..deep_{F-1}``; index ``patient`` (one row per patient, in the
        given order) or, with ``per_instance``, a MultiIndex ``(patient, instance, z)``.

    Raises:
        InputError: Misaligned or duplicate patients, unreadable inputs, ``per_instance`` with a
            model that has no instances.
    """
    if len(paths) != len(patients):
        raise InputError(f"{len(paths)} inputs but {len(patients)} patients")
    patients = [str(p) for p in patients]
    if len(set(patients)) != len(patients):
        raise InputError("duplicate patient ids")
    model, kind = resolve_model(checkpoint_or_model, device)
    if per_instance and kind != "slice":
        raise InputError(f"per_instance features need a slice (MIL) model, not {kind!r}")
    dev = next(model.parameters()).device
    ds = NpzDataset(paths, None, kind)
    dl = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)
    feats, files, inst = [], [], []
    model.eval()
    with torch.no_grad():
        for batch in dl:
            f = features(model, batch["x"].to(dev))
            feats.append(f.detach().float().cpu().numpy().astype(np.float64))
            files.append(batch["file"].numpy())
            inst.append(batch["instance"].numpy())
    F = np.concatenate(feats)
    fi = np.concatenate(files)
    ii = np.concatenate(inst)
    cols = [f"deep_{i}" for i in range(F.shape[1])]
    if kind != "slice":
        df = pd.DataFrame(
            F, columns=cols, index=pd.Index([patients[f] for f in fi], name="patient")
        )
        return df
    z = np.array(
        [int(ds.z[f][j]) if ds.z[f] is not None else int(j) for f, j in zip(fi, ii, strict=True)]
    )
    if per_instance:
        index = pd.MultiIndex.from_arrays(
            [[patients[f] for f in fi], ii, z], names=["patient", "instance", "z"]
        )
        return pd.DataFrame(F, columns=cols, index=index)
    rows = []
    for f in range(len(ds.paths)):
        sel = fi == f
        real = sel & (z >= 0)
        rows.append(F[real if real.any() else sel].mean(axis=0))
    return pd.DataFrame(np.stack(rows), columns=cols, index=pd.Index(patients, name="patient"))
