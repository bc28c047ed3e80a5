"""Settings, discretisation, kernel geometry and the batched driver for voxel maps."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import product

import numpy as np
import SimpleITK as sitk

logger = logging.getLogger(__name__)

#: Feature names PyRadiomics enables by default (non-deprecated), per class, in PyRadiomics' order.
FEATURE_CLASSES: dict[str, tuple[str, ...]] = {
    "firstorder": (
        "10Percentile",
        "90Percentile",
        "Energy",
        "Entropy",
        "InterquartileRange",
        "Kurtosis",
        "Maximum",
        "Mean",
        "MeanAbsoluteDeviation",
        "Median",
        "Minimum",
        "Range",
        "RobustMeanAbsoluteDeviation",
        "RootMeanSquared",
        "Skewness",
        "TotalEnergy",
        "Uniformity",
        "Variance",
    ),
    "glcm": (
        "Autocorrelation",
        "ClusterProminence",
        "ClusterShade",
        "ClusterTendency",
        "Contrast",
        "Correlation",
        "DifferenceAverage",
        "DifferenceEntropy",
        "DifferenceVariance",
        "Id",
        "Idm",
        "Idmn",
        "Idn",
        "Imc1",
        "Imc2",
        "InverseVariance",
        "JointAverage",
        "JointEnergy",
        "JointEntropy",
        "MCC",
        "MaximumProbability",
        "SumAverage",
        "SumEntropy",
        "SumSquares",
    ),
    "glrlm": (
        "GrayLevelNonUniformity",
        "GrayLevelNonUniformityNormalized",
        "GrayLevelVariance",
        "HighGrayLevelRunEmphasis",
        "LongRunEmphasis",
        "LongRunHighGrayLevelEmphasis",
        "LongRunLowGrayLevelEmphasis",
        "LowGrayLevelRunEmphasis",
        "RunEntropy",
        "RunLengthNonUniformity",
        "RunLengthNonUniformityNormalized",
        "RunPercentage",
        "RunVariance",
        "ShortRunEmphasis",
        "ShortRunHighGrayLevelEmphasis",
        "ShortRunLowGrayLevelEmphasis",
    ),
    "glszm": (
        "GrayLevelNonUniformity",
        "GrayLevelNonUniformityNormalized",
        "GrayLevelVariance",
        "HighGrayLevelZoneEmphasis",
        "LargeAreaEmphasis",
        "LargeAreaHighGrayLevelEmphasis",
        "LargeAreaLowGrayLevelEmphasis",
        "LowGrayLevelZoneEmphasis",
        "SizeZoneNonUniformity",
        "SizeZoneNonUniformityNormalized",
        "SmallAreaEmphasis",
        "SmallAreaHighGrayLevelEmphasis",
        "SmallAreaLowGrayLevelEmphasis",
        "ZoneEntropy",
        "ZonePercentage",
        "ZoneVariance",
    ),
    "gldm": (
        "DependenceEntropy",
        "DependenceNonUniformity",
        "DependenceNonUniformityNormalized",
        "DependenceVariance",
        "GrayLevelNonUniformity",
        "GrayLevelVariance",
        "HighGrayLevelEmphasis",
        "LargeDependenceEmphasis",
        "LargeDependenceHighGrayLevelEmphasis",
        "LargeDependenceLowGrayLevelEmphasis",
        "LowGrayLevelEmphasis",
        "SmallDependenceEmphasis",
        "SmallDependenceHighGrayLevelEmphasis",
        "SmallDependenceLowGrayLevelEmphasis",
    ),
    "ngtdm": ("Busyness", "Coarseness", "Complexity", "Contrast", "Strength"),
}

#: Calculator class of each feature class, in module ``hccrad.voxelmaps.{class}``.
CALCULATORS: dict[str, str] = {
    "firstorder": "FirstOrder",
    "glcm": "GLCM",
    "glrlm": "GLRLM",
    "glszm": "GLSZM",
    "gldm": "GLDM",
    "ngtdm": "NGTDM",
}

#: Classes with a vectorised implementation so far.
IMPLEMENTED_CLASSES: tuple[str, ...] = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")


@dataclass(frozen=True)
class VoxelMapSettings:
    """Settings of a voxel-map computation (PyRadiomics names in brackets).

    Attributes:
        kernel_radius: Kernel radius r (``kernelRadius``); the kernel is the (2r+1)^3 cube.
        bin_width: Fixed bin width (``binWidth``), used when ``bin_count`` is None.
        bin_count: Fixed bin count (``binCount``); overrides ``bin_width`` when set.
        classes: Feature classes to compute.
        features: Optional per-class feature selection ``{class: (names...)}``; None or a missing
            class means PyRadiomics' default (all non-deprecated features).
        voxel_array_shift: Shift added before Energy/TotalEnergy/RootMeanSquared
            (``voxelArrayShift``).
        voxel_batch: Number of mask voxels processed at once (bounds peak memory).
        n_jobs: Worker processes computing batches in parallel (forked, each computes all
            classes for its batches; results are identical to one job). None = all CPUs this
            process may run on (``os.sched_getaffinity``); 1 = in this process. Peak memory
            grows with it (per worker: one batch's temporaries).
        n_threads: With one job, batches computed concurrently in threads (numpy releases the
            GIL in its heavy loops); 1 = sequential. Results equal up to summation order.
    """

    kernel_radius: int = 2
    bin_width: float = 25.0
    bin_count: int | None = None
    classes: tuple[str, ...] = IMPLEMENTED_CLASSES
    features: dict[str, tuple[str, ...]] | None = None
    voxel_array_shift: float = 0
    voxel_batch: int = 2000
    n_jobs: int | None = None
    n_threads: int = 1

    def selected(self, cls: str) -> tuple[str, ...]:
        """Return the features to compute for class ``cls``.

        Args:
            cls: Feature class name.

        Returns:
            Feature names (PyRadiomics spelling).

        Raises:
            ValueError: If a requested feature is unknown for the class.
        """
        names = FEATURE_CLASSES[cls]
        if self.features is None or cls not in self.features:
            return names
        unknown = set(self.features[cls]) - set(names)
        if unknown:
            raise ValueError(f"unknown {cls} features: {sorted(unknown)}")
        return tuple(self.features[cls])


def bin_edges(
    values: np.ndarray, bin_width: float = 25.0, bin_count: int | None = None
) -> np.ndarray:
    """Bin edges as PyRadiomics' ``imageoperations.getBinEdges`` computes them.

    Args:
        values: 1-D array of all gray values inside the ROI.
        bin_width: Fixed bin width.
        bin_count: Fixed bin count (takes precedence when not None).

    Returns:
        The bin edges (for ``np.digitize``).
    """
    if bin_count is not None:
        edges = np.histogram(values, bin_count)[1]
        edges[-1] += 1
        return edges
    minimum = values.min()
    maximum = values.max()
    low = minimum - (minimum % bin_width)
    edges = np.arange(low, maximum + 2 * bin_width, bin_width)
    if len(edges) == 1:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    return edges


def kernel_offsets(radius: int, bbox_size: np.ndarray) -> np.ndarray:
    """Kernel offsets in PyRadiomics' order (``generate_angles`` bi-directional, then the centre).

    Offsets along an axis are limited to ``|d| < bbox_size`` of the ROI on that axis, as PyRadiomics
    limits them to its bounding box.

    Args:
        radius: Kernel radius.
        bbox_size: ROI bounding-box size (z, y, x).

    Returns:
        Integer array (Nk, 3), the centre ``(0, 0, 0)`` last.
    """
    lim = [min(radius, int(s) - 1) for s in bbox_size]
    ranges = [range(m, -m - 1, -1) for m in lim]
    offs = [o for o in product(*ranges) if o != (0, 0, 0)]
    offs.append((0, 0, 0))
    return np.array(offs, dtype=np.int64)


#: The 13 unique GLCM directions at distance 1 (z, y, x), PyRadiomics' order.
GLCM_ANGLES = np.array(
    [
        (1, 1, 1),
        (1, 1, 0),
        (1, 1, -1),
        (1, 0, 1),
        (1, 0, 0),
        (1, 0, -1),
        (1, -1, 1),
        (1, -1, 0),
        (1, -1, -1),
        (0, 1, 1),
        (0, 1, 0),
        (0, 1, -1),
        (0, 0, 1),
    ],
    dtype=np.int64,
)


def box_count(ind: np.ndarray, lo: np.ndarray, hi: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """Number of true voxels of ``ind`` in the box ``[c + lo, c + hi]`` around each centre c.

    Args:
        ind: 3-D boolean image (padded so that every box lies inside it).
        lo: Lower box offset (z, y, x), inclusive.
        hi: Upper box offset (z, y, x), inclusive.
        flat: Flat indices of the centres in ``ind``.

    Returns:
        Integer counts per centre.
    """
    c = np.zeros(tuple(n + 1 for n in ind.shape), dtype=np.int64)
    c[1:, 1:, 1:] = ind.cumsum(0, dtype=np.int64).cumsum(1).cumsum(2)
    z, y, x = np.unravel_index(flat, ind.shape)
    z0, y0, x0 = z + lo[0], y + lo[1], x + lo[2]
    z1, y1, x1 = z + hi[0] + 1, y + hi[1] + 1, x + hi[2] + 1
    return (
        c[z1, y1, x1]
        - c[z0, y1, x1]
        - c[z1, y0, x1]
        - c[z1, y1, x0]
        + c[z0, y0, x1]
        + c[z0, y1, x0]
        + c[z1, y0, x0]
        - c[z0, y0, x0]
    )


@dataclass
class Prepared:
    """Arrays shared by the classes: padded images and the mask voxel coordinates.

    Attributes:
        pad: Padding width on every side.
        shape: Padded array shape.
        values: Float image cropped to the mask's bounding box and padded, NaN outside the mask.
        levels: Cropped, padded discretised image as index into ``gray_levels`` plus 1; 0 outside
            the mask.
        gray_levels: Gray levels present in the ROI (PyRadiomics' ``grayLevels``), float.
        ng: Maximum gray level in the ROI (PyRadiomics' ``Ng``).
        coords: Mask voxel coordinates (3, N) in the input array.
        flat: Flat indices of the mask voxels in the cropped, padded array.
        bbox_size: ROI bounding-box size (z, y, x).
        voxel_volume: Product of the spacing.
    """

    pad: int
    shape: tuple[int, int, int]
    values: np.ndarray
    levels: np.ndarray
    gray_levels: np.ndarray
    ng: int
    coords: np.ndarray
    flat: np.ndarray
    bbox_size: np.ndarray
    voxel_volume: float

    def flat_offsets(self, offsets: np.ndarray) -> np.ndarray:
        """Convert (K, 3) offsets to flat offsets in the padded array."""
        strides = np.array([self.shape[1] * self.shape[2], self.shape[2], 1], dtype=np.int64)
        return offsets @ strides


def prepare(image: sitk.Image, mask: sitk.Image, settings: VoxelMapSettings) -> Prepared:
    """Discretise the ROI and pad the arrays for kernel gathering.

    Args:
        image: Gray-value image.
        mask: Label image (non-zero voxels form the ROI) on the image grid.
        settings: Computation settings.

    Returns:
        The prepared arrays.

    Raises:
        ValueError: If the mask is empty or the kernel radius is below 1.
    """
    if settings.kernel_radius < 1:
        raise ValueError("kernel_radius must be >= 1")
    img = sitk.GetArrayFromImage(image).astype(np.float64)
    msk = sitk.GetArrayFromImage(mask) != 0
    if img.shape != msk.shape:
        raise ValueError(f"image {img.shape} and mask {msk.shape} differ in size")
    coords = np.array(np.nonzero(msk))
    if coords.shape[1] == 0:
        raise ValueError("empty mask")
    roi = img[msk]
    edges = bin_edges(roi, settings.bin_width, settings.bin_count)
    binned = np.digitize(roi, edges)
    gray_levels = np.unique(binned)
    pad = settings.kernel_radius + 1
    # crop to the mask's bounding box (voxels outside the mask never enter a kernel), then pad
    lo = coords.min(1)
    bbox = coords.max(1) - lo + 1
    local = coords - lo[:, None]
    values = np.full(tuple(bbox), np.nan)
    values[tuple(local)] = roi
    values = np.pad(values, pad, constant_values=np.nan)
    lev = np.zeros(tuple(bbox), dtype=np.int32)
    lev[tuple(local)] = np.searchsorted(gray_levels, binned) + 1
    lev = np.pad(lev, pad)
    shape = lev.shape
    flat = np.ravel_multi_index(tuple(local + pad), shape)
    return Prepared(
        pad=pad,
        shape=shape,
        values=values,
        levels=lev,
        gray_levels=gray_levels.astype(np.float64),
        ng=int(gray_levels.max()),
        coords=coords,
        flat=flat,
        bbox_size=bbox,
        voxel_volume=float(np.prod(image.GetSpacing())),
    )


def kernel_cube(radius: int) -> np.ndarray:
    """All ``(2r+1)^3`` offsets of a cubic kernel (z, y, x), in C order (z slowest)."""
    rng = np.arange(-radius, radius + 1)
    zz, yy, xx = np.meshgrid(rng, rng, rng, indexing="ij")
    return np.stack([zz.ravel(), yy.ravel(), xx.ravel()], 1)


class KernelCalculator:
    """Base of the per-class calculators (one per feature class).

    Args:
        prep: Prepared arrays (discretised ROI, gray levels, flat indices).
        settings: Settings.
        names: Features to compute.
    """

    def __init__(self, prep: Prepared, settings: VoxelMapSettings, names: tuple[str, ...]) -> None:
        self.prep = prep
        self.names = names
        self.G = prep.gray_levels.size  # gray levels present in the whole ROI

    def batch(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Features of the kernels centred on the voxels ``flat`` (flat indices).

        Must not change the calculator's state: batches run in forked worker processes, and
        a batch's result must not depend on which batches ran before it.
        """
        raise NotImplementedError

    def finalize(self, res: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """ROI-wide post-processing of the assembled maps (none by default)."""
        return res


def compute_voxel_maps(
    image: sitk.Image, mask: sitk.Image, settings: VoxelMapSettings | None = None
) -> dict[str, np.ndarray]:
    """Compute voxel-level feature maps.

    Args:
        image: Gray-value image.
        mask: Mask on the image grid; every non-zero voxel belongs to the ROI.
        settings: Settings (defaults: radius 2, bin width 25, all implemented classes, as many
            worker processes as CPUs; see :class:`VoxelMapSettings`).

    Returns:
        ``{"{class}_{feature}": values}`` with float64 values of the mask voxels in the order of
        ``np.nonzero(mask_array)`` (z, y, x array order).

    Raises:
        ValueError: On an unknown or not yet implemented class.
    """
    settings = settings or VoxelMapSettings()
    for cls in settings.classes:
        if cls not in FEATURE_CLASSES:
            raise ValueError(f"unknown feature class {cls!r}")
        if cls not in IMPLEMENTED_CLASSES:
            raise ValueError(f"feature class {cls!r} is not implemented yet")
    with _quiet(), _single_threaded_blas():
        prep = prepare(image, mask, settings)
        n = prep.flat.size
        calcs: dict[str, KernelCalculator] = {}
        for cls in settings.classes:
            module = importlib.import_module(f"hccrad.voxelmaps.{cls}")
            calcs[cls] = getattr(module, CALCULATORS[cls])(prep, settings, settings.selected(cls))
        res = {cls: {name: np.empty(n) for name in calc.names} for cls, calc in calcs.items()}
        bounds = batch_bounds(n, settings.voxel_batch)
        jobs = min(settings.n_jobs or available_cpus(), len(bounds))

        def store(bounds: tuple[int, int], vals: dict[str, dict[str, np.ndarray]]) -> None:
            for cls, maps in vals.items():
                for name, val in maps.items():
                    res[cls][name][bounds[0] : bounds[1]] = val

        if jobs > 1 and can_fork():
            results = _run_in_processes(calcs, prep.flat, bounds, jobs)
            for b, vals in zip(bounds, results, strict=True):
                store(b, vals)
        elif settings.n_threads > 1 and len(bounds) > 1:
            with ThreadPoolExecutor(settings.n_threads) as pool:
                list(pool.map(lambda b: store(b, _run_batch(calcs, prep.flat, b)), bounds))
        else:
            for b in bounds:
                store(b, _run_batch(calcs, prep.flat, b))
        out: dict[str, np.ndarray] = {}
        for cls, calc in calcs.items():
            for name, val in calc.finalize(res[cls]).items():
                out[f"{cls}_{name}"] = val
    return out


def batch_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the voxel batches: ``size`` voxels each, except that the last two
    batches' voxels come in batches of ``size // 4``, so that parallel workers finish together.

    The bounds do not depend on the number of workers, so neither do the results.
    """
    size = max(1, size)
    if n <= size:
        return [(0, n)]
    tail = size * max(0, -(-n // size) - 2)  # start of the last two batches
    starts = [*range(0, tail, size), *range(tail, n, max(1, size // 4))]
    return list(zip(starts, [*starts[1:], n], strict=True))


def available_cpus() -> int:
    """Number of CPUs this process may run on (its affinity mask, e.g. a SLURM allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def can_fork() -> bool:
    """Whether worker processes can be forked here (POSIX, and not inside a daemonic process
    such as a ``multiprocessing.Pool`` worker, which may not have children)."""
    import multiprocessing

    return (
        "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's warnings on empty kernels/directions (NaN, as in PyRadiomics).

    Warning filters are process-global: set once here, in the calling thread.
    """
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _single_threaded_blas() -> contextlib.AbstractContextManager:
    """Limit BLAS to one thread: its calls here are small, and its idle threads spin on the
    cores the batches need (threadpoolctl, when installed)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _run_batch(
    calcs: dict[str, KernelCalculator], flat: np.ndarray, bounds: tuple[int, int]
) -> dict[str, dict[str, np.ndarray]]:
    """All classes' features of the kernels centred on ``flat[start:stop]``."""
    start, stop = bounds
    logger.debug("voxels %d-%d of %d", start, stop, flat.size)
    return {cls: calc.batch(flat[start:stop]) for cls, calc in calcs.items()}


#: The running computations' calculators and kernel centres by call, inherited by forked workers.
_SHARED: dict[int, tuple[dict[str, KernelCalculator], np.ndarray]] = {}


def _worker_init() -> None:
    warnings.simplefilter("ignore", RuntimeWarning)
    np.seterr(divide="ignore", invalid="ignore")


def _worker(task: tuple[int, tuple[int, int]]) -> dict[str, dict[str, np.ndarray]]:
    call, bounds = task
    calcs, flat = _SHARED[call]
    return _run_batch(calcs, flat, bounds)


def _run_in_processes(
    calcs: dict[str, KernelCalculator],
    flat: np.ndarray,
    bounds: list[tuple[int, int]],
    jobs: int,
) -> Iterator[dict[str, dict[str, np.ndarray]]]:
    """Compute the batches in ``jobs`` forked worker processes, yielding results in order.

    The workers inherit the prepared arrays and calculators (copy-on-write, built once), take
    batches one at a time, and send back their maps.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    call = id(calcs)
    _SHARED[call] = (calcs, flat)
    try:
        with ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("fork"), initializer=_worker_init
        ) as pool:
            yield from pool.map(_worker, [(call, b) for b in bounds])
    finally:
        del _SHARED[call]


def maps_to_images(
    values: dict[str, np.ndarray], mask: sitk.Image, fill: float = np.nan
) -> dict[str, sitk.Image]:
    """Turn per-voxel values into images on the mask grid.

    Args:
        values: Output of :func:`compute_voxel_maps`.
        mask: The mask used for the computation.
        fill: Value outside the mask (NaN by default; PyRadiomics writes 0 there).

    Returns:
        ``{key: float64 image}`` with the mask's geometry.
    """
    msk = sitk.GetArrayFromImage(mask) != 0
    images = {}
    for key, val in values.items():
        arr = np.full(msk.shape, fill, dtype=np.float64)
        arr[msk] = val
        img = sitk.GetImageFromArray(arr)
        img.CopyInformation(mask)
        images[key] = img
    return images
