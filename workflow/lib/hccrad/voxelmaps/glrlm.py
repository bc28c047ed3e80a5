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
                todo = np.flatnonzero(pairs == 0)  # count further only where no pair yet
                if todo.size == 0:
                    break
                ka = k * a
                kf = k * af
                ind = np.zeros(lev.size, dtype=bool)
                ind[:-kf] = inside[:-kf] & inside[kf:]
                lo = np.maximum(-r, -r - ka)
                hi = np.minimum(r, r - ka)
                if np.any(lo > hi):
                    continue
                pairs[todo] += box_count(ind.reshape(prep.shape), lo, hi, prep.flat[todo])
            multi = np.zeros(lev.size, dtype=bool)
            multi[prep.flat] = pairs > 0
            self.angles.append((run, prev_same, np.stack([back_in, steps], 0), multi))
        K1 = self.K + 1
        iv = np.concatenate([[1.0], prep.gray_levels])[:, None]  # (G + 1, 1); row 0 is unused
        jv = np.arange(K1, dtype=np.float64)[None, :]
        jv[0, 0] = 1.0
        i2, j2 = iv**2, jv**2
        # weights of the features linear in P (rows of P.reshape(N, -1) @ wlin), then one-hot
        # columns giving the run-length histogram
        ones = np.ones((self.G + 1, K1))
        lin = [
            ones,  # Nr
            ones * jv,  # sum P j (RunPercentage)
            ones / j2,  # ShortRunEmphasis
            ones * j2,  # LongRunEmphasis
            ones / i2,  # LowGrayLevelRunEmphasis
            ones * i2,  # HighGrayLevelRunEmphasis
            1.0 / (i2 * j2),  # ShortRunLowGrayLevelEmphasis
            i2 / j2,  # ShortRunHighGrayLevelEmphasis
            j2 / i2,  # LongRunLowGrayLevelEmphasis
            i2 * j2,  # LongRunHighGrayLevelEmphasis
        ]
        lin += [ones * (np.arange(K1) == j)[None, :] for j in range(K1)]
        self.wlin = np.stack(lin, -1).reshape((self.G + 1) * K1, -1)
        self.iv = np.concatenate([[0.0], prep.gray_levels])
        self.jv = np.arange(K1, dtype=np.float64)
        # c log2(c) for every possible cell count c (entropy = log2(Nr) - sum c log2 c / Nr)
        c = np.arange(len(offs) + 1, dtype=np.float64)
        self.clogc = c * np.log2(np.where(c > 0, c, 1.0))

    def batch(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Compute the features of a batch of voxels.

        Args:
            flat: Flat indices (padded array) of the kernel centres.

        Returns:
            ``{feature: (N,) values}``.
        """
        N = flat.size
        if not self.angles:
            return {k: np.full(N, np.nan) for k in self.names}
        G1, K1 = self.G + 1, self.K + 1
        pidx = flat[:, None] + self.offs_flat[None, :]
        lev = self.prep.levels.ravel()[pidx]
        inside = lev > 0
        # cell key (kernel, level, run length) of every kernel voxel
        base = (np.arange(N)[:, None] * G1 + lev) * K1
        per = {k: np.empty((N, len(self.angles))) for k in self.names}
        for d, (run, prev_same, geo, multi) in enumerate(self.angles):
            back_in, steps = geo[0].astype(bool), geo[1]
            # p starts a run unless p - a is a same-level mask voxel inside the cube
            start = inside & ~(prev_same[pidx] & back_in[None, :])
            keys = (base + np.minimum(run[pidx], steps[None, :]))[start]
            P = np.bincount(keys, minlength=N * G1 * K1)
            Pf = P.astype(np.float64).reshape(N, G1 * K1)
            res = self._features(
                Pf.reshape(N * G1, K1) @ np.ones(K1),
                Pf @ self.wlin,
                self.clogc[P].reshape(N, G1 * K1).sum(1),
            )
            # PyRadiomics drops the direction where no line holds two mask voxels
            bad = ~multi[flat]
            for k in self.names:
                v = res[k]
                v[bad] = np.nan
                per[k][:, d] = v
        return {k: np.nanmean(per[k], 1) for k in self.names}

    def _features(
        self, pg: np.ndarray, lin: np.ndarray, clogc: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Features of one direction.

        Args:
            pg: (N * (G + 1),) run counts by kernel and level index (index 0 unused).
            lin: (N, 10 + 2r + 2) the sums of :attr:`wlin` over P, then the run-length histogram.
            clogc: (N,) the sum of ``c log2(c)`` over the cells of P.

        Returns:
            ``{feature: (N,) values}`` (NaN where a kernel has no run).
        """
        N = lin.shape[0]
        nr = lin[:, 0].copy()
        nr[nr == 0] = np.nan
        res: dict[str, np.ndarray] = {}
        res["RunPercentage"] = nr / lin[:, 1]
        for j, k in enumerate(
            (
                "ShortRunEmphasis",
                "LongRunEmphasis",
                "LowGrayLevelRunEmphasis",
                "HighGrayLevelRunEmphasis",
                "ShortRunLowGrayLevelEmphasis",
                "ShortRunHighGrayLevelEmphasis",
                "LongRunLowGrayLevelEmphasis",
                "LongRunHighGrayLevelEmphasis",
            ),
            start=2,
        ):
            res[k] = lin[:, j] / nr
        pg = pg.reshape(N, -1)
        pr = lin[:, 10:]
        gln = np.einsum("ij,ij->i", pg, pg)
        res["GrayLevelNonUniformity"] = gln / nr
        res["GrayLevelNonUniformityNormalized"] = gln / nr**2
        rln = np.einsum("ij,ij->i", pr, pr)
        res["RunLengthNonUniformity"] = rln / nr
        res["RunLengthNonUniformityNormalized"] = rln / nr**2
        pgn = pg / nr[:, None]
        ui = (pgn * self.iv[None, :]).sum(1, keepdims=True)
        res["GrayLevelVariance"] = np.sum(pgn * (self.iv[None, :] - ui) ** 2, 1)
        prn = pr / nr[:, None]
        uj = (prn * self.jv[None, :]).sum(1, keepdims=True)
        res["RunVariance"] = np.sum(prn * (self.jv[None, :] - uj) ** 2, 1)
        # -sum p log2 p with p = c / Nr
        res["RunEntropy"] = np.log2(nr) - clogc / nr
        return {k: res[k] for k in self.names}
