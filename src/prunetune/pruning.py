"""Structured layer pruning that yields an ordinary Hugging Face checkpoint.

:func:`prune_layers` removes whole Transformer blocks in place and leaves a model that
is indistinguishable from a freshly built shallower model holding the kept blocks'
weights: the config's depth fields and per-layer lists are updated, every ``layer_idx``
is renumbered (so the KV cache, which is indexed by it, works in ``generate``), and
modules owned by a single block (T5's relative position bias in block 0) move to the
new first block. The saved folder loads with plain ``AutoModel*.from_pretrained``.

The original indices of the kept blocks are recorded in ``config.prunetune`` (so the
record travels with every later ``save_pretrained``) and in ``pruning.json``.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn

from prunetune.architectures import (
    Family,
    base_model,
    get_family,
    get_layers,
    get_submodule,
    stack_depths,
    stack_module,
)
from prunetune.config import arg
from prunetune.errors import UsageError
from prunetune.models import ModelArgs, load_model
from prunetune.outputs import atomic_output_dir, check_output_dir
from prunetune.selection import PATTERNS, Strategy, select_layers

logger = logging.getLogger(__name__)

RECORD_FILE = "pruning.json"


@dataclass
class PruneArgs:
    """Which layers to keep: explicit lists, or a pattern and a ratio."""

    keep_encoder: list[int] | None = arg(None, help="0-based encoder layers to keep, ascending, e.g. 0,1,2,4,6,8,10,11")
    keep_decoder: list[int] | None = arg(
        None, help="0-based decoder layers to keep (a decoder-only model's single stack)")
    strategy: Strategy = arg("none", help="selection pattern for stacks without an explicit list")
    ratio: float = arg(1 / 3, help="fraction of layers to drop per stack with --strategy, in [0, 1)")
    prune_stacks: Literal["all", "encoder", "decoder"] = arg(
        "all", help="stacks that --strategy applies to (encoder-decoder models)")

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.ratio) < 1.0:
            raise UsageError(f"--ratio must be in [0, 1), got {self.ratio}")
        for name in ("keep_encoder", "keep_decoder"):
            keep = getattr(self, name)
            if keep is not None:
                validate_keep(keep, None, name.replace("keep_", ""))

    @property
    def active(self) -> bool:
        return self.keep_encoder is not None or self.keep_decoder is not None or self.strategy != "none"


def validate_keep(keep: list[int], num_layers: int | None, stack: str) -> list[int]:
    """Check a keep-list: non-empty, integers, strictly ascending, within range.

    Raises:
        UsageError: naming the stack and the offending value.
    """
    if not keep:
        raise UsageError(f"the {stack} keep list is empty; keep at least one layer")
    if any(isinstance(i, bool) or not isinstance(i, int) for i in keep):
        raise UsageError(f"the {stack} keep list must hold integers, got {keep}")
    if len(set(keep)) != len(keep):
        dup = next(i for i in keep if keep.count(i) > 1)
        raise UsageError(f"the {stack} keep list names layer {dup} twice")
    if list(keep) != sorted(keep):
        raise UsageError(f"the {stack} keep list must be in ascending order, got {','.join(map(str, keep))}")
    if keep[0] < 0:
        raise UsageError(f"{stack} layer index {keep[0]} is negative")
    if num_layers is not None and keep[-1] >= num_layers:
        raise UsageError(f"{stack} layer index {keep[-1]} is out of range: the {stack} has {num_layers} layers (0-{num_layers - 1})")
    return list(keep)


def plan_keep_lists(model_or_config: Any, args: PruneArgs) -> dict[str, list[int]]:
    """Per-stack keep-lists for ``args`` on this model (all layers for untouched stacks)."""
    config = getattr(model_or_config, "config", model_or_config)
    family = get_family(config)
    depths = stack_depths(config)
    explicit = {"encoder": args.keep_encoder, "decoder": args.keep_decoder}
    if args.keep_encoder is not None and not family.is_encoder_decoder:
        raise UsageError(f"{family.name} is decoder-only: use --keep-decoder for its single stack")
    plan = {}
    for name, depth in depths.items():
        if explicit[name] is not None:
            plan[name] = validate_keep(list(explicit[name]), depth, name)
        elif args.strategy != "none" and args.prune_stacks in ("all", name):
            plan[name] = select_layers(args.strategy, depth, args.ratio, name)
        else:
            plan[name] = list(range(depth))
    return plan


def pruning_record(model_or_config: Any) -> dict[str, Any] | None:
    """The ``config.prunetune`` record of a pruned model (or None if never pruned)."""
    config = getattr(model_or_config, "config", model_or_config)
    record = getattr(config, "prunetune", None)
    return dict(record) if isinstance(record, dict) else None


def _move_shared_module(layers: nn.ModuleList, keep: list[int], family: Family, stack_name: str) -> None:
    shared = family.stack(stack_name).shared_first_block
    if shared is None or keep[0] == 0:
        return
    src = get_submodule(layers[0], shared.owner)
    dst = get_submodule(layers[keep[0]], shared.owner)
    setattr(dst, shared.attribute, getattr(src, shared.attribute))
    setattr(dst, shared.flag, True)


def prune_layers(model: nn.Module, keep_encoder: list[int] | None = None,
                 keep_decoder: list[int] | None = None) -> nn.Module:
    """Keep only the listed blocks of each stack, in place.

    Args:
        model: a Hugging Face model of a supported family (see
            :data:`prunetune.architectures.FAMILIES`); a PEFT wrapper is unwrapped.
        keep_encoder: 0-based encoder blocks to keep (encoder-decoder models only).
        keep_decoder: 0-based decoder blocks to keep; for decoder-only models, the
            single stack. ``None`` keeps a stack whole.

    Returns:
        The same model object, now shallower.

    Raises:
        UsageError: for an unsupported family or an invalid keep-list.
    """
    family = get_family(model)
    config = base_model(model).config
    depths = stack_depths(config)
    requested = {"encoder": keep_encoder, "decoder": keep_decoder}
    if keep_encoder is not None and not family.is_encoder_decoder:
        raise UsageError(f"{family.name} is decoder-only: use keep_decoder for its single stack")
    record = pruning_record(config) or {
        "original_num_layers": dict(depths),
        "kept_layers": {name: list(range(d)) for name, d in depths.items()},
    }
    for stack in family.stacks:
        keep = requested[stack.name]
        if keep is None:
            continue
        keep = validate_keep(list(keep), depths[stack.name], stack.name)
        layers = get_layers(model, stack)
        _move_shared_module(layers, keep, family, stack.name)
        kept = nn.ModuleList([layers[i] for i in keep])
        for new_idx, block in enumerate(kept):
            # The KV cache and some attention variants index by layer_idx; a fresh model
            # of this depth numbers its blocks 0..n-1, so ours must too.
            for module in block.modules():
                if isinstance(getattr(module, "layer_idx", None), int):
                    module.layer_idx = new_idx
        parent_path, _, attr = stack.layers.rpartition(".")
        parent = get_submodule(base_model(model), parent_path) if parent_path else base_model(model)
        setattr(parent, attr, kept)
        for field in stack.depth_fields:
            setattr(config, field, len(keep))
        own_config = getattr(stack_module(model, stack), "config", None)
        if own_config is not None and own_config is not config:
            for field in stack.module_config_fields:
                setattr(own_config, field, len(keep))
        if not family.is_encoder_decoder:
            for field in family.per_layer_fields:
                values = getattr(config, field, None)
                if isinstance(values, (list, tuple)) and len(values) == depths[stack.name]:
                    setattr(config, field, [values[i] for i in keep])
        original = record["kept_layers"][stack.name]
        record["kept_layers"][stack.name] = [original[i] for i in keep]
    if family.is_encoder_decoder and getattr(config, "num_decoder_layers", 0) is None:
        config.num_decoder_layers = depths["decoder"]
    config.prunetune = record
    return model


def apply_pruning(model: nn.Module, args: PruneArgs) -> dict[str, list[int]] | None:
    """Prune ``model`` in place as ``args`` say; returns the plan, or None if nothing to do."""
    if not args.active:
        return None
    plan = plan_keep_lists(model, args)
    depths = stack_depths(model)
    prune_layers(model, keep_encoder=plan.get("encoder") if "encoder" in depths else None,
                 keep_decoder=plan.get("decoder"))
    return plan


def save_pruned(model: nn.Module, tokenizer: Any, folder: Path, source: str) -> None:
    """Write a standard checkpoint (safetensors + config + tokenizer) and ``pruning.json``."""
    record = dict(pruning_record(model) or {})
    record["source_model"] = source
    record["family"] = get_family(model).name
    model.config.prunetune = record
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    (folder / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")


@dataclass
class PruneOutputArgs:
    """Where to write the pruned model."""

    output: Path | None = arg(None, help="destination folder (written atomically)")
    overwrite: bool = arg(False, help="replace a non-empty destination folder")
    dry_run: bool = arg(False, help="print the plan and write nothing")


def prune_command(model: ModelArgs, prune: PruneArgs, output: PruneOutputArgs) -> int:
    """``prunetune prune``: load, prune, print the plan table, save a standard checkpoint."""
    from prunetune.summary import plan_table

    if output.output is None and not output.dry_run:
        raise UsageError("--output is required (or use --dry-run)")
    if not prune.active:
        raise UsageError(f"nothing to prune: give --keep-encoder/--keep-decoder or --strategy ({', '.join(PATTERNS)})")
    if output.output is not None:
        check_output_dir(output.output, output.overwrite)
    loaded, tokenizer, path = load_model(model.model, model.dtype)
    before = loaded.num_parameters()
    from prunetune.summary import parameter_breakdown

    parts_before = parameter_breakdown(loaded)
    plan = apply_pruning(loaded, prune)
    print(plan_table(parts_before, parameter_breakdown(loaded), plan, stack_depths_before=parts_before), file=sys.stdout)
    logger.info("parameters: %s -> %s (%.1f%% kept)", f"{before:,}", f"{loaded.num_parameters():,}",
                100 * loaded.num_parameters() / before)
    if output.dry_run:
        return 0
    with atomic_output_dir(output.output, output.overwrite) as tmp:
        save_pruned(loaded, tokenizer, tmp, source=model.model)
    logger.info("saved pruned model to %s", output.output)
    return 0
