"""Multi-process training with PyTorch DistributedDataParallel (DDP), launched by torchrun.

`train.nproc: N` > 1 makes the train stage run itself again under torchrun (what
`python -m torch.distributed.run --standalone --nproc_per_node N` does); torchrun gives
each worker RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address in its environment, and
`init` joins the process group: gloo on CPU, NCCL on CUDA (one GPU per local rank). Started
under torchrun already (e.g. several nodes, see the README), the stage does not re-launch.

Everything here is a no-op in a single process, so training code calls it unconditionally.
"""

from __future__ import annotations

import atexit
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

# only rank 0 validates and writes checkpoints while the others wait in the next collective:
# the default 30-minute timeout would kill a run whose validation set is large
TIMEOUT = timedelta(hours=4)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def under_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def threads_per_rank(requested: int, local_size: int) -> int:
    """train.threads when set, else this machine's cores shared evenly by its ranks."""
    return requested if requested > 0 else max(1, cores() // max(1, local_size))


def launch(nproc: int, threads: int = 0, device_type: str = "cpu") -> int | None:
    """With nproc > 1 and not yet under torchrun: run this same script in nproc worker
    processes under torchrun's elastic agent (torch.distributed.run, in this process, so a
    signal or a failed worker ends in an exit code and one line rather than its traceback).
    Returns the exit code then; None when there is nothing to launch."""
    if nproc <= 1 or under_torchrun():
        return None
    if device_type == "cuda" and nproc > torch.cuda.device_count():
        from midigen.errors import ParamsError

        raise ParamsError(f"train.nproc = {nproc} but only {torch.cuda.device_count()} GPU(s): one process per GPU")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # torchrun would otherwise force OMP_NUM_THREADS=1 with a warning; give each rank its share
    os.environ.setdefault("OMP_NUM_THREADS", str(threads_per_rank(threads, nproc)))
    args = get_args_parser().parse_args(["--standalone", f"--nproc_per_node={nproc}", *sys.argv])
    print(f"train: starting {nproc} processes with torchrun (DistributedDataParallel)", flush=True)
    try:
        run(args)
    except SignalException:  # Ctrl-C or SIGTERM: the agent has stopped the workers (they said so)
        return 130
    except ChildFailedError as exc:
        codes = [f.exitcode for f in exc.failures.values()]
        print(f"error: a training process failed (exit code {codes[0]})", file=sys.stderr)
        return codes[0] if codes and codes[0] > 0 else 1
    return 0


def init(device_type: str = "cpu") -> World:
    """Join the torchrun process group (once); a single process gets World() and no group."""
    if dist.is_available() and dist.is_initialized():
        return world()
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return World()
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend, timeout=TIMEOUT)
    atexit.register(cleanup)
    return world()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world() -> World:
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(
        rank=dist.get_rank(),
        size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        local_size=int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size())),
    )


def is_main() -> bool:
    return world().is_main


def local_device(device: torch.device) -> torch.device:
    """cuda -> this rank's own GPU; cpu stays cpu."""
    if device.type == "cuda" and world().size > 1:
        return torch.device("cuda", world().local_rank)
    return device


def shard_seed(seed: int, rank: int) -> int:
    """A distinct seed per rank (rank 0 keeps `seed`, so one process behaves as before)."""
    return seed if rank == 0 else seed + 1_000_003 * rank


def batch_slice(batch_size: int, rank: int, size: int) -> slice:
    """This rank's part of a global batch: even shares, the remainder to the first ranks."""
    base, extra = divmod(batch_size, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DDP around the model when there are several ranks (it averages gradients in backward)."""
    if world().size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum each number over all ranks (e.g. a loss total and a token count)."""
    if world().size == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def any_rank(flag: bool) -> bool:
    """True on every rank when it is True on at least one (e.g. a time budget ran out)."""
    if world().size == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_object(obj: Any) -> Any:
    """Rank 0's obj on every rank (picklable objects: a history row, a checkpoint dict)."""
    if world().size == 1:
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's obj, in rank order, on every rank."""
    if world().size == 1:
        return [obj]
    out: list[Any] = [None] * world().size
    dist.all_gather_object(out, obj)
    return out
