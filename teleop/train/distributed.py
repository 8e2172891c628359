"""Data-parallel training on the processes `torchrun` starts: which rank this process is, the process group,
and rank 0 going first where files are written.

Launch one process per GPU (or per share of the CPU cores):
    torchrun --standalone --nproc-per-node 2 -m teleop.cli train DIR --out RUN

torchrun sets WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. Without it (or with WORLD_SIZE 1) there
is one rank and nothing here touches torch.distributed. When a rank fails, torchrun stops the others, so no rank
waits on a peer that has died.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from teleop.deps import require
from teleop.errors import TeleopError

if TYPE_CHECKING:
    import torch

# How long a collective waits for the other ranks. They wait while rank 0 alone encodes the episodes or rolls the
# policy out, which can take many minutes; torch's default (10 min for NCCL) would end such a run. A rank that
# fails does not leave the others waiting this long: torchrun stops them.
TIMEOUT = timedelta(hours=4)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes.

    Attributes:
        rank: Global rank, 0..world_size-1. Rank 0 writes the run folder, logs and evaluates.
        local_rank: Rank on this machine; a CUDA rank uses the GPU of that index.
        world_size: Number of training processes; 1 without torchrun.
        backend: torch.distributed backend ("gloo" on the CPU, "nccl" on CUDA); None with one process.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, device: str) -> str:
        """This rank's device: with several ranks, a CUDA device is cuda:LOCAL_RANK (one GPU per process)."""
        return f"cuda:{self.local_rank}" if self.distributed and device.startswith("cuda") else device

    def main_only(self, log: Callable[[str], None]) -> Callable[[str], None]:
        """`log` on rank 0; a function that drops the message on the others (one copy of each line)."""
        return log if self.is_main else _drop

    def barrier(self) -> None:
        """Wait until every rank is here (nothing with one process)."""
        if not self.distributed:
            return
        try:
            _dist().barrier(device_ids=[self.local_rank] if self.backend == "nccl" else None)
        except RuntimeError as exc:  # a peer died (torchrun then stops this rank too) or the wait timed out
            raise TeleopError(f"rank {self.rank} stopped waiting for the other ranks: one of them failed (its error "
                              f"is above) or took longer than {TIMEOUT}") from exc

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block while the others wait; then they run it, finding what rank 0 wrote (e.g. a
        cache filled by rank 0, which they only read)."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """`module` in DistributedDataParallel (gradients averaged over the ranks in backward), or `module`
        itself with one process. Parameters are copied from rank 0 here; keep `module` to save or evaluate."""
        if not self.distributed:
            return module
        torch = require("torch", extra="train", purpose="training on several processes")
        device_ids = [self.local_rank] if self.backend == "nccl" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def _drop(message: str) -> None:
    """The log of ranks other than 0: nothing."""


def ranks_from_env(env: Mapping[str, str] | None = None) -> Ranks:
    """The ranks torchrun describes in WORLD_SIZE, RANK and LOCAL_RANK; one rank when WORLD_SIZE is unset.

    Raises:
        TeleopError: A variable is missing or not a valid number.
    """
    env = os.environ if env is None else env
    world_size = _int_var(env, "WORLD_SIZE", "1")
    if world_size <= 1:
        return Ranks()
    rank, local_rank = _int_var(env, "RANK"), _int_var(env, "LOCAL_RANK", "0")
    if not 0 <= rank < world_size or local_rank < 0:
        raise TeleopError(f"RANK {rank} and LOCAL_RANK {local_rank} do not fit WORLD_SIZE {world_size}: launch "
                          "with torchrun, which sets them, or unset WORLD_SIZE to train in one process")
    return Ranks(rank, local_rank, world_size)


def _int_var(env: Mapping[str, str], name: str, default: str | None = None) -> int:
    value = env.get(name, default)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TeleopError(f"environment variable {name} is {value!r}, not a number: launch with torchrun, which "
                          "sets it, or unset WORLD_SIZE to train in one process") from None


@contextlib.contextmanager
def process_group(device: str, env: Mapping[str, str] | None = None) -> Iterator[Ranks]:
    """Join torchrun's process group for the block and leave it afterwards, also when the block raises.

    Args:
        device: The resolved training device ("cpu", "cuda", "cuda:N"): NCCL for CUDA, else gloo.
        env: The environment to read the ranks from (default os.environ); init_process_group reads
            MASTER_ADDR and MASTER_PORT from os.environ.

    Yields the ranks; one rank, and no process group, without torchrun. A process group that the caller
    already initialised is used as it is and left to the caller.
    """
    ranks = ranks_from_env(env)
    if not ranks.distributed:
        yield ranks
        return
    dist = _dist()
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if dist.is_initialized():
        yield Ranks(ranks.rank, ranks.local_rank, ranks.world_size, dist.get_backend())
        return
    if backend == "nccl":
        _use_gpu(ranks.local_rank)
    dist.init_process_group(backend, timeout=TIMEOUT)
    try:
        yield Ranks(ranks.rank, ranks.local_rank, ranks.world_size, backend)
    finally:
        dist.destroy_process_group()


def _use_gpu(index: int) -> None:
    torch = require("torch", extra="train", purpose="training on several GPUs")
    visible = torch.cuda.device_count()
    if index >= visible:
        raise TeleopError(f"local rank {index} trains on GPU {index}, but {visible} are visible: start at most "
                          f"{visible} processes per machine (--nproc-per-node), or hide the GPUs "
                          "(CUDA_VISIBLE_DEVICES=) to train on the CPU")
    torch.cuda.set_device(index)


def _dist():  # noqa: ANN202  (torch.distributed, imported lazily)
    torch = require("torch", extra="train", purpose="training on several processes")
    if not torch.distributed.is_available():
        raise TeleopError("this torch build has no torch.distributed: install a build that has it, or train in "
                          "one process (without torchrun)")
    return torch.distributed
