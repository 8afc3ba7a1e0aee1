"""LoRA adapters: which linear layers get them, and wrapping a model with PEFT.

LoRA (Hu et al., 2021) adds a trainable low-rank update ``B @ A`` (scaled by
``alpha / r``) to frozen linear weights. LoraLPrun (arXiv 2305.08285) puts it on the
feed-forward linears only, with ``r=16, alpha=32, dropout=0.1``; that is the ``ffn``
preset and the default. Presets:

* ``ffn``: the family's feed-forward linears (:attr:`prunetune.architectures.Family.ffn_modules`).
* ``qv``: the attention query and value projections (Hu et al.'s original choice), from
  :data:`QV_MODULES`; fused projections (GPT-2 ``c_attn``, GPT-NeoX ``query_key_value``,
  Phi-3 ``qkv_proj``) are the closest the model has.
* ``all-linear``: every linear layer except the output head (QLoRA's choice).

Target names follow PEFT's rule: a name matches a module whose dotted path equals it
or ends with ``.name``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from prunetune.architectures import get_family
from prunetune.config import arg
from prunetune.errors import UsageError

LoraPreset = Literal["ffn", "qv", "all-linear"]

#: Family name -> leaf names of its attention query and value projections.
QV_MODULES: dict[str, tuple[str, ...]] = {
    "t5": ("q", "v"),
    "bart": ("q_proj", "v_proj"),
    "llama": ("q_proj", "v_proj"),
    "mistral": ("q_proj", "v_proj"),
    "qwen2": ("q_proj", "v_proj"),
    "qwen3": ("q_proj", "v_proj"),
    "gemma": ("q_proj", "v_proj"),
    "gemma2": ("q_proj", "v_proj"),
    "olmo": ("q_proj", "v_proj"),
    "granite": ("q_proj", "v_proj"),
    "phi3": ("qkv_proj",),
    "gpt2": ("attn.c_attn",),
    "gpt_neox": ("query_key_value",),
}

# How many layer names an error message lists before "...".
_NAMES_SHOWN = 12


@dataclass
class LoraArgs:
    """Which layers get LoRA adapters, and their size."""

    lora_preset: LoraPreset = arg("ffn", help="layers to adapt: ffn (the paper's feed-forward linears), qv "
                                              "(attention query/value) or all-linear")
    lora_targets: list[str] | None = arg(None, help="explicit module names to adapt (e.g. q_proj,v_proj); "
                                                    "overrides --lora-preset")
    lora_r: int = arg(16, help="LoRA rank")
    lora_alpha: float = arg(32, help="LoRA scaling numerator (the update is scaled by alpha / r)")
    lora_dropout: float = arg(0.1, help="dropout on the LoRA input")
    use_dora: bool = arg(False, help="weight-decomposed LoRA (DoRA, Liu et al. 2024)")

    def __post_init__(self) -> None:
        if self.lora_r < 1:
            raise UsageError(f"--lora-r must be positive, got {self.lora_r}")
        if self.lora_alpha <= 0:
            raise UsageError(f"--lora-alpha must be positive, got {self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise UsageError(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lora_targets is not None and not self.lora_targets:
            raise UsageError("--lora-targets is empty; give module names or leave it out to use --lora-preset")


def _adaptable_types() -> tuple[type, ...]:
    # GPT-2 style models use transformers' Conv1D (a transposed linear), which PEFT supports.
    from transformers.pytorch_utils import Conv1D

    return (nn.Linear, Conv1D)


def _matches(path: str, target: str) -> bool:
    return path == target or path.endswith("." + target)


def linear_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Dotted path -> module for every linear layer LoRA can adapt, except the output head."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {path: module for path, module in model.named_modules()
            if isinstance(module, _adaptable_types()) and module is not head}


def _leaf_names(paths: list[str]) -> list[str]:
    return sorted({p.rsplit(".", 1)[-1] for p in paths})


def _preset_targets(model: nn.Module, preset: str) -> tuple[str, ...]:
    family = get_family(model)
    if preset == "ffn":
        return family.ffn_modules
    if preset == "qv":
        if family.name not in QV_MODULES:
            raise UsageError(f"no qv preset for {family.name} models; name the layers with --lora-targets")
        return QV_MODULES[family.name]
    return tuple(_leaf_names(list(linear_layers(model))))


def lora_target_modules(model: nn.Module, lora: LoraArgs) -> list[str]:
    """The target names to give PEFT for ``lora`` on this model.

    A preset lists every name its family may use (T5's ``wi`` or gated ``wi_0``/``wi_1``),
    so only the names this model has are kept. Explicit ``--lora-targets`` must each
    match at least one linear layer.

    Args:
        model: the (possibly pruned) model, not yet wrapped by PEFT.
        lora: the LoRA settings.

    Returns:
        Target names in PEFT's suffix form, e.g. ``["gate_proj", "up_proj", "down_proj"]``.

    Raises:
        UsageError: for a target that matches no linear layer (naming those that exist),
            or a preset that matches nothing on this model.
    """
    layers = list(linear_layers(model))
    available = _leaf_names(layers)
    shown = ", ".join(available[:_NAMES_SHOWN]) + (", ..." if len(available) > _NAMES_SHOWN else "")
    if lora.lora_targets is not None:
        for target in lora.lora_targets:
            if not any(_matches(path, target) for path in layers):
                raise UsageError(f"--lora-targets {target!r} matches no linear layer of this model "
                                 f"(linear layers: {shown})")
        return list(lora.lora_targets)
    targets = [t for t in _preset_targets(model, lora.lora_preset) if any(_matches(p, t) for p in layers)]
    if not targets:
        raise UsageError(f"--lora-preset {lora.lora_preset} matches no linear layer of this model; "
                         f"name them with --lora-targets (linear layers: {shown})")
    return targets


def build_lora_model(model: nn.Module, lora: LoraArgs) -> Any:
    """Freeze ``model`` and add LoRA adapters to the layers ``lora`` selects.

    Args:
        model: a seq2seq or causal LM of a supported family.
        lora: the LoRA settings.

    Returns:
        A ``peft.PeftModel`` whose only trainable parameters are the adapters.

    Raises:
        UsageError: see :func:`lora_target_modules`.
    """
    from peft import LoraConfig, TaskType, get_peft_model

    targets = lora_target_modules(model, lora)
    adapted = [m for p, m in linear_layers(model).items() if any(_matches(p, t) for t in targets)]
    task = TaskType.SEQ_2_SEQ_LM if getattr(model.config, "is_encoder_decoder", False) else TaskType.CAUSAL_LM
    config = LoraConfig(
        task_type=task,
        r=lora.lora_r,
        lora_alpha=lora.lora_alpha,
        lora_dropout=lora.lora_dropout,
        target_modules=targets,
        use_dora=lora.use_dora,
        bias="none",
        # GPT-2's Conv1D stores its weight transposed (in x out).
        fan_in_fan_out=any(not isinstance(m, nn.Linear) for m in adapted),
    )
    return get_peft_model(model, config)


def count_trainable(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts; tied weights are counted once."""
    trainable = total = 0
    for p in model.parameters():  # parameters() already de-duplicates tied tensors
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total
