"""Share a run's clips among the processes of ``accelerate launch`` or ``torchrun``.

A launcher starts N copies of a tool and tells each one which it is through the environment:
``RANK`` (0..N-1 over all machines), ``WORLD_SIZE`` (N), ``LOCAL_RANK`` (its index on this
machine, hence its GPU), ``LOCAL_WORLD_SIZE`` and ``MASTER_ADDR``/``MASTER_PORT`` (where the
processes meet). :func:`current_shard` reads them; without them (plain ``python tools/x.py``)
the process is shard 0 of 1, and :meth:`Shard.barrier` and :meth:`Shard.gather` do nothing.

Each process takes its share of the clip list on its own: item i of the (sorted) list belongs to
process ``i % N`` (:meth:`Shard.take`), so every clip is processed exactly once, with no
coordination. The processes meet only to wait for one another (:meth:`Shard.barrier`: the main
process prepared the output folder; everyone is done) and to hand their results to the main
process, rank 0, which writes the run-wide summary (:meth:`Shard.gather`). They talk through a
gloo process group (CPU and TCP, also across machines), so this is the same with or without GPUs,
and an NCCL group made by someone else is left alone.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from seqdeca.errors import UserError

__all__ = ["WAIT_LIMIT", "Shard", "current_shard"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long a process waits at a meeting point for the slowest one. Shares differ by a few clips,
# but a long clip can take an hour; a process that dies makes the launcher stop the others.
WAIT_LIMIT = timedelta(days=7)

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
_group: Any = None  # the gloo group of this process (None: the default group, or not joined)
_joined = False


@dataclass(frozen=True)
class Shard:
    """This process's place in a run shared by ``world_size`` processes.

    Attributes:
        rank: index of this process over all machines, 0..world_size-1 (0 is the main one).
        world_size: number of processes.
        local_rank: index of this process on its machine (picks its GPU).
        local_world_size: processes on this machine.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def sharded(self) -> bool:
        """More than one process shares the run."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """This is rank 0: it prepares the output folder and writes the run-wide files."""
        return self.rank == 0

    @property
    def one_machine(self) -> bool:
        """Every process of the run is on this machine (process ids can be compared)."""
        return self.local_world_size >= self.world_size

    @property
    def tag(self) -> str:
        """``"[rank/world] "`` to start this process's lines with; empty when not sharded."""
        return f"[{self.rank}/{self.world_size}] " if self.sharded else ""

    def take(self, items: Sequence[T]) -> list[T]:
        """This process's share: items ``rank, rank + world_size, ...`` (all when not sharded)."""
        return list(items)[self.rank :: self.world_size]

    def device(self, device: str) -> str:
        """The device of this process for a configured ``device``.

        A bare ``"cuda"`` becomes ``cuda:<local_rank>`` when sharded (wrapped around the visible
        GPUs, so several processes may share one), which is also made the current CUDA device;
        an explicit index (``cuda:1``) and ``cpu`` are kept as they are.
        """
        if not self.sharded or device != "cuda":
            return device
        import torch

        count = torch.cuda.device_count()
        if count == 0:
            return device  # the engine reports that CUDA is unavailable
        if self.local_world_size > count and self.local_rank == 0:
            log.warning(
                "%d processes share %d GPU(s) on this machine", self.local_world_size, count
            )
        index = self.local_rank % count
        torch.cuda.set_device(index)
        return f"cuda:{index}"

    def barrier(self) -> None:
        """Wait until every process got here (nothing when not sharded)."""
        if self.sharded:
            import torch.distributed as dist

            dist.barrier(group=self._join())

    def gather(self, obj: T) -> list[T] | None:
        """Hand a picklable ``obj`` to the main process; also a barrier.

        Returns:
            On the main process, every process's object by rank (``[obj]`` when not sharded);
            None on the others.
        """
        if not self.sharded:
            return [obj]
        import torch.distributed as dist

        out: list[T] | None = [None] * self.world_size if self.is_main else None  # type: ignore[list-item]
        dist.gather_object(obj, out, dst=0, group=self._join())
        return out

    def _join(self) -> Any:
        """The gloo group of the run; joined (with the launcher's address) on first use."""
        global _group, _joined
        if _joined:
            return _group
        import torch.distributed as dist

        if not dist.is_available():
            raise UserError("this PyTorch build has no torch.distributed: run one process")
        if not dist.is_initialized():
            dist.init_process_group(
                "gloo", rank=self.rank, world_size=self.world_size, timeout=WAIT_LIMIT
            )
            atexit.register(_leave)
        elif dist.get_world_size() != self.world_size or dist.get_rank() != self.rank:
            raise UserError(
                f"the process group has rank {dist.get_rank()} of "
                f"{dist.get_world_size()}, the environment says {self.rank} of "
                f"{self.world_size}"
            )
        elif dist.get_backend() != "gloo":
            _group = dist.new_group(backend="gloo", timeout=WAIT_LIMIT)
        _joined = True
        return _group


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def current_shard(env: Mapping[str, str] | None = None) -> Shard:
    """This process's :class:`Shard`, from the launcher's environment (``os.environ``).

    Raises:
        UserError: the variables are not whole numbers, out of range, or the meeting address
            (MASTER_ADDR, MASTER_PORT) is missing in a run of several processes.
    """
    env = os.environ if env is None else env
    values = {}
    for name in _ENV:
        text = env.get(name, "").strip()
        if text and not text.isdigit():
            raise UserError(f"environment variable {name}={text!r} is not a whole number")
        values[name] = int(text) if text else None
    world = values["WORLD_SIZE"] or 1
    rank = values["RANK"] or 0
    local_rank = values["LOCAL_RANK"] if values["LOCAL_RANK"] is not None else rank
    local_world = values["LOCAL_WORLD_SIZE"] or world
    if not (0 <= rank < world and 0 <= local_rank < max(local_world, 1)):
        raise UserError(
            f"RANK={rank}, LOCAL_RANK={local_rank} do not fit WORLD_SIZE={world}, "
            f"LOCAL_WORLD_SIZE={local_world}"
        )
    if world > 1 and not (env.get("MASTER_ADDR") and env.get("MASTER_PORT")):
        raise UserError(
            f"WORLD_SIZE={world} but MASTER_ADDR/MASTER_PORT are not set: start the "
            "processes with `accelerate launch` or `torchrun`"
        )
    return Shard(rank=rank, world_size=world, local_rank=local_rank, local_world_size=local_world)
