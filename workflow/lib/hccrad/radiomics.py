"""Whole-region (one value per region) radiomics with PyRadiomics.

This module is a thin, checked wrapper around PyRadiomics' ``RadiomicsFeatureExtractor``:

* :func:`extract_region_features` runs one image + mask through a native PyRadiomics parameter
  file (``config/radiomics/*.yaml``) and returns the features under PyRadiomics' own names
  (``original_firstorder_Mean``, ``wavelet-LLH_glcm_Contrast``,
  ``log-sigma-1-0-mm-3D_glszm_ZoneEntropy``) and the ``diagnostics_*`` entries separately.
* :func:`cohort_feature_table` turns per patient x phase x region feature dicts into one cohort
  table (one row per patient, columns ``{phase}_{region}_{imageType}_{class}_{feature}``);
  :func:`cohort_diagnostics_table` does the same for the diagnostics (the sidecar table).

Empty masks and masks PyRadiomics rejects (too small for ``minimumROIDimensions`` /
``minimumROISize``, or a label that is absent) raise :class:`hccrad.errors.InputError` naming the
patient, phase and file when the caller passes them.

PyRadiomics is imported lazily, so importing :mod:`hccrad.radiomics` is cheap.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK as sitk
import yaml

from hccrad.errors import InputError
from hccrad.preprocess.ibsi import ibsi_binning as ibsi_binning_from

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger(__name__)


class _DropSymmetricalGLCMNotice(logging.Filter):
    """PyRadiomics warns, for every image type of every extraction, that a symmetrical GLCM makes
    Sum Average redundant (a documented property, not a problem); drop just that record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "GLCM is symmetrical" not in record.getMessage()


def _quiet_pyradiomics() -> None:
    import radiomics

    radiomics.setVerbosity(logging.ERROR)  # PyRadiomics' own console handler: errors only
    glcm_log = logging.getLogger("radiomics.glcm")
    if not any(isinstance(f, _DropSymmetricalGLCMNotice) for f in glcm_log.filters):
        glcm_log.addFilter(_DropSymmetricalGLCMNotice())


#: Folder of the native PyRadiomics parameter presets shipped with the workflow.
PRESET_DIR = Path(__file__).resolve().parents[3] / "config" / "radiomics"

#: Keys of one record given to :func:`cohort_feature_table`.
RECORD_KEYS = ("patient", "phase", "region", "features")

#: Prefix PyRadiomics gives to non-feature (provenance / ROI) entries.
DIAGNOSTICS_PREFIX = "diagnostics_"


def preset_path(name: str) -> Path:
    """Path of a shipped preset, e.g. ``preset_path("demo_fast")``.

    Args:
        name: File name with or without ``.yaml`` in ``config/radiomics/``.

    Returns:
        The path of the preset.

    Raises:
        InputError: When no such preset exists.
    """
    path = PRESET_DIR / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if not path.is_file():
        available = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise InputError(f"no radiomics preset {name!r}; available: {available}", file=path)
    return path


def load_params(params: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Read a native PyRadiomics parameter file (or copy a parameter mapping).

    Args:
        params: Path of a YAML/JSON parameter file with ``imageType`` / ``featureClass`` /
            ``setting`` sections, or such a mapping.

    Returns:
        The parameters as a plain dict (sections absent from the file are absent here).

    Raises:
        InputError: When the file is missing, unreadable or not a mapping.
    """
    if isinstance(params, Mapping):
        return {key: value for key, value in params.items()}
    path = Path(params)
    if not path.is_file():
        raise InputError("radiomics parameter file not found", file=path)
    try:
        with path.open(encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise InputError(f"radiomics parameter file is not valid YAML: {exc}", file=path) from exc
    if not isinstance(data, dict):
        raise InputError("radiomics parameter file must hold a mapping", file=path)
    unknown = set(data) - {"imageType", "featureClass", "setting", "voxelSetting"}
    if unknown:
        raise InputError(
            f"unknown sections in radiomics parameter file: {sorted(unknown)}", file=path
        )
    return data


def _as_image(
    value: sitk.Image | str | Path, what: str, context: dict[str, Any]
) -> tuple[sitk.Image, str | None]:
    """Return ``(image, path or None)``; reads ``value`` when it is a path."""
    if isinstance(value, sitk.Image):
        return value, None
    path = Path(value)
    if not path.exists():
        raise InputError(f"{what} not found", file=path, **context)
    try:
        return sitk.ReadImage(str(path)), str(path)
    except RuntimeError as exc:
        raise InputError(f"cannot read {what}: {exc}", file=path, **context) from exc


def _to_python(value: Any) -> Any:
    """Convert PyRadiomics' numpy scalars / 0-d arrays to Python scalars; leave the rest."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def extract_region_features(
    image: sitk.Image | str | Path,
    mask: sitk.Image | str | Path,
    params: str | Path | Mapping[str, Any],
    *,
    label: int = 1,
    patient: str | None = None,
    phase: str | None = None,
    mask_file: str | Path | None = None,
    ibsi_binning: bool = True,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Extract whole-region PyRadiomics features of one region.

    The image is expected to be preprocessed already (resampled to 1 mm, N4 / windowed) by the
    workflow; the presets therefore leave ``resampledPixelSpacing`` unset. Any setting in the
    parameter file is honoured as PyRadiomics would (it is PyRadiomics that reads it).

    Args:
        image: The image, or a path SimpleITK can read.
        mask: The label map, same grid as ``image``, or a path.
        params: Native PyRadiomics parameter file (e.g. ``config/radiomics/demo_fast.yaml``) or
            the equivalent mapping.
        label: Label value of the region in ``mask`` (overrides ``setting: label``).
        patient: Patient id, only used to name the patient in error messages.
        phase: Phase, only used in error messages.
        mask_file: Mask path for error messages when ``mask`` is an image object.
        ibsi_binning: With a fixed bin width and a re-segmentation range
            (``resegmentRange``, absolute mode), start the first bin at the range's lower bound
            (IBSI-1; :func:`hccrad.preprocess.ibsi.ibsi_binning`) instead of PyRadiomics'
            ``floor(min / width) * width``. Without a range, PyRadiomics' binning either way.

    Returns:
        ``(features, diagnostics)``: ``features`` maps PyRadiomics' feature names
        (``{imageType}_{featureClass}_{featureName}``, e.g. ``original_firstorder_Mean``) to
        floats, in PyRadiomics' order; ``diagnostics`` holds the ``diagnostics_*`` entries
        (versions, settings, image/mask hashes, ROI size), values as PyRadiomics gives them with
        numpy scalars turned into Python scalars.

    Raises:
        InputError: Missing/unreadable files, a mask without voxels of ``label``, a mask that does
            not fit the image, or a region PyRadiomics rejects (too small for the settings).
    """
    _quiet_pyradiomics()

    context: dict[str, Any] = {"patient": patient, "phase": phase}
    img, _ = _as_image(image, "image", context)
    msk, msk_path = _as_image(mask, "mask", context)
    where = msk_path or (str(mask_file) if mask_file is not None else None)
    n_voxels = _check_mask(img, msk, label, where, context)

    extractor = _make_extractor(params, label)
    img, msk = crop_for_extraction(img, msk, label, extractor.enabledImagetypes, extractor.settings)
    log.debug("radiomics: patient=%s phase=%s label=%d voxels=%d image types=%s classes=%s",
              patient, phase, label, n_voxels, list(extractor.enabledImagetypes),
              list(extractor.enabledFeatures))  # fmt: skip
    lower = _resegment_lower_bound(extractor.settings) if ibsi_binning else None
    try:
        with _binning(lower):
            result = extractor.execute(img, msk, label=label)
    except ValueError as exc:
        # checkMask: ROI too small in some dimension / below minimumROISize, geometry mismatch
        raise InputError(
            f"PyRadiomics rejected the region (label {label}, {n_voxels} voxels): {exc}",
            file=where,
            **context,
        ) from exc

    features, diagnostics = _split_result(result)
    n_nan = sum(1 for v in features.values() if math.isnan(v))
    if n_nan:
        log.warning("radiomics: %d of %d features are NaN (patient=%s phase=%s)",
                    n_nan, len(features), patient, phase)  # fmt: skip
    return features, diagnostics


def _binning(lower: float | None) -> contextlib.AbstractContextManager[None]:
    """IBSI-1's fixed-bin-width binning from ``lower`` for the block, or nothing (None)."""
    return ibsi_binning_from(lower) if lower is not None else contextlib.nullcontext()


def _resegment_lower_bound(settings: Mapping[str, Any]) -> float | None:
    """The lower bound of an absolute re-segmentation range under a fixed bin width, else None
    (a bin count, no range, or a relative / sigma range: PyRadiomics' binning stands)."""
    reseg = settings.get("resegmentRange")
    if not reseg or settings.get("binCount") is not None:
        return None
    if settings.get("resegmentMode", "absolute") != "absolute":
        return None
    return float(reseg[0])


def crop_for_extraction(
    img: sitk.Image,
    msk: sitk.Image,
    label: int,
    image_types: Mapping[str, Any],
    settings: Mapping[str, Any],
) -> tuple[sitk.Image, sitk.Image]:
    """``img`` and ``msk`` cropped to the bounding box of ``label`` plus ``padDistance`` voxels,
    where that cannot change a feature; otherwise both unchanged.

    PyRadiomics crops to the same box itself, but only after its per-call overheads on the whole
    field of view (mask checks by label statistics, and the image and mask hashes of its
    ``diagnostics_*``), which on a preprocessed liver scan cost more than the features of a
    small tumor. Cropping first is exact when every feature is computed from voxels inside the
    box: the original image only (a wavelet or LoG filter of the whole image differs near the
    crop's edge), no resampling (PyRadiomics' own, which pads by ``padDistance`` around the box
    anyway) and no whole-image normalization. The ``diagnostics_Image-original_*`` and
    ``diagnostics_Mask-original_*`` entries then describe the cropped box (its size, hash,
    mean and the bounding box within it); the features are the same to the last bit
    (``tests/test_radiomics.py``).
    """
    exact = (
        set(image_types) == {"Original"}
        and not settings.get("resampledPixelSpacing")
        and not settings.get("normalize", False)
    )
    if not exact:
        return img, msk
    arr = sitk.GetArrayViewFromImage(msk) == label
    pad = int(settings.get("padDistance", 5) or 0)
    size = img.GetSize()  # x, y, z; the array is z, y, x
    lower, extent = [], []
    for axis in range(arr.ndim):
        other = tuple(a for a in range(arr.ndim) if a != axis)
        hit = np.flatnonzero(arr.any(axis=other))
        dim = arr.ndim - 1 - axis  # the image index of this array axis
        lo = max(int(hit[0]) - pad, 0)
        hi = min(int(hit[-1]) + pad + 1, size[dim])
        lower.append((dim, lo))
        extent.append((dim, hi - lo))
    index = [lo for _, lo in sorted(lower)]
    crop = [n for _, n in sorted(extent)]
    if list(crop) == list(size):
        return img, msk
    return (
        sitk.RegionOfInterest(img, crop, index),
        sitk.RegionOfInterest(msk, crop, index),
    )


def _check_mask(
    img: sitk.Image, msk: sitk.Image, label: int, where: str | None, context: dict[str, Any]
) -> int:
    """Number of voxels of ``label`` in ``msk``; InputError when there is none or when the mask
    and the image differ in size."""
    arr = sitk.GetArrayViewFromImage(msk)
    n_voxels = int(np.count_nonzero(arr == label))
    if n_voxels == 0:
        present = sorted(int(v) for v in np.unique(arr))[:10]
        raise InputError(
            f"mask is empty: no voxel has label {label} (labels present: {present})",
            file=where,
            **context,
        )
    if img.GetSize() != msk.GetSize():
        raise InputError(
            f"mask size {msk.GetSize()} does not match image size {img.GetSize()}",
            file=where,
            **context,
        )
    return n_voxels


#: Extractors built in this process, by parameter file (path, modification time, size) and
#: label: a patient's job extracts 8-16 regions with one file, and building the extractor (YAML
#: read, PyRadiomics' schema validation) cost a fifth of each extraction.
_EXTRACTORS: dict[tuple[str, int, int, int], Any] = {}


def _make_extractor(params: str | Path | Mapping[str, Any], label: int) -> Any:
    """PyRadiomics' ``RadiomicsFeatureExtractor`` of ``params``, set to ``label`` (one per
    parameter file and label in a process; ``execute`` leaves the extractor unchanged)."""
    if isinstance(params, Mapping):
        return _build_extractor(params, label)
    try:
        st = Path(params).stat()
    except OSError:
        return _build_extractor(params, label)  # raises the missing-file error
    key = (str(Path(params).resolve()), st.st_mtime_ns, st.st_size, int(label))
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = _build_extractor(params, label)
    return _EXTRACTORS[key]


def _build_extractor(params: str | Path | Mapping[str, Any], label: int) -> Any:
    from radiomics import featureextractor  # lazy: heavy import

    cfg = load_params(params)
    try:
        extractor = featureextractor.RadiomicsFeatureExtractor(cfg)
    except Exception as exc:  # pykwalify's SchemaError and friends
        src = None if isinstance(params, Mapping) else params
        raise InputError(f"invalid radiomics parameters: {exc}", file=src) from exc
    extractor.settings["label"] = label
    return extractor


def _split_result(result: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """PyRadiomics' result as ``(features as floats, diagnostics_* entries)``, in its order."""
    features: dict[str, float] = {}
    diagnostics: dict[str, Any] = {}
    for key, value in result.items():
        if key.startswith(DIAGNOSTICS_PREFIX):
            diagnostics[key] = _to_python(value)
        else:
            features[key] = float(_to_python(value))
    return features, diagnostics


def _check_record(i: int, rec: Mapping[str, Any]) -> tuple[str, str, str]:
    missing = [k for k in RECORD_KEYS if k not in rec]
    if missing:
        raise InputError(f"radiomics record {i} lacks keys {missing}", patient=rec.get("patient"))
    patient, phase, region = str(rec["patient"]), str(rec["phase"]), str(rec["region"])
    for name, value in (("phase", phase), ("region", region)):
        if not value or "_" in value:
            raise InputError(
                f"{name} {value!r} must be non-empty and contain no '_' (column names are "
                "'{phase}_{region}_{imageType}_{class}_{feature}')",
                patient=patient,
                phase=phase,
            )
    return patient, phase, region


def _wide_table(records: Iterable[Mapping[str, Any]], key: str, *, numeric: bool) -> pd.DataFrame:
    rows: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, str, str]] = set()
    for i, rec in enumerate(records):
        patient, phase, region = _check_record(i, rec)
        if (patient, phase, region) in seen:
            raise InputError(
                f"duplicate radiomics record for region {region!r}", patient=patient, phase=phase
            )
        seen.add((patient, phase, region))
        values = rec.get(key) or {}
        row = rows.setdefault(patient, {})
        for name, value in values.items():
            v = _to_python(value)
            if numeric:
                v = float(v)
            elif not isinstance(v, (str, int, float, bool)) and v is not None:
                v = str(v)  # tuples/dicts of diagnostics -> text, so parquet can store them
            row[f"{phase}_{region}_{name}"] = v
    import pandas as pd  # here: the per-patient extraction job never imports pandas (0.4 s)

    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "patient"
    if numeric and not df.empty:
        df = df.astype("float64")
    return df.sort_index(axis=0).sort_index(axis=1)


def cohort_feature_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Assemble per patient x phase x region feature dicts into one cohort table.

    Record format: one mapping per patient x phase x region with keys

    * ``patient`` (str): patient id; becomes the row index (named ``patient``);
    * ``phase`` (str): e.g. ``AP``, ``PVP``, ``HBP`` (no ``_``);
    * ``region`` (str): e.g. ``tumor``, ``peritumor`` (no ``_``);
    * ``features`` (dict): as returned by :func:`extract_region_features`;
    * ``diagnostics`` (dict, optional): used by :func:`cohort_diagnostics_table` only.

    Args:
        records: The records (any iterable; consumed once).

    Returns:
        One row per patient, columns ``{phase}_{region}_{imageType}_{class}_{feature}`` (e.g.
        ``PVP_tumor_original_firstorder_Mean``) as float64, rows and columns sorted. A patient
        lacking a phase/region has NaN there.

    Raises:
        InputError: A record lacks a key, repeats a (patient, phase, region), or has a phase or
            region name containing ``_`` (which would make column names ambiguous).
    """
    return _wide_table(records, "features", numeric=True)


def cohort_diagnostics_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Sidecar of :func:`cohort_feature_table`: the ``diagnostics_*`` entries per patient.

    Columns are ``{phase}_{region}_diagnostics_...``; tuples and dicts (bounding boxes, settings)
    are stored as their text so the table can be written to parquet/CSV.

    Args:
        records: Same records as for :func:`cohort_feature_table`.

    Returns:
        One row per patient (index ``patient``), object columns.
    """
    return _wide_table(records, "diagnostics", numeric=False)


def split_feature_name(name: str) -> dict[str, str]:
    """Split a PyRadiomics feature name into its parts.

    Args:
        name: ``{imageType}_{featureClass}_{featureName}``, optionally prefixed by
            ``{phase}_{region}_`` as in :func:`cohort_feature_table` columns.

    Returns:
        Dict with ``image_type``, ``feature_class``, ``feature`` and, when present, ``phase`` and
        ``region``.

    Raises:
        ValueError: When the name does not have 3 or 5 ``_``-separated parts.
    """
    parts = name.split("_")
    if len(parts) == 3:
        return {"image_type": parts[0], "feature_class": parts[1], "feature": parts[2]}
    if len(parts) == 5:
        return {
            "phase": parts[0],
            "region": parts[1],
            "image_type": parts[2],
            "feature_class": parts[3],
            "feature": parts[4],
        }
    raise ValueError(f"not a radiomics feature name: {name!r}")
