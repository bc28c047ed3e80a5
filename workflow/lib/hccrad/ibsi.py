"""IBSI-1 digital phantom check of the radiomics feature configuration.

The Image Biomarker Standardisation Initiative (IBSI, chapter 1) publishes consensus values of
radiomics features for a 5 x 4 x 4 digital phantom (2 mm voxels, integer gray levels 1..6 inside
the ROI). This module runs the phantom through the project's own extraction path
(:func:`hccrad.radiomics.extract_region_features`) with the IBSI phantom configuration and compares
each PyRadiomics feature with its IBSI consensus value:

* :data:`IBSI_TAGS` maps PyRadiomics' ``{class}_{feature}`` names to IBSI tags (for the project's
  texture aggregation, ``3D_avg``); :data:`NO_IBSI_TAG` lists, with the reason, the PyRadiomics
  features IBSI-1 does not define.
* :data:`KNOWN_DEVIATIONS` documents every feature that fails the IBSI tolerance, with the reason;
  :data:`CONVERSIONS` holds definitional conversions (IBSI's excess kurtosis is PyRadiomics'
  Kurtosis minus 3), reported as separate rows so the PyRadiomics value itself is never altered.
* :func:`ibsi_pass` is IBSI's pass rule: the value rounded to 3 significant digits must be within
  the tolerance of the reference value; :func:`ibsi_compare` applies it to a feature dict and
  :func:`check_phantom` runs extraction and comparison in one go.

The texture aggregation of the check (:data:`AGGREGATIONS`) defaults to the one every preset in
``config/radiomics`` uses (``force2D: false``, ``weightingNorm: null``): GLCM and GLRLM features
are computed per direction and averaged over the 13 directions (IBSI ``3D_avg``); GLSZM, GLDM and
NGTDM use one 3D matrix (IBSI ``3D``). The other aggregations PyRadiomics can express
(``3D_comb``, ``2_5D_avg``, ``2_5D_comb``) are checked too. See ``docs/ibsi1.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from hccrad.errors import InputError
from hccrad.ibsi_tags import IBSI_TAGS, NO_IBSI_TAG
from hccrad.preprocess.ibsi import Processing, ibsi_binning, process
from hccrad.radiomics import extract_region_features, load_params

#: File names inside the phantom folder (``../shared/data/ibsi1/digital_phantom``).
PHANTOM_IMAGE = "image.nii.gz"
PHANTOM_MASK = "mask.nii.gz"
REFERENCE_CSV = "reference_values.csv"

#: IBSI's pass rule rounds the value to this many significant digits before comparing.
SIGNIFICANT_DIGITS = 3

#: Columns of the table returned by :func:`ibsi_compare`.
COLUMNS = ("feature", "ibsi_tag", "value", "reference", "tolerance", "passed", "note")

#: IBSI phantom configuration as native PyRadiomics settings: no resampling, no interpolation, no
#: re-segmentation or outlier removal, no normalisation; bin width 1 so that PyRadiomics' bins
#: ``[1, 2), [2, 3), ...`` (edges at multiples of the width, first edge <= the ROI minimum 1) map
#: the phantom's gray levels 1:1 (see :func:`phantom_gray_levels`); 3D matrices, neighbour distance
#: 1, symmetric GLCM, GLDM coarseness (alpha) 0, no intensity shift for Energy.
IBSI_SETTINGS: dict[str, Any] = {
    "binWidth": 1,
    "resampledPixelSpacing": None,
    "normalize": False,
    "label": 1,
    "minimumROIDimensions": 2,
    "padDistance": 5,
    "preCrop": False,
    "force2D": False,
    "distances": [1],
    "symmetricalGLCM": True,
    "weightingNorm": None,
    "gldm_a": 0,
    "voxelArrayShift": 0,
    "additionalInfo": True,
}

#: Settings that decide how texture matrices are built and aggregated, with PyRadiomics' defaults
#: (used when a parameter file leaves them out); :func:`aggregation_mismatches` compares them.
AGGREGATION_DEFAULTS: dict[str, Any] = {
    "force2D": False,
    "distances": [1],
    "symmetricalGLCM": True,
    "weightingNorm": None,
    "gldm_a": 0,
    "voxelArrayShift": 0,
}

#: IBSI texture aggregations PyRadiomics can reproduce: the setting overrides and the classes they
#: apply to. ``comb`` = one matrix merged over the directions (``weightingNorm: no_weighting``
#: sums the per-direction matrices with weight 1); ``2_5D`` = in-plane directions only, matrices
#: merged over the slices (``force2D`` along the array's first axis, z). IBSI's per-slice ``2D``
#: aggregation has no PyRadiomics equivalent.
AGGREGATIONS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "3D_avg": (
        {"force2D": False, "weightingNorm": None},
        ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"),
    ),
    "3D_comb": ({"force2D": False, "weightingNorm": "no_weighting"}, ("glcm", "glrlm")),
    "2_5D_avg": (
        {"force2D": True, "force2Ddimension": 0, "weightingNorm": None},
        ("glcm", "glrlm", "glszm", "gldm", "ngtdm"),
    ),
    "2_5D_comb": (
        {"force2D": True, "force2Ddimension": 0, "weightingNorm": "no_weighting"},
        ("glcm", "glrlm"),
    ),
}

#: Features that fail the IBSI tolerance on the phantom, with the reason (checked both ways by
#: tests/test_ibsi1.py: every failure is listed here and every entry here really fails).
KNOWN_DEVIATIONS: dict[str, str] = {
    "shape_MinorAxisLength": (
        "PCA axis 4*sqrt(lambda): PyRadiomics uses the biased covariance (1/N) of the voxel "
        "centres; the IBSI value matches the unbiased one (1/(N-1)): 9.245*sqrt(74/73) = 9.308"
    ),
    "shape_LeastAxisLength": (
        "PCA axis 4*sqrt(lambda): PyRadiomics uses the biased covariance (1/N) of the voxel "
        "centres; the IBSI value matches the unbiased one (1/(N-1)): 8.478*sqrt(74/73) = 8.536"
    ),
    "firstorder_Kurtosis": (
        "definition: PyRadiomics gives kurtosis m4/m2^2, IBSI stat_kurt is the excess kurtosis "
        "m4/m2^2 - 3 (see the conversion row)"
    ),
}

#: Features that fail the IBSI tolerance on the CT phantom (configurations A-E, through
#: :func:`extract_config`), with the reason; tests/test_ibsi_ct.py checks the list is exact for
#: every configuration. The PCA axis deviations of the digital phantom (74 voxels) vanish here:
#: with ~10^4-10^5 voxels 1/N and 1/(N-1) agree to 3 significant digits.
CT_KNOWN_DEVIATIONS: dict[str, str] = {
    "firstorder_Kurtosis": KNOWN_DEVIATIONS["firstorder_Kurtosis"],
}

#: Caveats of features that pass (shown in the ``note`` column).
NOTES: dict[str, str] = {
    "shape_MajorAxisLength": (
        "passes at the tolerance edge (11.3 vs 11.4 +- 0.1): same 1/N covariance as the minor and "
        "least axes"
    ),
    "shape_MeshVolume": "marching-cubes mesh volume; IBSI also uses a mesh",
    "shape_SurfaceArea": "marching-cubes mesh area; IBSI also uses a mesh",
    "firstorder_Entropy": "discretised histogram, log2 (as IBSI)",
    "firstorder_Uniformity": "discretised histogram",
    "glcm_Idn": "normalised by Ng = max gray level (6 here, as IBSI's number of levels)",
    "glcm_Idmn": "normalised by Ng^2, Ng = max gray level (6 here, as IBSI's number of levels)",
}


def excess_kurtosis(kurtosis: float) -> float:
    """IBSI's excess kurtosis from PyRadiomics' ``Kurtosis`` (a conversion, not a fix)."""
    return kurtosis - 3.0


@dataclass(frozen=True)
class Conversion:
    """A documented definitional conversion of one PyRadiomics feature to an IBSI quantity."""

    source: str  #: PyRadiomics ``{class}_{feature}``
    name: str  #: name of the extra row in the comparison table
    formula: str  #: human-readable formula
    func: Callable[[float], float]


#: Conversions reported as extra rows (the PyRadiomics row keeps the unconverted value).
CONVERSIONS: tuple[Conversion, ...] = (
    Conversion(
        source="firstorder_Kurtosis",
        name="firstorder_Kurtosis-3",
        formula="excess kurtosis = PyRadiomics Kurtosis - 3",
        func=excess_kurtosis,
    ),
)


def feature_key(name: str) -> str:
    """``{class}_{feature}`` of a PyRadiomics name (``original_glcm_Id`` -> ``glcm_Id``)."""
    parts = name.split("_")
    if len(parts) == 2:
        return name
    if len(parts) == 3:
        return f"{parts[1]}_{parts[2]}"
    raise ValueError(f"not a PyRadiomics feature name: {name!r}")


def ibsi_tag(key: str, aggregation: str = "3D_avg") -> str | None:
    """IBSI tag of a PyRadiomics ``{class}_{feature}`` for a texture aggregation, or None.

    Args:
        key: E.g. ``glcm_Contrast`` (a full ``original_glcm_Contrast`` is accepted too).
        aggregation: One of :data:`AGGREGATIONS`; decides the tag's suffix for texture classes.

    Returns:
        The tag (e.g. ``cm_contrast_3D_comb``), or None when IBSI-1 has no such feature.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; known: {sorted(AGGREGATIONS)}")
    key = feature_key(key)
    tag = IBSI_TAGS.get(key)
    if tag is None or aggregation == "3D_avg":
        return tag
    cls = key.split("_", 1)[0]
    if cls not in AGGREGATIONS[aggregation][1]:
        raise ValueError(f"{key}: class {cls!r} is not computed for aggregation {aggregation}")
    if tag.endswith("_3D_avg"):  # per-direction features: GLCM, GLRLM
        return tag.removesuffix("3D_avg") + aggregation
    merged = aggregation.removesuffix("_avg").removesuffix("_comb")  # GLSZM, GLDM, NGTDM
    return tag.removesuffix("3D") + merged


def round_significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> Decimal:
    """``value`` rounded to ``digits`` significant digits, halves away from zero, exactly.

    Decimal arithmetic keeps the comparison in :func:`ibsi_pass` free of binary rounding
    (``1.3 - 1.2`` is ``0.10000000000000009`` in floats).
    """
    exact = Decimal(float(value))
    if exact == 0:
        return Decimal(0)
    quantum = Decimal(1).scaleb(exact.adjusted() - digits + 1)
    return exact.quantize(quantum, rounding=ROUND_HALF_UP)


def ibsi_pass(value: float, reference: float, tolerance: float) -> bool:
    """IBSI's rule: ``abs(round(value, 3 significant digits) - reference) <= tolerance``.

    The reference and tolerance are taken as the decimals they were written as (``repr``); a NaN
    or infinite value fails.
    """
    if not math.isfinite(value):
        return False
    diff = abs(round_significant(value) - Decimal(repr(float(reference))))
    return diff <= Decimal(repr(float(tolerance)))


def read_reference(reference_csv: str | Path) -> pd.DataFrame:
    """IBSI reference values: ``reference value;tolerance;tag`` -> frame indexed by tag.

    Returns:
        Columns ``reference`` and ``tolerance`` (float; NaN where IBSI has no consensus value).

    Raises:
        InputError: Missing file, unexpected columns or duplicate tags.
    """
    path = Path(reference_csv)
    if not path.is_file():
        raise InputError("IBSI reference values not found", file=path)
    ref = pd.read_csv(path, sep=";")
    expected = ["reference value", "tolerance", "tag"]
    if list(ref.columns) != expected:
        raise InputError(f"expected columns {expected}, got {list(ref.columns)}", file=path)
    if ref["tag"].duplicated().any():
        raise InputError("duplicate IBSI tags in the reference values", file=path)
    ref = ref.rename(columns={"reference value": "reference"}).set_index("tag")
    return ref.astype("float64")


def ibsi_compare(
    features: Mapping[str, float],
    reference_csv: str | Path | pd.DataFrame,
    *,
    aggregation: str = "3D_avg",
) -> pd.DataFrame:
    """Compare PyRadiomics features with the IBSI-1 phantom consensus values.

    Args:
        features: PyRadiomics names (``original_glcm_Id`` or ``glcm_Id``) -> value.
        reference_csv: IBSI ``reference_values.csv`` (see :func:`read_reference`), or a frame
            as :func:`read_reference` returns (e.g. :func:`read_ct_reference`'s).
        aggregation: Texture aggregation the features were computed with (:data:`AGGREGATIONS`).

    Returns:
        One row per feature, in input order, then one row per applicable :data:`CONVERSIONS`
        entry; columns :data:`COLUMNS`. ``feature`` is ``{class}_{feature}``; ``ibsi_tag``,
        ``reference``, ``tolerance`` and ``passed`` are missing (None / NaN / NA) for features
        without an IBSI tag; ``passed`` is a nullable boolean; ``note`` gives the deviation
        reason, conversion or caveat.

    Raises:
        InputError: A mapped tag is absent from the reference file.
    """
    if isinstance(reference_csv, pd.DataFrame):
        ref, reference_csv = reference_csv, "the reference table"
    else:
        ref = read_reference(reference_csv)
    rows: list[dict[str, Any]] = []

    def add(name: str, key: str, value: float, note: str) -> None:
        tag = ibsi_tag(key, aggregation)
        row: dict[str, Any] = {"feature": name, "ibsi_tag": tag, "value": float(value)}
        if tag is None:
            row.update(reference=math.nan, tolerance=math.nan, passed=pd.NA)
            row["note"] = NO_IBSI_TAG.get(key, "no IBSI-1 equivalent")
            rows.append(row)
            return
        if tag not in ref.index:
            raise InputError(
                f"IBSI tag {tag!r} (of {key}) not in the reference", file=reference_csv
            )
        reference, tolerance = ref.at[tag, "reference"], ref.at[tag, "tolerance"]
        row.update(reference=float(reference), tolerance=float(tolerance))
        if math.isnan(reference):
            row.update(passed=pd.NA, note="no IBSI consensus value")
        else:
            row.update(passed=ibsi_pass(value, reference, tolerance), note=note)
        rows.append(row)

    keys = {feature_key(name): float(value) for name, value in features.items()}
    for key, value in keys.items():
        add(key, key, value, KNOWN_DEVIATIONS.get(key) or NOTES.get(key, ""))
    for conv in CONVERSIONS:
        if conv.source in keys:
            note = f"conversion, not a PyRadiomics output: {conv.formula}"
            add(conv.name, conv.source, conv.func(keys[conv.source]), note)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table["passed"] = table["passed"].astype("boolean")
    return table


def phantom_params(aggregation: str = "3D_avg") -> dict[str, Any]:
    """Native PyRadiomics parameters of the IBSI phantom check for one texture aggregation.

    The ``3D_avg`` run enables every feature of the 7 classes, including the three deprecated
    shape features IBSI defines (Compactness1/2, SphericalDisproportion); the other aggregations
    only the texture classes they change. Same as :func:`config_params` of
    :data:`PHANTOM_CONFIG`.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; known: {sorted(AGGREGATIONS)}")
    return config_params(PHANTOM_CONFIG, aggregation, AGGREGATIONS[aggregation][1])


def extract_phantom_features(
    phantom_dir: str | Path, aggregation: str = "3D_avg"
) -> dict[str, float]:
    """Run the IBSI phantom through the same path as the CT configurations.

    :func:`extract_config` with :data:`PHANTOM_CONFIG` (no processing; shape on the
    morphological mask, the other classes on the intensity mask, which are the same here), i.e.
    :func:`hccrad.radiomics.extract_region_features` with the phantom's settings.

    Args:
        phantom_dir: Folder with ``image.nii.gz`` and ``mask.nii.gz`` (label 1).
        aggregation: Texture aggregation (:data:`AGGREGATIONS`).

    Returns:
        PyRadiomics features (``original_{class}_{feature}`` -> value).
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; known: {sorted(AGGREGATIONS)}")
    folder = Path(phantom_dir)
    image, mask = read_image_and_mask(folder / PHANTOM_IMAGE, folder / PHANTOM_MASK)
    runs = extract_config(
        image, mask, PHANTOM_CONFIG, [(aggregation, AGGREGATIONS[aggregation][1])]
    )
    return runs[0][1]


def check_phantom(phantom_dir: str | Path, aggregation: str = "3D_avg") -> pd.DataFrame:
    """Extract the phantom's features and compare them (:func:`ibsi_compare`)."""
    features = extract_phantom_features(phantom_dir, aggregation)
    return ibsi_compare(features, Path(phantom_dir) / REFERENCE_CSV, aggregation=aggregation)


def check_deviations(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Hold a comparison table against :data:`KNOWN_DEVIATIONS`.

    Returns:
        ``(undocumented, stale)``: compared features that fail but are not documented, and
        documented deviations present in ``table`` that pass. Both empty = the documentation is
        exact.
    """
    compared = table[table["passed"].notna()]
    failed = set(compared.loc[~compared["passed"].astype(bool), "feature"])
    passed = set(compared.loc[compared["passed"].astype(bool), "feature"])
    undocumented = sorted(failed - set(KNOWN_DEVIATIONS))
    stale = sorted(set(KNOWN_DEVIATIONS) & passed)
    return undocumented, stale


def summarize(table: pd.DataFrame) -> dict[str, int]:
    """Counts of a comparison table: PyRadiomics features ``mapped`` to an IBSI tag with a
    reference, of which ``passed`` / ``deviations``; ``unmapped`` features; ``conversions`` rows
    and how many of them pass (``conversions_passed``)."""
    is_conv = table["feature"].isin({c.name for c in CONVERSIONS})
    compared = table[~is_conv & table["passed"].notna()]
    conv = table[is_conv & table["passed"].notna()]
    return {
        "mapped": len(compared),
        "passed": int(compared["passed"].sum()),
        "deviations": int((~compared["passed"].astype(bool)).sum()),
        "unmapped": int((~is_conv & table["ibsi_tag"].isna()).sum()),
        "conversions": len(conv),
        "conversions_passed": int(conv["passed"].sum()),
    }


def phantom_gray_levels(phantom_dir: str | Path, bin_width: float = 1) -> dict[int, int]:
    """How PyRadiomics' fixed-bin-width discretisation maps the phantom's ROI gray levels.

    Uses PyRadiomics' own ``binImage`` (edges at multiples of the width, starting at or below the
    ROI minimum). Returns ``{raw level: bin index}`` for the levels present in the ROI; with bin
    width 1 the phantom's levels map onto themselves.
    """
    from radiomics import imageoperations  # lazy: heavy import

    folder = Path(phantom_dir)
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / PHANTOM_IMAGE)))
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / PHANTOM_MASK))) == 1
    binned, _ = imageoperations.binImage(image, np.nonzero(mask), binWidth=bin_width)
    pairs = {(int(raw), int(b)) for raw, b in zip(image[mask], binned[mask], strict=True)}
    return dict(sorted(pairs))


def aggregation_mismatches(params: str | Path | Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Texture-aggregation settings of a parameter file that differ from the IBSI check's.

    Args:
        params: A native PyRadiomics parameter file (e.g. a ``config/radiomics`` preset) or mapping.

    Returns:
        ``{setting: (value in params, value in the check)}``; missing settings count as
        PyRadiomics' defaults (:data:`AGGREGATION_DEFAULTS`). Empty = the check covers the file's
        texture aggregation.
    """
    setting = load_params(params).get("setting") or {}
    out: dict[str, tuple[Any, Any]] = {}
    for key, default in AGGREGATION_DEFAULTS.items():
        value, checked = setting.get(key, default), IBSI_SETTINGS[key]
        if value != checked:
            out[key] = (value, checked)
    return out


def comparison_markdown(table: pd.DataFrame) -> str:
    """A comparison table as a Markdown table (for ``docs/ibsi1.md``)."""
    lines = [
        "| PyRadiomics feature | IBSI tag | value | reference ± tolerance | result |",
        "|---|---|---|---|---|",
    ]
    for row in table.itertuples(index=False):
        if pd.isna(row.passed):
            ref, result = "—", "no reference"
        else:
            ref = f"{row.reference:g} ± {row.tolerance:g}"
            result = "pass" if row.passed else "**deviation**"
        tag = f"`{row.ibsi_tag}`" if row.ibsi_tag else "—"
        lines.append(f"| `{row.feature}` | {tag} | {row.value:.6g} | {ref} | {result} |")
    return "\n".join(lines) + "\n"


# --- IBSI-1 image-processing configurations (CT phantom A-E) through the project's path -------


@dataclass(frozen=True)
class IbsiConfig:
    """One IBSI-1 configuration: image processing, discretisation and texture dimension."""

    name: str
    processing: Processing
    dimension: str  #: ``2D`` (in-plane texture: IBSI 2.5D tags) or ``3D``
    bin_width: float | None = None  #: fixed bin width (first bin at the range's lower bound)
    bin_count: int | None = None  #: fixed bin number
    description: str = ""

    def __post_init__(self) -> None:
        if (self.bin_width is None) == (self.bin_count is None):
            raise ValueError(f"config {self.name}: give exactly one of bin_width and bin_count")
        if self.dimension not in ("2D", "3D"):
            raise ValueError(f"config {self.name}: dimension must be 2D or 3D")

    @property
    def bin_lower_bound(self) -> float | None:
        """Lower edge of the first fixed-width bin: the re-segmentation range's lower bound
        (None: the ROI minimum)."""
        rng = self.processing.resegment_range
        return None if rng is None else float(rng[0])


#: IBSI-1's CT phantom configurations (IBSI manual, "Reference data sets", tables of
#: configurations A-E). All round interpolated intensities to integer HU and threshold the
#: linearly interpolated mask at 0.5; 2D configurations interpolate in-plane only.
CT_CONFIGS: dict[str, IbsiConfig] = {
    "A": IbsiConfig(
        "A",
        Processing(spacing=None, resegment_range=(-500, 400)),
        "2D",
        bin_width=25,
        description="2D, no interpolation, range [-500, 400] HU, bin width 25 HU",
    ),
    "B": IbsiConfig(
        "B",
        Processing(spacing=(2, 2, None), interpolation="linear", resegment_range=(-500, 400)),
        "2D",
        bin_count=32,
        description="2D, 2x2 mm in-plane, bilinear, range [-500, 400] HU, 32 bins",
    ),
    "C": IbsiConfig(
        "C",
        Processing(spacing=(2, 2, 2), interpolation="linear", resegment_range=(-1000, 400)),
        "3D",
        bin_width=25,
        description="3D, 2 mm isotropic, trilinear, range [-1000, 400] HU, bin width 25 HU",
    ),
    "D": IbsiConfig(
        "D",
        Processing(spacing=(2, 2, 2), interpolation="linear", outlier_sd=3),
        "3D",
        bin_count=32,
        description="3D, 2 mm isotropic, trilinear, outliers (mean +- 3 SD), 32 bins",
    ),
    "E": IbsiConfig(
        "E",
        Processing(
            spacing=(2, 2, 2),
            interpolation="cubic",
            resegment_range=(-1000, 400),
            outlier_sd=3,
        ),
        "3D",
        bin_count=32,
        description="3D, 2 mm isotropic, tricubic, range [-1000, 400] HU and mean +- 3 SD, 32 bins",
    ),
}

#: The digital phantom: no interpolation, rounding or re-segmentation; bin width 1 from the ROI
#: minimum (levels 1..6 map onto themselves).
PHANTOM_CONFIG = IbsiConfig(
    "phantom",
    Processing(spacing=None, round_intensities=False),
    "3D",
    bin_width=1,
    description="IBSI-1 digital phantom: no processing, bin width 1",
)

#: Texture classes; ``shape`` is always computed on the morphological mask, the rest on the
#: intensity mask.
TEXTURE_CLASSES = ("glcm", "glrlm", "glszm", "gldm", "ngtdm")


def config_runs(config: IbsiConfig) -> list[tuple[str, tuple[str, ...]]]:
    """PyRadiomics runs of a configuration: ``(aggregation, classes)``.

    3D: shape, first order and texture (``3D_avg``), GLCM/GLRLM merged (``3D_comb``). 2D: the
    texture aggregations PyRadiomics can express in-plane (IBSI ``2_5D``: matrices merged over
    slices); IBSI's per-slice ``2D`` features have no PyRadiomics equivalent.
    """
    if config.dimension == "3D":
        return [
            ("3D_avg", ("shape", "firstorder", *TEXTURE_CLASSES)),
            ("3D_comb", ("glcm", "glrlm")),
        ]
    return [
        ("3D_avg", ("shape", "firstorder")),
        ("2_5D_avg", TEXTURE_CLASSES),
        ("2_5D_comb", ("glcm", "glrlm")),
    ]


def config_params(config: IbsiConfig, aggregation: str, classes: Sequence[str]) -> dict[str, Any]:
    """Native PyRadiomics parameters of one run (no PyRadiomics-side preprocessing)."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; known: {sorted(AGGREGATIONS)}")
    feature_class: dict[str, list[str]] = {cls: [] for cls in classes}
    if "shape" in feature_class:
        shape = [k for k in (*IBSI_TAGS, *NO_IBSI_TAG) if k.startswith("shape_")]
        feature_class["shape"] = [k.removeprefix("shape_") for k in shape]
    setting = {**IBSI_SETTINGS, **AGGREGATIONS[aggregation][0]}
    setting.pop("binWidth")
    if config.bin_width is not None:
        setting["binWidth"] = config.bin_width
    else:
        setting["binCount"] = config.bin_count
    return {"imageType": {"Original": {}}, "featureClass": feature_class, "setting": setting}


def read_image_and_mask(image: str | Path, mask: str | Path) -> tuple[sitk.Image, sitk.Image]:
    """Read an IBSI image (Float32, as read) and its mask (non-zero = ROI, UInt8)."""
    for path in (image, mask):
        if not Path(path).is_file():
            raise InputError("file not found", file=path)
    img = sitk.Cast(sitk.ReadImage(str(image)), sitk.sitkFloat32)
    msk = sitk.Cast(sitk.NotEqual(sitk.ReadImage(str(mask)), 0), sitk.sitkUInt8)
    msk.CopyInformation(img)
    return img, msk


def extract_config(
    image: sitk.Image,
    mask: sitk.Image,
    config: IbsiConfig,
    runs: Sequence[tuple[str, Sequence[str]]] | None = None,
) -> list[tuple[str, dict[str, float]]]:
    """Process ``image``/``mask`` as ``config`` says, then extract with PyRadiomics.

    The processing is :func:`hccrad.preprocess.ibsi.process` (IBSI grid, interpolation,
    rounding, mask threshold, re-segmentation); each run goes through
    :func:`hccrad.radiomics.extract_region_features` with IBSI's fixed-bin-width binning
    (:func:`hccrad.preprocess.ibsi.ibsi_binning`). Shape uses the morphological mask, every other
    class the intensity mask.

    Args:
        image: Image (intensities as acquired; CT in HU).
        mask: ROI mask on the image's grid.
        config: The configuration.
        runs: ``(aggregation, classes)`` pairs; default :func:`config_runs`.

    Returns:
        ``(aggregation, PyRadiomics features)`` per run.
    """
    processed = process(image, mask, config.processing)
    img, morph, intensity = (
        processed.image,
        processed.morphological_mask,
        processed.intensity_mask,
    )
    out: list[tuple[str, dict[str, float]]] = []
    for aggregation, classes in runs if runs is not None else config_runs(config):
        features: dict[str, float] = {}
        if "shape" in classes:
            params = config_params(config, aggregation, ["shape"])
            shape, _ = extract_region_features(img, morph, params)
            features.update(shape)
        rest = [c for c in classes if c != "shape"]
        if rest:
            params = config_params(config, aggregation, rest)
            with ibsi_binning(config.bin_lower_bound):
                other, _ = extract_region_features(img, intensity, params)
            features.update(other)
        out.append((aggregation, features))
    return out


def ibsi_values(runs: Sequence[tuple[str, Mapping[str, float]]]) -> dict[str, float]:
    """IBSI tag -> value of extraction runs, in IBSI's conventions (:data:`CONVERSIONS` applied:
    ``stat_kurt`` is the excess kurtosis). Features without an IBSI tag are left out."""
    values: dict[str, float] = {}
    conversions = {c.source: c for c in CONVERSIONS}
    for aggregation, features in runs:
        for name, value in features.items():
            key = feature_key(name)
            tag = ibsi_tag(key, aggregation)
            if tag is None:
                continue
            conv = conversions.get(key)
            values[tag] = conv.func(float(value)) if conv else float(value)
    return values


def write_values(values: Mapping[str, float], out: str | Path) -> Path:
    """Write ``tag``/``value`` rows (TSV, full precision)."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"tag": list(values), "value": [float(v) for v in values.values()]})
    frame.to_csv(path, sep="\t", index=False, float_format="%.10g")
    return path


#: The CT phantom's reference values shipped with the tests (see its README).
CT_REFERENCE_CSV = (
    Path(__file__).resolve().parents[3] / "tests" / "data" / "ibsi1_ct_phantom" / REFERENCE_CSV
)


def read_ct_reference(reference_csv: str | Path, config: str) -> pd.DataFrame:
    """IBSI reference values of one CT configuration: ``config;tag;reference value;tolerance;
    consensus`` -> frame indexed by tag (``reference``, ``tolerance``, ``consensus``)."""
    path = Path(reference_csv)
    if not path.is_file():
        raise InputError("IBSI CT reference values not found", file=path)
    ref = pd.read_csv(path, sep=";")
    expected = ["config", "tag", "reference value", "tolerance", "consensus"]
    if list(ref.columns) != expected:
        raise InputError(f"expected columns {expected}, got {list(ref.columns)}", file=path)
    ref = ref[ref["config"] == config]
    if ref.empty:
        raise InputError(f"no reference values for configuration {config!r}", file=path)
    if ref["tag"].duplicated().any():
        raise InputError(f"duplicate IBSI tags for configuration {config!r}", file=path)
    ref = ref.rename(columns={"reference value": "reference"}).set_index("tag")
    return ref[["reference", "tolerance", "consensus"]].astype(
        {"reference": "float64", "tolerance": "float64"}
    )


def compare_runs(
    runs: Sequence[tuple[str, Mapping[str, float]]], reference: pd.DataFrame
) -> pd.DataFrame:
    """:func:`ibsi_compare` of every run against one reference, concatenated.

    Mapped tags the reference lacks (IBSI gives no value for this configuration) count as "no
    consensus value" (``passed`` missing), not as an error.
    """
    tags = {ibsi_tag(feature_key(n), agg) for agg, f in runs for n in f} - {None}
    missing = sorted(tags - set(reference.index))
    if missing:
        reference = pd.concat([reference, pd.DataFrame(index=pd.Index(missing, name="tag"))])
    tables = [ibsi_compare(f, reference, aggregation=agg) for agg, f in runs]
    table = pd.concat(tables, ignore_index=True)
    table["passed"] = table["passed"].astype("boolean")
    return table


def check_ct_config(
    image: str | Path, mask: str | Path, config: str, reference_csv: str | Path = CT_REFERENCE_CSV
) -> pd.DataFrame:
    """Run one CT phantom configuration and compare it with IBSI's reference values."""
    if config not in CT_CONFIGS:
        raise ValueError(f"unknown configuration {config!r}; known: {sorted(CT_CONFIGS)}")
    img, msk = read_image_and_mask(image, mask)
    runs = extract_config(img, msk, CT_CONFIGS[config])
    return compare_runs(runs, read_ct_reference(reference_csv, config))
