"""Does the desktop app slow the control loop? The same scripted episodes recorded by `teleop record`'s loop and
from the open window, alternating.

    python benchmarks/gui_loop.py [--rounds N] [--load N] [--seed S]

Progress goes to stderr; the last stdout line is one JSON object: {"cli": {...}, "gui": {...}, "ratio": {...},
"machine": {...}}.

Each round records one franka-reach episode with the scripted operator (the same seed for both, a new seed per
round) twice: once through `teleop.recording.record_episodes`, the loop of `teleop record`, in a process of its
own as `teleop record` runs, and once by pressing Record in `ui.main_window.MainWindow` (its rig in its own
process, the window's process at the lower priority `teleop gui` gives it), which then also shows both cameras,
the joint and tick plots and the state table live (Qt's platform from QT_QPA_PLATFORM, `offscreen` when unset:
widgets are painted into memory as on a screen). The
order alternates between rounds. Both use the window's session settings (20 Hz, the episode ends once success
has held). Figures per mode, read back from each episode file: achieved_rate_hz (its stored achieved rate),
late_ticks (ticks that started more than a period late), tick_p99_ms (99th percentile of a tick's own time) and
step_jitter_p99_ms (99th percentile of |step interval - period|, from the stored step times). `--load N` runs N
busy processes beside the whole benchmark (other programs on the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import busy_processes, c_stdout_to_stderr, log  # noqa: E402

ROBOT, TASK = "franka", "franka-reach"


def episode_figures(path: Path) -> dict[str, float]:
    from recorder.backend import open_episode

    with open_episode(path) as reader:
        attrs, t = reader.attrs, np.asarray(reader.timestamps)
        period = 1.0 / float(attrs["control_rate_hz"])
        jitter = np.abs(np.diff(t) - period) * 1e3 if len(t) > 1 else np.zeros(1)
        return {"steps": reader.num_steps, "achieved_rate_hz": float(attrs["achieved_rate_hz"]),
                "late_ticks": int(attrs["late_ticks"]), "tick_p99_ms": float(attrs["tick_ms_p99"]),
                "step_jitter_p99_ms": float(np.percentile(jitter, 99))}


class Cli:
    """`teleop record`'s loop in a process of its own, as `teleop record` runs: one rig, kept across rounds (as
    `teleop record --episodes N` keeps it), recording one episode per request."""

    def __init__(self, out: Path) -> None:
        self.process = subprocess.Popen([sys.executable, __file__, "--cli-worker", str(out)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def record(self, seed: int) -> Path:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{seed}\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"the CLI worker ended (exit code {self.process.wait()})")
        return Path(line)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(60)


def cli_worker(out: Path) -> None:
    from teleop.recording import record_episodes
    from teleop.rig import RigConfig, build_rig
    from ui.main_window import session_config

    results = os.fdopen(os.dup(1), "w")  # the paths; what pybullet prints goes to stderr
    with c_stdout_to_stderr():
        rig = build_rig(RigConfig(robot=ROBOT, task=TASK, device="scripted", session=session_config("scripted")))
        try:
            for line in sys.stdin:
                summary = record_episodes(rig, out, 1, int(line), progress=lambda _: None)
                print(summary.episodes[0].path, file=results, flush=True)
        finally:
            rig.close()


class Window:
    """The app's main window, kept open across rounds (as a person keeps it open between takes)."""

    def __init__(self, out: Path) -> None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from PyQt6.QtWidgets import QApplication

        from ui.app import yield_to_the_loop
        from ui.main_window import MainWindow

        self.app = QApplication.instance() or QApplication([])
        self.window = MainWindow(out, robot=ROBOT, task=TASK, device="scripted")
        yield_to_the_loop()  # as teleop gui does
        self.window.show()
        self._wait(lambda: self.window.ready, 60)

    def _wait(self, condition: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the window did not get there in {timeout_s} s: {self.window.status_label.text()}")
            self.app.processEvents()
            time.sleep(0.005)

    def record(self, seed: int) -> Path:
        before = set(self.window.out_dir.glob("episode_*.h5"))
        self.window.seed_spin.setValue(seed)
        self._wait(lambda: self.window.ready, 60)
        self.window.record()
        self._wait(lambda: not self.window.recording, 120)
        [path] = set(self.window.out_dir.glob("episode_*.h5")) - before
        return path

    def close(self) -> None:
        self.window.close()
        self.app.processEvents()


def summarise(rows: list[dict[str, float]]) -> dict[str, Any]:
    keys = ("achieved_rate_hz", "late_ticks", "tick_p99_ms", "step_jitter_p99_ms")
    out: dict[str, Any] = {f"mean_{k}": round(float(np.mean([r[k] for r in rows])), 3) for k in keys}
    out["episodes"] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="episodes per mode (default 6)")
    parser.add_argument("--load", type=int, default=0, help="busy processes beside the benchmark")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--cli-worker", type=Path, metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cli_worker:
        cli_worker(args.cli_worker)
        return
    rows: dict[str, list[dict[str, float]]] = {"cli": [], "gui": []}
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp, busy_processes(args.load), c_stdout_to_stderr():
        cli = Cli(Path(tmp) / "cli")  # before the window lowers this process's priority, which children inherit
        window = Window(Path(tmp) / "gui")
        try:
            for i in range(args.rounds):
                seed = args.seed + i
                for mode in ("cli", "gui") if i % 2 == 0 else ("gui", "cli"):
                    path = cli.record(seed) if mode == "cli" else window.record(seed)
                    rows[mode].append(episode_figures(path))
                    log(f"round {i + 1}/{args.rounds} {mode}: {rows[mode][-1]}")
        finally:
            cli.close()
            window.close()
    result: dict[str, Any] = {mode: summarise(r) for mode, r in rows.items()}
    result["ratio"] = {"gui_over_cli_rate": round(result["gui"]["mean_achieved_rate_hz"]
                                                  / result["cli"]["mean_achieved_rate_hz"], 3)}
    result["machine"] = {"cpus": os.cpu_count(), "load": args.load, "platform": platform.platform(),
                         "qt_platform": os.environ.get("QT_QPA_PLATFORM"), "wall_s": round(time.time() - started, 1),
                         "load_avg_end": os.getloadavg()[0]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
