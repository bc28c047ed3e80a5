"""The audit of one run: every audit output, written under ``results/cohort/audit/``.

:func:`run_audit` is what the workflow's ``audit`` rule and ``hccrad audit run`` call. Order
matters: the manifest first (it hashes the results before the audit adds its own files), the
privacy scan last but one (it also searches the audit's own tables), the checklist last.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from hccrad.audit import checklist, drift, manifest, planted, privacy, reproducibility
from hccrad.audit._io import PathLike
from hccrad.config import Audit, settings_from_config
from hccrad.errors import HccradError
from hccrad.fileio import write_json, write_parquet, write_tsv
from hccrad.sheets import read_cohort_sheet

log = logging.getLogger(__name__)

#: Audit outputs by name: file names inside ``results/cohort/audit/``.
AUDIT_OUTPUTS: dict[str, str] = {
    "manifest": "manifest.json",
    "manifest_table": "manifest.tsv",
    "drift": "drift.parquet",
    "drift_summary": "drift_summary.tsv",
    "drift_figure": "drift.png",
    "icc_summary": "icc_summary.tsv",
    "planted_signal": "planted_signal.tsv",
    "privacy": "privacy.tsv",
    "checklist": "checklist.tsv",
    "summary": "summary.json",
}


class PrivacyError(HccradError):
    """An identifier of the DICOM inputs was found in an output."""


@dataclass(frozen=True)
class AuditOptions:
    """Thresholds of the audit (config key ``audit``)."""

    drift_threshold: float = drift.DEFAULT_THRESHOLD
    icc_thresholds: tuple[float, ...] = reproducibility.DEFAULT_THRESHOLDS
    icc_column: str = "icc2_1"
    fail_on_identifiers: bool = True
    workers: int = 1  # threads hashing the manifest, processes of the privacy scan (rule threads)

    @classmethod
    def from_settings(cls, audit: Audit) -> AuditOptions:
        """The options of the config's ``audit`` settings (``icc_column`` keeps its default)."""
        return cls(
            drift_threshold=audit.drift_threshold,
            icc_thresholds=audit.icc_thresholds,
            fail_on_identifiers=audit.fail_on_identifiers,
        )


@dataclass(frozen=True)
class AuditInputs:
    """What one audit reads. ``features``/``reader_icc``/``truth`` may be None (not produced,
    not a synthetic cohort)."""

    results: Path
    config: Mapping[str, Any]
    cohort_sheet: Path
    clinical: Path
    features: Path | None = None
    reader_icc: Path | None = None
    reader_icc_intra: Path | None = None
    study_dirs: tuple[Path, ...] = field(default_factory=tuple)
    truth: Path | None = None
    project_dir: Path | None = None


def sheet_patients(cohort_sheet: PathLike, clinical: PathLike | None = None) -> pd.DataFrame:
    """``patient, center, modality`` of every patient of the cohort sheet (the clinical table
    fills in patients the sheet lacks)."""
    sheet = read_cohort_sheet(cohort_sheet)[["patient", "center", "modality"]]
    frames = [sheet]
    if clinical is not None and Path(clinical).is_file():
        clin = pd.read_csv(clinical, sep="\t", dtype=str, keep_default_na=False)
        if {"patient", "center", "modality"} <= set(clin.columns):
            frames.append(clin[["patient", "center", "modality"]])
    return pd.concat(frames, ignore_index=True).drop_duplicates("patient").reset_index(drop=True)


def output_paths(out_dir: PathLike) -> dict[str, Path]:
    """The audit outputs inside ``out_dir`` (:data:`AUDIT_OUTPUTS`)."""
    return {k: Path(out_dir) / v for k, v in AUDIT_OUTPUTS.items()}


def run_audit(
    inputs: AuditInputs, out_dir: PathLike, options: AuditOptions | None = None
) -> dict[str, Any]:
    """Write every audit output into ``out_dir`` and return the summary (``summary.json``).

    Raises:
        PrivacyError: when an identifier of the DICOM inputs is found in a file under
            ``results/`` and ``options.fail_on_identifiers`` (after writing every output, so
            that ``privacy.tsv`` names the files).
    """
    options = options or AuditOptions()
    out = output_paths(out_dir)
    for path in out.values():  # a rerun starts clean: the scan must not see old audit files
        path.unlink(missing_ok=True)
    summary = _provenance(inputs, out, options.workers)
    summary["drift"] = _center_drift(inputs, out, options)
    summary["reader_icc"] = _reader_icc(inputs, out, options)
    summary["planted_signal"] = _planted_signal(inputs, out)
    summary["privacy"], hits = _privacy_scan(inputs, out, options.workers)
    summary["checklist"] = _checklist(inputs, out)
    write_json(summary, out["summary"])
    if hits:
        _identifiers_found(hits, options)
    return summary


def _provenance(inputs: AuditInputs, out: Mapping[str, Path], workers: int = 1) -> dict[str, Any]:
    """1. The manifest (``manifest.json``, ``manifest.tsv``); its part of the summary."""
    man = manifest.build_manifest(
        Path(inputs.results),
        config=inputs.config,
        cohort_sheet=inputs.cohort_sheet,
        clinical=inputs.clinical,
        study_dirs=inputs.study_dirs,
        project_dir=inputs.project_dir,
        workers=workers,
    )
    manifest.write_manifest(man, out["manifest"], out["manifest_table"])
    return {
        "config_sha256": man["config_sha256"],
        "git": man["git"],
        "n_result_files": len(man["outputs"]),
        "n_input_files": len(man["inputs"]),
    }


def _center_drift(
    inputs: AuditInputs, out: Mapping[str, Path], options: AuditOptions
) -> dict[str, Any]:
    """2. Center drift (table, summary, figure); its part of the summary."""
    patients = sheet_patients(inputs.cohort_sheet, inputs.clinical)
    if inputs.features is not None and Path(inputs.features).is_file():
        features = pd.read_parquet(inputs.features)
        drift_table = drift.center_drift(features, patients, threshold=options.drift_threshold)
    else:
        log.info("drift: no radiomics feature table")
        drift_table = pd.DataFrame(columns=drift.DRIFT_COLUMNS)
    summary_table = drift.drift_summary(drift_table, patients, threshold=options.drift_threshold)
    write_parquet(drift_table, out["drift"])
    write_tsv(summary_table, out["drift_summary"])
    drift.plot_drift(
        drift_table, summary_table, out["drift_figure"], threshold=options.drift_threshold
    )
    return {
        "threshold": options.drift_threshold,
        "share_flagged": {
            f"{r.modality} {r.center}": r.share_flagged for r in summary_table.itertuples()
        },
    }


def _reader_icc(inputs: AuditInputs, out: Mapping[str, Path], options: AuditOptions) -> str:
    """3. Reader reproducibility (``icc_summary.tsv``: inter-reader rows, then intra-reader rows
    when reader 1's repeat outlines were extracted); which tables were read."""
    tables = {
        key: pd.read_parquet(path)
        for key, path in (("inter", inputs.reader_icc), ("intra", inputs.reader_icc_intra))
        if path is not None and Path(path).is_file()
    }
    icc_table = reproducibility.reader_icc_summary(
        tables, thresholds=options.icc_thresholds, column=options.icc_column
    )
    write_tsv(icc_table, out["icc_summary"])
    if not tables:
        return "no reader_icc table"
    return "computed (" + ", ".join(reproducibility.AGREEMENTS[k] for k in tables) + ")"


def _planted_signal(inputs: AuditInputs, out: Mapping[str, Path]) -> str:
    """4. Planted-signal recovery (``planted_signal.tsv``); its line of the summary."""
    planted_table = planted.planted_signal_table(inputs.study_dirs, inputs.truth)
    write_tsv(planted_table, out["planted_signal"])
    if inputs.truth is None:
        return "skipped: no truth.tsv (not a synthetic cohort)"
    found = planted.verdicts(planted_table)
    good, judged = planted.tally(found)
    what = "stay at chance" if any(v.null_cohort for v in found) else "recovered"
    return f"{good} of {judged} studies {what}"


def _privacy_scan(
    inputs: AuditInputs, out: Mapping[str, Path], workers: int = 1
) -> tuple[dict[str, Any], list[privacy.Hit]]:
    """5. The privacy scan of ``results/`` (``privacy.tsv``); its part of the summary and the
    hits."""
    identifiers = privacy.sheet_identifiers(inputs.cohort_sheet)
    hits, n_scanned = privacy.scan_tree(Path(inputs.results), identifiers, workers=workers)
    write_tsv(privacy.privacy_table(identifiers, hits), out["privacy"])
    return {
        "identifying_tags": sorted(identifiers),
        "n_values": sum(len(v) for v in identifiers.values()),
        "n_files_scanned": n_scanned,
        "files_with_identifiers": sorted({h.file for h in hits}),
    }, hits


def _checklist(inputs: AuditInputs, out: Mapping[str, Path]) -> dict[str, str]:
    """6. The reporting checklists (``checklist.tsv``); items with evidence per checklist."""
    studies = [Path(d).name for d in inputs.study_dirs]
    written = [f"cohort/audit/{name}" for name in AUDIT_OUTPUTS.values()]
    checklist_rows = checklist.checklist_table(Path(inputs.results), studies, written=written)
    write_tsv(checklist_rows, out["checklist"])
    return {
        name: f"{int(g['exists'].sum())}/{len(g)} items with evidence"
        for name, g in checklist_rows.groupby("checklist", sort=False)
    }


def _identifiers_found(hits: Sequence[privacy.Hit], options: AuditOptions) -> None:
    """Raise :class:`PrivacyError` (or log an error) naming where identifiers were found."""
    where = sorted({f"{h.file} ({h.tag}, {h.where})" for h in hits})
    msg = f"{len(where)} identifier occurrence(s) of the DICOM inputs in outputs: " + "; ".join(
        where[:20]
    )
    if options.fail_on_identifiers:
        raise PrivacyError(msg)
    log.error("%s", msg)


def study_folders(results: PathLike) -> tuple[Path, ...]:
    """Study folders of a results folder (those with a ``metrics.json``), sorted."""
    root = Path(results) / "cohort" / "studies"
    return tuple(sorted(p.parent for p in root.glob("*/metrics.json")))


def audit_from_config(
    config_file: PathLike,
    results: PathLike = "results",
    *,
    cohort: str | None = None,
    clinical: str | None = None,
    project_dir: PathLike | None = None,
) -> dict[str, Any]:
    """``hccrad audit run``: audit the run in ``results`` made with ``config_file``."""
    import yaml

    with open(config_file) as fh:
        config = yaml.safe_load(fh) or {}
    config.update({k: v for k, v in (("cohort", cohort), ("clinical", clinical)) if v})
    settings = settings_from_config(config)
    results = Path(results)
    radiomics = results / "cohort" / "radiomics"
    inputs = AuditInputs(
        results=results,
        config=config,
        cohort_sheet=settings.cohort,
        clinical=settings.clinical,
        features=radiomics / "features.parquet",
        reader_icc=radiomics / "reader_icc.parquet",
        reader_icc_intra=radiomics / "reader_icc_intra.parquet",
        study_dirs=study_folders(results),
        truth=planted.find_truth(settings.cohort, settings.audit.truth),
        project_dir=Path(project_dir) if project_dir else Path(config_file).resolve().parents[1],
    )
    options = AuditOptions.from_settings(settings.audit)
    return run_audit(inputs, results / "cohort" / "audit", options)


def run_audit_job(
    *,
    out_dir: PathLike,
    config: Mapping[str, Any],
    cohort: PathLike,
    clinical: PathLike,
    features: PathLike | None,
    reader_icc: PathLike | None,
    study_dirs: Sequence[PathLike],
    truth: PathLike | None,
    project_dir: PathLike | None,
    workers: int = 1,
    reader_icc_intra: PathLike | None = None,
) -> dict[str, Any]:
    """Rule ``audit``: the audit of the workflow's run (thresholds from the config).

    ``out_dir`` is ``{results}/cohort/audit``; the results folder is taken from it. ``workers``
    processes share the privacy scan.
    """
    settings = settings_from_config(config)
    inputs = AuditInputs(
        results=Path(out_dir).parents[1],
        config=config,
        cohort_sheet=Path(cohort),
        clinical=Path(clinical),
        features=Path(features) if features else None,
        reader_icc=Path(reader_icc) if reader_icc else None,
        reader_icc_intra=Path(reader_icc_intra) if reader_icc_intra else None,
        study_dirs=tuple(Path(d) for d in study_dirs),
        truth=Path(truth) if truth else None,
        project_dir=Path(project_dir) if project_dir else None,
    )
    options = replace(AuditOptions.from_settings(settings.audit), workers=workers)
    return run_audit(inputs, out_dir, options)
