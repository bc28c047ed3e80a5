"""Habitats: intratumoral subregions from per-patient K-means on voxel features.

The habitat study's recipe (``docs/habitats.md``):

1. per patient, the tumor's voxel features (voxel maps, optionally raw intensities) are
   z-scored within the patient and clustered by K-means for every k of a range (default 3..9);
   Calinski-Harabasz, Silhouette (on a seeded sample when large) and Davies-Bouldin are recorded
   per k (:func:`cluster_patient`);
2. one k for the cohort (:func:`choose_k`): each index is averaged over patients; each index votes
   for its best k (CH max, Silhouette max, DB min); the majority wins, otherwise the smallest sum
   of the three ranks, ties to the smaller k. A fixed k in the configuration overrides the vote;
3. consistent labels (:func:`reference_centroids`, :func:`match_clusters`): every patient's
   cluster means at the chosen k (in raw feature units) are pooled, z-scored over the pool and
   clustered again into k *reference* habitats, ordered by one feature (ascending; e.g. the mean
   intensity, so subregion 1 is the darkest). Each patient's clusters are matched one-to-one to
   the reference habitats by the Hungarian algorithm on the squared distances in the pooled
   z-space, so subregion ``i`` means the same thing in every patient.

No label or outcome is used anywhere: the cohort steps are unsupervised (see the leakage note in
``docs/habitats.md``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Name of the raw-intensity pseudo-map (``{phase}_intensity``).
INTENSITY = "intensity"
METRICS = ("calinski_harabasz", "silhouette", "davies_bouldin")


def derive_seed(root: int, *parts: object) -> int:
    """A stable 32-bit seed from a root seed and labels (e.g. the patient id).

    Args:
        root: The configuration's root seed.
        parts: Labels that make the stream unique (stable across runs and machines).

    Returns:
        An integer in ``[0, 2**32)``.
    """
    text = "/".join([str(root), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


@dataclass(frozen=True)
class HabitatSettings:
    """Clustering settings.

    Attributes:
        k_range: Inclusive range of k tried per patient.
        k: Fixed k for the cohort (overrides the vote), or None.
        seed: Seed of K-means and of the Silhouette sample.
        n_init: K-means restarts.
        silhouette_sample: Voxels sampled for the Silhouette when a tumor has more.
        order_by: Feature ordering the reference habitats (ascending); None = the first feature.
    """

    k_range: tuple[int, int] = (3, 9)
    k: int | None = None
    seed: int = 0
    n_init: int = 10
    silhouette_sample: int = 3000
    order_by: str | None = None

    def ks(self) -> list[int]:
        """The k values tried per patient (just ``k`` when fixed and outside the range)."""
        lo, hi = self.k_range
        if lo < 2 or hi < lo:
            raise ValueError(f"invalid k range {self.k_range}: need 2 <= low <= high")
        ks = list(range(lo, hi + 1))
        if self.k is not None and self.k not in ks:
            ks.append(self.k)
        return sorted(ks)


@dataclass
class PatientClustering:
    """One patient's K-means results for every k.

    Attributes:
        features: Feature names (columns of the clustered matrix).
        labels: k -> cluster index (0..k-1) per voxel.
        centroids: k -> (k, F) cluster means in raw feature units.
        sizes: k -> voxels per cluster.
        metrics: One row per k: ``k, calinski_harabasz, silhouette, davies_bouldin, inertia,
            n_voxels`` (NaN where undefined, e.g. fewer distinct voxels than k).
    """

    features: list[str]
    labels: dict[int, np.ndarray] = field(default_factory=dict)
    centroids: dict[int, np.ndarray] = field(default_factory=dict)
    sizes: dict[int, np.ndarray] = field(default_factory=dict)
    metrics: pd.DataFrame | None = None

    def centroid_table(self, k: int) -> pd.DataFrame:
        """Cluster means at ``k``: columns ``cluster, size`` + the features."""
        table = pd.DataFrame(self.centroids[k], columns=self.features)
        table.insert(0, "size", self.sizes[k])
        table.insert(0, "cluster", np.arange(k))
        return table


def standardize(X: np.ndarray) -> np.ndarray:
    """Z-score columns; NaN becomes the column mean (0); constant columns become 0.

    Args:
        X: (n_voxels, n_features) matrix.

    Returns:
        The standardised float64 matrix.
    """
    X = np.asarray(X, dtype=np.float64)
    mean = np.nanmean(X, axis=0) if X.size else np.zeros(X.shape[1])
    mean = np.where(np.isfinite(mean), mean, 0.0)
    sd = np.nanstd(X, axis=0) if X.size else np.ones(X.shape[1])
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, np.inf)
    Z = (X - mean) / sd
    return np.where(np.isfinite(Z), Z, 0.0)


def cluster_patient(
    X: np.ndarray, features: Sequence[str], settings: HabitatSettings
) -> PatientClustering:
    """K-means for every k of the range on one patient's z-scored voxel features.

    Args:
        X: (n_voxels, n_features) raw voxel features.
        features: Their names.
        settings: Clustering settings (``seed`` should already be the patient's own seed).

    Returns:
        Labels, raw-unit centroids, sizes and validity indices per k.

    Raises:
        ValueError: If the tumor has fewer voxels than the smallest k.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    ks = settings.ks()
    if n <= min(ks):
        raise ValueError(f"{n} tumor voxels: too few for k = {min(ks)}")
    Z = standardize(X)
    raw = np.where(np.isfinite(X), X, np.nanmean(X, axis=0))
    out = PatientClustering(features=list(features))
    rows = []
    for k in ks:
        if k >= n:
            continue
        km = KMeans(n_clusters=k, n_init=settings.n_init, random_state=settings.seed).fit(Z)
        lab = km.labels_.astype(np.int16)
        sizes = np.bincount(lab, minlength=k)
        out.labels[k] = lab
        out.sizes[k] = sizes
        out.centroids[k] = np.stack(
            [raw[lab == c].mean(0) if sizes[c] else np.full(X.shape[1], np.nan) for c in range(k)]
        )
        row = {"k": k, "inertia": float(km.inertia_), "n_voxels": n}
        if np.count_nonzero(sizes) < 2:
            row.update(dict.fromkeys(METRICS, np.nan))
        else:
            row["calinski_harabasz"] = float(calinski_harabasz_score(Z, lab))
            row["davies_bouldin"] = float(davies_bouldin_score(Z, lab))
            sample = min(n, settings.silhouette_sample)
            row["silhouette"] = float(
                silhouette_score(
                    Z, lab, sample_size=sample if sample < n else None, random_state=settings.seed
                )
            )
        rows.append(row)
    out.metrics = pd.DataFrame(rows, columns=["k", *METRICS, "inertia", "n_voxels"])
    return out


def choose_k(metrics: pd.DataFrame, fixed_k: int | None = None) -> tuple[int, pd.DataFrame]:
    """The cohort's k from the per-patient validity indices.

    Args:
        metrics: Rows ``patient, k, calinski_harabasz, silhouette, davies_bouldin``.
        fixed_k: A configured k that overrides the vote.

    Returns:
        ``(k, summary)``; the summary has one row per k: the mean and standard deviation of each
        index over patients, each index's rank (1 = best), the sum of ranks, the number of
        patients, and ``chosen`` (bool).

    Raises:
        ValueError: Without any finite index value.
    """
    finite = metrics.dropna(subset=list(METRICS))
    if finite.empty and fixed_k is None:
        raise ValueError("no patient has finite cluster-validity indices: cannot choose k")
    g = finite.groupby("k")
    summary = pd.DataFrame({"n_patients": g.size()})
    for m in METRICS:
        summary[f"{m}_mean"] = g[m].mean()
        summary[f"{m}_sd"] = g[m].std(ddof=1)
    summary["calinski_harabasz_rank"] = summary["calinski_harabasz_mean"].rank(ascending=False)
    summary["silhouette_rank"] = summary["silhouette_mean"].rank(ascending=False)
    summary["davies_bouldin_rank"] = summary["davies_bouldin_mean"].rank(ascending=True)
    summary["rank_sum"] = summary[[f"{m}_rank" for m in METRICS]].sum(1)
    summary = summary.reset_index()
    if fixed_k is not None:
        k = int(fixed_k)
    else:
        votes = [
            int(summary.loc[summary["calinski_harabasz_mean"].idxmax(), "k"]),
            int(summary.loc[summary["silhouette_mean"].idxmax(), "k"]),
            int(summary.loc[summary["davies_bouldin_mean"].idxmin(), "k"]),
        ]
        counts = pd.Series(votes).value_counts()
        if counts.iloc[0] >= 2:
            k = int(counts.index[0])
        else:
            best = summary.sort_values(["rank_sum", "k"]).iloc[0]
            k = int(best["k"])
    summary["chosen"] = summary["k"] == k
    return k, summary


@dataclass
class Reference:
    """Reference habitats in the pooled z-space of cluster means.

    Attributes:
        features: Feature names.
        mean, sd: Pooling statistics (raw units) that define the z-space.
        centers: (k, F) reference centers in the z-space, ordered (subregion 1 first).
        order_by: The ordering feature.
    """

    features: list[str]
    mean: np.ndarray
    sd: np.ndarray
    centers: np.ndarray
    order_by: str

    def z(self, centroids: np.ndarray) -> np.ndarray:
        """Raw-unit cluster means -> pooled z-space (NaN -> 0)."""
        Z = (np.asarray(centroids, dtype=np.float64) - self.mean) / self.sd
        return np.where(np.isfinite(Z), Z, 0.0)

    def to_table(self) -> pd.DataFrame:
        """One row per subregion (1..k): the center in raw units, plus the pooling statistics."""
        raw = self.centers * self.sd + self.mean
        table = pd.DataFrame(raw, columns=self.features)
        table.insert(0, "subregion", np.arange(1, len(raw) + 1))
        stats = pd.DataFrame([self.mean, self.sd], columns=self.features)
        stats.insert(0, "subregion", [-1, -2])  # -1: pooled mean, -2: pooled sd
        return pd.concat([table, stats], ignore_index=True).assign(order_by=self.order_by)

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> Reference:
        """Inverse of :meth:`to_table`."""
        features = [c for c in table.columns if c not in ("subregion", "order_by")]
        rows = table.set_index("subregion")[features]
        mean = rows.loc[-1].to_numpy(float)
        sd = rows.loc[-2].to_numpy(float)
        raw = rows.loc[sorted(i for i in rows.index if i > 0)].to_numpy(float)
        return cls(features, mean, sd, (raw - mean) / sd, str(table["order_by"].iloc[0]))


def reference_centroids(
    centroids: Sequence[np.ndarray],
    features: Sequence[str],
    k: int,
    *,
    seed: int = 0,
    order_by: str | None = None,
) -> Reference:
    """Reference habitats from every patient's cluster means at the chosen k.

    Args:
        centroids: Per patient, the (k, F) raw-unit cluster means.
        features: Feature names.
        k: The cohort's k.
        seed: K-means seed.
        order_by: Feature whose (raw) value orders the reference habitats, ascending;
            None = the first feature.

    Returns:
        The :class:`Reference`.
    """
    from sklearn.cluster import KMeans

    features = list(features)
    order_by = order_by or features[0]
    if order_by not in features:
        raise ValueError(f"order_by feature {order_by!r} is not among the clustering features")
    pool = np.concatenate([np.asarray(c, dtype=np.float64) for c in centroids])
    pool = pool[np.isfinite(pool).all(1)]
    if len(pool) < k:
        raise ValueError(f"{len(pool)} cluster means in the cohort: too few for k = {k}")
    mean = pool.mean(0)
    sd = pool.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    km = KMeans(n_clusters=k, n_init=20, random_state=seed).fit((pool - mean) / sd)
    centers = km.cluster_centers_
    order = np.argsort(centers[:, features.index(order_by)], kind="stable")
    return Reference(features, mean, sd, centers[order], order_by)


def match_clusters(centroids: np.ndarray, reference: Reference) -> np.ndarray:
    """One-to-one match of a patient's clusters to the reference habitats.

    Args:
        centroids: (k, F) raw-unit cluster means of one patient.
        reference: The cohort's reference habitats (same k and features).

    Returns:
        ``subregion[c]``: the 1-based subregion of the patient's cluster c.
    """
    Z = reference.z(centroids)
    if Z.shape != reference.centers.shape:
        raise ValueError(
            f"patient has {Z.shape[0]} clusters x {Z.shape[1]} features, the reference "
            f"{reference.centers.shape[0]} x {reference.centers.shape[1]}"
        )
    from scipy.optimize import linear_sum_assignment  # here: the workflow imports this module

    cost = ((Z[:, None, :] - reference.centers[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    out = np.empty(len(Z), dtype=np.int16)
    out[rows] = cols + 1
    return out


def agreement(labels: np.ndarray, truth: np.ndarray, mapping: Mapping[int, int]) -> float:
    """Fraction of voxels whose subregion maps to their true habitat.

    Args:
        labels: Subregion per voxel (1-based).
        truth: True habitat code per voxel.
        mapping: Subregion -> habitat code (fixed for the whole cohort).

    Returns:
        The agreement in [0, 1].
    """
    mapped = np.array([mapping.get(int(v), -1) for v in labels])
    return float(np.mean(mapped == np.asarray(truth)))
