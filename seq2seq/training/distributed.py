"""Multi-process training under `torchrun`: process group, ranks, the global loss, rank-0-only work.

`torchrun --nproc-per-node N -m seq2seq train ...` starts N copies of `seq2seq train`, each with RANK,
WORLD_SIZE and LOCAL_RANK in its environment. `init` finds them and joins the process group (nccl on
CUDA, one GPU per process; gloo on the CPU). Without them, or with WORLD_SIZE=1, everything here is a
no-op and training runs as a single process.

What makes N processes compute the update one process would compute on the union of their batches:
- every rank builds the same global list of batches and takes its own share (`data/batch.BucketSampler`);
- the training step divides the loss by the GLOBAL number of real target tokens (`global_sums` gives it),
  and scales it by N because DistributedDataParallel averages gradients over ranks.
"""

from __future__ import annotations

import atexit
import datetime
import logging
import os
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch
import torch.distributed as dist

from seq2seq.errors import ConfigError

log = logging.getLogger("seq2seq")

T = TypeVar("T")

# Rank 0 validates and writes checkpoints while the others wait at a barrier: allow a long validation.
TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job. `world_size == 1`: a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    """WORLD_SIZE from the torchrun environment (1 when absent)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_by_torchrun() -> bool:
    return all(key in os.environ for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def init(device: torch.device) -> DistContext:
    """Join the process group when torchrun started us with WORLD_SIZE > 1; otherwise a single-process context.

    `device` is the configured device type; on CUDA each process takes GPU LOCAL_RANK. Safe to call
    twice (the group is initialized once and torn down at exit).
    """
    if not launched_by_torchrun() or env_world_size() == 1:
        return DistContext(device=device)
    rank, world_size, local_rank = int(os.environ["RANK"]), env_world_size(), int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"torchrun started process {local_rank} on this machine but it has {torch.cuda.device_count()} GPU(s): "
                "use --nproc-per-node <= the number of GPUs (or train.device=cpu)"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, timeout=TIMEOUT, **kwargs)
        atexit.register(teardown)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def teardown() -> None:
    """Leave the process group (registered with atexit by `init`)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    """Rank 0, or a single process: the one that logs, validates and writes the run directory."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier(device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None)


def on_main(fn: Callable[[], T], ctx: DistContext) -> T:
    """Run `fn` on rank 0 alone and give every rank its result; if it raised, every rank raises it.

    The result travels by `broadcast_object_list` (pickled), so the other ranks need not see rank 0's
    files (vocabularies, for example), and an error (a bad run directory) stops every rank, not rank 0 only.
    """
    if not ctx.enabled:
        return fn()
    box: list[object] = [None]
    if ctx.is_main:
        try:
            box[0] = (True, fn())
        except Exception as e:  # handed to the other ranks, then raised here too
            box[0] = (False, e)
    dist.broadcast_object_list(box, src=0, device=ctx.device if ctx.device.type == "cuda" else None)
    ok, payload = box[0]  # type: ignore[misc]
    if not ok:
        raise payload  # type: ignore[misc]
    return payload  # type: ignore[return-value]


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over ranks (returns a new tensor; the identity for a single process)."""
    if not ctx.enabled:
        return values
    total = values.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when `flag` is True on some rank (for stop decisions taken from local clocks)."""
    if not ctx.enabled:
        return flag
    return bool(all_reduce_sum(torch.tensor([float(flag)], device=ctx.device), ctx).item() > 0)


def from_main(value: float, ctx: DistContext) -> float:
    """Rank 0's `value` on every rank (the others pass anything), so that all take the same decisions from it."""
    if not ctx.enabled:
        return value
    box = torch.tensor([value if ctx.is_main else 0.0], dtype=torch.float64, device=ctx.device)
    return float(all_reduce_sum(box, ctx).item())


def gather_objects(obj: object, ctx: DistContext) -> list[object]:
    """Every rank's `obj`, in rank order, on every rank (pickled; for small things at checkpoint time)."""
    if not ctx.enabled:
        return [obj]
    out: list[object] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def global_sums(loss_sum: torch.Tensor, n_tokens: int, ctx: DistContext) -> tuple[torch.Tensor, int]:
    """This rank's summed token loss and real token count -> the sums over all ranks (loss detached).

    The global sum is what to report and to test for non-finite values: it is the same on every rank,
    so all ranks skip a bad update together. A single process gets its own figures back.
    """
    if not ctx.enabled:
        return loss_sum.detach(), n_tokens
    stats = torch.stack([loss_sum.detach().double(), torch.tensor(float(n_tokens), dtype=torch.float64, device=loss_sum.device)])
    stats = all_reduce_sum(stats, ctx)  # (2,) [sum of losses, number of tokens]
    return stats[0].float(), int(stats[1].item())


def wrap(model: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """The module to call for training steps: DistributedDataParallel(model) under torchrun, else `model`.

    Only the forward pass goes through the wrapper; validation, decoding and state_dict() use `model`
    itself (whose parameters are the same tensors), so checkpoints carry no `module.` prefix.
    """
    if not ctx.enabled:
        return model
    device_ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def seed_rank(seed: int, step: int, ctx: DistContext) -> None:
    """Give each rank its own dropout / teacher-forcing randomness (after the shared initialization).

    At the start of a run; on a resume only when the number of processes changed (otherwise each rank's own
    saved generator state is restored, and the resumed run continues exactly)."""
    if ctx.enabled:
        torch.manual_seed(seed + 1_000_003 * ctx.rank + step)


def rescale_position(batch_in_epoch: int, old_world_size: int, new_world_size: int) -> int:
    """Batches already trained in this epoch, per rank, when a run resumes with another number of ranks.

    Each optimizer step consumes `world_size` consecutive batches of the global list; resume at the
    first step that starts at or after the batches already consumed.
    """
    consumed = batch_in_epoch * old_world_size
    return -(-consumed // new_world_size)
