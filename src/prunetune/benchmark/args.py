"""Argument groups of ``prunetune bench``: what to measure and where to write it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

from prunetune.config import arg
from prunetune.errors import UsageError

Shape = Literal["none", "bart-large", "t5-large"]

#: ``--quick``: smoke-test sizes (a tiny model finishes in seconds); they replace the
#: corresponding settings whatever their values.
QUICK_SETTINGS = {
    "batch_size": 2,
    "seq_length": 32,
    "target_length": None,
    "warmup_steps": 1,
    "steps": 2,
    "repeats": 1,
    "prompt_length": 16,
    "new_tokens": 4,
    "generation_batch_sizes": [1, 2],
    "generation_runs": 1,
    "idle_wait": 0.0,
}


@dataclass
class BenchArgs:
    """What to measure: model shape, batch, steps, repeats, configurations and precision."""

    shape: Shape = arg("none", help="instead of --model, build a randomly initialised model of the paper's "
                                    "shape (bart-large, t5-large; config only, no download)")
    ratios: list[float] = arg(default_factory=lambda: [1 / 4, 1 / 3, 1 / 2],
                              help="pruning ratios of the pruned-LoRA configurations (paper pattern)")
    reference_ratio: float = arg(1 / 3, help="pruning ratio of the generation comparison and the target checks")
    batch_size: int = arg(4, help="sequences per training step")
    seq_length: int = arg(128, help="tokens per sequence (the source length for seq2seq models)")
    target_length: int | None = arg(None, help="seq2seq target length (default: --seq-length)")
    warmup_steps: int = arg(2, help="unmeasured steps before the measured ones (allocator and kernel warm-up)")
    steps: int = arg(5, help="measured training steps per run (more, up to 3x, while other processes "
                                  "contend for the CPUs)")
    repeats: int = arg(3, help="interleaved repeats of every configuration (medians are reported)")
    precision: Literal["auto", "fp32", "bf16"] = arg(
        "auto", help="auto = bf16 autocast on CUDA, fp32 on CPU")
    device: Literal["auto", "cpu", "cuda"] = arg("auto", help="where to run (auto = cuda when available)")
    lora_r: int = arg(16, help="LoRA rank (the paper's r=16)")
    lora_alpha: float = arg(32, help="LoRA alpha (scaling alpha / r)")
    lora_dropout: float = arg(0.1, help="dropout on the LoRA input")
    lora_dropout_impl: Literal["auto", "torch"] = arg(
        "auto", help="auto: on CPU, LoRA dropout with a multi-threaded mask draw and a bool mask (same "
                     "distribution, see prunetune.training.dropout); torch: PEFT's nn.Dropout everywhere")
    generation: bool = arg(True, help="also time greedy generation: unpruned vs pruned with LoRA merged")
    prompt_length: int = arg(64, help="prompt tokens per sequence in the generation runs")
    new_tokens: int = arg(32, help="tokens generated per sequence (exactly, EOS is suppressed)")
    generation_batch_sizes: list[int] = arg(default_factory=lambda: [1, 8], help="generation batch sizes")
    generation_runs: int = arg(3, help="timed generate() calls per batch size and run (after one warm-up)")
    seed: int = arg(0, help="seed of the synthetic token ids and the LoRA initialisation")
    idle_wait: float = arg(60.0, help="before each run, wait up to this many seconds while other processes keep "
                                      "the CPUs busy (Linux /proc/stat), and rerun a contended run once "
                                      "(0 = never wait or rerun)")
    quick: bool = arg(False, help="smoke-test sizes (2x32 tokens, 1+2 steps, 1 repeat, no idle wait); "
                                  "overrides those settings")

    def __post_init__(self) -> None:
        if self.quick:
            for name, value in QUICK_SETTINGS.items():
                setattr(self, name, list(value) if isinstance(value, list) else value)
        positive = ("batch_size", "seq_length", "steps", "repeats", "lora_r", "prompt_length", "new_tokens",
                    "generation_runs")
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.target_length is not None and self.target_length < 1:
            raise UsageError(f"--target-length must be positive, got {self.target_length}")
        if self.idle_wait < 0:
            raise UsageError(f"--idle-wait must be >= 0, got {self.idle_wait}")
        if self.warmup_steps < 0:
            raise UsageError(f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        if not self.ratios:
            raise UsageError("--ratios is empty; give at least one pruning ratio")
        for ratio in [*self.ratios, self.reference_ratio]:
            if not 0.0 < ratio < 1.0:
                raise UsageError(f"pruning ratios must be in (0, 1), got {ratio}")
        if len(set(map(ratio_label, self.ratios))) != len(self.ratios):
            raise UsageError(f"--ratios has duplicates: {self.ratios}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise UsageError(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        if not self.generation_batch_sizes or min(self.generation_batch_sizes) < 1:
            raise UsageError("--generation-batch-sizes must be positive integers")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class BenchOutputArgs:
    """Where to write the JSON result (it is always printed on stdout too)."""

    output: Path | None = arg(None, help="also write the JSON result to this file (written atomically)")


def ratio_label(ratio: float) -> str:
    """A readable name for a pruning ratio: ``1/3`` for 0.3333, ``0.3`` for 0.3."""
    fraction = Fraction(ratio).limit_denominator(12)
    if abs(float(fraction) - ratio) < 1e-6:
        return f"{fraction.numerator}/{fraction.denominator}" if fraction.denominator != 1 else str(fraction.numerator)
    return f"{ratio:g}"
