"""Deep-model steps of a study: training (one model, or a bundle of one per habitat subregion
or per image phase), features, predictions and MIL features of every patient, the network's own
metrics per split, Grad-CAM or Score-CAM overlays.

The deep-learning modules import torch: they are imported where used, so that the other steps
(and the Snakefile, which imports :mod:`hccrad.steps`) start without it.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hccrad import fileio
from hccrad.deep.extract import extract_features
from hccrad.deep.gradcam import CAM_METHODS, gradcam_overlay
from hccrad.deep.inputs import DeepInput
from hccrad.deep.mil import MILFeatures, bags_from_table
from hccrad.deep.split_metrics import split_metrics
from hccrad.deep.train import (
    TrainConfig,
    model_from_checkpoint,
    plot_member_curves,
    predict,
    read_bundle,
    resolve_model,
    train,
    write_bundle,
)
from hccrad.errors import ConfigError, InputError
from hccrad.fileio import PathLike
from hccrad.sheets import read_clinical

log = logging.getLogger(__name__)


def _training_labels(
    inputs: Mapping[str, PathLike], splits: PathLike, clinical: PathLike, label: str
) -> tuple[list[str], list[int]]:
    """The training patients (split ``train``, label known, input present) and their labels."""
    import pandas as pd

    split = pd.read_parquet(splits)
    split = split.set_index("patient")["split"] if "patient" in split else split["split"]
    table = read_clinical(clinical).set_index("patient")
    if label not in table:
        raise InputError(f"label column {label!r} not in the clinical table", file=clinical)
    train = [p for p in sorted(inputs) if split.get(p) == "train"]
    y = pd.to_numeric(table[label].reindex(train), errors="coerce")
    keep = [p for p in train if pd.notna(y.get(p))]
    return keep, [int(y[p]) for p in keep]


def train_deep_model(
    inputs: Mapping[str, PathLike],
    splits: PathLike,
    clinical: PathLike,
    out_dir: PathLike,
    *,
    label: str,
    preset: str,
    overrides: Mapping[str, Any],
    seed: int,
    threads: int = 1,
    mark_untrained: bool = False,
) -> None:
    """Train one deep model of a study on its **training** patients only.

    Args:
        inputs: ``{patient: input .npz}`` of every patient of the study that has the input.
        splits: The study's ``splits.parquet`` (``patient, split``).
        clinical: The clinical table (labels).
        out_dir: Receives ``checkpoint.pt``, ``metrics.json``, ``curves.png``, ``config.json``
            and ``patients.json`` (the training patients and labels used).
        label: Label column (0/1).
        preset: A :data:`hccrad.deep.train.STUDY_PRESETS` name.
        overrides: :class:`~hccrad.deep.train.TrainConfig` overrides (e.g. CPU-sized epochs).
        seed: Training seed.
        threads: Torch CPU threads.
        mark_untrained: Without two patients of each class, write an "untrained" checkpoint
            (and say why) instead of raising.
    """
    import torch

    patients, labels = _training_labels(inputs, splits, clinical, label)
    if len(set(labels)) < 2 or min(labels.count(0), labels.count(1)) < 2:
        reason = (
            f"deep model needs both classes of {label!r} (2+ patients each) among its training "
            f"patients ({len(patients)} patients, {sum(labels)} cases)"
        )
        if not mark_untrained:
            raise InputError(reason, file=splits)
        # a tiny or one-class training split: record it instead of failing the workflow; the
        # outputs step then writes constant features (the study reports the degenerate split)
        log.warning("%s: not trained", reason)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        fileio.save_torch({"untrained": True, "reason": reason}, out / "checkpoint.pt")
        info = {"trained": False, "reason": reason}
        fileio.write_json(info, out / "metrics.json")
        fileio.write_json({"untrained": True, "preset": preset, **overrides}, out / "config.json")
        fileio.write_json({"label": label, "patients": patients, "labels": labels},
                          out / "patients.json")  # fmt: skip
        fileio.placeholder_png(out / "curves.png", "training curves", f"not trained: {reason}")
        return
    torch.set_num_threads(max(1, threads))
    config = TrainConfig.preset(preset, **{"seed": seed, **overrides})
    metrics = train(config, [inputs[p] for p in patients], labels, out_dir)
    # provenance: exactly who the model saw (its validation fold is carved from these)
    fileio.write_json(
        {"label": label, "patients": patients, "labels": labels}, Path(out_dir) / "patients.json"
    )
    log.info(
        "%s on %d training patients: best epoch %s of %d",
        preset,
        len(patients),
        metrics.get("best_epoch"),
        len(metrics.get("epochs", [])),
    )


def _tag(by: str, member: Any) -> str:
    """A bundle member's name in columns and files: ``h{i}`` (subregion ``i``) or the phase."""
    return f"h{member}" if by == "subregion" else str(member)


def _title(by: str, member: Any) -> str:
    """A bundle member's name for readers: ``habitat {i}`` or ``phase {name}``."""
    return f"habitat {member}" if by == "subregion" else f"phase {member}"


def _train_bundle(
    inputs: Mapping[Any, Mapping[str, PathLike]],
    splits: PathLike,
    clinical: PathLike,
    out_dir: PathLike,
    *,
    by: str,
    label: str,
    preset: str,
    overrides: Mapping[str, Any],
    seed: int,
    threads: int = 1,
    mark_untrained: bool = False,
) -> None:
    """One deep model per member (``by``: habitat ``subregion`` or image ``phase``), each trained
    exactly as :func:`train_deep_model` trains one model, written as one bundle (see
    :func:`train_subregion_models`)."""
    import torch

    if not inputs:
        raise InputError(f"no per-{by} input tensors: no patient has a {by} tensor", file=splits)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    members: dict[Any, dict[str, Any]] = {}
    metrics: dict[str, Any] = {}
    configs: dict[str, Any] = {}
    who: dict[str, Any] = {}
    histories: dict[str, list[dict[str, Any]]] = {}
    tmp = Path(tempfile.mkdtemp(prefix=f".{by}s.", dir=out))
    try:
        for member, sub_inputs in inputs.items():
            log.info("%s: %d patients with a tensor", _title(by, member), len(sub_inputs))
            sub = tmp / _tag(by, member)
            train_deep_model(
                sub_inputs, splits, clinical, sub, label=label, preset=preset,
                overrides=overrides, seed=seed, threads=threads, mark_untrained=mark_untrained,
            )  # fmt: skip
            members[member] = torch.load(sub / "checkpoint.pt", map_location="cpu",
                                         weights_only=False)  # fmt: skip
            for name, store in (("metrics", metrics), ("config", configs), ("patients", who)):
                with open(sub / f"{name}.json") as fh:
                    store[str(member)] = json.load(fh)
            if "history" in metrics[str(member)]:
                histories[_title(by, member)] = metrics[str(member)]["history"]
        write_bundle(members, out / "checkpoint.pt", by=by)
        trained = [m for m, ckpt in members.items() if not ckpt.get("untrained")]
        fileio.write_json(
            {f"per_{by}": True, f"trained_{by}s": trained, f"{by}s": metrics},
            out / "metrics.json",
        )
        fileio.write_json({f"per_{by}": True, f"{by}s": configs}, out / "config.json")
        fileio.write_json({"label": label, f"{by}s": who}, out / "patients.json")
        if histories:
            plot_member_curves(histories, out / "curves.png")
        else:
            note = f"no {by} model trained (see metrics.json)"
            fileio.placeholder_png(out / "curves.png", "training curves", note)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def train_subregion_models(
    inputs: Mapping[int, Mapping[str, PathLike]],
    splits: PathLike,
    clinical: PathLike,
    out_dir: PathLike,
    **kwargs: Any,
) -> None:
    """One deep model per habitat subregion (the habitat study's per-subregion networks).

    Each subregion's network is trained exactly as :func:`train_deep_model` trains one model
    (same preset, overrides and seed; **training** patients only; its validation fold carved
    from them) on that subregion's tensors. The outputs are those of one model: ``checkpoint.pt``
    bundles the subregions' checkpoints (:func:`hccrad.deep.train.write_bundle`),
    ``metrics.json``, ``config.json`` and ``patients.json`` hold one entry per subregion, and
    ``curves.png`` draws every subregion's curves.

    Args:
        inputs: Subregion -> ``{patient: tensor}`` (:func:`hccrad.patient.subregion_input_files`).
        kwargs: As :func:`train_deep_model` (``label``, ``preset``, ``overrides``, ``seed``,
            ``threads``, ``mark_untrained``).
    """
    _train_bundle(inputs, splits, clinical, out_dir, by="subregion", **kwargs)


def train_phase_models(
    inputs: Mapping[str, Mapping[str, PathLike]],
    splits: PathLike,
    clinical: PathLike,
    out_dir: PathLike,
    **kwargs: Any,
) -> None:
    """One deep model per image phase (e.g. the MVI study's 3D ResNet-18 on AP, PVP and HBP:
    3 x 512 features per region), trained and bundled as :func:`train_subregion_models` does per
    subregion; ``metrics.json``, ``config.json`` and ``patients.json`` hold one entry per phase.

    Args:
        inputs: Phase -> ``{patient: tensor}`` (:func:`hccrad.patient.phase_input_files`).
        kwargs: As :func:`train_deep_model`.
    """
    _train_bundle(inputs, splits, clinical, out_dir, by="phase", **kwargs)


def bundle_outputs(
    checkpoint: PathLike,
    inputs: Mapping[Any, Mapping[str, PathLike]],
    dst_features: PathLike,
    dst_predictions: PathLike,
    *,
    by: str = "subregion",
    threads: int = 1,
    dst_metrics: PathLike | None = None,
    splits: PathLike | None = None,
    clinical: PathLike | None = None,
    label: str | None = None,
) -> None:
    """Deep features and predictions of every patient from a bundle (``by``: ``subregion`` or
    ``phase``).

    ``features.parquet``: index patient, columns ``{member}_deep_{j}`` (``h{i}`` for subregion
    ``i``, the phase name for a phase: that member's frozen penultimate activations; missing
    where the patient has no tensor for it, which the studies impute from the training patients;
    a member whose model could not be trained gives the constant ``{member}_deep_0``).
    ``predictions.parquet``: ``{by}, patient, prob`` (``by`` is ``subregion`` or ``phase``).
    With ``dst_metrics`` (then ``splits``, ``clinical`` and ``label`` are needed): every member
    network's own metrics per split, a ``member`` column (``h{i}`` or the phase) naming it.
    """
    import pandas as pd
    import torch

    torch.set_num_threads(max(1, threads))
    bundle = read_bundle(checkpoint, by=by)
    feats, preds = [], []
    for member, ckpt in bundle.items():
        sub = inputs.get(member, {})
        patients = sorted(sub)
        if not patients:
            continue
        tag = _tag(by, member)
        index = pd.Index(patients, name="patient")
        if ckpt.get("untrained"):
            feats.append(pd.DataFrame({f"{tag}_deep_0": 0.0}, index=index))
            preds.append(pd.DataFrame({by: member, "patient": patients, "prob": 0.5}))
            continue
        model, _ = model_from_checkpoint(ckpt, device="auto", source=checkpoint)
        paths_ = [sub[p] for p in patients]
        feats.append(extract_features(model, paths_, patients).add_prefix(f"{tag}_"))
        pred = predict(model, paths_, patients=patients).drop(columns="path")
        pred.insert(0, by, member)
        preds.append(pred)
    if not feats:
        raise InputError(f"no patient has a tensor of a modelled {by}", file=checkpoint)
    table = pd.concat(feats, axis=1, join="outer").sort_index()
    table.index.name = "patient"
    fileio.write_parquet(table, dst_features, index=True)
    pred = pd.concat(preds, ignore_index=True)
    fileio.write_parquet(pred, dst_predictions)
    if dst_metrics is not None:
        if splits is None:
            raise ConfigError("the per-split metrics of a deep model need the study's splits")
        labels, split = _labels_and_splits(splits, clinical, label)
        per_member = [
            split_metrics(part, labels, split).assign(member=_tag(by, member))
            for member, part in pred.groupby(by, sort=False)
        ]
        fileio.write_parquet(pd.concat(per_member, ignore_index=True), dst_metrics)
    log.info("%d patients: %d deep features over %d %ss", len(table), table.shape[1],
             len(bundle), by)  # fmt: skip


def bundle_gradcam(
    checkpoint: PathLike,
    inputs: Mapping[Any, Mapping[str, PathLike]],
    out_dir: PathLike,
    *,
    by: str = "subregion",
    max_patients: int = 6,
    method: str = "gradcam",
) -> None:
    """Grad-CAM (or ``method``: :data:`hccrad.deep.gradcam.CAM_METHODS`) overlays
    ``{patient}_{member}.png`` (``h{i}`` or the phase) of every member model of a bundle for the
    first ``max_patients`` patients (sorted) that have that member's tensor."""

    if method not in CAM_METHODS:
        raise ConfigError(f"unknown CAM method {method!r}; choose one of {', '.join(CAM_METHODS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    drawn = 0
    for member, ckpt in read_bundle(checkpoint, by=by).items():
        tag, title = _tag(by, member), _title(by, member)
        if ckpt.get("untrained"):
            fileio.placeholder_png(out / f"untrained_{tag}.png", f"Grad-CAM, {title}",
                                   "model not trained")  # fmt: skip
            continue
        model, _ = model_from_checkpoint(ckpt, device="cpu", source=checkpoint)
        for patient in sorted(inputs.get(member, {}))[:max_patients]:
            x = DeepInput.load(inputs[member][patient]).x
            gradcam_overlay(model, x, out / f"{patient}_{tag}.png",
                            title=f"{patient}, {title}", method=method)  # fmt: skip
            drawn += 1
    log.info("%s overlays: %d in %s", method, drawn, out)


def deep_model_outputs(
    checkpoint: PathLike,
    inputs: Mapping[str, PathLike],
    splits: PathLike,
    dst_features: PathLike,
    dst_predictions: PathLike,
    dst_mil: PathLike | None = None,
    *,
    mil_bins: int = 10,
    mil_words: int = 10,
    threads: int = 1,
    dst_metrics: PathLike | None = None,
    clinical: PathLike | None = None,
    label: str | None = None,
) -> None:
    """Deep features and predictions of every patient; MIL features for slice models.

    Writes ``features.parquet`` (index patient, ``deep_i``: frozen penultimate activations),
    ``predictions.parquet`` (per patient, or per instance for MIL: ``prob``), for slice-level
    (MIL) models ``mil_features.parquet`` (PLH + BoW TF-IDF, the IDF fitted on the training
    patients' bags only, :mod:`hccrad.deep.mil`) and, with ``dst_metrics`` (then ``clinical`` and
    ``label`` are needed), the network's own metrics per split
    (:func:`hccrad.deep.split_metrics.split_metrics`: per slice for MIL models).
    """
    import pandas as pd
    import torch

    torch.set_num_threads(max(1, threads))
    patients = sorted(inputs)
    paths_ = [inputs[p] for p in patients]
    if is_untrained(checkpoint):
        index = pd.Index(patients, name="patient")
        fileio.write_parquet(pd.DataFrame({"deep_0": 0.0}, index=index), dst_features, index=True)
        fileio.write_parquet(pd.DataFrame({"patient": patients, "prob": 0.5}), dst_predictions)
        if dst_mil is not None:
            fileio.write_parquet(pd.DataFrame({"plh_0": 1.0}, index=index), dst_mil, index=True)
        if dst_metrics is not None:
            _write_split_metrics(pd.DataFrame({"patient": patients, "prob": 0.5}), splits,
                                 clinical, label, dst_metrics)  # fmt: skip
        log.warning("untrained model: constant features for %d patients", len(patients))
        return
    feats = extract_features(checkpoint, paths_, patients, device="auto")
    fileio.write_parquet(feats, dst_features, index=True)
    pred = predict(checkpoint, paths_, patients=patients, device="auto")
    fileio.write_parquet(pred.drop(columns="path"), dst_predictions)
    if dst_metrics is not None:
        _write_split_metrics(pred, splits, clinical, label, dst_metrics)
    if dst_mil is not None:
        if "instance" not in pred:
            raise ValueError("MIL features need a slice-level model (input_kind 'slice')")
        names, bags = bags_from_table(pred)
        split = pd.read_parquet(splits).set_index("patient")["split"]
        train = [b for n, b in zip(names, bags, strict=True) if split.get(n) == "train"]
        mil = MILFeatures(plh_bins=mil_bins, bow_words=mil_words).fit(train)
        table = pd.DataFrame(
            mil.transform(bags), index=pd.Index(names, name="patient"),
            columns=list(mil.get_feature_names_out()),
        )  # fmt: skip
        fileio.write_parquet(table, dst_mil, index=True)
    log.info("%d patients: %d deep features", len(patients), feats.shape[1])


def _labels_and_splits(
    splits: PathLike, clinical: PathLike | None, label: str | None
) -> tuple[dict[str, float], dict[str, str]]:
    """Patient -> label (NaN: unknown) and patient -> split, for the per-split metrics."""
    import pandas as pd

    if clinical is None or not label:
        raise ConfigError("the per-split metrics of a deep model need the clinical table and label")
    table = read_clinical(clinical).set_index("patient")
    if label not in table:
        raise InputError(f"label column {label!r} not in the clinical table", file=clinical)
    labels = pd.to_numeric(table[label], errors="coerce")
    labels.index = labels.index.astype(str)
    split = pd.read_parquet(splits)
    split = split.set_index("patient")["split"] if "patient" in split else split["split"]
    split.index = split.index.astype(str)
    return labels.to_dict(), split.to_dict()


def _write_split_metrics(
    pred: Any, splits: PathLike, clinical: PathLike | None, label: str | None, dst: PathLike
) -> None:
    """``split_metrics.parquet``: the model's own metrics per split (labels from ``clinical``)."""
    metrics = split_metrics(pred, *_labels_and_splits(splits, clinical, label))
    fileio.write_parquet(metrics, dst)
    for row in metrics.itertuples():
        log.info("%s (%s level, n=%d): AUC %.3f [%.3f, %.3f], accuracy %.3f", row.split,
                 row.level, row.n, row.auc, row.auc_lower, row.auc_upper, row.accuracy)  # fmt: skip


def deep_gradcam(
    checkpoint: PathLike,
    inputs: Mapping[str, PathLike],
    out_dir: PathLike,
    *,
    max_patients: int = 6,
    method: str = "gradcam",
) -> None:
    """Grad-CAM (or ``method``: :data:`hccrad.deep.gradcam.CAM_METHODS`) overlays
    (``{patient}.png``) for the first ``max_patients`` patients (sorted)."""

    if method not in CAM_METHODS:
        raise ConfigError(f"unknown CAM method {method!r}; choose one of {', '.join(CAM_METHODS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if is_untrained(checkpoint):
        fileio.placeholder_png(
            out / "untrained.png", "Grad-CAM", "model not trained (see its metrics.json)"
        )
        return
    model, _kind = resolve_model(checkpoint, "cpu")
    for patient in sorted(inputs)[:max_patients]:
        x = DeepInput.load(inputs[patient]).x
        gradcam_overlay(model, x, out / f"{patient}.png", title=patient, method=method)
    log.info("%s overlays for %d patients in %s", method, min(len(inputs), max_patients), out)


def is_untrained(checkpoint: PathLike) -> bool:
    """Whether ``checkpoint`` is the marker :func:`train_deep_model` writes when it cannot train."""
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return isinstance(ckpt, dict) and bool(ckpt.get("untrained"))
