"""A study's tables: the typed clinical table with the derived columns, and the feature
blocks' columns for its patients."""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from hccrad.config import load_schema
from hccrad.errors import ConfigError, InputError
from hccrad.sheets import read_clinical
from hccrad.studies.spec import BlockSpec, StudySpec

log = logging.getLogger(__name__)


def read_clinical_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The clinical TSV typed: schema string columns stay text, other columns become numbers
    when every non-empty cell parses as one; empty cells are missing. Index: ``patient``."""
    raw = read_clinical(path)
    if "patient" not in raw.columns:
        raise InputError("clinical table has no 'patient' column", file=path)
    props = load_schema("clinical")["properties"]
    out = {}
    for col in raw.columns:
        text = raw[col].replace("", np.nan)
        types = props.get(col, {}).get("type", [])
        types = types if isinstance(types, list) else [types]
        if col == "patient" or "string" in types:
            out[col] = text.astype(object)
            continue
        num = pd.to_numeric(text, errors="coerce")
        out[col] = num if num.notna().sum() == text.notna().sum() else text.astype(object)
    table = pd.DataFrame(out)
    table["patient"] = table["patient"].astype(str)
    return table.set_index("patient")


def derive_columns(
    clinical: pd.DataFrame, derived: Mapping[str, Mapping[str, Any]]
) -> pd.DataFrame:
    """Add the derived columns, in order; a derived column may use others (e.g. a grade cut
    from a weighted sum of a log), and one whose sources are not in the table yet waits for
    them, whatever the order of the mapping (a YAML dump may sort it).

    One source ``column``: ``gt/ge/lt/le/eq/ne`` -> 1.0/0.0; ``isin`` (a list) -> 1.0/0.0;
    ``log/log2/log10`` (values <= 0 -> missing); ``map`` (a mapping; unmapped -> missing);
    ``between`` (``value: [low, high]``) -> 1.0 when ``low <= x < high``; ``cut`` (``bins``:
    increasing edges, intervals closed on the left ``[b_i, b_{i+1})``; ``labels``: one per
    interval, default 0, 1, ...) -> the interval's label, missing outside the edges (use
    ``.inf`` for open ends). A missing source stays missing.

    Several source ``columns`` (each read as a number): ``any`` / ``all`` -> 1.0 when any / all
    of them are non-zero (``any``: 1.0 as soon as one known value is non-zero, 0.0 only when
    all are known and zero; ``all``: 0.0 as soon as one known value is zero); ``sum`` -> their
    sum, weighted by ``weights`` (one number per column, default 1; e.g. the six-and-twelve
    score = diameter in mm x 0.1 + number), missing when one is missing; ``ratio`` -> the first
    column over the second (e.g. the neutrophil-to-lymphocyte ratio), missing when either is
    missing or the second is 0.
    """
    out = clinical.copy()
    pending = dict(derived)
    while pending:
        done = []
        for name, d in pending.items():  # declaration order; a column waits for its sources
            sources = _sources(d)
            if not all(c in out.columns for c in sources):
                continue
            if "columns" in d:
                out[name] = _derive_many(out[sources], d["op"], name, d.get("weights"))
            else:
                out[name] = _derive_one(out[sources[0]], d, name)
            done.append(name)
        if not done:  # nothing computable: report the first column still waiting
            name, d = next(iter(pending.items()))
            absent = [c for c in _sources(d) if c not in out.columns]
            raise InputError(f"derived column {name!r}: source column(s) {absent} not in the table")
        for name in done:
            del pending[name]
    return out


def _sources(d: Mapping[str, Any]) -> list[str]:
    """The source columns of a derived column's definition."""
    return list(d["columns"]) if "columns" in d else [d["column"]]


def _derive_one(src: pd.Series, d: Mapping[str, Any], name: str) -> pd.Series:
    """One derived column from one source column (see :func:`derive_columns`)."""
    op, value = d["op"], d.get("value")
    miss = src.isna()
    if op in ("gt", "ge", "lt", "le", "eq", "ne"):
        if op in ("eq", "ne"):
            cmp = src.astype(str) == str(value)
            res = cmp if op == "eq" else ~cmp
        else:
            num = pd.to_numeric(src, errors="coerce")
            res = getattr(num, op)(float(value))
        vals = res.astype(float)
    elif op == "isin":
        vals = src.astype(str).isin([str(v) for v in value]).astype(float)
    elif op in ("log", "log2", "log10"):
        num = pd.to_numeric(src, errors="coerce")
        vals = getattr(np, op)(num.where(num > 0))
    elif op == "map":
        vals = src.map(lambda v, m=value: m.get(v, m.get(str(v), np.nan)))
        num = pd.to_numeric(vals, errors="coerce")
        vals = num if num.notna().sum() == vals.notna().sum() else vals.astype(object)
    elif op == "between":
        num = pd.to_numeric(src, errors="coerce")
        vals = ((num >= float(value[0])) & (num < float(value[1]))).astype(float)
    elif op == "cut":
        bins = [float(b) for b in d["bins"]]
        labels = list(d.get("labels") or range(len(bins) - 1))
        num = pd.to_numeric(src, errors="coerce").to_numpy(dtype=float)
        idx = np.searchsorted(bins, num, side="right") - 1
        inside = (idx >= 0) & (idx < len(bins) - 1) & np.isfinite(num)
        picked = [labels[i] if ok else np.nan for i, ok in zip(idx, inside, strict=True)]
        vals = pd.Series(picked, index=src.index)
        num_vals = pd.to_numeric(vals, errors="coerce")
        vals = num_vals if num_vals.notna().sum() == vals.notna().sum() else vals.astype(object)
    else:  # pragma: no cover - the schema rejects other ops
        raise ConfigError(f"derived column {name!r}: unknown op {op!r}")
    return vals.where(~miss)


def _derive_many(
    src: pd.DataFrame, op: str, name: str, weights: Sequence[float] | None = None
) -> pd.Series:
    """One derived column from several source columns (``any``, ``all``, ``sum`` with
    optional ``weights``, ``ratio`` of two)."""
    num = src.apply(pd.to_numeric, errors="coerce")
    if op == "ratio":
        top, bottom = num.iloc[:, 0], num.iloc[:, 1]
        return top / bottom.where(bottom != 0)
    if op == "sum":
        if weights is not None:
            num = num * np.asarray(weights, dtype=float)
        return num.sum(axis=1, min_count=num.shape[1]).where(num.notna().all(axis=1))
    if op not in ("any", "all"):  # pragma: no cover - the schema rejects other ops
        raise ConfigError(f"derived column {name!r}: op {op!r} takes one column")
    nonzero = (num != 0) & num.notna()
    zero = num == 0
    if op == "any":
        vals = pd.Series(np.where(nonzero.any(axis=1), 1.0, np.nan), index=src.index)
        return vals.where(vals.notna() | ~zero.all(axis=1), 0.0)
    vals = pd.Series(np.where(zero.any(axis=1), 0.0, np.nan), index=src.index)
    return vals.where(vals.notna() | ~nonzero.all(axis=1), 1.0)


def _criterion_text(kind: str, c: Mapping[str, Any]) -> str:
    """A criterion's ``reason``, else the test itself (``exclude: cnlc isin ['IIIa']``)."""
    if c.get("reason"):
        return str(c["reason"])
    value = f" {c['value']}" if "value" in c else ""
    return f"{kind}: {c['column']} {c['op']}{value}"


def criteria_exclusions(spec: StudySpec, table: pd.DataFrame) -> dict[str, str]:
    """``{patient: reason}`` of the patients the study's criteria remove from ``table``
    (indexed by patient, derived columns added): an ``include`` test that is false or cannot
    be evaluated (a missing value), or an ``exclude`` test that holds (a missing value does not
    exclude). The first failing criterion, includes first, gives the reason.

    Raises:
        InputError: A criterion's column is not in the table.
    """
    reasons: dict[str, str] = {}
    for kind, criteria in (("include", spec.include), ("exclude", spec.exclude)):
        for c in criteria:
            if c["column"] not in table.columns:
                raise InputError(
                    f"study {spec.name}: {kind} criterion on {c['column']!r}, not in the table"
                )
            src = table[c["column"]]
            if c["op"] in ("notna", "isna"):
                holds = (src.notna() if c["op"] == "notna" else src.isna()).astype(float)
            else:
                holds = _derive_one(src, c, f"{kind} criterion")
            text = _criterion_text(kind, c)
            if kind == "include":
                hits = holds.ne(1.0)
                why = pd.Series(text, index=table.index).where(
                    holds.notna(), f"{text} ({c['column']} missing)"
                )
            else:
                hits = holds.eq(1.0)
                why = pd.Series(text, index=table.index)
            for p in table.index[hits.to_numpy()]:
                reasons.setdefault(str(p), str(why[p]))
    return reasons


def apply_criteria(spec: StudySpec, table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``table`` without the patients the study's criteria exclude
    (:func:`criteria_exclusions`), and the record of ``metrics.json`` ``criteria``:
    ``n_before``, ``n_excluded``, ``by_reason`` (``{reason: count}``) and ``patients``
    (``{patient: reason}``)."""
    excluded = criteria_exclusions(spec, table)
    by_reason: dict[str, int] = {}
    for why in excluded.values():
        by_reason[why] = by_reason.get(why, 0) + 1
    record = {
        "n_before": len(table),
        "n_excluded": len(excluded),
        "by_reason": by_reason,
        "patients": dict(sorted(excluded.items())),
    }
    keep = [p for p in table.index if str(p) not in excluded]
    return table.loc[keep], record


def included(spec: StudySpec, clinical: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``clinical`` (index or column ``patient``; derived columns computed when
    absent) that the study's criteria keep, unchanged otherwise (idempotent)."""
    if not (spec.include or spec.exclude):
        return clinical
    table = clinical.set_index("patient") if "patient" in clinical.columns else clinical
    table = table.set_axis(table.index.astype(str))
    absent = {k: v for k, v in spec.derived.items() if k not in table.columns}
    excluded = criteria_exclusions(spec, derive_columns(table, absent) if absent else table)
    return clinical[~table.index.isin(list(excluded))]


def study_clinical(
    spec: StudySpec, clinical: pd.DataFrame, patients: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """The study's patients (its modality, its ``include`` / ``exclude`` criteria) with the
    derived columns, indexed by patient.

    Args:
        clinical: The clinical table (index or column ``patient``).
        patients: ``{patient: modality}`` of the cohort sheet; when given, only these patients
            are kept and their modality comes from here (else from the ``modality`` column,
            and every row counts when there is none).

    Returns:
        The table; ``attrs["criteria"]`` holds :func:`apply_criteria`'s record (the patients
        the criteria removed, by reason; logged).

    Raises:
        InputError: No patient of the study's modality (or none left by the criteria), or
            the label column is missing.
    """
    table = clinical.copy()
    if "patient" in table.columns:
        table = table.set_index("patient")
    table.index = table.index.astype(str)
    table.index.name = "patient"
    if patients is not None:
        table = table.loc[[p for p in table.index if p in patients]]
        table["modality"] = [patients[p] for p in table.index]
    if "modality" in table.columns:
        table = table[table["modality"].astype(str) == spec.modality]
    if table.empty:
        raise InputError(f"study {spec.name}: no {spec.modality} patient in the clinical table")
    if spec.label not in table.columns:
        raise InputError(
            f"study {spec.name}: the clinical table has no label column {spec.label!r}"
        )
    table, record = apply_criteria(spec, derive_columns(table, spec.derived))
    if record["n_excluded"]:
        log.info(
            "study %s: %d of %d patient(s) excluded by the criteria: %s",
            spec.name, record["n_excluded"], record["n_before"], record["by_reason"],
        )  # fmt: skip
    if table.empty:
        raise InputError(f"study {spec.name}: the include / exclude criteria leave no patient")
    table = table.sort_index()
    table.attrs["criteria"] = record
    return table


def _match(value: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def select_block_columns(block: BlockSpec, columns: Sequence[str]) -> list[str]:
    """Columns of a ``radiomics``/``habitats``/``table`` source that ``block`` takes."""
    out = []
    for col in columns:
        col = str(col)
        if block.source == "radiomics":
            parts = col.split("_", 4)
            if len(parts) != 5:
                continue
            phase, region, itype, cls, feat = parts
            ok = (
                _match(phase, block.phases)
                and _match(region, block.regions)
                and _match(itype, block.image_types)
                and _match(cls, block.classes)
                and _match(feat, block.features)
            )
        elif block.source == "habitats":
            pats = block.columns if block.columns != ("*",) else ("habitat[0-9]*_*",)
            ok = _match(col, pats)
        else:
            ok = _match(col, block.columns)
        if ok and not _match(col, block.exclude):
            out.append(col)
    return out


def block_table(
    spec: StudySpec, block: BlockSpec, tables: Mapping[str, pd.DataFrame], clinical: pd.DataFrame
) -> tuple[pd.DataFrame, list[str]]:
    """One block's columns for its patients (index ``patient``) and its categorical columns."""
    where = f"study {spec.name}, block {block.name}"
    if block.source == "clinical":
        missing = [c for c in block.columns if c not in clinical.columns]
        if missing:
            raise InputError(f"{where}: clinical column(s) {missing} not in the table")
        data = clinical[list(block.columns)].copy()
        cats = [
            c
            for c in data.columns
            if c in block.categorical or not pd.api.types.is_numeric_dtype(data[c])
        ]
        for c in cats:
            data[c] = data[c].map(lambda v: v if pd.isna(v) else str(v)).astype(object)
        return data, cats
    key = block.input_key
    if key not in tables:
        raise InputError(f"{where}: no {key} table given (source {block.source})")
    table = tables[key].copy()
    if "patient" in table.columns:
        table = table.set_index("patient")
    table.index = table.index.astype(str)
    table.index.name = "patient"
    cols = select_block_columns(block, table.columns)
    if not cols:
        raise InputError(f"{where}: no column of the {key} table matches the block's patterns")
    data = table[cols]
    bad = [c for c in cols if not pd.api.types.is_numeric_dtype(data[c])]
    if bad:
        raise InputError(f"{where}: non-numeric column(s) {bad[:5]} in the {key} table")
    if data.index.has_duplicates:
        raise InputError(f"{where}: duplicate patient rows in the {key} table")
    return data.astype(float), []
