"""LoRA fine-tuning of (pruned) models: ``prunetune finetune`` and its building blocks.

* ``lora.py`` - :class:`LoraArgs`, the target-layer presets (ffn / qv / all-linear) and
  :func:`build_lora_model` (PEFT).
* ``args.py`` - :class:`TrainArgs` (LoraLPrun's defaults) and :class:`FinetuneOutputArgs`.
* ``trainer.py`` - transformers' ``Trainer`` with validation by generation + ROUGE,
  token counting, stderr progress and Ctrl-C checkpoints (imported lazily: it pulls
  in ``transformers.Trainer``).
* ``dropout.py`` - :class:`MaskedDropout`, LoRA dropout with a multi-threaded mask draw
  (used on CPU, where PEFT's ``nn.Dropout`` draws its mask on one thread).
* ``finetune.py`` - :func:`finetune`: validate, prune, train, write the run folder.

Peak-memory measurement lives in :mod:`prunetune.memory` (shared with the benchmark).
"""

from prunetune.training.args import FinetuneOutputArgs, TrainArgs
from prunetune.training.finetune import finetune, finetune_command, partial_dir
from prunetune.training.lora import (
    QV_MODULES,
    LoraArgs,
    build_lora_model,
    count_trainable,
    linear_layers,
    lora_target_modules,
)

__all__ = [
    "QV_MODULES",
    "FinetuneOutputArgs",
    "LoraArgs",
    "TrainArgs",
    "build_lora_model",
    "count_trainable",
    "finetune",
    "finetune_command",
    "linear_layers",
    "lora_target_modules",
    "partial_dir",
]
