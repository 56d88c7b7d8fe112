"""Process groups started by ``torchrun``: initialisation from its environment, rank helpers, reductions.

``torchrun`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; a
plain ``python`` run has none of them and is a world of one, with no process group.
"""

import functools
import os
from typing import Any

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device_type: str) -> torch.device:
    """Joins the ``torchrun`` process group (nccl on CUDA, gloo on CPU) and returns this process's device."""
    if device_type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if launched_by_torchrun() and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo", init_method="env://")
    return device


def destroy_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
        _cpu_group.cache_clear()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` (any shape) over all processes; ``values`` itself in a world of one."""
    if not is_distributed():
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / get_world_size()


def any_process(flag: bool) -> bool:
    """Whether ``flag`` is true on any process; every process must call it. Reduced on the CPU (a gloo
    group beside NCCL), so that asking every step costs no GPU synchronisation."""
    if not is_distributed():
        return flag
    value = torch.tensor([float(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_cpu_group())
    return bool(value.item())


@functools.cache
def _cpu_group() -> Any:
    """The default group where it is gloo already, else a gloo group of every process (created by the
    first call, which every process makes at the same point)."""
    return None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")


class OtherProcessError(RuntimeError):
    """Raised by :func:`raise_together` on the processes that did not fail; the message names the one that did."""


def raise_together(error: Exception | None) -> None:
    """Every process calls it at the same point after work that may fail on some of them: where any failed,
    each raises (its own error, or :class:`OtherProcessError` with the first failure's message), so that no
    process waits in a later collective for one that left."""
    if not any_process(error is not None):
        return
    messages = all_gather_object(None if error is None else str(error) or type(error).__name__)
    if error is not None:
        raise error
    rank, message = next((rank, text) for rank, text in enumerate(messages) if text is not None)
    raise OtherProcessError(f"on process {rank}: {message}")


def all_gather_object(value: Any) -> list[Any]:
    """``[value of rank 0, value of rank 1, ...]`` on every process."""
    if not is_distributed():
        return [value]
    gathered: list[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` on every process."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
