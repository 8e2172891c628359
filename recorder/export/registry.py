"""The export formats by name, and exporting a folder of episodes in one call (what the CLI and the app use).

A format's module is imported when it is first used, so listing the formats (the CLI's parser does) costs
nothing.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from teleop.errors import UnknownNameError

if TYPE_CHECKING:
    from recorder.export.base import Exporter, ExportOptions, ExportResult, Progress


@dataclass(frozen=True)
class ExporterEntry:
    """A registered format: the module and class of its Exporter, and what it writes."""

    module: str
    cls: str
    description: str

    def load(self) -> type[Exporter]:
        """The Exporter subclass (its module imported on first use)."""
        return getattr(importlib.import_module(self.module), self.cls)  # type: ignore[no-any-return]


# One line per format. A new format is one Exporter subclass in a module of its own plus one line here.
EXPORTERS: dict[str, ExporterEntry] = {
    "robomimic": ExporterEntry("recorder.export.robomimic", "RobomimicExporter", "robomimic 0.3.0 HDF5 (a file)"),
    "diffusion-policy": ExporterEntry("recorder.export.diffusion_policy", "DiffusionPolicyExporter",
                                      "diffusion_policy replay buffer, zarr format 2 (a folder)"),
    "lerobot": ExporterEntry("recorder.export.lerobot", "LeRobotExporter",
                             "LeRobotDataset v3.0, parquet and mp4 videos (a folder)"),
}


def exporter_named(format: str) -> type[Exporter]:
    """The exporter class of a format name; UnknownNameError lists the formats."""
    if format not in EXPORTERS:
        raise UnknownNameError("export format", format, list(EXPORTERS))
    return EXPORTERS[format].load()


def export_directory(directory: Path, format: str, out: Path, options: ExportOptions,
                     progress: Progress | None = None, workers: int | None = None) -> ExportResult:
    """Export the episodes of `directory` (selected and verified by recorder.export.selection) as one dataset
    of `format` at `out`.

    Raises:
        UnknownNameError: No such format.
        ExportError: `out` exists, no episode to export, or episodes that do not fit in one dataset.
        EpisodeError: The directory does not exist, or an episode cannot be read.
    """
    from recorder.export.output import check_free
    from recorder.export.selection import select_episodes

    exporter = exporter_named(format)(workers)
    check_free(Path(out))  # before the verification pass, which reads every episode
    start = time.perf_counter()
    selection = select_episodes(Path(directory), options.include_all, exporter.workers)
    verify_s = time.perf_counter() - start
    result = exporter.export(selection.episodes, Path(out), options, progress)
    return dataclasses.replace(result, skipped=selection.skipped, verify_s=verify_s)
