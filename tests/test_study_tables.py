"""The study tables (hccrad.studies.tables): weighted sums of derived columns and the
study-level patient criteria (include / exclude), applied alike by study_splits and run_study."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from test_studies import TINY_SPEC, write_spec

from hccrad import studies
from hccrad.errors import ConfigError, InputError
from hccrad.studies import load_study
from hccrad.studies.splits import study_splits
from hccrad.studies.tables import apply_criteria, criteria_exclusions, study_clinical


def _load_with(tmp_path, delta: dict, name: str = "delta"):
    spec = studies.deep_merge(yaml.safe_load(TINY_SPEC), delta)
    return load_study(write_spec(tmp_path, yaml.safe_dump(spec), name=name), check_estimators=False)


def test_weighted_sum_of_several_columns():
    """sum with weights = sum of w_i * x_i (missing when a source is missing), e.g. the
    six-and-twelve score = diameter (mm) / 10 + number of tumors."""
    nan = np.nan
    clin = pd.DataFrame(
        {"size_mm": [23.0, 38.0, 120.0, nan, 65.0], "number": [1, 3, 2, 1, nan]},
        index=pd.Index(list("abcde"), name="patient"),
    )
    derived = {
        "six_twelve": {"columns": ["size_mm", "number"], "op": "sum", "weights": [0.1, 1]},
        "high": {"column": "six_twelve", "op": "gt", "value": 12},
        "plain": {"columns": ["size_mm", "number"], "op": "sum"},
    }
    out = studies.derive_columns(clin, derived)
    np.testing.assert_allclose(out["six_twelve"], [3.3, 6.8, 14.0, nan, nan])
    np.testing.assert_array_equal(out["high"], [0, 0, 1, nan, nan])
    np.testing.assert_allclose(out["plain"], [24.0, 41.0, 122.0, nan, nan])
    # three columns, negative and fractional weights
    clin3 = pd.DataFrame({"x": [1.0, 2.0], "y": [10.0, 0.0], "z": [4.0, 8.0]})
    w = {"s": {"columns": ["x", "y", "z"], "op": "sum", "weights": [2, -0.5, 0.25]}}
    np.testing.assert_allclose(studies.derive_columns(clin3, w)["s"], [2 - 5 + 1, 4 + 0 + 2])


@pytest.mark.parametrize(
    ("derived", "message"),
    [
        ({"columns": ["hbv", "hcv"], "op": "sum", "weights": [1]}, "too short"),
        ({"columns": ["hbv", "hcv"], "op": "sum", "weights": [1, 2, 3]}, "one weight per column"),
        ({"columns": ["hbv", "hcv"], "op": "any", "weights": [1, 2]}, "belong to op sum"),
        ({"column": "afp", "op": "gt", "value": 1, "weights": [1, 2]}, "belong to op sum"),
    ],
)
def test_invalid_weights(tmp_path, derived, message):
    with pytest.raises(ConfigError, match=message):
        _load_with(tmp_path, {"derived": {"x": derived}}, name="broken")


# ---- patient criteria (include / exclude) ----------------------------------------------------

CRITERIA = {
    "include": [{"column": "age", "op": "ge", "value": 40}],
    "exclude": [
        {"column": "cnlc", "op": "isin", "value": ["IIIa", "IIIb"], "reason": "macrovascular"},
        {"column": "log10_afp", "op": "gt", "value": 3.5},
    ],
}


def test_criteria_exclusions_three_valued(tmp_path):
    """include: false or missing removes; exclude: true removes, missing keeps; the first
    failing criterion (includes first) names the reason; defaults spell the test."""
    spec = _load_with(tmp_path, CRITERIA)
    nan = np.nan
    table = pd.DataFrame(
        {
            "age": [55, 35, nan, 60, 70, 45, 50],
            "cnlc": ["Ia", "IIIa", "Ib", "IIIb", nan, "IIa", "Ia"],
            "log10_afp": [1.0, 4.0, 2.0, 1.0, 4.0, nan, 3.5],
        },
        index=pd.Index([f"p{i}" for i in range(7)], name="patient"),
    )
    got = criteria_exclusions(spec, table)
    assert got == {
        "p1": "include: age ge 40",  # fails the include first (also IIIa and AFP)
        "p2": "include: age ge 40 (age missing)",
        "p3": "macrovascular",
        "p4": "exclude: log10_afp gt 3.5",  # cnlc missing does not exclude
    }
    kept, record = apply_criteria(spec, table)
    assert list(kept.index) == ["p0", "p5", "p6"]  # AFP missing / exactly 3.5: kept
    assert record["n_before"] == 7 and record["n_excluded"] == 4
    assert record["by_reason"] == {
        "include: age ge 40": 1,
        "include: age ge 40 (age missing)": 1,
        "macrovascular": 1,
        "exclude: log10_afp gt 3.5": 1,
    }
    assert record["patients"] == got
    # notna / isna
    spec2 = _load_with(
        tmp_path,
        {
            "include": [{"column": "age", "op": "notna"}],
            "exclude": [{"column": "cnlc", "op": "isna"}],
        },
        name="na",
    )
    assert criteria_exclusions(spec2, table) == {
        "p2": "include: age notna",
        "p4": "exclude: cnlc isna",
    }


def _synthetic_clinical(n: int = 120, seed: int = 7) -> pd.DataFrame:
    """The synthetic MR cohort's clinical rows (column ``patient``), some ages missing."""
    from hccrad.synth import clinical_tables

    rows, _ = clinical_tables(seed=seed, n_patients=n, modality="MR")
    table = pd.DataFrame(rows)
    table.loc[table.index[::17], "age"] = np.nan
    return table


def _manual_keep(table: pd.DataFrame) -> pd.Series:
    """:data:`CRITERIA` by plain pandas (independent of hccrad)."""
    afp = pd.to_numeric(table["afp"], errors="coerce")
    high_afp = np.log10(afp.where(afp > 0)) > 3.5
    return (table["age"] >= 40) & ~table["cnlc"].isin(["IIIa", "IIIb"]) & ~high_afp


def test_study_clinical_and_study_splits_apply_the_same_criteria(tmp_path):
    spec = _load_with(tmp_path, CRITERIA)
    plain = _load_with(tmp_path, {}, name="plain")
    raw = _synthetic_clinical()
    keep = _manual_keep(raw)
    assert 0 < (~keep).sum() < len(raw) // 2  # the criteria remove some patients, not most
    clinical = study_clinical(spec, raw)
    assert set(clinical.index) == set(raw.loc[keep, "patient"].astype(str))
    record = clinical.attrs["criteria"]
    assert record["n_before"] == len(raw) and record["n_excluded"] == int((~keep).sum())
    assert set(record["patients"]) == set(raw.loc[~keep, "patient"].astype(str))
    assert sum(record["by_reason"].values()) == record["n_excluded"]
    # the split: the included patients only, as if the others were never in the table, whether
    # study_splits gets the raw table or study_clinical's
    want = study_splits(plain, raw[keep], seed=3)
    for table in (raw, clinical):
        got = study_splits(spec, table, seed=3)
        pd.testing.assert_frame_equal(got, want)
    # no criteria: every patient, an empty record
    assert len(study_clinical(plain, raw)) == len(raw)
    assert study_clinical(plain, raw).attrs["criteria"]["n_excluded"] == 0
    with pytest.raises(InputError, match="leave no patient"):
        study_clinical(
            _load_with(
                tmp_path, {"include": [{"column": "age", "op": "gt", "value": 200}]}, name="none"
            ),
            raw,
        )
    with pytest.raises(InputError, match="'hcc_sessions'"):
        study_clinical(
            _load_with(
                tmp_path, {"exclude": [{"column": "hcc_sessions", "op": "notna"}]}, name="absent"
            ),
            raw,
        )


@pytest.mark.parametrize(
    ("criteria", "message"),
    [
        ({"include": [{"column": "age", "op": "ge", "value": "forty"}]}, "needs a number"),
        ({"exclude": [{"column": "cnlc", "op": "isin", "value": "IIIa"}]}, "isin needs a list"),
        ({"exclude": [{"column": "afp", "op": "between", "value": [9, 1]}]}, "low < high"),
        ({"include": [{"column": "age", "op": "notna", "value": 1}]}, "takes no value"),
        ({"exclude": [{"column": "sex", "op": "eq"}]}, "needs a value"),
        ({"exclude": [{"column": "afp", "op": "log"}]}, "exclude.0.op"),
        ({"include": [{"op": "notna"}]}, "column"),
    ],
)
def test_invalid_criteria(tmp_path, criteria, message):
    with pytest.raises(ConfigError, match=message):
        _load_with(tmp_path, criteria, name="broken")


def test_run_study_sees_included_patients_only(tmp_path):
    """run_study: the split, the predictions and the baseline table hold only the included
    patients; metrics.json ``criteria`` counts the others by reason."""
    import json

    from test_studies import synthetic_tables

    from hccrad.studies import run_study

    spec = _load_with(tmp_path, {**CRITERIA, "explain": None})
    tables = synthetic_tables(60, seed=5)
    clin = tables["clinical"]
    mr = clin[clin["modality"] == "MR"].reset_index()
    keep = _manual_keep(mr)
    out = tmp_path / "out"
    metrics = run_study(spec, tables, out, seed=11)
    crit = json.loads((out / "metrics.json").read_text())["criteria"]
    assert crit == metrics["criteria"]
    assert crit["n_before"] == len(mr) and crit["n_excluded"] == int((~keep).sum()) > 0
    assert set(crit["patients"]) == set(mr.loc[~keep, "patient"])
    assert metrics["n_patients"] == int(keep.sum())
    included_ids = set(mr.loc[keep, "patient"])
    assert set(pd.read_parquet(out / "splits.parquet")["patient"]) == included_ids
    assert set(pd.read_parquet(out / "predictions.parquet")["patient"]) <= included_ids
