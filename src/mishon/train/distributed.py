"""Data-parallel training across processes started by `torchrun` (or SLURM, Kubernetes, Ray
Train: anything that sets torch.distributed's environment variables).

Every process holds the whole graph and the same network; each Adam step's batch is split
between them, each computes its share's gradient, and one all-reduce of all gradients (one
flat buffer, as DistributedDataParallel's buckets) gives every process the step's summed
gradient, so their weights stay equal. Process 0 validates, checkpoints and reports.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from mishon.errors import MishonError


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def from_environment() -> Processes:
    """The processes torchrun (WORLD_SIZE, RANK, LOCAL_RANK) describes; one when unset."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as exc:
        raise MishonError(f"torch.distributed's environment is not numeric: {exc}") from None
    return Processes(rank, world, local)


def check_can_train(processes: Processes, batch_size: int | None, out: Path | None) -> None:
    """Several processes need mini-batches and a run directory to share."""
    if not processes.distributed:
        return
    if batch_size is None:
        raise MishonError(
            "training in several processes needs mini-batches (train.batch_size): a "
            "full-batch step encodes the whole graph in every process"
        )
    if out is None:
        raise MishonError("training in several processes needs a run directory (--out)")


def device_of(processes: Processes, device: torch.device) -> torch.device:
    """On GPUs, process LOCAL_RANK takes GPU LOCAL_RANK (unless an index was given)."""
    if processes.distributed and device.type == "cuda" and device.index in (None, 0):
        return torch.device("cuda", processes.local_rank % torch.cuda.device_count())
    return device


@contextmanager
def process_group(processes: Processes, device: torch.device) -> Iterator[None]:
    """Within: joined to the other processes (nccl between GPUs, gloo on the CPU)."""
    if not processes.distributed or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


@contextmanager
def main_first(processes: Processes) -> Iterator[None]:
    """Process 0 runs the block first (it may write files); the others run it after."""
    if processes.distributed and not processes.is_main:
        dist.barrier()
    yield
    if processes.distributed and processes.is_main:
        dist.barrier()


def broadcast_parameters(processes: Processes, parameters: Iterable[torch.Tensor]) -> None:
    """Process 0's values in every process (same seed gives the same ones; this makes sure)."""
    if not processes.distributed:
        return
    with torch.no_grad():
        for parameter in parameters:
            dist.broadcast(parameter.data, src=0)


def sum_gradients(
    processes: Processes, parameters: list[torch.nn.Parameter], extra: torch.Tensor
) -> torch.Tensor:
    """Sum every parameter's gradient (missing: zeros) and `extra` over the processes, in one
    all-reduce; the gradients are set to the sums, the summed `extra` is returned."""
    if not processes.distributed:
        return extra
    parts = [
        p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=p.device)
        for p in parameters
    ]
    flat = torch.cat([*parts, extra.reshape(-1).to(parts[0].dtype)])
    dist.all_reduce(flat)
    position = 0
    for parameter in parameters:
        size = parameter.numel()
        parameter.grad = flat[position : position + size].view_as(parameter).clone()
        position += size
    return flat[position:].view_as(extra)


def broadcast_values(
    processes: Processes, values: list[float], device: torch.device
) -> list[float]:
    """Process 0's `values` in every process."""
    if not processes.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return tensor.tolist()
