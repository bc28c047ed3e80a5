"""Scanners, contrast kinetics, rigid motion, bias fields, noise: rendering phases from a phantom.

Motion convention (also in ``docs/synthetic_cohort.md``): the anatomy is defined in a patient frame
(physical LPS mm, as SimpleITK uses them). A point ``x`` of the anatomy appears at the physical
position

    T_p(x) = R_p (x - c) + c + t_p

in phase ``p``'s image, with ``R_p = Rz(rz) @ Ry(ry) @ Rx(rx)`` (rotate about x first, then y, then
z; right-handed, angles in degrees in ``motion.tsv``), ``c = (cx, cy, cz)`` the rotation centre (the
FOV
centre, shared by all phases of a patient) and ``t_p = (tx, ty, tz)``. This is exactly SimpleITK's
``Euler3DTransform`` with ``SetComputeZYX(True)``, centre ``c``, angles ``(rx, ry, rz)`` in radians
and
translation ``t_p``. Every phase, the reference included, has its own motion.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from hccrad.synth.anatomy import (
    FOV_MM,
    LIVER_BIT,
    READER2_BIT,
    REPEAT_BIT,
    TISSUE_MASK,
    Phantom,
    Tissue,
)

PHASES: dict[str, tuple[str, ...]] = {"MR": ("AP", "PVP", "HBP", "DP"), "CT": ("AP", "PVP")}


@dataclass(frozen=True)
class Scanner:
    """Center- and modality-specific acquisition settings (the "scanner effect")."""

    vendor: str
    model: str
    pixel_mm: float  # nominal in-plane spacing
    thickness_mm: float  # slice thickness = spacing between slices
    field_strength: float | None  # tesla, MR only
    scale: float  # MR: signal units per unit of relative intensity; CT: 1
    noise: float  # MR: Rician sigma relative to ``scale``; CT: HU standard deviation
    institution: str


SCANNERS: dict[tuple[str, str], Scanner] = {
    ("A", "MR"): Scanner(
        "SIEMENS", "MAGNETOM Skyra", 0.80, 3.0, 3.0, 900.0, 0.030, "Riverside University Hospital"
    ),
    ("B", "MR"): Scanner(
        "GE MEDICAL SYSTEMS",
        "SIGNA HDxt",
        1.25,
        5.0,
        1.5,
        520.0,
        0.050,
        "Northfield General Hospital",
    ),
    ("C", "MR"): Scanner(
        "Philips", "Ingenia", 1.00, 4.0, 3.0, 1400.0, 0.038, "Lakeside Cancer Center"
    ),
    ("A", "CT"): Scanner(
        "SIEMENS",
        "SOMATOM Definition AS",
        0.70,
        2.5,
        None,
        1.0,
        9.0,
        "Riverside University Hospital",
    ),
    ("B", "CT"): Scanner(
        "GE MEDICAL SYSTEMS",
        "LightSpeed VCT",
        0.90,
        5.0,
        None,
        1.0,
        14.0,
        "Northfield General Hospital",
    ),
    ("C", "CT"): Scanner(
        "TOSHIBA", "Aquilion ONE", 0.75, 3.0, None, 1.0, 11.0, "Lakeside Cancer Center"
    ),
}

# Mean intensity per tissue and phase: MR in relative units (liver AP = 1), CT in HU.
_MR_LUT: dict[Tissue, tuple[float, float, float, float]] = {  # AP, PVP, HBP, DP
    Tissue.AIR: (0.02, 0.02, 0.02, 0.02),
    Tissue.FAT: (0.22, 0.24, 0.22, 0.24),
    Tissue.MUSCLE: (0.55, 0.65, 0.55, 0.62),
    Tissue.BONE: (0.45, 0.50, 0.45, 0.50),
    Tissue.KIDNEY: (2.2, 1.9, 1.4, 1.6),
    Tissue.BOWEL: (0.60, 0.75, 0.60, 0.70),
    Tissue.LUNG: (0.05, 0.05, 0.05, 0.05),
    Tissue.GALLBLADDER: (0.25, 0.25, 0.30, 0.25),
    Tissue.AORTA: (3.2, 1.9, 0.9, 1.4),
    Tissue.IVC: (0.9, 2.0, 0.9, 1.5),
    Tissue.LIVER: (1.0, 1.35, 1.75, 1.30),
    Tissue.PORTAL: (1.6, 2.2, 0.95, 1.6),
    Tissue.HEPATIC: (0.8, 1.9, 0.9, 1.5),
    Tissue.CAPSULE: (0.9, 1.6, 1.1, 1.6),
    Tissue.SATELLITE: (1.55, 1.1, 0.85, 1.0),
    Tissue.VIABLE: (1.55, 1.05, 0.80, 0.98),
    Tissue.INTERMEDIATE: (1.05, 1.05, 0.75, 1.02),
    Tissue.NECROTIC: (0.45, 0.47, 0.45, 0.48),
}
_CT_LUT: dict[Tissue, tuple[float, float]] = {  # AP, PVP
    Tissue.AIR: (-1000.0, -1000.0),
    Tissue.FAT: (-100.0, -95.0),
    Tissue.MUSCLE: (50.0, 62.0),
    Tissue.BONE: (380.0, 390.0),
    Tissue.KIDNEY: (190.0, 170.0),
    Tissue.BOWEL: (35.0, 55.0),
    Tissue.LUNG: (-850.0, -850.0),
    Tissue.GALLBLADDER: (8.0, 10.0),
    Tissue.AORTA: (320.0, 170.0),
    Tissue.IVC: (90.0, 150.0),
    Tissue.LIVER: (62.0, 105.0),
    Tissue.PORTAL: (120.0, 185.0),
    Tissue.HEPATIC: (60.0, 160.0),
    Tissue.CAPSULE: (55.0, 118.0),
    Tissue.SATELLITE: (110.0, 82.0),
    Tissue.VIABLE: (110.0, 82.0),
    Tissue.INTERMEDIATE: (72.0, 80.0),
    Tissue.NECROTIC: (22.0, 24.0),
}
#: CT intensities are modulated multiplicatively on ``HU + CT_OFFSET`` (fat ~ -100 HU stays flat).
CT_OFFSET = 100.0
#: Effect sizes of relative enhancement terms are multiplied by this for CT (iodine vs gadolinium).
CT_GAIN = 0.55


def lut(modality: str, phase: str) -> np.ndarray:
    """Mean intensity per tissue code (index = :class:`Tissue` value) for a modality and phase."""
    phases = PHASES[modality]
    k = phases.index(phase)
    table = _MR_LUT if modality == "MR" else _CT_LUT
    out = np.zeros(max(Tissue) + 1, np.float32)
    for t, vals in table.items():
        out[int(t)] = vals[k]
    return out


# ----------------------------------------------------------------------------------------------
# motion
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Motion:
    """True rigid motion of one phase (degrees, mm); see the module docstring for the convention."""

    rx_deg: float
    ry_deg: float
    rz_deg: float
    tx_mm: float
    ty_mm: float
    tz_mm: float
    cx_mm: float
    cy_mm: float
    cz_mm: float

    def transform(self) -> sitk.Euler3DTransform:
        """``T_p``: patient-frame point -> physical point in this phase's image."""
        t = sitk.Euler3DTransform()
        t.SetComputeZYX(True)
        t.SetCenter((self.cx_mm, self.cy_mm, self.cz_mm))
        t.SetRotation(
            math.radians(self.rx_deg), math.radians(self.ry_deg), math.radians(self.rz_deg)
        )
        t.SetTranslation((self.tx_mm, self.ty_mm, self.tz_mm))
        return t

    def matrix(self) -> np.ndarray:
        """Rotation matrix ``R_p = Rz @ Ry @ Rx``."""
        return np.array(self.transform().GetMatrix()).reshape(3, 3)

    def as_row(self) -> dict[str, float]:
        """The ``motion.tsv`` columns (without patient/phase)."""
        return {k: getattr(self, k) for k in MOTION_COLUMNS}


MOTION_COLUMNS: tuple[str, ...] = (
    "rx_deg",
    "ry_deg",
    "rz_deg",
    "tx_mm",
    "ty_mm",
    "tz_mm",
    "cx_mm",
    "cy_mm",
    "cz_mm",
)


def sample_motion(rng: np.random.Generator, center: np.ndarray) -> Motion:
    """Small random rigid motion: angles ~ N(0, 1.2 deg) clipped to +-3, shifts ~ N(0, 2 mm) clipped
    to +-5, rounded to 1e-3 so ``motion.tsv`` holds the exact values used."""
    ang = np.clip(rng.normal(0.0, 1.2, 3), -3.0, 3.0)
    tr = np.clip(rng.normal(0.0, 2.0, 3), -5.0, 5.0)
    vals = [round(float(v), 3) for v in (*ang, *tr)]
    return Motion(*vals, *(round(float(v), 2) for v in center))


def _get(row: Mapping[str, Any] | Motion, key: str) -> float:
    return float(getattr(row, key)) if isinstance(row, Motion) else float(row[key])


def true_relative_transform(
    motion_rows: Iterable[Mapping[str, Any]] | Mapping[str, Motion],
    phase: str,
    reference_phase: str,
) -> sitk.Euler3DTransform:
    """The rigid transform that registering moving=``phase`` onto fixed=``reference_phase`` finds.

    It maps a physical point ``y`` of the reference phase image to the corresponding physical point
    of
    ``phase``'s image (SimpleITK's fixed -> moving convention, usable directly in
    ``sitk.Resample(moving, fixed, transform)``):

        y_p = T_p(T_ref^-1(y)) = R (y - c) + c + t_p - R t_ref,   R = R_p R_ref^T

    (both phases share the rotation centre ``c``).

    Args:
        motion_rows: the rows of ``motion.tsv`` for ONE patient (mappings with ``phase`` and the
            motion columns, e.g. ``df[df.patient == p].to_dict("records")``), or a mapping
            phase -> :class:`Motion` (``SynthPatient.motion``).
        phase: the moving phase.
        reference_phase: the fixed (reference) phase.

    Returns:
        A ``SimpleITK.Euler3DTransform`` (ZYX convention) centred at ``c``.
    """
    if isinstance(motion_rows, Mapping):
        table: dict[str, Any] = dict(motion_rows)
    else:
        table = {str(r["phase"]): r for r in motion_rows}
    for p in (phase, reference_phase):
        if p not in table:
            raise KeyError(f"no motion row for phase {p!r} (have {sorted(table)})")
    mp, mr = table[phase], table[reference_phase]

    def mat(row: Mapping[str, Any] | Motion) -> np.ndarray:
        t = sitk.Euler3DTransform()
        t.SetComputeZYX(True)
        t.SetRotation(*(math.radians(_get(row, k)) for k in ("rx_deg", "ry_deg", "rz_deg")))
        return np.array(t.GetMatrix()).reshape(3, 3)

    Rp, Rr = mat(mp), mat(mr)
    c = np.array([_get(mp, k) for k in ("cx_mm", "cy_mm", "cz_mm")])
    c_ref = np.array([_get(mr, k) for k in ("cx_mm", "cy_mm", "cz_mm")])
    if not np.allclose(c, c_ref):
        raise ValueError("phases of one patient must share the rotation centre")
    tp = np.array([_get(mp, k) for k in ("tx_mm", "ty_mm", "tz_mm")])
    tr = np.array([_get(mr, k) for k in ("tx_mm", "ty_mm", "tz_mm")])
    R = Rp @ Rr.T
    out = sitk.Euler3DTransform()
    out.SetComputeZYX(True)
    out.SetCenter(tuple(float(v) for v in c))
    out.SetMatrix(tuple(float(v) for v in R.ravel()))
    out.SetTranslation(tuple(float(v) for v in tp - R @ tr))
    return out


# ----------------------------------------------------------------------------------------------
# acquisition geometry
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Acquisition:
    """Per-patient acquisition: grid geometry (shared by all phases) and intensity settings."""

    spacing: tuple[float, float, float]  # x, y, z (mm), values that survive DICOM DS strings
    size: tuple[int, int, int]  # x, y, z
    origin: tuple[float, float, float]
    scale: float  # MR signal scale (1 for CT)
    noise: float
    bias_amplitude: float  # MR only, 0 for CT
    phase_gain: tuple[float, ...]  # per-phase receiver gain (MR) / 1
    liver_enhancement: tuple[float, ...]  # per-phase contrast-timing factor on liver/vessels


def sample_acquisition(
    rng: np.random.Generator, scanner: Scanner, modality: str, center: np.ndarray
) -> Acquisition:
    """Draw the grid (in-plane spacing jittered +-5 % around the scanner's) and intensities."""
    pix = round(scanner.pixel_mm * rng.uniform(0.95, 1.05), 4)
    dz = scanner.thickness_mm
    size = tuple(math.ceil(FOV_MM[i] / s) for i, s in enumerate((pix, pix, dz)))
    origin = tuple(
        round(float(center[i] - (size[i] - 1) * s / 2.0), 2) for i, s in enumerate((pix, pix, dz))
    )
    n = len(PHASES[modality])
    scale = scanner.scale * float(np.exp(rng.normal(0.0, 0.12))) if modality == "MR" else 1.0
    noise = scanner.noise * rng.uniform(0.85, 1.15)
    bias_amp = float(rng.uniform(0.20, 0.30)) if modality == "MR" else 0.0
    gain = tuple(float(v) for v in rng.uniform(0.95, 1.05, n)) if modality == "MR" else (1.0,) * n
    enh = tuple(float(v) for v in rng.uniform(0.93, 1.07, n))
    return Acquisition((pix, pix, dz), size, origin, scale, noise, bias_amp, gain, enh)  # type: ignore[arg-type]  # 3-tuples


def reference_image(acq: Acquisition, pixel_type: int = sitk.sitkFloat32) -> sitk.Image:
    """An empty image with the acquisition's geometry (identity direction)."""
    img = sitk.Image(list(acq.size), pixel_type)
    img.SetSpacing(acq.spacing)
    img.SetOrigin(acq.origin)
    return img


def bias_field(rng: np.random.Generator, acq: Acquisition) -> np.ndarray:
    """Smooth multiplicative field ``1 + A g / max|g|`` over the image grid, ``[z, y, x]`` float32.

    ``g`` is a random combination of the 9 non-constant monomials of degree <= 2 in normalized image
    coordinates (``[-1, 1]`` across the FOV), so ``max |field - 1| = A`` (the bias amplitude,
    0.20-0.30).
    """
    nx, ny, nz = acq.size
    x = np.linspace(-1, 1, nx, dtype=np.float32)[None, None, :]
    y = np.linspace(-1, 1, ny, dtype=np.float32)[None, :, None]
    z = np.linspace(-1, 1, nz, dtype=np.float32)[:, None, None]
    terms = [x, y, z, x * y, x * z, y * z, x * x - 1 / 3, y * y - 1 / 3, z * z - 1 / 3]
    coef = rng.normal(0.0, 1.0, len(terms)) * np.array([1, 1, 1, 0.6, 0.6, 0.6, 0.5, 0.5, 0.5])
    g = np.zeros((nz, ny, nx), np.float32)
    for cf, t in zip(coef, terms, strict=True):
        g += np.float32(cf) * t
    g /= max(float(np.abs(g).max()), 1e-6)
    return (1.0 + acq.bias_amplitude * g).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------------------------


def _modulate(img: np.ndarray, sel: np.ndarray, factor: np.ndarray | float, offset: float) -> None:
    """``img[sel] = (img[sel] + offset) * factor - offset`` (multiplicative on the offset scale)."""
    if isinstance(factor, np.ndarray):
        img[sel] = (img[sel] + offset) * factor - offset
    else:
        img[sel] = (img[sel] + offset) * np.float32(factor) - offset


def render_intensity(
    ph: Phantom,
    hidden: Mapping[str, float],
    modality: str,
    phase: str,
    enhancement: float,
    cirrhosis: bool,
) -> np.ndarray:
    """Noise-free intensity of one phase on the patient-frame grid (MR relative units / CT HU).

    Kinetics (``k = 1`` MR, ``k = CT_GAIN`` CT; factors act on ``I + offset``, offset 0 MR, 100
    CT):
    viable tumor = liver x (1 + k v_eff) in AP, x (1 - k w) in PVP, x (1 - k (w + 0.05)) in DP,
    x 0.45 in HBP; ``v_eff = v ((1 - r) + 2.2 r exp(-depth / 2.5 mm))`` (rim enhancement ``r`` for
    the proliferative latent); necrosis non-enhancing; capsule enhancing in PVP/DP; peritumoral
    liver x (1 + k e P) in AP, x (1 + 0.25 k e P) in PVP/DP, x (1 - 0.5 e P) in HBP (``P`` the
    peritumoral weight, ``e`` the MVI-driven amplitude). Textures: viable habitat
    x (1 + h_v n_fine), intermediate x (1 + 0.06 n_coarse), necrosis x (1 + 0.03 n_coarse), liver
    x (1 + h_l n_coarse), h_l = 0.06 with cirrhosis else 0.025.
    """
    offset = CT_OFFSET if modality == "CT" else 0.0
    k = CT_GAIN if modality == "CT" else 1.0
    table = lut(modality, phase)
    liver_v = float(table[Tissue.LIVER])
    # contrast-timing variability on enhancing blood pool and parenchyma
    for t in (Tissue.LIVER, Tissue.PORTAL, Tissue.HEPATIC, Tissue.AORTA, Tissue.IVC):
        table[t] = (table[t] + offset) * enhancement - offset
    liver_v = (liver_v + offset) * enhancement - offset
    img = table[ph.tissue]
    tis = ph.tissue
    lv = liver_v + offset

    # tumor kinetics relative to the (patient-specific) liver value
    viable = tis == Tissue.VIABLE
    sat = tis == Tissue.SATELLITE
    w = hidden["washout"]
    v = hidden["arterial_vascularity"]
    if phase == "AP":
        r = hidden["rim_enhancement"]
        v_eff = v * ((1 - r) + 2.2 * r * np.exp(-ph.depth[viable] / 2.5))
        img[viable] = lv * (1 + k * v_eff) - offset
        img[sat] = lv * (1 + k * v) - offset
    elif phase in ("PVP", "DP"):
        wash = w + (0.05 if phase == "DP" else 0.0)
        img[viable] = lv * (1 - k * wash) - offset
        img[sat] = lv * (1 - k * wash) - offset
    else:  # HBP
        img[viable] = lv * 0.45 - offset
        img[sat] = lv * 0.48 - offset

    # textures
    _modulate(img, viable, 1 + hidden["viable_heterogeneity"] * ph.texture_viable[viable], offset)
    inter = tis == Tissue.INTERMEDIATE
    _modulate(img, inter, 1 + 0.06 * ph.texture_coarse[inter], offset)
    nec = tis == Tissue.NECROTIC
    _modulate(img, nec, 1 + 0.03 * ph.texture_coarse[nec], offset)
    liv = tis == Tissue.LIVER
    h_l = 0.06 if cirrhosis else 0.025
    _modulate(img, liv, 1 + h_l * ph.texture_coarse[liv], offset)

    # peritumoral arterial enhancement (MVI) / hepatobiliary hypointensity
    pe = hidden["peritumoral_enhancement"]
    ring = ph.peritumoral > 0
    P = ph.peritumoral[ring]
    if phase == "AP":
        _modulate(img, ring, 1 + k * pe * P, offset)
    elif phase in ("PVP", "DP"):
        _modulate(img, ring, 1 + 0.25 * k * pe * P, offset)
    else:
        _modulate(img, ring, 1 - 0.5 * pe * P, offset)
    return img


def _to_sitk(arr: np.ndarray, origin: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetOrigin(tuple(float(v) for v in origin))
    img.SetSpacing((1.0, 1.0, 1.0))
    return img


def resample_to_phase(
    arr: np.ndarray,
    ph: Phantom,
    acq: Acquisition,
    motion: Motion,
    label: bool,
    default: float = 0.0,
) -> sitk.Image:
    """Resample a patient-frame array into a phase's image grid through the phase's motion.

    The output voxel at physical ``y`` takes the anatomy at ``T_p^-1(y)`` (nearest neighbour for
    label maps, linear for intensities).
    """
    src = _to_sitk(arr, ph.origin)
    ref = reference_image(acq, sitk.sitkUInt8 if label else sitk.sitkFloat32)
    interp = sitk.sitkNearestNeighbor if label else sitk.sitkLinear
    out_type = sitk.sitkUInt8 if label else sitk.sitkFloat32
    return sitk.Resample(src, ref, motion.transform().GetInverse(), interp, default, out_type)


def slice_profile_blur(img: np.ndarray, acq: Acquisition) -> np.ndarray:
    """Approximate the scanner's slice profile / in-plane PSF on the 1 mm grid (Gaussian,
    FWHM ~ slice thickness along z and ~ pixel size in-plane)."""
    sx, sy, sz = acq.spacing
    sig = (0.42 * sz, 0.42 * sy, 0.42 * sx)
    return ndimage.gaussian_filter(img, sig, truncate=2.5).astype(np.float32)


def decode_masks(packed: sitk.Image) -> dict[str, sitk.Image]:
    """Tumor / liver / reader-2 / reader-1 repeat masks (uint8 0/1, same geometry) from a
    resampled packed map."""
    a = sitk.GetArrayViewFromImage(packed)
    tissue = a & TISSUE_MASK
    tumor = np.isin(tissue, [Tissue.VIABLE, Tissue.INTERMEDIATE, Tissue.NECROTIC])
    out = {
        "tumor": tumor.astype(np.uint8),
        "liver": ((a & LIVER_BIT) > 0).astype(np.uint8),
        "tumor_reader2": ((a & READER2_BIT) > 0).astype(np.uint8),
        "tumor_reader1_repeat": ((a & REPEAT_BIT) > 0).astype(np.uint8),
    }
    res = {}
    for k, v in out.items():
        img = sitk.GetImageFromArray(v)
        img.CopyInformation(packed)
        res[k] = img
    return res

