"""Bad command-line values stop `teleop` at once: one line on stderr naming the option and the fix, a non-zero
exit, and no work started (no rig built, no training, no window, nothing written)."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from teleop import cli

UNWRITABLE = Path("/proc/nope")  # no one may create anything under /proc, not even root
WORK = ["teleop.rig.build_rig", "teleop.recording.record_episodes", "teleop.train.trainer.train",
        "teleop.train.runner.load_policy", "teleop.evaluate.evaluate_runner", "teleop.calibrate.calibrate",
        "recorder.cameras.find_cameras", "ui.app.run_app"]
"""The functions that do a command's work; none may be reached on bad input."""


class WorkStarted(Exception):
    pass


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    # Modules that import these functions by name must hold the real ones before they are patched: a module
    # first imported while the patch is on would keep the fake after the test.
    for module in ("teleop.evaluate", "teleop.replay", "ui.rig_process"):
        importlib.import_module(module)
    calls: list[str] = []
    for target in WORK:
        def work(*args: object, _name: str = target, **kwargs: object) -> int:
            calls.append(_name)
            if _name == "ui.app.run_app":
                return 0  # the window would open here
            raise WorkStarted(_name)
        monkeypatch.setattr(target, work)
    return calls


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("keep me\n")
    return path


Case = Callable[[Path], tuple[list[str], str]]
CASES: dict[str, Case] = {
    "demo-negative-episodes": lambda d: (["demo", "--episodes", "-3", "--out", str(d / "eps")], "--episodes"),
    "demo-out-is-a-file": lambda d: (["demo", "--out", str(_file(d))], "is a file"),
    "demo-out-under-proc": lambda d: (["demo", "--out", str(UNWRITABLE)], str(UNWRITABLE)),
    "demo-out-inside-a-file": lambda d: (["demo", "--out", str(_file(d) / "eps")], "Not a directory"),
    "demo-zero-train-steps": lambda d: (["demo", "--train", "--train-steps", "0", "--out", str(d / "eps")],
                                        "--train-steps"),
    "train-out-is-a-file": lambda d: (["train", str(d), "--out", str(_file(d))], "is a file"),
    "train-zero-steps": lambda d: (["train", str(d), "--out", str(d / "run"), "--steps", "0"], "--steps"),
    "train-zero-batch": lambda d: (["train", str(d), "--out", str(d / "run"), "--batch-size", "0"], "--batch-size"),
    "train-nan-lr": lambda d: (["train", str(d), "--out", str(d / "run"), "--lr", "nan"], "--lr"),
    "record-negative-seconds": lambda d: (["record", "--seconds", "-1", "--out", str(d / "eps")], "--seconds"),
    "record-zero-seconds": lambda d: (["record", "--seconds", "0", "--out", str(d / "eps")], "--seconds"),
    "record-zero-episodes": lambda d: (["record", "--episodes", "0", "--out", str(d / "eps")], "--episodes"),
    "record-out-under-proc": lambda d: (["record", "--out", str(UNWRITABLE)], str(UNWRITABLE)),
    "eval-zero-episodes": lambda d: (["eval", str(d / "run"), "--episodes", "0"], "--episodes"),
    "eval-negative-max-seconds": lambda d: (["eval", str(d / "run"), "--max-seconds", "-1"], "--max-seconds"),
    "gui-out-under-proc": lambda d: (["gui", "--out", str(UNWRITABLE)], str(UNWRITABLE)),
    "gui-out-is-a-file": lambda d: (["gui", "--out", str(_file(d))], "is a file"),
    "calibrate-out-is-a-folder": lambda d: (["calibrate", "--device", "vive", "--out", str(d)], "is a folder"),
    "calibrate-zero-timeout": lambda d: (["calibrate", "--device", "vive", "--out", str(d / "c.json"),
                                          "--timeout", "0"], "--timeout"),
    "cameras-zero-probe": lambda d: (["cameras", "--probe-seconds", "0"], "--probe-seconds"),
    "models-out-under-proc": lambda d: (["models", "fetch", "--out", str(UNWRITABLE / "hand.task")],
                                        str(UNWRITABLE)),
}


def _tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_naming_the_problem_before_any_work(
        name: str, tmp_path: Path, started: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    argv, problem = CASES[name](tmp_path)
    before = _tree(tmp_path)
    t0 = time.perf_counter()
    rc = cli.main(argv)
    elapsed = time.perf_counter() - t0
    out, err = capsys.readouterr()
    assert rc != 0
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert problem in err and ": " in err.split(problem, 1)[1], err  # names the problem, then says what to do
    assert started == [] and out == ""
    assert _tree(tmp_path) == before  # nothing written, nothing created
    assert elapsed < 2.0


def test_a_missing_output_folder_is_created_up_front_and_no_probe_file_is_left(
        tmp_path: Path, started: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new" / "episodes"
    assert cli.main(["gui", "--out", str(out)]) == 0
    assert started == ["ui.app.run_app"] and out.is_dir() and list(out.iterdir()) == []
    assert capsys.readouterr().err == ""


def test_a_good_record_command_gets_past_the_checks(tmp_path: Path, started: list[str]) -> None:
    with pytest.raises(WorkStarted):
        cli.main(["record", "--seconds", "0.5", "--episodes", "2", "--out", str(tmp_path / "eps")])
    assert started == ["teleop.rig.build_rig"] and (tmp_path / "eps").is_dir()


@pytest.mark.parametrize("argv", [
    ["demo", "--episodes", "2", "--out", "{tmp}/eps"],
    ["train", "{tmp}/eps", "--out", "{tmp}/run", "--action-space", "ee-delta", "--horizon", "2", "--threads", "2"],
    ["eval", "{tmp}/run", "--episodes", "3"],
], ids=["demo", "train", "eval"])
def test_good_commands_with_default_values_get_past_the_checks(argv: list[str], tmp_path: Path,
                                                                started: list[str]) -> None:
    (tmp_path / "eps").mkdir()
    with pytest.raises(WorkStarted):
        cli.main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert len(started) == 1


def test_every_option_of_every_command_has_help() -> None:
    import argparse

    from teleop.cli import _parser

    def undocumented(parser: argparse.ArgumentParser, path: str) -> list[str]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found += undocumented(sub, f"{path} {name}")
            if action.help is None and not isinstance(action, argparse._HelpAction):
                found.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
        return found

    assert undocumented(_parser(), "teleop") == []
