"""Merge a LoRA adapter into its (pruned) base and write a standalone model with a card.

``prunetune merge`` turns a ``prunetune finetune`` output folder into one ordinary
Hugging Face checkpoint: ``W' = W + (alpha / r) * B @ A`` folded into every adapted
weight (``PeftModel.merge_and_unload``), saved as safetensors with its config (which
keeps the ``config.prunetune`` layer record of a pruned base), generation config and
tokenizer. The result loads with ``AutoModelFor*.from_pretrained`` alone, without
prunetune or peft. Next to it go :data:`~prunetune.inference.MERGE_RECORD` (the
training prompt, so ``prunetune evaluate``/``generate`` rebuild inputs exactly) and a
model card ``README.md`` generated from the run's records, never typed by hand.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from prunetune.config import arg
from prunetune.errors import UsageError
from prunetune.inference import (
    ADAPTER_DIR,
    FINETUNE_RECORD,
    MERGE_RECORD,
    InferenceInfo,
    finetune_data_dir,
    is_finetune_dir,
    load_for_inference,
    read_record,
)
from prunetune.outputs import atomic_output_dir, check_output_dir
from prunetune.prompting import PLAIN_TEMPLATE, PromptArgs

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"
CARD_TAGS = ["prunetune", "lora", "layer-pruning"]
TRAINING_METRICS = "metrics.json"


@dataclass
class MergeArgs:
    """The finetune output folder to merge, and what to record about it."""

    model: str | None = arg(None, help="prunetune finetune output folder, with adapter/ and finetune.json (required)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = arg(
        "auto", help="dtype of the saved weights ('auto' keeps the base's); the merge itself runs in the base's dtype")
    eval_metrics: Path | None = arg(None, help="metrics.json written by prunetune evaluate, summarized in the card")

    def __post_init__(self) -> None:
        if self.model is None or not str(self.model).strip():
            raise UsageError("--model is required (a prunetune finetune output folder)")
        if self.eval_metrics is not None and not self.eval_metrics.is_file():
            raise UsageError(f"--eval-metrics {self.eval_metrics} not found")


@dataclass
class MergeOutputArgs:
    """Where to write the merged model."""

    output: Path | None = arg(None, help="destination folder, written atomically (required)")
    overwrite: bool = arg(False, help="replace a non-empty destination folder")

    def __post_init__(self) -> None:
        if self.output is None:
            raise UsageError("--output is required")


def merge_lora(folder: str | Path, dtype: str = "auto") -> tuple[Any, Any, InferenceInfo]:
    """Load a finetune folder and fold its LoRA weights into the base, on CPU.

    Args:
        folder: a ``prunetune finetune`` output folder.
        dtype: dtype of the returned weights; ``auto`` keeps the base's.

    Returns:
        ``(model, tokenizer, info)``, the model a plain ``transformers`` model.

    Raises:
        UsageError: if ``folder`` is not a finetune folder or does not load.
    """
    import torch

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UsageError(f"finetune folder {folder} does not exist")
    if not is_finetune_dir(folder):
        raise UsageError(f"{folder} is not a prunetune finetune output folder (no {FINETUNE_RECORD})")
    # CPU: merging is one matmul per adapted weight, and the result is saved anyway.
    model, tokenizer, info = load_for_inference(folder, device="cpu")
    merged = model.merge_and_unload()
    if dtype != "auto":
        merged = merged.to(getattr(torch, dtype))
    if info.pruning and not getattr(merged.config, "prunetune", None):
        merged.config.prunetune = info.pruning  # keep the layer record with the weights
    # Generation without a tokenizer at hand (e.g. a pipeline) needs these ids.
    gen = merged.generation_config
    if gen is not None:
        gen.pad_token_id = gen.pad_token_id if gen.pad_token_id is not None else tokenizer.pad_token_id
        gen.eos_token_id = gen.eos_token_id if gen.eos_token_id is not None else tokenizer.eos_token_id
    return merged, tokenizer, info


def merge_record(info: InferenceInfo) -> dict[str, Any]:
    """The :data:`MERGE_RECORD` contents: provenance and the training prompt."""
    record = info.record
    return {"merged_from": str(Path(info.path).absolute()), "source_model": info.source_model,
            "base_model": record.get("base_model"), "is_encoder_decoder": record.get("is_encoder_decoder"),
            "pruning": info.pruning, "prompt": asdict(info.prompt), "lora": record.get("lora")}


def save_merged(model: Any, tokenizer: Any, info: InferenceInfo, folder: Path,
                eval_metrics: dict[str, Any] | None = None, name: str | None = None) -> None:
    """Write weights, config, generation config, tokenizer, the merge record and the card.

    Args:
        model: the merged model from :func:`merge_lora`.
        tokenizer: its tokenizer.
        info: what :func:`merge_lora` loaded.
        folder: an existing, empty folder (e.g. from :func:`atomic_output_dir`).
        eval_metrics: a ``prunetune evaluate`` ``metrics.json``, for the card.
        name: the model's name in the card (default: ``folder``'s name).
    """
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    (folder / MERGE_RECORD).write_text(json.dumps(merge_record(info), indent=2) + "\n", encoding="utf-8")
    training = Path(info.path) / TRAINING_METRICS
    card = model_card(model, tokenizer, info, name=name or folder.name,
                      training_metrics=read_record(training) if training.is_file() else None,
                      eval_metrics=eval_metrics)
    (folder / CARD_FILE).write_text(card, encoding="utf-8")


def merge_command(merge: MergeArgs, output: MergeOutputArgs) -> int:
    """``prunetune merge``: fold the LoRA adapter into the base and write a standalone model."""
    check_output_dir(output.output, output.overwrite)
    eval_metrics = read_record(merge.eval_metrics) if merge.eval_metrics is not None else None
    model, tokenizer, info = merge_lora(merge.model, merge.dtype)
    with atomic_output_dir(output.output, output.overwrite) as tmp:
        # Named after the destination, not the temporary folder it is written in.
        save_merged(model, tokenizer, info, tmp, eval_metrics, name=Path(output.output).name)
    logger.info("saved merged model (%s parameters) to %s", f"{model.num_parameters():,}", output.output)
    return 0


# --- model card -------------------------------------------------------------------------

def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return "–" if value is None else str(value)


def _pairs_table(pairs: dict[str, Any]) -> list[str]:
    rows = ["| | |", "|---|---|"]
    return rows + [f"| {key} | {_value(value)} |" for key, value in pairs.items()]


def _layers_section(model: Any, pruning: dict[str, Any] | None) -> list[str]:
    from prunetune.architectures import stack_depths

    depths = stack_depths(model)
    lines = ["## Layers", ""]
    if not pruning:
        lines.append("Not pruned: " + ", ".join(f"{name} {n} layers" for name, n in depths.items()) + ".")
        return lines
    original = pruning.get("original_num_layers", {})
    kept = pruning.get("kept_layers", {})
    lines += ["Whole Transformer blocks were removed before tuning (original indices kept):", "",
              "| stack | layers kept | of original | kept indices |", "|---|---:|---:|---|"]
    for name, n in depths.items():
        indices = kept.get(name, list(range(n)))
        lines.append(f"| {name} | {n} | {original.get(name, n)} | {','.join(map(str, indices))} |")
    return lines


def _lora_section(lora: dict[str, Any] | None, adapter_config: dict[str, Any]) -> list[str]:
    lines = ["## LoRA", ""]
    if not lora:
        return lines + ["Not recorded."]
    # With a preset, the recipe has no explicit targets; the adapter config has the modules peft matched.
    targets = lora.get("lora_targets") or adapter_config.get("target_modules")
    if isinstance(targets, (list, tuple, set)):
        targets = sorted(targets)
    shown = {"preset": lora.get("lora_preset"), "target modules": targets,
             "r": lora.get("lora_r"), "alpha": lora.get("lora_alpha"), "dropout": lora.get("lora_dropout"),
             "DoRA": lora.get("use_dora")}
    return lines + _pairs_table(shown) + ["", "The adapter is merged into the weights: no PEFT needed to run it."]


def _adapter_config(folder: Path) -> dict[str, Any]:
    path = folder / ADAPTER_DIR / "adapter_config.json"
    return read_record(path) if path.is_file() else {}


def _data_section(folder: Path, record: dict[str, Any]) -> list[str]:
    from prunetune.data import read_splits

    lines = ["## Data", ""]
    data_args = (record.get("args") or {}).get("data") or {}
    dataset, counts = data_args.get("dataset"), None
    data_dir = finetune_data_dir(folder)
    if data_dir is not None:
        stored = read_splits(data_dir)
        counts = stored.counts()
        dataset = (stored.report.get("origin") or stored.report).get("dataset", dataset)
    lines.append(f"Dataset: `{dataset}`." if dataset else "Dataset: not recorded.")
    if counts:
        lines += ["", "| split | examples |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in counts.items()]
    return lines


def _is_evaluation(metrics: dict[str, Any]) -> bool:
    """True for an :func:`~prunetune.evaluation.evaluate_model` result (model + baselines)."""
    from prunetune.evaluation import BASELINES

    return isinstance(metrics.get("model"), dict) and all(isinstance(metrics.get(b), dict) for b in BASELINES)


def _scores_table(metrics: dict[str, Any]) -> list[str]:
    """An evaluation result or a flat score dict as a Markdown table."""
    from prunetune.evaluation import results_table
    from prunetune.metrics import format_metrics_table

    if _is_evaluation(metrics):
        return results_table(metrics).splitlines()
    return format_metrics_table({"model": metrics}).splitlines()


def _metrics_section(title: str, metrics: dict[str, Any]) -> list[str]:
    """Scalar figures as a two-column table, then each score table found in ``metrics``."""
    lines = [f"## {title}", ""]
    if _is_evaluation(metrics):
        settings = ", ".join(f"{k} {v}" for k, v in (metrics.get("generation") or {}).items())
        lines += [f"{metrics.get('num_examples')} {metrics.get('split', '')} examples; decoding: {settings}.", ""]
        return lines + _scores_table(metrics) + [""]
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
    if scalars:
        lines += _pairs_table(scalars) + [""]
    for key, value in metrics.items():
        if not isinstance(value, dict) or not value:
            continue
        if _is_evaluation(value) or "rouge1" in value:
            lines += [f"**{key}**", ""] + _scores_table(value) + [""]
        elif not any(isinstance(v, (dict, list)) for v in value.values()):
            lines += [f"**{key}**", ""] + _pairs_table(value) + [""]
    return lines


def _usage_section(model: Any, tokenizer: Any, prompt: PromptArgs, name: str) -> list[str]:
    """A loading example in plain transformers that rebuilds the training prompt."""
    enc_dec = bool(getattr(model.config, "is_encoder_decoder", False))
    auto = "AutoModelForSeq2SeqLM" if enc_dec else "AutoModelForCausalLM"
    instruction = prompt.instruction
    if enc_dec:
        build = f"text = {instruction!r} + '\\n' + source" if instruction else "text = source"
        build += "\ninputs = tokenizer(text, return_tensors='pt')"
    else:
        build = f"user = {instruction!r} + '\\n\\n' + source\n" if instruction else "user = source\n"
        if getattr(tokenizer, "chat_template", None):
            build += ("messages = [{'role': 'user', 'content': user}]\n"
                      "text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)\n"
                      "inputs = tokenizer(text, return_tensors='pt', add_special_tokens=False)")
        else:
            head, tail = PLAIN_TEMPLATE.split("{source}")
            build += f"text = {head!r} + user + {tail!r}\ninputs = tokenizer(text, return_tensors='pt')"
    new_tokens = "out[0]" if enc_dec else "out[0, inputs['input_ids'].shape[1]:]"
    code = (f"from transformers import {auto}, AutoTokenizer\n\n"
            f"model = {auto}.from_pretrained({name!r})\n"
            f"tokenizer = AutoTokenizer.from_pretrained({name!r})\n"
            "source = '...'  # the input text\n"
            f"{build}\n"
            "out = model.generate(**inputs, num_beams=6, max_new_tokens=128, no_repeat_ngram_size=3)\n"
            f"print(tokenizer.decode({new_tokens}, skip_special_tokens=True))")
    return ["## How to use", "",
            "A standard checkpoint: plain `transformers` loads it (no prunetune, no peft). Build the input "
            f"as in training (sources were truncated to {prompt.max_source_tokens} tokens); the decoding "
            "settings below are the LoraLPrun test setting (arXiv 2305.08285).", "",
            "```python", code, "```", "",
            f"Or with prunetune, which rebuilds the training prompt itself: `prunetune generate --model {name} "
            "--prompt '...'`."]


def model_card(model: Any, tokenizer: Any, info: InferenceInfo, name: str,
               training_metrics: dict[str, Any] | None = None,
               eval_metrics: dict[str, Any] | None = None) -> str:
    """The ``README.md`` of a merged model, built from the run's records.

    Args:
        model: the merged model.
        tokenizer: its tokenizer.
        info: what was merged (finetune record, pruning record, prompt).
        name: the folder name, used in the loading example.
        training_metrics: the finetune folder's ``metrics.json``.
        eval_metrics: a ``prunetune evaluate`` ``metrics.json``.

    Returns:
        Markdown with YAML front matter (``base_model``, ``library_name``, ``tags``).
    """
    source = info.source_model or info.base_model
    front = yaml.safe_dump({"base_model": source, "library_name": "transformers", "tags": CARD_TAGS},
                           sort_keys=False)
    pruned = ""
    if info.pruning:
        kept = sum(len(v) for v in info.pruning.get("kept_layers", {}).values())
        total = sum(info.pruning.get("original_num_layers", {}).values())
        pruned = f" pruned to {kept} of {total} Transformer layers,"
    lines = ["---", front.rstrip(), "---", "", f"# {name}", "",
             f"`{source}`{pruned} LoRA-tuned with prunetune, with the adapter merged into the weights.", "",
             "## Base model", "",
             *_pairs_table({"source model": source, "architecture": model.config.model_type,
                            "type": "encoder-decoder" if model.config.is_encoder_decoder else "decoder-only",
                            "parameters": f"{model.num_parameters():,}",
                            "training instruction": info.prompt.instruction}), "",
             *_layers_section(model, info.pruning), "",
             *_lora_section(info.record.get("lora"), _adapter_config(Path(info.path))), "",
             *_data_section(Path(info.path), info.record), ""]
    if training_metrics:
        lines += _metrics_section("Training", training_metrics)
    if eval_metrics:
        lines += _metrics_section("Evaluation", eval_metrics)
    lines += _usage_section(model, tokenizer, info.prompt, name)
    return "\n".join(lines) + "\n"
