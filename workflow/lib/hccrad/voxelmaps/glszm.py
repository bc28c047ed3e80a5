"""GLSZM voxel maps (PyRadiomics ``RadiomicsGLSZM`` in voxel mode).

In a kernel centred on c, the zones are the 26-connected components of same-level mask voxels
*inside the kernel cube* (PyRadiomics' C region growing is limited to the kernel box). For a batch
of kernels, every kernel is a separate copy of the ``(2r+1)^3`` cube graph: an edge joins two
26-neighbouring cube voxels when both are mask voxels of the same gray level. The connected
components of the whole batch graph (:func:`components`: hooking and pointer jumping in numpy,
a few rounds on these small local graphs; no scipy import) are the zones; each
zone contributes one count to ``P[i, j]`` of its kernel (i its gray level, j its size). Features
follow PyRadiomics' formulas, with sums over the non-zero cells of ``P`` instead of the dense
``(Ng, Ns)`` matrix.
"""

from __future__ import annotations

import numpy as np

from hccrad.voxelmaps.core import (
    GLCM_ANGLES,
    KernelCalculator,
    Prepared,
    VoxelMapSettings,
    kernel_cube,
)


def components(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Connected components of an undirected graph by hooking and pointer jumping.

    Args:
        n: Number of nodes.
        src, dst: The edges' end nodes.

    Returns:
        (n,) every node's label: the smallest node of its component.
    """
    lab = np.arange(n)
    while src.size:
        a, b = lab[src], lab[dst]
        keep = a != b  # edges whose ends are not in one tree yet
        if not keep.any():
            break
        src, dst, a, b = src[keep], dst[keep], a[keep], b[keep]
        # hook the larger root under the smaller one, then flatten the trees to their roots
        np.minimum.at(lab, np.maximum(a, b), np.minimum(a, b))
        while True:
            up = lab[lab]
            if np.array_equal(up, lab):
                break
            lab = up
    return lab


class GLSZM(KernelCalculator):
    """Vectorised GLSZM features over masked kernels (26-connectivity)."""

    def __init__(self, prep: Prepared, settings: VoxelMapSettings, names: tuple[str, ...]) -> None:
        super().__init__(prep, settings, names)
        r = settings.kernel_radius
        offs = kernel_cube(r)
        self.M = len(offs)  # voxels in the cube = largest possible zone
        self.offs_flat = prep.flat_offsets(offs)
        # edges of the cube graph: (o, o + a) with both ends in the cube, a one of 13 directions;
        # same[a][p]: p and p + a are mask voxels of the same gray level (whole padded image)
        k = 2 * r + 1
        index = np.arange(self.M).reshape(k, k, k)
        lev = prep.levels.ravel()
        size = lev.size
        same = np.zeros((len(GLCM_ANGLES), size), dtype=bool)
        us, vs, base = [], [], []
        for d, a in enumerate(GLCM_ANGLES):
            af = int(prep.flat_offsets(a[None, :])[0])  # > 0
            same[d, :-af] = (lev[:-af] > 0) & (lev[:-af] == lev[af:])
            src = tuple(slice(max(0, -x), k - max(0, x)) for x in a)
            dst = tuple(slice(max(0, x), k + min(0, x)) for x in a)
            us.append(index[src].ravel())
            vs.append(index[dst].ravel())
            base.append(d * size + self.offs_flat[us[-1]])
        self.same = same.ravel()
        eu = np.concatenate(us)
        order = np.argsort(eu, kind="stable")  # edges by source node: batch edges come CSR-sorted
        self.eu = eu[order]
        self.ev = np.concatenate(vs)[order]
        self.edge_base = np.concatenate(base)[order]
        self.iv = prep.gray_levels
        self.jv = np.arange(1, self.M + 1, dtype=np.float64)

    def batch(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Compute the features of a batch of voxels.

        Args:
            flat: Flat indices (padded array) of the kernel centres.

        Returns:
            ``{feature: (N,) values}``.
        """
        # (N, edges) gathers: split the batch so that one block stays below ~40 MB
        step = max(1, int(5e6 // self.eu.size))
        if flat.size > step:
            parts = [self.batch(flat[i : i + step]) for i in range(0, flat.size, step)]
            return {k: np.concatenate([p[k] for p in parts]) for k in self.names}
        cr, cl, cs, cnt = self._cells(flat)
        return self._features(flat.size, cr, cl, cs, cnt)

    def _zones(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The zones of the kernels centred on ``flat``: each zone's kernel (row), gray level
        and size."""
        N, M = flat.size, self.M
        lev = self.prep.levels.ravel()[flat[:, None] + self.offs_flat[None, :]]  # (N, M)
        same = self.same[flat[:, None] + self.edge_base[None, :]]  # (N, edges)
        rows, e = np.divmod(np.flatnonzero(same), self.eu.size)
        labels = components(N * M, rows * M + self.eu[e], rows * M + self.ev[e])
        # one zone per component: its label is its smallest node, in the zone's kernel (row)
        size = np.bincount(labels[np.flatnonzero(lev)], minlength=N * M)
        zone = np.flatnonzero(size)
        return zone // M, lev.ravel()[zone], size[zone]

    def _cells(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The non-zero cells of every kernel's ``P``: kernel (row), level, size and zone
        count (float)."""
        M, G = self.M, self.G
        zr, zl, zs = self._zones(flat)
        keys, cnt = np.unique((zr * (G + 1) + zl) * (M + 1) + zs, return_counts=True)
        cs = keys % (M + 1)
        cl = (keys // (M + 1)) % (G + 1)
        cr = keys // ((M + 1) * (G + 1))
        return cr, cl, cs, cnt.astype(np.float64)

    def _features(
        self, N: int, cr: np.ndarray, cl: np.ndarray, cs: np.ndarray, cnt: np.ndarray
    ) -> dict[str, np.ndarray]:
        """The features of ``N`` kernels from the non-zero cells of their ``P`` (sorted by
        kernel, level, size): the gray-level sums run over the levels present in each kernel, the
        size sums over the (2r + 1)^3 possible sizes."""
        M, G = self.M, self.G
        # zones per (kernel, level present): the cells' runs of one (kernel, level)
        new = np.empty(cr.size, dtype=bool)
        new[0] = True
        np.not_equal(cr[1:] * (G + 1) + cl[1:], cr[:-1] * (G + 1) + cl[:-1], out=new[1:])
        starts = np.flatnonzero(new)
        pgv = np.add.reduceat(cnt, starts)
        prow = cr[starts]
        ps = np.bincount(cr * (M + 1) + cs, cnt, N * (M + 1)).reshape(N, M + 1)[:, 1:]
        iv, jv = self.iv, self.jv
        nz = ps.sum(1)
        nz[nz == 0] = 1  # never happens: the centre is a mask voxel
        n_p = np.sum(ps * jv[None, :], 1)
        n_p[n_p == 0] = 1
        res: dict[str, np.ndarray] = {}
        want = set(self.names)
        res["SmallAreaEmphasis"] = np.sum(ps / jv[None, :] ** 2, 1) / nz
        res["LargeAreaEmphasis"] = np.sum(ps * jv[None, :] ** 2, 1) / nz
        gln = np.bincount(prow, pgv * pgv, N)
        res["GrayLevelNonUniformity"] = gln / nz
        res["GrayLevelNonUniformityNormalized"] = gln / nz**2
        res["SizeZoneNonUniformity"] = np.sum(ps**2, 1) / nz
        res["SizeZoneNonUniformityNormalized"] = np.sum(ps**2, 1) / nz**2
        res["ZonePercentage"] = nz / n_p
        pi = iv[cl[starts] - 1]  # gray level (bin number) of each (kernel, level)
        ui = np.bincount(prow, pgv * pi, N) / nz
        res["GrayLevelVariance"] = np.bincount(prow, pgv * (pi - ui[prow]) ** 2, N) / nz
        psn = ps / nz[:, None]
        uj = np.sum(psn * jv[None, :], 1, keepdims=True)
        res["ZoneVariance"] = np.sum(psn * (jv[None, :] - uj) ** 2, 1)
        if "ZoneEntropy" in want:
            p = cnt / nz[cr]
            res["ZoneEntropy"] = -np.bincount(cr, p * np.log2(p + np.spacing(1)), N)
        res["LowGrayLevelZoneEmphasis"] = np.bincount(prow, pgv / pi**2, N) / nz
        res["HighGrayLevelZoneEmphasis"] = np.bincount(prow, pgv * pi**2, N) / nz
        ci = iv[cl - 1]  # gray level (bin number) of each cell
        cj = cs.astype(np.float64)

        def cell_sum(w: np.ndarray) -> np.ndarray:
            return np.bincount(cr, cnt * w, N) / nz

        i2, j2 = ci**2, cj**2
        if "SmallAreaLowGrayLevelEmphasis" in want:
            res["SmallAreaLowGrayLevelEmphasis"] = cell_sum(1.0 / (i2 * j2))
        if "SmallAreaHighGrayLevelEmphasis" in want:
            res["SmallAreaHighGrayLevelEmphasis"] = cell_sum(i2 / j2)
        if "LargeAreaLowGrayLevelEmphasis" in want:
            res["LargeAreaLowGrayLevelEmphasis"] = cell_sum(j2 / i2)
        if "LargeAreaHighGrayLevelEmphasis" in want:
            res["LargeAreaHighGrayLevelEmphasis"] = cell_sum(i2 * j2)
        return {k: res[k] for k in self.names}
