"""The real reference data of ../shared/data: a user's clone skips what it lacks, CI fails."""

from __future__ import annotations

import pytest

import conftest


def test_missing_shared_data_skips_locally_and_fails_in_ci(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not present"):
        conftest.shared_data("pyradiomics")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="not present"):
        conftest.shared_data("pyradiomics")
    (tmp_path / "pyradiomics").mkdir()
    assert conftest.shared_data("pyradiomics") == tmp_path / "pyradiomics"


def test_ci_has_the_shared_data() -> None:
    """In CI every reference folder the tests read is there (else dozens of checks would skip)."""
    for name in ("pyradiomics", "ibsi1", "stats", "liver_lits64"):
        assert conftest.shared_data(name).is_dir()
