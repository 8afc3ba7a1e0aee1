"""Argument groups of ``prunetune finetune``: training settings and the output folder.

Defaults follow LoraLPrun (arXiv 2305.08285) where the paper states them: AdamW at
learning rate 1e-4 with a linear schedule, 1000 warm-up steps, weight decay 0.01 and
model selection by validation ROUGE-1 with early stopping. The run length (one epoch,
validated once at its end) and the validation subset (16 examples, since generation
dominates validation time) are sized so that a CPU run of the default 135M-parameter
model on the demo set takes minutes; on a GPU raise ``--num-epochs``,
``--eval-max-examples`` and set ``--eval-steps`` for early stopping to matter.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prunetune.config import arg
from prunetune.errors import UsageError

Precision = Literal["auto", "fp32", "bf16", "fp16"]
MetricForBest = Literal["rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "loss"]
Scheduler = Literal["linear", "cosine", "constant_with_warmup", "polynomial"]
ReportTo = Literal["auto", "none", "tensorboard", "mlflow"]

# Warm-up longer than this share of a short run would leave no steps at the peak rate.
MAX_WARMUP_FRACTION = 0.1


@dataclass
class TrainArgs:
    """Optimisation, evaluation during training, checkpoints and logging."""

    learning_rate: float = arg(1e-4, help="peak learning rate (AdamW)")
    warmup_steps: int = arg(1000, help="linear warm-up steps; clipped to 10% of the run when it is shorter")
    weight_decay: float = arg(0.01, help="AdamW weight decay (not applied to biases and norms)")
    lr_scheduler: Scheduler = arg("linear", help="learning-rate schedule after warm-up")
    batch_size: int = arg(8, help="examples per forward pass")
    gradient_accumulation_steps: int = arg(1, help="forward passes per optimizer step (effective batch = "
                                                   "batch size x this)")
    num_epochs: float = arg(1.0, help="passes over the training split (ignored when --max-steps is set)")
    max_steps: int | None = arg(None, help="optimizer steps to run; overrides --num-epochs")
    eval_steps: int | None = arg(None, help="validate every this many steps (default: at the end of each epoch); "
                                            "the last step is always validated")
    eval_max_examples: int | None = arg(16, help="validation examples generated for ROUGE at each validation "
                                                 "(the first N; generation dominates validation time)")
    early_stopping_patience: int | None = arg(3, help="stop after this many validations without improvement "
                                                      "(0 = never)")
    metric_for_best: MetricForBest = arg("rouge1", help="validation metric that picks the kept checkpoint and "
                                                        "drives early stopping ('loss' skips generation during "
                                                        "training)")
    save_total_limit: int = arg(2, help="checkpoints kept during training (the best one is always kept)")
    gradient_checkpointing: bool = arg(False, help="recompute activations in the backward pass: less memory, "
                                                   "about 20-30% slower")
    precision: Precision = arg("auto", help="training precision; auto = bf16 on a CUDA GPU that supports it, "
                                            "else fp32")
    group_by_length: bool = arg(True, help="batch examples of similar length together (less padding)")
    seed: int = arg(42, help="seed for LoRA initialisation, dropout and batch order")
    logging_steps: int = arg(10, help="log loss and learning rate every this many steps")
    report_to: ReportTo = arg("auto", help="experiment tracker; auto = tensorboard if installed (logs/ in the "
                                           "output folder)")
    resume: bool = arg(False, help="continue an interrupted run of the same command from its last checkpoint")
    num_threads: int | None = arg(None, help="CPU threads for torch (default: all available cores)")

    def __post_init__(self) -> None:
        positive = {"batch_size": self.batch_size, "gradient_accumulation_steps": self.gradient_accumulation_steps,
                    "logging_steps": self.logging_steps, "save_total_limit": self.save_total_limit}
        for optional in ("max_steps", "eval_steps", "eval_max_examples", "num_threads"):
            if getattr(self, optional) is not None:
                positive[optional] = getattr(self, optional)
        for name, value in positive.items():
            if value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.learning_rate <= 0:
            raise UsageError(f"--learning-rate must be positive, got {self.learning_rate}")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise UsageError("--warmup-steps and --weight-decay must be >= 0")
        if self.num_epochs <= 0:
            raise UsageError(f"--num-epochs must be positive, got {self.num_epochs}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 0:
            raise UsageError(f"--early-stopping-patience must be >= 0, got {self.early_stopping_patience}")


def resolve_report_to(report_to: str) -> str:
    """The tracker to use: ``auto`` becomes ``tensorboard`` when it is installed, else ``none``.

    Raises:
        UsageError: when the requested tracker's package is not installed.
    """
    installed = {name: importlib.util.find_spec(name) is not None for name in ("tensorboard", "mlflow")}
    if report_to == "auto":
        return "tensorboard" if installed["tensorboard"] else "none"
    if report_to != "none" and not installed[report_to]:
        raise UsageError(f"--report-to {report_to}: the {report_to} package is not installed "
                         f"(pip install {report_to})")
    return report_to


@dataclass
class FinetuneOutputArgs:
    """Where to write the run folder (adapter, metrics, splits)."""

    output: Path | None = arg(None, help="run folder to create (required; written atomically)")
    overwrite: bool = arg(False, help="replace a non-empty run folder, or discard an interrupted run")
