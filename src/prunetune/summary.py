"""Describe a model: family, stacks, layer counts and parameters per part.

Parameters are counted once even when tied (T5's shared embedding, tied LM heads) and
attributed to the first part that reaches them: each stack's blocks, the embeddings
(token and position), the LM head when it is not tied, and "other" (final norms ...).
Used by ``prunetune info`` and by the plan table that ``prunetune prune`` prints.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from torch import nn

from prunetune.architectures import get_family, get_layers, stack_depths
from prunetune.config import arg
from prunetune.models import load_model


def parameter_breakdown(model: nn.Module) -> dict[str, Any]:
    """Parameter counts per part and stack depths.

    Returns:
        ``{"family", "model_type", "stacks": {name: {"layers", "params"}}, "embeddings",
        "head", "other", "total"}``.
    """
    family = get_family(model)
    stack_params: dict[int, str] = {}
    for stack in family.stacks:
        for p in get_layers(model, stack).parameters():
            stack_params.setdefault(id(p), stack.name)
    embed_ids = set()
    input_embeddings = model.get_input_embeddings()
    if input_embeddings is not None:
        embed_ids.update(id(p) for p in input_embeddings.parameters())
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    counts = {s.name: 0 for s in family.stacks}
    counts.update(embeddings=0, head=0, other=0)
    for name, p in model.named_parameters():  # named_parameters already de-duplicates ties
        if id(p) in stack_params:
            counts[stack_params[id(p)]] += p.numel()
        elif id(p) in embed_ids or "embed" in name.split(".")[-2:][0] or name.endswith(("wpe.weight", "wte.weight")):
            counts["embeddings"] += p.numel()
        elif id(p) in head_ids:
            counts["head"] += p.numel()
        else:
            counts["other"] += p.numel()
    depths = stack_depths(model)
    return {
        "family": family.name,
        "model_type": model.config.model_type,
        "stacks": {s.name: {"layers": depths[s.name], "params": counts[s.name]} for s in family.stacks},
        "embeddings": counts["embeddings"],
        "head": counts["head"],
        "other": counts["other"],
        "total": sum(p.numel() for p in model.parameters()),
        "tied_head": bool(head is not None and head_ids <= embed_ids),
    }


def _fmt(n: int) -> str:
    return f"{n / 1e6:,.2f}M" if n >= 1e5 else f"{n:,}"


def plan_table(before: dict[str, Any], after: dict[str, Any], plan: dict[str, list[int]] | None,
               stack_depths_before: dict[str, Any] | None = None) -> str:
    """A Markdown table: stack, layers before/after, layers kept, parameters before/after."""
    rows = ["| stack | layers | kept | params before | params after |", "|---|---|---|---|---|"]
    for name, info in before["stacks"].items():
        kept = (plan or {}).get(name, list(range(info["layers"])))
        n_after = after["stacks"][name]["layers"]
        rows.append(f"| {name} | {info['layers']} -> {n_after} | {','.join(map(str, kept))} | "
                    f"{_fmt(info['params'])} | {_fmt(after['stacks'][name]['params'])} |")
    for part in ("embeddings", "head", "other"):
        if before[part]:
            rows.append(f"| {part} | | | {_fmt(before[part])} | {_fmt(after[part])} |")
    pct = 100 * after["total"] / before["total"] if before["total"] else 0.0
    rows.append(f"| **total** | | | {_fmt(before['total'])} | {_fmt(after['total'])} ({pct:.1f}%) |")
    return "\n".join(rows)


def info_table(info: dict[str, Any]) -> str:
    lines = [f"family: {info['family']} (model_type {info['model_type']})"]
    if info.get("pruning"):
        kept = info["pruning"].get("kept_layers", {})
        lines.append("pruned: kept " + "; ".join(f"{k} {','.join(map(str, v))}" for k, v in kept.items()))
    lines += ["", "| part | layers | parameters | share |", "|---|---|---|---|"]
    total = info["total"] or 1
    for name, s in info["stacks"].items():
        lines.append(f"| {name} | {s['layers']} | {s['params']:,} | {100 * s['params'] / total:.1f}% |")
    for part in ("embeddings", "head", "other"):
        note = " (tied to embeddings)" if part == "head" and info.get("tied_head") else ""
        lines.append(f"| {part}{note} | | {info[part]:,} | {100 * info[part] / total:.1f}% |")
    lines.append(f"| **total** | | {info['total']:,} | 100% |")
    return "\n".join(lines)


@dataclass
class InfoArgs:
    """The model to describe."""

    model: str = arg("smollm2-135m", help="local folder, hub id or built-in name", positional=True)
    json: bool = arg(False, help="print JSON instead of a table")


def info_command(info: InfoArgs) -> int:
    """``prunetune info MODEL``: family, stacks, layer counts, parameters per part."""
    from prunetune.pruning import pruning_record

    model, _, _ = load_model(info.model, with_tokenizer=False)
    get_family(model)
    data = parameter_breakdown(model)
    data["pruning"] = pruning_record(model)
    print(json.dumps(data, indent=2) if info.json else info_table(data), file=sys.stdout)
    return 0
