"""Where each model family keeps its Transformer stacks: a declarative table.

Pruning needs to know, per family, (1) the path from the model's ``base_model`` to each
``nn.ModuleList`` of blocks, (2) which config fields hold each stack's depth, and (3)
anything owned by a single block that the stack needs regardless of which blocks are
kept (T5's relative position bias lives only in block 0 of each stack). Everything
else is generic: ``layer_idx`` attributes are renumbered wherever they appear inside a
kept block, and per-layer config lists (``layer_types`` ...) are sliced.

Adding a family is one :class:`Family` entry in :data:`FAMILIES`; most decoder-only
models share the LLaMA layout (``model.layers`` + ``num_hidden_layers``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from prunetune.errors import UsageError


@dataclass(frozen=True)
class SharedModule:
    """A sub-module that only one block of a stack owns but every block uses.

    Attributes:
        owner: path inside a block to the module that holds it (e.g. ``layer.0.SelfAttention``).
        attribute: the sub-module's attribute name on the owner (``relative_attention_bias``).
        flag: the owner's boolean attribute saying whether it has it.
    """

    owner: str
    attribute: str
    flag: str


@dataclass(frozen=True)
class Stack:
    """One stack of blocks.

    Attributes:
        name: ``encoder`` or ``decoder`` (decoder-only models have one stack, ``decoder``).
        layers: dotted path from ``model.base_model`` to the ``nn.ModuleList``.
        depth_fields: top-level config fields that hold this stack's depth.
        module_config_fields: fields of the stack module's own config copy (T5 deep-copies
            the config into each stack) that must follow the new depth.
        shared_first_block: a module owned by block 0 only, moved to the new first block.
    """

    name: str
    layers: str
    depth_fields: tuple[str, ...]
    module_config_fields: tuple[str, ...] = ()
    shared_first_block: SharedModule | None = None


@dataclass(frozen=True)
class Family:
    """A model family: its stacks and the per-layer config lists to slice."""

    name: str
    stacks: tuple[Stack, ...]
    per_layer_fields: tuple[str, ...] = ("layer_types",)
    ffn_modules: tuple[str, ...] = ()

    @property
    def is_encoder_decoder(self) -> bool:
        return any(s.name == "encoder" for s in self.stacks)

    def stack(self, name: str) -> Stack:
        for s in self.stacks:
            if s.name == name:
                return s
        raise UsageError(f"{self.name} models have no {name} stack (stacks: {', '.join(self.stack_names)})")

    @property
    def stack_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stacks)


def _decoder_only(name: str, layers: str = "layers", depth: str = "num_hidden_layers",
                  ffn: tuple[str, ...] = ("gate_proj", "up_proj", "down_proj")) -> Family:
    return Family(name, (Stack("decoder", layers, (depth,)),), ffn_modules=ffn)


_T5_BIAS = SharedModule("layer.0.SelfAttention", "relative_attention_bias", "has_relative_attention_bias")
# ``decoder_layers`` is not a T5 field, but transformers' generic ``get_text_config(decoder=True)``
# reads it (``decoder_layers`` -> ``num_hidden_layers``) when it sizes the KV cache; without it
# the cache gets the *encoder's* depth and ``generate`` fails whenever the decoder is deeper.
_T5 = Family(
    "t5",
    (
        Stack("encoder", "encoder.block", ("num_layers",), ("num_layers",), _T5_BIAS),
        Stack("decoder", "decoder.block", ("num_decoder_layers", "decoder_layers"), ("num_layers",), _T5_BIAS),
    ),
    ffn_modules=("wi", "wi_0", "wi_1", "wo"),
)
_BART = Family(
    "bart",
    (
        Stack("encoder", "encoder.layers", ("encoder_layers",)),
        Stack("decoder", "decoder.layers", ("decoder_layers",)),
    ),
    ffn_modules=("fc1", "fc2"),
)

#: ``config.model_type`` -> family layout. Families sharing a layout share an entry.
FAMILIES: dict[str, Family] = {
    "t5": _T5,
    "mt5": _T5,
    "umt5": _T5,
    "bart": _BART,
    "mbart": _BART,
    "pegasus": _BART,
    "marian": _BART,
    "blenderbot": _BART,
    "llama": _decoder_only("llama"),
    "mistral": _decoder_only("mistral"),
    "qwen2": _decoder_only("qwen2"),
    "qwen3": _decoder_only("qwen3"),
    "gemma": _decoder_only("gemma"),
    "gemma2": _decoder_only("gemma2"),
    "phi3": _decoder_only("phi3", ffn=("gate_up_proj", "down_proj")),
    "olmo": _decoder_only("olmo"),
    "granite": _decoder_only("granite"),
    "gpt2": _decoder_only("gpt2", layers="h", depth="n_layer", ffn=("mlp.c_fc", "mlp.c_proj")),
    "gpt_neox": _decoder_only("gpt_neox", ffn=("dense_h_to_4h", "dense_4h_to_h")),
}


def supported_model_types() -> list[str]:
    return sorted(FAMILIES)


def get_family(model_or_config: Any) -> Family:
    """The :class:`Family` of a model or config.

    Raises:
        UsageError: for a model type not in :data:`FAMILIES`, naming those that are.
    """
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        raise UsageError(
            f"unsupported architecture '{model_type}'; supported model types: {', '.join(supported_model_types())}"
        )
    return FAMILIES[model_type]


def get_submodule(root: nn.Module, path: str) -> nn.Module:
    module = root
    for part in path.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)
    return module


def base_model(model: nn.Module) -> nn.Module:
    """The model's backbone (``model.model``, ``model.transformer`` ...), or the model itself.

    Unwraps a PEFT model first, so paths work on LoRA-wrapped models too.
    """
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return getattr(model, "base_model", model)


def get_layers(model: nn.Module, stack: Stack) -> nn.ModuleList:
    """The ``nn.ModuleList`` holding ``stack``'s blocks."""
    layers = get_submodule(base_model(model), stack.layers)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"{stack.layers} is a {type(layers).__name__}, expected nn.ModuleList")
    return layers


def stack_module(model: nn.Module, stack: Stack) -> nn.Module:
    """The module that owns the ModuleList (``encoder``, ``decoder`` or the backbone)."""
    parent, _, _ = stack.layers.rpartition(".")
    root = base_model(model)
    return get_submodule(root, parent) if parent else root


def stack_depths(model_or_config: Any) -> dict[str, int]:
    """Depth of each stack as the config states it (``{"encoder": 12, "decoder": 12}``)."""
    config = getattr(model_or_config, "config", model_or_config)
    family = get_family(config)
    depths = {}
    for s in family.stacks:
        value = getattr(config, s.depth_fields[0], None)
        if value is None and s.name == "decoder" and family.is_encoder_decoder:
            value = getattr(config, family.stacks[0].depth_fields[0])
        depths[s.name] = int(value)
    return depths


def ffn_module_names(model: nn.Module) -> list[str]:
    """Leaf names of the feed-forward linears of a model (the paper's LoRA targets)."""
    return list(get_family(model).ffn_modules)
