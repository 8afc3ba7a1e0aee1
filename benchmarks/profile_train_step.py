"""Profile one training step of a benchmark configuration with torch.profiler (CPU or CUDA).

Builds the configuration exactly as ``prunetune bench`` does (same model, pruning,
LoRA, synthetic batch, optimizer and step), runs warm-up steps, then profiles one step
and prints the top operators by self time and the share of each operator class.

    python benchmarks/profile_train_step.py --model smollm2-135m --ratio 0.3333 --method lora
    python benchmarks/profile_train_step.py --lora-dropout-impl torch    # PEFT's own CPU dropout
    python benchmarks/profile_train_step.py --lora-dropout 0             # no LoRA dropout at all
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from prunetune.benchmark.args import BenchArgs
from prunetune.benchmark.worker import (
    RunSpec, autocast, prepare_training, resolve_device, resolve_precision, synchronize, training_step,
)

# Operator name -> class, first match wins; everything else is "other".
CLASSES = (
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")),
    ("attention", ("scaled_dot_product", "flash_attention")),
    ("loss (log_softmax/nll)", ("log_softmax", "nll_loss", "cross_entropy")),
    ("dropout RNG", ("bernoulli", "native_dropout")),
    ("optimizer", ("adamw", "_fused_adam", "_foreach")),
    ("copies/fills", ("aten::copy_", "aten::fill_", "aten::zero_", "aten::clone", "aten::to", "aten::_to_copy")),
    ("elementwise", ("aten::mul", "aten::add", "aten::div", "aten::silu", "aten::neg", "aten::pow", "aten::rsqrt",
                     "aten::mean", "aten::sum", "aten::cat", "aten::where", "silu_backward", "aten::exp")),
)


def classify(name: str) -> str:
    for label, patterns in CLASSES:
        if any(p in name for p in patterns):
            return label
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--method", choices=("full", "lora"), default="lora")
    parser.add_argument("--ratio", type=float, default=1 / 3, help="pruning ratio (0 = unpruned)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--lora-dropout", type=float, default=0.1)
    parser.add_argument("--lora-dropout-impl", choices=("auto", "torch"), default="auto",
                        help="auto: the benchmark's CPU dropout fix; torch: PEFT's nn.Dropout")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--timed-steps", type=int, default=5, help="steps timed before profiling")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    bench = BenchArgs(batch_size=args.batch_size, seq_length=args.seq_length, lora_dropout=args.lora_dropout,
                      lora_dropout_impl=args.lora_dropout_impl)
    device = resolve_device(bench.device)
    precision = resolve_precision(bench.precision, device)
    spec = RunSpec("train", "profile", args.method, args.ratio, {"model": args.model, "dtype": "auto"},
                   bench.as_dict())
    setup = prepare_training(spec, bench, device)

    def step() -> None:
        training_step(setup.model, setup.batch, setup.optimizer, lambda: autocast(device, precision))

    for _ in range(args.warmup_steps):
        step()
    times = []
    for _ in range(args.timed_steps):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        synchronize(device)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    shares: dict[str, float] = {}
    for e in events:
        shares[classify(e.key)] = shares.get(classify(e.key), 0.0) + e.self_cpu_time_total
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:args.top]
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    print(json.dumps({
        "config": {"model": args.model, "method": args.method, "ratio": args.ratio, "batch_size": args.batch_size,
                   "seq_length": args.seq_length, "lora_dropout": args.lora_dropout,
                   "lora_dropout_impl": args.lora_dropout_impl, "precision": precision,
                   "threads": torch.get_num_threads()},
        "step_time_s": {"median": statistics.median(times), "all": times},
        "profiled_self_cpu_s": total / 1e6,
        "share_by_class": {k: round(v / total, 4) for k, v in sorted(shares.items(), key=lambda kv: -kv[1])},
        "top_ops": [{"op": e.key, "calls": e.count, "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 1),
                     "share": round(e.self_cpu_time_total / total, 4)} for e in top],
    }, indent=2))


if __name__ == "__main__":
    main()
