"""The training loop: transformers' ``Trainer`` with validation by generation.

``Trainer`` supplies the loop (dynamic padding, length-grouped batches, gradient
accumulation, activation checkpointing, mixed precision, checkpoint rotation, resume,
early stopping, keeping the best checkpoint). What this module adds:

* :class:`FinetuneTrainer` - ``evaluate`` computes the teacher-forced validation loss
  *and* generates outputs for (a subset of) the validation split, scored with
  :func:`prunetune.metrics.score`, so ``metric_for_best_model="rouge1"`` selects the
  checkpoint by what the paper reports. It also counts the non-padding tokens and
  examples fed to ``training_step`` (tokens/s in ``metrics.json``).
* :class:`StderrProgressCallback` - progress bar plus one compact line per log event,
  all on stderr (``Trainer`` prints its log dicts to stdout).
* :func:`training_arguments` - ``TrainArgs`` -> ``TrainingArguments``.
* :func:`save_interrupt_checkpoint` / :func:`last_checkpoint` - Ctrl-C leaves a
  complete checkpoint that ``--resume`` continues from.

This module imports ``transformers.Trainer`` (a few seconds), so the package imports
it only when a training run starts.
"""

from __future__ import annotations

import copy
import logging
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm
from transformers import DataCollatorForSeq2Seq, ProgressCallback, Trainer, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from prunetune.errors import UsageError
from prunetune.generation import GenerationArgs, generate_texts
from prunetune.metrics import score
from prunetune.prompting import IGNORE_INDEX, PromptArgs, encode_example
from prunetune.training.args import MAX_WARMUP_FRACTION, TrainArgs

logger = logging.getLogger(__name__)

# Trainer writes this file last when it saves a checkpoint, so its presence marks a complete one.
TRAINER_STATE_FILE = "trainer_state.json"
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def encode_examples(tokenizer: Any, examples: Sequence[dict], prompt: PromptArgs,
                    encoder_decoder: bool) -> list[dict[str, list[int]]]:
    """Tokenize source/target pairs into ``input_ids``/``attention_mask``/``labels`` features."""
    return [encode_example(tokenizer, ex["source"], ex["target"], prompt, encoder_decoder) for ex in examples]


def make_collator(tokenizer: Any) -> DataCollatorForSeq2Seq:
    """Dynamic padding to the longest example of each batch.

    Labels arrive already masked (prompt and padding = -100), so the same collator serves
    both model kinds. It pads on the right whatever the tokenizer's generation setting:
    left padding would shift GPT-2's absolute positions in training.
    """
    right = copy.copy(tokenizer)
    right.padding_side = "right"
    return DataCollatorForSeq2Seq(right, label_pad_token_id=IGNORE_INDEX)


def count_tokens(inputs: dict[str, torch.Tensor], encoder_decoder: bool) -> int:
    """Non-padding tokens one batch feeds the model (encoder and decoder side for seq2seq)."""
    tokens = int(inputs["attention_mask"].sum())
    if encoder_decoder:
        # The decoder reads the shifted labels: one token per label that is not padding.
        tokens += int((inputs["labels"] != IGNORE_INDEX).sum())
    return tokens


def resolve_precision(precision: str) -> str:
    """``auto`` -> ``bf16`` on a CUDA GPU that supports it, else ``fp32``.

    Raises:
        UsageError: for fp16 without a CUDA GPU, or bf16 on a GPU without bf16 support.
    """
    cuda = torch.cuda.is_available()
    if precision == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp16" and not cuda:
        raise UsageError("--precision fp16 needs a CUDA GPU; use fp32 (or bf16) on CPU")
    if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise UsageError("--precision bf16: this GPU does not support bfloat16; use fp16 or fp32")
    return precision


def planned_steps(num_train: int, train: TrainArgs) -> int:
    """Optimizer steps the run will take (before any early stop)."""
    if train.max_steps is not None:
        return train.max_steps
    batches = math.ceil(num_train / train.batch_size)
    per_epoch = max(math.ceil(batches / train.gradient_accumulation_steps), 1)
    return max(math.ceil(train.num_epochs * per_epoch), 1)


def effective_warmup(train: TrainArgs, total_steps: int) -> int:
    """``train.warmup_steps``, clipped to 10% of ``total_steps`` (with a log note)."""
    cap = int(MAX_WARMUP_FRACTION * total_steps)
    if train.warmup_steps > cap:
        logger.info("warm-up: %d steps is more than %d%% of this %d-step run; using %d",
                    train.warmup_steps, round(100 * MAX_WARMUP_FRACTION), total_steps, cap)
        return cap
    return train.warmup_steps


def training_arguments(train: TrainArgs, checkpoints: Path, *, total_steps: int, has_validation: bool,
                       precision: str, report_to: str) -> TrainingArguments:
    """Translate :class:`TrainArgs` into ``TrainingArguments``.

    Args:
        train: the user's settings.
        checkpoints: folder for ``checkpoint-N`` subfolders.
        total_steps: planned optimizer steps (for the warm-up clip).
        has_validation: whether there is a validation split to evaluate and select on.
        precision: resolved precision (``fp32``, ``bf16`` or ``fp16``).
        report_to: resolved tracker; TensorBoard is attached by the caller as a callback
            (so its logs go to the run folder's ``logs/``), so only mlflow is passed on.

    Returns:
        Arguments that validate (and save) at the same interval, keep the best
        checkpoint by ``train.metric_for_best`` when there is a validation split, and
        batch by length.
    """
    interval = "steps" if train.eval_steps is not None else "epoch"
    kwargs: dict[str, Any] = {}
    if has_validation:
        loss = train.metric_for_best == "loss"
        kwargs.update(eval_strategy=interval, eval_steps=train.eval_steps, load_best_model_at_end=True,
                      metric_for_best_model=train.metric_for_best, greater_is_better=not loss)
    if train.gradient_checkpointing:
        # Non-reentrant checkpointing works with frozen embeddings (no need to make inputs require grad).
        kwargs.update(activation_checkpointing=True, activation_checkpointing_kwargs={"use_reentrant": False})
    return TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        num_train_epochs=train.num_epochs,
        max_steps=train.max_steps if train.max_steps is not None else -1,
        learning_rate=train.learning_rate,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=effective_warmup(train, total_steps),
        weight_decay=train.weight_decay,
        save_strategy=interval,
        save_steps=train.eval_steps or 1,
        save_total_limit=train.save_total_limit,
        logging_strategy="steps",
        logging_steps=train.logging_steps,
        logging_first_step=True,
        report_to=["mlflow"] if report_to == "mlflow" else "none",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        train_sampling_strategy="group_by_length" if train.group_by_length else "random",
        seed=train.seed,
        # Our features hold exactly the model inputs; PEFT wrappers hide forward's signature.
        remove_unused_columns=False,
        label_names=["labels"],
        disable_tqdm=False,
        restore_callback_states_from_checkpoint=True,
        **kwargs,
    )


def _accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether the (PEFT-unwrapped) causal LM's forward takes ``logits_to_keep``."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


class FinetuneTrainer(Trainer):
    """``Trainer`` whose evaluation generates text and scores it, and which counts tokens.

    Args:
        eval_examples: validation examples (dicts with ``source``/``target``, optional
            ``subset``) to generate for; their encoded form is ``eval_dataset``.
        prompt: prompt settings (as in training).
        generation: decoding settings.
        generate_in_eval: generate and score at each evaluation (else loss only).
        encoder_decoder: the model kind, for token counting.
        **kwargs: passed to ``Trainer``.
    """

    def __init__(self, *args: Any, eval_examples: Sequence[dict] = (), prompt: PromptArgs | None = None,
                 generation: GenerationArgs | None = None, generate_in_eval: bool = True,
                 encoder_decoder: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eval_examples = list(eval_examples)
        self.prompt_args = prompt or PromptArgs()
        self.generation_args = generation or GenerationArgs()
        self.generate_in_eval = generate_in_eval
        self.encoder_decoder = encoder_decoder
        self.scores_by_step: dict[int, dict[str, Any]] = {}
        self.eval_seconds = 0.0
        self.tokens_seen = 0
        self.samples_seen = 0
        # Inspected once here, not in every compute_loss call: the model's forward does not change.
        self.head_on_targets_only = (not encoder_decoder and self.model is not None
                                     and _accepts_logits_to_keep(self.model))

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None
                      ) -> torch.Tensor:
        self.tokens_seen += count_tokens(inputs, self.encoder_decoder)
        self.samples_seen += int(inputs["input_ids"].shape[0])
        # A training forward needs no KV cache; building one only costs time and memory.
        return super().training_step(model, {**inputs, "use_cache": False}, num_items_in_batch)

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """Decoder-only: project only the positions that predict a target token onto the vocabulary.

        The prompt is masked from the loss, yet the stock path computes (and backpropagates
        through) vocabulary logits for every position. On SmolLM2 the LM head is ~20% of a
        step's FLOPs and its logits the largest activation, while targets are ~15% of the
        tokens. ``logits_to_keep`` (a 1-D index tensor, supported by transformers' causal
        LMs) limits the head to the span from the first target in the batch to the end.
        The loss is reduced exactly as the model's own loss would be (sum over target tokens
        divided by ``num_items_in_batch`` when the Trainer passes it, else the mean).
        """
        if self.encoder_decoder or return_outputs or not self.head_on_targets_only:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs["labels"]
        targets = labels[:, 1:]  # position t predicts token t + 1
        has_target = (targets != IGNORE_INDEX).any(dim=0)
        if not bool(has_target.any()):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        start = int(has_target.nonzero()[0])
        keep = torch.arange(start, labels.shape[1] - 1, device=labels.device)
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, logits_to_keep=keep)
        logits = outputs.logits.float()
        kept_targets = targets[:, start:]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), kept_targets.reshape(-1),
                                                 ignore_index=IGNORE_INDEX, reduction="sum")
        if self.model_accepts_loss_kwargs and num_items_in_batch is not None:
            loss = loss / num_items_in_batch
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes
        else:
            loss = loss / (kept_targets != IGNORE_INDEX).sum().clamp(min=1)
        return loss

    def generation_scores(self) -> dict[str, Any]:
        """Generate for the validation examples with the current weights and score them."""
        sources = [ex["source"] for ex in self.eval_examples]
        references = [ex["target"] for ex in self.eval_examples]
        subsets = [ex.get("subset") for ex in self.eval_examples]
        predictions = generate_texts(self.model, self.processing_class, sources, self.prompt_args,
                                     self.generation_args)
        return score(predictions, references, subsets=subsets if all(s is not None for s in subsets) else None)

    def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        """Validation loss on ``eval_dataset`` plus generation scores; logged and passed to callbacks."""
        start = time.perf_counter()
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        metrics: dict[str, float] = {}
        if dataset is not None and len(dataset):
            output = self.evaluation_loop(self.get_eval_dataloader(dataset), description="validation loss",
                                          prediction_loss_only=True, ignore_keys=ignore_keys,
                                          metric_key_prefix=metric_key_prefix)
            metrics.update(output.metrics)
        if self.generate_in_eval and self.eval_examples:
            scores = self.generation_scores()
            self.scores_by_step[self.state.global_step] = scores
            metrics.update({f"{metric_key_prefix}_{k}": float(v) for k, v in scores.items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)})
        seconds = time.perf_counter() - start
        self.eval_seconds += seconds
        metrics[f"{metric_key_prefix}_runtime"] = seconds
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


class StderrProgressCallback(ProgressCallback):
    """Trainer's progress bar, with each log event as one short line on stderr.

    Only the figures worth watching are printed (every logged value still reaches
    TensorBoard / mlflow).
    """

    SHOWN = ("loss", "grad_norm", "learning_rate", "eval_loss", "eval_rouge1", "eval_rouge2", "eval_rougeL",
             "eval_bleu", "eval_gen_len_words", "eval_runtime", "train_runtime", "train_loss")

    def on_log(self, args: TrainingArguments, state: Any, control: Any, logs: dict | None = None,
               **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        parts = [f"step {state.global_step}/{state.max_steps}"]
        for key in self.SHOWN:
            value = logs.get(key)
            if isinstance(value, (int, float)):
                parts.append(f"{key} {value:.2e}" if key == "learning_rate" else f"{key} {value:.4g}")
        tqdm.write(" | ".join(parts), file=sys.stderr)


def save_interrupt_checkpoint(trainer: Trainer) -> Path | None:
    """Save a resumable checkpoint at the current step after Ctrl-C.

    Uses the same ``Trainer._save_checkpoint`` call as transformers' own SIGTERM
    checkpointing (``trainer_jit_checkpoint.py``): model, optimizer, scheduler, RNG and
    trainer state, so ``train(resume_from_checkpoint=...)`` continues from this step.

    Returns:
        The checkpoint folder, or None if no optimizer step had been taken yet.
    """
    state = getattr(trainer, "state", None)
    if state is None or state.global_step == 0 or trainer.optimizer is None:
        return None
    trainer._save_checkpoint(trainer.model, trial=None)
    return Path(trainer.args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` in ``folder`` (one with a trainer state), or None."""
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir()
             if (m := _CHECKPOINT.match(p.name)) and (p / TRAINER_STATE_FILE).is_file()]
    return max(found)[1] if found else None
