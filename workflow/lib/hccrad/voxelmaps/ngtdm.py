"""NGTDM voxel maps (PyRadiomics ``RadiomicsNGTDM`` in voxel mode).

In a kernel centred on c, every mask voxel p of the kernel cube contributes its gray level i and
``|i - mean(neighbours)|``, where the neighbours are p's 26-neighbours inside the mask *and inside
the kernel cube*; a voxel without such neighbours contributes 0 (and still counts). The neighbour
counts and sums come from 27 precomputed images (one per way the 3x3x3 neighbourhood can be
clipped by the kernel faces), built from 3-D summed-volume tables.
"""

from __future__ import annotations

import numpy as np

from hccrad.voxelmaps.core import KernelCalculator, Prepared, VoxelMapSettings, kernel_cube


def _table(arr: np.ndarray) -> np.ndarray:
    """Summed-volume table with a leading zero plane on every axis."""
    t = np.zeros(tuple(n + 1 for n in arr.shape), dtype=np.int64)
    t[1:, 1:, 1:] = arr.astype(np.int64).cumsum(0).cumsum(1).cumsum(2)
    return t


def _box_image(t: np.ndarray, shape: tuple[int, ...], lo: tuple, hi: tuple) -> np.ndarray:
    """Flat image of the sums over ``[p + lo, p + hi]`` (clamped to the array) for every p."""
    idx = [np.arange(n) for n in shape]
    a = [np.clip(i + d, 0, n) for i, d, n in zip(idx, lo, shape, strict=True)]
    b = [np.clip(i + d + 1, 0, n) for i, d, n in zip(idx, hi, shape, strict=True)]

    def c(z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return t[np.ix_(z, y, x)]

    out = (
        c(b[0], b[1], b[2])
        - c(a[0], b[1], b[2])
        - c(b[0], a[1], b[2])
        - c(b[0], b[1], a[2])
        + c(a[0], a[1], b[2])
        + c(a[0], b[1], a[2])
        + c(b[0], a[1], a[2])
        - c(a[0], a[1], a[2])
    )
    return out.ravel()


class NGTDM(KernelCalculator):
    """Vectorised NGTDM features over masked kernels (distance 1)."""

    def __init__(self, prep: Prepared, settings: VoxelMapSettings, names: tuple[str, ...]) -> None:
        super().__init__(prep, settings, names)
        r = settings.kernel_radius
        offs = kernel_cube(r)
        self.offs = offs
        self.lo = np.where(offs > -r, -1, 0)  # neighbour box clipped to the kernel
        self.hi = np.where(offs < r, 1, 0)
        lev = prep.levels
        gi = np.concatenate([[0], prep.gray_levels.astype(np.int64)])
        self.gval = gi[lev]
        # for each of the 27 clipping patterns (per axis: box [-1, 1], [0, 1] at the kernel's low
        # face, [-1, 0] at its high face) the neighbour count and gray-value sum of every voxel
        patterns: dict[tuple, int] = {}
        pid = np.empty(len(offs), dtype=np.int64)
        for k, key in enumerate(zip(map(tuple, self.lo), map(tuple, self.hi), strict=True)):
            pid[k] = patterns.setdefault(key, len(patterns))
        tc = _table(lev > 0)
        ts = _table(self.gval)
        size = lev.size
        self.count = np.empty(len(patterns) * size, dtype=np.int64)
        self.total = np.empty(len(patterns) * size, dtype=np.int64)
        for (lo, hi), j in patterns.items():
            self.count[j * size : (j + 1) * size] = _box_image(tc, lev.shape, lo, hi)
            self.total[j * size : (j + 1) * size] = _box_image(ts, lev.shape, lo, hi)
        self.pattern_base = pid * size
        self.gv = prep.gray_levels

    def batch(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Compute the features of a batch of voxels.

        Args:
            flat: Flat indices (padded array) of the kernel centres.

        Returns:
            ``{feature: (N,) values}``.
        """
        G = self.G
        N = flat.size
        shape = self.prep.shape
        pidx = flat[:, None] + (
            self.offs[:, 0] * shape[1] * shape[2] + self.offs[:, 1] * shape[2] + self.offs[:, 2]
        )
        lev = self.prep.levels.ravel()[pidx]  # (N, Nk)
        g = self.gval.ravel()[pidx].astype(np.float64)
        inside = lev > 0
        cidx = pidx + self.pattern_base[None, :]
        cnt = self.count[cidx] - inside  # neighbours, without p itself
        tot = (self.total[cidx] - g).astype(np.float64)
        diff = np.where(cnt > 0, np.abs(g - tot / np.maximum(cnt, 1)), 0.0)
        rows = np.repeat(np.arange(N), lev.shape[1])
        keys = rows * (G + 1) + lev.ravel()
        n = np.bincount(keys, inside.ravel(), N * (G + 1)).reshape(N, G + 1)[:, 1:]
        s = np.bincount(keys, np.where(inside, diff, 0.0).ravel(), N * (G + 1))
        s = s.reshape(N, G + 1)[:, 1:]
        nvp = n.sum(1)
        p = n / nvp[:, None]
        present = n > 0
        ngp = present.sum(1)
        iv = self.gv
        ps = p * s
        sum_ps = ps.sum(1)
        sum_s = s.sum(1)
        res: dict[str, np.ndarray] = {}
        res["Coarseness"] = np.where(sum_ps != 0, 1.0 / np.where(sum_ps != 0, sum_ps, 1.0), 1e6)
        # pairwise terms over the present levels, in row chunks to bound memory
        pair_contrast = np.empty(N)
        absdiff = np.empty(N)
        complexity = np.empty(N)
        strength = np.empty(N)
        dij = iv[:, None] - iv[None, :]
        step = max(1, int(2e7 // max(G * G, 1)))
        for lo in range(0, N, step):
            sl = slice(lo, min(N, lo + step))
            pp = p[sl]
            both = present[sl][:, :, None] & present[sl][:, None, :]
            pair_contrast[sl] = np.sum(pp[:, :, None] * pp[:, None, :] * dij**2, (1, 2))
            ip = iv[None, :] * pp
            absdiff[sl] = np.sum(
                np.where(both, np.abs(ip[:, :, None] - ip[:, None, :]), 0.0), (1, 2)
            )
            num = np.where(both, ps[sl][:, :, None] + ps[sl][:, None, :], 0.0)
            div = pp[:, :, None] + pp[:, None, :]
            div[div == 0] = 1
            complexity[sl] = np.sum(np.abs(dij) * num / div, (1, 2)) / nvp[sl]
            strength[sl] = np.sum(np.where(both, div * dij**2, 0.0), (1, 2))
        dv = ngp * (ngp - 1)
        contrast = pair_contrast * sum_s / nvp
        res["Contrast"] = np.where(dv != 0, contrast / np.where(dv != 0, dv, 1), 0.0)
        res["Busyness"] = np.where(absdiff != 0, sum_ps / np.where(absdiff != 0, absdiff, 1.0), 0.0)
        res["Complexity"] = complexity
        res["Strength"] = np.where(sum_s != 0, strength / np.where(sum_s != 0, sum_s, 1.0), 0.0)
        return {k: res[k] for k in self.names}
