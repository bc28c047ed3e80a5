"""Privacy scan: no DICOM identifier of the inputs may appear in any output, log or report.

The identifiers are collected from the headers of the run's own DICOM inputs
(:func:`dicom_identifiers`: patient name, IDs, birth date, accession number, institution,
physicians and the study/series/instance UIDs, :data:`IDENTIFYING_TAGS`), minus the cohort
sheet's patient ids (the only identifiers allowed in outputs) and values shorter than
:data:`MIN_LENGTH` characters. Every file under ``results/`` (logs and benchmarks included) is
then searched (:func:`scan_tree`) for each value, case-insensitively and as a whole token (not
inside a longer run of letters and digits), in

* the file's path and its raw bytes (JSON, TSV, logs, transforms, PNG, parquet footers, ...);
* NIfTI headers (``.nii``/``.nii.gz``: the header and extensions up to the voxel offset;
  voxels are numbers and cannot hold text), other gzip streams decompressed;
* parquet values: every non-numeric column, the column names and the index rendered as text,
  and numeric columns checked for digit-only identifiers (an MRN stored as a number);
* PNG text chunks (``tEXt``, ``zTXt``, ``iTXt``) decompressed;
* zip archives (``.npz``, ``.pt``) member by member, NumPy string arrays decoded.

Names are also searched as ``GIVEN FAMILY``/``FAMILY GIVEN``/``FAMILY, GIVEN`` (DICOM writes
``FAMILY^GIVEN``) and dates also as ``YYYY-MM-DD``. Text drawn into figure pixels cannot be
found this way; the workflow's figures only ever print cohort patient ids.

The scan reports tag names and file paths, never the values themselves.
"""

from __future__ import annotations

import gzip
import io
import itertools
import logging
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hccrad.audit._io import PathLike, walk_files
from hccrad.audit.manifest import sheet_files
from hccrad.errors import InputError
from hccrad.sheets import read_cohort_sheet

log = logging.getLogger(__name__)

#: DICOM keywords whose values identify a patient, a visit or a place (or a study instance).
IDENTIFYING_TAGS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientBirthDate",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "MedicalRecordLocator",
    "AccessionNumber",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "RequestingPhysician",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
)
#: Values shorter than this are not searched (they would match by chance).
MIN_LENGTH = 4
#: Bytes read per block when scanning a file's raw content.
_BLOCK = 8 << 20
#: Largest decompressed stream or archive member scanned in full.
_MAX_DECOMPRESSED = 512 << 20


@dataclass(frozen=True)
class Hit:
    """An identifier found in a file: the file (relative to the scanned folder), the DICOM tag
    whose value was found, and where in the file (``path``, ``content``, ``nifti header``, ...).
    """

    file: str
    tag: str
    where: str


def _variants(tag: str, value: str) -> set[str]:
    v = value.strip().strip("\x00").strip()
    out = {v}
    if "^" in v:
        parts = [p.strip() for p in v.split("^") if p.strip()]
        out |= {" ".join(parts), ", ".join(parts), " ".join(reversed(parts))}
    if tag.endswith("Date") and re.fullmatch(r"\d{8}", v):
        out.add(f"{v[:4]}-{v[4:6]}-{v[6:]}")
    return {x for x in out if len(x) >= MIN_LENGTH}


def _element_values(value: object) -> list[str]:
    """The values of a DICOM element's value as strings (pydicom's MultiValue is a Sequence)."""
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [str(v) for v in value]
    return [str(value)]


def read_dicom_identifiers(files: Iterable[PathLike]) -> dict[str, set[str]]:
    """Identifying values (:data:`IDENTIFYING_TAGS`) of the DICOM files among ``files``.

    Files that are not DICOM are skipped (pydicom cannot read them).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    found: dict[str, set[str]] = {}
    n = 0
    for f in files:
        try:
            ds = pydicom.dcmread(
                str(f), stop_before_pixels=True, specific_tags=list(IDENTIFYING_TAGS)
            )
        except (InvalidDicomError, OSError, ValueError, TypeError, EOFError):
            continue
        n += 1
        for tag in IDENTIFYING_TAGS:
            for v in _element_values(ds.get(tag)):
                if v.strip():
                    found.setdefault(tag, set()).add(v)
    log.info("privacy: read the identifying tags of %d DICOM file(s)", n)
    return found


def dicom_identifiers(
    files: Iterable[PathLike], *, allowed: Iterable[str] = ()
) -> dict[str, set[str]]:
    """The search terms of the identifiers in the DICOM ``files``: ``{tag: {variants}}``.

    Args:
        files: input files (non-DICOM files are skipped).
        allowed: values that may appear (the cohort sheet's patient ids), case-insensitive.
    """
    ok = {a.strip().lower() for a in allowed}
    out: dict[str, set[str]] = {}
    for tag, values in read_dicom_identifiers(files).items():
        for v in values:
            if v.strip().lower() in ok:
                continue
            variants = {x for x in _variants(tag, v) if x.lower() not in ok}
            if variants:
                out.setdefault(tag, set()).update(variants)
    return out


#: Input files never read as DICOM (images and masks in other formats).
NOT_DICOM_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".raw", ".tsv", ".json")


def sheet_identifiers(cohort_sheet: PathLike) -> dict[str, set[str]]:
    """The identifiers of the DICOM inputs of a cohort sheet, its patient ids allowed."""
    allowed = set(read_cohort_sheet(cohort_sheet)["patient"])
    files = [
        r["file"]
        for r in sheet_files(cohort_sheet)
        if r["file"] and not r["file"].lower().endswith(NOT_DICOM_SUFFIXES)
    ]
    return dicom_identifiers(files, allowed=allowed)


#: Lowercase letters and digits (terms match as whole tokens of a lowercased blob).
_ALNUM = b"abcdefghijklmnopqrstuvwxyz0123456789"


def _trie_pattern(words: Iterable[bytes]) -> bytes:
    """One regular expression matching any of ``words`` (a trie, so matching stays linear)."""
    trie: dict = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[-1] = {}

    def build(node: dict) -> bytes:
        alts = [
            re.escape(bytes([ch])) + build(child) for ch, child in sorted(node.items()) if ch != -1
        ]
        if not alts:
            return b""
        body = alts[0] if len(alts) == 1 else b"(?:" + b"|".join(alts) + b")"
        return b"(?:" + body + b")?" if -1 in node else body

    return build(trie)


class IdentifierMatcher:
    """Finds the identifiers of ``{tag: {terms}}`` in bytes and text (module docstring).

    A term matches as a whole token: not preceded or followed by a letter or digit. Digit-only
    terms (dates, numeric IDs) are moreover not matched as the decimals of a number
    (``0.19580317``) nor followed by decimals (``19580317.5``).
    """

    def __init__(self, identifiers: Mapping[str, Iterable[str]]) -> None:
        self.tags: dict[bytes, set[str]] = {}
        self.numbers: dict[int, set[str]] = {}
        for tag, terms in identifiers.items():
            for t in terms:
                self.tags.setdefault(t.lower().encode("utf-8"), set()).add(tag)
                if t.isdigit() and len(t) <= 18:
                    self.numbers.setdefault(int(t), set()).add(tag)
        self.longest = max((len(k) for k in self.tags), default=0)
        digits = [k for k in self.tags if k.isdigit()]
        words = [k for k in self.tags if not k.isdigit()]
        # (regex, bytes that may not precede a match). The preceding-byte test is done by hand:
        # a leading look-behind stops the regex engine from skipping ahead to the bytes a term
        # can start with, and the scan then costs ~10x more on binary files. The blob is
        # lowercased first, so the patterns need no IGNORECASE.
        self.regexes: list[tuple[re.Pattern[bytes], bytes]] = []
        if words:
            self.regexes.append(
                (re.compile(rb"(" + _trie_pattern(words) + rb")(?![a-z0-9])"), _ALNUM)
            )
        if digits:
            self.regexes.append(
                (
                    re.compile(rb"(" + _trie_pattern(digits) + rb")(?![a-z0-9]|\.[0-9])"),
                    _ALNUM + b".",
                )
            )

    def find(self, blob: bytes) -> set[str]:
        """Tags whose values occur in ``blob`` (case-insensitively, as whole tokens)."""
        found: set[str] = set()
        low = blob.lower()
        for regex, not_before in self.regexes:
            pos = 0
            while (m := regex.search(low, pos)) is not None:
                start = m.start()
                if start > 0 and low[start - 1] in not_before:
                    pos = start + 1  # as a look-behind would: try the next position
                    continue
                found |= self.tags.get(m.group(1), set())
                pos = m.end() if m.end() > start else start + 1
        return found

    def find_numbers(self, values: np.ndarray) -> set[str]:
        """Tags whose digit-only values occur among the numbers ``values``."""
        if not self.numbers:
            return set()
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v) & (v == np.round(v))]
        hits = np.isin(v, np.array(list(self.numbers), dtype=float))
        found: set[str] = set()
        for x in np.unique(v[hits]):
            found |= self.numbers.get(int(x), set())
        return found


# ---- what a file holds, as byte strings ---------------------------------------------------------


def _raw_blocks(path: Path, overlap: int) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        tail = b""
        while True:
            block = fh.read(_BLOCK)
            if not block:
                return
            yield tail + block
            tail = block[-overlap:] if overlap > 0 else b""


def _nifti_header(raw: io.BufferedIOBase) -> bytes:
    head = raw.read(544)
    offset = 0
    for endian in "<>":
        if len(head) >= 4 and struct.unpack(endian + "i", head[:4])[0] == 348 and len(head) >= 112:
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            break
        if len(head) >= 176 and struct.unpack(endian + "i", head[:4])[0] == 540:
            offset = int(struct.unpack(endian + "q", head[168:176])[0])
            break
    offset = min(max(offset, len(head)), 1 << 20)
    return head + raw.read(offset - len(head))


def _png_text(path: Path) -> bytes:
    data = path.read_bytes()
    out = []
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        try:
            if kind == b"tEXt":
                out.append(body.replace(b"\0", b" "))
            elif kind == b"zTXt":
                key, _, rest = body.partition(b"\0")
                out.append(key + b" " + zlib.decompress(rest[1:]))
            elif kind == b"iTXt":
                key, _, rest = body.partition(b"\0")
                compressed, rest = rest[0], rest[2:]
                _lang, _, rest = rest.partition(b"\0")
                _translated, _, text = rest.partition(b"\0")
                out.append(key + b" " + (zlib.decompress(text) if compressed else text))
        except (zlib.error, IndexError):
            continue
    return b"\n".join(out)


def _npy_text(data: bytes) -> bytes:
    try:
        arr = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return b""
    if arr.dtype.kind in "US":
        return "\n".join(str(x) for x in arr.ravel()).encode("utf-8", "replace")
    return b""


def _parquet_parts(path: Path, matcher: IdentifierMatcher) -> tuple[bytes, set[str]]:
    table = pd.read_parquet(path)
    text = [" ".join(map(str, table.columns)), " ".join(map(str, table.index.names))]
    numeric_hits: set[str] = set()
    if not pd.api.types.is_numeric_dtype(table.index):
        text.append("\n".join(map(str, table.index)))
    for col in table.columns:
        s = table[col]
        if pd.api.types.is_bool_dtype(s):
            continue
        if pd.api.types.is_numeric_dtype(s):
            numeric_hits |= matcher.find_numbers(s.to_numpy(dtype=float, na_value=np.nan))
        else:
            text.append("\n".join(map(str, s.tolist())))
    return "\n".join(text).encode("utf-8", "replace"), numeric_hits


def scan_file(path: PathLike, rel: str, matcher: IdentifierMatcher) -> list[Hit]:
    """Every identifier found in one file (see the module docstring for what is searched)."""
    path = Path(path)
    found: set[tuple[str, str]] = set()

    def look(blob: bytes, where: str) -> None:
        found.update((tag, where) for tag in matcher.find(blob))

    look(rel.encode("utf-8", "replace"), "path")
    name = path.name.lower()
    try:
        if name.endswith((".nii.gz", ".nii")):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rb") as fh:
                look(_nifti_header(fh), "nifti header")
        else:
            for block in _raw_blocks(path, max(matcher.longest - 1, 0)):
                look(block, "content")
            if name.endswith(".gz"):
                with gzip.open(path, "rb") as fh:
                    look(fh.read(_MAX_DECOMPRESSED), "gzip content")
            elif name.endswith(".parquet"):
                text, numbers = _parquet_parts(path, matcher)
                look(text, "parquet values")
                found.update((tag, "parquet values") for tag in numbers)
            elif name.endswith(".png"):
                look(_png_text(path), "png text")
            elif zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as z:
                    for info in z.infolist():
                        if info.file_size > _MAX_DECOMPRESSED:
                            continue
                        data = z.read(info)
                        if info.compress_type != zipfile.ZIP_STORED:
                            # a stored member's bytes are the file's own: searched above
                            # (a PyTorch checkpoint's tensors: half the scan of results/)
                            look(data, f"archive member {info.filename}")
                        if info.filename.endswith(".npy"):
                            look(_npy_text(data), f"archive member {info.filename}")
                        look(info.filename.encode("utf-8", "replace"), "archive member name")
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        log.warning(
            "privacy: %s could not be fully decoded (%s); its raw bytes were searched", rel, exc
        )
    return [Hit(rel, tag, where) for tag, where in sorted(found)]


def _scan_chunk(
    root: str, rels: Sequence[str], identifiers: Mapping[str, Sequence[str]]
) -> list[Hit]:
    """:func:`scan_file` over ``rels`` (one worker's share of :func:`scan_tree`)."""
    matcher = IdentifierMatcher(identifiers)
    hits: list[Hit] = []
    for rel in rels:
        hits += scan_file(Path(root) / rel, rel, matcher)
    return hits


def scan_tree(
    root: PathLike, identifiers: Mapping[str, Iterable[str]], workers: int = 1
) -> tuple[list[Hit], int]:
    """Search every file under ``root`` for the identifiers: ``(hits, number of files)``.

    ``workers`` > 1 scans contiguous shares of the sorted file list in that many processes;
    the hits come back in the same order as with one.
    """
    ids = {tag: sorted(set(map(str, values))) for tag, values in identifiers.items()}
    rels = list(walk_files(root))
    if workers > 1 and len(rels) > 1:
        n_chunks = min(len(rels), 8 * workers)  # small shares even out slow files
        bounds = np.linspace(0, len(rels), n_chunks + 1).astype(int)
        shares = [rels[a:b] for a, b in itertools.pairwise(bounds)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = pool.map(_scan_chunk, [str(root)] * len(shares), shares, [ids] * len(shares))
            hits = [h for part in parts for h in part]
    else:
        hits = _scan_chunk(str(root), rels, ids)
    log.info(
        "privacy: %d identifier value(s) of %d tag(s) searched in %d files: %d hit(s)",
        sum(len(v) for v in ids.values()),
        len(ids),
        len(rels),
        len(hits),
    )
    return hits, len(rels)


def scan_paths(
    paths: Sequence[PathLike], identifiers: Mapping[str, Iterable[str]]
) -> tuple[list[Hit], int]:
    """:func:`scan_tree` over folders and :func:`scan_file` over files (e.g. a report)."""
    hits: list[Hit] = []
    n = 0
    matcher = IdentifierMatcher(identifiers)
    for p in map(Path, paths):
        if not p.exists():
            raise InputError("nothing to scan: path not found", file=p)
        if p.is_dir():
            h, k = scan_tree(p, identifiers)
            hits += [Hit(f"{p.as_posix()}/{x.file}", x.tag, x.where) for x in h]
            n += k
        else:
            hits += scan_file(p, p.as_posix(), matcher)
            n += 1
    return hits, n


def privacy_table(identifiers: Mapping[str, Iterable[str]], hits: Sequence[Hit]) -> pd.DataFrame:
    """One row per identifying tag found in the inputs: values searched and the files holding
    one of its values (first five listed). Values are never written."""
    rows = []
    for tag in sorted(identifiers):
        files = sorted({h.file for h in hits if h.tag == tag})
        rows.append(
            {
                "tag": tag,
                "n_values": len(set(identifiers[tag])),
                "n_files_with_value": len(files),
                "files": "; ".join(files[:5])
                + (f"; ... ({len(files)} files)" if len(files) > 5 else ""),
            }
        )
    return pd.DataFrame(rows, columns=["tag", "n_values", "n_files_with_value", "files"])
