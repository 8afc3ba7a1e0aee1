"""LoRA dropout without its single-threaded CPU cost, found by profiling the training step.

``benchmarks/profile_train_step.py`` on a pruned-LoRA SmolLM2 step on CPU showed LoRA
dropout as the largest cost after the matrix products: ``nn.Dropout`` on CPU draws its
keep-mask with ``bernoulli_``, which runs on a single thread, and autograd keeps the
mask as a float tensor the size of the input for the backward pass. PEFT applies it to
the input of every adapted layer separately (``gate_proj`` and ``up_proj`` each draw a
mask over the same activations), so the FFN preset pays it three times per block; with
``lora_dropout=0.1`` it took about 10% of the profiled step's operator time (2 threads).

:class:`MaskedDropout` computes the same thing (an independent Bernoulli(1 - p) keep-mask
per call and inverted scaling, so the same distribution; only the random stream
differs) but draws the mask with the multi-threaded ``rand_like`` and keeps it as
``bool``, one byte per element. CUDA's fused dropout already works this way, so
``prunetune finetune`` and ``prunetune bench`` apply :func:`use_masked_lora_dropout` on
CPU only, after ``get_peft_model``. The swap holds no parameters, so saved adapters and
merged models are unaffected.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class _MaskedDropoutFunction(torch.autograd.Function):
    """``x * keep / (1 - p)`` with ``keep ~ Bernoulli(1 - p)``, saving ``keep`` as bool."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float) -> torch.Tensor:
        keep = torch.rand_like(x) >= p
        ctx.scale = 1.0 / (1.0 - p)
        ctx.save_for_backward(keep)
        return x.mul(keep).mul_(ctx.scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None


class MaskedDropout(nn.Module):
    """Inverted dropout with a multi-threaded mask draw and a bool mask kept for backward.

    Args:
        p: probability of zeroing an element, in [0, 1).
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return _MaskedDropoutFunction.apply(x, self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_masked_lora_dropout(model: nn.Module) -> int:
    """Replace the ``nn.Dropout`` of every PEFT LoRA layer by :class:`MaskedDropout`, in place.

    Returns:
        How many dropout modules were replaced.
    """
    replaced = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, nn.ModuleDict):
            continue
        for name, dropout in dropouts.items():
            if isinstance(dropout, nn.Dropout) and dropout.p > 0:
                dropouts[name] = MaskedDropout(dropout.p)
                replaced += 1
    return replaced
