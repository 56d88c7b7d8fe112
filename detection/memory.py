"""Peak memory of this process: what training logs and the benchmark reports."""

import resource
import sys

import torch


def peak_memory_mib(device: torch.device) -> float:
    """CUDA: ``torch.cuda.max_memory_allocated``; CPU: this process's peak resident set size. In MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mib()


def peak_rss_mib() -> float:
    """Peak resident set size of this process, in MiB.

    On Linux, ``VmHWM`` of ``/proc/self/status``: ``getrusage``'s ``ru_maxrss`` survives ``exec``, so
    in a child process it starts at the parent's peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere
