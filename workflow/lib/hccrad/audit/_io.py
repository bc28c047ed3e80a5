"""Helpers of the audit: hashing, walking a results folder, a figure on the Agg canvas.

The audit writes its files through :mod:`hccrad.fileio`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from hccrad.fileio import TMP_SUFFIX

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "BOOKKEEPING_DIRS",
    "VOLATILE_AUDIT_FILES",
    "PathLike",
    "is_bookkeeping",
    "new_figure",
    "sha256_file",
    "walk_files",
]

PathLike = str | os.PathLike[str]

#: Top-level folders of ``results/`` that hold run bookkeeping, not results.
BOOKKEEPING_DIRS = frozenset({"logs", "benchmarks"})
#: Files of the audit that describe the run rather than its results (timestamp, environment,
#: git state, files scanned including logs): never compared.
VOLATILE_AUDIT_FILES = frozenset(
    {"cohort/audit/manifest.json", "cohort/audit/manifest.tsv", "cohort/audit/summary.json"}
)

_CHUNK = 1 << 20


def sha256_file(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def is_bookkeeping(rel: str) -> bool:
    """Whether a path relative to ``results/`` is a log, a benchmark, a Snakemake marker, a
    leftover temporary file or a volatile audit file (excluded from the manifest and comparisons).
    """
    parts = rel.split("/")
    name = parts[-1]
    return (
        parts[0] in BOOKKEEPING_DIRS
        or name.endswith(".log")
        or name.startswith(".snakemake")
        # hccrad.fileio's temporary files: .{name}.XXXX.tmp{suffix}
        or (name.startswith(".") and TMP_SUFFIX in name)
        or rel in VOLATILE_AUDIT_FILES
    )


def walk_files(root: PathLike) -> Iterator[str]:
    """Every regular file under ``root`` as a POSIX path relative to it, sorted."""
    root = Path(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in filenames:
            path = base / name
            if path.is_file():
                found.append(path.relative_to(root).as_posix())
    yield from sorted(found)


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A matplotlib Figure on the Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig
