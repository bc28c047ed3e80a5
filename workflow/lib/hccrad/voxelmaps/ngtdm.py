"""NGTDM voxel maps (PyRadiomics ``RadiomicsNGTDM`` in voxel mode).

In a kernel centred on c, every mask voxel p of the kernel cube contributes its gray level i and
``|i - mean(neighbours)|``, where the neighbours are p's 26-neighbours inside the mask *and inside
the kernel cube*; a voxel without such neighbours contributes 0 (and still counts). The neighbour
counts and sums come from 27 precomputed images (one per way the 3x3x3 neighbourhood can be
clipped by the kernel faces), built from separable window sums.
"""

from __future__ import annotations

import numpy as np

from hccrad.voxelmaps.core import KernelCalculator, Prepared, VoxelMapSettings, kernel_cube


def _window_sum(arr: np.ndarray, axis: int, lo: int, hi: int) -> np.ndarray:
    """Sums of ``arr`` over ``[p + lo, p + hi]`` along ``axis`` (zero outside the array)."""
    out = np.zeros_like(arr)
    for d in range(lo, hi + 1):
        src = [slice(None)] * arr.ndim
        dst = [slice(None)] * arr.ndim
        if d > 0:
            src[axis], dst[axis] = slice(d, None), slice(None, -d)
        elif d < 0:
            src[axis], dst[axis] = slice(None, d), slice(-d, None)
        out[tuple(dst)] += arr[tuple(src)]
    return out


def _clipped_box_sums(arr: np.ndarray, boxes: list[tuple]) -> list[np.ndarray]:
    """Box sums over ``[p + lo, p + hi]`` (per axis ``lo, hi`` in {-1, 0, 1}) of every voxel p.

    Separable: window sums along x, then y, then z, each shared by the boxes that need it.
    """
    cache: dict[tuple, np.ndarray] = {(): arr}

    def partial(key: tuple) -> np.ndarray:  # key: the (lo, hi) of the last axes
        if key not in cache:
            axis = 3 - len(key)
            cache[key] = _window_sum(partial(key[1:]), axis, *key[0])
        return cache[key]

    return [partial(tuple(zip(lo, hi, strict=True))).ravel() for lo, hi in boxes]


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
        boxes = list(patterns)
        size = lev.size
        self.count = np.concatenate(_clipped_box_sums((lev > 0).astype(np.int32), boxes))
        self.total = np.concatenate(_clipped_box_sums(self.gval.astype(np.int32), boxes))
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
        # pairwise terms over the levels present in the kernel, kernels grouped by their number
        # of levels m so that the (m, m) blocks hold only present levels
        pair_contrast = np.zeros(N)
        absdiff = np.zeros(N)
        complexity = np.zeros(N)
        strength = np.zeros(N)
        for m in np.unique(ngp):
            if m < 2:
                continue  # a single level: all pairwise sums are 0
            sel = np.flatnonzero(ngp == m)
            r, c = np.nonzero(present[sel])
            r = sel[r].reshape(-1, m)
            c = c.reshape(-1, m)
            gi = iv[c]
            pi = p[r, c]
            psi = ps[r, c]
            dij = gi[:, :, None] - gi[:, None, :]
            d2 = dij * dij
            pp = pi[:, :, None] * pi[:, None, :]
            pair_contrast[sel] = np.sum(pp * d2, (1, 2))
            ip = gi * pi
            absdiff[sel] = np.sum(np.abs(ip[:, :, None] - ip[:, None, :]), (1, 2))
            div = pi[:, :, None] + pi[:, None, :]
            num = psi[:, :, None] + psi[:, None, :]
            complexity[sel] = np.sum(np.abs(dij) * num / div, (1, 2)) / nvp[sel]
            strength[sel] = np.sum(div * d2, (1, 2))
        dv = ngp * (ngp - 1)
        contrast = pair_contrast * sum_s / nvp
        res["Contrast"] = np.where(dv != 0, contrast / np.where(dv != 0, dv, 1), 0.0)
        res["Busyness"] = np.where(absdiff != 0, sum_ps / np.where(absdiff != 0, absdiff, 1.0), 0.0)
        res["Complexity"] = complexity
        res["Strength"] = np.where(sum_s != 0, strength / np.where(sum_s != 0, sum_s, 1.0), 0.0)
        return {k: res[k] for k in self.names}
