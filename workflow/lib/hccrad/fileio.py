"""Atomic file writing: every file the workflow writes appears whole or not at all.

Each writer renders into a temporary file beside the destination (same folder, so the final
:func:`os.replace` is atomic on POSIX file systems), gives it the permissions the user's umask
asks for (:func:`tempfile.mkstemp` creates files readable by the owner only, which would hide
results from collaborators in a shared project folder), then moves it into place. A failure
removes the temporary file and leaves any earlier version of the destination untouched.

This module imports only the standard library and NumPy; pandas, matplotlib and torch objects
are written through their own methods, so none of them is imported here.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

PathLike = str | os.PathLike[str]

#: Suffix of every temporary file (after the destination's own name): ``.{name}.XXXX.tmp{ext}``.
TMP_SUFFIX = ".tmp"


def file_mode() -> int:
    """Permission bits of a new regular file under the current umask (``0o666 & ~umask``)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: PathLike, *, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; moved onto ``path`` when the block ends.

    Args:
        path: destination; its parent folders are created.
        suffix: appended to the temporary name (``.{name}.XXXX.tmp{suffix}``), for writers that
            choose the format from the file name (``.nii.gz``).

    Yields:
        The temporary file's path (it exists, empty, with the umask's permissions).

    On an exception inside the block the temporary file is removed and ``path`` is unchanged.
    """
    dst = Path(path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=TMP_SUFFIX + suffix, dir=dst.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, file_mode())
        yield tmp
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(data: bytes, path: PathLike) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(text: str, path: PathLike) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(text.encode("utf-8"), path)


def jsonable(obj: Any) -> Any:
    """``obj`` with every value JSON can hold as is.

    Mappings get string keys; sequences, sets, NumPy arrays and pandas indexes become lists;
    NumPy scalars become Python numbers; non-finite floats (NaN, inf) become ``None``; paths
    and any other object become strings.
    """
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, list | tuple | set | frozenset) or type(obj).__name__ == "Index":
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def dumps_json(obj: Any) -> str:
    """The workflow's JSON text of ``obj``: :func:`jsonable`, sorted keys, indent 2, newline."""
    return json.dumps(jsonable(obj), sort_keys=True, indent=2, allow_nan=False) + "\n"


def write_json(obj: Any, path: PathLike) -> None:
    """Write ``obj`` as JSON atomically (:func:`dumps_json`)."""
    write_text(dumps_json(obj), path)


def write_parquet(table: Any, path: PathLike, *, index: bool = False) -> None:
    """Write a pandas DataFrame as parquet atomically (without its index unless asked)."""
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=index)


def write_tsv(table: Any, path: PathLike) -> None:
    """Write a pandas DataFrame as TSV atomically (no index, empty cells for missing values)."""
    write_text(table.to_csv(sep="\t", index=False, lineterminator="\n"), path)


def write_png(fig: Any, path: PathLike, **savefig: Any) -> None:
    """Render a matplotlib figure as PNG (``savefig`` keyword arguments) and write it
    atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", **savefig)
    write_bytes(buf.getvalue(), path)


def save_torch(obj: Any, path: PathLike) -> None:
    """``torch.save`` atomically. Saved through a buffer, so the archive's inner name does not
    depend on the temporary file's random name (the same object gives the same bytes)."""
    import torch  # only the deep-learning jobs write checkpoints; keeps torch off this import

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(buf.getvalue(), path)


def placeholder_png(path: PathLike, title: str, note: str, *, dpi: int = 100) -> None:
    """A small PNG saying why a figure could not be drawn (so every declared output exists)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 2.2))
    FigureCanvasAgg(fig)
    fig.text(0.5, 0.62, title, ha="center", va="center", fontsize=11, fontweight="bold")
    fig.text(0.5, 0.38, f"not drawn: {note}", ha="center", va="center", fontsize=9, wrap=True)
    write_png(fig, path, dpi=dpi)
