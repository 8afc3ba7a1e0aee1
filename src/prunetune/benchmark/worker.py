"""One benchmark run, alone in its process: build a configuration, time it, take its peak memory.

``prunetune bench`` starts ``python -m prunetune.benchmark SPEC.json RESULT.json`` once per
configuration and repeat, so every peak-memory figure starts from a fresh process and
allocator. A run:

1. builds the model: ``--model`` (loaded on CPU, then moved) or ``--shape`` (random
   weights, initialised on the device), pruned with the paper pattern at ``ratio``;
2. **train**: full fine-tuning (every parameter, AdamW) or LoRA on the FFN linears
   (:func:`prunetune.training.lora.build_lora_model`, AdamW on the adapters); on
   synthetic token ids (fixed seed) it runs ``warmup_steps`` then ``steps`` timed steps;
   **generate**: the model (for a pruned one: LoRA added, then merged with
   ``merge_and_unload``) times greedy ``generate`` of exactly ``new_tokens`` tokens and a
   prefill-only call (one new token), per batch size;
3. measures peak memory over the whole loop with :mod:`prunetune.memory` (CUDA
   ``max_memory_allocated``/``reserved``; on CPU the peak RSS of the phase, after the
   model is built), and counts the FLOPs of exactly this model (:mod:`prunetune.flops`).

The training step is the one any trainer runs, with the overheads the profile showed
to be avoidable removed (see ``benchmarks/profile_train_step.py``): on CPU, LoRA dropout
with a multi-threaded mask draw (:mod:`prunetune.training.dropout`); ``use_cache=False``
(no KV cache built in training); the model output (and its logits) released before
backward; fused AdamW; ``zero_grad(set_to_none=True)``; frozen embeddings/LM head kept
out of autograd (PEFT's default; no ``enable_input_require_grads``).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import torch

from prunetune.architectures import stack_depths
from prunetune.benchmark.args import BenchArgs
from prunetune.benchmark.contention import cpu_stall_seconds, robust_median, sample_until_clean, stall_fraction
from prunetune.benchmark.shapes import build_random_model
from prunetune.training.dropout import use_masked_lora_dropout
from prunetune.errors import UsageError
from prunetune.flops import flops_record, generation_flops, model_shape, training_step_flops
from prunetune.memory import current_rss_bytes, read_peak_memory, reset_peak_memory
from prunetune.models import ModelArgs, load_model
from prunetune.pruning import PruneArgs, apply_pruning
from prunetune.training.lora import LoraArgs, build_lora_model, count_trainable

logger = logging.getLogger(__name__)

# The learning rate does not change the cost of a step; any value that keeps the loss
# finite on random tokens will do.
LEARNING_RATE = 1e-5

Method = Literal["full", "lora", "base", "merged"]


@dataclass
class RunSpec:
    """What one child process measures.

    Attributes:
        kind: ``train`` or ``generate``.
        name: the configuration's name in the report (``full``, ``lora``, ``pruned-1/3`` ...).
        method: ``full`` or ``lora`` (train); ``base`` or ``merged`` (generate).
        ratio: pruning ratio, paper pattern; 0 keeps every layer.
        model: :class:`~prunetune.models.ModelArgs` fields.
        bench: :class:`~prunetune.benchmark.args.BenchArgs` fields.
    """

    kind: Literal["train", "generate"]
    name: str
    method: Method
    ratio: float
    model: dict[str, Any]
    bench: dict[str, Any]

    def dumps(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def loads(cls, text: str) -> RunSpec:
        return cls(**json.loads(text))


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU.

    Raises:
        UsageError: for ``cuda`` on a machine without a CUDA device.
    """
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on a CUDA device that supports it, else ``fp32``."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 mixed precision (fp32 master weights), as ``Trainer(bf16=True)`` runs it."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``).

    Pruned layers are freed before a measurement starts; without this their pages could
    stay resident and be counted in the CPU peak RSS.
    """
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def build_model(spec: RunSpec, bench: BenchArgs, device: torch.device) -> tuple[Any, dict[str, list[int]] | None]:
    """The model of ``spec``: loaded or built, pruned at ``spec.ratio``, on ``device``.

    Returns:
        ``(model, kept_layers)``; ``kept_layers`` is None for an unpruned model.
    """
    if bench.shape != "none":
        model = build_random_model(bench.shape, device, bench.seed)
    else:
        args = ModelArgs(**spec.model)
        model, _, _ = load_model(args.model, args.dtype, with_tokenizer=False)
    plan = apply_pruning(model, PruneArgs(strategy="paper", ratio=spec.ratio)) if spec.ratio else None
    model.to(device)
    return model, plan


def add_lora(model: Any, bench: BenchArgs) -> Any:
    """The paper's LoRA (FFN linears), built exactly as ``prunetune finetune`` builds it; seeded."""
    torch.manual_seed(bench.seed)
    lora = LoraArgs(lora_preset="ffn", lora_r=bench.lora_r, lora_alpha=bench.lora_alpha,
                    lora_dropout=bench.lora_dropout)
    return build_lora_model(model, lora)


def synthetic_batch(config: Any, bench: BenchArgs, device: torch.device) -> dict[str, torch.Tensor]:
    """Random token ids (fixed seed), no padding; labels = inputs (causal) or random targets (seq2seq)."""
    generator = torch.Generator().manual_seed(bench.seed)
    ids = torch.randint(0, config.vocab_size, (bench.batch_size, bench.seq_length), generator=generator)
    if getattr(config, "is_encoder_decoder", False):
        target = bench.target_length or bench.seq_length
        labels = torch.randint(0, config.vocab_size, (bench.batch_size, target), generator=generator)
    else:
        labels = ids.clone()
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "labels": labels.to(device)}


def make_optimizer(params: list[torch.nn.Parameter], device: torch.device) -> torch.optim.Optimizer:
    """AdamW, fused (one kernel for all parameters) where this torch build has it."""
    try:
        return torch.optim.AdamW(params, lr=LEARNING_RATE, fused=True)
    except (RuntimeError, ValueError):
        logger.debug("fused AdamW unavailable on %s; using the foreach implementation", device)
        return torch.optim.AdamW(params, lr=LEARNING_RATE)


def training_step(model: Any, batch: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                  precision_context: Callable[[], contextlib.AbstractContextManager]) -> torch.Tensor:
    """One optimizer step; returns the (detached) loss.

    Only ``.loss`` is kept from the forward, so the logits tensor (``B x T x vocab``) is
    freed before backward instead of living through it.
    """
    with precision_context():
        loss = model(**batch, use_cache=False).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


@dataclass
class Timing:
    """Wall time of one call, the share of it some task waited for a CPU, and its result."""

    seconds: float
    stall: float | None
    result: Any = None


def timed(device: torch.device, fn: Callable[[], Any]) -> Timing:
    """Run ``fn`` between device synchronisations; time it and record CPU contention."""
    synchronize(device)
    stall_start, start = cpu_stall_seconds(), time.perf_counter()
    out = fn()
    synchronize(device)
    seconds = time.perf_counter() - start
    return Timing(seconds, stall_fraction(stall_start, cpu_stall_seconds(), seconds), out)


@dataclass
class TrainingSetup:
    """A configuration ready to step: model in train mode, its batch and optimizer."""

    model: Any
    plan: dict[str, list[int]] | None
    batch: dict[str, torch.Tensor]
    optimizer: torch.optim.Optimizer


def prepare_training(spec: RunSpec, bench: BenchArgs, device: torch.device) -> TrainingSetup:
    """Build the model of ``spec`` (pruned, with LoRA or fully trainable), its batch and optimizer.

    Shared by :func:`measure_training` and ``benchmarks/profile_train_step.py`` so that the
    profiled step is exactly the measured one.
    """
    model, plan = build_model(spec, bench, device)
    if spec.method == "lora":
        model = add_lora(model, bench)
        if device.type == "cpu" and bench.lora_dropout_impl == "auto":
            use_masked_lora_dropout(model)
    else:
        model.requires_grad_(True)
    model.train()
    batch = synthetic_batch(model.config, bench, device)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], device)
    return TrainingSetup(model, plan, batch, optimizer)


def measure_training(spec: RunSpec, bench: BenchArgs, device: torch.device, precision: str) -> dict[str, Any]:
    """Time ``bench.steps`` training steps after ``bench.warmup_steps``; peak memory of the loop."""
    setup = prepare_training(spec, bench, device)
    model, plan, batch, optimizer = setup.model, setup.plan, setup.batch, setup.optimizer
    trainable, total = count_trainable(model)
    shape = model_shape(model)
    flops = training_step_flops(shape, bench.batch_size, bench.seq_length, bench.target_length)

    def step() -> torch.Tensor:
        return training_step(model, batch, optimizer, lambda: autocast(device, precision))

    release_freed_memory()
    rss_start = current_rss_bytes()
    scope = reset_peak_memory(device)
    start_allocated = torch.cuda.memory_allocated(device) if device.type == "cuda" else None
    warmup = [timed(device, step) for _ in range(bench.warmup_steps)]
    measured = sample_until_clean(lambda: timed(device, step), bench.steps, lambda t: t.stall)
    memory = read_peak_memory(device, scope)
    memory["start_bytes"] = start_allocated if device.type == "cuda" else rss_start

    losses = [float(t.result) for t in warmup + measured]
    times, stalls = [t.seconds for t in measured], [t.stall for t in measured]
    step_time, clean_steps, contended = robust_median(times, stalls)
    return {
        "kind": "train", "name": spec.name, "method": spec.method, "pruning_ratio": spec.ratio,
        "kept_layers": plan, "layers": stack_depths(model.config),
        "trainable_params": trainable, "total_params": total, "tokens_per_step": flops.tokens,
        "warmup_step_times_s": [t.seconds for t in warmup], "step_times_s": times, "step_stalls": stalls,
        "step_time_s": step_time, "clean_steps": clean_steps, "contended": contended,
        "tokens_per_s": flops.tokens / step_time, "loss_first": losses[0], "loss_last": losses[-1],
        "memory": memory, "flops": flops_record(flops),
    }


def _pad_id(config: Any) -> int:
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(config, name, None)
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None:
            return int(value)
    return 0


@torch.inference_mode()
def measure_generation(spec: RunSpec, bench: BenchArgs, device: torch.device, precision: str) -> dict[str, Any]:
    """Latency of greedy generation (prefill + ``new_tokens``) per batch size."""
    model, plan = build_model(spec, bench, device)
    if spec.method == "merged":
        with torch.inference_mode(False):
            model = add_lora(model, bench).merge_and_unload()
    if precision == "bf16":
        model.to(torch.bfloat16)
    model.eval()
    shape = model_shape(model)
    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    pad = _pad_id(model.config)
    generator = torch.Generator().manual_seed(bench.seed)

    release_freed_memory()
    scope = reset_peak_memory(device)
    by_batch: dict[str, Any] = {}
    for batch_size in bench.generation_batch_sizes:
        ids = torch.randint(0, model.config.vocab_size, (batch_size, bench.prompt_length), generator=generator)
        ids = ids.to(device)

        def generate(new_tokens: int) -> torch.Tensor:
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False, num_beams=1, pad_token_id=pad,
                                 use_cache=True, temperature=None, top_p=None, top_k=None)
            produced = out.shape[1] - (1 if encoder_decoder else ids.shape[1])
            if produced != new_tokens:
                raise RuntimeError(f"generate produced {produced} tokens, expected {new_tokens}")
            return out

        generate(bench.new_tokens)  # warm-up (kernels, cache allocation)
        pairs = sample_until_clean(lambda: (timed(device, lambda: generate(1)),
                                            timed(device, lambda: generate(bench.new_tokens))),
                                   bench.generation_runs, lambda pair: max(pair[0].stall or 0.0, pair[1].stall or 0.0))
        prefill, full = [p for p, _ in pairs], [f for _, f in pairs]
        latency, clean_runs, contended = robust_median([t.seconds for t in full], [t.stall for t in full])
        prefill_time, _, _ = robust_median([t.seconds for t in prefill], [t.stall for t in prefill])
        decode = (latency - prefill_time) / (bench.new_tokens - 1) if bench.new_tokens > 1 else None
        flops = generation_flops(shape, batch_size, bench.prompt_length, bench.new_tokens)
        by_batch[str(batch_size)] = {
            "latency_s": latency, "latencies_s": [t.seconds for t in full], "stalls": [t.stall for t in full],
            "clean_runs": clean_runs, "contended": contended, "prefill_s": prefill_time,
            "decode_s_per_token": decode, "tokens_per_s": batch_size * bench.new_tokens / latency,
            "flops": flops.forward,
        }
    memory = read_peak_memory(device, scope)
    return {
        "kind": "generate", "name": spec.name, "method": spec.method, "pruning_ratio": spec.ratio,
        "kept_layers": plan, "layers": stack_depths(model.config), "total_params": count_trainable(model)[1],
        "batch_sizes": by_batch, "memory": memory,
    }


def run(spec: RunSpec) -> dict[str, Any]:
    """Measure ``spec`` in this process and return its record."""
    bench = BenchArgs(**spec.bench)
    device = resolve_device(bench.device)
    precision = resolve_precision(bench.precision, device)
    torch.manual_seed(bench.seed)
    measure = measure_training if spec.kind == "train" else measure_generation
    result = measure(spec, bench, device, precision)
    result.update(device=device.type, precision=precision, threads=torch.get_num_threads())
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m prunetune.benchmark SPEC.json RESULT.json`` (started by ``prunetune bench``)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m prunetune.benchmark SPEC.json RESULT.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    spec = RunSpec.loads(Path(argv[0]).read_text())
    try:
        result = run(spec)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return UsageError.exit_code
    Path(argv[1]).write_text(json.dumps(result, indent=1))
    return 0
