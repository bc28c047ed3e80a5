"""hccrad.fileio: atomic writers keep the umask's permissions and never leave partial files."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hccrad import fileio


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_get_the_umask_permissions(tmp_path: Path, umask_027) -> None:
    fileio.write_text("x", tmp_path / "a.txt")
    fileio.write_json({"a": 1}, tmp_path / "b.json")
    fileio.write_parquet(pd.DataFrame({"a": [1]}), tmp_path / "c.parquet")
    for name in ("a.txt", "b.json", "c.parquet"):
        assert _mode(tmp_path / name) == 0o640, name  # 0o666 & ~0o027


def test_group_readable_under_the_common_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        fileio.write_bytes(b"x", tmp_path / "sub" / "a.bin")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "sub" / "a.bin") == 0o644


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    dst = tmp_path / "t.tsv"
    dst.write_text("old")
    with pytest.raises(RuntimeError), fileio.atomic_path(dst) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert dst.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.tsv"]


def test_temporary_name_keeps_the_format_suffix(tmp_path: Path) -> None:
    with fileio.atomic_path(tmp_path / "img.nii.gz", suffix=".nii.gz") as tmp:
        assert tmp.name.startswith(".img.nii.gz.") and tmp.name.endswith(".tmp.nii.gz")
        tmp.write_bytes(b"1")
    assert (tmp_path / "img.nii.gz").read_bytes() == b"1"


def test_jsonable_converts_numpy_paths_and_non_finite() -> None:
    obj = {
        1: np.float32(0.5),
        "arr": np.arange(3),
        "nan": math.nan,
        "inf": np.float64(np.inf),
        "path": Path("a/b"),
        "idx": pd.Index(["x", "y"]),
        "set": {2},
        "other": complex(1, 2),
    }
    out = fileio.jsonable(obj)
    assert out == {
        "1": 0.5,
        "arr": [0, 1, 2],
        "nan": None,
        "inf": None,
        "path": "a/b",
        "idx": ["x", "y"],
        "set": [2],
        "other": "(1+2j)",
    }
    assert json.loads(fileio.dumps_json(obj)) == out


def test_tsv_round_trip(tmp_path: Path) -> None:
    table = pd.DataFrame({"a": [1, 2], "b": ["x", None]})
    fileio.write_tsv(table, tmp_path / "t.tsv")
    assert (tmp_path / "t.tsv").read_text() == "a\tb\n1\tx\n2\t\n"
