"""Habitat clustering: k selection, consistent relabeling, and recovery of the generator's truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from hccrad import habitats as hab
from hccrad.errors import InputError


def blobs(centers: np.ndarray, n: int, sd: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs around ``centers`` (n points each) and their true index."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([c + sd * rng.normal(size=(n, centers.shape[1])) for c in centers])
    return X, np.repeat(np.arange(len(centers)), n)


CENTERS4 = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])


def test_standardize_handles_nan_and_constant_columns():
    X = np.array([[1.0, 5.0, np.nan], [3.0, 5.0, 2.0], [5.0, 5.0, 4.0]])
    Z = hab.standardize(X)
    np.testing.assert_allclose(Z[:, 0], [-1.224744871, 0.0, 1.224744871], rtol=1e-9)
    assert (Z[:, 1] == 0).all()  # constant column
    np.testing.assert_allclose(Z[:, 2], [0.0, -1.0, 1.0])  # NaN -> column mean


def test_derive_seed_is_stable_and_distinct():
    assert hab.derive_seed(42, "habitats", "AMR001") == hab.derive_seed(42, "habitats", "AMR001")
    seeds = {hab.derive_seed(42, "habitats", p) for p in ("AMR001", "AMR002", "BMR001")}
    assert len(seeds) == 3
    assert hab.derive_seed(42, "x") != hab.derive_seed(43, "x")


def test_cluster_patient_recovers_blobs_and_records_indices():
    from sklearn.metrics import (
        adjusted_rand_score,
        calinski_harabasz_score,
        davies_bouldin_score,
        silhouette_score,
    )

    X, truth = blobs(CENTERS4, 60, 1.0, seed=0)
    res = hab.cluster_patient(X, ["a", "b"], hab.HabitatSettings(k_range=(3, 6), seed=3))
    assert list(res.metrics["k"]) == [3, 4, 5, 6]
    assert adjusted_rand_score(truth, res.labels[4]) == 1.0
    row = res.metrics.set_index("k").loc[4]
    Z = hab.standardize(X)
    assert row["calinski_harabasz"] == pytest.approx(calinski_harabasz_score(Z, res.labels[4]))
    assert row["davies_bouldin"] == pytest.approx(davies_bouldin_score(Z, res.labels[4]))
    assert row["silhouette"] == pytest.approx(silhouette_score(Z, res.labels[4]))
    # centroids are in raw units: each blob's mean
    found = sorted(map(tuple, np.round(res.centroids[4])))
    assert found == sorted(map(tuple, CENTERS4))
    assert res.sizes[4].tolist() == [60] * 4
    # the same seed gives the same labels
    again = hab.cluster_patient(X, ["a", "b"], hab.HabitatSettings(k_range=(3, 6), seed=3))
    assert all(np.array_equal(res.labels[k], again.labels[k]) for k in res.labels)


def test_cluster_patient_rejects_too_few_voxels():
    with pytest.raises(ValueError, match="too few"):
        hab.cluster_patient(np.zeros((3, 2)), ["a", "b"], hab.HabitatSettings())


def test_silhouette_is_sampled_when_large():
    X, _ = blobs(CENTERS4, 400, 1.0, seed=1)
    s = hab.HabitatSettings(k_range=(4, 4), seed=0, silhouette_sample=200)
    res = hab.cluster_patient(X, ["a", "b"], s)
    # a 200-voxel sample of four well separated blobs: close to, not equal to, the full value
    from sklearn.metrics import silhouette_score

    full = silhouette_score(hab.standardize(X), res.labels[4])
    got = res.metrics["silhouette"].iloc[0]
    assert got != full and got == pytest.approx(full, abs=0.03)


def test_choose_k_majority_vote_on_blobs():
    rows = []
    for seed in range(3):
        X, _ = blobs(CENTERS4, 50, 1.0, seed=seed)
        res = hab.cluster_patient(X, ["a", "b"], hab.HabitatSettings(k_range=(3, 7), seed=seed))
        rows.append(res.metrics.assign(patient=f"P{seed}"))
    k, summary = hab.choose_k(pd.concat(rows))
    assert k == 4
    assert summary.loc[summary["chosen"], "k"].tolist() == [4]
    assert (summary["n_patients"] == 3).all()
    assert hab.choose_k(pd.concat(rows), fixed_k=6)[0] == 6


def test_choose_k_without_majority_takes_the_smallest_rank_sum():
    # CH votes 3, Silhouette votes 5, DB votes 7; rank sums: k3 1+3+3, k5 3+1+2, k7 2+2+1 -> 5 or 7
    # tie (7 and 5 both 6): the smaller k wins
    table = pd.DataFrame(
        {
            "patient": ["P"] * 3,
            "k": [3, 5, 7],
            "calinski_harabasz": [30.0, 10.0, 20.0],
            "silhouette": [0.1, 0.5, 0.3],
            "davies_bouldin": [1.5, 1.2, 1.0],
        }
    )
    k, summary = hab.choose_k(table)
    assert summary.set_index("k")["rank_sum"].to_dict() == {3: 7.0, 5: 6.0, 7: 5.0}
    assert k == 7
    table.loc[2, "davies_bouldin"] = 1.3  # DB now votes 5 -> majority for 5
    assert hab.choose_k(table)[0] == 5


def test_relabeling_is_consistent_across_patients():
    """Patients whose clusters come in random order get the same subregion for the same blob."""
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 5.0], [10.0, 0.0], [20.0, 5.0]])
    cents, truths, labels = [], [], []
    for seed in range(5):
        shifted = centers + rng.normal(scale=0.5, size=centers.shape)
        X, truth = blobs(shifted, 40, 1.0, seed=seed)
        res = hab.cluster_patient(
            X, ["mean", "other"], hab.HabitatSettings(k_range=(3, 3), seed=seed)
        )
        cents.append(res.centroids[3])
        truths.append(truth)
        labels.append(res.labels[3])
    ref = hab.reference_centroids(cents, ["mean", "other"], 3, seed=0, order_by="mean")
    # ordered by the 'mean' feature: subregion 1 = blob 0 (x 0), 2 = blob 1 (x 10), 3 = blob 2
    np.testing.assert_allclose(ref.to_table().iloc[:3]["mean"], [0, 10, 20], atol=1.0)
    for cent, truth, lab in zip(cents, truths, labels, strict=True):
        sub = hab.match_clusters(cent, ref)[lab]
        assert sorted(set(sub.tolist())) == [1, 2, 3]
        assert hab.agreement(sub, truth, {1: 0, 2: 1, 3: 2}) == 1.0
    back = hab.Reference.from_table(ref.to_table())
    np.testing.assert_allclose(back.centers, ref.centers)
    assert back.order_by == "mean" and back.features == ref.features
    with pytest.raises(ValueError, match="order_by"):
        hab.reference_centroids(cents, ["mean", "other"], 3, order_by="nope")


def _synthetic_patients(n: int) -> list[tuple[str, dict[str, np.ndarray], np.ndarray]]:
    """MR patients of the synthetic cohort acquired at 1 mm isotropic (habitats resolvable):
    per patient the tumor voxels' arterial local median (3x3x3 kernel, the voxel-map engine) and
    the true habitat codes. Phases are aligned with the generator's true motion."""
    from hccrad.synth import generate_patient
    from hccrad.voxelmaps import VoxelMapSettings, compute_voxel_maps

    out = []
    for index in range(n):
        p = generate_patient(
            "MR",
            index,
            seed=7,
            keep_phantom=False,
            acquisition_overrides={"pixel_mm": 1.0, "thickness_mm": 1.0},
        )
        mask = p.masks["AP"]["tumor"]
        inside = sitk.GetArrayFromImage(mask) > 0
        ap = sitk.Cast(p.images["AP"], sitk.sitkFloat32)
        values = sitk.GetArrayFromImage(ap)[inside]
        settings = VoxelMapSettings(
            kernel_radius=1,
            bin_width=float(values.std() / 4),
            classes=("firstorder",),
            features={"firstorder": ("Median",)},
        )
        maps = compute_voxel_maps(ap, mask, settings)
        truth = sitk.GetArrayFromImage(p.habitat["AP"])[inside]
        out.append((p.patient, {"AP_firstorder_Median": maps["firstorder_Median"]}, truth))
    return out


def test_habitats_recover_the_generators_truth():
    """Per-patient K-means (k = 3) + cohort relabeling recovers the true habitats.

    With the arterial local median as feature and subregions ordered by it, subregion 1 must be
    necrosis (non-enhancing), 2 intermediate, 3 viable (arterial hyperenhancement): one fixed
    mapping for every patient, so this checks the consistency of the labels as well.
    """
    from hccrad.synth import Habitat

    patients = _synthetic_patients(6)
    names = ["AP_firstorder_Median"]
    settings = hab.HabitatSettings(k_range=(3, 3), seed=11)
    results = [hab.cluster_patient(f[names[0]][:, None], names, settings) for _, f, _ in patients]
    ref = hab.reference_centroids([r.centroids[3] for r in results], names, 3, seed=5)
    mapping = {1: Habitat.NECROTIC, 2: Habitat.INTERMEDIATE, 3: Habitat.VIABLE}
    agree, total, per_patient = 0.0, 0, []
    for (_, _, truth), res in zip(patients, results, strict=True):
        sub = hab.match_clusters(res.centroids[3], ref)[res.labels[3]]
        tumor = np.isin(truth, [Habitat.VIABLE, Habitat.INTERMEDIATE, Habitat.NECROTIC])
        a = hab.agreement(sub[tumor], truth[tumor], mapping)
        per_patient.append(a)
        agree += a * tumor.sum()
        total += tumor.sum()
    pooled = agree / total
    assert pooled >= 0.90, (pooled, per_patient)
    assert min(per_patient) >= 0.78, per_patient
    # a wrong (swapped) mapping is far off: the test can fail
    wrong = {1: Habitat.VIABLE, 2: Habitat.INTERMEDIATE, 3: Habitat.NECROTIC}
    sub = hab.match_clusters(results[0].centroids[3], ref)[results[0].labels[3]]
    truth = patients[0][2]
    tumor = np.isin(truth, [1, 2, 3])
    assert hab.agreement(sub[tumor], truth[tumor], wrong) < 0.5


def test_assign_habitats_relabels_to_the_reference_and_summarises(tmp_path):
    """steps.assign_habitats: a patient's clusters take the reference's subregion numbers; the
    label map, masks, statistics, overlay and (empty) deep-input manifest are written."""
    from hccrad import steps
    from hccrad.manifest import read_manifest

    shape = (8, 8, 8)
    zz, yy, xx = np.indices(shape)
    inside = (zz >= 2) & (zz < 6) & (yy >= 2) & (yy < 6) & (xx >= 2) & (xx < 6)  # 64 voxels

    def write(arr: np.ndarray, name: str) -> str:
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((2.0, 2.0, 2.0))
        sitk.WriteImage(img, str(tmp_path / name))
        return str(tmp_path / name)

    image = write((100.0 * xx).astype(np.float32), "image.nii.gz")
    mask = write(inside.astype(np.uint8), "mask.nii.gz")
    z, y, x = np.nonzero(inside)
    cluster = np.select([x == 2, x == 3], [2, 0], 1)  # x 2 -> 2, x 3 -> 0, x 4..5 -> 1
    pd.DataFrame({"z": z, "y": y, "x": x, "k3": cluster}).to_parquet(tmp_path / "clusters.parquet")
    pd.DataFrame(
        {"cluster": [0, 1, 2], "size": [16, 32, 16], "f": [10.0, 30.0, 20.0], "k": 3}
    ).to_parquet(tmp_path / "centroids.parquet")
    centers = np.array([[-1.0], [0.0], [1.0]])  # z-space: f = 10, 20, 30
    ref = hab.Reference(["f"], np.array([20.0]), np.array([10.0]), centers, "f")
    ref.to_table().to_parquet(tmp_path / "reference.parquet")

    job = steps.HabitatAssignment(
        clusters=tmp_path / "clusters.parquet",
        centroids=tmp_path / "centroids.parquet",
        reference=tmp_path / "reference.parquet",
        mask=mask,
        image=image,
        phase_images={"AP": image},
        dst_labels=tmp_path / "out/labels.nii.gz",
        dst_masks=tmp_path / "out/masks",
        dst_stats=tmp_path / "out/stats.json",
        dst_png=tmp_path / "out/overlay.png",
        patient="P1",
        spacing=2.0,
        dst_deep=tmp_path / "out/deep_inputs.json",
    )
    steps.assign_habitats(job)

    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out/labels.nii.gz")))
    # cluster means 10, 30, 20 -> subregions 1, 3, 2 (the reference is ordered by f)
    expected = np.where(inside, np.select([xx == 2, xx == 3], [2, 1], 3), 0)
    np.testing.assert_array_equal(labels, expected)
    for i in (1, 2, 3):
        sub = sitk.ReadImage(str(tmp_path / f"out/masks/subregion_{i}.nii.gz"))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sub), expected == i)
    stats = json.loads((tmp_path / "out/stats.json").read_text())
    assert stats["k"] == 3 and stats["n_voxels"] == 64
    assert stats["subregions"]["1"] == {
        "n_voxels": 16, "fraction": 0.25, "volume_ml": pytest.approx(0.128), "AP_mean": 300.0
    }  # fmt: skip
    assert stats["subregions"]["3"]["AP_mean"] == pytest.approx(450.0)
    assert "subregions_without_deep_input" not in stats
    assert (tmp_path / "out/overlay.png").stat().st_size > 0
    assert len(read_manifest(tmp_path / "out/deep_inputs.json")) == 0


def _clustered_patient(tmp_path, name: str, centers: np.ndarray, seed: int) -> tuple[str, str]:
    """k_metrics.tsv and centroids.parquet of one patient as cluster_habitats writes them."""
    from hccrad import fileio

    X, _ = blobs(centers, 40, 1.0, seed=seed)
    res = hab.cluster_patient(X, ["mean", "other"], hab.HabitatSettings(k_range=(3, 4), seed=seed))
    res.metrics.insert(0, "patient", name)
    metrics, cents = tmp_path / f"{name}_k.tsv", tmp_path / f"{name}_c.parquet"
    fileio.write_tsv(res.metrics, metrics)
    table = pd.concat([res.centroid_table(k).assign(k=k) for k in res.labels], ignore_index=True)
    fileio.write_parquet(table, cents)
    return str(metrics), str(cents)


def test_reference_habitats_come_from_training_patients_only(tmp_path):
    """select_habitat_k fits k and the reference on the patients every habitat study trains on:
    test patients whose tumors look different leave the reference (and the k vote) unchanged,
    and a patient that one study holds out is left out."""
    from hccrad import steps

    train_centers = np.array([[0.0, 5.0], [10.0, 0.0], [20.0, 5.0]])
    odd_centers = train_centers + np.array([60.0, 0.0])  # test tumors far brighter
    patients = {f"T{i}": (train_centers, i) for i in range(4)}
    patients |= {f"X{i}": (odd_centers, 10 + i) for i in range(3)}
    files = {p: _clustered_patient(tmp_path, p, c, s) for p, (c, s) in patients.items()}
    metrics = [files[p][0] for p in patients]
    centroids = [files[p][1] for p in patients]
    split_a = pd.DataFrame({"patient": list(patients), "split": ["train"] * 4 + ["external"] * 3})
    split_b = split_a.assign(split=["train"] * 3 + ["validation"] + ["temporal"] * 3)
    split_a.to_parquet(tmp_path / "a.parquet")
    split_b.to_parquet(tmp_path / "b.parquet")

    def run(tag: str, splits: dict | None) -> tuple[pd.DataFrame, np.ndarray]:
        out = tmp_path / tag
        steps.select_habitat_k(
            metrics,
            centroids,
            out / "k.tsv",
            out / "ref.parquet",
            out / "k.png",
            fixed_k=3,
            seed=0,
            order_by="mean",
            splits=splits,
        )
        ref = pd.read_parquet(out / "ref.parquet")
        return pd.read_csv(out / "k.tsv", sep="\t"), ref[ref["subregion"] > 0]["mean"].to_numpy()

    summary, means = run("one", {"a": tmp_path / "a.parquet"})
    assert summary["n_patients"].eq(4).all()
    np.testing.assert_allclose(means, [0, 10, 20], atol=1.0)  # the training tumors' habitats
    summary, _ = run("both", {"a": tmp_path / "a.parquet", "b": tmp_path / "b.parquet"})
    assert summary["n_patients"].eq(3).all()  # T3 is validation in study b
    summary, means = run("all", None)  # no study reads the subregions: every patient
    assert summary["n_patients"].eq(7).all()
    assert means.max() > 40  # the odd tumors pull the reference away
    split_b.assign(split="external").to_parquet(tmp_path / "none.parquet")
    with pytest.raises(InputError, match="no patient is in the training split of every study"):
        run("none", {"a": tmp_path / "a.parquet", "n": tmp_path / "none.parquet"})
