"""Turn the runs of ``prunetune bench`` into one JSON report, and that report into Markdown.

Per configuration, the figures are medians over the interleaved repeats of each run's
median step time (tokens/s = tokens per step / that median) and of each run's peak
memory; ``step_time_spread`` / ``latency_spread`` = (max - min) / median over the
repeats shows how much a figure moved from run to run. Comparisons against ``full``
(full fine-tuning) and ``lora`` (unpruned LoRA):

* ``speedup`` = tokens/s of the configuration / tokens/s of the baseline, as the median
  of the per-repeat ratios (:func:`paired_median`);
* ``flop_ideal_speedup`` = FLOPs per token of the baseline / of the configuration
  (:func:`prunetune.flops.training_step_flops`: what the speed-up would be if time
  followed FLOPs);
* ``fraction_of_ideal`` = ``speedup / flop_ideal_speedup``;
* ``memory_ratio`` = peak memory of the configuration / of the baseline (paired too).

Generation compares the unpruned model with the pruned one after LoRA is merged, per
batch size: ``speedup`` = latency ratio (paired), ``flop_ideal_speedup`` = generation
FLOP ratio.
:data:`TARGETS` are the acceptance targets of the benchmark issue (after arXiv
2305.08285's claims: >30% of layers pruned, 2x faster training, half the memory).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Literal

SCHEMA = "prunetune.bench/1"
BASELINES = ("full", "lora")


@dataclass(frozen=True)
class Target:
    """One acceptance target, checked on the reference-ratio configuration."""

    key: str
    description: str
    comparison: Literal[">=", "<="]
    threshold: float

    def check(self, value: float) -> bool:
        return value >= self.threshold if self.comparison == ">=" else value <= self.threshold


TARGETS = (
    Target("train_speedup_vs_full", "training tokens/s of pruned LoRA / full fine-tuning", ">=", 2.5),
    Target("train_memory_vs_full", "peak training memory of pruned LoRA / full fine-tuning", "<=", 0.40),
    Target("train_fraction_of_ideal_vs_lora",
           "training speed-up of pruned LoRA over unpruned LoRA / its FLOP-ideal", ">=", 0.95),
    Target("generation_fraction_of_ideal",
           "generation speed-up of the pruned model (LoRA merged) over the unpruned one / its FLOP-ideal",
           ">=", 0.95),
)


def _median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values: list[float]) -> float:
    """Run-to-run spread: ``(max - min) / median`` (0 for a single run)."""
    return (max(values) - min(values)) / statistics.median(values)


def _train_entry(runs: list[dict[str, Any]]) -> dict[str, Any]:
    first = runs[0]
    step_time = _median([r["step_time_s"] for r in runs])
    memory = first["memory"]
    entry = {
        "method": first["method"],
        "pruning_ratio": first["pruning_ratio"],
        "layers": first["layers"],
        "kept_layers": first["kept_layers"],
        "trainable_params": first["trainable_params"],
        "total_params": first["total_params"],
        "trainable_percent": 100.0 * first["trainable_params"] / first["total_params"],
        "tokens_per_step": first["tokens_per_step"],
        "step_time_s": step_time,
        "step_time_spread": spread([r["step_time_s"] for r in runs]),
        "tokens_per_s": first["tokens_per_step"] / step_time,
        "peak_memory_bytes": _median([r["memory"]["peak_memory_bytes"] for r in runs]),
        "peak_memory_kind": memory["peak_memory_kind"],
        "peak_memory_scope": memory["peak_memory_scope"],
        "start_memory_bytes": _median([r["memory"].get("start_bytes") for r in runs]),
        "cuda_max_reserved_bytes": _median([r["memory"].get("cuda_max_reserved_bytes") for r in runs]),
        "forward_flops_per_token": first["flops"]["forward_per_token"],
        "flops_per_token": first["flops"]["total_per_token"],
        "flops": first["flops"],
        "contended_runs": sum(bool(r["contended"]) for r in runs),
        "runs": [{key: r[key] for key in ("step_time_s", "step_times_s", "step_stalls", "clean_steps", "contended",
                                          "warmup_step_times_s", "loss_first", "loss_last")}
                 | {"tokens_per_s_run": r["tokens_per_s"], "peak_memory_bytes": r["memory"]["peak_memory_bytes"]}
                 for r in runs],
    }
    return entry


def paired_median(numerators: list[float], denominators: list[float]) -> float:
    """Median over repeats of ``numerator[r] / denominator[r]``.

    Configurations of one repeat run back to back, so a slow drift of the machine affects
    both sides of a per-repeat ratio alike and cancels; the ratio of two medians taken
    from different repeats would not.
    """
    return statistics.median(n / d for n, d in zip(numerators, denominators))


def compare(entry: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float]:
    """Speed-up, FLOP-ideal speed-up, their ratio and the memory ratio of ``entry`` over ``baseline``.

    ``speedup`` and ``memory_ratio`` are paired medians over the repeats (see
    :func:`paired_median`), so they can differ slightly from the quotient of the two
    configurations' median tokens/s.
    """
    speedup = paired_median([baseline["tokens_per_step"] * r["tokens_per_s_run"] for r in entry["runs"]],
                            [entry["tokens_per_step"] * r["tokens_per_s_run"] for r in baseline["runs"]])
    ideal = baseline["flops_per_token"] / entry["flops_per_token"]
    return {
        "speedup": speedup,
        "flop_ideal_speedup": ideal,
        "fraction_of_ideal": speedup / ideal,
        "memory_ratio": paired_median([r["peak_memory_bytes"] for r in entry["runs"]],
                                      [r["peak_memory_bytes"] for r in baseline["runs"]]),
        "trainable_params_ratio": entry["trainable_params"] / baseline["trainable_params"],
    }


def summarize_training(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """``{config: entry}`` with medians over repeats and ``vs_full``/``vs_lora`` comparisons."""
    entries = {name: _train_entry(rs) for name, rs in runs.items()}
    for name, entry in entries.items():
        for base in BASELINES:
            if base in entries and base != name:
                entry[f"vs_{base}"] = compare(entry, entries[base])
    return entries


def summarize_generation(runs: dict[str, list[dict[str, Any]]], baseline: str, candidate: str,
                         prompt_length: int, new_tokens: int) -> dict[str, Any]:
    """Per batch size: median latencies of both models, speed-up and FLOP-ideal speed-up."""
    models = {name: {key: rs[0][key] for key in ("layers", "kept_layers", "total_params")}
              | {"peak_memory_bytes": _median([r["memory"]["peak_memory_bytes"] for r in rs])}
              for name, rs in runs.items()}
    by_batch: dict[str, Any] = {}
    for batch in runs[baseline][0]["batch_sizes"]:
        row: dict[str, Any] = {}
        for name, rs in runs.items():
            cells = [r["batch_sizes"][batch] for r in rs]
            row[name] = {
                "latency_s": _median([c["latency_s"] for c in cells]),
                "prefill_s": _median([c["prefill_s"] for c in cells]),
                "decode_s_per_token": _median([c["decode_s_per_token"] for c in cells]),
                "tokens_per_s": int(batch) * new_tokens / _median([c["latency_s"] for c in cells]),
                "flops": cells[0]["flops"],
                "latencies_s": [c["latency_s"] for c in cells],
                "latency_spread": spread([c["latency_s"] for c in cells]),
                "contended_runs": sum(bool(c["contended"]) for c in cells),
            }
        speedup = paired_median(row[baseline]["latencies_s"], row[candidate]["latencies_s"])
        ideal = row[baseline]["flops"] / row[candidate]["flops"]
        row.update(speedup=speedup, flop_ideal_speedup=ideal, fraction_of_ideal=speedup / ideal)
        by_batch[batch] = row
    return {"prompt_length": prompt_length, "new_tokens": new_tokens, "baseline": baseline,
            "candidate": candidate, "models": models, "batch_sizes": by_batch}


def check_targets(training: dict[str, Any], generation: dict[str, Any] | None, reference: str) -> list[dict]:
    """Evaluate :data:`TARGETS` on the ``reference`` configuration (those that were measured)."""
    by_key = {t.key: t for t in TARGETS}
    values: list[tuple[Target, float, dict[str, Any]]] = []
    entry = training.get(reference, {})
    if "vs_full" in entry:
        values.append((by_key["train_speedup_vs_full"], entry["vs_full"]["speedup"], {"config": reference}))
        values.append((by_key["train_memory_vs_full"], entry["vs_full"]["memory_ratio"], {"config": reference}))
    if "vs_lora" in entry:
        values.append((by_key["train_fraction_of_ideal_vs_lora"], entry["vs_lora"]["fraction_of_ideal"],
                       {"config": reference}))
    for batch, row in (generation or {}).get("batch_sizes", {}).items():
        values.append((by_key["generation_fraction_of_ideal"], row["fraction_of_ideal"],
                       {"config": generation["candidate"], "batch_size": int(batch)}))
    return [{"target": t.key, **where, "description": t.description, "value": value,
             "comparison": t.comparison, "threshold": t.threshold, "met": t.check(value)}
            for t, value, where in values]


# ---------------------------------------------------------------------------------------
# Markdown


def _params(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def _bytes(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.2f} GiB"


def _seconds(x: float) -> str:
    return f"{x * 1e3:.0f} ms" if x < 1 else f"{x:.2f} s"


def _config_label(name: str, entry: dict[str, Any]) -> str:
    if entry["method"] == "full":
        return "full fine-tuning"
    if not entry["pruning_ratio"]:
        return "LoRA (unpruned)"
    return f"{name.replace('pruned-', 'pruned ')} + LoRA"


def render_markdown(report: dict[str, Any], heading: str = "## Efficiency") -> str:
    """A short Markdown section (setup line, training table, generation table, targets).

    Args:
        report: a ``prunetune bench`` JSON report.
        heading: the section heading line.
    """
    s, env, model = report["settings"], report["environment"], report["model"]
    device = env.get("device_name") or env["device"]
    lines = [heading, ""]
    lines.append(
        f"Measured with `prunetune bench` on {model['name']} ({model['family']}, "
        f"{', '.join(f'{k} {v}' for k, v in model['layers'].items())} layers) on {device} "
        f"({env['threads']} threads), {report['precision']}: batch {s['batch_size']} x {s['seq_length']} tokens of "
        f"synthetic data, {s['warmup_steps']} warm-up + {s['steps']} measured steps, medians of "
        f"{s['repeats']} interleaved repeats, each configuration in its own process"
        f"{_spread_note(report)}. "
        f"Speed-ups are medians of per-repeat ratios. Peak memory is {_memory_kind(report)}. "
        f"FLOP-ideal = ratio of per-token training FLOPs ({report['flop_convention']['summary']})."
    )
    lines += ["", "| configuration | trainable params | tokens/s | vs full FT (FLOP-ideal) | "
                  "vs LoRA (FLOP-ideal) | peak memory | memory vs full FT |",
              "|---|---|---|---|---|---|---|"]
    for name, e in report["training"].items():
        vs_full, vs_lora = e.get("vs_full"), e.get("vs_lora")
        memory_share = f"{100 * vs_full['memory_ratio']:.0f}%" if vs_full else "100%"
        lines.append(
            f"| {_config_label(name, e)} | {_params(e['trainable_params'])} ({e['trainable_percent']:.2f}%) "
            f"| {e['tokens_per_s']:.0f} "
            f"| {_ratio(vs_full)} | {_ratio(vs_lora)} | {_bytes(e['peak_memory_bytes'])} "
            f"| {memory_share} |"
        )
    generation = report.get("generation")
    if generation:
        base, cand = generation["baseline"], generation["candidate"]
        lines += ["", f"Greedy generation, {generation['prompt_length']}-token prompt + "
                      f"{generation['new_tokens']} new tokens: unpruned vs {cand.replace('-merged', '')} "
                      f"with LoRA merged.", "",
                  "| batch | unpruned latency | pruned latency | speed-up (FLOP-ideal) | share of ideal |",
                  "|---|---|---|---|---|"]
        for batch, row in generation["batch_sizes"].items():
            lines.append(f"| {batch} | {_seconds(row[base]['latency_s'])} | {_seconds(row[cand]['latency_s'])} "
                         f"| {row['speedup']:.2f}x ({row['flop_ideal_speedup']:.2f}x) "
                         f"| {100 * row['fraction_of_ideal']:.0f}% |")
    if report.get("targets"):
        lines += ["", "Targets:", ""]
        for t in report["targets"]:
            where = t["config"] + (f", batch {t['batch_size']}" if "batch_size" in t else "")
            lines.append(f"- {t['description']} ({where}): {t['value']:.3f} {t['comparison']} {t['threshold']:g}: "
                         f"**{'met' if t['met'] else 'not met'}**")
    return "\n".join(lines) + "\n"


def _spread_note(report: dict[str, Any]) -> str:
    if report["settings"]["repeats"] < 2:
        return ""
    worst = max(e["step_time_spread"] for e in report["training"].values())
    return f" (step times moved by up to {100 * worst:.0f}% between repeats)"


def _ratio(comparison: dict[str, float] | None) -> str:
    if not comparison:
        return "1.00x"
    return f"{comparison['speedup']:.2f}x ({comparison['flop_ideal_speedup']:.2f}x)"


def _memory_kind(report: dict[str, Any]) -> str:
    kinds = {e["peak_memory_kind"] for e in report["training"].values()}
    if kinds == {"cuda_max_allocated"}:
        return "CUDA max_memory_allocated"
    return "the peak RSS of the training loop (weights, libraries and activations)"
