"""Side-by-side training and generation efficiency: ``prunetune bench``.

Compares, on one model and one synthetic batch, full fine-tuning, plain LoRA and
pruned LoRA at several ratios (tokens/s, step time, peak memory, trainable
parameters), and greedy generation of the unpruned vs the pruned model with LoRA
merged, each next to the speed-up its FLOPs predict (:mod:`prunetune.flops`). Each
configuration runs in its own process (clean peak memory), repeats are interleaved and
medians reported; the result is one JSON report (schema ``prunetune.bench/1``).

* ``args.py`` - :class:`BenchArgs`, :class:`BenchOutputArgs`.
* ``runner.py`` - :func:`run_benchmark`, :func:`bench_command`: plan, spawn, collect.
* ``worker.py`` - one run in a child process (``python -m prunetune.benchmark``).
* ``report.py`` - medians, ratios, targets, and :func:`render_markdown`.
* ``contention.py`` - CPU contention from other processes: detect it per step, wait it out.
* ``shapes.py`` - random-weight BART-large / T5-large (``--shape``).
"""

from prunetune.benchmark.args import BenchArgs, BenchOutputArgs
from prunetune.benchmark.report import render_markdown
from prunetune.benchmark.runner import bench_command, run_benchmark

__all__ = ["BenchArgs", "BenchOutputArgs", "bench_command", "render_markdown", "run_benchmark"]
