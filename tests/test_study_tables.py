"""The study tables (hccrad.studies.tables): weighted sums of derived columns and the
study-level patient criteria (include / exclude), applied alike by study_splits and run_study."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from test_studies import TINY_SPEC, write_spec

from hccrad import studies
from hccrad.errors import ConfigError
from hccrad.studies import load_study


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
