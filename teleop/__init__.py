"""Robot teleoperation and demonstration collection: session loop, simulated robots, tasks, CLI, trainer."""

__version__ = "0.1.0"
