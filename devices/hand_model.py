"""Finding, building or downloading the MediaPipe Hand Landmarker model (`hand_landmarker.task`).

A `.task` file is a zip of two TFLite models: `hand_detector.tflite` (palm detection) and
`hand_landmarks_detector.tflite` (21 landmarks, handedness). Recent mediapipe wheels ship no hand model, so
the file is looked up (find_model), in this order:

    1. an explicit path,
    2. the environment variable TELEOP_HAND_MODEL,
    3. the cache: $XDG_CACHE_HOME/teleop/hand_landmarker.task (default ~/.cache/teleop/hand_landmarker.task).

Two ways to put one in the cache: fetch_model() downloads Google's published file, and
build_task_from_mediapipe_wheel() zips the two TFLite files that mediapipe 0.10.x wheels carry
(`mediapipe/modules/palm_detection/palm_detection_full.tflite`, `.../hand_landmark/hand_landmark_full.tflite`),
from the installed mediapipe if it is a 0.10, else from the 0.10.21 wheel that pip downloads from the package
index (mediapipe 1.x, which the `hands` extra installs, runs the model but ships none).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

from teleop.errors import DeviceError

MODEL_URL = (
    "https://storage.googleapis.com/mediapipe-models/hand_landmarker/hand_landmarker/float16/latest/"
    "hand_landmarker.task"
)
"""Google's published Hand Landmarker model (float16)."""
ENV_VAR = "TELEOP_HAND_MODEL"
MODEL_NAME = "hand_landmarker.task"
TASK_MEMBERS = ("hand_detector.tflite", "hand_landmarks_detector.tflite")
WHEEL_FILES = {
    "hand_detector.tflite": ("modules", "palm_detection", "palm_detection_full.tflite"),
    "hand_landmarks_detector.tflite": ("modules", "hand_landmark", "hand_landmark_full.tflite"),
}
WHEEL_REQUIREMENT = "mediapipe==0.10.21"  # the last release whose wheel carries the hand TFLite files
HOW_TO_GET = (
    "get one with `teleop models fetch` (downloads it; needs the internet), or with "
    "`teleop models fetch --from-wheel` (builds it from the mediapipe 0.10 wheel: the installed one, or one pip "
    "downloads from the package index), or set TELEOP_HAND_MODEL to a hand_landmarker.task file"
)


def default_model_path() -> Path:
    """Where the model is cached: $XDG_CACHE_HOME/teleop/hand_landmarker.task (~/.cache if unset)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "teleop" / MODEL_NAME


def find_model(path: str | Path | None = None) -> Path:
    """The Hand Landmarker `.task` file to use: `path`, else $TELEOP_HAND_MODEL, else the cached one.

    Raises:
        DeviceError: the named file does not exist or is not a hand landmarker bundle, or none was found;
            the message lists where it looked and how to get one.
    """
    if path is not None:
        return _checked(Path(path).expanduser(), "the model path given")
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return _checked(Path(from_env).expanduser(), f"${ENV_VAR}")
    cached = default_model_path()
    if cached.is_file():
        return _checked(cached, "the model cache")
    raise DeviceError(f"no hand landmarker model found: looked for an explicit path (none given), ${ENV_VAR} "
                      f"(not set) and {cached} (missing); {HOW_TO_GET}")


def check_task(path: str | Path) -> Path:
    """`path`, if it is a zip holding both TFLite models of a Hand Landmarker; else DeviceError."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as bundle:
            names = set(bundle.namelist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise DeviceError(f"{path} is not a hand landmarker model ({exc}): {HOW_TO_GET}") from exc
    missing = [name for name in TASK_MEMBERS if name not in names]
    if missing:
        raise DeviceError(f"{path} is not a hand landmarker model (it lacks {', '.join(missing)}): {HOW_TO_GET}")
    return path


def build_task_from_mediapipe_wheel(out_path: str | Path | None = None, wheel: str | Path | None = None,
                                    download: bool = True) -> Path:
    """Zip the palm-detection and hand-landmark TFLite files that mediapipe 0.10 wheels carry into a `.task`.

    The files come from `wheel` (a mediapipe 0.10 `.whl` file), else from the installed mediapipe if it has them
    (0.10.x), else, with `download`, from the mediapipe 0.10 wheel fetched from the package index with pip
    (`pip download mediapipe==0.10.21 --no-deps`: the package registry, not a model hub).

    Args:
        out_path: File to write; default: the cache path (default_model_path()).
        wheel: A mediapipe 0.10 wheel to take the files from.
        download: Whether pip may fetch the wheel when neither `wheel` nor the installed mediapipe has them.
    Returns:
        The written file (replaced atomically if it existed).
    Raises:
        DeviceError: no source has the TFLite files; the message says what was tried.
    """
    out = Path(out_path) if out_path is not None else default_model_path()
    if wheel is not None:
        return _task_from_wheel(Path(wheel), out)
    spec = importlib.util.find_spec("mediapipe")  # finds the package without importing it (slow)
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        sources = {member: root.joinpath(*parts) for member, parts in WHEEL_FILES.items()}
        if all(source.is_file() for source in sources.values()):
            with _atomic_file(out) as tmp:
                with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as bundle:  # stored: MediaPipe maps the models
                    for member, source in sources.items():
                        bundle.write(source, member)
            return out
    installed = "mediapipe is not installed" if spec is None else "the installed mediapipe has no hand TFLite files"
    if not download:
        raise DeviceError(f"{installed} (0.10.x wheels have them): {HOW_TO_GET}")
    with tempfile.TemporaryDirectory() as folder:
        return _task_from_wheel(download_wheel(Path(folder)), out)


def download_wheel(folder: Path, requirement: str = WHEEL_REQUIREMENT) -> Path:
    """The mediapipe 0.10 wheel for this platform, fetched by pip from the package index into `folder`."""
    command = [sys.executable, "-m", "pip", "download", requirement, "--no-deps", "--only-binary=:all:",
               "--quiet", "--dest", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(folder.glob("mediapipe-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise DeviceError(f"pip could not download {requirement} ({last}): {HOW_TO_GET}")
    return wheels[0]


def _task_from_wheel(wheel: Path, out: Path) -> Path:
    names = {member: "/".join(("mediapipe", *parts)) for member, parts in WHEEL_FILES.items()}
    try:
        with zipfile.ZipFile(wheel) as archive:
            missing = [name for name in names.values() if name not in archive.namelist()]
            if missing:
                raise DeviceError(f"{wheel} has no {', '.join(missing)} (mediapipe 0.10 wheels have them): "
                                  f"{HOW_TO_GET}")
            with _atomic_file(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as bundle:
                for member, name in names.items():
                    bundle.writestr(member, archive.read(name))
    except (OSError, zipfile.BadZipFile) as exc:
        raise DeviceError(f"{wheel} is not a readable wheel ({exc}): {HOW_TO_GET}") from exc
    return out


def fetch_model(out_path: str | Path | None = None, url: str = MODEL_URL, timeout_s: float = 30.0) -> Path:
    """Download the Hand Landmarker model.

    Args:
        out_path: File to write; default: the cache path (default_model_path()).
        url: Where to get it (any URL urllib opens, file:// included).
        timeout_s: Network timeout [s].
    Returns:
        The written file, checked to be a hand landmarker bundle (replaced atomically if it existed).
    Raises:
        DeviceError: the download failed or did not give a hand landmarker bundle.
    """
    out = Path(out_path) if out_path is not None else default_model_path()
    offline = ("where there is no internet, build it from the mediapipe wheel with "
               f"build_task_from_mediapipe_wheel(), or copy a hand_landmarker.task to {default_model_path()}")
    with _atomic_file(out) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response, open(tmp, "wb") as file:
                shutil.copyfileobj(response, file)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DeviceError(f"could not download the hand model from {url} ({reason}); {offline}") from exc
        try:
            check_task(tmp)
        except DeviceError as exc:
            raise DeviceError(f"{url} did not give a hand landmarker model (a zip of {' and '.join(TASK_MEMBERS)});"
                              f" check the URL; {offline}") from exc
    return out


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[Path]:
    """A temporary file beside `path`, renamed onto it if the block succeeds, removed otherwise."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise DeviceError(f"cannot write in {path.parent} ({exc.strerror}): pick a writable path") from exc
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def _checked(path: Path, source: str) -> Path:
    if not path.is_file():
        raise DeviceError(f"the hand model {path} (from {source}) does not exist: {HOW_TO_GET}")
    return check_task(path)
