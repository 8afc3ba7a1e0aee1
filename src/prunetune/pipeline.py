"""``prunetune run``: prune -> LoRA-tune -> evaluate -> merge, against the unpruned LoRA baseline.

One recipe drives two *arms* trained on the same data with the same budget:

* ``baseline``: plain LoRA on the unpruned model (what a user does without prunetune);
* ``pruned``: the same LoRA on the model pruned as the recipe's ``prune`` group says.

Each arm is trained by ``prunetune finetune`` and tested by ``prunetune evaluate`` in a
child process of its own, so peak memory and timings are measured cleanly per arm and
one arm's allocator state cannot leak into the other's figures. The untuned models are
scored too (so tuning is shown to matter), next to the two trivial references every
evaluation carries (most frequent training target; lead-1 of the source). The pruned
arm is merged into a standalone model. Results land in ``results.json`` (data) and
``report.md`` (a table made from it), and the whole run folder is written atomically.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from prunetune.config import arg, to_recipe
from prunetune.data import DataArgs, load_splits, write_splits
from prunetune.errors import UsageError
from prunetune.generation import GenerationArgs
from prunetune.models import ModelArgs
from prunetune.outputs import atomic_output_dir, check_output_dir
from prunetune.pruning import PruneArgs
from prunetune.prompting import PromptArgs
from prunetune.training import LoraArgs, TrainArgs

logger = logging.getLogger(__name__)

DEFAULT_RECIPE = "default"


@dataclass
class RunArgs:
    """What the run compares, how it tests, and where it writes."""

    recipe: str | None = arg(None, help="recipe YAML file or shipped recipe name (default: the built-in default)",
                             positional=True)
    run_dir: Path | None = arg(None, help="run folder (default: runs/<recipe>-<timestamp>)")
    overwrite_run: bool = arg(False, help="replace a non-empty run folder")
    baseline: bool = arg(True, help="also train the unpruned LoRA baseline with the same budget")
    eval_untuned: bool = arg(True, help="also score the untuned (original and pruned) models")
    merge: bool = arg(True, help="merge the pruned arm's LoRA into a standalone model (merged/)")
    test_num_beams: int = arg(6, help="beam width on the test split (the paper: 6)")
    test_max_new_tokens: int = arg(128, help="max new tokens on the test split (the paper: 128)")
    test_no_repeat_ngram_size: int = arg(3, help="no-repeat n-gram size on the test split (the paper: 3)")
    test_max_examples: int | None = arg(None, help="cap on test examples (default: the whole test split)")
    embedding: bool = arg(False, help="add MiniLM embedding similarity to the test metrics")


def shipped_recipes() -> dict[str, Path]:
    """Recipes that ship inside the package, by name."""
    folder = resources.files("prunetune") / "recipes"
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def resolve_recipe(name: str | None) -> Path:
    """A recipe path from a file path or a shipped recipe name."""
    name = name or DEFAULT_RECIPE
    if Path(name).is_file():
        return Path(name)
    recipes = shipped_recipes()
    if name in recipes:
        return recipes[name]
    raise UsageError(f"recipe {name} not found (not a file; shipped recipes: {', '.join(sorted(recipes))})")


def _child(args: list[str]) -> None:
    """Run a prunetune verb in a fresh process; its progress streams to our stderr."""
    cmd = [sys.executable, "-m", "prunetune", *args]
    logger.info("$ prunetune %s", " ".join(args))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # The child's results (its stdout) are progress for us: send them to our stderr, as a
    # raw descriptor since sys.stderr may be a wrapper without one (pytest, notebooks).
    try:
        err_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        err_fd = 2
    result = subprocess.run(cmd, stdout=err_fd, env=env)
    if result.returncode == 2:
        raise UsageError(f"'prunetune {args[0]}' rejected its input (see the message above)")
    if result.returncode != 0:
        raise RuntimeError(f"'prunetune {args[0]}' failed with exit code {result.returncode}")


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _evaluate(model: str, data_dir: Path, out: Path, run: RunArgs, prompt: PromptArgs) -> dict[str, Any]:
    flags = ["evaluate", "--model", model, "--dataset", str(data_dir), "--data-format", "splits",
             "--output", str(out), "--num-beams", str(run.test_num_beams),
             "--max-new-tokens", str(run.test_max_new_tokens),
             "--no-repeat-ngram-size", str(run.test_no_repeat_ngram_size)]
    if run.test_max_examples:
        flags += ["--max-eval-examples", str(run.test_max_examples)]
    if run.embedding:
        flags.append("--embedding")
    if prompt.instruction:
        flags += ["--instruction", prompt.instruction]
    _child(flags)
    return _read(out / "metrics.json")


def _arm_summary(ft: dict[str, Any], ev: dict[str, Any]) -> dict[str, Any]:
    keys = ("trainable_params", "total_params", "original_total_params", "trainable_percent_of_original",
            "num_layers", "layers_kept", "peak_memory_bytes", "peak_memory_kind", "train_seconds",
            "train_steps", "train_samples_per_second", "train_tokens_per_second", "train_loss", "best_step")
    out = {k: ft.get(k) for k in keys}
    out["test"] = ev["model"]
    out["eval_seconds"] = ev.get("eval_seconds")
    return out


def quality_kept(pruned: dict[str, Any], baseline: dict[str, Any],
                 keys: tuple[str, ...] = ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu")) -> dict[str, float]:
    """Pruned / baseline for each metric, in percent (the paper's "quality kept")."""
    return {k: 100.0 * pruned[k] / baseline[k] for k in keys if baseline.get(k)}


def _mib(n: int | None) -> str:
    return f"{n / 2**20:,.0f} MiB" if n else "-"


def render_report(results: dict[str, Any]) -> str:
    """The Markdown side-by-side report, generated from ``results.json``'s content."""
    lines = [f"# prunetune run: {results['recipe']}", "",
             f"Model `{results['model']}`, data `{results['data']['source']}` "
             f"({results['data']['sizes']['train']} train / {results['data']['sizes']['validation']} validation / "
             f"{results['data']['sizes']['test']} test). Test decoding: beam {results['test_generation']['num_beams']}, "
             f"max {results['test_generation']['max_new_tokens']} new tokens, no-repeat "
             f"{results['test_generation']['no_repeat_ngram_size']}.", "",
             "| system | ROUGE-1 | ROUGE-2 | ROUGE-L | BLEU | trainable % | layers | peak memory | train s "
             "| tokens/s | ROUGE-L kept |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    base_rl = (results["arms"].get("baseline") or {}).get("test", {}).get("rougeL")
    rows = [(f"LoRA {name}", arm) for name, arm in results["arms"].items()]
    rows += [(f"untuned {name}", {"test": m}) for name, m in results.get("untuned", {}).items()]
    rows += [(name.replace("_", " "), {"test": m}) for name, m in results["trivial"].items()]
    for label, arm in rows:
        t = arm["test"]
        layers = "+".join(str(v) for v in (arm.get("num_layers") or {}).values()) or "-"
        pct = arm.get("trainable_percent_of_original")
        kept = f"{100 * t['rougeL'] / base_rl:.1f}%" if base_rl else "-"
        tps = arm.get("train_tokens_per_second")
        secs = arm.get("train_seconds")
        lines.append(
            f"| {label} | {t['rouge1']:.2f} | {t['rouge2']:.2f} | {t['rougeL']:.2f} | {t['bleu']:.2f} | "
            f"{f'{pct:.2f}' if pct is not None else '-'} | {layers} | {_mib(arm.get('peak_memory_bytes'))} | "
            f"{f'{secs:.0f}' if secs else '-'} | {f'{tps:,.0f}' if tps else '-'} | {kept} |")
    if results.get("quality_kept"):
        q = results["quality_kept"]
        lines += ["", "Quality kept (pruned / baseline): " + ", ".join(f"{k} {v:.1f}%" for k, v in q.items()) + "."]
    margins = results.get("rougeL_over_most_frequent")
    if margins:
        lines += ["", "ROUGE-L above the most frequent training target: "
                  + ", ".join(f"LoRA {name} {value:+.2f}" for name, value in margins.items())
                  + " (at or below zero, a model has learned little beyond the commonest answer)."]
    subsets = results.get("by_subset")
    if subsets:
        lines += ["", "## By subset (ROUGE-L)", "", "| system | " + " | ".join(subsets["labels"]) + " |",
                  "|---|" + "---|" * len(subsets["labels"])]
        for label, values in subsets["rows"].items():
            lines.append(f"| {label} | " + " | ".join(f"{values.get(s, float('nan')):.2f}" for s in subsets["labels"])
                         + " |")
        kept_by_subset = subsets.get("rougeL_kept")
        if kept_by_subset:
            lines.append("| ROUGE-L kept (pruned / baseline) | "
                         + " | ".join(f"{kept_by_subset[s]:.1f}%" if s in kept_by_subset else "-"
                                      for s in subsets["labels"]) + " |")
    mem = {a: arm.get("peak_memory_kind") for a, arm in results["arms"].items()}
    lines += ["", f"Peak memory is {next(iter(mem.values()), 'n/a')} of the training phase; "
              "train time and tokens/s (non-padding tokens) are measured in each arm's own process.",
              f"Total wall time: {results['wall_seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def _subset_rows(evals: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    labels: set[str] = set()
    rows: dict[str, dict[str, float]] = {}
    # Systems first, then the trivial references (identical in every evaluation: same examples).
    sources = [(name, ev.get("model")) for name, ev in evals.items()]
    first = next(iter(evals.values()), {})
    sources += [(key.replace("_", " "), first.get(key)) for key in ("most_frequent_target", "lead_1")]
    for label, metrics in sources:
        by = (metrics or {}).get("by_subset") or {}
        if by:
            rows[label] = {k: v["rougeL"] for k, v in by.items()}
            labels.update(by)
    return {"labels": sorted(labels), "rows": rows} if rows else None


def run_command(run: RunArgs, model: ModelArgs, prune: PruneArgs, data: DataArgs, prompt: PromptArgs,
                lora: LoraArgs, train: TrainArgs, generation: GenerationArgs) -> int:
    """``prunetune run [RECIPE]``: both arms, their tests, the merge, and the side-by-side report."""
    started = time.time()
    recipe_name = Path(run.recipe).stem if run.recipe else DEFAULT_RECIPE
    run_dir = run.run_dir or Path("runs") / f"{recipe_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_output_dir(run_dir, run.overwrite_run)
    if not prune.active:
        raise UsageError("the recipe prunes nothing: set prune.strategy or prune.keep_decoder/keep_encoder")
    splits = load_splits(data)  # validate the data before any training starts
    groups = {"model": model, "prune": prune, "data": data, "prompt": prompt, "lora": lora, "train": train,
              "generation": generation}
    with atomic_output_dir(run_dir, run.overwrite_run) as tmp:
        data_dir = tmp / "data"
        write_splits(splits, data_dir)
        (tmp / "recipe.yaml").write_text(yaml.safe_dump({**to_recipe(groups), "run": to_recipe({"r": run})["r"]},
                                                         sort_keys=False))
        arms = {"pruned": prune}
        if run.baseline:
            arms = {"baseline": PruneArgs(), **arms}
        finetuned, evals = {}, {}
        for name, arm_prune in arms.items():
            arm_groups = dict(groups, prune=arm_prune,
                              data=DataArgs(dataset=str(data_dir), data_format="splits"))
            recipe_path = tmp / f"{name}.yaml"
            recipe_path.write_text(yaml.safe_dump(to_recipe(arm_groups), sort_keys=False))
            _child(["finetune", "--config", str(recipe_path), "--output", str(tmp / name)])
            finetuned[name] = _read(tmp / name / "metrics.json")
            evals[name] = _evaluate(str(tmp / name), data_dir, tmp / f"{name}-test", run, prompt)
        untuned = {}
        if run.eval_untuned:
            untuned["original"] = _evaluate(model.model, data_dir, tmp / "untuned-original-test", run, prompt)
            untuned["pruned"] = _evaluate(str(tmp / "pruned" / "base"), data_dir, tmp / "untuned-pruned-test",
                                          run, prompt)
        if run.merge:
            _child(["merge", "--model", str(tmp / "pruned"), "--output", str(tmp / "merged"),
                    "--eval-metrics", str(tmp / "pruned-test" / "metrics.json")])
        reference = evals["pruned"]
        results: dict[str, Any] = {
            "recipe": recipe_name,
            "model": model.model,
            "data": {"source": data.dataset, "sizes": {k: len(getattr(splits, k)) for k in
                                                       ("train", "validation", "test")}},
            "test_generation": {"num_beams": run.test_num_beams, "max_new_tokens": run.test_max_new_tokens,
                                "no_repeat_ngram_size": run.test_no_repeat_ngram_size},
            "arms": {name: _arm_summary(finetuned[name], evals[name]) for name in arms},
            "untuned": {name: ev["model"] for name, ev in untuned.items()},
            "trivial": {k: reference[k] for k in ("most_frequent_target", "lead_1")},
        }
        if "baseline" in results["arms"]:
            results["quality_kept"] = quality_kept(results["arms"]["pruned"]["test"],
                                                   results["arms"]["baseline"]["test"])
        results["by_subset"] = _subset_rows({**{f"LoRA {k}": v for k, v in evals.items()},
                                                      **{f"untuned {k}": v for k, v in untuned.items()}})
        subsets = results["by_subset"]
        if subsets and "baseline" in results["arms"]:
            subsets["rougeL_kept"] = quality_kept(subsets["rows"]["LoRA pruned"], subsets["rows"]["LoRA baseline"],
                                                  keys=tuple(subsets["labels"]))
        # A tuned model is only worth its ratio if it beats answering the commonest target.
        frequent = results["trivial"]["most_frequent_target"]["rougeL"]
        results["rougeL_over_most_frequent"] = {name: arm["test"]["rougeL"] - frequent
                                                for name, arm in results["arms"].items()}
        results["wall_seconds"] = time.time() - started
        (tmp / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        report = render_report(results)
        (tmp / "report.md").write_text(report)
    print(report, file=sys.stdout)
    logger.info("run folder: %s", run_dir)
    return 0


def _recipe_for_cli(cli_args: dict[str, Any]) -> Path:
    return resolve_recipe(cli_args.get("run.recipe"))


run_command.resolve_recipe = _recipe_for_cli  # type: ignore[attr-defined]
