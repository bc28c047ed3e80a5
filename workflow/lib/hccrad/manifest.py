"""Per-patient output manifests: one declared file standing for all the files of a patient's job.

A per-patient job (registration of every phase, normalisation and regions of every phase, the
deep-input tensors) writes a set of files that depends on the patient: which phases were
acquired, which masks the sheet gives. Snakemake needs a rule's outputs to be fixed patterns, so
such a job declares one output, its manifest, and writes the other files at their usual places
(``results/{center}/{patient}/{phase}/{stage}/...``, :mod:`hccrad.paths`). The manifest lists each
file under a key (``AP/register/image``) with its size and SHA-256.

* Writing: :class:`OutputSet` hands out the destinations; when the job fails, every file it
  announced is removed (no orphan survives a failed job, so a rerun starts clean); on success it
  writes the manifest last, atomically. Snakemake removes the manifest of a failed or killed job
  and reruns the job, so "manifest present" means "every listed file complete".
* Reading: :func:`read_manifest` checks that every listed file is still there with its size, and
  names the file and the job to rerun when not.

Format (JSON)::

    {"patient": "AMR001", "stage": "register", "files": {"AP/register/image":
        {"path": "results/A/AMR001/AP/register/image.nii.gz", "bytes": 123, "sha256": "..."}}}
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from hccrad import fileio
from hccrad.errors import InputError

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def sha256(path: PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


class OutputSet:
    """The files of one per-patient job, written under keys, then listed in its manifest.

    Use as a context manager::

        with OutputSet(manifest, patient="P1", stage="register") as out:
            write_image(img, out.add("AP/register/image", "results/A/P1/AP/register/image.nii.gz"))

    ``add`` registers a destination (and returns it) before the caller writes it. On an exception
    inside the block every registered file is removed and the manifest is not written; on a
    clean exit each registered file must exist, and the manifest is written atomically.
    """

    def __init__(self, manifest: PathLike, *, patient: str, stage: str) -> None:
        self.manifest = Path(manifest)
        self.patient = patient
        self.stage = stage
        self.files: dict[str, Path] = {}

    def add(self, key: str, path: PathLike) -> str:
        """Register ``path`` under ``key`` (unique) and return it as a string.

        Temporary files an earlier, killed attempt left beside ``path`` (those of
        :func:`hccrad.fileio.atomic_path`, ``.{name}.XXXX.tmp{suffix}``; a killed process cleans
        nothing up) are removed first.
        """
        if key in self.files:
            raise ValueError(f"manifest key {key!r} registered twice")
        p = Path(path)
        if p.parent.is_dir():
            for stale in p.parent.glob(f".{p.name}.*{fileio.TMP_SUFFIX}*"):
                stale.unlink(missing_ok=True)
                log.info("removed %s (left by a killed job)", stale)
        self.files[key] = p
        return str(path)

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.discard()
            return
        try:
            self.write()
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Remove every registered file (a failed job leaves none of them behind)."""
        for path in self.files.values():
            try:
                path.unlink()
                log.info("removed %s (the job failed)", path)
            except FileNotFoundError:
                pass

    def write(self) -> None:
        """Check that every registered file exists and write the manifest."""
        entries: dict[str, Any] = {}
        for key, path in self.files.items():
            if not path.is_file():
                raise RuntimeError(
                    f"{self.stage} of {self.patient}: {key} was not written ({path})"
                )
            entries[key] = {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256(path)}
        fileio.write_json(
            {"patient": self.patient, "stage": self.stage, "files": entries}, self.manifest
        )


@dataclass(frozen=True)
class Manifest(Mapping[str, Path]):
    """A read manifest: key -> path of each file (a read-only mapping)."""

    path: Path
    patient: str
    stage: str
    files: dict[str, Path]

    def __getitem__(self, key: str) -> Path:
        try:
            return self.files[key]
        except KeyError:
            raise InputError(
                f"{self.stage} output {key!r} is not in the manifest (listed: "
                f"{', '.join(sorted(self.files)) or 'none'})",
                patient=self.patient,
                file=self.path,
            ) from None

    def __contains__(self, key: object) -> bool:
        return key in self.files

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def get_path(self, key: str) -> Path | None:
        """The path under ``key``, or None when the job wrote no such file."""
        return self.files.get(key)


def read_manifest(path: PathLike, *, verify: bool = False) -> Manifest:
    """Read a manifest and check that each listed file is there with its recorded size.

    Args:
        path: The manifest.
        verify: Also compare each file's SHA-256 (reads every byte; the audit's job).

    Raises:
        InputError: Naming the patient, the missing or changed file and the manifest to delete
            (or the job to rerun) to rebuild it.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read manifest: {exc}", file=path) from exc
    patient, stage = data.get("patient"), data.get("stage", "?")
    files: dict[str, Path] = {}
    for key, entry in data.get("files", {}).items():
        f = Path(entry["path"])
        problem = None
        if not f.is_file():
            problem = "is missing"
        elif f.stat().st_size != entry["bytes"]:
            problem = "has changed (size)"
        elif verify and sha256(f) != entry["sha256"]:
            problem = "has changed (SHA-256)"
        if problem:
            raise InputError(
                f"{f} ({key}) {problem} since its {stage} job wrote it; delete {path} "
                "(or rerun that job with snakemake -R) to rebuild it",
                patient=patient,
                file=path,
            )
        files[key] = f
    return Manifest(path=path, patient=patient, stage=stage, files=files)
