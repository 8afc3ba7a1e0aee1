"""``prunetune finetune``: prune (optionally), add LoRA, train, keep the best adapter.

The run folder (a contract that ``evaluate``, ``merge`` and ``run`` rely on)::

    <output>/
      adapter/         PeftModel.save_pretrained of the best checkpoint + the tokenizer
      base/            the pruned base model (prunetune.pruning.save_pruned); only when
                       this run pruned, the adapter then applies to it
      data/            the exact train/validation/test splits used (write_splits)
      finetune.json    base_model ("base", or the model path / hub id), source_model,
                       is_encoder_decoder, pruning, prompt, lora, args (the full recipe)
      metrics.json     parameter counts, layers, peak memory, speed, best step and the
                       validation scores of the kept checkpoint, device, versions
      logs/            TensorBoard event files (when TensorBoard is used)

Everything is validated (data, model, LoRA targets, output folder) before anything is
written. Training happens in the sibling folder ``.<output>.partial``, renamed into
place only at the end; an error removes it. Ctrl-C during training is the exception:
a checkpoint is saved and the partial folder kept, and rerunning the same command with
``--resume`` continues from it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterator

import torch

from prunetune.architectures import stack_depths
from prunetune.config import to_recipe
from prunetune.data import DataArgs, load_splits, write_splits
from prunetune.errors import UsageError
from prunetune.generation import GenerationArgs
from prunetune.memory import track_peak_memory
from prunetune.models import ModelArgs, load_model
from prunetune.outputs import check_output_dir, replace_dir
from prunetune.prompting import PromptArgs, ensure_pad_token, is_encoder_decoder
from prunetune.pruning import PruneArgs, apply_pruning, pruning_record, save_pruned
from prunetune.training.args import FinetuneOutputArgs, TrainArgs, resolve_report_to
from prunetune.training.lora import LoraArgs, build_lora_model, count_trainable, lora_target_modules

logger = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
BASE_DIR = "base"
DATA_DIR = "data"
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"
RUN_FILE = "finetune.json"
METRICS_FILE = "metrics.json"

# Arguments that may change between an interrupted run and its --resume.
_RESUME_EXEMPT = {("train", "resume"), ("train", "num_threads"), ("output", "overwrite"), ("output", "output")}


def partial_dir(output: Path) -> Path:
    """The sibling folder a run trains in before it is renamed to ``output``."""
    output = Path(output).absolute()
    return output.parent / f".{output.name}.partial"


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("prunetune", "torch", "transformers", "peft"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _check_partial(partial: Path, resume: bool, overwrite: bool) -> bool:
    """Decide what to do with an earlier run's partial folder; True means resume it.

    Raises:
        UsageError: when a partial folder exists and neither --resume nor --overwrite
            says what to do with it, or --resume finds no checkpoint in it.
    """
    from prunetune.training.trainer import last_checkpoint

    if not partial.exists():
        if resume:
            logger.info("--resume: no interrupted run in %s; starting a new run", partial)
        return False
    if resume:
        if last_checkpoint(partial / CHECKPOINTS_DIR) is None:
            raise UsageError(f"--resume: {partial} holds no complete checkpoint (a run may still be writing it); "
                             f"use --overwrite to discard it")
        return True
    if not overwrite:
        raise UsageError(f"an interrupted run of this command is in {partial}: add --resume to continue it, or "
                         f"--overwrite to discard it")
    return False


def _check_same_run(partial: Path, recipe: dict[str, Any]) -> None:
    """Refuse to resume a run whose arguments differ from this command's."""
    try:
        previous = json.loads((partial / RUN_FILE).read_text())["args"]
    except (OSError, ValueError, KeyError):
        raise UsageError(f"--resume: {partial / RUN_FILE} is missing or unreadable; use --overwrite to "
                         f"start over") from None
    for group, values in recipe.items():
        for key, value in values.items():
            if (group, key) in _RESUME_EXEMPT:
                continue
            old = previous.get(group, {}).get(key)
            if old != value:
                raise UsageError(f"--resume: the interrupted run used {group}.{key}={old!r}, this command "
                                 f"{value!r}; rerun it with the same arguments or use --overwrite to start over")


@contextlib.contextmanager
def _torch_threads(num_threads: int | None) -> Iterator[None]:
    """Use ``num_threads`` CPU threads (default: every core this process may use), then restore."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads or available)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def finetune(model: ModelArgs, prune: PruneArgs, data: DataArgs, prompt: PromptArgs, lora: LoraArgs,
             train: TrainArgs, generation: GenerationArgs, output: FinetuneOutputArgs) -> dict[str, Any]:
    """Prune (optionally), LoRA-tune and write a run folder (see the module docstring).

    Args:
        model: the model to start from.
        prune: layers to drop first (nothing by default).
        data: the dataset and its splits.
        prompt: how examples become tokens.
        lora: adapter placement and size.
        train: optimisation, validation, checkpoints.
        generation: decoding for validation.
        output: the run folder.

    Returns:
        The contents of ``metrics.json``.

    Raises:
        UsageError: for bad input, before anything is written.
        KeyboardInterrupt: on Ctrl-C; during training a checkpoint is kept for ``--resume``.
    """
    with _torch_threads(train.num_threads):
        return _finetune(model, prune, data, prompt, lora, train, generation, output)


def _finetune(model: ModelArgs, prune: PruneArgs, data: DataArgs, prompt: PromptArgs, lora: LoraArgs,
              train: TrainArgs, generation: GenerationArgs, output: FinetuneOutputArgs) -> dict[str, Any]:
    from prunetune.training.trainer import last_checkpoint, resolve_precision

    recipe = to_recipe({"model": model, "prune": prune, "data": data, "prompt": prompt, "lora": lora,
                        "train": train, "generation": generation, "output": output})
    if output.output is None:
        raise UsageError("--output is required")
    dst = Path(output.output).expanduser().absolute()
    check_output_dir(dst, output.overwrite)
    partial = partial_dir(dst)
    resuming = _check_partial(partial, train.resume, output.overwrite)
    if resuming:
        _check_same_run(partial, recipe)
    report_to = resolve_report_to(train.report_to)
    precision = resolve_precision(train.precision)

    splits = load_splits(data)
    if not splits.train:
        raise UsageError("the training split is empty")
    base, tokenizer, path = load_model(model.model, model.dtype)
    if tokenizer is None:
        raise UsageError(f"{path} has no tokenizer; finetune needs one")
    ensure_pad_token(tokenizer)
    original_params = count_trainable(base)[1]
    plan = apply_pruning(base, prune)
    lora_target_modules(base, lora)  # raises UsageError for bad targets before anything is written

    if partial.exists() and not resuming:
        shutil.rmtree(partial)  # an interrupted run the user chose to discard with --overwrite
    partial.mkdir(parents=True, exist_ok=True)
    try:
        write_splits(splits, partial / DATA_DIR)
        if plan is not None and not (partial / BASE_DIR / "config.json").is_file():
            save_pruned(base, tokenizer, partial / BASE_DIR, source=model.model)
        run_info = {
            "base_model": BASE_DIR if plan is not None else path,
            "source_model": model.model,
            "is_encoder_decoder": is_encoder_decoder(base),
            "pruning": pruning_record(base),
            "prompt": asdict(prompt),
            "lora": asdict(lora),
            "args": recipe,
        }
        _write_json(partial / RUN_FILE, run_info)
        metrics = _train(base, tokenizer, splits, prompt, lora, train, generation, partial,
                         resume_from=last_checkpoint(partial / CHECKPOINTS_DIR) if resuming else None,
                         precision=precision, report_to=report_to, original_params=original_params,
                         base_location=dst / BASE_DIR if plan is not None else None)
        _write_json(partial / METRICS_FILE, metrics)
        shutil.rmtree(partial / CHECKPOINTS_DIR, ignore_errors=True)
    except KeyboardInterrupt:
        if last_checkpoint(partial / CHECKPOINTS_DIR) is None:
            shutil.rmtree(partial, ignore_errors=True)
        else:
            logger.warning("interrupted: training state saved in %s; rerun the same command with --resume to "
                           "continue", partial)
        raise
    except BaseException:
        # A resumed run keeps its folder: the earlier sessions' training is not ours to throw away.
        if not resuming:
            shutil.rmtree(partial, ignore_errors=True)
        raise
    replace_dir(partial, dst)
    logger.info("wrote %s", dst)
    return metrics


def _train(base: Any, tokenizer: Any, splits: Any, prompt: PromptArgs, lora: LoraArgs, train: TrainArgs,
           generation: GenerationArgs, folder: Path, *, resume_from: Path | None, precision: str,
           report_to: str, original_params: int, base_location: Path | None) -> dict[str, Any]:
    """Build the LoRA model and the trainer, train, save ``adapter/``; returns the run's metrics.

    ``original_params`` is the unpruned model's parameter count: LoraLPrun reports the
    trainable share against it (0.6%), so pruning does not inflate the percentage.
    """
    from transformers import EarlyStoppingCallback, ProgressCallback, set_seed

    from prunetune.training.dropout import use_masked_lora_dropout
    from prunetune.training.trainer import (
        FinetuneTrainer,
        StderrProgressCallback,
        encode_examples,
        make_collator,
        planned_steps,
        save_interrupt_checkpoint,
        training_arguments,
    )

    encoder_decoder = is_encoder_decoder(base)
    set_seed(train.seed)  # LoRA's A matrices are initialised randomly
    peft_model = build_lora_model(base, lora)
    targets = sorted(peft_model.peft_config["default"].target_modules)
    trainable, total = count_trainable(peft_model)

    train_features = encode_examples(tokenizer, splits.train, prompt, encoder_decoder)
    eval_examples = splits.validation[: train.eval_max_examples]
    eval_features = encode_examples(tokenizer, eval_examples, prompt, encoder_decoder)
    has_validation = bool(eval_examples)
    if not has_validation:
        logger.warning("no validation split: training without validation; the last step's adapter is kept")
    total_steps = planned_steps(len(train_features), train)
    args = training_arguments(train, folder / CHECKPOINTS_DIR, total_steps=total_steps,
                              has_validation=has_validation, precision=precision, report_to=report_to)
    masked_dropouts = 0
    if args.device.type == "cpu":
        # Same dropout distribution, without PEFT's single-threaded CPU mask draw (~10% of a step).
        masked_dropouts = use_masked_lora_dropout(peft_model)
    callbacks = []
    if has_validation and train.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=train.early_stopping_patience))
    if report_to == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        callbacks.append(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(folder / LOGS_DIR))))
    trainer = FinetuneTrainer(
        model=peft_model, args=args, data_collator=make_collator(tokenizer), train_dataset=train_features,
        eval_dataset=eval_features or None, processing_class=tokenizer, callbacks=callbacks,
        eval_examples=eval_examples, prompt=prompt, generation=generation,
        generate_in_eval=train.metric_for_best != "loss", encoder_decoder=encoder_decoder,
    )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(StderrProgressCallback())
    logger.info("trainable parameters: %s = %.2f%% of the original model's %s (LoRA on %s); %d steps planned",
                f"{trainable:,}", 100.0 * trainable / original_params, f"{original_params:,}", ",".join(targets),
                total_steps)

    start = time.perf_counter()
    try:
        with track_peak_memory(args.device) as memory:
            result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except KeyboardInterrupt:
        checkpoint = save_interrupt_checkpoint(trainer)
        if checkpoint is not None:
            logger.warning("saved checkpoint %s at step %d", checkpoint.name, trainer.state.global_step)
        raise
    # Validation ran inside train(); pure optimisation time is what is left.
    train_seconds = max(time.perf_counter() - start - trainer.eval_seconds, 1e-9)

    state = trainer.state
    best_step = state.best_global_step or state.global_step
    validation = None
    if has_validation:
        # The best checkpoint is loaded (load_best_model_at_end); its scores are known unless it was
        # selected on loss or evaluated before a resume.
        validation = trainer.scores_by_step.get(best_step)
        if validation is None:
            eval_start = time.perf_counter()
            validation = trainer.generation_scores()
            trainer.eval_seconds += time.perf_counter() - eval_start

    adapter = folder / ADAPTER_DIR
    if base_location is not None:
        # Point the adapter at the pruned base it was trained on, not at the unpruned source.
        peft_model.peft_config["default"].base_model_name_or_path = str(base_location)
    peft_model.save_pretrained(adapter)
    tokenizer.save_pretrained(adapter)

    record = pruning_record(base)
    depths = stack_depths(base)
    device = args.device
    return {
        "trainable_params": trainable,
        "total_params": total,
        "original_total_params": original_params,
        "trainable_percent_of_original": 100.0 * trainable / original_params,
        "trainable_percent": 100.0 * trainable / total,
        "lora_target_modules": targets,
        "lora_dropout_impl": "masked" if masked_dropouts else "torch",
        "layers_kept": record["kept_layers"] if record else {s: list(range(n)) for s, n in depths.items()},
        "num_layers": depths,
        **memory,
        "train_seconds": train_seconds,
        "train_samples_per_second": trainer.samples_seen / train_seconds,
        "train_tokens_per_second": trainer.tokens_seen / train_seconds,
        "train_tokens": trainer.tokens_seen,
        "train_samples": trainer.samples_seen,
        "train_steps": state.global_step,
        "train_loss": result.training_loss,
        "eval_seconds": trainer.eval_seconds,
        "resumed_from_step": int(resume_from.name.rsplit("-", 1)[1]) if resume_from else None,
        "best_step": best_step,
        "metric_for_best": train.metric_for_best if has_validation else None,
        "best_metric": state.best_metric,
        "validation": validation,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "precision": precision,
        "num_threads": torch.get_num_threads(),
        "versions": _versions(),
    }


def _summary(metrics: dict[str, Any], folder: Path) -> str:
    lines = [f"run folder: {folder}",
             f"trainable parameters: {metrics['trainable_params']:,} "
             f"({metrics['trainable_percent_of_original']:.2f}% of the original {metrics['original_total_params']:,})",
             f"training: {metrics['train_steps']} steps, {metrics['train_seconds']:.1f} s, "
             f"{metrics['train_tokens_per_second']:,.0f} tokens/s, peak memory "
             f"{metrics['peak_memory_bytes'] / 2**30:.2f} GiB ({metrics['peak_memory_kind']})"]
    if metrics["validation"]:
        v = metrics["validation"]
        lines.append(f"best step {metrics['best_step']} ({metrics['metric_for_best']}): validation "
                     + " | ".join(f"{k} {v[k]:.2f}" for k in ("rouge1", "rouge2", "rougeL", "bleu") if k in v))
    return "\n".join(lines)


def finetune_command(model: ModelArgs, prune: PruneArgs, data: DataArgs, prompt: PromptArgs, lora: LoraArgs,
                     train: TrainArgs, generation: GenerationArgs, output: FinetuneOutputArgs) -> int:
    """``prunetune finetune``: prune -> LoRA -> train -> run folder; prints a short summary."""
    metrics = finetune(model, prune, data, prompt, lora, train, generation, output)
    print(_summary(metrics, Path(output.output)), file=sys.stdout)
    return 0
