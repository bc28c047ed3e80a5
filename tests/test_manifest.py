"""Per-patient manifests (hccrad.manifest): all-or-nothing outputs and checked reads."""

from __future__ import annotations

import hashlib
import json

import pytest

from hccrad import fileio
from hccrad.errors import InputError
from hccrad.manifest import OutputSet, read_manifest


def _write(path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_manifest_lists_each_file_with_size_and_sha256(tmp_path):
    manifest = tmp_path / "P1/register/manifest.json"
    with OutputSet(manifest, patient="P1", stage="register") as out:
        _write(tmp_path / "P1/AP/a.bin", b"abc")
        out.add("AP/register/image", tmp_path / "P1/AP/a.bin")
        _write(tmp_path / "P1/PVP/b.bin", b"hello")
        out.add("PVP/register/image", tmp_path / "P1/PVP/b.bin")
    data = json.loads(manifest.read_text())
    assert data["patient"] == "P1" and data["stage"] == "register"
    entry = data["files"]["PVP/register/image"]
    assert entry["bytes"] == 5
    assert entry["sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert data["files"]["AP/register/image"]["sha256"] == hashlib.sha256(b"abc").hexdigest()
    m = read_manifest(manifest, verify=True)
    assert m["PVP/register/image"] == tmp_path / "P1/PVP/b.bin"
    assert set(m) == {"AP/register/image", "PVP/register/image"}
    assert m.get_path("HBP/register/image") is None
    assert "PVP/register/image" in m and "HBP/register/image" not in m
    assert dict(m) == {k: m[k] for k in ("AP/register/image", "PVP/register/image")}
    with pytest.raises(InputError, match=r"patient P1.*'HBP/register/image' is not in"):
        m["HBP/register/image"]


def test_failed_job_leaves_none_of_its_files_and_no_manifest(tmp_path):
    manifest = tmp_path / "manifest.json"
    first, second = tmp_path / "AP.bin", tmp_path / "PVP.bin"
    with (
        pytest.raises(RuntimeError, match="phase 2 broke"),
        OutputSet(manifest, patient="P1", stage="register") as out,
    ):
        _write(first, b"done")
        out.add("AP/x", first)
        out.add("PVP/x", second)  # announced, never written
        raise RuntimeError("phase 2 broke")
    assert not first.exists() and not second.exists() and not manifest.exists()


def test_a_file_announced_but_not_written_fails_the_job(tmp_path):
    manifest = tmp_path / "manifest.json"
    written = tmp_path / "AP.bin"
    with (
        pytest.raises(RuntimeError, match="PVP/x was not written"),
        OutputSet(manifest, patient="P1", stage="normalize") as out,
    ):
        _write(written, b"done")
        out.add("AP/x", written)
        out.add("PVP/x", tmp_path / "PVP.bin")
    assert not written.exists() and not manifest.exists()


def test_duplicate_key_is_refused(tmp_path):
    out = OutputSet(tmp_path / "m.json", patient="P1", stage="s")
    out.add("AP/x", tmp_path / "a")
    with pytest.raises(ValueError, match="registered twice"):
        out.add("AP/x", tmp_path / "b")


def test_reading_names_a_missing_or_changed_file(tmp_path):
    manifest = tmp_path / "manifest.json"
    f = tmp_path / "AP.bin"
    with OutputSet(manifest, patient="P7", stage="register") as out:
        _write(f, b"12345")
        out.add("AP/register/image", f)
    f.write_bytes(b"123")
    with pytest.raises(InputError, match=r"patient P7, file .*manifest.json: .*AP.bin .*changed"):
        read_manifest(manifest)
    f.write_bytes(b"54321")  # same size, other bytes: only the SHA-256 check sees it
    read_manifest(manifest)
    with pytest.raises(InputError, match="changed \\(SHA-256\\)"):
        read_manifest(manifest, verify=True)
    f.unlink()
    with pytest.raises(InputError, match=r"AP.bin \(AP/register/image\) is missing"):
        read_manifest(manifest)
    with pytest.raises(InputError, match="cannot read manifest"):
        read_manifest(tmp_path / "nope.json")


def test_temporary_files_of_a_killed_attempt_are_removed(tmp_path):
    """A killed job leaves the atomic writer's temporary file; the rerun removes it."""
    target = tmp_path / "AP/register/liver.nii.gz"
    target.parent.mkdir(parents=True)
    stale = target.parent / ".liver.nii.gz.pj4xdgta.tmp.nii.gz"
    stale.write_bytes(b"half")
    other = target.parent / ".image.nii.gz.abcdefgh.tmp.nii.gz"  # another file's: kept
    other.write_bytes(b"half")
    with OutputSet(tmp_path / "m.json", patient="P1", stage="register") as out:
        out.add("AP/register/liver", target)
        assert not stale.exists() and other.exists()
        target.write_bytes(b"mask")


@pytest.mark.parametrize("suffix", ["", ".nii.gz", ".npz"])
def test_temporary_files_of_the_atomic_writers_are_removed(tmp_path, suffix):
    """The temporary file hccrad.fileio leaves when its process is killed (never reaching the
    end of the block) is one the next attempt's OutputSet removes."""
    target = tmp_path / "AP/deep/input.npz"
    killed = fileio.atomic_path(target, suffix=suffix)
    stale = killed.__enter__()  # a killed process never leaves the block
    stale.write_bytes(b"half")
    with OutputSet(tmp_path / "m.json", patient="P1", stage="normalize") as out:
        out.add("deep/input/AP", target)
        assert not stale.exists()
        fileio.write_bytes(b"whole", target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["input.npz"]
