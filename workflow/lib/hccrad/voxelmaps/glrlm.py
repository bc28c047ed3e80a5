"""GLRLM voxel maps (PyRadiomics ``RadiomicsGLRLM`` in voxel mode).

For a kernel centred on c and each of the 13 directions a, the runs are the maximal lines of
equal gray level along a made of mask voxels *inside the kernel cube*. A kernel voxel p starts a run
when p - a is not a same-level mask voxel of the kernel; the run's length is the same-level
run-ahead length of p (precomputed on the whole image, capped at 2r + 1) clipped at the kernel face
where the line leaves the cube. As PyRadiomics' C code does, a direction whose lines through the
kernel box never hold two mask voxels is dropped for that kernel (NaN). Features per direction,
then ``nanmean`` over directions.
"""

from __future__ import annotations

import numpy as np

from hccrad.voxelmaps.core import (
    GLCM_ANGLES,
    KernelCalculator,
    Prepared,
    VoxelMapSettings,
    box_count,
    kernel_cube,
)


class GLRLM(KernelCalculator):
    """Vectorised GLRLM features over masked kernels (13 directions, no weighting)."""

    def __init__(self, prep: Prepared, settings: VoxelMapSettings, names: tuple[str, ...]) -> None:
        super().__init__(prep, settings, names)
        r = settings.kernel_radius
        self.K = 2 * r + 1  # longest run inside a kernel
        offs = kernel_cube(r)
        self.offs_flat = prep.flat_offsets(offs)
        lev = prep.levels.ravel()
        inside = lev > 0
        self.angles: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for a in GLCM_ANGLES:
            af = int(prep.flat_offsets(a[None, :])[0])  # > 0
            # same[p]: p and p + a are mask voxels of the same gray level
            same = np.zeros(lev.size, dtype=bool)
            same[:-af] = inside[:-af] & (lev[:-af] == lev[af:])
            # run-ahead length along a, capped at K
            run = inside.astype(np.int16)
            for _ in range(self.K - 1):
                nxt = np.zeros_like(run)
                nxt[:-af] = run[af:]
                run = np.where(same, 1 + nxt, inside.astype(np.int16))
            prev_same = np.zeros(lev.size, dtype=bool)  # p - a same-level mask voxel
            prev_same[af:] = same[:-af]
            # kernel geometry: does o - a stay in the cube, and steps until the line leaves it
            back_in = np.all(np.abs(offs - a[None, :]) <= r, 1)
            steps = np.full(len(offs), self.K)
            for k in range(3):
                if a[k] > 0:
                    steps = np.minimum(steps, r - offs[:, k] + 1)
                elif a[k] < 0:
                    steps = np.minimum(steps, offs[:, k] + r + 1)
            # PyRadiomics zeroes a direction's matrix in a kernel when no line along a through the
            # kernel box holds two mask voxels ("multiElement"): that direction is then NaN
            pairs = np.zeros(prep.flat.size, dtype=np.int64)
            for k in range(1, self.K):
                ka = k * a
                kf = k * af
                ind = np.zeros(lev.size, dtype=bool)
                ind[:-kf] = inside[:-kf] & inside[kf:]
                lo = np.maximum(-r, -r - ka)
                hi = np.minimum(r, r - ka)
                if np.any(lo > hi):
                    continue
                pairs += box_count(ind.reshape(prep.shape), lo, hi, prep.flat)
            multi = np.zeros(lev.size, dtype=bool)
            multi[prep.flat] = pairs > 0
            self.angles.append((run, prev_same, np.stack([back_in, steps], 0), multi))
        self.iv = prep.gray_levels
        self.jv = np.arange(1, self.K + 1, dtype=np.float64)

    def batch(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Compute the features of a batch of voxels.

        Args:
            flat: Flat indices (padded array) of the kernel centres.

        Returns:
            ``{feature: (N,) values}``.
        """
        # dense (N, G, 2r + 1) matrices: split the batch so that one block stays below ~40 MB
        step = max(1, int(5e6 // ((self.G + 1) * (self.K + 1))))
        if flat.size > step:
            parts = [self.batch(flat[i : i + step]) for i in range(0, flat.size, step)]
            return {k: np.concatenate([p[k] for p in parts]) for k in self.names}
        N = flat.size
        pidx = flat[:, None] + self.offs_flat[None, :]
        lev = self.prep.levels.ravel()[pidx]
        inside = lev > 0
        rows = np.repeat(np.arange(N), lev.shape[1])
        per: dict[str, list[np.ndarray]] = {k: [] for k in self.names}
        for run, prev_same, geo, multi in self.angles:
            back_in, steps = geo[0].astype(bool), geo[1]
            start = inside & ~(back_in[None, :] & prev_same[pidx])
            length = np.minimum(run[pidx], steps[None, :])
            keys = (rows * (self.G + 1) + lev.ravel()) * (self.K + 1) + length.ravel()
            P = np.bincount(keys, start.ravel(), N * (self.G + 1) * (self.K + 1))
            P = P.reshape(N, self.G + 1, self.K + 1)[:, 1:, 1:]
            P[~multi[flat]] = 0.0
            res = self._features(P)
            for k in self.names:
                per[k].append(res[k])
        if not self.angles:
            return {k: np.full(N, np.nan) for k in self.names}
        return {k: np.nanmean(np.stack(per[k], 1), 1) for k in self.names}

    def _features(self, P: np.ndarray) -> dict[str, np.ndarray]:
        """Features of one direction from ``P`` (N, Ng_present, K)."""
        iv, jv = self.iv, self.jv
        pr = P.sum(1)
        pg = P.sum(2)
        nr = pr.sum(1)
        nr[nr == 0] = np.nan
        i2 = iv[None, :] ** 2
        j2 = jv[None, :] ** 2
        res: dict[str, np.ndarray] = {}
        res["ShortRunEmphasis"] = np.sum(pr / j2, 1) / nr
        res["LongRunEmphasis"] = np.sum(pr * j2, 1) / nr
        res["GrayLevelNonUniformity"] = np.sum(pg**2, 1) / nr
        res["GrayLevelNonUniformityNormalized"] = np.sum(pg**2, 1) / nr**2
        res["RunLengthNonUniformity"] = np.sum(pr**2, 1) / nr
        res["RunLengthNonUniformityNormalized"] = np.sum(pr**2, 1) / nr**2
        res["RunPercentage"] = nr / np.sum(pr * jv[None, :], 1)
        pgn = pg / nr[:, None]
        ui = np.sum(pgn * iv[None, :], 1, keepdims=True)
        res["GrayLevelVariance"] = np.sum(pgn * (iv[None, :] - ui) ** 2, 1)
        prn = pr / nr[:, None]
        uj = np.sum(prn * jv[None, :], 1, keepdims=True)
        res["RunVariance"] = np.sum(prn * (jv[None, :] - uj) ** 2, 1)
        pn = P / nr[:, None, None]
        res["RunEntropy"] = -np.sum(pn * np.log2(pn + np.spacing(1)), (1, 2))
        res["LowGrayLevelRunEmphasis"] = np.sum(pg / i2, 1) / nr
        res["HighGrayLevelRunEmphasis"] = np.sum(pg * i2, 1) / nr
        ii = iv[None, :, None] ** 2
        jj = jv[None, None, :] ** 2
        res["ShortRunLowGrayLevelEmphasis"] = np.sum(P / (ii * jj), (1, 2)) / nr
        res["ShortRunHighGrayLevelEmphasis"] = np.sum(P * ii / jj, (1, 2)) / nr
        res["LongRunLowGrayLevelEmphasis"] = np.sum(P * jj / ii, (1, 2)) / nr
        res["LongRunHighGrayLevelEmphasis"] = np.sum(P * (jj * ii), (1, 2)) / nr
        return {k: res[k] for k in self.names}
