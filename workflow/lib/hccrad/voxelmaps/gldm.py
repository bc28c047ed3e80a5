"""GLDM voxel maps (PyRadiomics ``RadiomicsGLDM`` in voxel mode).

In a kernel centred on c, every mask voxel p of the kernel cube is counted in ``P[i, j]`` with i its
gray level and j - 1 the number of its 26-neighbours inside the mask *and inside the kernel cube*
whose gray level differs by at most ``gldm_a`` (0 by default). The dependence counts are read from
27 precomputed images, one per way the 3x3x3 neighbourhood can be clipped by the kernel faces.
"""

from __future__ import annotations

from itertools import product

import numpy as np

from hccrad.voxelmaps.core import KernelCalculator, Prepared, VoxelMapSettings, kernel_cube

NEIGHBOURS = [d for d in product((-1, 0, 1), repeat=3) if d != (0, 0, 0)]


class GLDM(KernelCalculator):
    """Vectorised GLDM features over masked kernels (distance 1, ``gldm_a`` = 0).

    Args (besides :class:`KernelCalculator`'s):
        alpha: Dependence threshold on the gray-level difference (PyRadiomics' ``gldm_a``).
    """

    ND = len(NEIGHBOURS) + 1  # dependence counts 0..26

    def __init__(
        self, prep: Prepared, settings: VoxelMapSettings, names: tuple[str, ...], alpha: int = 0
    ) -> None:
        super().__init__(prep, settings, names)
        r = settings.kernel_radius
        offs = kernel_cube(r)
        lo = np.where(offs > -r, -1, 0)
        hi = np.where(offs < r, 1, 0)
        shape = prep.shape
        self.offs_flat = prep.flat_offsets(offs)
        lev = prep.levels
        gi = np.concatenate([[0], prep.gray_levels.astype(np.int64)])
        gval = gi[lev]
        inside = lev > 0
        # dependent[d][p]: neighbour p + d is in the mask and within alpha of p's gray level
        pad = np.pad(gval, 1)
        pin = np.pad(inside, 1)
        dep = {}
        for d in NEIGHBOURS:
            sl = tuple(slice(1 + dk, 1 + dk + n) for dk, n in zip(d, shape, strict=True))
            dep[d] = pin[sl] & (np.abs(pad[sl] - gval) <= alpha)
        patterns: dict[tuple, int] = {}
        pid = np.empty(len(offs), dtype=np.int64)
        for k, key in enumerate(zip(map(tuple, lo), map(tuple, hi), strict=True)):
            pid[k] = patterns.setdefault(key, len(patterns))
        size = lev.size
        self.count = np.empty(len(patterns) * size, dtype=np.int16)
        for (plo, phi), j in patterns.items():
            acc = np.zeros(shape, dtype=np.int16)
            for d in NEIGHBOURS:
                if all(a <= dk <= b for a, dk, b in zip(plo, d, phi, strict=True)):
                    acc += dep[d]
            self.count[j * size : (j + 1) * size] = acc.ravel()
        self.pattern_base = pid * size
        self.iv = prep.gray_levels
        self.jv = np.arange(1, self.ND + 1, dtype=np.float64)

    def batch(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Compute the features of a batch of voxels.

        Args:
            flat: Flat indices (padded array) of the kernel centres.

        Returns:
            ``{feature: (N,) values}``.
        """
        # dense (N, G, 27) matrices: split the batch so that one block stays below ~40 MB
        step = max(1, int(5e6 // ((self.G + 1) * self.ND)))
        if flat.size > step:
            parts = [self.batch(flat[i : i + step]) for i in range(0, flat.size, step)]
            return {k: np.concatenate([p[k] for p in parts]) for k in self.names}
        G, ND = self.G, self.ND
        N = flat.size
        pidx = flat[:, None] + self.offs_flat[None, :]
        lev = self.prep.levels.ravel()[pidx]
        dep = self.count[pidx + self.pattern_base[None, :]].astype(np.int64)
        inside = lev > 0
        rows = np.repeat(np.arange(N), lev.shape[1])
        keys = (rows * (G + 1) + lev.ravel()) * ND + dep.ravel()
        P = np.bincount(keys, inside.ravel(), N * (G + 1) * ND).reshape(N, G + 1, ND)[:, 1:, :]
        iv, jv = self.iv, self.jv
        pd = P.sum(1)
        pg = P.sum(2)
        nz = pd.sum(1)
        nz[nz == 0] = 1
        i2 = iv[None, :] ** 2
        j2 = jv[None, :] ** 2
        res: dict[str, np.ndarray] = {}
        res["SmallDependenceEmphasis"] = np.sum(pd / j2, 1) / nz
        res["LargeDependenceEmphasis"] = np.sum(pd * j2, 1) / nz
        res["GrayLevelNonUniformity"] = np.sum(pg**2, 1) / nz
        res["DependenceNonUniformity"] = np.sum(pd**2, 1) / nz
        res["DependenceNonUniformityNormalized"] = np.sum(pd**2, 1) / nz**2
        pgn = pg / nz[:, None]
        ui = np.sum(pgn * iv[None, :], 1, keepdims=True)
        res["GrayLevelVariance"] = np.sum(pgn * (iv[None, :] - ui) ** 2, 1)
        pdn = pd / nz[:, None]
        uj = np.sum(pdn * jv[None, :], 1, keepdims=True)
        res["DependenceVariance"] = np.sum(pdn * (jv[None, :] - uj) ** 2, 1)
        pn = P / nz[:, None, None]
        res["DependenceEntropy"] = -np.sum(pn * np.log2(pn + np.spacing(1)), (1, 2))
        res["LowGrayLevelEmphasis"] = np.sum(pg / i2, 1) / nz
        res["HighGrayLevelEmphasis"] = np.sum(pg * i2, 1) / nz
        ii = iv[None, :, None] ** 2
        jj = jv[None, None, :] ** 2
        res["SmallDependenceLowGrayLevelEmphasis"] = np.sum(P / (ii * jj), (1, 2)) / nz
        res["SmallDependenceHighGrayLevelEmphasis"] = np.sum(P * ii / jj, (1, 2)) / nz
        res["LargeDependenceLowGrayLevelEmphasis"] = np.sum(P * jj / ii, (1, 2)) / nz
        res["LargeDependenceHighGrayLevelEmphasis"] = np.sum(P * (jj * ii), (1, 2)) / nz
        return {k: res[k] for k in self.names}
