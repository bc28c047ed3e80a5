"""Rerun-and-compare: are two results folders the same, value for value?

:func:`compare_runs` walks two ``results/`` folders and compares every file that is not run
bookkeeping (logs, benchmarks, Snakemake markers, the audit's manifest; see
:func:`hccrad.audit._io.is_bookkeeping`). Files with equal SHA-256 are equal. Otherwise the file
is decoded by type and compared by content, with a tolerance ``|a - b| <= atol + rtol * |b|``
(default 0: exact; NaN equals NaN):

* tables (``.parquet``, ``.tsv``, ``.csv``): columns, index and every value;
* JSON: key by key, numbers with the tolerance; timing keys (:data:`DEFAULT_IGNORED_KEYS`,
  e.g. ``seconds`` of a training log) are skipped;
* images (``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``): size, spacing, origin, direction and every
  voxel (so a gzip header or compression level never counts);
* PNG figures: the decoded pixels (text chunks such as matplotlib's ``Software`` tag do not
  count);
* ``.npz`` arrays: key by key; text files (``.tfm``, ``.txt``): token by token, numbers with the
  tolerance;
* anything else (e.g. ``.pt`` checkpoints): the bytes.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hccrad.audit._io import PathLike, is_bookkeeping, sha256_file, walk_files
from hccrad.errors import InputError

log = logging.getLogger(__name__)

#: JSON keys (fnmatch patterns) holding wall-clock timings, skipped by the JSON comparison.
DEFAULT_IGNORED_KEYS: tuple[str, ...] = ("*seconds", "images_per_s", "created", "*timestamp*")
#: Details listed per file at most (the count of all differences is always given).
MAX_DETAILS = 5

_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")
_TEXT_SUFFIXES = (".tfm", ".txt")


@dataclass(frozen=True)
class Difference:
    """One file that differs between the runs (``kind``: what was compared)."""

    path: str
    kind: str
    detail: str


@dataclass
class CompareResult:
    """The outcome of :func:`compare_runs`."""

    run_a: Path
    run_b: Path
    n_compared: int
    differences: list[Difference] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """True when no difference was found."""
        return not self.differences

    def to_frame(self) -> pd.DataFrame:
        """The differences as a table (``path, kind, detail``)."""
        return pd.DataFrame(
            [(d.path, d.kind, d.detail) for d in self.differences],
            columns=["path", "kind", "detail"],
        )

    def report(self) -> str:
        """A human-readable summary: ``no differences`` or one line per difference."""
        head = f"compared {self.n_compared} files of {self.run_a} and {self.run_b}"
        if self.identical:
            return f"{head}: no differences"
        lines = [f"{head}: {len(self.differences)} file(s) differ"]
        lines += [f"  {d.path} [{d.kind}]: {d.detail}" for d in self.differences]
        return "\n".join(lines)


def results_root(run: PathLike) -> Path:
    """The results folder of a run: ``run`` itself, or ``run/results`` when ``run`` is the
    working directory of a run."""
    p = Path(run)
    if (p / "results").is_dir() and not (p / "cohort").is_dir():
        return p / "results"
    return p


def _suffix(rel: str) -> str:
    name = rel.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return f"{float(v):.6g}"
    return repr(v)


def _equal_mask(x: np.ndarray, y: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """Element-wise equality within the tolerance (NaN equals NaN; non-numbers exactly)."""
    if x.dtype.kind in "biuf" and y.dtype.kind in "biuf":
        xf, yf = x.astype(np.float64), y.astype(np.float64)
        both_nan = np.isnan(xf) & np.isnan(yf)
        with np.errstate(invalid="ignore"):
            if rtol == 0 and atol == 0:
                return (xf == yf) | both_nan
            return np.isclose(xf, yf, rtol=rtol, atol=atol, equal_nan=True)
    pairs = zip(x.ravel().tolist(), y.ravel().tolist(), strict=True)
    return np.array([_same(u, v) for u, v in pairs], dtype=bool).reshape(x.shape)


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def _same(u: Any, v: Any) -> bool:
    """Equality of two cells of any type (missing equals missing; arrays element-wise)."""
    if _missing(u) or _missing(v):
        return _missing(u) and _missing(v)
    if isinstance(u, np.ndarray | list) or isinstance(v, np.ndarray | list):
        try:
            return bool(np.array_equal(np.asarray(u, dtype=object), np.asarray(v, dtype=object)))
        except (TypeError, ValueError):
            return False
    try:
        return bool(u == v)
    except (TypeError, ValueError):
        return False


def _array_detail(x: np.ndarray, y: np.ndarray, eq: np.ndarray, what: str) -> str:
    n = int((~eq).sum())
    detail = f"{n} of {eq.size} {what} differ"
    if x.dtype.kind in "biuf" and y.dtype.kind in "biuf":
        with np.errstate(invalid="ignore"):
            d = np.abs(x.astype(np.float64) - y.astype(np.float64))[~eq]
        finite = d[np.isfinite(d)]
        if finite.size:
            detail += f" (max |difference| {finite.max():.3g})"
    return detail


# ---- tables ------------------------------------------------------------------------------------


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")


def compare_frames(
    a: pd.DataFrame, b: pd.DataFrame, *, rtol: float = 0.0, atol: float = 0.0
) -> list[str]:
    """Differences between two tables: columns, index, then values column by column."""
    out: list[str] = []
    ca, cb = [str(c) for c in a.columns], [str(c) for c in b.columns]
    if ca != cb:
        only_a = [c for c in ca if c not in cb]
        only_b = [c for c in cb if c not in ca]
        out.append(
            f"columns differ (only in A: {only_a[:5]}, only in B: {only_b[:5]}"
            + (", same names in another order" if not only_a and not only_b else "")
            + ")"
        )
    if a.shape[0] != b.shape[0]:
        out.append(f"{a.shape[0]} vs {b.shape[0]} rows")
        return out
    if not a.index.equals(b.index):
        out.append("row labels differ")
        return out
    a = a.set_axis(ca, axis=1)
    b = b.set_axis(cb, axis=1)
    for col in [c for c in ca if c in cb]:
        sa, sb = a[col], b[col]
        if pd.api.types.is_numeric_dtype(sa) and pd.api.types.is_numeric_dtype(sb):
            x = sa.to_numpy(dtype=np.float64, na_value=np.nan)
            y = sb.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            x, y = sa.to_numpy(dtype=object), sb.to_numpy(dtype=object)
        eq = _equal_mask(x, y, rtol, atol)
        if not eq.all():
            i = int(np.flatnonzero(~eq)[0])
            out.append(
                f"column {col!r}: {_array_detail(x, y, eq, 'values')}; first at row "
                f"{a.index[i]!r}: {_fmt(x[i])} vs {_fmt(y[i])}"
            )
    return out


# ---- JSON --------------------------------------------------------------------------------------


def _ignored(key: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def compare_json(
    a: Any,
    b: Any,
    *,
    rtol: float = 0.0,
    atol: float = 0.0,
    ignore_keys: Sequence[str] = DEFAULT_IGNORED_KEYS,
    where: str = "",
) -> list[str]:
    """Differences between two parsed JSON documents (paths like ``models.rc.auc.train``)."""
    out: list[str] = []
    here = where or "(top level)"
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if _ignored(str(k), ignore_keys):
                continue
            sub = f"{where}.{k}" if where else str(k)
            if k not in a or k not in b:
                out.append(f"{sub}: only in {'B' if k not in a else 'A'}")
            else:
                out += compare_json(
                    a[k], b[k], rtol=rtol, atol=atol, ignore_keys=ignore_keys, where=sub
                )
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{here}: {len(a)} vs {len(b)} items")
        else:
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                out += compare_json(
                    x, y, rtol=rtol, atol=atol, ignore_keys=ignore_keys, where=f"{where}[{i}]"
                )
    elif _is_number(a) and _is_number(b):
        fa, fb = float(a), float(b)
        same = (
            (math.isnan(fa) and math.isnan(fb)) or fa == fb or abs(fa - fb) <= atol + rtol * abs(fb)
        )
        if not same:
            out.append(f"{here}: {_fmt(a)} vs {_fmt(b)}")
    elif a != b:
        out.append(f"{here}: {_fmt(a)} vs {_fmt(b)}")
    return out


# ---- images, figures, arrays, text --------------------------------------------------------------


def compare_images(a: Path, b: Path, *, rtol: float = 0.0, atol: float = 0.0) -> list[str]:
    """Differences between two images: geometry, then voxel values."""
    import SimpleITK as sitk

    ia, ib = sitk.ReadImage(str(a)), sitk.ReadImage(str(b))
    out = []
    if ia.GetSize() != ib.GetSize():
        return [f"size {ia.GetSize()} vs {ib.GetSize()}"]
    for name in ("Spacing", "Origin", "Direction"):
        ga = np.asarray(getattr(ia, f"Get{name}")())
        gb = np.asarray(getattr(ib, f"Get{name}")())
        if not _equal_mask(ga, gb, rtol, atol).all():
            out.append(f"{name.lower()} {tuple(ga.round(6))} vs {tuple(gb.round(6))}")
    if ia.GetPixelIDTypeAsString() != ib.GetPixelIDTypeAsString():
        out.append(f"pixel type {ia.GetPixelIDTypeAsString()} vs {ib.GetPixelIDTypeAsString()}")
    x, y = sitk.GetArrayViewFromImage(ia), sitk.GetArrayViewFromImage(ib)
    eq = _equal_mask(x, y, rtol, atol)
    if not eq.all():
        out.append(_array_detail(x, y, eq, "voxels"))
    return out


def compare_png(a: Path, b: Path, *, rtol: float = 0.0, atol: float = 0.0) -> list[str]:
    """Differences between the decoded pixels of two PNG figures (metadata is not compared)."""
    from PIL import Image

    with Image.open(a) as fa, Image.open(b) as fb:
        x, y = np.asarray(fa.convert("RGBA")), np.asarray(fb.convert("RGBA"))
    if x.shape != y.shape:
        return [f"image size {x.shape[1]}x{x.shape[0]} vs {y.shape[1]}x{y.shape[0]} pixels"]
    eq = _equal_mask(x, y, rtol, atol).all(axis=-1)
    if eq.all():
        log.debug("%s: same pixels, different metadata", a.name)
        return []
    return [f"{int((~eq).sum())} of {eq.size} pixels differ"]


def compare_npz(a: Path, b: Path, *, rtol: float = 0.0, atol: float = 0.0) -> list[str]:
    """Differences between two ``.npz`` archives, array by array."""
    out = []
    with np.load(a, allow_pickle=False) as za, np.load(b, allow_pickle=False) as zb:
        ka, kb = sorted(za.files), sorted(zb.files)
        if ka != kb:
            out.append(f"arrays {ka} vs {kb}")
        for k in [k for k in ka if k in kb]:
            x, y = za[k], zb[k]
            if x.shape != y.shape:
                out.append(f"array {k!r}: shape {x.shape} vs {y.shape}")
                continue
            eq = _equal_mask(x, y, rtol, atol)
            if not eq.all():
                out.append(f"array {k!r}: {_array_detail(x, y, eq, 'values')}")
    return out


def _token(t: str) -> float | str:
    try:
        return float(t)
    except ValueError:
        return t


def compare_text(a: Path, b: Path, *, rtol: float = 0.0, atol: float = 0.0) -> list[str]:
    """Differences between two text files token by token (numbers within the tolerance)."""
    ta = [_token(t) for t in a.read_text(errors="replace").split()]
    tb = [_token(t) for t in b.read_text(errors="replace").split()]
    if len(ta) != len(tb):
        return [f"{len(ta)} vs {len(tb)} tokens"]
    x, y = np.array(ta, dtype=object), np.array(tb, dtype=object)
    numeric = np.array([_is_number(u) and _is_number(v) for u, v in zip(ta, tb, strict=True)])
    eq = np.ones(len(ta), dtype=bool)
    if numeric.any():
        eq[numeric] = _equal_mask(
            x[numeric].astype(np.float64), y[numeric].astype(np.float64), rtol, atol
        )
    eq[~numeric] = [u == v for u, v in zip(x[~numeric], y[~numeric], strict=True)]
    if eq.all():
        return []
    i = int(np.flatnonzero(~eq)[0])
    return [f"{int((~eq).sum())} of {len(ta)} tokens differ; first: {ta[i]!r} vs {tb[i]!r}"]


# ---- folders -----------------------------------------------------------------------------------


def _comparer(rel: str) -> tuple[str, Callable[..., list[str]]] | None:
    suffix = _suffix(rel)
    if suffix in (".parquet", ".tsv", ".csv"):

        def tables(a: Path, b: Path, *, rtol: float, atol: float) -> list[str]:
            return compare_frames(_read_table(a), _read_table(b), rtol=rtol, atol=atol)

        return "table", tables
    if suffix in _IMAGE_SUFFIXES:
        return "image", compare_images
    if suffix == ".png":
        return "figure", compare_png
    if suffix == ".npz":
        return "arrays", compare_npz
    if suffix in _TEXT_SUFFIXES:
        return "text", compare_text
    return None


def compare_files(
    a: Path,
    b: Path,
    rel: str,
    *,
    rtol: float = 0.0,
    atol: float = 0.0,
    ignore_keys: Sequence[str] = DEFAULT_IGNORED_KEYS,
) -> Difference | None:
    """The difference between two versions of one result file, or None when they are equal."""
    if sha256_file(a) == sha256_file(b):
        return None
    if _suffix(rel) == ".json":
        kind = "json"
        try:
            details = compare_json(
                json.loads(a.read_text()),
                json.loads(b.read_text()),
                rtol=rtol,
                atol=atol,
                ignore_keys=ignore_keys,
            )
        except (ValueError, UnicodeDecodeError) as exc:
            details = [f"not comparable as JSON ({exc}); bytes differ"]
    else:
        found = _comparer(rel)
        if found is None:
            return Difference(rel, "bytes", "contents differ (not a decodable type)")
        kind, fn = found
        try:
            details = fn(a, b, rtol=rtol, atol=atol)
        except Exception as exc:  # an unreadable file is a difference, not a crash
            details = [f"could not be decoded ({type(exc).__name__}: {exc}); bytes differ"]
    if not details:
        return None
    shown = details[:MAX_DETAILS]
    more = len(details) - len(shown)
    return Difference(rel, kind, "; ".join(shown) + (f"; and {more} more" if more else ""))


def compare_runs(
    run_a: PathLike,
    run_b: PathLike,
    *,
    rtol: float = 0.0,
    atol: float = 0.0,
    ignore_keys: Sequence[str] = DEFAULT_IGNORED_KEYS,
) -> CompareResult:
    """Compare two results folders (or working directories holding ``results/``) file by file.

    Args:
        run_a, run_b: the two runs.
        rtol, atol: tolerance of numeric values (default exact).
        ignore_keys: JSON keys (fnmatch patterns) not compared.

    Returns:
        A :class:`CompareResult`; ``identical`` is True when nothing differs.
    """
    if rtol < 0 or atol < 0:
        raise ValueError("rtol and atol must be >= 0")
    ra, rb = results_root(run_a), results_root(run_b)
    for r in (ra, rb):
        if not r.is_dir():
            raise InputError("results folder not found", file=r)
    files_a = {f for f in walk_files(ra) if not is_bookkeeping(f)}
    files_b = {f for f in walk_files(rb) if not is_bookkeeping(f)}
    result = CompareResult(ra, rb, n_compared=len(files_a | files_b))
    for rel in sorted(files_a | files_b):
        if rel not in files_b:
            result.differences.append(Difference(rel, "missing", "only in A"))
        elif rel not in files_a:
            result.differences.append(Difference(rel, "missing", "only in B"))
        else:
            diff = compare_files(
                ra / rel, rb / rel, rel, rtol=rtol, atol=atol, ignore_keys=ignore_keys
            )
            if diff is not None:
                result.differences.append(diff)
    log.info("compared %d files: %d differ", result.n_compared, len(result.differences))
    return result
