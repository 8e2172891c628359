"""How well each image encoder's embedding says where the target is, before any policy is trained.

    python benchmarks/encoder_probe.py EPISODES [--camera front] [--weights R3M.pt] [--keypoints-weights KP.pt]
                                       [--steps 1000]

EPISODES: recorded franka-reach (or xarm7-reach) episodes, whose `target_pos` extra is the ball's position.
Probes, 5-fold over episodes (the first --folds folds; a fold's episodes are never trained on):

- pooled: ridge regression (lambda 30, inputs standardised) on the frozen ResNet-18's average-pooled embedding at
  128 px, random (seed 0) and, with --weights, from that checkpoint (e.g. `teleop pretrain`'s);
- frozen keypoints: the same ridge regression on teleop.train.keypoints.KeypointEncoder's 64 keypoint coordinates
  (96 px), random (seed 0) and, with --keypoints-weights, from `teleop pretrain --encoder keypoints`;
- keypoints: teleop.train.keypoints.KeypointEncoder (96 px) with a 256-unit MLP, trained from a random init on
  the training folds' frames (4-px random shifts, Adam 1e-3, batch 32, --steps steps) to regress the position
  (--steps 0: left out).

Reports the mean distance [cm] between the probe's and the true position on the held-out folds, and what
guessing the training folds' mean gives. Progress goes to stderr; the last stdout line is one JSON object.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _ROOT / "benchmarks":
    sys.path[0] = str(_ROOT)

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.common import log  # noqa: E402


def load(folder: Path, camera: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (N, H, W, 3) uint8, target positions (N, 3) and episode index (N,) of every episode."""
    from recorder.backend import open_episode

    frames, targets, index = [], [], []
    for i, path in enumerate(sorted(folder.glob("episode_*"))):
        with open_episode(path) as episode:
            frames.append(episode.frames(camera, 0, episode.num_steps))
            targets.append(np.asarray(episode.extras("target_pos"))[:, :3])
            index.append(np.full(episode.num_steps, i))
    return np.concatenate(frames), np.concatenate(targets), np.concatenate(index)


def pooled_probe(embeddings: np.ndarray, targets: np.ndarray, test: np.ndarray) -> float:
    """Mean error [m] of a ridge regression fitted on ~test rows, on the test rows."""
    train = ~test
    mean, std = embeddings[train].mean(0), embeddings[train].std(0) + 1e-6
    x = np.c_[(embeddings - mean) / std, np.ones(len(embeddings))]
    w = np.linalg.solve(x[train].T @ x[train] + 30.0 * np.eye(x.shape[1]), x[train].T @ targets[train])
    return float(np.linalg.norm(x[test] @ w - targets[test], axis=1).mean())


def keypoint_probe(frames: np.ndarray, targets: np.ndarray, test: np.ndarray, steps: int) -> float:
    """Mean error [m] on the test rows of a keypoints encoder + MLP trained on the other rows."""
    import torch

    from teleop.train.encoders import build_encoder
    from teleop.train.keypoints import random_shift

    torch.manual_seed(0)
    encoder = build_encoder("keypoints")
    head = torch.nn.Sequential(torch.nn.Linear(encoder.feature_dim, 256), torch.nn.ReLU(), torch.nn.Linear(256, 3))
    with torch.no_grad():
        images = encoder.prepare(torch.from_numpy(frames))
    y = torch.from_numpy(targets).float()
    rows = torch.from_numpy(np.flatnonzero(~test))
    mean, std = y[rows].mean(0), y[rows].std(0)
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        batch = rows[torch.randint(len(rows), (32,), generator=generator)]
        predicted = head(encoder.embed(random_shift(images[batch], 4, generator)))
        loss = ((predicted - (y[batch] - mean) / std) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    held_out = torch.from_numpy(np.flatnonzero(test))
    with torch.no_grad():
        predicted = head(encoder.embed(images[held_out])) * std + mean
    return float((predicted - y[held_out]).norm(dim=1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("episodes", type=Path)
    parser.add_argument("--camera", default="front")
    parser.add_argument("--weights", type=Path, default=None,
                        help="a ResNet-18 checkpoint to probe beside the random one")
    parser.add_argument("--keypoints-weights", type=Path, default=None,
                        help="a pretrained keypoints encoder to probe, frozen, beside the random one")
    parser.add_argument("--steps", type=int, default=1000,
                        help="training steps of the keypoints probe (0: leave it out)")
    parser.add_argument("--folds", type=int, default=2, help="how many of the 5 folds to hold out in turn")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    from teleop.train.encoders import build_encoder

    torch.set_num_threads(args.threads)
    frames, targets, episode = load(args.episodes, args.camera)
    log(f"{len(frames)} frames of {episode.max() + 1} episodes, camera {args.camera}")
    encoders = {"resnet18 random": build_encoder("resnet18", image_size=128)}
    if args.weights is not None:
        encoders[f"resnet18 {args.weights.name}"] = build_encoder("resnet18", args.weights, image_size=128)
    encoders["keypoints random, frozen"] = build_encoder("keypoints")
    if args.keypoints_weights is not None:
        name = f"keypoints {args.keypoints_weights.name}, frozen"
        encoders[name] = build_encoder("keypoints", args.keypoints_weights)
    with torch.no_grad():
        embedded = {name: np.concatenate([enc(torch.from_numpy(frames[i : i + 64])).numpy()
                                          for i in range(0, len(frames), 64)]) for name, enc in encoders.items()}
    trained = ["keypoints"] if args.steps > 0 else []
    errors: dict[str, list[float]] = {name: [] for name in [*embedded, *trained, "guess"]}
    for fold in range(args.folds):
        test = episode % 5 == fold
        started = time.perf_counter()
        for name, embeddings in embedded.items():
            errors[name].append(pooled_probe(embeddings, targets, test))
        if trained:
            errors["keypoints"].append(keypoint_probe(frames, targets, test, args.steps))
        errors["guess"].append(float(np.linalg.norm(targets[~test].mean(0) - targets[test], axis=1).mean()))
        log(f"fold {fold}: " + ", ".join(f"{k} {v[-1] * 100:.1f} cm" for k, v in errors.items())
            + f" ({time.perf_counter() - started:.0f} s)")
    result = {name: round(100 * float(np.mean(v)), 2) for name, v in errors.items()}
    print(json.dumps({"camera": args.camera, "frames": len(frames), "folds": args.folds, "steps": args.steps,
                      "mean_error_cm": result}))


if __name__ == "__main__":
    main()
