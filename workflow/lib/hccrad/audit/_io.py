"""Helpers of the audit: hashing, walking a results folder, atomic table and figure writers."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from hccrad.fileio import write_png as write_png_atomic
from hccrad.fileio import write_text as write_text_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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
        or (name.startswith(".") and name.endswith(".tmp"))
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


def write_tsv(table: pd.DataFrame, path: PathLike) -> None:
    """Write a table as TSV (no index, empty cells for missing values) atomically."""
    write_text_atomic(table.to_csv(sep="\t", index=False, lineterminator="\n"), path)


def write_parquet(table: pd.DataFrame, path: PathLike) -> None:
    """Write a table as parquet (no index) atomically."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        table.to_parquet(tmp, index=False)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_figure(fig: Figure, path: PathLike, dpi: int = 110) -> None:
    """Write a matplotlib figure as PNG atomically."""
    write_png_atomic(fig, path, dpi=dpi)


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A matplotlib Figure on the Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def placeholder_figure(path: PathLike, title: str, note: str) -> None:
    """A small PNG saying why a figure could not be drawn (so the declared output exists)."""
    fig = new_figure((5.0, 2.2))
    fig.text(0.5, 0.62, title, ha="center", va="center", fontsize=11, fontweight="bold")
    fig.text(0.5, 0.38, f"not drawn: {note}", ha="center", va="center", fontsize=9, wrap=True)
    save_figure(fig, path, dpi=100)
