"""The unpaired DeLong tests of the study tables: each held-out split's AUC against the training
AUC (``performance.parquet``, the overfitting test) and subgroup AUCs per split with the test
between subgroups (``by_center.parquet``), against AUCs, variances and z written out from
explicit case-control placements."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import special

from hccrad.studies.evaluation import by_group_table, performance_table

SPLITS = ("train", "validation", "external")


def _placement_test(ya, sa, yb, sb) -> tuple[float, float, float]:
    """(AUC a, z, p) of the unpaired DeLong test from double-loop placements and pROC's df."""

    def auc_var(y: np.ndarray, s: np.ndarray) -> tuple[float, float, int]:
        xs, ys = s[y == 1], s[y == 0]
        psi = (xs[:, None] > ys[None, :]) + 0.5 * (xs[:, None] == ys[None, :])
        v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
        var = v10.var(ddof=1) / xs.size + v01.var(ddof=1) / ys.size
        return float(psi.mean()), float(var), y.size

    a, va, na = auc_var(np.asarray(ya), np.asarray(sa, float))
    b, vb, nb = auc_var(np.asarray(yb), np.asarray(sb, float))
    z = (a - b) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    return a, z, float(special.betainc(df / 2, 0.5, df / (df + z * z)))


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two models on 60 training, 30 validation and 30 external patients with tied scores;
    field strength 1.5 / 3.0 T, three centers; model ``m`` separates better in training."""
    rng = np.random.default_rng(7)
    n = {"train": 60, "validation": 30, "external": 30}
    split = np.repeat(list(n), list(n.values()))
    patients = [f"p{i:03d}" for i in range(split.size)]
    y = rng.permutation(np.tile([0, 1], split.size // 2)).astype(float)
    gain = np.where(split == "train", 1.6, 0.6)
    clinical = pd.DataFrame(
        {
            "field_strength": rng.choice([1.5, 3.0], split.size),
            "center": np.where(split == "external", rng.choice(["B", "C"], split.size), "A"),
        },
        index=pd.Index(patients, name="patient"),
    )
    clinical.iloc[3, 0] = np.nan  # a missing field strength is left out
    frames = []
    for model, g in (("m", gain), ("r", np.full(split.size, 0.8))):
        score = np.round(rng.normal(y * g, 1.0) * 3) / 3
        frames.append(
            pd.DataFrame(
                {"patient": patients, "split": split, "model": model, "score": score, "label": y}
            )
        )
    return pd.concat(frames, ignore_index=True), clinical


def test_performance_tests_each_held_out_split_against_training(data):
    pred, _ = data
    perf = performance_table(pred, {"m": 0.5, "r": 0.5}, SPLITS, ["m", "r"]).set_index(
        ["model", "split"]
    )
    assert {"train_delong_z", "train_delong_p"} <= set(perf.columns)
    for model in ("m", "r"):
        assert np.isnan(perf.loc[(model, "train"), "train_delong_p"])
        tr = pred[(pred["model"] == model) & (pred["split"] == "train")]
        for split in ("validation", "external"):
            sub = pred[(pred["model"] == model) & (pred["split"] == split)]
            a, z, p = _placement_test(sub["label"], sub["score"], tr["label"], tr["score"])
            row = perf.loc[(model, split)]
            assert row["auc"] == pytest.approx(a, abs=1e-12)
            assert row["train_delong_z"] == pytest.approx(z, abs=1e-9)
            assert row["train_delong_p"] == pytest.approx(p, rel=1e-9)
    # the designed overfit: m's validation AUC is well under its training AUC
    assert perf.loc[("m", "validation"), "train_delong_z"] < -2
    assert perf.loc[("m", "validation"), "train_delong_p"] < 0.05


def test_performance_test_is_nan_without_a_usable_training_split(data):
    pred, _ = data
    one_class = pred.copy()
    one_class.loc[one_class["split"] == "train", "label"] = 1.0
    perf = performance_table(one_class, {"m": 0.5}, SPLITS, ["m"]).set_index("split")
    assert perf["train_delong_p"].isna().all()
    assert np.isfinite(perf.loc["validation", "auc"])
    failed = performance_table(pred, {}, SPLITS, ["m"], notes={"m": "fit failed"})
    assert failed["train_delong_z"].isna().all()


def test_subgroup_auc_per_split_and_unpaired_test(data):
    pred, clinical = data
    table = by_group_table(pred, clinical, ["field_strength", "center", "vendor"], ["m", "r"])
    assert set(table["scope"]) == {"all", "held_out", *SPLITS}
    assert set(table["by"]) == {"field_strength", "center"}  # absent columns skipped
    fs = table[table["by"] == "field_strength"].set_index(["model", "scope", "value"]).sort_index()
    for model in ("m", "r"):
        for split in SPLITS:
            sub = pred[(pred["model"] == model) & (pred["split"] == split)]
            strength = clinical["field_strength"].reindex(sub["patient"]).to_numpy()
            lo, hi = sub[strength == 1.5], sub[strength == 3.0]
            a_hi, z, p = _placement_test(hi["label"], hi["score"], lo["label"], lo["score"])
            ref, row = fs.loc[(model, split, "1.5")], fs.loc[(model, split, "3")]
            assert (ref["n"], row["n"]) == (len(lo), len(hi))
            assert ref["reference"] == "" and np.isnan(ref["delong_p"])
            assert row["reference"] == "1.5"
            assert row["auc"] == pytest.approx(a_hi, abs=1e-12)
            assert row["delong_z"] == pytest.approx(z, abs=1e-9)
            assert row["delong_p"] == pytest.approx(p, rel=1e-9)
    # scopes: all = every patient with a field strength, held_out = validation + external
    n_all = fs.loc[("m", "all")]["n"].sum()
    assert n_all == clinical["field_strength"].notna().sum()
    held = fs.loc[("m", "held_out")]["n"].sum()
    assert held == fs.loc[("m", "validation")]["n"].sum() + fs.loc[("m", "external")]["n"].sum()


def test_subgroup_test_against_the_first_evaluable_value(data):
    pred, clinical = data
    table = by_group_table(pred, clinical, ["center"], ["m"], splits=["external"])
    ext = table[table["scope"] == "external"].set_index("value")
    assert list(ext.index) == ["B", "C"]  # center A has no external patients
    assert ext.loc["C", "reference"] == "B" and np.isfinite(ext.loc["C", "delong_p"])
    # a one-class subgroup gets a note and no AUC; the next value is tested against the
    # first evaluable one
    clin = clinical.copy()
    ext_pts = pred.loc[(pred["split"] == "external") & (pred["model"] == "m"), "patient"]
    y = pred.set_index(["model", "patient"]).loc["m", "label"]
    cases = [p for p in ext_pts if y[p] == 1][:3]
    clin.loc[cases, "center"] = "AA"  # sorts first, cases only
    t2 = by_group_table(pred, clin, ["center"], ["m"], splits=["external"])
    e2 = t2[t2["scope"] == "external"].set_index("value")
    assert list(e2.index) == ["AA", "B", "C"]
    assert "one class" in e2.loc["AA", "note"] and np.isnan(e2.loc["AA", "auc"])
    assert e2.loc["B", "reference"] == "" and e2.loc["C", "reference"] == "B"


def test_subgroup_table_empty_without_models(data):
    pred, clinical = data
    table = by_group_table(pred, clinical, ["field_strength"], [])
    assert table.empty
    assert {"scope", "reference", "delong_z", "delong_p", "note"} <= set(table.columns)
