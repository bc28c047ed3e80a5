"""ICC against Shrout & Fleiss (1979) and the per-feature reader ICC."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import shared_data
from hccrad.errors import InputError
from hccrad.icc import KINDS, feature_icc, icc, icc_anova

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

#: Shrout & Fleiss (1979), Table 2: 6 targets x 4 judges.
SF_TABLE = np.array(
    [
        [9, 2, 5, 8],
        [6, 1, 3, 2],
        [8, 4, 6, 8],
        [7, 1, 2, 6],
        [10, 5, 6, 9],
        [6, 2, 4, 7],
    ],
    dtype=float,
)

#: Published values (also in ../shared/data/README.md).
SF_EXPECTED = {
    "ICC(1,1)": 0.165742,
    "ICC(2,1)": 0.289764,
    "ICC(3,1)": 0.714841,
    "ICC(1,k)": 0.442797,
    "ICC(2,k)": 0.620051,
    "ICC(3,k)": 0.909316,
}


def _check_sf(data) -> None:
    for kind, want in SF_EXPECTED.items():
        assert icc(data, kind) == pytest.approx(want, abs=1e-5), kind


def test_shrout_fleiss_hard_coded():
    _check_sf(SF_TABLE)
    res = icc_anova(SF_TABLE)
    assert (res.n, res.k) == (6, 4)
    # ANOVA of the classic example: BMS 11.24, JMS 32.49, EMS 1.02, WMS 6.26
    assert res.msr == pytest.approx(11.241667, abs=1e-5)
    assert res.msc == pytest.approx(32.486111, abs=1e-5)
    assert res.mse == pytest.approx(1.019444, abs=1e-5)
    assert res.msw == pytest.approx(6.263889, abs=1e-5)


def test_shrout_fleiss_shared_csv():
    path = shared_data("stats") / "shrout_fleiss_1979.csv"
    table = pd.read_csv(path, index_col="target")
    assert table.shape == (6, 4)
    np.testing.assert_array_equal(table.to_numpy(dtype=float), SF_TABLE)
    _check_sf(table)


def test_kind_aliases_and_result_access():
    res = icc_anova(SF_TABLE)
    assert icc(SF_TABLE, "ICC2") == res.icc2_1 == res["ICC(2,1)"]
    assert icc(SF_TABLE, "icc3k") == res.icc3_k
    assert icc(SF_TABLE, "2,1") == res.icc2_1
    assert set(res.as_dict()) >= {"icc1_1", "msr", "n"}
    assert len(KINDS) == 6
    with pytest.raises(ValueError, match="unknown ICC kind"):
        icc(SF_TABLE, "ICC(4,1)")
    with pytest.raises(InputError):
        icc(np.arange(5.0))


def test_perfect_agreement_is_one():
    x = np.array([1.0, 4.0, 2.5, 8.0, -3.0])
    data = np.column_stack([x, x, x])
    for kind in KINDS:
        assert icc(data, kind) == pytest.approx(1.0, abs=1e-12), kind
    # a constant offset between readers keeps consistency (3,1) at 1 but lowers agreement (2,1)
    shifted = np.column_stack([x, x + 2.0])
    assert icc(shifted, "ICC(3,1)") == pytest.approx(1.0)
    assert icc(shifted, "ICC(2,1)") < 1.0


def test_constant_and_degenerate_are_nan():
    assert np.isnan(icc(np.full((5, 2), 3.0), "ICC(2,1)"))
    assert np.isnan(icc(np.array([[1.0, 2.0]]), "ICC(3,1)"))
    # rows with missing values are dropped
    with_nan = np.vstack([SF_TABLE, [np.nan, 1.0, 2.0, 3.0]])
    assert icc(with_nan, "ICC(2,1)") == pytest.approx(SF_EXPECTED["ICC(2,1)"], abs=1e-5)


def test_feature_icc_orders_features_by_noise():
    rng = np.random.default_rng(2024)
    n = 200
    patients = [f"P{i:03d}" for i in range(n)]
    truth = rng.normal(0.0, 1.0, size=(n, 4))
    noise_sd = {"f_clean": 0.05, "f_low": 0.3, "f_mid": 0.8, "f_high": 2.0}
    cols = list(noise_sd)
    r1 = pd.DataFrame(truth, index=patients, columns=cols)
    r2 = r1.copy()
    for j, c in enumerate(cols):
        r1[c] = truth[:, j] + rng.normal(0.0, noise_sd[c], n)
        r2[c] = truth[:, j] + rng.normal(0.0, noise_sd[c], n)
    r1["f_const"] = 7.0
    r2["f_const"] = 7.0
    r2["only_in_r2"] = 1.0
    # reader 2 has its rows shuffled and one patient fewer: alignment is by index
    r2 = r2.sample(frac=1.0, random_state=1).drop(index="P000")
    # and a missing value
    r2.loc["P001", "f_low"] = np.nan

    out = feature_icc(r1, r2)
    assert list(out.columns) == ["icc2_1", "icc3_1", "n"]
    assert list(out.index) == [*cols, "f_const"]
    assert out.loc["f_clean", "n"] == n - 1
    assert out.loc["f_low", "n"] == n - 2
    assert np.isnan(out.loc["f_const", "icc2_1"]) and np.isnan(out.loc["f_const", "icc3_1"])
    icc21 = out.loc[cols, "icc2_1"].to_numpy()
    assert np.all(np.diff(icc21) < 0), icc21  # more noise, lower ICC
    # expected ICC = var(truth) / (var(truth) + var(noise)) for zero-mean noise
    for c in cols:
        assert out.loc[c, "icc2_1"] == pytest.approx(1.0 / (1.0 + noise_sd[c] ** 2), abs=0.08)
    assert out.loc["f_clean", "icc2_1"] > 0.99


def test_feature_icc_needs_overlap():
    a = pd.DataFrame({"x": [1.0, 2.0]}, index=["A", "B"])
    b = pd.DataFrame({"y": [1.0, 2.0]}, index=["A", "B"])
    with pytest.raises(InputError, match="share"):
        feature_icc(a, b)


def _shrout_fleiss_k2(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """ICC(2,1) and ICC(3,1) of two raters by Shrout & Fleiss's mean squares, written out."""
    x = np.column_stack([a, b])
    n, k = x.shape
    grand = x.mean()
    msr = k * ((x.mean(axis=1) - grand) ** 2).sum() / (n - 1)
    msc = n * ((x.mean(axis=0) - grand) ** 2).sum() / (k - 1)
    resid = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + grand
    mse = (resid**2).sum() / ((n - 1) * (k - 1))
    icc2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    icc3 = (msr - mse) / (msr + (k - 1) * mse)
    return icc2, icc3


def test_intra_observer_table_from_the_patients_extractions(tmp_path):
    """steps.reader_icc on per-patient extraction JSONs (reader 1, reader 2, reader 1's repeat):
    the intra-observer table compares reader 1 with the repeat, the inter-observer one with
    reader 2, each equal to the closed form; a patient without a repeat is not in the intra
    table."""
    from hccrad.steps import reader_icc

    rng = np.random.default_rng(11)
    n = 12
    truth = rng.normal(100.0, 20.0, size=(n, 2))
    outlines = {
        "reader1": truth + rng.normal(0.0, 2.0, size=(n, 2)),
        "reader2": truth + rng.normal(3.0, 8.0, size=(n, 2)),  # a bias and more noise
        "reader1_repeat": truth + rng.normal(0.0, 3.0, size=(n, 2)),
    }

    def record(i: int, values: np.ndarray) -> dict:
        features = {"original_firstorder_Mean": values[0], "original_shape_VoxelVolume": values[1]}
        return {"patient": f"P{i:02d}", "phase": "AP",
                "regions": {"tumor": {"features": features, "diagnostics": {}}}}  # fmt: skip

    jsons = []
    for i in range(n):
        rec = {"patient": f"P{i:02d}"}
        for name, values in outlines.items():
            rec[name] = [record(i, values[i])] if name != "reader1_repeat" or i < n - 2 else []
        jsons.append(tmp_path / f"P{i:02d}.json")
        jsons[-1].write_text(json.dumps(rec))
    reader_icc(jsons, tmp_path / "inter.parquet")
    reader_icc(jsons, tmp_path / "intra.parquet", second="reader1_repeat")
    inter = pd.read_parquet(tmp_path / "inter.parquet")
    intra = pd.read_parquet(tmp_path / "intra.parquet")
    features = ["AP_tumor_original_firstorder_Mean", "AP_tumor_original_shape_VoxelVolume"]
    assert list(intra.index) == list(inter.index) == features
    assert list(intra.columns) == ["icc2_1", "icc3_1", "n"]
    assert (inter["n"] == n).all() and (intra["n"] == n - 2).all()
    for j, name in enumerate(features):
        want = _shrout_fleiss_k2(outlines["reader1"][:, j], outlines["reader2"][:, j])
        assert tuple(inter.loc[name, ["icc2_1", "icc3_1"]]) == pytest.approx(want, abs=1e-10)
        r1, rep = outlines["reader1"][: n - 2, j], outlines["reader1_repeat"][: n - 2, j]
        want = _shrout_fleiss_k2(r1, rep)
        assert tuple(intra.loc[name, ["icc2_1", "icc3_1"]]) == pytest.approx(want, abs=1e-10)
    # the repeat is closer to reader 1 than reader 2 is: higher ICC, as the generator plants
    assert (intra["icc2_1"] > inter["icc2_1"]).all()
