"""Liver + tumor U-Net (hccrad.deep.segmentation): training, Dice, post-processing, grids."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import ROOT
from hccrad.deep.segmentation import (
    CHECKPOINT_FORMAT,
    EmptySegmentationWarning,
    PreparedCase,
    SegCase,
    SegConfig,
    build_net,
    dice,
    evaluate,
    load_model,
    make_grid,
    postprocess,
    prepare_case,
    segment,
    train_segmentation,
)
from hccrad.deep.segmentation.config import cpus_per_gpu, requested_gpus
from hccrad.errors import ConfigError, InputError
from hccrad.synth import generate_patient

SEED = 42
#: Training patients per modality (phases AP and PVP of each are separate cases).
N_TRAIN = 4
#: Held-out patient indices per modality (never used in training).
HELD_OUT = (100, 101)

#: The short CPU run of the acceptance test: 48³ grid, the demo network, no flips.
FAST = {
    "grid_size": 48,
    "channels": (16, 32, 64, 128),
    "strides": (2, 2, 2),
    "num_res_units": 2,
    "epochs": 12,
    "batch_size": 2,
    "lr": 3e-3,
    "flip_prob": 0.0,
    "val_fraction": 0.2,
    "num_threads": 1,
    "seed": SEED,
}
#: The slow variant: the CPU demo default (64³) on more patients.
SLOW_TRAIN, SLOW_HELD_OUT = 6, range(100, 106)

#: A tiny network for the determinism / plumbing tests.
TINY = {
    "grid_size": 16,
    "channels": (4, 8),
    "strides": (2,),
    "num_res_units": 1,
    "epochs": 1,
    "batch_size": 2,
    "num_threads": 1,
    "seed": SEED,
}


@pytest.fixture(autouse=True)
def _one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def _cases(modality: str, indices, phases) -> list[SegCase]:
    out = []
    for i in indices:
        p = generate_patient(modality, i, seed=SEED, keep_phantom=False)
        for ph in phases:
            m = p.masks[ph]
            out.append(SegCase(p.patient, p.images[ph], m["liver"], m["tumor"], phase=ph))
    return out


@pytest.fixture(scope="module")
def synth_cases() -> dict[str, list[SegCase]]:
    """Training cases (MR + CT, AP + PVP) and held-out PVP cases of other patients."""
    train, test = [], []
    for mod in ("MR", "CT"):
        train += _cases(mod, range(N_TRAIN), ("AP", "PVP"))
        test += _cases(mod, HELD_OUT, ("PVP",))
    return {"train": train, "test": test}


@pytest.fixture(scope="module")
def trained(synth_cases, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("seg")
    t0 = time.perf_counter()
    metrics = train_segmentation(SegConfig(**FAST), synth_cases["train"], out)
    return {"dir": out, "metrics": metrics, "seconds": time.perf_counter() - t0}


def _sphere(shape, centre, radius) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    c = np.asarray(centre)
    return (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= radius**2


def _image(arr: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


# ------------------------------------------------------------------------------------------------
# Acceptance: liver Dice > 0.8 on held-out synthetic patients after a short CPU run


def test_unet_reaches_liver_dice_on_held_out_synthetic_patients(trained, synth_cases):
    m = trained["metrics"]
    assert m["device"] == "cpu"
    assert len(m["epochs"]) == FAST["epochs"]
    assert m["epochs"][-1]["loss"] < m["epochs"][0]["loss"]
    assert set(m["val_patients"]) <= {c.patient for c in synth_cases["train"]}
    df = evaluate(trained["dir"] / "checkpoint.pt", synth_cases["test"])
    print(
        f"\nsegmentation: trained in {trained['seconds']:.1f} s; held-out Dice\n"
        + df.to_string(index=False)
    )
    assert list(df.columns[:4]) == ["patient", "phase", "dice_liver", "dice_tumor"]
    assert len(df) == len(synth_cases["test"])
    assert not set(df["patient"]) & {c.patient for c in synth_cases["train"]}
    assert (df["dice_liver"] > 0.8).all(), df
    assert df["dice_liver"].mean() > 0.85
    assert df["dice_tumor"].between(0, 1).all()
    assert df["dice_tumor"].mean() > 0.2  # small tumors on a ~2 mm grid: a modest bar (≈ 0.45)


@pytest.mark.slow
def test_demo_default_reaches_liver_and_tumor_dice(tmp_path):
    train, test = [], []
    for mod in ("MR", "CT"):
        train += _cases(mod, range(SLOW_TRAIN), ("AP", "PVP"))
        test += _cases(mod, SLOW_HELD_OUT, ("PVP",))
    t0 = time.perf_counter()
    cfg = SegConfig.demo(num_threads=1, epochs=20)
    metrics = train_segmentation(cfg, train, tmp_path)
    seconds = time.perf_counter() - t0
    df = evaluate(tmp_path / "checkpoint.pt", test)
    print(f"\ndemo default: trained in {seconds:.1f} s (best epoch {metrics['best_epoch']})")
    print(df.to_string(index=False))
    print(df[["dice_liver", "dice_tumor", "dice_index_tumor"]].describe().to_string())
    assert (df["dice_liver"] > 0.85).all(), df
    assert df["dice_tumor"].mean() > 0.3


def test_training_outputs_files(trained):
    out: Path = trained["dir"]
    metrics = json.loads((out / "metrics.json").read_text())
    cfg = json.loads((out / "config.json").read_text())
    assert SegConfig.from_dict(cfg) == SegConfig(**FAST)
    assert {"epochs", "best_epoch", "device", "seconds", "train_patients", "val_patients"} <= set(
        metrics
    )
    row = metrics["epochs"][0]
    assert {"epoch", "loss", "val_dice_liver", "val_dice_tumor", "seconds"} <= set(row)
    assert 0 <= row["val_dice_liver"] <= 1 and 0 <= row["val_dice_tumor"] <= 1
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["format"] == CHECKPOINT_FORMAT
    assert ckpt["epoch"] == metrics["best_epoch"]


def test_segment_returns_masks_on_the_input_grid(trained, synth_cases):
    case = synth_cases["test"][-1]  # a CT patient
    image = sitk.Image(case.image)
    # an oblique, offset grid: the prediction must come back on exactly this grid
    image.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    image.SetOrigin((12.5, -40.0, 7.25))
    res = segment(trained["dir"] / "checkpoint.pt", image, name=case.patient)
    liver, tumor = res  # unpacks as (liver, tumor)
    for m in (liver, tumor, res.index_tumor):
        assert m.GetSize() == image.GetSize()
        assert m.GetSpacing() == image.GetSpacing()
        assert m.GetOrigin() == image.GetOrigin()
        assert m.GetDirection() == image.GetDirection()
        assert m.GetPixelID() == sitk.sitkUInt8
    gt = sitk.GetArrayViewFromImage(case.liver)
    assert dice(liver, gt, [1])[1] > 0.8  # geometry carried, not just copied


# ------------------------------------------------------------------------------------------------
# Determinism


def _tiny_cases(cfg: SegConfig | None = None) -> list[PreparedCase]:
    """Four constructed cases: a bright 'liver' ball holding a darker 'tumor' ball."""
    cfg = cfg or SegConfig(**TINY)
    rng = np.random.default_rng(0)
    cases = []
    for k in range(4):
        shape = (20, 24, 24)
        liver = _sphere(shape, (10, 12 + k % 2, 11), 7)
        tumor = _sphere(shape, (10, 13, 12 - k % 2), 2)
        arr = (100 * liver - 40 * tumor + rng.normal(0, 5, shape)).astype(np.float32)
        img = _image(arr, spacing=(1.5, 1.5, 2.0))
        pc = prepare_case(img, _image(liver.astype(np.uint8)), _image(tumor.astype(np.uint8)), cfg)
        pc.meta["patient"] = f"T{k}"
        cases.append(pc)
    return cases


def test_training_is_deterministic_for_a_seed(tmp_path):
    cases = _tiny_cases()
    cfg = SegConfig(**TINY)
    train_segmentation(cfg, cases, tmp_path / "a")
    train_segmentation(cfg, cases, tmp_path / "b")
    train_segmentation(SegConfig(**{**TINY, "seed": SEED + 1}), cases, tmp_path / "c")
    a, b, c = (torch.load(tmp_path / n / "checkpoint.pt")["state_dict"] for n in "abc")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    ma = json.loads((tmp_path / "a" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert ma["epochs"][0]["loss"] == mb["epochs"][0]["loss"]
    assert ma["val_patients"] == mb["val_patients"] and len(ma["val_patients"]) == 1


# ------------------------------------------------------------------------------------------------
# Post-processing on constructed label maps


def test_postprocess_keeps_largest_liver_and_tumors_inside_it():
    shape = (40, 60, 60)
    lab = np.zeros(shape, np.uint8)
    lab[_sphere(shape, (20, 25, 25), 14)] = 1  # the liver
    lab[_sphere(shape, (20, 50, 50), 4)] = 1  # a smaller, separate false-positive "liver"
    lab[_sphere(shape, (20, 25, 20), 5)] = 2  # index tumor (inside the liver)
    lab[_sphere(shape, (20, 25, 33), 2)] = 2  # satellite (inside)
    lab[_sphere(shape, (5, 5, 55), 2)] = 2  # tumor far outside the liver: dropped
    img = _image(lab, spacing=(0.8, 0.8, 2.0), origin=(3.0, -2.0, 1.0))
    res = postprocess(img, tumor_margin_mm=3.0)
    liver = sitk.GetArrayFromImage(res.liver).astype(bool)
    tumor = sitk.GetArrayFromImage(res.tumor).astype(bool)
    index = sitk.GetArrayFromImage(res.index_tumor).astype(bool)
    big = _sphere(shape, (20, 25, 25), 14)
    np.testing.assert_array_equal(liver, big)  # largest component, tumors included
    np.testing.assert_array_equal(tumor, (lab == 2) & big)
    np.testing.assert_array_equal(index, _sphere(shape, (20, 25, 20), 5))
    assert not res.warnings
    assert res.liver.GetOrigin() == img.GetOrigin() and res.liver.GetSpacing() == img.GetSpacing()


def test_postprocess_keeps_tumor_within_the_liver_margin():
    shape = (30, 50, 50)
    lab = np.zeros(shape, np.uint8)
    liver = _sphere(shape, (15, 25, 20), 10)
    lab[liver] = 1
    lab[_sphere(shape, (15, 25, 34), 2)] = 2  # 2 mm from the liver (a 1-voxel gap)
    img = _image(lab)
    kept = postprocess(img, tumor_margin_mm=6.0)
    assert sitk.GetArrayViewFromImage(kept.tumor).sum() == (lab == 2).sum()
    with pytest.warns(EmptySegmentationWarning, match="tumor is empty"):
        dropped = postprocess(img, tumor_margin_mm=0.0)
    assert sitk.GetArrayViewFromImage(dropped.tumor).sum() == 0


def test_empty_prediction_gives_empty_masks_and_a_warning():
    img = _image(np.zeros((10, 12, 14), np.uint8), spacing=(0.7, 0.7, 3.0))
    with pytest.warns(EmptySegmentationWarning, match="liver is empty"):
        res = postprocess(img, name="P1")
    for m in (res.liver, res.tumor, res.index_tumor):
        assert m.GetSize() == img.GetSize() and not sitk.GetArrayViewFromImage(m).any()
    assert res.warnings and res.warnings[0].startswith("P1: ")


def test_segment_with_an_all_background_network_warns_instead_of_failing(tmp_path):
    cases = _tiny_cases()
    train_segmentation(SegConfig(**TINY), cases, tmp_path)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    keys = list(ckpt["state_dict"])
    weight, bias = keys[-2], keys[-1]  # the last (output) layer
    assert ckpt["state_dict"][bias].shape == (3,)
    ckpt["state_dict"][weight] = torch.zeros_like(ckpt["state_dict"][weight])
    ckpt["state_dict"][bias] = torch.tensor([20.0, -20.0, -20.0])
    image = _image(np.random.default_rng(1).normal(0, 1, (9, 30, 31)).astype(np.float32))
    with pytest.warns(EmptySegmentationWarning):
        res = segment(ckpt, image)
    assert res.liver.GetSize() == image.GetSize()
    assert not sitk.GetArrayViewFromImage(res.liver).any()
    assert not sitk.GetArrayViewFromImage(res.index_tumor).any()
    df = evaluate(ckpt, [SegCase("P0", image, res.liver, None)])
    assert bool(df.loc[0, "empty"]) and df.loc[0, "dice_liver"] == 1.0
    assert math.isnan(df.loc[0, "dice_tumor"])


# ------------------------------------------------------------------------------------------------
# Grid, normalisation, Dice, config


def test_prepare_case_grid_labels_and_normalisation(synth_cases):
    cfg = SegConfig(grid_size=32)
    for case in (synth_cases["train"][0], synth_cases["train"][-1]):  # MR and CT
        pc = prepare_case(case.image, case.liver, case.tumor, cfg)
        assert pc.x.shape == pc.y.shape == (32, 32, 32)
        assert pc.x.dtype == np.float32 and set(np.unique(pc.y)) == {0, 1, 2}
        liver = pc.x[pc.y == 1]
        assert np.all(np.isfinite(pc.x)) and -3 < liver.mean() < 3 and pc.x.std() < 5
        # the whole FOV fits: longest side / 32
        extent = np.asarray(case.image.GetSize()) * np.asarray(case.image.GetSpacing())
        assert pc.grid.GetSpacing()[0] == pytest.approx(extent.max() / 32)
    # tumor overrides liver; a fixed spacing crops around the FOV centre
    img = _image(np.zeros((20, 20, 20), np.float32) + _sphere((20, 20, 20), (10, 10, 10), 6))
    both = _image(_sphere((20, 20, 20), (10, 10, 10), 6).astype(np.uint8))
    pc = prepare_case(img, both, both, SegConfig(grid_size=16, grid_spacing_mm=1.0))
    assert set(np.unique(pc.y)) == {0, 2}
    grid = make_grid(img, SegConfig(grid_size=16, grid_spacing_mm=1.0))
    assert grid.GetOrigin() == pytest.approx((2.0, 2.0, 2.0))


def test_dice_per_label():
    a = np.array([0, 1, 1, 2, 2, 0])
    b = np.array([0, 1, 0, 2, 2, 2])
    d = dice(a, b)
    assert d == {1: pytest.approx(2 / 3), 2: pytest.approx(0.8)}
    assert dice(np.zeros(3), np.zeros(3)) == {1: 1.0}
    assert dice(a, b, [3]) == {3: 1.0}
    with pytest.raises(ValueError):
        dice(a, b[:3])


def test_importing_the_package_leaves_torch_unloaded():
    """The Dice of given masks (the evaluation step without a checkpoint) needs no torch."""
    code = "import sys, hccrad.deep.segmentation; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_config_validation_and_round_trip():
    cfg = SegConfig.study()
    assert SegConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="grid_size"):
        SegConfig(grid_size=50)
    with pytest.raises(ConfigError, match="strides"):
        SegConfig(channels=(8, 16), strides=(2, 2))
    with pytest.raises(ConfigError, match="unknown"):
        SegConfig.from_dict({"epoch": 3})
    with pytest.raises(InputError):
        train_segmentation(SegConfig(**TINY), [], "/nonexistent/never-written")


def test_training_refuses_cases_without_masks(tmp_path):
    img = _image(np.zeros((8, 8, 8), np.float32))
    with pytest.raises(InputError, match="liver and a tumor"):
        train_segmentation(SegConfig(**TINY), [SegCase("P", img, img, None)], tmp_path)


def test_load_model_rejects_foreign_files(tmp_path):
    torch.save({"format": "other"}, tmp_path / "x.pt")
    with pytest.raises(InputError, match="checkpoint"):
        load_model(tmp_path / "x.pt")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_one_epoch_on_cuda(tmp_path):
    cfg = SegConfig(**{**TINY, "grid_size": 32, "device": "cuda"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # deterministic-algorithm notes
        metrics = train_segmentation(cfg, _tiny_cases(cfg), tmp_path)
    assert metrics["device"].startswith("cuda")
    model = load_model(tmp_path / "checkpoint.pt")
    assert next(model.net.parameters()).is_cuda


def test_evaluation_step_segments_the_held_out_patients_itself(trained, synth_cases, tmp_path):
    """steps.evaluate_segmentation with the checkpoint: one model load for every held-out
    patient, predictions written, the same Dice as evaluate() gives on those cases."""
    import pandas as pd

    from hccrad import steps

    cases, want = {}, {}
    ref = evaluate(trained["dir"] / "checkpoint.pt", synth_cases["test"][:3])
    for case, (_, row) in zip(synth_cases["test"][:3], ref.iterrows(), strict=True):
        image, liver, tumor = case.load()
        files = {}
        for name, img in (("image", image), ("liver", liver), ("tumor", tumor)):
            files[name] = tmp_path / f"{case.patient}_{name}.nii.gz"
            sitk.WriteImage(img, str(files[name]))
        cases[case.patient] = {**files, "phase": case.phase}
        want[case.patient] = row["dice_liver"]
    steps.evaluate_segmentation(
        cases,
        tmp_path / "dice.parquet",
        checkpoint=trained["dir"] / "checkpoint.pt",
        dst_predictions=tmp_path / "heldout",
    )
    dice = pd.read_parquet(tmp_path / "dice.parquet")
    assert list(dice.index) == [*sorted(cases), "mean"]
    for patient, value in want.items():
        assert dice.loc[patient, "dice_liver"] == pytest.approx(value, abs=1e-6)
        pred = sitk.ReadImage(str(tmp_path / "heldout" / f"{patient}_liver.nii.gz"))
        assert pred.GetSize() == sitk.ReadImage(str(cases[patient]["image"])).GetSize()


# ---------------------------------------------------------------------------------------------
# GPU routing and checkpoints trained on CUDA


def _save_as_from_cuda(obj: dict, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``torch.save`` as on a GPU node: every tensor's storage is recorded on ``cuda:0``
    (loading it without ``map_location`` on a machine without CUDA fails)."""
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(obj, path)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(path, weights_only=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks loading where CUDA is absent")
def test_unet_trained_on_cuda_loads_and_segments_on_a_cpu_node(tmp_path, monkeypatch):
    cfg = SegConfig(**{**TINY, "device": "cuda"})
    torch.manual_seed(0)
    net = build_net(cfg)
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "config": cfg.to_dict(),
        "epoch": 3,
        "state_dict": {k: v.detach().clone() for k, v in net.state_dict().items()},
    }
    _save_as_from_cuda(ckpt, tmp_path / "checkpoint.pt", monkeypatch)
    with pytest.raises(ConfigError, match="CUDA"):  # an explicit CUDA request still fails
        load_model(tmp_path / "checkpoint.pt", device="cuda")
    model = load_model(tmp_path / "checkpoint.pt")
    assert model.device.type == "cpu" and model.config.device == "cuda" and model.epoch == 3
    for key, value in net.state_dict().items():
        assert torch.equal(model.net.state_dict()[key], value), key
    case = _tiny_cases(cfg)[0]
    x = torch.from_numpy(case.x[None, None])
    with torch.no_grad():
        np.testing.assert_array_equal(model.net(x).numpy(), net.eval()(x).numpy())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks loading where CUDA is absent")
def test_study_model_trained_on_cuda_loads_on_a_cpu_node(tmp_path, monkeypatch):
    """hccrad.deep.train.load_model / resolve_model (what deep_model_outputs uses) on a
    checkpoint as train() writes it on a GPU node, its config saying device cuda."""
    from hccrad.deep import train as deep_train
    from hccrad.deep.train_config import TrainConfig

    cfg = TrainConfig(network="resnet10", input_kind="slices25d", device="cuda", seed=0)
    torch.manual_seed(0)
    net = deep_train.build_model(cfg, 3, 1, load_weights=False).eval()
    ckpt = {
        "format": deep_train.CHECKPOINT_FORMAT,
        "config": cfg.to_dict(),
        "in_channels": 3,
        "n_instances": 1,
        "input_shape": [1, 3, 32, 32],
        "best_epoch": 1,
        "state_dict": {k: v.detach().clone() for k, v in net.state_dict().items()},
    }
    _save_as_from_cuda(ckpt, tmp_path / "checkpoint.pt", monkeypatch)
    x = torch.randn(2, 1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = net(x)
    model, loaded_cfg = deep_train.load_model(tmp_path / "checkpoint.pt")
    assert loaded_cfg.device == "cuda" and next(model.parameters()).device.type == "cpu"
    auto, kind = deep_train.resolve_model(tmp_path / "checkpoint.pt", "auto")
    assert kind == "slices25d" and next(auto.parameters()).device.type == "cpu"
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, rtol=0, atol=0)
        torch.testing.assert_close(auto(x), want, rtol=0, atol=0)


def test_requested_gpus_follow_the_segmentation_device():
    assert requested_gpus({"device": "cpu"}, cluster_gpus=4) == 0
    assert requested_gpus({"device": "cuda"}, cluster_gpus=0) == 1
    assert requested_gpus({"device": "cuda:2"}, cluster_gpus=0) == 3
    assert requested_gpus({}, cluster_gpus=2) == 1  # auto: one device when the cluster has GPUs
    assert requested_gpus({"device": "auto"}, cluster_gpus=0) == 0
    with pytest.raises(ConfigError, match="device"):
        requested_gpus({"device": "tpu"}, cluster_gpus=1)
    assert [cpus_per_gpu(t, g) for t, g in ((4, 1), (4, 2), (3, 2), (1, 2), (4, 0))] == [
        4,
        2,
        2,
        1,
        0,
    ]


def _dry_run_resources(work: Path, cohort_dir: Path, extra: dict) -> dict[str, str]:
    """{rule: its resources line} of a dry run of the U-Net and one deep model's training on
    the tiny cohort, config.yaml + ``extra`` (no overlay: the full-scale threads)."""
    import yaml

    from conftest import SNAKEMAKE, write_sheets

    cohort, clinical = write_sheets(cohort_dir, work / "sheets")
    (work / "extra.yaml").write_text(yaml.safe_dump(extra))
    targets = [
        "results/cohort/segmentation/checkpoint.pt",
        "results/cohort/studies/er_fusion/deep/er_25d/checkpoint.pt",
    ]
    cmd = [str(SNAKEMAKE), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work)]
    cmd += ["--configfile", str(ROOT / "config" / "config.yaml"), str(work / "extra.yaml")]
    cmd += ["--config", f"cohort={cohort}", f"clinical={clinical}", "-n", *targets]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    blocks = re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", res.stdout, re.M | re.S)
    return {
        rule: re.search(r"resources: (.*)", body).group(1)
        for rule, body in blocks
        if rule in ("train_segmentation", "train_deep_model")
    }


@pytest.mark.workflow
def test_training_jobs_request_gpus_as_configured(cohort_dir, tmp_path):
    """The parsed workflow: with GPUs the training jobs ask for them and for their threads
    per GPU (--gpus, --cpus-per-gpu on SLURM); on a CPU-only cluster for none."""

    def resources(line: str) -> tuple[int, int]:
        found = dict(kv.split("=", 1) for kv in line.split(", "))
        return int(found["gpu"]), int(found["cpus_per_gpu"])

    gpu = _dry_run_resources(
        tmp_path / "gpu", cohort_dir, {"deep": {"train_gpus": 2}, "segmentation": {"train": {}}}
    )
    assert resources(gpu["train_segmentation"]) == (1, 2)  # auto: 1 GPU, 2 threads
    assert resources(gpu["train_deep_model"]) == (2, 1)  # 2 GPUs, 2 threads
    cpu = _dry_run_resources(
        tmp_path / "cpu",
        cohort_dir,
        {"deep": {"train_gpus": 0}, "segmentation": {"train": {"device": "auto"}}},
    )
    assert resources(cpu["train_segmentation"]) == (0, 0)
    assert resources(cpu["train_deep_model"]) == (0, 0)
    cuda = _dry_run_resources(
        tmp_path / "cuda",
        cohort_dir,
        {"deep": {"train_gpus": 0}, "segmentation": {"train": {"device": "cuda"}}},
    )
    assert resources(cuda["train_segmentation"]) == (1, 2)  # the U-Net asks for its GPU
    assert resources(cuda["train_deep_model"]) == (0, 0)
