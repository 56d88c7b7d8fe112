"""Numerical precision of training: autocast in bf16 (CUDA or CPU) or fp16 with a gradient scaler (CUDA).

The weights, the optimizer state and the checkpoints stay float32; only the forward pass runs under
autocast (the detector keeps its box arithmetic in float32 there, see :mod:`detection.precision`).
"""

import contextlib
import logging
from contextlib import AbstractContextManager

import torch

from ..precision import native_bf16

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """What ``solver.amp`` means on ``device``.

    ``fp16`` on CPU trains in float32 with a warning (float16 is neither native on CPUs nor safe without
    the gradient scaler, which is CUDA's); ``bf16`` runs on CPU too, emulated and slow where the CPU has
    no bfloat16 instructions (a warning says so).

    Attributes:
        dtype: the autocast dtype, or None for float32.
        scaler: a ``torch.amp.GradScaler``, enabled for fp16 only (bf16 has float32's range).
    """

    def __init__(self, amp: str, device: torch.device, logger: logging.Logger | None = None) -> None:
        self.device = device
        self.dtype = AMP_DTYPES.get(amp)
        warning = None
        if self.dtype is torch.float16 and device.type != "cuda":
            warning = f"solver.amp=fp16 needs CUDA; training on {device.type} in float32 (solver.amp=bf16 runs there)"
            self.dtype = None
        elif self.dtype is torch.bfloat16 and not native_bf16(device):
            warning = f"solver.amp=bf16: no native bfloat16 on this {device.type}, so emulated and slower than float32"
        if warning and logger is not None:
            logger.warning(warning)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype is torch.float16)

    @property
    def scales_gradients(self) -> bool:
        """Whether non-finite gradients are expected now and then (the scaler skips those steps)."""
        return self.scaler.is_enabled()

    def autocast(self) -> AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def describe(self) -> str:
        """E.g. ``"bf16 autocast on cpu"``, ``"fp16 autocast with a gradient scaler on cuda"``, ``"float32"``."""
        if self.dtype is None:
            return f"float32 on {self.device.type}"
        name = "fp16 autocast with a gradient scaler" if self.scales_gradients else "bf16 autocast"
        return f"{name} on {self.device.type}"
