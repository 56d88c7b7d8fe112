"""Numerical precision of training: autocast (bf16 or fp16 with a gradient scaler) on CUDA, float32 on CPU."""

import contextlib
import logging
from contextlib import AbstractContextManager

import torch

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """What ``solver.amp`` means on ``device``.

    Attributes:
        dtype: the autocast dtype, or None for float32 (always on CPU).
        scaler: a ``torch.amp.GradScaler``, enabled for fp16 only (bf16 has float32's range).
    """

    def __init__(self, amp: str, device: torch.device, logger: logging.Logger | None = None) -> None:
        self.device = device
        self.dtype = AMP_DTYPES.get(amp) if device.type == "cuda" else None
        if amp != "off" and device.type != "cuda" and logger is not None:
            logger.warning(f"solver.amp={amp} applies to CUDA only; training on {device.type} in float32")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype is torch.float16)

    @property
    def scales_gradients(self) -> bool:
        """Whether non-finite gradients are expected now and then (the scaler skips those steps)."""
        return self.scaler.is_enabled()

    def autocast(self) -> AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)
