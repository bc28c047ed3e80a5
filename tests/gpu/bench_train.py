"""Training throughput of the workflow's networks (samples per second), for tests/gpu/run.sh.

Per network: ``--warmup`` untimed steps, then ``--steps`` timed SGD steps on random batches
(float32; the U-Net also with bfloat16 autocast, as ``amp: true`` trains on CUDA), synchronised
before the clock stops. Writes a JSON with the device, the versions and per network the batch,
the input size and samples per second.

    python tests/gpu/bench_train.py --out bench.json [--device cuda] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def _study_net(network: str, kind: str) -> torch.nn.Module:
    from hccrad.deep.train import build_model
    from hccrad.deep.train_config import TrainConfig

    return build_model(TrainConfig(network=network, input_kind=kind), 1, 1, load_weights=False)


def _unet() -> torch.nn.Module:
    from hccrad.deep.segmentation import SegConfig, build_net

    return build_net(SegConfig.study())


def _cases() -> dict[str, tuple[Callable[[], torch.nn.Module], tuple[int, ...], str]]:
    """name -> (network, input batch shape, loss): the studies' 3-D ResNets at the full-scale
    cube size, the U-Net at its study grid (SegConfig.study: 128³)."""
    return {
        "resnet10_3d_64": (lambda: _study_net("resnet10", "volume"), (16, 1, 64, 64, 64), "ce"),
        "resnet18_3d_64": (lambda: _study_net("resnet18", "volume"), (16, 1, 64, 64, 64), "ce"),
        "unet_128": (_unet, (2, 1, 128, 128, 128), "dicece"),
    }


def _step_fn(net: torch.nn.Module, loss: str, shape: tuple[int, ...], device: torch.device):
    from monai.losses import DiceCELoss

    x = torch.randn(shape, device=device)
    if loss == "ce":
        y = torch.randint(0, 2, (shape[0],), device=device)
        loss_fn: Any = torch.nn.functional.cross_entropy
    else:
        y = torch.randint(0, 3, (shape[0], 1, *shape[2:]), device=device)
        loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)

    def step(amp: bool) -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = loss_fn(net(x), y)
        out.backward()
        opt.step()

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name: str, device: torch.device, steps: int, warmup: int, amp: bool) -> dict:
    """Samples per second of one network's training steps."""
    build, shape, loss = _cases()[name]
    torch.manual_seed(0)
    net = build().to(device).train()
    step = _step_fn(net, loss, shape, device)
    for _ in range(warmup):
        step(amp)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(amp)
    _sync(device)
    seconds = time.perf_counter() - t0
    result = {
        "network": name,
        "amp_bf16": amp,
        "batch": shape[0],
        "input": list(shape[1:]),
        "steps": steps,
        "seconds": round(seconds, 3),
        "samples_per_s": round(steps * shape[0] / seconds, 2),
    }
    if device.type == "cuda":
        result["max_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        torch.cuda.reset_peak_memory_stats(device)
    del net
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--networks", nargs="*", default=list(_cases()))
    a = p.parse_args(argv)
    device = torch.device(a.device)
    torch.backends.cudnn.benchmark = True  # throughput, not reproducibility
    info = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "results": [],
    }
    for name in a.networks:
        for amp in (False, True) if name.startswith("unet") and device.type == "cuda" else (False,):
            r = measure(name, device, a.steps, a.warmup, amp)
            print(json.dumps(r), flush=True)
            info["results"].append(r)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(info, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
