"""Trainer speed on this machine: the policy head's gradient steps, encoding frames, and one policy step, with
torch's default thread count (one per core) against the trainer's choice (one thread for the head and the
policy step, every core for encoding), on an idle machine and beside busy processes.

    python benchmarks/train_speed.py [--load 0,2] [--seconds 6]

For each load (N processes that keep a CPU busy, `python -c 'while True: pass'` at nice 0, beside the
measurement) and each thread count (1, and one per core):
- head: Adam steps of the BC head (BatchNorm1d, MLP 256-256, ReLU) on 512-d embeddings + 9 proprio, batch 32,
  7 actions, as `teleop train` takes them: steps/s over --seconds; and the time 20000 steps take at that rate.
- encode: ResNet-18 (R3M's preprocessing, 224x224 frames) forward passes in batches of 32 under no_grad:
  images/s.
- act: one PolicyRunner.act-like step, ResNet-18 on one frame then the head: ms per step (median).
All on the CPU, numbers measured in this process with `torch.set_num_threads`.

Progress goes to stderr; the last stdout line is one JSON object {"machine": {...}, "results": [...]}.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _ROOT / "benchmarks":
    sys.path[0] = str(_ROOT)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.common import busy_processes, log  # noqa: E402


def head_steps_per_s(seconds: float) -> float:
    import torch

    from teleop.train.policy import BCPolicy

    torch.manual_seed(0)
    policy = BCPolicy(512, 9, 7)
    features, proprio, targets = torch.randn(1000, 512), torch.randn(1000, 9), torch.randn(1000, 7)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        idx = torch.randint(1000, (32,))
        loss = torch.nn.functional.mse_loss(policy(features[idx], proprio[idx]), targets[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
    return steps / (time.perf_counter() - start)


def encode_images_per_s(seconds: float) -> float:
    import torch

    from teleop.train.encoders import build_encoder

    encoder = build_encoder("resnet18")
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (32, 224, 224, 3), dtype=np.uint8))
    images, start = 0, time.perf_counter()
    with torch.no_grad():
        while time.perf_counter() - start < seconds:
            encoder(frames)
            images += len(frames)
    return images / (time.perf_counter() - start)


def act_ms(seconds: float) -> float:
    import torch

    from teleop.train.encoders import build_encoder
    from teleop.train.policy import BCPolicy

    encoder, policy = build_encoder("resnet18"), BCPolicy(512, 9, 7).eval()
    frame = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8))
    proprio = torch.zeros(1, 9)
    times: list[float] = []
    start = time.perf_counter()
    with torch.no_grad():
        while time.perf_counter() - start < seconds or len(times) < 5:
            t0 = time.perf_counter()
            policy.predict(encoder(frame), proprio)
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", default="0,2", help="busy processes beside the measurement, comma-separated")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each measurement [s]")
    args = parser.parse_args()
    import torch

    cores = os.cpu_count() or 1
    results = []
    for load in (int(v) for v in args.load.split(",")):
        with busy_processes(load):
            for threads in sorted({1, cores}):
                torch.set_num_threads(threads)
                head = head_steps_per_s(args.seconds)
                encode = encode_images_per_s(args.seconds)
                act = act_ms(args.seconds)
                row = {"busy_processes": load, "threads": threads, "head_steps_per_s": round(head, 1),
                       "head_20k_steps_s": round(20000 / head, 1), "encode_images_per_s": round(encode, 1),
                       "act_ms": round(act, 1)}
                results.append(row)
                log(json.dumps(row))
    print(json.dumps({"machine": {"cpus": cores, "torch": torch.__version__,
                                  "load_avg_end": [round(v, 2) for v in os.getloadavg()]}, "results": results}))


if __name__ == "__main__":
    main()
