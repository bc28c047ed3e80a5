"""Anatomy of one synthetic patient on a 1 mm isotropic grid in the patient frame.

The phantom is a label map of tissues (:class:`Tissue`) plus a few continuous fields (texture,
tumor depth, peritumoral weight) from which every phase image is rendered. Coordinates are physical
LPS millimetres as SimpleITK uses them (x to the patient's left, y posterior, z superior); arrays
are
indexed ``[z, y, x]`` as ``SimpleITK.GetArrayFromImage`` returns them.

Scale choice: the field of view is a cropped box of about 100 x 90 x 70 mm around a *miniature*
liver (about 88 x 62 x 58 mm, roughly 45 % of an adult liver's linear size) so that each image holds
about 0.6 M voxels at 1 mm and the downstream workflow stays fast. Tumors keep realistic absolute
sizes (index lesion 12-38 mm) so texture, habitat and peritumoral features are computed on realistic
numbers of voxels; relative to the miniature liver they therefore look large.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from scipy import ndimage

from hccrad.synth.biology import Biology


class Tissue(IntEnum):
    """Tissue codes of the phantom label map."""

    AIR = 0
    FAT = 1
    MUSCLE = 2
    BONE = 3
    KIDNEY = 4
    BOWEL = 5
    LUNG = 6
    GALLBLADDER = 7
    AORTA = 8
    IVC = 9
    LIVER = 10
    PORTAL = 11
    HEPATIC = 12
    CAPSULE = 13
    SATELLITE = 14
    VIABLE = 15
    INTERMEDIATE = 16
    NECROTIC = 17


class Habitat(IntEnum):
    """Codes of the habitat label map returned with each patient."""

    NONE = 0
    VIABLE = 1
    INTERMEDIATE = 2
    NECROTIC = 3
    CAPSULE = 4
    SATELLITE = 5
    PERITUMORAL = 6


#: Bits of the packed label map that is resampled (nearest neighbour) into each phase: the tissue
#: code (< 32) in the low five bits, then reader 1's repeat outline, the liver and reader 2.
REPEAT_BIT = 32
LIVER_BIT = 64
READER2_BIT = 128
TISSUE_MASK = 31

FOV_MM: tuple[float, float, float] = (100.0, 90.0, 70.0)  # x, y, z
MARGIN_MM = 10.0  # anatomy beyond the FOV so rigid motion never samples outside the phantom


@dataclass
class Phantom:
    """The anatomy of one patient in the patient frame.

    Attributes:
        center: physical position (x, y, z) of the FOV centre = rotation centre of the motion model.
        origin: physical position of voxel ``[0, 0, 0]``; spacing is 1 mm, direction identity.
        tissue: uint8 ``[z, y, x]`` tissue codes (:class:`Tissue`).
        liver: bool, the liver envelope including tumors, capsule, satellites and intrahepatic
            vessels.
        tumor: bool, all tumors (reader-1 truth; satellites and capsule excluded).
        index_tumor: bool, the index (largest) lesion.
        reader2: bool, the second reader's tumor delineation (perturbed boundary).
        reader1_repeat: bool, reader 1's second delineation of the same tumors, drawn later (a
            smaller perturbation than reader 2's).
        habitat: uint8 :class:`Habitat` codes.
        depth: float32 distance (mm) from the tumor boundary inside tumors, 0 elsewhere.
        peritumoral: float32 weight (0..1) of the peritumoral arterial enhancement.
        texture_viable: float32 unit-variance fine texture (correlation ~1 mm) used in viable tumor.
        texture_coarse: float32 unit-variance coarse texture used in liver and intermediate habitat.
        tumor_centers: list of tumor centres (physical, mm), index lesion first.
        n_satellites: number of satellite nodules actually placed.
    """

    center: np.ndarray
    origin: np.ndarray
    tissue: np.ndarray
    liver: np.ndarray
    tumor: np.ndarray
    index_tumor: np.ndarray
    reader2: np.ndarray
    habitat: np.ndarray
    depth: np.ndarray
    peritumoral: np.ndarray
    texture_viable: np.ndarray
    texture_coarse: np.ndarray
    tumor_centers: list[np.ndarray]
    n_satellites: int
    reader1_repeat: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(nz, ny, nx)``."""
        return self.tissue.shape  # type: ignore[return-value]  # numpy types shape loosely

    def packed_labels(self) -> np.ndarray:
        """Tissue code | REPEAT_BIT | LIVER_BIT | READER2_BIT, uint8, for one nearest-neighbour
        resampling."""
        out = self.tissue.copy()
        if self.reader1_repeat is not None:
            out[self.reader1_repeat] |= REPEAT_BIT
        out[self.liver] |= LIVER_BIT
        out[self.reader2] |= READER2_BIT
        return out


# ----------------------------------------------------------------------------------------------
# smooth random fields
# ----------------------------------------------------------------------------------------------


def _kernel_matrix(n_out: int, step: float, sigma: float) -> tuple[np.ndarray, int]:
    """Gaussian interpolation weights from a coarse lattice (``step`` fine voxels apart)."""
    pad = math.ceil(2 * sigma)
    n_in = math.ceil((n_out - 1) / step) + 2 * pad + 1
    pos = np.arange(n_out) / step + pad
    W = np.exp(-0.5 * ((pos[:, None] - np.arange(n_in)[None, :]) / sigma) ** 2)
    return W.astype(np.float32), n_in


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int, int], corr_mm: float
) -> np.ndarray:
    """Zero-mean, unit-variance smooth Gaussian random field on a 1 mm grid.

    White noise on a lattice of spacing ``corr_mm`` is interpolated separably with a Gaussian kernel
    (sigma = 1 lattice step), giving a field with correlation length about ``corr_mm``. Cost is a
    few
    small matrix products, independent of the correlation length.
    """
    if corr_mm <= 3.0:  # fine fields: direct Gaussian filtering of white noise is cheaper
        g = rng.standard_normal(shape, dtype=np.float32)
        g = ndimage.gaussian_filter(g, 0.5 * corr_mm, truncate=3.0)
        g -= g.mean()
        g /= max(float(g.std()), 1e-6)
        return g
    step = corr_mm
    mats = [_kernel_matrix(n, step, 1.0) for n in shape]
    g = rng.standard_normal(tuple(m[1] for m in mats)).astype(np.float32)
    g = np.einsum("zyx,Xx->zyX", g, mats[2][0], optimize=True)
    g = np.einsum("zyX,Yy->zYX", g, mats[1][0], optimize=True)
    g = np.einsum("zYX,Zz->ZYX", g, mats[0][0], optimize=True)
    g -= g.mean()
    g /= max(float(g.std()), 1e-6)
    return np.ascontiguousarray(g, dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# shapes
# ----------------------------------------------------------------------------------------------


def _rot(axis: str, deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


class _Grid:
    """Local coordinates (mm, relative to the FOV centre) of a (sub)grid, broadcastable."""

    def __init__(self, lo: np.ndarray, shape: tuple[int, int, int]) -> None:
        self.lo = lo  # local coords of voxel [0,0,0] as (x, y, z)
        self.shape = shape
        nz, ny, nx = shape
        self.x = (lo[0] + np.arange(nx, dtype=np.float32))[None, None, :]
        self.y = (lo[1] + np.arange(ny, dtype=np.float32))[None, :, None]
        self.z = (lo[2] + np.arange(nz, dtype=np.float32))[:, None, None]

    def ellipsoid(self, m: np.ndarray, a: np.ndarray, R: np.ndarray | None = None) -> np.ndarray:
        """Approximate signed distance (mm) to an ellipsoid: ``(rho - 1) * min(a)``."""
        dx, dy, dz = self.x - m[0], self.y - m[1], self.z - m[2]
        if R is None:
            rho2 = (dx / a[0]) ** 2 + (dy / a[1]) ** 2 + (dz / a[2]) ** 2
        else:
            Rt = R.T.astype(np.float32)
            u = Rt[0, 0] * dx + Rt[0, 1] * dy + Rt[0, 2] * dz
            v = Rt[1, 0] * dx + Rt[1, 1] * dy + Rt[1, 2] * dz
            w = Rt[2, 0] * dx + Rt[2, 1] * dy + Rt[2, 2] * dz
            rho2 = (u / a[0]) ** 2 + (v / a[1]) ** 2 + (w / a[2]) ** 2
        return ((np.sqrt(rho2) - 1.0) * float(min(a))).astype(np.float32)

    def rho(self, m: np.ndarray, a: np.ndarray, R: np.ndarray) -> np.ndarray:
        """Normalized ellipsoidal radius ``|R^T (x - m) / a|``."""
        dx, dy, dz = self.x - m[0], self.y - m[1], self.z - m[2]
        Rt = R.T.astype(np.float32)
        u = Rt[0, 0] * dx + Rt[0, 1] * dy + Rt[0, 2] * dz
        v = Rt[1, 0] * dx + Rt[1, 1] * dy + Rt[1, 2] * dz
        w = Rt[2, 0] * dx + Rt[2, 1] * dy + Rt[2, 2] * dz
        return np.sqrt((u / a[0]) ** 2 + (v / a[1]) ** 2 + (w / a[2]) ** 2).astype(np.float32)


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (smooth union of two signed distances, blend width ``k`` mm)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return (b * (1 - h) + a * h - k * h * (1 - h)).astype(np.float32)


def _tube(
    grid: _Grid,
    out: np.ndarray,
    p0: np.ndarray,
    p1: np.ndarray,
    r0: float,
    r1: float,
    value: int,
    allowed: np.ndarray | None = None,
) -> None:
    """Paint a tapered tube (segment p0-p1, radii r0-r1) into ``out`` within its bounding box."""
    lo = np.floor(np.minimum(p0, p1) - max(r0, r1) - 1 - grid.lo).astype(int)
    hi = np.ceil(np.maximum(p0, p1) + max(r0, r1) + 2 - grid.lo).astype(int)
    nz, ny, nx = out.shape
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [nx, ny, nz])
    if np.any(hi <= lo):
        return
    sl = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    x = grid.x[:, :, lo[0] : hi[0]]
    y = grid.y[:, lo[1] : hi[1], :]
    z = grid.z[lo[2] : hi[2], :, :]
    d = (p1 - p0).astype(np.float32)
    L2 = float(d @ d) + 1e-6
    t = np.clip(((x - p0[0]) * d[0] + (y - p0[1]) * d[1] + (z - p0[2]) * d[2]) / L2, 0.0, 1.0)
    dist2 = (x - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 + (z - p0[2] - t * d[2]) ** 2
    r = r0 + (r1 - r0) * t
    inside = dist2 <= r * r
    if allowed is not None:
        inside &= allowed[sl]
    out[sl][inside] = value


# Template anatomy (local mm, relative to the FOV centre; LPS: +x left, +y posterior, +z superior).
_LOBES = {  # centre, semi-axes
    "right": ((-10.0, 5.0, -2.0), (32.0, 30.0, 25.0)),
    "dome": ((-6.0, 8.0, 8.0), (30.0, 27.0, 23.0)),
    "left": ((22.0, -12.0, 8.0), (24.0, 13.0, 11.0)),
    "caudate": ((9.0, 19.0, 2.0), (9.0, 8.0, 12.0)),
    "riedel": ((-28.0, 0.0, -20.0), (10.0, 14.0, 14.0)),
}
_GALLBLADDER = ((-3.0, -22.0, -17.0), (7.0, 13.0, 8.0))
_KIDNEY = ((-24.0, 37.0, -32.0), (14.0, 11.0, 24.0))
_PORTAL = [  # p0, p1, r0, r1
    ((14.0, 6.0, -45.0), (6.0, 2.0, -12.0), 3.4, 3.2),
    ((6.0, 2.0, -12.0), (-14.0, 5.0, -5.0), 2.8, 2.4),
    ((-14.0, 5.0, -5.0), (-27.0, -11.0, 6.0), 2.0, 1.2),
    ((-14.0, 5.0, -5.0), (-31.0, 17.0, -9.0), 2.0, 1.2),
    ((6.0, 2.0, -12.0), (19.0, -8.0, 1.0), 2.3, 1.8),
    ((19.0, -8.0, 1.0), (33.0, -15.0, 7.0), 1.6, 1.0),
]
_HEPATIC = [
    ((-33.0, 6.0, 13.0), (5.0, 22.0, 27.0), 1.2, 2.4),
    ((-6.0, -15.0, 10.0), (6.0, 20.0, 27.0), 1.1, 2.1),
    ((29.0, -9.0, 14.0), (10.0, 20.0, 27.0), 1.0, 1.9),
]
_IVC = ((8.0, 24.0, -48.0), (8.0, 24.0, 48.0), 6.0, 6.0)
_AORTA = ((31.0, 31.0, -48.0), (29.0, 30.0, 48.0), 5.5, 5.5)
_SPINE = ((27.0, 52.0), 14.0)  # axial centre, radius (cylinder along z)
_BODY = ((40.0, 4.0), (97.0, 57.0))  # axial ellipse centre, semi-axes


@dataclass(frozen=True)
class _Jitter:
    """Per-patient anatomical jitter of the template (scale, shift, lobe sizes, vessels, body)."""

    scale: float
    shift: np.ndarray
    lobe: np.ndarray
    has_riedel: bool
    vessel: np.ndarray
    body: np.ndarray

    def tp(self, p: tuple[float, float, float]) -> np.ndarray:
        """A template point, scaled and shifted (local mm, float32)."""
        return (np.array(p) * self.scale + self.shift).astype(np.float32)


def _draw_jitter(rng: np.random.Generator) -> _Jitter:
    """All jitter draws, made up front in a fixed order."""
    scale = rng.uniform(0.93, 1.04)
    shift = rng.uniform(-3.0, 3.0, 3)
    lobe_jit = rng.uniform(0.92, 1.08, (len(_LOBES), 3))
    has_riedel = rng.uniform() < 0.3
    vessel_jit = rng.uniform(-3.0, 3.0, (len(_PORTAL) + len(_HEPATIC), 3))
    body_jit = rng.uniform(0.95, 1.05, 2)
    return _Jitter(scale, shift, lobe_jit, has_riedel, vessel_jit, body_jit)


def _body(
    g: _Grid, shape: tuple[int, int, int], jit: _Jitter
) -> tuple[np.ndarray, np.ndarray]:
    """The tissue map with air, fat and the muscle wall, and the depth below the skin (mm)."""
    (bcx, bcy), (bax, bay) = _BODY
    rho_b = np.sqrt(
        ((g.x - bcx) / (bax * jit.body[0])) ** 2 + ((g.y - bcy) / (bay * jit.body[1])) ** 2
    )
    depth_skin = (1.0 - rho_b) * min(bax, bay)  # approx. mm below the skin (axial only)
    depth_skin = np.broadcast_to(depth_skin, shape)
    tissue = np.full(shape, Tissue.FAT, dtype=np.uint8)
    tissue[depth_skin < 0] = Tissue.AIR
    tissue[(depth_skin > 4.0) & (depth_skin < 10.0)] = Tissue.MUSCLE
    return tissue, depth_skin


def _liver_envelope(
    rng: np.random.Generator,
    g: _Grid,
    shape: tuple[int, int, int],
    jit: _Jitter,
    cirrhosis: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The liver envelope (smooth union of the lobes, noisy surface, carved by the gallbladder
    and the kidney) and the gallbladder's and kidney's signed distances."""
    scale = jit.scale
    f = None
    for j, (name, (m, a)) in enumerate(_LOBES.items()):
        if name == "riedel" and not jit.has_riedel:
            continue
        e = g.ellipsoid(jit.tp(m), np.array(a) * scale * jit.lobe[j])
        f = e if f is None else _smin(f, e, 7.0)
    assert f is not None
    f += 2.5 * smooth_noise(rng, shape, 12.0)
    if cirrhosis:
        f += 1.0 * smooth_noise(rng, shape, 3.0)  # surface nodularity
    else:
        f += 0.3 * smooth_noise(rng, shape, 3.0)
    gb = g.ellipsoid(jit.tp(_GALLBLADDER[0]), np.array(_GALLBLADDER[1]) * scale, _rot("x", 25.0))
    kid = g.ellipsoid(jit.tp(_KIDNEY[0]), np.array(_KIDNEY[1]) * scale, _rot("y", -15.0))
    f = np.maximum(f, 1.5 - gb)
    f = np.maximum(f, 2.5 - kid)
    return f < 0, gb, kid


def _diaphragm_and_lungs(
    g: _Grid, tissue: np.ndarray, depth_skin: np.ndarray, jit: _Jitter
) -> np.ndarray:
    """Paint the diaphragm and the lung bases above the dome; return the inside of the body."""
    m_d, a_d = _LOBES["dome"]
    md = jit.tp(m_d)
    ad = np.array(a_d) * jit.scale * jit.lobe[1]
    foot = 1.0 - ((g.x - md[0]) / (ad[0] + 6)) ** 2 - ((g.y - md[1]) / (ad[1] + 6)) ** 2
    z_top = md[2] + (ad[2] + 3) * np.sqrt(np.clip(foot, 0.0, None))
    above = (g.z - z_top) * (foot > 0)
    inside_body = depth_skin > 10.0
    tissue[inside_body & (foot > 0) & (above > 0) & (above <= 4.0)] = Tissue.MUSCLE
    tissue[inside_body & (foot > 0) & (above > 4.0)] = Tissue.LUNG
    return inside_body


def _abdomen(
    rng: np.random.Generator,
    g: _Grid,
    tissue: np.ndarray,
    inside_body: np.ndarray,
    kid: np.ndarray,
    jit: _Jitter,
) -> None:
    """Paint the bowel, the kidney, the spine and the aorta."""
    shape = tissue.shape
    scale, shift, tp = jit.scale, jit.shift, jit.tp
    bowel_n = smooth_noise(rng, shape, 8.0)
    soft = inside_body & (tissue == Tissue.FAT) & (g.z < -6.0) & (g.x > -10.0)
    tissue[soft & (bowel_n > 0.4)] = Tissue.BOWEL
    tissue[soft & (bowel_n > 1.7)] = Tissue.AIR  # bowel gas
    tissue[kid < 0] = Tissue.KIDNEY
    tissue[kid < -7.0] = Tissue.FAT  # renal sinus fat
    sc, sr = _SPINE
    spine = (g.x - (sc[0] * scale + shift[0])) ** 2 + (g.y - (sc[1] * scale + shift[1])) ** 2 <= (
        sr * scale
    ) ** 2
    tissue[np.broadcast_to(spine, shape)] = Tissue.BONE
    _tube(
        g, tissue, tp(_AORTA[0]), tp(_AORTA[1]), _AORTA[2] * scale, _AORTA[3] * scale, Tissue.AORTA
    )


def _liver_and_vessels(
    g: _Grid, tissue: np.ndarray, liver_env: np.ndarray, gb: np.ndarray, jit: _Jitter
) -> np.ndarray:
    """Paint the parenchyma, the portal and hepatic veins, the IVC and the gallbladder; return
    the liver envelope without the IVC and the gallbladder."""
    scale, tp, vessel_jit = jit.scale, jit.tp, jit.vessel
    tissue[liver_env] = Tissue.LIVER
    for k, (p0, p1, r0, r1) in enumerate(_PORTAL):
        a0, a1 = tp(p0), tp(p1) + vessel_jit[k]
        if k > 0:
            a0 = a0 + vessel_jit[k - 1] * (k in (2, 3, 5))
        allowed = None if k == 0 else liver_env
        _tube(g, tissue, a0, a1, r0 * scale, r1 * scale, Tissue.PORTAL, allowed)
    for k, (p0, p1, r0, r1) in enumerate(_HEPATIC):
        _tube(
            g,
            tissue,
            tp(p0) + vessel_jit[len(_PORTAL) + k],
            tp(p1),
            r0 * scale,
            r1 * scale,
            Tissue.HEPATIC,
            liver_env,
        )
    _tube(g, tissue, tp(_IVC[0]), tp(_IVC[1]), _IVC[2] * scale, _IVC[3] * scale, Tissue.IVC)
    tissue[gb < 0] = Tissue.GALLBLADDER
    liver_env &= (tissue != Tissue.IVC) & (tissue != Tissue.GALLBLADDER)
    return liver_env


_Tumor = tuple[np.ndarray, np.ndarray, np.ndarray]  # centre, semi-axes, rotation (local mm)


@dataclass
class _TumorBox:
    """The sub-box around the tumors (+ margin for capsule, peritumoral ring, satellites and
    reader 2) in which everything tumor-related is computed, then embedded in the full grid.

    Attributes:
        bb: the box's slices in the full grid.
        shape: the box's array shape.
        full_shape: the full grid's array shape.
        grid: the box's local coordinates.
        tissue: a view of the phantom's tissue map (painting it paints the phantom).
        liver: a view of the liver envelope.
    """

    bb: tuple[slice, slice, slice]
    shape: tuple[int, int, int]
    full_shape: tuple[int, int, int]
    grid: _Grid
    tissue: np.ndarray
    liver: np.ndarray

    def full(self, a_b: np.ndarray, fill: float = 0) -> np.ndarray:
        """``a_b`` embedded in a full-grid array filled with ``fill``."""
        out = np.full(self.full_shape, fill, a_b.dtype)
        out[self.bb] = a_b
        return out


def _tumor_box(
    g: _Grid, tissue: np.ndarray, liver_env: np.ndarray, tumors: list[_Tumor], rho_irreg: float
) -> _TumorBox:
    """The box around the planned tumors, their irregular margins and an 18 mm margin."""
    shape = g.shape
    lo_l = np.min([m - a.max() * (1 + 2 * rho_irreg) - 18.0 for (m, a, _) in tumors], axis=0)
    hi_l = np.max([m + a.max() * (1 + 2 * rho_irreg) + 18.0 for (m, a, _) in tumors], axis=0)
    i0 = np.clip(np.floor(lo_l - g.lo).astype(int), 0, None)
    i1 = np.minimum(np.ceil(hi_l - g.lo).astype(int) + 1, [shape[2], shape[1], shape[0]])
    bb = (slice(i0[2], i1[2]), slice(i0[1], i1[1]), slice(i0[0], i1[0]))
    bshape = (int(i1[2] - i0[2]), int(i1[1] - i0[1]), int(i1[0] - i0[0]))
    gt = _Grid((g.lo + i0).astype(np.float32), bshape)
    return _TumorBox(bb, bshape, shape, gt, tissue[bb], liver_env[bb])


def _draw_tumors(
    rng: np.random.Generator, box: _TumorBox, tumors: list[_Tumor], rho_irreg: float
) -> tuple[np.ndarray, np.ndarray]:
    """The irregular, budding tumors (all of them, and the index lesion), in the box."""
    bshape, gt = box.shape, box.grid
    tumor = np.zeros(bshape, bool)
    index_tumor = np.zeros(bshape, bool)
    n_fine = smooth_noise(rng, bshape, 2.0)
    n_lob = smooth_noise(rng, bshape, 6.0)
    forbidden = np.isin(
        box.tissue,
        [
            Tissue.AIR,
            Tissue.LUNG,
            Tissue.BONE,
            Tissue.KIDNEY,
            Tissue.MUSCLE,
            Tissue.GALLBLADDER,
            Tissue.IVC,
            Tissue.AORTA,
        ],
    )
    for j, (m, a, R) in enumerate(tumors):
        rho = gt.rho(m, a, R)
        thr = 1.0 + 0.5 * rho_irreg * n_lob + 0.5 * rho_irreg * n_fine
        t = rho < thr
        # budding: focal extranodular growth at the margin, more with irregularity
        n_bud = int(rng.poisson(12.0 * rho_irreg))
        for _ in range(n_bud):
            u = rng.standard_normal(3)
            u /= np.linalg.norm(u)
            r_dir = 1.0 / np.linalg.norm((R.T @ u) / a)
            rb = rng.uniform(0.15, 0.28) * float(min(a))
            pb = m + u * r_dir * 0.95
            t |= gt.ellipsoid(pb.astype(np.float32), np.array([rb, rb, rb])) < 0
        # keep tumors inside the body / off the organs and vessels outside the liver
        t &= ~forbidden
        # tumors never touch: stay >= 2 mm away from the ones already drawn
        if tumor.any():
            t &= ~ndimage.binary_dilation(tumor, iterations=2)
        # one connected lesion: keep the component holding most of the voxels
        lab_t, n_t = ndimage.label(t)
        if n_t > 1:
            sizes = np.bincount(lab_t.ravel())[1:]
            t = lab_t == (int(np.argmax(sizes)) + 1)
        if j == 0:
            index_tumor = t.copy()
        tumor |= t
    return tumor, index_tumor


def _habitats(
    rng: np.random.Generator,
    box: _TumorBox,
    tumor: np.ndarray,
    depth: np.ndarray,
    h: dict[str, float],
) -> np.ndarray:
    """Habitats inside each tumor (necrotic core, viable rim / nodules, intermediate between),
    painted into the tissue map too."""
    habitat = np.zeros(box.shape, np.uint8)
    n_hab = smooth_noise(rng, box.shape, 3.5)
    labels_t, n_lab = ndimage.label(tumor)
    for lab in range(1, n_lab + 1):
        sel = labels_t == lab
        dmax = max(float(depth[sel].max()), 1.0)
        score = depth[sel] / dmax + 0.35 * n_hab[sel]
        f_nec = float(np.clip(h["necrotic_fraction"] * rng.uniform(0.85, 1.15), 0.0, 0.7))
        f_via = float(h["viable_fraction"] * (1 - f_nec) / max(1 - h["necrotic_fraction"], 1e-3))
        q_nec = np.quantile(score, 1.0 - f_nec) if f_nec > 0 else np.inf
        q_via = np.quantile(score, f_via)
        hv = np.full(score.shape, Habitat.INTERMEDIATE, np.uint8)
        hv[score <= q_via] = Habitat.VIABLE
        hv[score >= q_nec] = Habitat.NECROTIC
        habitat[sel] = hv
    tissue_b = box.tissue
    tissue_b[habitat == Habitat.VIABLE] = Tissue.VIABLE
    tissue_b[habitat == Habitat.INTERMEDIATE] = Tissue.INTERMEDIATE
    tissue_b[habitat == Habitat.NECROTIC] = Tissue.NECROTIC
    return habitat


def _capsule(
    rng: np.random.Generator,
    box: _TumorBox,
    dout: np.ndarray,
    habitat: np.ndarray,
    coverage: float,
) -> None:
    """Paint the capsule: a 1.2-2 mm shell, interrupted (coverage falls with the MVI latent)."""
    cap_t = rng.uniform(1.2, 2.0)
    n_cap = smooth_noise(rng, box.shape, 8.0)
    shell = (dout > 0) & (dout <= cap_t) & box.liver
    if shell.any():
        q = np.quantile(n_cap[shell], 1.0 - coverage)
        cap = shell & (n_cap >= q)
        box.tissue[cap] = Tissue.CAPSULE
        habitat[cap] = Habitat.CAPSULE


def _peritumoral(
    rng: np.random.Generator, box: _TumorBox, dout: np.ndarray, habitat: np.ndarray
) -> np.ndarray:
    """The peritumoral zone (0-10 mm): patchy arterial-enhancement weight (its amplitude, set by
    the MVI latent, is applied when rendering); marked in the habitat map."""
    n_peri = smooth_noise(rng, box.shape, 5.0)
    ring = (dout > 0) & (dout <= 10.0) & box.liver & (habitat == 0)
    peri = np.zeros(box.shape, np.float32)
    patch = 0.5 * (1.0 + np.tanh(1.5 * n_peri + 0.5))
    peri[ring] = (np.exp(-dout[ring] / 3.5) * patch[ring]).astype(np.float32)
    habitat[ring] = Habitat.PERITUMORAL
    return peri


def _satellites(
    rng: np.random.Generator,
    box: _TumorBox,
    index: _Tumor,
    tumor: np.ndarray,
    habitat: np.ndarray,
    peri: np.ndarray,
    rate: float,
    rho_irreg: float,
) -> int:
    """Paint satellites near the index lesion's margin (2-8 mm outside), count ~ Poisson(rate);
    return how many were placed."""
    bshape, gt, liver_b = box.shape, box.grid, box.liver
    m0, a0, R0 = index
    n_sat_draw = int(rng.poisson(rate))
    n_sat = 0
    for _ in range(n_sat_draw):
        u = rng.standard_normal(3)
        u /= np.linalg.norm(u)
        gap = rng.uniform(2.5, 8.0)
        rs = rng.uniform(1.2, 2.4)
        r_dir = 1.0 / np.linalg.norm((R0.T @ u) / a0) * (1 + 0.5 * rho_irreg)
        ps = (m0 + u * (r_dir + gap + rs)).astype(np.float32)
        idx = np.round(ps - gt.lo).astype(int)[::-1]
        if np.any(idx < 0) or np.any(idx >= bshape) or not liver_b[tuple(idx)] or tumor[tuple(idx)]:
            continue
        s = (gt.ellipsoid(ps, np.array([rs, rs, rs])) < 0) & liver_b & ~tumor
        box.tissue[s] = Tissue.SATELLITE
        habitat[s] = Habitat.SATELLITE
        peri[s] = 0.0
        n_sat += 1
    return n_sat


def _reader2(
    rng: np.random.Generator, box: _TumorBox, dout: np.ndarray, depth: np.ndarray
) -> np.ndarray:
    """Reader 2: the boundary shifted by a patient offset plus smooth local jitter (1-2 voxels)."""
    delta = rng.uniform(-1.5, 1.5)
    n_r2 = smooth_noise(rng, box.shape, 5.0)
    signed = dout - depth  # > 0 outside, < 0 inside (approximately, 1 mm grid)
    return (signed < delta + 0.6 + 1.0 * n_r2) & (dout < 14.0)


#: Reader 1's repeat outline: half-width of the per-patient offset (mm) and amplitude of the
#: smooth jitter (mm), both below reader 2's (1.5 and 1.0): intra-observer variability is
#: smaller than inter-observer variability.
REPEAT_OFFSET_MM = 0.75
REPEAT_JITTER_MM = 0.9


def _reader1_repeat(
    rng: np.random.Generator, box: _TumorBox, dout: np.ndarray, depth: np.ndarray
) -> np.ndarray:
    """Reader 1's repeat: the true boundary (no systematic bias, unlike reader 2's +0.6 mm)
    shifted by a small patient offset plus smooth local jitter (about one voxel)."""
    delta = rng.uniform(-REPEAT_OFFSET_MM, REPEAT_OFFSET_MM)
    noise = smooth_noise(rng, box.shape, 5.0)
    signed = dout - depth  # > 0 outside, < 0 inside (approximately, 1 mm grid)
    return (signed < delta + REPEAT_JITTER_MM * noise) & (dout < 14.0)


def build_phantom(
    rng: np.random.Generator,
    bio: Biology,
    center: np.ndarray,
    rng_repeat: np.random.Generator | None = None,
) -> Phantom:
    """Build the anatomy of one patient.

    Args:
        rng: the patient's generator (continues the stream after :func:`sample_biology`).
        bio: the patient's biology (tumor sizes, fractions, irregularity, satellites, ...).
        center: physical FOV centre (x, y, z) in mm.
        rng_repeat: the generator of reader 1's repeat outline (a stream of its own, so that
            every other draw is the same with or without it); None: no repeat outline.

    Returns:
        The :class:`Phantom` on a 1 mm grid covering the FOV plus :data:`MARGIN_MM` on each side.
    """
    h = bio.hidden
    half = np.array(FOV_MM) / 2 + MARGIN_MM
    lo = -half
    shape = tuple(round(2 * half[i]) + 1 for i in (2, 1, 0))
    g = _Grid(lo.astype(np.float32), shape)  # type: ignore[arg-type]  # 3-tuple of ints
    # the random draws, in this order: jitter, organs, tumors, habitats, capsule, peritumoral
    # zone, satellites, reader 2, textures
    jit = _draw_jitter(rng)
    tissue, depth_skin = _body(g, g.shape, jit)
    liver_env, gb, kid = _liver_envelope(rng, g, g.shape, jit, bio.clinical["cirrhosis"])
    inside_body = _diaphragm_and_lungs(g, tissue, depth_skin, jit)
    _abdomen(rng, g, tissue, inside_body, kid, jit)
    liver_env = _liver_and_vessels(g, tissue, liver_env, gb, jit)

    tumors = _place_tumors(rng, bio, g, liver_env, jit.scale, jit.shift)
    rho_irreg = h["margin_irregularity"]
    box = _tumor_box(g, tissue, liver_env, tumors, rho_irreg)
    tumor, index_tumor = _draw_tumors(rng, box, tumors, rho_irreg)
    # distances inside / outside the tumors (within the sub-box)
    depth = ndimage.distance_transform_edt(tumor).astype(np.float32)
    dout = ndimage.distance_transform_edt(~tumor).astype(np.float32)
    habitat = _habitats(rng, box, tumor, depth, h)
    _capsule(rng, box, dout, habitat, h["capsule_coverage"])
    peri = _peritumoral(rng, box, dout, habitat)
    n_sat = _satellites(rng, box, tumors[0], tumor, habitat, peri, h["satellite_rate"], rho_irreg)
    reader2 = _reader2(rng, box, dout, depth)
    repeat = None if rng_repeat is None else _reader1_repeat(rng_repeat, box, dout, depth)

    full = box.full
    tex_v = full(smooth_noise(rng, box.shape, 1.0))
    tumor = full(tumor)
    return Phantom(
        center=center.astype(np.float64),
        origin=(center + lo).astype(np.float64),
        tissue=tissue,
        liver=liver_env | tumor,
        tumor=tumor,
        index_tumor=full(index_tumor),
        reader2=full(reader2),
        habitat=full(habitat),
        depth=full(depth),
        peritumoral=full(peri),
        texture_viable=tex_v,
        texture_coarse=smooth_noise(rng, g.shape, 3.0),
        tumor_centers=[center + m for (m, _, _) in tumors],
        n_satellites=n_sat,
        reader1_repeat=None if repeat is None else full(repeat),
    )


def _place_tumors(
    rng: np.random.Generator,
    bio: Biology,
    g: _Grid,
    liver_env: np.ndarray,
    scale: float,
    shift: np.ndarray,
) -> list[_Tumor]:
    """Centres, semi-axes and rotations of the tumors: inside the liver, not touching each other."""
    placed: list[_Tumor] = []
    # candidate lobes: right lobe / dome for all, left lobe for small lesions
    big = [_LOBES["right"], _LOBES["dome"]]
    for d in bio.tumor_diameters_mm:
        r_long = d / 2.0
        axes = np.array(
            [r_long, r_long * rng.uniform(0.78, 0.95), r_long * rng.uniform(0.75, 0.92)]
        )
        R = (
            _rot("z", rng.uniform(0, 360))
            @ _rot("y", rng.uniform(-30, 30))
            @ _rot("x", rng.uniform(-30, 30))
        )
        cands = rng.uniform(-1.0, 1.0, (60, 3))
        pick = rng.integers(0, 2, 60)
        best, best_clear, fallback = None, -np.inf, None
        for k in range(60):
            lobe = _LOBES["left"] if (r_long < 8 and pick[k] == 1) else big[pick[k]]
            m = np.array(lobe[0]) * scale + shift
            a = np.array(lobe[1]) * scale
            room = np.clip(1.0 - (r_long + 4.0) / a.min(), 0.05, 1.0)
            c = m + cands[k] * a * room / math.sqrt(3)
            idx = np.round(c - g.lo).astype(int)[::-1]
            if np.any(idx < 0) or np.any(idx >= np.array(g.shape)) or not liver_env[tuple(idx)]:
                continue
            clear = min(
                (np.linalg.norm(c - p[0]) - r_long - p[1].max() for p in placed), default=np.inf
            )
            if clear > 7.0:
                best = c
                break
            if clear > best_clear:
                best_clear, fallback = clear, c
        if best is None:  # keep the planned tumor count: take the candidate with most clearance
            best = (
                fallback if fallback is not None else np.array(_LOBES["right"][0]) * scale + shift
            )
        placed.append((best.astype(np.float32), axes.astype(np.float32), R))
    return placed
