"""Numerical precision of inference: float32, or bfloat16/float16 autocast where the hardware runs it fast.

The detector stays accurate under autocast by construction (:mod:`detection.modeling`): anchors, the RPN's
logits and deltas, the box predictor, box decoding, NMS and RoIAlign's sampling points and weights are
float32; only the convolutions and matrix products of the trunk, the RPN's 3x3 conv, RoIAlign's
interpolation (bfloat16 inference on CPU, :func:`detection.modeling.poolers.roi_align_by_matmul`) and the
per-RoI head take the lower precision. The boxes and scores a model returns are float32.
"""

import contextlib
import functools
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

from .config import PRECISIONS
from .errors import UserError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# CPU flags of native bfloat16 arithmetic (Linux /proc/cpuinfo names): AVX512-BF16 (Cooper Lake, Zen 4
# and later) and AMX (Sapphire Rapids and later).
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_bf16_flags() -> tuple[str, ...]:
    """The :data:`CPU_BF16_FLAGS` this CPU reports (none where ``/proc/cpuinfo`` does not exist)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            flags = next((line.split(":", 1)[1].split() for line in file if line.startswith("flags")), [])
    except OSError:
        return ()
    return tuple(flag for flag in CPU_BF16_FLAGS if flag in flags)


@dataclass(frozen=True)
class InferencePrecision:
    """The precision inference runs in, and why (for the tools to say at start).

    Attributes:
        name: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        device_type: ``"cpu"`` or ``"cuda"``.
        reason: one phrase, e.g. ``"auto: the CPU has avx512_bf16"``.
    """

    name: str
    device_type: str
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    def autocast(self) -> AbstractContextManager:
        """Context that runs the model in this precision (nothing for float32)."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def describe(self) -> str:
        return f"{self.name} on {self.device_type} ({self.reason})"


def autocast_for(precision: InferencePrecision | None) -> AbstractContextManager:
    """``precision.autocast()``; nothing for None (float32)."""
    return precision.autocast() if precision is not None else contextlib.nullcontext()


def resolve_precision(requested: str, device: torch.device | str, option: str = "--precision") -> InferencePrecision:
    """What ``requested`` (``auto``, ``fp32``, ``bf16`` or ``fp16``) means on ``device``.

    ``auto`` is bf16 where the hardware computes it natively (a CPU with :data:`CPU_BF16_FLAGS`, a CUDA
    device with bfloat16 units), else fp32. ``bf16`` without native support runs, emulated and slower
    than fp32 (said in the reason). ``fp16`` needs CUDA.

    Args:
        option: the argument or config key that gave ``requested``, named in errors.

    Raises:
        UserError: an unknown name, or fp16 on CPU.
    """
    device = torch.device(device)
    if requested not in PRECISIONS:
        raise UserError(f"{option}: unknown precision {requested!r}; expected one of {', '.join(PRECISIONS)}")
    native = native_bf16(device)
    if requested == "auto":
        if native:
            return InferencePrecision("bf16", device.type, f"auto: {native}")
        return InferencePrecision("fp32", device.type, "auto: no native bfloat16 here")
    if requested == "fp16" and device.type != "cuda":
        raise UserError(f"{option} fp16 needs a CUDA device; on CPU use bf16 or fp32")
    if requested == "bf16" and not native:
        return InferencePrecision("bf16", device.type, "requested; no native bfloat16 here, so emulated and slow")
    return InferencePrecision(requested, device.type, "requested")


def native_bf16(device: torch.device | str) -> str:
    """Why ``device`` computes bfloat16 natively, in words ("" if it does not)."""
    device = torch.device(device)
    if device.type == "cuda":
        # Emulated bfloat16 (pre-Ampere GPUs) counts as not native: it is slower than float16 there.
        supported = torch.cuda.is_bf16_supported(including_emulation=False)
        return f"{torch.cuda.get_device_name(device)} supports bfloat16" if supported else ""
    flags = cpu_bf16_flags() if device.type == "cpu" else ()
    return f"the CPU has {' and '.join(flags)}" if flags else ""
