"""GLCM voxel maps (PyRadiomics ``RadiomicsGLCM`` in voxel mode), from sparse pair lists.

For a kernel centred on voxel v and a direction a, PyRadiomics counts the ordered pairs
(p, p + a) with both voxels inside the kernel cube and inside the mask; the symmetrical GLCM adds
the transpose.
Instead of dense ``Ng x Ng`` matrices per voxel, this module gathers the (at most a few hundred)
pairs of every kernel and evaluates each feature directly on them:

* features linear in P (``sum_ij P_ij f(i, j)``) are pair sums;
* features of the cell counts (joint energy / entropy, maximum probability), of the
  ``|i - j|`` and ``i + j`` histograms, and of the marginals are computed from sorted keys
  (run lengths) and per-row bincounts;
* MCC uses the compact matrix of the levels present in the kernel: the eigenvalues of PyRadiomics'
  ``Q = D^-1 P D^-1 P^T`` are the squares of those of the symmetric ``D^-1/2 P D^-1/2``.
"""

from __future__ import annotations

import logging

import numpy as np

from hccrad.voxelmaps.core import (
    GLCM_ANGLES,
    KernelCalculator,
    Prepared,
    VoxelMapSettings,
    box_count,
)

logger = logging.getLogger(__name__)

EPS = float(np.spacing(1))


def _runs(keys: np.ndarray, sentinel: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run-length encode the rows of ``keys`` after sorting.

    Args:
        keys: (N, W) integer keys; ``sentinel`` marks invalid entries.
        sentinel: Key of invalid entries (largest key).

    Returns:
        ``(row, key, count, first)``: for every run its row, key and length (0 for sentinel runs),
        and the index of the first run of every row (each row has at least one run).
    """
    n, w = keys.shape
    s = np.sort(keys, axis=1).ravel()
    new = np.empty(s.size, dtype=bool)
    new[0] = True
    np.not_equal(s[1:], s[:-1], out=new[1:])
    new[::w] = True
    starts = np.flatnonzero(new)
    count = np.diff(starts, append=s.size)
    key = s[starts]
    count[key == sentinel] = 0
    row = starts // w
    first = np.searchsorted(starts, np.arange(n) * w)
    return row, key, count, first


def _pair_offsets(radius: int, angle: np.ndarray) -> np.ndarray:
    """Offsets o of the kernel cube such that o + angle is inside the cube too."""
    r = np.arange(-radius, radius + 1)
    zz, yy, xx = np.meshgrid(r, r, r, indexing="ij")
    o = np.stack([zz.ravel(), yy.ravel(), xx.ravel()], 1)
    inside = np.all(np.abs(o + angle[None, :]) <= radius, 1)
    return o[inside]


class GLCM(KernelCalculator):
    """Vectorised GLCM features over masked kernels (distance 1, 13 directions, symmetrical)."""

    def __init__(self, prep: Prepared, settings: VoxelMapSettings, names: tuple[str, ...]) -> None:
        super().__init__(prep, settings, names)
        self.ng = float(prep.ng)
        self.gv = np.concatenate([[0.0], prep.gray_levels])
        self.gi = np.concatenate([[0], prep.gray_levels.astype(np.int64)])
        lev = prep.levels.ravel()
        # directions without any pair in the whole ROI are deleted (PyRadiomics deletes those
        # empty in the whole batch; with its default voxelBatch the batch is the whole ROI)
        self.any_empty = False
        # per cell key (a * (G + 1) + b): level indices a, b and |i - j|, i + j of their gray levels
        keys = np.arange((self.G + 1) ** 2 + 1)
        self.tab_a = keys // (self.G + 1)
        self.tab_b = keys % (self.G + 1)
        gi = np.concatenate([self.gi, [0]])
        self.tab_d = np.abs(gi[np.minimum(self.tab_a, self.G)] - gi[self.tab_b])
        self.tab_s = gi[np.minimum(self.tab_a, self.G)] + gi[self.tab_b]
        self.angles: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        G = self.G
        sentinel = (G + 1) ** 2
        for a in GLCM_ANGLES:
            af = int(prep.flat_offsets(a[None, :])[0])  # > 0 for PyRadiomics' 13 directions
            if not np.any((lev[prep.flat] > 0) & (lev[prep.flat + af] > 0)):
                continue
            # key images: for every voxel p the cell keys of the pair (p, p + a) in both orders
            nb = np.zeros_like(lev)
            nb[:-af] = lev[af:]
            ok = (lev > 0) & (nb > 0)
            k1 = np.where(ok, lev * (G + 1) + nb, sentinel).astype(np.int32)
            k2 = np.where(ok, nb * (G + 1) + lev, sentinel).astype(np.int32)
            po = _pair_offsets(settings.kernel_radius, a)
            offs = prep.flat_offsets(po)
            self.angles.append((k1, k2, offs))
            if not self.any_empty:
                # kernels without any pair in this direction (box count of the pair starts)
                counts = box_count(ok.reshape(prep.shape), po.min(0), po.max(0), prep.flat)
                self.any_empty = bool(np.any(counts == 0))
        if len(self.angles) < len(GLCM_ANGLES):
            logger.debug("GLCM: %d of 13 directions have no pair in the ROI", 13 - len(self.angles))

    def batch(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Compute the features of a batch of voxels.

        Args:
            flat: Flat indices (padded array) of the kernel centres.

        Returns:
            ``{feature: (N,) values}`` (MCC before the ROI-wide check of :meth:`finalize`).
        """
        per_angle: dict[str, list[np.ndarray]] = {k: [] for k in self.names}
        if not self.angles:  # no pair anywhere in the ROI (e.g. isolated voxels): all NaN
            return {k: np.full(flat.size, np.nan) for k in self.names}
        for k1, k2, oa in self.angles:
            res, npair = self._angle(flat, k1, k2, oa)
            # a kernel without pairs in a kept direction has a NaN matrix (MCC convention)
            self.any_empty |= bool(np.any(npair == 0))
            for k in self.names:
                per_angle[k].append(res[k])
        out = {}
        for k in self.names:
            arr = np.stack(per_angle[k], 1)
            # PyRadiomics averages JointAverage with mean (NaN if a direction is empty), all
            # other features with nanmean over the directions
            out[k] = arr.mean(1) if k == "JointAverage" else np.nanmean(arr, 1)
        return out

    def finalize(self, res: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Apply ROI-wide conventions.

        PyRadiomics' MCC calls ``numpy.linalg.eigvals`` on all kernels at once; if any kernel has a
        direction without pairs (NaN matrix), the call raises and the whole MCC map keeps its
        initial value 0. The same happens here. With a single gray level in the ROI, MCC is 1.
        """
        if "MCC" in res:
            if self.G < 2:
                res["MCC"] = np.ones_like(res["MCC"])
            elif self.any_empty:
                logger.warning(
                    "GLCM MCC: a kernel has a direction without pairs; PyRadiomics fails and "
                    "leaves MCC at 0 for the whole ROI, as done here"
                )
                res["MCC"] = np.zeros_like(res["MCC"])
        return res

    def _angle(
        self, flat: np.ndarray, k1: np.ndarray, k2: np.ndarray, oa: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Features of one direction for a batch of kernels, and the number of pairs per kernel."""
        G = self.G
        ng = int(self.ng)
        N = flat.size
        S = (G + 1) ** 2
        idx = flat[:, None] + oa[None, :]
        # cells of the symmetrical GLCM: both orders of every pair, counted by sorting the keys
        keys = np.concatenate([k1[idx], k2[idx]], 1)
        npair = (keys[:, : oa.size] != S).sum(1)
        n2 = 2.0 * np.maximum(npair, 1)  # sum of the symmetrical GLCM
        row, key, cnt, first = _runs(keys, S)
        sel = cnt > 0
        r = row[sel]
        key = key[sel]
        a = self.tab_a[key]
        c = cnt[sel].astype(np.float64)
        p = c / n2[r]  # P_ab of every non-zero cell (true division, as PyRadiomics)
        ga = self.gv[a]
        want = set(self.names)
        res: dict[str, np.ndarray] = {}

        def rsum(x: np.ndarray) -> np.ndarray:
            return np.bincount(r, x, N)

        # marginal counts (px = py, the matrix is symmetrical)
        mc = np.bincount(r * (G + 1) + a, c, N * (G + 1)).reshape(N, G + 1)
        pxz = mc / n2[:, None]
        ux = rsum(p * ga)
        res["JointAverage"] = ux
        res["Autocorrelation"] = rsum(p * ga * self.gv[self.tab_b[key]])
        # |i - j| and i + j histograms (pxSuby, pxAddy) over PyRadiomics' k ranges
        hd = np.bincount(r * ng + self.tab_d[key], p, N * ng).reshape(N, ng)
        hs = np.bincount(r * (2 * ng + 1) + self.tab_s[key], p, N * (2 * ng + 1))
        hs = hs.reshape(N, 2 * ng + 1)
        kd = np.arange(ng, dtype=np.float64)
        ks = np.arange(2 * ng + 1, dtype=np.float64)
        res["Contrast"] = hd @ kd**2
        da = hd @ kd
        res["DifferenceAverage"] = da
        if "DifferenceVariance" in want:
            res["DifferenceVariance"] = np.sum(hd * (kd[None, :] - da[:, None]) ** 2, 1)
        res["Idm"] = hd @ (1.0 / (1.0 + kd**2))
        res["Idmn"] = hd @ (1.0 / (1.0 + kd**2 / self.ng**2))
        res["Id"] = hd @ (1.0 / (1.0 + kd))
        res["Idn"] = hd @ (1.0 / (1.0 + kd / self.ng))
        res["InverseVariance"] = hd[:, 1:] @ (1.0 / kd[1:] ** 2)
        if "DifferenceEntropy" in want:
            res["DifferenceEntropy"] = -np.sum(hd * np.log2(hd + EPS), 1)
        res["SumAverage"] = hs @ ks
        if "SumEntropy" in want:
            res["SumEntropy"] = -np.sum(hs * np.log2(hs + EPS), 1)
        if want & {"ClusterTendency", "ClusterShade", "ClusterProminence"}:
            t = ks[None, :] - 2.0 * ux[:, None]
            t2 = t * t
            res["ClusterTendency"] = np.sum(hs * t2, 1)
            res["ClusterShade"] = np.sum(hs * t2 * t, 1)
            res["ClusterProminence"] = np.sum(hs * t2 * t2, 1)
        if want & {"SumSquares", "Correlation"}:
            # sum_ij P (i - ux)^2 = sum_i px_i (i - ux)^2; exactly 0 for a single level
            ss = np.sum(pxz * (self.gv[None, :] - ux[:, None]) ** 2, 1)
            res["SumSquares"] = ss
            sig = ss**0.5
            prod = sig * sig
            # sum_ij P (i - ux)(j - uy) = sum_ij P i j - ux^2
            corr = (res["Autocorrelation"] - ux * ux) / (prod + EPS)
            corr[prod == 0] = 1.0
            res["Correlation"] = corr
        res["JointEnergy"] = rsum(p * p)
        hxy = -rsum(p * np.log2(p + EPS))
        res["JointEntropy"] = hxy
        res["MaximumProbability"] = np.maximum.reduceat(cnt, first) / n2
        if want & {"Imc1", "Imc2", "MCC"}:
            nlev = (mc > 0).sum(1)
            hx = -np.sum(pxz * np.log2(pxz + EPS), 1)
            # -sum_x px log2 px; HXY1 = -sum_ij P_ij log2(px_i py_j + eps) and
            # HXY2 = -sum_ij px_i py_j log2(px_i py_j + eps) both equal 2 * hx0 up to eps
            # (px_i py_j >= 1 / (2 n)^2, so < 1e-10 relative)
            hx0 = -np.sum(pxz * np.log2(np.where(pxz > 0, pxz, 1.0)), 1)
            imc1 = hxy - 2.0 * hx0
            imc1 = np.where(hx != 0, imc1 / np.where(hx != 0, hx, 1.0), 0.0)
            imc1[nlev == 1] = 0.0  # P = [[1]]: PyRadiomics' HXY == HXY1 exactly
            res["Imc1"] = imc1
            imc2 = (1 - np.exp(-2 * (2.0 * hx0 - hxy))) ** 0.5
            imc2[nlev == 1] = 0.0  # P = [[1]]: PyRadiomics' HXY2 == HXY exactly
            res["Imc2"] = imc2
            if "MCC" in want and self.any_empty:
                res["MCC"] = np.zeros(N)  # the whole map is 0 anyway (see finalize)
            elif "MCC" in want:
                res["MCC"] = self._mcc(r, a, self.tab_b[key], p, mc, pxz, nlev)
        empty = npair == 0
        out = {}
        for k in self.names:
            v = res[k]
            v[empty] = np.nan
            out[k] = v
        return out, npair

    def _mcc(
        self,
        r: np.ndarray,
        a: np.ndarray,
        b: np.ndarray,
        p: np.ndarray,
        mc: np.ndarray,
        pxz: np.ndarray,
        nlev: np.ndarray,
    ) -> np.ndarray:
        """Maximal correlation coefficient from compact per-kernel matrices.

        The eigenvalues of ``Q = D^-1 P D^-1 P^T`` (D = diag(px), P symmetric) are the squares of
        those of ``M = D^-1/2 P D^-1/2``, so MCC = the second largest ``|lambda(M)|``.
        """
        N = nlev.size
        G1 = self.G + 1
        out = np.zeros(N)
        rank = (np.cumsum(mc > 0, 1) - 1).ravel()
        ia = r * G1 + a
        ib = r * G1 + b
        pf = pxz.ravel()
        val = p / np.sqrt(pf[ia] * pf[ib])
        ra = rank[ia]
        rb = rank[ib]
        # cells are ordered by kernel (row): take each group's cells by their row ranges
        ncell = np.bincount(r, minlength=N)
        cstart = np.cumsum(ncell) - ncell
        # group kernels by their number of levels L to keep the eigenproblems small
        for L in np.unique(nlev[nlev >= 2]):
            rows_l = np.flatnonzero(nlev == L)
            cnt_l = ncell[rows_l]
            tot = int(cnt_l.sum())
            o = np.repeat(cstart[rows_l] - (np.cumsum(cnt_l) - cnt_l), cnt_l) + np.arange(tot)
            M = np.zeros((rows_l.size, L, L))
            M[np.repeat(np.arange(rows_l.size), cnt_l), ra[o], rb[o]] = val[o]
            ev = np.linalg.eigvalsh(M)  # ascending; ev[:, -1] is the eigenvalue 1
            out[rows_l] = np.maximum(np.abs(ev[:, -2]), np.abs(ev[:, 0]))
        return out
