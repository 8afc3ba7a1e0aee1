"""Analytic FLOPs of a training step and of greedy generation, from a model's own shapes.

The count follows the usual convention (Kaplan et al. 2020, "Scaling Laws for Neural
Language Models", sec. 2.1; Hoffmann et al. 2022, app. F): only matrix products are
counted, at 2 FLOPs per multiply-accumulate. Per token:

* a projection ``d_in -> d_out`` (attention q/k/v/o with their real GQA widths, FFN
  up/gate/down, GPT-2's fused ``c_attn``): ``2 * d_in * d_out``;
* attention over ``T_k`` keys with ``d_attn = heads * head_dim``: ``2 * T_k * d_attn`` for
  the scores ``Q K^T`` plus ``2 * T_k * d_attn`` for ``softmax(.) V``. Scores are counted
  dense (every query against all ``T_k`` keys, as the eager and SDPA math kernels
  compute them); causal kernels that skip the masked half do less, and sliding-window
  layers (Mistral, Gemma-2) are counted over the full context as well;
* cross-attention (seq2seq decoders): q/o per target token, k/v per *source* token
  (computed once per step), scores over the ``S`` source keys;
* the LM head ``d_model -> vocab`` on every position in training, on the last position
  only in generation (``logits_to_keep=1``); embedding lookups, norms, activations,
  softmax, dropout, biases and the loss are elementwise and counted as 0.

Backward (the ``backward_rule`` field of :func:`convention`), decided per projection
from the model's actual ``requires_grad`` state:

* ``dL/dx`` (activation gradient, as many FLOPs as the forward) is computed only when
  the projection's *input* requires grad, i.e. some trainable parameter lies under it;
* ``dL/dW`` (weight gradient, as many FLOPs as the forward) only when the weight is
  trainable;
* attention: of the four backward matmuls (``dP = dO V^T``, ``dV = P^T dO``,
  ``dQ = dS K``, ``dK = dS^T Q``, each as costly as one forward matmul) only those whose
  operands require grad (as autograd runs eager attention; fused SDPA backward kernels
  may compute all three input gradients), so 2x forward when q, k and v all do;
* LoRA adapters ``A: d_in -> r``, ``B: r -> d_out`` are counted fully: forward
  ``2 r (d_in + d_out)``, weight gradients of both, the activation gradient of ``B``,
  and that of ``A`` when the adapter's input requires grad.

Hence full fine-tuning costs 3x the forward (2x forward backward for every layer, the
"6N" rule); LoRA with frozen base weights costs about 2x the forward, because frozen
weights need activation gradients but no weight gradients; nothing below the first
trainable parameter needs any backward (with the paper's FFN-only LoRA in every layer,
backward reaches layer 0's FFN but not its attention, and never the embeddings).

The FLOP-ideal speed-up of configuration B over A is ``FLOPs_A / FLOPs_B`` for the same
tokens; :func:`training_step_flops` and :func:`generation_flops` give both sides. The
counts equal ``torch.utils.flop_counter.FlopCounterMode``'s for every supported family
(eager attention; training with full fine-tuning or LoRA, and ``generate``), which
``tests/test_flops.py`` checks alongside written-out hand counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from prunetune.architectures import base_model, get_family, get_layers

#: Leaf names of the projection that writes a sub-layer's result back into the residual
#: stream; every other projection of the sub-layer reads the sub-layer's input (or, for
#: cross-attention k/v, the encoder output). Registration order cannot tell them apart:
#: Phi-3 registers ``o_proj`` before ``qkv_proj``.
OUTPUT_PROJECTIONS = frozenset({"o_proj", "out_proj", "o", "dense", "c_proj", "down_proj", "fc2", "wo",
                                "dense_4h_to_h"})
#: Attention modules of seq2seq decoders that attend to the encoder output (T5, BART).
CROSS_ATTENTION_MODULES = frozenset({"EncDecAttention", "encoder_attn"})
#: Cross-attention projections that read the encoder output (once per source token).
MEMORY_PROJECTIONS = frozenset({"k", "v", "k_proj", "v_proj"})
#: Leaf names of separate query/key/value projections; any other input projection of an
#: attention sub-layer is a fused one (``c_attn``, ``qkv_proj``, ``query_key_value``).
ATTENTION_ROLES = {"q": frozenset({"q", "q_proj", "query"}), "k": frozenset({"k", "k_proj", "key"}),
                   "v": frozenset({"v", "v_proj", "value"})}

BACKWARD_RULE = (
    "backward per projection = dL/dx (1x its forward) if its input requires grad + dL/dW (1x) if its "
    "weight is trainable; attention: those of dP, dV, dQ, dK whose operands require grad (each 1/2 of "
    "the attention forward; 2x forward when q, k, v all do); LoRA adapters counted fully; so full "
    "fine-tuning = 3x forward, frozen-base LoRA ~2x forward, no backward below the first trainable parameter"
)

COUNTED = (
    "matrix products only, 2 FLOPs per multiply-accumulate: projections 2*d_in*d_out per token, attention "
    "4*T_keys*heads*head_dim per query (dense), LM head 2*d_model*vocab per position; embeddings, norms, "
    "activations, softmax, loss and optimizer counted as 0"
)
SUMMARY = "full fine-tuning = 3x forward, LoRA = activation gradients only through frozen weights"

Reads = Literal["input", "memory", "inner"]


@dataclass(frozen=True)
class Projection:
    """One linear map applied to every token of its input.

    Attributes:
        name: module path in the model.
        d_in: input features.
        d_out: output features.
        reads: ``input`` (the sub-layer's input, i.e. the normed residual stream),
            ``memory`` (the encoder output; cross-attention k/v) or ``inner`` (the
            sub-layer's hidden activation: attention context or FFN hidden state).
        trainable: whether the weight itself receives a gradient.
        lora_rank: total rank of active, unmerged LoRA adapters on it (0 if none).
    """

    name: str
    d_in: int
    d_out: int
    reads: Reads = "input"
    trainable: bool = False
    lora_rank: int = 0

    @property
    def flops(self) -> int:
        """Forward FLOPs per token of the frozen or trained base weight."""
        return 2 * self.d_in * self.d_out

    @property
    def lora_flops(self) -> int:
        """Forward FLOPs per token of its LoRA adapters (``A`` then ``B``)."""
        return 2 * self.lora_rank * (self.d_in + self.d_out)


@dataclass(frozen=True)
class Sublayer:
    """An attention or feed-forward sub-layer of a block.

    Attributes:
        kind: ``self_attention``, ``cross_attention`` or ``ffn``.
        projections: its projections, in the model's registration order.
        attention_width: ``heads * head_dim`` of the queries (0 for an FFN).
    """

    kind: Literal["self_attention", "cross_attention", "ffn"]
    projections: tuple[Projection, ...]
    attention_width: int = 0


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP count needs to know about a model.

    Attributes:
        family: the architecture family (see :mod:`prunetune.architectures`).
        stacks: ``{"encoder": blocks, "decoder": blocks}`` (decoder-only models have only
            ``decoder``); each block is a tuple of sub-layers in execution order.
        head: the LM head projection (``d_model -> vocab``).
        embeddings_trainable: whether the token embedding receives a gradient (then
            every block's input requires grad).
    """

    family: str
    stacks: dict[str, tuple[tuple[Sublayer, ...], ...]]
    head: Projection
    embeddings_trainable: bool = False

    @property
    def is_encoder_decoder(self) -> bool:
        return "encoder" in self.stacks

    def num_layers(self) -> dict[str, int]:
        return {name: len(blocks) for name, blocks in self.stacks.items()}


@dataclass(frozen=True)
class StepFlops:
    """FLOPs of one step, in total and per part.

    Attributes:
        tokens: tokens the step processes (``B * T``, or ``B * (S + T)`` for seq2seq).
        forward: forward FLOPs.
        backward: backward FLOPs (0 for inference).
        parts: ``{part: {"forward": ..., "backward": ...}}`` with parts ``encoder``,
            ``decoder`` (blocks' base weights and attention), ``lora`` and ``head``.
    """

    tokens: int
    forward: float
    backward: float
    parts: dict[str, dict[str, float]]

    @property
    def total(self) -> float:
        return self.forward + self.backward

    def as_dict(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "forward": self.forward,
            "backward": self.backward,
            "total": self.total,
            "forward_per_token": self.forward / self.tokens,
            "total_per_token": self.total / self.tokens,
            "parts": self.parts,
        }


# ---------------------------------------------------------------------------------------
# Reading the shapes off a model


def _features(module: nn.Module) -> tuple[int, int] | None:
    """``(d_in, d_out)`` of a linear-like module (nn.Linear, GPT-2's Conv1D), else None."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
        d_in, d_out = module.weight.shape  # Conv1D stores the transposed weight
        return int(d_in), int(d_out)
    return None


def _projection(name: str, module: nn.Module, reads: Reads) -> Projection | None:
    rank = 0
    if hasattr(module, "base_layer") and hasattr(module, "lora_A"):  # a PEFT LoRA layer
        if not getattr(module, "merged", False) and not getattr(module, "disable_adapters", False):
            active = getattr(module, "active_adapters", list(module.lora_A))
            rank = sum(module.lora_A[a].out_features for a in active if a in module.lora_A)
        module = module.get_base_layer()
    shape = _features(module)
    if shape is None:
        return None
    return Projection(name, shape[0], shape[1], reads, bool(module.weight.requires_grad), rank)


def _linear_leaves(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """Linear-like modules under ``module`` in registration order, LoRA wrappers whole."""
    if _features(module) is not None or (hasattr(module, "base_layer") and hasattr(module, "lora_A")):
        return [(prefix, module)]
    found = []
    for child_name, child in module.named_children():
        found += _linear_leaves(child, f"{prefix}.{child_name}" if prefix else child_name)
    return found


def _attention_width(config: Any, stack: str) -> int:
    heads = getattr(config, f"{stack}_attention_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return int(heads * head_dim)


def _block_sublayers(block: nn.Module, config: Any, stack: str, prefix: str) -> tuple[Sublayer, ...]:
    """Group a block's projections by their parent module into sub-layers."""
    groups: dict[str, list[tuple[str, nn.Module]]] = {}
    for name, module in _linear_leaves(block):
        groups.setdefault(name.rpartition(".")[0], []).append((name, module))
    sublayers = []
    for parent_path, members in groups.items():
        parent = block.get_submodule(parent_path) if parent_path else block
        is_attention = "attention" in type(parent).__name__.lower()
        is_cross = is_attention and any(part in CROSS_ATTENTION_MODULES for part in parent_path.split("."))
        outputs = [n for n, _ in members if n.rpartition(".")[2] in OUTPUT_PROJECTIONS]
        if len(outputs) != 1:
            raise ValueError(f"cannot tell the output projection of {prefix}.{parent_path} "
                             f"(found {outputs}); add its name to OUTPUT_PROJECTIONS")
        projections = []
        for name, module in members:
            leaf = name.rpartition(".")[2]
            reads: Reads = ("inner" if name in outputs else
                            "memory" if is_cross and leaf in MEMORY_PROJECTIONS else "input")
            projections.append(_projection(f"{prefix}.{name}", module, reads))
        kind = "cross_attention" if is_cross else "self_attention" if is_attention else "ffn"
        width = _attention_width(config, stack) if is_attention else 0
        sublayers.append(Sublayer(kind, tuple(projections), width))
    return tuple(sublayers)


def model_shape(model: nn.Module) -> ModelShape:
    """Read the projections, attention widths and trainable state off a model.

    Args:
        model: a Hugging Face model of a supported family, pruned or not, optionally
            wrapped by PEFT (adapters are read from the LoRA layers, trainability from
            ``requires_grad``).

    Returns:
        The :class:`ModelShape` that :func:`training_step_flops` and
        :func:`generation_flops` count.
    """
    family = get_family(model)
    hf_model = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base_model(hf_model).config
    stacks = {}
    for stack in family.stacks:
        layers = get_layers(hf_model, stack)
        stacks[stack.name] = tuple(_block_sublayers(block, config, stack.name, f"{stack.layers}.{i}")
                                   for i, block in enumerate(layers))
    head_module = hf_model.get_output_embeddings()
    head = _projection("lm_head", head_module, "input")
    embeddings = hf_model.get_input_embeddings()
    return ModelShape(family.name, stacks, head, bool(embeddings.weight.requires_grad))


# ---------------------------------------------------------------------------------------
# Counting


class _Tally:
    """Accumulates forward/backward FLOPs per part."""

    def __init__(self) -> None:
        self.parts: dict[str, dict[str, float]] = {}

    def add(self, part: str, forward: float = 0.0, backward: float = 0.0) -> None:
        entry = self.parts.setdefault(part, {"forward": 0.0, "backward": 0.0})
        entry["forward"] += forward
        entry["backward"] += backward

    def result(self, tokens: int) -> StepFlops:
        forward = sum(p["forward"] for p in self.parts.values())
        backward = sum(p["backward"] for p in self.parts.values())
        return StepFlops(tokens, forward, backward, self.parts)


def _roles(proj: Projection) -> tuple[str, ...]:
    """Which of q, k, v an attention input projection produces (all three when fused)."""
    leaf = proj.name.rpartition(".")[2]
    named = tuple(role for role, names in ATTENTION_ROLES.items() if leaf in names)
    return named or ("q", "k", "v")


def _projection_flops(tally: _Tally, part: str, proj: Projection, tokens: float, input_grad: bool,
                      training: bool) -> bool:
    """Count one projection over ``tokens``; returns whether its output requires grad."""
    tally.add(part, forward=proj.flops * tokens)
    if proj.lora_rank:
        tally.add("lora", forward=proj.lora_flops * tokens)
    if not training:
        return False
    backward = (proj.flops if input_grad else 0) + (proj.flops if proj.trainable else 0)
    tally.add(part, backward=backward * tokens)
    if proj.lora_rank:
        r = proj.lora_rank
        # weight grads of A and B, activation grad into B's input (A's output requires
        # grad), and into A's input only if the adapter's input requires grad.
        lora_backward = proj.lora_flops + 2 * r * proj.d_out + (2 * r * proj.d_in if input_grad else 0)
        tally.add("lora", backward=lora_backward * tokens)
    return input_grad or proj.trainable or proj.lora_rank > 0


def _stack_flops(tally: _Tally, part: str, blocks: tuple[tuple[Sublayer, ...], ...], tokens: float,
                 queries_by_keys: float, stream_grad: bool, training: bool,
                 memory_tokens: float = 0.0, cross_queries_by_keys: float = 0.0,
                 memory_grad: bool = False) -> bool:
    """Count a stack of blocks; returns whether its output stream requires grad.

    Args:
        tokens: tokens the stack processes.
        queries_by_keys: sum over queries of the number of keys each attends to, in
            self-attention (``B * T * T`` for dense training attention).
        stream_grad: whether the stack's input requires grad.
        memory_tokens / cross_queries_by_keys / memory_grad: the same for cross-attention
            (encoder tokens, ``B * T * S``, whether the encoder output requires grad).
    """
    for block in blocks:
        for sub in block:
            inner_grad = False
            role_grad = {"q": False, "k": False, "v": False}
            for proj in sub.projections:
                if proj.reads == "inner":
                    continue
                reads_memory = proj.reads == "memory"
                n = memory_tokens if reads_memory else tokens
                grad_in = memory_grad if reads_memory else stream_grad
                out_grad = _projection_flops(tally, part, proj, n, grad_in, training)
                inner_grad |= out_grad
                for role in _roles(proj):
                    role_grad[role] |= out_grad
            if sub.attention_width:
                pairs = cross_queries_by_keys if sub.kind == "cross_attention" else queries_by_keys
                matmul = 2 * sub.attention_width * pairs  # one of Q K^T, softmax(.) V
                q, k, v = role_grad["q"], role_grad["k"], role_grad["v"]
                needed = (q or k) + v + q + k  # dP, dV, dQ, dK
                tally.add(part, forward=2 * matmul, backward=needed * matmul if training else 0)
            out_grad = False
            for proj in sub.projections:
                if proj.reads == "inner":
                    out_grad |= _projection_flops(tally, part, proj, tokens, inner_grad, training)
            stream_grad = stream_grad or out_grad  # residual connection
    return stream_grad


def training_step_flops(shape: ModelShape, batch_size: int, seq_length: int,
                        target_length: int | None = None) -> StepFlops:
    """FLOPs of one training step (forward + backward) on a full, unpadded batch.

    Args:
        shape: from :func:`model_shape`; its trainable state decides the backward.
        batch_size: sequences per step.
        seq_length: tokens per sequence (the source length for seq2seq models).
        target_length: seq2seq target length (defaults to ``seq_length``).

    Returns:
        A :class:`StepFlops`; ``tokens`` is ``B * T`` (decoder-only) or ``B * (S + T)``.
    """
    return _count(shape, batch_size, seq_length, target_length, training=True)


def forward_flops(shape: ModelShape, batch_size: int, seq_length: int,
                  target_length: int | None = None) -> StepFlops:
    """FLOPs of one forward pass over a full batch (no backward)."""
    return _count(shape, batch_size, seq_length, target_length, training=False)


def _count(shape: ModelShape, batch_size: int, seq_length: int, target_length: int | None,
           training: bool) -> StepFlops:
    tally = _Tally()
    b = batch_size
    grad = shape.embeddings_trainable
    if shape.is_encoder_decoder:
        s, t = seq_length, target_length or seq_length
        memory_grad = _stack_flops(tally, "encoder", shape.stacks["encoder"], b * s, b * s * s, grad, training)
        grad = _stack_flops(tally, "decoder", shape.stacks["decoder"], b * t, b * t * t, grad, training,
                            memory_tokens=b * s, cross_queries_by_keys=b * t * s, memory_grad=memory_grad)
        tokens = b * (s + t)
    else:
        t = seq_length
        grad = _stack_flops(tally, "decoder", shape.stacks["decoder"], b * t, b * t * t, grad, training)
        tokens = b * t
    _projection_flops(tally, "head", shape.head, b * t, grad, training)
    return tally.result(tokens)


def generation_flops(shape: ModelShape, batch_size: int, prompt_length: int, new_tokens: int) -> StepFlops:
    """FLOPs of greedy generation with a KV cache: prefill, then one token per step.

    Decoder-only: the prompt's ``P`` tokens in one prefill pass (which yields the first new
    token), then ``N - 1`` single-token steps attending to ``P + i`` cached keys.
    Seq2seq: the encoder over the ``P`` source tokens and the cross-attention k/v once,
    then ``N`` decoder steps, step ``j`` attending to ``j`` self keys and ``P`` source keys.
    The LM head runs on one position per sequence per step.

    Returns:
        A :class:`StepFlops` with ``backward == 0``; ``tokens`` counts the new tokens
        (``B * N``).
    """
    tally = _Tally()
    b, p, n = batch_size, prompt_length, new_tokens
    if shape.is_encoder_decoder:
        _stack_flops(tally, "encoder", shape.stacks["encoder"], b * p, b * p * p, False, False)
        decoder_blocks = shape.stacks["decoder"]
        # Cross-attention k/v of the encoder output are computed once and cached.
        for block in decoder_blocks:
            for sub in block:
                for proj in sub.projections:
                    if proj.reads == "memory":
                        _projection_flops(tally, "decoder", proj, b * p, False, False)
        step_blocks = tuple(tuple(Sublayer(sub.kind, tuple(q for q in sub.projections if q.reads != "memory"),
                                           sub.attention_width) for sub in block) for block in decoder_blocks)
        for j in range(1, n + 1):
            _stack_flops(tally, "decoder", step_blocks, b, b * j, False, False, cross_queries_by_keys=b * p)
    else:
        blocks = shape.stacks["decoder"]
        # Prefill: P queries over up to P keys (counted dense, as in training).
        _stack_flops(tally, "decoder", blocks, b * p, b * p * p, False, False)
        for i in range(1, n):
            _stack_flops(tally, "decoder", blocks, b, b * (p + i), False, False)
    _projection_flops(tally, "head", shape.head, b * n, False, False)
    return tally.result(b * n)


def flops_record(step: StepFlops) -> dict[str, Any]:
    """A JSON-ready record of a count."""
    return step.as_dict()


def convention() -> dict[str, str]:
    """How FLOPs are counted, for reports: ``counted``, ``backward_rule`` and a one-line ``summary``."""
    return {"counted": COUNTED, "backward_rule": BACKWARD_RULE, "summary": SUMMARY}


def flop_ideal_speedup(baseline: StepFlops, candidate: StepFlops) -> float:
    """``FLOPs_baseline / FLOPs_candidate`` per token: the speed-up if time followed FLOPs."""
    return (baseline.total / baseline.tokens) / (candidate.total / candidate.tokens)
