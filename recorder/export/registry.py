"""The export formats by name, and exporting a folder of episodes in one call (what the CLI and the app use)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from recorder.export.base import Exporter, ExportOptions, ExportResult, Progress
from recorder.export.diffusion_policy import DiffusionPolicyExporter
from recorder.export.output import check_free
from recorder.export.robomimic import RobomimicExporter
from recorder.export.selection import select_episodes
from teleop.errors import UnknownNameError

# One line per format. A new format is one Exporter subclass in a module of its own plus one line here.
EXPORTERS: dict[str, type[Exporter]] = {
    "robomimic": RobomimicExporter,
    "diffusion-policy": DiffusionPolicyExporter,
    # "lerobot": LeRobotExporter,  (recorder/export/lerobot.py: LeRobotDataset v3.0)
}


def exporter_named(format: str) -> type[Exporter]:
    """The exporter class of a format name; UnknownNameError lists the formats."""
    if format not in EXPORTERS:
        raise UnknownNameError("export format", format, list(EXPORTERS))
    return EXPORTERS[format]


def export_directory(directory: Path, format: str, out: Path, options: ExportOptions,
                     progress: Progress | None = None, workers: int | None = None) -> ExportResult:
    """Export the episodes of `directory` (selected and verified by recorder.export.selection) as one dataset
    of `format` at `out`.

    Raises:
        UnknownNameError: No such format.
        ExportError: `out` exists, no episode to export, or episodes that do not fit in one dataset.
        EpisodeError: The directory does not exist, or an episode cannot be read.
    """
    exporter = exporter_named(format)(workers)
    check_free(Path(out))  # before the verification pass, which reads every episode
    start = time.perf_counter()
    selection = select_episodes(Path(directory), options.include_all, exporter.workers)
    verify_s = time.perf_counter() - start
    result = exporter.export(selection.episodes, Path(out), options, progress)
    return dataclasses.replace(result, skipped=selection.skipped, verify_s=verify_s)
