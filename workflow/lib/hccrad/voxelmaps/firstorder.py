"""First-order voxel maps (PyRadiomics ``RadiomicsFirstOrder`` in voxel mode)."""

from __future__ import annotations

import numpy as np

from hccrad.voxelmaps.core import KernelCalculator, Prepared, VoxelMapSettings, kernel_offsets


def _quantile_sorted(s: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """Linear-interpolated quantile (numpy's default method) of rows sorted with NaN last.

    Args:
        s: (N, K) rows sorted ascending, the ``n`` valid values first.
        n: (N,) number of valid values per row (>= 1).
        q: Quantile in [0, 1].

    Returns:
        (N,) quantiles.
    """
    pos = (n - 1) * q
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    t = pos - lo
    rows = np.arange(s.shape[0])
    a = s[rows, lo]
    b = s[rows, hi]
    diff = b - a
    # numpy's _lerp: a + diff * t, or b - diff * (1 - t) for t >= 0.5
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


class FirstOrder(KernelCalculator):
    """Vectorised first-order features over masked kernels."""

    def __init__(self, prep: Prepared, settings: VoxelMapSettings, names: tuple[str, ...]) -> None:
        super().__init__(prep, settings, names)
        self.shift = settings.voxel_array_shift
        offs = kernel_offsets(settings.kernel_radius, prep.bbox_size)
        self.offsets = prep.flat_offsets(offs)
        self.ng = prep.gray_levels.size

    def batch(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Compute the features of a batch of voxels.

        Args:
            flat: Flat indices (padded array) of the kernel centres.

        Returns:
            ``{feature: (N,) values}``.
        """
        idx = flat[:, None] + self.offsets[None, :]
        x = self.prep.values.ravel()[idx]  # (N, Nk), NaN outside the mask
        valid = ~np.isnan(x)
        n = valid.sum(1)
        nf = n.astype(np.float64)
        res: dict[str, np.ndarray] = {}
        want = set(self.names)
        # numpy's nan-reductions replace NaN by 0 and sum: the same sums, without their copies
        x0 = np.where(valid, x, 0.0)
        mean = x0.sum(1) / n
        if want & {"Energy", "TotalEnergy", "RootMeanSquared"}:
            xs = x0 + self.shift if self.shift else x0
            energy = np.where(valid, xs * xs, 0.0).sum(1) if self.shift else (xs * xs).sum(1)
            res["Energy"] = energy
            res["TotalEnergy"] = energy * self.prep.voxel_volume
            res["RootMeanSquared"] = np.sqrt(energy / nf)
        if want & {"Entropy", "Uniformity"}:
            lev = self.prep.levels.ravel()[idx]
            rows = np.repeat(np.arange(x.shape[0]), x.shape[1])
            counts = np.bincount(
                rows * (self.ng + 1) + lev.ravel(), minlength=x.shape[0] * (self.ng + 1)
            ).reshape(x.shape[0], self.ng + 1)[:, 1:]
            p = counts / nf[:, None]
            res["Entropy"] = -np.sum(p * np.log2(p + np.spacing(1)), 1)
            res["Uniformity"] = np.sum(p**2, 1)
        res["Mean"] = mean
        res["Minimum"] = np.nanmin(x, 1)
        res["Maximum"] = np.nanmax(x, 1)
        res["Range"] = res["Maximum"] - res["Minimum"]
        dev = np.where(valid, x - mean[:, None], 0.0)
        d2 = dev * dev
        m2 = d2.sum(1) / n
        res["Variance"] = np.sqrt(m2) ** 2  # PyRadiomics: nanstd ** 2
        res["MeanAbsoluteDeviation"] = np.abs(dev).sum(1) / n
        if "Skewness" in want:
            m3 = (d2 * dev).sum(1) / n
            res["Skewness"] = m3 / np.where(m2 == 0, 1.0, m2) ** 1.5
        if "Kurtosis" in want:
            m4 = (d2 * d2).sum(1) / n
            res["Kurtosis"] = m4 / np.where(m2 == 0, 1.0, m2) ** 2.0
        pct = {
            "10Percentile",
            "90Percentile",
            "Median",
            "InterquartileRange",
            "RobustMeanAbsoluteDeviation",
        }
        if want & pct:
            s = np.sort(x, 1)  # NaN sorts last
            p10 = _quantile_sorted(s, n, 0.10)
            p90 = _quantile_sorted(s, n, 0.90)
            res["10Percentile"] = p10
            res["90Percentile"] = p90
            res["Median"] = _quantile_sorted(s, n, 0.5)
            res["InterquartileRange"] = _quantile_sorted(s, n, 0.75) - _quantile_sorted(s, n, 0.25)
            keep = valid & (x >= p10[:, None]) & (x <= p90[:, None])
            xr = np.where(keep, x, np.nan)
            res["RobustMeanAbsoluteDeviation"] = np.nanmean(
                np.abs(xr - np.nanmean(xr, 1, keepdims=True)), 1
            )
        return {k: res[k] for k in self.names}
