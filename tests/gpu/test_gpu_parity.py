"""GPU results equal CPU results (marked ``gpu``; skipped without CUDA; tests/gpu/run.sh).

Deterministic settings on both devices: float32 (no TF32, no autocast), cuDNN deterministic and
not benchmarking, ``torch.use_deterministic_algorithms``, ``CUBLAS_WORKSPACE_CONFIG=:4096:8``, the
same initial weights and batch. cuDNN and cuBLAS still sum in another order than the CPU kernels,
so the values agree to accumulated float32 rounding, within the tolerances below (a wrong device
transfer, a missing ``eval()`` or an autocast left on is off by orders of magnitude more).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before CUDA initialises

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

#: Relative tolerance of one training step's loss, CPU vs GPU.
LOSS_RTOL = 1e-4
#: Weights after that step: |gpu - cpu| <= PARAM_ATOL + PARAM_RTOL |cpu|.
PARAM_ATOL, PARAM_RTOL = 1e-5, 1e-4
#: Extracted deep features: |gpu - cpu| <= FEATURE_ATOL + FEATURE_RTOL |cpu|.
FEATURE_ATOL, FEATURE_RTOL = 1e-4, 1e-3


@pytest.fixture(autouse=True)
def deterministic():
    """Float32 everywhere and deterministic kernels; the previous settings restored after."""
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
    )
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        enabled,
    ) = saved
    torch.use_deterministic_algorithms(enabled)


def one_step(model, loss_fn, x, y, device: str) -> tuple[float, dict[str, torch.Tensor]]:
    """One SGD step of a copy of ``model`` on ``device``: its loss and the weights after."""
    net = copy.deepcopy(model).to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    opt.zero_grad()
    loss = loss_fn(net(x.to(device)), y.to(device))
    loss.backward()
    opt.step()
    return float(loss), {k: v.detach().cpu() for k, v in net.state_dict().items()}


def assert_same_step(model, loss_fn, x, y) -> None:
    cpu_loss, cpu_state = one_step(model, loss_fn, x, y, "cpu")
    gpu_loss, gpu_state = one_step(model, loss_fn, x, y, "cuda")
    assert gpu_loss == pytest.approx(cpu_loss, rel=LOSS_RTOL)
    for key, value in cpu_state.items():
        if value.is_floating_point():
            torch.testing.assert_close(
                gpu_state[key], value, atol=PARAM_ATOL, rtol=PARAM_RTOL, msg=key
            )
        else:  # BatchNorm's num_batches_tracked
            assert torch.equal(gpu_state[key], value), key


def study_model():
    """The studies' 3-D ResNet-10 (two classes), seeded."""
    from hccrad.deep.train import build_model
    from hccrad.deep.train_config import TrainConfig

    torch.manual_seed(0)
    cfg = TrainConfig(network="resnet10", input_kind="volume", seed=0)
    return build_model(cfg, 1, 1, load_weights=False)


def test_study_model_training_step_matches_cpu():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 1, 32, 32, 32, generator=g)
    y = torch.tensor([0, 1, 0, 1])
    assert_same_step(study_model(), torch.nn.functional.cross_entropy, x, y)


def test_unet_training_step_matches_cpu():
    from monai.losses import DiceCELoss

    from hccrad.deep.segmentation import SegConfig, build_net

    cfg = SegConfig(grid_size=32, channels=(8, 16, 32), strides=(2, 2), num_res_units=1, seed=0)
    torch.manual_seed(0)
    net = build_net(cfg)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 1, 32, 32, 32, generator=g)
    y = torch.randint(0, 3, (2, 1, 32, 32, 32), generator=g)
    assert_same_step(net, DiceCELoss(to_onehot_y=True, softmax=True), x, y)


def test_extracted_features_match_cpu(tmp_path: Path):
    """hccrad.deep.extract.extract_features of the same model on the CPU and on CUDA."""
    from test_deep_train import make_inputs

    from hccrad.deep.extract import extract_features

    labels = [i % 2 for i in range(6)]
    paths = make_inputs(tmp_path, labels, kind="volume", size=32, seed=3, square=8)
    patients = [f"P{i}" for i in range(6)]
    model = study_model().eval()
    cpu = extract_features(copy.deepcopy(model), paths, patients, device="cpu")
    gpu = extract_features(copy.deepcopy(model), paths, patients, device="cuda")
    assert list(gpu.index) == patients and list(gpu.columns) == list(cpu.columns)
    assert np.abs(cpu.to_numpy()).max() > 1e-3  # features, not zeros
    np.testing.assert_allclose(gpu.to_numpy(), cpu.to_numpy(), atol=FEATURE_ATOL, rtol=FEATURE_RTOL)
