"""GLCM voxel maps (PyRadiomics ``RadiomicsGLCM`` in voxel mode), from sparse cell lists.

For a kernel centred on voxel v and a direction a, PyRadiomics counts the ordered pairs
(p, p + a) with both voxels inside the kernel cube and inside the mask; the symmetrical GLCM adds
the transpose. Instead of dense ``Ng x Ng`` matrices per voxel, this module gathers the (at most
100 at r = 2) pairs of every kernel as *canonical* cell keys ``(min level, max level)`` (the
symmetrical matrix is determined by them), sorts and run-length encodes them row-wise into the
non-zero cells, and evaluates each feature on those cells:

* an off-diagonal canonical cell with c pairs stands for the two cells ``P_ab = P_ba = c / 2n``, a
  diagonal one for ``P_aa = 2c / 2n`` (n pairs in the kernel);
* sums over P and the ``|i - j|`` and ``i + j`` histograms (``pxSuby``, ``pxAddy``) are
  weighted bincounts of the cells (the difference and sum features are then small dense matrix
  products: at 60-80 gray levels a kernel direction has about as many distinct cells as
  histogram bins, so sums over the cells would not be cheaper); the marginals are kept compact,
  as the levels present in each kernel;
* MCC uses the compact matrix of the levels present in the kernel: the eigenvalues of PyRadiomics'
  ``Q = D^-1 P D^-1 P^T`` are the squares of those of the symmetric ``D^-1/2 P D^-1/2``; the
  matrices of a batch (several directions at a time, up to :data:`MCC_BUFFER` entries) are
  scattered, grouped by size, into one buffer and solved by one ``numpy.linalg.eigvalsh`` call per
  size (size 2 in closed form);
* Imc1 and Imc2 use the mutual information ``HXY2 - HXY`` summed over the cells from integer
  counts (exactly 0 for an independent matrix, as PyRadiomics' terms cancel exactly there), and
  entropies ``-sum p log2 p`` are ``log2(2n) - sum c log2 c / 2n`` with a table of ``c log2 c``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

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

#: Largest number of matrix entries of the MCC eigenproblems solved at once (16 MB of float64).
MCC_BUFFER = 2_000_000


def _pair_offsets(radius: int, angle: np.ndarray) -> np.ndarray:
    """Offsets o of the kernel cube such that o + angle is inside the cube too."""
    r = np.arange(-radius, radius + 1)
    zz, yy, xx = np.meshgrid(r, r, r, indexing="ij")
    o = np.stack([zz.ravel(), yy.ravel(), xx.ravel()], 1)
    inside = np.all(np.abs(o + angle[None, :]) <= radius, 1)
    return o[inside]


def _second_eigenvalue(buf: np.ndarray, size: int) -> np.ndarray:
    """MCC of a stack of ``D^-1/2 P D^-1/2`` matrices (lower triangles filled).

    Args:
        buf: Flat buffer of ``k`` C-ordered ``size x size`` matrices; only the lower triangle
            (row >= column) is read.
        size: Matrix size (number of gray levels in the kernel), >= 2.

    Returns:
        (k,) the largest absolute eigenvalue besides the top eigenvalue 1.
    """
    M = buf.reshape(-1, size, size)
    if size == 2:
        # eigenvalues 1 and trace - 1
        return np.abs(M[:, 0, 0] + M[:, 1, 1] - 1.0)
    ev = np.linalg.eigvalsh(M, UPLO="L")  # ascending; ev[:, -1] is the eigenvalue 1
    return np.maximum(np.abs(ev[:, -2]), np.abs(ev[:, 0]))


@dataclass
class _Runs:
    """One direction's symmetrical GLCMs of a batch of kernels, as runs of canonical keys.

    Attributes:
        N: Number of kernels (rows).
        key: Canonical cell key of every run (``S`` for the no-pair run).
        cnt: Pairs of every run (0 for the no-pair run).
        first: Index of the first run of every row.
        row: Row of every run.
        empty: Rows without any pair.
        n2: Sum of every row's symmetrical GLCM (twice its pairs, at least 2).
        log_n2: ``log2(n2)``.
        v: Value of the symmetrical matrix' cell(s) of every run (``2c`` on the diagonal).
        cf: ``cnt`` as float: half the total mass of the cell(s) of a canonical key.
    """

    N: int
    key: np.ndarray
    cnt: np.ndarray
    first: np.ndarray
    row: np.ndarray
    empty: np.ndarray
    n2: np.ndarray
    log_n2: np.ndarray
    v: np.ndarray
    cf: np.ndarray


@dataclass
class _Marginals:
    """Marginal counts of a batch's GLCMs, compact (the levels present in each kernel only).

    Attributes:
        ia, ib: Per run, the index in ``mc`` of its two levels.
        mc: Marginal counts (float) over every kernel's own level range, end to end (for
            look-ups by ``ia`` / ``ib``).
        nz: Index in ``mc`` of every level present, sorted (kernel by kernel).
        row: Row of every level present; ``cnt`` its marginal count (float), ``cnti`` (int).
        gv: Gray value (bin number) of every level present.
        nlev: (N,) levels present per kernel.
        ux: (N,) joint average; ``autocorr`` (N,) the autocorrelation.
    """

    ia: np.ndarray
    ib: np.ndarray
    mc: np.ndarray
    nz: np.ndarray
    row: np.ndarray
    cnt: np.ndarray
    cnti: np.ndarray
    gv: np.ndarray
    nlev: np.ndarray
    ux: np.ndarray
    autocorr: np.ndarray


class GLCM(KernelCalculator):
    """Vectorised GLCM features over masked kernels (distance 1, 13 directions, symmetrical)."""

    def __init__(self, prep: Prepared, settings: VoxelMapSettings, names: tuple[str, ...]) -> None:
        super().__init__(prep, settings, names)
        G = self.G
        G1 = G + 1
        self.ng = int(prep.ng)
        gi = np.concatenate([[0], prep.gray_levels.astype(np.int64)])
        self.gi = gi
        self.gv = gi.astype(np.float64)
        lev = prep.levels.ravel()
        # canonical cell key a * (G + 1) + b (level indices 1 <= a <= b <= G); S = no pair
        S = G1 * G1
        self.S = S
        self.key_dtype = np.int16 if np.iinfo(np.int16).max > S else np.int32
        keys = np.arange(S + 1)
        ta = np.where(keys < S, keys // G1, 0)
        tb = np.where(keys < S, keys % G1, 0)
        self.tab_a = ta.astype(np.intp)
        self.tab_b = tb.astype(np.intp)
        self.tab_diag = (ta == tb).astype(np.int64)
        self.tab_mult = np.where(ta == tb, 1.0, 2.0)  # cells a canonical key stands for
        self.tab_d = np.abs(gi[ta] - gi[tb])  # |i - j| of the gray levels
        self.tab_s = gi[ta] + gi[tb]  # i + j
        self.tab_2ij = 2.0 * gi[ta] * gi[tb]  # both orders' i j
        # weights of the features linear in pxSuby (k = |i - j| = 0 .. Ng - 1)
        kd = np.arange(self.ng, dtype=np.float64)
        inv_k2 = np.zeros(self.ng)
        inv_k2[1:] = 1.0 / kd[1:] ** 2
        self.kd = kd
        self.wd = np.stack(
            [
                kd**2,  # Contrast
                kd,  # DifferenceAverage
                1.0 / (1.0 + kd**2),  # Idm
                1.0 / (1.0 + kd**2 / float(self.ng) ** 2),  # Idmn
                1.0 / (1.0 + kd),  # Id
                1.0 / (1.0 + kd / float(self.ng)),  # Idn
                inv_k2,  # InverseVariance
            ],
            1,
        )
        self.ks = np.arange(2 * self.ng + 1, dtype=np.float64)
        # the histogram features from the cells when the |i - j| histogram has more bins than a
        # kernel direction has pairs (at most W = 100 at r = 2), else from dense histograms
        W = max(len(_pair_offsets(settings.kernel_radius, a)) for a in GLCM_ANGLES)
        self.cell_hist = self.ng > W
        # x log2(x) for every possible count of a cell, a marginal or a histogram bin of the
        # symmetrical matrix (at most twice the number of pairs in a kernel)
        x = np.arange(2 * (2 * settings.kernel_radius + 1) ** 3 + 1, dtype=np.float64)
        self.xlogx = x * np.log2(np.where(x > 0, x, 1.0))
        # directions without any pair in the whole ROI are deleted (PyRadiomics deletes those
        # empty in the whole batch; with its default voxelBatch the batch is the whole ROI)
        self.any_empty = False
        self.angles: list[tuple[np.ndarray, np.ndarray]] = []
        for a in GLCM_ANGLES:
            af = int(prep.flat_offsets(a[None, :])[0])  # > 0 for PyRadiomics' 13 directions
            if not np.any((lev[prep.flat] > 0) & (lev[prep.flat + af] > 0)):
                continue
            # key image: for every voxel p the canonical cell key of the pair (p, p + a)
            nb = np.zeros_like(lev)
            nb[:-af] = lev[af:]
            ok = (lev > 0) & (nb > 0)
            kimg = np.where(ok, np.minimum(lev, nb) * G1 + np.maximum(lev, nb), S)
            po = _pair_offsets(settings.kernel_radius, a)
            self.angles.append((kimg.astype(self.key_dtype), prep.flat_offsets(po)))
            if not self.any_empty:
                # kernels without any pair in this direction (box count of the pair starts)
                counts = box_count(ok.reshape(prep.shape), po.min(0), po.max(0), prep.flat)
                self.any_empty = bool(np.any(counts == 0))
        if len(self.angles) < len(GLCM_ANGLES):
            logger.debug("GLCM: %d of 13 directions have no pair in the ROI", 13 - len(self.angles))
        want = set(names)
        self.mcc = "MCC" in want and not self.any_empty and G >= 2

    def batch(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Compute the features of a batch of voxels.

        Args:
            flat: Flat indices (padded array) of the kernel centres.

        Returns:
            ``{feature: (N,) values}`` (MCC before the ROI-wide rules of :meth:`finalize`).
        """
        N = flat.size
        if not self.angles:  # no pair anywhere in the ROI (e.g. isolated voxels): all NaN
            return {k: np.full(N, np.nan) for k in self.names}
        D = len(self.angles)
        per = {k: np.empty((N, D)) for k in self.names}
        if "MCC" in per:
            per["MCC"][:] = 0.0  # set ROI-wide in finalize unless computed below
        pending: list[tuple[int, tuple]] = []  # directions whose MCC matrices wait
        size = 0  # their buffer size
        for d, (kimg, oa) in enumerate(self.angles):
            res, cell = self._angle(flat, kimg, oa)
            for k in self.names:
                if k != "MCC":
                    per[k][:, d] = res[k]
            if self.mcc:
                pending.append((d, cell))
                size += int(np.sum(cell[4].astype(np.int64) ** 2))
                if size > MCC_BUFFER or d == D - 1:  # bound the memory of the eigenproblems
                    mcc = self._mcc([c for _, c in pending], N).reshape(len(pending), N)
                    for j, (dd, _) in enumerate(pending):
                        per["MCC"][:, dd] = mcc[j]
                    pending, size = [], 0
        out = {}
        for k in self.names:
            # PyRadiomics averages JointAverage with mean (NaN if a direction is empty), all
            # other features with nanmean over the directions
            out[k] = per[k].mean(1) if k == "JointAverage" else np.nanmean(per[k], 1)
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
        self, flat: np.ndarray, kimg: np.ndarray, oa: np.ndarray
    ) -> tuple[dict[str, np.ndarray], tuple]:
        """Features of one direction for a batch of kernels.

        Returns:
            The features (NaN for kernels without pairs) and the MCC inputs (when MCC is
            computed): per cell its row, the ranks of its two levels among the kernel's levels
            and its value ``C_ab / sqrt(c_a c_b)``, and per row the number of levels.
        """
        r = self._runs(flat, kimg, oa)
        res: dict[str, np.ndarray] = {}
        m = self._marginal_features(r, res)
        if self.cell_hist:
            self._histogram_features_cells(r, m.ux, res)
        else:
            self._difference_features(r, res)
            self._sum_features(r, m.ux, res)
        self._correlation_features(r, m, res)
        mab = self._cell_features(r, m, res)
        out = {}
        for k in self.names:
            if k != "MCC":
                val = res[k]
                val[r.empty] = np.nan
                out[k] = val
        cell: tuple = ()
        if self.mcc:
            # M_ab = C_ab / sqrt(c_a c_b) with C the symmetrical count matrix, c its row sums
            nlev = m.nlev
            keep = np.flatnonzero((r.cnt > 0) & (nlev[r.row] >= 2))
            # rank of every present level among its kernel's levels (dense, for look-ups)
            rank = np.zeros(m.mc.size, dtype=np.intp)
            rank[m.nz] = np.arange(m.nz.size) - (np.cumsum(nlev) - nlev)[m.row]
            val = r.v[keep] / np.sqrt(mab[keep])
            cell = (r.row[keep], rank[m.ia[keep]], rank[m.ib[keep]], val, nlev)
        return out, cell

    def _runs(self, flat: np.ndarray, kimg: np.ndarray, oa: np.ndarray) -> _Runs:
        """The sorted canonical keys of every kernel, run-length encoded into its non-zero
        cells."""
        N = flat.size
        W = oa.size
        s = np.sort(kimg[flat[:, None] + oa[None, :]], axis=1).ravel()
        new = np.empty(s.size, dtype=bool)
        new[0] = True
        np.not_equal(s[1:], s[:-1], out=new[1:])
        new[::W] = True
        starts = np.flatnonzero(new)
        key = s[starts].astype(np.intp)
        cnt = np.diff(starts, append=s.size)
        cnt[key == self.S] = 0  # the no-pair run (last of its row)
        first = np.searchsorted(starts, np.arange(N) * W)  # first run of every row
        row = np.repeat(np.arange(N), np.diff(first, append=starts.size))
        npair = np.add.reduceat(cnt, first)
        n2i = 2 * np.maximum(npair, 1)  # sum of the symmetrical GLCM
        n2 = n2i.astype(np.float64)
        return _Runs(
            N=N,
            key=key,
            cnt=cnt,
            first=first,
            row=row,
            empty=npair == 0,
            n2=n2,
            log_n2=np.log2(n2),
            v=cnt << self.tab_diag[key],  # value of the symmetrical matrix' cell(s) (2c diagonal)
            cf=cnt.astype(np.float64),  # half the total mass of the cell(s) of a canonical key
        )

    def _marginal_features(self, r: _Runs, res: dict[str, np.ndarray]) -> _Marginals:
        """JointAverage and Autocorrelation; the marginal counts of the levels present (px = py,
        the matrix is symmetrical), counted per kernel over its own level range only."""
        N = r.N
        ta, tb = self.tab_a[r.key], self.tab_b[r.key]
        lo = ta[r.first]  # lowest level of every kernel (keys are sorted; 0 if no pair)
        width = np.maximum.reduceat(tb, r.first) - lo + 1
        off = np.cumsum(width) - width
        base = off[r.row] - lo[r.row]
        # flat index of each run's two levels (the no-pair run, level 0, at its row's start)
        ia = np.where(ta > 0, base + ta, off[r.row])
        ib = np.where(tb > 0, base + tb, off[r.row])
        mc = np.bincount(
            np.concatenate([ia, ib]), np.concatenate([r.cf, r.cf]), int(off[-1] + width[-1])
        )
        nz = np.flatnonzero(mc)  # the levels present, per kernel in increasing order
        row = np.searchsorted(off, nz, side="right") - 1
        cnt = mc[nz]
        gv = self.gv[lo[row] + nz - off[row]]
        ux = np.bincount(row, cnt * gv, N) / r.n2
        res["JointAverage"] = ux
        autocorr = np.bincount(r.row, r.cf * self.tab_2ij[r.key], N) / r.n2
        res["Autocorrelation"] = autocorr
        return _Marginals(
            ia=ia,
            ib=ib,
            mc=mc,
            nz=nz,
            row=row,
            cnt=cnt,
            cnti=cnt.astype(np.intp),
            gv=gv,
            nlev=np.bincount(row, minlength=N),
            ux=ux,
            autocorr=autocorr,
        )

    def _difference_features(self, r: _Runs, res: dict[str, np.ndarray]) -> None:
        """The features of the ``|i - j|`` histogram (pxSuby) over PyRadiomics' k range."""
        ng, N = self.ng, r.N
        hdc = 2.0 * np.bincount(r.row * ng + self.tab_d[r.key], r.cf, N * ng).reshape(N, ng)
        hd = hdc / r.n2[:, None]
        lin = hd @ self.wd
        for j, k in enumerate(
            ("Contrast", "DifferenceAverage", "Idm", "Idmn", "Id", "Idn", "InverseVariance")
        ):
            res[k] = lin[:, j]
        da = lin[:, 1]
        if "DifferenceVariance" in self.names:
            res["DifferenceVariance"] = np.sum(hd * (self.kd[None, :] - da[:, None]) ** 2, 1)
        # entropies -sum p log2 p with p = count / n2: log2(n2) - sum count log2(count) / n2
        if "DifferenceEntropy" in self.names:
            hde = self.xlogx[hdc.astype(np.intp)].sum(1)
            res["DifferenceEntropy"] = r.log_n2 - hde / r.n2

    def _sum_features(self, r: _Runs, ux: np.ndarray, res: dict[str, np.ndarray]) -> None:
        """The features of the ``i + j`` histogram (pxAddy) over PyRadiomics' k range."""
        ng, N = self.ng, r.N
        hsc = np.bincount(r.row * (2 * ng + 1) + self.tab_s[r.key], r.cf, N * (2 * ng + 1))
        hsc = 2.0 * hsc.reshape(N, 2 * ng + 1)
        hs = hsc / r.n2[:, None]
        ks = self.ks
        res["SumAverage"] = hs @ ks
        if "SumEntropy" in self.names:
            res["SumEntropy"] = r.log_n2 - self.xlogx[hsc.astype(np.intp)].sum(1) / r.n2
        if {"ClusterTendency", "ClusterShade", "ClusterProminence"} & set(self.names):
            t = ks[None, :] - 2.0 * ux[:, None]
            t2 = hs * (t * t)
            res["ClusterTendency"] = t2.sum(1)
            t2 *= t
            res["ClusterShade"] = t2.sum(1)
            t2 *= t
            res["ClusterProminence"] = t2.sum(1)

    def _entropy_sum(
        self, r: _Runs, bins: np.ndarray, lo: np.ndarray, width: np.ndarray
    ) -> np.ndarray:
        """Per kernel ``sum_k h_k log2 h_k`` of the histogram ``h`` of the symmetrical matrix
        over ``bins`` (one bin per run; a kernel's bins in ``[lo, lo + width)``), counted over
        each kernel's own bin range."""
        off = np.cumsum(width) - width
        rel = np.where(r.cnt > 0, bins - lo[r.row], 0)  # the no-pair run at its row's start
        h = np.bincount(off[r.row] + rel, r.cf, int(off[-1] + width[-1]))
        nz = np.flatnonzero(h)
        row = np.searchsorted(off, nz, side="right") - 1
        return np.bincount(row, self.xlogx[2 * h[nz].astype(np.intp)], r.N)

    def _histogram_features_cells(
        self, r: _Runs, ux: np.ndarray, res: dict[str, np.ndarray]
    ) -> None:
        """The ``|i - j|`` and ``i + j`` histogram features (pxSuby, pxAddy) summed over the
        cells (a canonical cell of c pairs adds ``2c / n2`` at its ``k``): with many gray levels
        a kernel direction has fewer cells than the histograms have bins."""
        N, row, cf = r.N, r.row, r.cf
        w2 = 2.0 / r.n2
        # every kernel's gray-value range: its histograms' bins
        gmin = self.gi[self.tab_a[r.key[r.first]]]
        grange = self.gi[np.maximum.reduceat(self.tab_b[r.key], r.first)] - gmin
        d = self.tab_d[r.key]
        lin = np.add.reduceat(cf[:, None] * self.wd[d], r.first, axis=0) * w2[:, None]
        for j, k in enumerate(
            ("Contrast", "DifferenceAverage", "Idm", "Idmn", "Id", "Idn", "InverseVariance")
        ):
            res[k] = lin[:, j]
        t = d - lin[row, 1]
        res["DifferenceVariance"] = np.bincount(row, cf * (t * t), N) * w2
        # entropies -sum p log2 p with p = count / n2: log2(n2) - sum count log2(count) / n2
        if "DifferenceEntropy" in self.names:
            hd = self._entropy_sum(r, d, np.zeros_like(gmin), grange + 1)
            res["DifferenceEntropy"] = r.log_n2 - hd / r.n2
        s = self.tab_s[r.key]
        res["SumAverage"] = np.bincount(row, cf * s, N) * w2
        if "SumEntropy" in self.names:
            hs = self._entropy_sum(r, s, 2 * gmin, 2 * grange + 1)
            res["SumEntropy"] = r.log_n2 - hs / r.n2
        t = s - 2.0 * ux[row]
        t2 = cf * (t * t)
        res["ClusterTendency"] = np.bincount(row, t2, N) * w2
        t2 *= t
        res["ClusterShade"] = np.bincount(row, t2, N) * w2
        t2 *= t
        res["ClusterProminence"] = np.bincount(row, t2, N) * w2

    def _correlation_features(self, r: _Runs, m: _Marginals, res: dict[str, np.ndarray]) -> None:
        """SumSquares and Correlation."""
        if {"SumSquares", "Correlation"} & set(self.names):
            ux = m.ux
            # sum_ij P (i - ux)^2 = sum_i px_i (i - ux)^2; exactly 0 for a single level
            t = m.gv - ux[m.row]
            ss = np.bincount(m.row, m.cnt * (t * t), r.N) / r.n2
            res["SumSquares"] = ss
            prod = ss**0.5 * ss**0.5
            # sum_ij P (i - ux)(j - uy) = sum_ij P i j - ux^2
            corr = (m.autocorr - ux * ux) / (prod + EPS)
            corr[prod == 0] = 1.0
            res["Correlation"] = corr

    def _cell_features(self, r: _Runs, m: _Marginals, res: dict[str, np.ndarray]) -> np.ndarray:
        """The cell-wise features (an off-diagonal key stands for two cells of value v).

        Returns:
            Per cell ``c_a c_b`` (its levels' marginal counts multiplied; exact integers), for
            the MCC inputs.
        """
        N, row, v, n2, log_n2, xlogx = r.N, r.row, r.v, r.n2, r.log_n2, self.xlogx
        mult = self.tab_mult[r.key]
        res["JointEnergy"] = np.bincount(row, mult * (v * v), N) / (n2 * n2)
        hxy = log_n2 - np.bincount(row, mult * xlogx[v], N) / n2
        res["JointEntropy"] = hxy
        res["MaximumProbability"] = np.maximum.reduceat(v, r.first) / n2
        nlev = m.nlev
        mab = m.mc[m.ia] * m.mc[m.ib]  # c_a c_b (exact integers)
        if {"Imc1", "Imc2"} & set(self.names):
            # HXY1 = -sum_ij P_ij log2(px_i py_j + eps) and HXY2 = -sum_ij px_i py_j
            # log2(px_i py_j + eps) both equal 2 HX up to eps (px_i py_j >= 1 / (2 n)^2, so
            # < 1e-10 relative), so HXY2 - HXY = HXY1 - HXY = the mutual information
            # sum_ij P_ij log2(P_ij / (px_i py_j)), summed here from the cells: exactly 0 for an
            # independent matrix (where PyRadiomics' terms cancel exactly too) and without the
            # cancellation of a difference of entropies
            hx = log_n2 - np.bincount(m.row, xlogx[m.cnti], N) / n2  # HX = -sum_x px log2 px
            lr = np.zeros(mab.size)  # log2(P_ij / (px_i py_j)) = log2(C_ij 2n / (c_i c_j))
            np.log2((v * n2[row]) / mab, out=lr, where=r.cnt > 0)
            mi = np.bincount(row, (mult * v) * lr, N) / n2
            imc1 = -mi / np.where(nlev > 1, hx, 1.0)
            imc1[nlev == 1] = 0.0  # P = [[1]]: PyRadiomics' HXY == HXY1 exactly
            res["Imc1"] = imc1
            imc2 = (1 - np.exp(-2 * mi)) ** 0.5
            imc2[nlev == 1] = 0.0  # P = [[1]]: PyRadiomics' HXY2 == HXY exactly
            res["Imc2"] = imc2
        return mab

    def _mcc(self, cells: list[tuple], N: int) -> np.ndarray:
        """Maximal correlation coefficient of every kernel and direction of a batch.

        The eigenvalues of ``Q = D^-1 P D^-1 P^T`` (D = diag(px), P symmetric) are the squares of
        those of ``M = D^-1/2 P D^-1/2``, so MCC = the second largest ``|lambda(M)|``. The
        matrices are scattered into one buffer, grouped by size, and solved per size.

        Args:
            cells: Per direction (D of them) the MCC inputs from :meth:`_angle`.
            N: Number of kernels in the batch.

        Returns:
            (D * N,) MCC per direction and kernel (0 where a kernel has fewer than 2 levels).
        """
        nlev = np.concatenate([c[4] for c in cells])  # (D * N,) levels per kernel and direction
        size = np.where(nlev >= 2, nlev, 0).astype(np.int64)
        out = np.zeros(size.size)
        order = np.argsort(size, kind="stable")
        count = np.bincount(size, minlength=2)
        first = np.cumsum(count) - count  # first position in `order` of every size
        pos = np.empty(size.size, dtype=np.int64)
        pos[order] = np.arange(size.size) - first[size[order]]  # rank within its size group
        area = np.arange(count.size) ** 2
        block = np.cumsum(count * area) - count * area  # buffer offset of every size group
        base = block[size] + pos * area[size]  # buffer offset of every matrix
        buf = np.zeros(int((count * area).sum()))
        for d, (r, ra, rb, val, _) in enumerate(cells):
            L = size[d * N + r]
            buf[base[d * N + r] + rb * L + ra] = val  # lower triangle (rb >= ra)
        for L in np.flatnonzero(count[2:]) + 2:
            sel = order[first[L] : first[L] + count[L]]
            out[sel] = _second_eigenvalue(buf[block[L] : block[L] + count[L] * L * L], int(L))
        return out
