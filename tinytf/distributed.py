"""Training on several processes at once with DistributedDataParallel (DDP).

`torchrun --nproc_per_node=N -m tinytf train ...` starts N copies of the same command and
tells each one who it is through environment variables (RANK, LOCAL_RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT). Every copy then:

1. joins the process group: gloo on CPUs, NCCL on GPUs (one GPU per process, the
   LOCAL_RANK-th of its host);
2. builds the same model from the same seed (DDP also copies rank 0's weights to the
   others when it wraps the model, so they start equal whatever happened before);
3. draws its own batches from a generator seeded with seed + rank, so N processes see
   N different batches per step, an N times larger batch in all;
4. after each backward, DDP averages the gradients of all processes (an all-reduce that
   overlaps the backward pass), so every copy takes the same optimiser step and the
   weights stay identical without ever being sent again;
5. only rank 0 writes the run folder: the record, metrics.csv and the checkpoints, which
   hold the plain model's weights (`model.module.state_dict()` in DDP terms), so a
   single-process run and the app load them like any other.

Without torchrun the variables are absent, `DistContext.from_env()` says "one process"
and nothing here does anything.

    dist = DistContext.from_env()
    device = setup(dist, pick_device("auto").device)   # joins the group when dist.enabled
    ...
    teardown(dist)

Reference: Li et al. 2020, "PyTorch Distributed: Experiences on Accelerating Data
Parallel Training" (VLDB), for how DDP buckets and overlaps the gradient all-reduce.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tinytf.config import ConfigError

# Long enough for the slowest rank to import torch and build its data; short enough that
# a rank that died before joining ends the others with a clear error instead of a hang.
JOIN_TIMEOUT = timedelta(minutes=5)


class DistributedError(ConfigError):
    """The torchrun environment is incomplete or inconsistent; names the variable."""


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise DistributedError(f"{name}: must be a whole number, got {raw!r}") from None


@dataclass(frozen=True)
class DistContext:
    """Where this process sits among the processes training one model."""

    rank: int = 0  # 0 .. world_size - 1 over every host; rank 0 writes the run
    local_rank: int = 0  # index of this process on its own host: picks its GPU
    world_size: int = 1  # processes in all

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise DistributedError(f"WORLD_SIZE: must be at least 1, got {self.world_size}")
        if not 0 <= self.rank < self.world_size:
            raise DistributedError(
                f"RANK: must be in 0..{self.world_size - 1} for WORLD_SIZE={self.world_size}, "
                f"got {self.rank}"
            )
        if self.local_rank < 0:
            raise DistributedError(f"LOCAL_RANK: must be 0 or more, got {self.local_rank}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DistContext:
        """Read RANK, LOCAL_RANK and WORLD_SIZE as torchrun sets them (absent: one process)."""
        env = os.environ if env is None else env
        return cls(
            rank=_env_int(env, "RANK", 0),
            local_rank=_env_int(env, "LOCAL_RANK", 0),
            world_size=_env_int(env, "WORLD_SIZE", 1),
        )

    @property
    def enabled(self) -> bool:
        """True when more than one process trains the model."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the one process that writes files and prints."""
        return self.rank == 0

    def batch_seed(self, seed: int) -> int:
        """Seed of this rank's batch generator: different on every rank, fixed per run."""
        return seed + self.rank


SINGLE_PROCESS = DistContext()


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs (it talks to them directly), gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def setup(context: DistContext, device: torch.device) -> torch.device:
    """Join the process group when `context.enabled`; return the device this rank uses.

    On CUDA each process takes the GPU numbered by its LOCAL_RANK and makes it the current
    device, so a plain "cuda" elsewhere in tinytf means this rank's own GPU.

    Raises:
        DistributedError: more processes on this host than it has GPUs.
    """
    if not context.enabled:
        return device
    if device.type == "cuda":
        n_gpus = torch.cuda.device_count()
        if context.local_rank >= n_gpus:
            raise DistributedError(
                f"LOCAL_RANK: process {context.local_rank} has no GPU of its own "
                f"(this host has {n_gpus}); start at most {n_gpus} processes per host"
            )
        torch.cuda.set_device(context.local_rank)
        device = torch.device("cuda", context.local_rank)
    if not dist.is_initialized():
        # init_method "env://" reads MASTER_ADDR and MASTER_PORT, which torchrun sets.
        dist.init_process_group(
            backend=backend_for(device),
            rank=context.rank,
            world_size=context.world_size,
            timeout=JOIN_TIMEOUT,
        )
    return device


def wrap(model: nn.Module, context: DistContext) -> nn.Module:
    """The model in DDP when training is distributed, else the model itself.

    Keep the unwrapped model for saving, evaluating and sampling: its state_dict has the
    plain parameter names (no `module.` prefix) that every loader expects.
    """
    if not context.enabled:
        return model
    # device_ids=None: the module already sits on this rank's device (CPU or its GPU).
    return DistributedDataParallel(model, device_ids=None)


def any_rank(flag: bool, context: DistContext, device: torch.device) -> bool:
    """True on every rank when `flag` is True on at least one of them.

    A stop request (Ctrl-C, the app's Stop) reaches the ranks at slightly different
    moments; if one rank left the loop a step before the others, they would wait for its
    gradients for ever. Agreeing before each step costs one tiny all-reduce.
    """
    if not context.enabled:
        return flag
    vote = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(vote, op=dist.ReduceOp.MAX)
    return bool(vote.item())


def teardown(context: DistContext) -> None:
    """Leave the process group (a no-op for a single process or a group never joined)."""
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
