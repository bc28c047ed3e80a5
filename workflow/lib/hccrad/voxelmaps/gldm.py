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
        G1, ND = self.G + 1, self.ND
        iv = np.concatenate([[1.0], prep.gray_levels])[:, None]  # (G + 1, 1); row 0 unused
        jv = np.arange(1, ND + 1, dtype=np.float64)[None, :]  # dependence count + 1
        i2, j2 = iv**2, jv**2
        # weights of the features linear in P, per cell (level index * 27 + dependence count)
        self.wlin = np.stack(
            [
                1.0 / (i2 * j2),  # SmallDependenceLowGrayLevelEmphasis
                i2 / j2,  # SmallDependenceHighGrayLevelEmphasis
                j2 / i2,  # LargeDependenceLowGrayLevelEmphasis
                i2 * j2,  # LargeDependenceHighGrayLevelEmphasis
            ]
        ).reshape(4, G1 * ND)
        self.iv = np.concatenate([[0.0], prep.gray_levels])
        self.jv = jv[0]
        # log2(c) for every possible cell count c (entropy = log2(Nz) - sum c log2 c / Nz)
        self.log2c = np.log2(np.maximum(np.arange(len(offs) + 1), 1))

    def batch(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Compute the features of a batch of voxels.

        Args:
            flat: Flat indices (padded array) of the kernel centres.

        Returns:
            ``{feature: (N,) values}``.
        """
        G1, ND = self.G + 1, self.ND
        # dense (N, G + 1, 27) matrices: split the batch so that one block stays below ~40 MB
        step = max(1, int(5e6 // (G1 * ND)))
        if flat.size > step:
            parts = [self.batch(flat[i : i + step]) for i in range(0, flat.size, step)]
            return {k: np.concatenate([p[k] for p in parts]) for k in self.names}
        N = flat.size
        pidx = flat[:, None] + self.offs_flat[None, :]
        lev = self.prep.levels.ravel()[pidx]
        dep = self.count[pidx + self.pattern_base[None, :]]
        inside = lev > 0
        # the kernel's mask voxels: kernel (row), level index, dependence count
        rows = np.repeat(np.arange(N), inside.sum(1))
        li = lev[inside]
        di = dep[inside].astype(np.intp)
        cell = li * ND + di
        P = np.bincount(rows * (G1 * ND) + cell, minlength=N * G1 * ND)
        # sum over the cells of c log2 c = sum over the voxels of log2(count of their cell)
        clogc = np.bincount(rows, self.log2c[P[rows * (G1 * ND) + cell]], N)
        lin = np.stack([np.bincount(rows, w[cell], N) for w in self.wlin], 1)
        pg = np.bincount(rows * G1 + li, minlength=N * G1).reshape(N, G1).astype(np.float64)
        pd = np.bincount(rows * ND + di, minlength=N * ND).reshape(N, ND).astype(np.float64)
        nz = pg.sum(1)  # >= 1: the centre voxel is in the mask
        iv, jv = self.iv, self.jv
        res: dict[str, np.ndarray] = {}
        res["SmallDependenceEmphasis"] = (pd / jv**2).sum(1) / nz
        res["LargeDependenceEmphasis"] = (pd * jv**2).sum(1) / nz
        gln = np.einsum("ij,ij->i", pg, pg)
        res["GrayLevelNonUniformity"] = gln / nz
        dn = np.einsum("ij,ij->i", pd, pd)
        res["DependenceNonUniformity"] = dn / nz
        res["DependenceNonUniformityNormalized"] = dn / nz**2
        pgn = pg / nz[:, None]
        ui = np.sum(pgn * iv[None, :], 1, keepdims=True)
        res["GrayLevelVariance"] = np.sum(pgn * (iv[None, :] - ui) ** 2, 1)
        pdn = pd / nz[:, None]
        uj = np.sum(pdn * jv[None, :], 1, keepdims=True)
        res["DependenceVariance"] = np.sum(pdn * (jv[None, :] - uj) ** 2, 1)
        # -sum p log2 p with p = c / Nz
        res["DependenceEntropy"] = np.log2(nz) - clogc / nz
        gl = pg[:, 1:]
        res["LowGrayLevelEmphasis"] = (gl / iv[None, 1:] ** 2).sum(1) / nz
        res["HighGrayLevelEmphasis"] = (gl * iv[None, 1:] ** 2).sum(1) / nz
        for j, k in enumerate(
            (
                "SmallDependenceLowGrayLevelEmphasis",
                "SmallDependenceHighGrayLevelEmphasis",
                "LargeDependenceLowGrayLevelEmphasis",
                "LargeDependenceHighGrayLevelEmphasis",
            )
        ):
            res[k] = lin[:, j] / nz
        return {k: res[k] for k in self.names}
