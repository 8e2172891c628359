"""The R3M evaluation protocol as one command: success against the number of demonstrations, per encoder.

For every encoder, number of demonstrations and seed (a cell), `teleop.train.trainer.train` fits a policy on
the first N successful demonstrations of the folder, rolling it out every `eval_every` steps on validation
scenes (seeds 200000..) and keeping the best checkpoint; that checkpoint is then rolled out on separate test
scenes (seeds 100000..) on `workers` processes, and the test success is what the cell reports. Embeddings are
cached once per encoder and shared by all its cells.

The sweep folder holds a run folder per cell (`<encoder>/demos-<N>/seed-<S>`), `sweep.json` (every cell),
`sweep.md` (a table: mean and spread over seeds per encoder and number of demonstrations) and `sweep.png`
(success against demonstrations, one line per encoder, as R3M's Figure 5).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from teleop.deps import require
from teleop.errors import TeleopError


@dataclass(frozen=True)
class SweepConfig:
    """A sweep.

    Attributes:
        episodes_dir: Folder of demonstrations.
        out_dir: Sweep folder to create.
        demos: Numbers of demonstrations, e.g. (5, 10, 25).
        seeds: Training seeds of each cell.
        encoders: (encoder name, weights file or None) per line of the plot.
        steps, eval_every: Gradient steps (None: each encoder's default, architectures.default_steps), and
            steps between validation rollouts.
        valid_episodes, test_episodes: Rollouts per validation, and on the test scenes.
        workers: Processes of the test rollouts.
        camera: Camera the policies see.
        max_duration_s: Rollout length cap [s]; None: the task's.
        train_options: More TrainConfig fields for every cell (e.g. action_space, horizon).
    """

    episodes_dir: Path
    out_dir: Path
    demos: tuple[int, ...] = (5, 10, 25)
    seeds: tuple[int, ...] = (0, 1, 2)
    encoders: tuple[tuple[str, Path | None], ...] = (("resnet18", None),)
    steps: int | None = None
    eval_every: int = 2000
    valid_episodes: int = 10
    test_episodes: int = 30
    workers: int = 1
    camera: str = "front"
    max_duration_s: float | None = None
    train_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = [message for ok, message in (
            (bool(self.demos) and min(self.demos) >= 1, f"demos must be positive counts, got {self.demos}"),
            (bool(self.seeds), "give at least one seed"),
            (bool(self.encoders), "give at least one encoder"),
            (self.valid_episodes >= 1 and self.test_episodes >= 1, "valid and test episodes must be at least 1"),
        ) if not ok]
        if problems:
            raise TeleopError("invalid sweep: " + "; ".join(problems))


@dataclass(frozen=True)
class Cell:
    """One trained and tested policy."""

    encoder: str
    demos: int
    seed: int
    run_dir: Path
    best_valid: float
    best_step: int
    test_success: float


def sweep(config: SweepConfig, log: Callable[[str], None] = print) -> list[Cell]:
    """Train and test every cell; write sweep.json, sweep.md and sweep.png into config.out_dir.

    Raises:
        TeleopError: A cell cannot be trained (too few demonstrations, unreadable episodes or weights).
    """
    from teleop.evaluate import VALID_SEED_OFFSET, evaluate_checkpoint, evaluate_runner
    from teleop.train.architectures import default_steps
    from teleop.train.runner import BEST_POLICY_FILE
    from teleop.train.trainer import TrainConfig, train

    config.out_dir.mkdir(parents=True, exist_ok=True)
    cells: list[Cell] = []
    total = len(config.encoders) * len(config.demos) * len(config.seeds)
    cache = config.out_dir / "feature_cache"  # keyed by episode and encoder: shared by every cell
    for encoder, weights in config.encoders:
        for demos in config.demos:
            for seed in config.seeds:
                run_dir = config.out_dir / _label(encoder, weights) / f"demos-{demos}" / f"seed-{seed}"
                log(f"cell {len(cells) + 1}/{total}: {_label(encoder, weights)}, {demos} demonstrations, seed {seed}")

                def validate(runner):  # noqa: ANN001, ANN202
                    return evaluate_runner(runner, config.valid_episodes, seed=VALID_SEED_OFFSET,
                                           max_duration_s=config.max_duration_s).success_rate

                result = train(TrainConfig(
                    episodes_dir=config.episodes_dir, out_dir=run_dir, steps=config.steps or default_steps(encoder),
                    encoder=encoder, encoder_weights=weights, camera=config.camera, seed=seed,
                    eval_every=config.eval_every, cache_dir=cache, max_episodes=demos, **config.train_options,
                ), log=lambda message: log(f"  {message}"), evaluate=validate)
                test = evaluate_checkpoint(run_dir / BEST_POLICY_FILE, config.test_episodes,
                                           workers=config.workers, max_duration_s=config.max_duration_s)
                cell = Cell(_label(encoder, weights), demos, seed, run_dir, float(result.best_success_rate or 0.0),
                            int(result.best_step or 0), test.success_rate)
                cells.append(cell)
                log(f"  best validation {cell.best_valid:.0%} at step {cell.best_step}, test {cell.test_success:.0%} "
                    f"on {config.test_episodes} scenes")
    _write(config, cells)
    return cells


def _label(encoder: str, weights: Path | None) -> str:
    return encoder if weights is None else f"{encoder}-{Path(weights).stem}"


def summary(cells: Sequence[Cell]) -> dict[str, dict[int, tuple[float, float]]]:
    """Encoder -> number of demonstrations -> (mean, std) of the test success over the seeds."""
    out: dict[str, dict[int, tuple[float, float]]] = {}
    for encoder in dict.fromkeys(c.encoder for c in cells):
        for demos in sorted({c.demos for c in cells if c.encoder == encoder}):
            values = [c.test_success for c in cells if c.encoder == encoder and c.demos == demos]
            out.setdefault(encoder, {})[demos] = (float(np.mean(values)), float(np.std(values)))
    return out


def _write(config: SweepConfig, cells: list[Cell]) -> None:
    doc = {"episodes_dir": str(config.episodes_dir), "camera": config.camera, "steps": config.steps,
           "eval_every": config.eval_every, "valid_episodes": config.valid_episodes,
           "test_episodes": config.test_episodes, "train_options": config.train_options,
           "cells": [{"encoder": c.encoder, "demos": c.demos, "seed": c.seed, "run_dir": str(c.run_dir),
                      "best_valid": c.best_valid, "best_step": c.best_step, "test_success": c.test_success}
                     for c in cells]}
    (config.out_dir / "sweep.json").write_text(json.dumps(doc, indent=2) + "\n")
    table = summary(cells)
    demos = sorted({c.demos for c in cells})
    lines = ["| encoder | " + " | ".join(f"{d} demos" for d in demos) + " |",
             "|---|" + "---|" * len(demos)]
    for encoder, by_demos in table.items():
        lines.append(f"| {encoder} | " + " | ".join(
            f"{by_demos[d][0]:.0%} ± {by_demos[d][1]:.0%}" if d in by_demos else "-" for d in demos) + " |")
    seeds = len(config.seeds)
    lines += ["", f"Test success on {config.test_episodes} scenes per policy (seeds 100000..), mean ± std over "
                  f"{seeds} seed{'s' if seeds > 1 else ''}; each policy is the best of its validation rollouts."]
    (config.out_dir / "sweep.md").write_text("\n".join(lines) + "\n")
    _plot(table, config.out_dir / "sweep.png")


def _plot(table: dict[str, dict[int, tuple[float, float]]], path: Path) -> None:
    require("matplotlib", extra="report", purpose="the sweep's plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for encoder, by_demos in table.items():
        demos = sorted(by_demos)
        mean = np.array([by_demos[d][0] for d in demos]) * 100
        std = np.array([by_demos[d][1] for d in demos]) * 100
        ax.errorbar(demos, mean, yerr=std, marker="o", capsize=3, label=encoder)
    ax.set_xlabel("demonstrations")
    ax.set_ylabel("test success [%]")
    ax.set_ylim(-2, 102)
    ax.set_xticks(sorted({d for by_demos in table.values() for d in by_demos}))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
