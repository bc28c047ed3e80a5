"""The workflow jobs of the study layer (rules ``study_splits`` and ``run_study_{study}``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from threadpoolctl import threadpool_limits

from hccrad.errors import InputError
from hccrad.fileio import write_parquet
from hccrad.studies.loading import load_study
from hccrad.studies.run import run_study
from hccrad.studies.splits import study_splits
from hccrad.studies.tables import read_clinical_table, study_clinical

log = logging.getLogger(__name__)


def load_tables(inputs: Mapping[str, str | os.PathLike[str]]) -> dict[str, pd.DataFrame]:
    """Read the tables of :func:`study_inputs` (``clinical`` TSV, the rest parquet)."""
    tables = {}
    for key, path in inputs.items():
        if key == "clinical":
            tables[key] = read_clinical_table(path)
        else:
            p = Path(path)
            if not p.is_file():
                raise InputError(f"study table {key} not found", file=p)
            tables[key] = pd.read_parquet(p)
    return tables


def write_splits_job(
    study_file: str | os.PathLike[str],
    clinical: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    seed: int,
    patients: Mapping[str, str] | None = None,
    override: Mapping[str, Any] | None = None,
) -> None:
    """Rule ``study_splits``: the study's ``splits.parquet`` from the clinical table alone
    (``override``: the configuration overlay's delta for this study, :mod:`hccrad.overlay`)."""
    spec = load_study(study_file, check_estimators=False, override=override)
    table = study_clinical(spec, read_clinical_table(clinical), patients)
    s = study_splits(spec, table, int(spec.seed if spec.seed is not None else seed))
    write_parquet(s, dst)
    log.info("study %s: splits %s", spec.name, s["split"].value_counts().to_dict())


def run_study_job(
    study_file: str | os.PathLike[str],
    inputs: Mapping[str, str | os.PathLike[str]],
    splits: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    seed: int,
    patients: Mapping[str, str] | None = None,
    threads: int = 1,
    override: Mapping[str, Any] | None = None,
    backbone_inputs: Mapping[str, Mapping[str, str | os.PathLike[str]]] | None = None,
) -> dict[str, Any]:
    """Rule ``run_study``: load the spec (with the overlay's ``override``) and tables, run the
    study with the rule's splits. ``inputs`` ``backbone_{model}`` are the checkpoints of the
    deep models that models train end to end; ``backbone_inputs`` their ``{patient: .npz}``."""
    spec = load_study(study_file, check_estimators=False, override=override)
    prefix, images = "backbone_", backbone_inputs or {}
    backbones = {
        model: (Path(path), dict(images.get(model, {})))
        for key, path in inputs.items()
        if (model := key.removeprefix(prefix)) != key
    }
    tables = load_tables({k: v for k, v in inputs.items() if not k.startswith(prefix)})
    with threadpool_limits(limits=max(1, int(threads))):
        return run_study(
            spec,
            tables,
            out_dir,
            seed,
            splits=pd.read_parquet(splits),
            patients=patients,
            backbones=backbones,
        )
