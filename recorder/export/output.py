"""A dataset appears under its name only once it is complete: written beside it under a temporary name, made
durable, then renamed; an existing file or folder is never replaced."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from recorder.export.errors import ExportError
from recorder.layout import fsync_path

PARTIAL_SUFFIX = ".partial"
NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK)


def check_free(out: Path) -> None:
    """Refuse an output path that exists, or whose folder does not."""
    if out.exists() or out.is_symlink():
        raise ExportError(f"{out} already exists: exports never overwrite, pick a new --out or delete it first")
    if not out.parent.is_dir():
        raise ExportError(f"{out}: the folder {out.parent} does not exist; create it first")


def temporary_path(out: Path) -> Path:
    """Where a dataset is written before it gets its name: a hidden sibling, unique to this process."""
    return out.with_name(f".{out.name}.{os.getpid()}{PARTIAL_SUFFIX}")


def remove(path: Path) -> None:
    """Delete a file or folder; a no-op when it does not exist."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def make_durable(path: Path) -> None:
    """Flush a written file, or a folder with all it holds, to the disk."""
    if path.is_dir():
        # One sync for thousands of chunk files is far cheaper than one fsync each.
        os.sync()
    else:
        fsync_path(path)


@contextlib.contextmanager
def publish(tmp: Path, out: Path) -> Iterator[Path]:
    """Yield `tmp` to write the dataset to; when the block ends normally, rename it to `out`. When it fails
    (or is interrupted) `tmp` is deleted and `out` never appears.

    Raises:
        ExportError: `out` appeared while the dataset was written (it is kept, the new dataset deleted).
    """
    remove(tmp)  # left by a killed export of a process with the same id
    try:
        yield tmp
        if not tmp.exists():
            raise ExportError(f"the exporter wrote nothing to {tmp}")
        make_durable(tmp)
        _rename_no_replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            remove(tmp)
        raise
    fsync_path(out.parent)


def _rename_no_replace(tmp: Path, out: Path) -> None:
    """Rename without replacing anything at `out`: a file by a hard link (which fails when `out` exists), a
    folder (or a file where the file system has no hard links) by a rename after a check that `out` is free
    (a rename onto a non-empty folder fails anyway)."""
    try:
        if tmp.is_dir():
            _rename_checked(tmp, out)
        else:
            try:
                os.link(tmp, out)
            except OSError as exc:
                if exc.errno not in NO_HARD_LINKS:
                    raise
                _rename_checked(tmp, out)  # a file system without hard links
            else:
                tmp.unlink()
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise ExportError(f"{out} appeared while the dataset was written; it is kept and the new dataset "
                              "deleted: export again to a new --out") from exc
        raise ExportError(f"cannot rename the finished dataset to {out} ({exc.strerror or exc})") from exc


def _rename_checked(tmp: Path, out: Path) -> None:
    if out.exists() or out.is_symlink():
        raise FileExistsError(errno.EEXIST, "exists", str(out))
    os.rename(tmp, out)
