"""Lossy colour frames: JPEG encoding and decoding through Pillow (`pip install 'teleop[jpeg]'`).

Chosen by measurement (`python benchmarks/recording.py --image-codecs`: 60 frames of the real hand video
scaled to 640x480, median of 3 rounds, 2 shared cores; encode / decode time and size per frame, raw 921.6 kB):

    codec                         encode    decode    size      PSNR
    lossless: h5py lzf            6.72 ms   3.81 ms   336.6 kB  exact
    lossless: zarr zstd 1         7.59 ms   2.59 ms   256.1 kB  exact
    Pillow q75 (4:2:0)            1.06 ms   1.80 ms    17.4 kB  43.6 dB
    Pillow q90 (4:2:0)            1.12 ms   1.95 ms    28.5 kB  46.7 dB
    Pillow q95 (4:2:0)            1.17 ms   1.97 ms    42.9 kB  48.2 dB
    OpenCV imencode q90           2.75 ms   1.46 ms    28.5 kB  46.7 dB
    simplejpeg q90 (4:4:4)        1.34 ms   1.69 ms    36.3 kB  47.6 dB

All three libraries wrap libjpeg-turbo; Pillow encodes fastest here and is the most common of them, so it is
the one used. Quality 90 (the default) stores a camera frame 9-12x smaller than lossless and encodes it 6x
faster, at a PSNR (47 dB) far above what visual policies notice.
"""

from __future__ import annotations

import io
from types import ModuleType

import numpy as np

from teleop.deps import require

DEFAULT_QUALITY = 90


def pillow() -> ModuleType:
    """PIL.Image; MissingDependencyError naming `pip install 'teleop[jpeg]'` when Pillow is missing."""
    return require("PIL.Image", "jpeg", "JPEG-compressed camera frames", package="pillow")


def check_quality(quality: int) -> int:
    """`quality` as an int in 1..100, or ValueError."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be an integer from 1 to 100, got {quality!r}")
    return int(quality)


def encode_jpeg(rgb: np.ndarray, quality: int = DEFAULT_QUALITY) -> bytes:
    """A (H, W, 3) uint8 RGB image as a baseline JPEG file (4:2:0 chroma subsampling)."""
    out = io.BytesIO()
    pillow().fromarray(np.ascontiguousarray(rgb)).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def decode_jpeg(data: bytes | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A JPEG file back to a (H, W, 3) uint8 RGB image of `shape` (H, W).

    Raises:
        ValueError: The bytes are not a complete JPEG image of that size.
    """
    pil = pillow()
    buffer = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    try:
        with pil.open(io.BytesIO(buffer)) as image:
            image.load()  # a truncated file raises here instead of decoding grey rows
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError) as exc:  # Pillow raises these for damaged data
        raise ValueError(f"not a decodable JPEG image ({exc})") from exc
    if rgb.shape[:2] != tuple(shape):
        raise ValueError(f"the JPEG image is {rgb.shape[1]}x{rgb.shape[0]}, the camera's frames {shape[1]}x{shape[0]}")
    return rgb
