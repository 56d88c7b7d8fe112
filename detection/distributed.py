"""Process groups started by ``torchrun``: initialisation from its environment, rank helpers, reductions.

``torchrun`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; a
plain ``python`` run has none of them and is a world of one, with no process group.

When a worker fails, ``torchrun --max-restarts K`` stops the others and starts them all again with the same
command line (``TORCHELASTIC_RESTART_COUNT`` counts the restarts, per machine). Their store is its agent's,
``MASTER_ADDR:MASTER_PORT`` with ``TORCHELASTIC_USE_AGENT_STORE=True``: one TCPStore that outlives the
workers and keeps the keys a killed group wrote there, such as each process's gloo address (NCCL's unique
id likewise). ``init_process_group(init_method="env://")`` gives every start the same keys
(``default_pg/0/...``), so a restarted process can read the address of a killed one and fail to connect
(gloo: ``connectFullMesh failed ... Connection refused``). :func:`init_distributed` therefore forms each
start's group under a key prefix of its own (:func:`_new_namespace`).
"""

import datetime
import functools
import os
import time
import uuid
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.constants import default_pg_timeout

_JOIN_QUEUE = "detection/join"  # in torchrun's agent store: requests for the namespace of a group being formed
_POLL_SECONDS = 0.01


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
        backend = "nccl" if device_type == "cuda" else "gloo"
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True):
            _join_in_agent_store(backend)
        else:  # the store is rank 0's own (a new one at every start): nothing is left from an earlier start
            dist.init_process_group(backend=backend, init_method="env://")
    return device


def restarted_by_torchrun() -> bool:
    """Whether torchrun started this process group again after a worker failed, on any process (torchrun counts
    the restarts of each machine's workers, so the machines' counts differ); every process must call it."""
    return any_process(int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0)


def _join_in_agent_store(backend: str) -> None:
    """``init_process_group`` in torchrun's agent store, under a namespace that no earlier start used."""
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    address, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    store = dist.TCPStore(address, port, world_size, is_master=False, timeout=default_pg_timeout)
    namespace = _new_namespace(store, rank, world_size, default_pg_timeout)
    dist.init_process_group(backend=backend, store=dist.PrefixStore(namespace, store), rank=rank, world_size=world_size)


def _new_namespace(store: dist.Store, rank: int, world_size: int, timeout: datetime.timedelta) -> str:
    """A key prefix for this start of the process group, the same on every process and new in ``store``.

    Nothing the processes know beforehand is both shared and new at each start (restart counts are per
    machine), and any key a process looks up by name may hold a killed process's value. So rank 0 draws the
    namespace; each other process pushes a request naming a reply key of its own drawing (new, so never
    stale) on a queue, reads the namespace there and confirms under it. Rank 0 answers every request it pops
    until each rank has confirmed: a request a killed process left is answered, and nobody reads the answer.
    """
    if rank != 0:
        reply = f"detection/reply/{uuid.uuid4().hex}"
        store.queue_push(_JOIN_QUEUE, reply)
        store.wait([reply], timeout)
        namespace = store.get(reply).decode()
        store.delete_key(reply)
        store.set(f"{namespace}/joined/{rank}", "")
        return namespace
    namespace = f"detection/group/{uuid.uuid4().hex}"
    joined = [f"{namespace}/joined/{other}" for other in range(1, world_size)]
    deadline = time.monotonic() + timeout.total_seconds()
    while not store.check(joined):
        try:
            store.set(store.queue_pop(_JOIN_QUEUE, block=False).decode(), namespace)
        except dist.QueueEmptyError:
            if time.monotonic() > deadline:
                missing = [key.rsplit("/", 1)[1] for key in joined if not store.check([key])]
                raise TimeoutError(f"ranks {', '.join(missing)} did not join the process group in {timeout}") from None
            time.sleep(_POLL_SECONDS)
    return namespace


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
