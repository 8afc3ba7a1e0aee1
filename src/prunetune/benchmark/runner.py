"""``prunetune bench``: plan the configurations, run each in its own process, interleaved.

Training configurations, all on the same model, synthetic batch, precision and step
counts: ``full`` (full fine-tuning, AdamW on every parameter), ``lora`` (the paper's
FFN LoRA on the unpruned model) and ``pruned-<ratio>`` (paper-pattern pruning, then the
same LoRA) for each ``--ratios`` value. Generation: ``unpruned`` vs
``pruned-<reference ratio>-merged``. Repeats are interleaved (A B C D E, A B C D E, ...)
so slow drifts (thermal, other load) spread over all configurations instead of biasing one.
On a shared machine each run first waits (bounded) for other processes to leave the
CPUs, and a run that was contended anyway is run once more (:mod:`.contention`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from prunetune.architectures import get_family, stack_depths
from prunetune.benchmark.args import BenchArgs, BenchOutputArgs, ratio_label
from prunetune.benchmark.contention import wait_for_idle
from prunetune.benchmark.report import SCHEMA, check_targets, render_markdown, summarize_generation, summarize_training
from prunetune.benchmark.shapes import paper_config
from prunetune.benchmark.worker import RunSpec
from prunetune.errors import UsageError
from prunetune.flops import convention
from prunetune.models import ModelArgs, load_config, resolve_model
from prunetune.pruning import PruneArgs, plan_keep_lists

logger = logging.getLogger(__name__)

# How many lines of a failed run's log to show.
_LOG_TAIL_LINES = 25


def pruned_name(ratio: float) -> str:
    return f"pruned-{ratio_label(ratio)}"


def check_model(model: ModelArgs, bench: BenchArgs) -> dict[str, Any]:
    """Resolve the model once (a built-in is converted here, not in every run) and check the plan.

    Returns:
        ``name``, ``source`` (folder or ``shape``), ``family``, ``model_type``, ``layers``.

    Raises:
        UsageError: for an unusable model, an unsupported family, or a ratio the paper
            pattern cannot apply to this depth.
    """
    import torch

    if bench.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    if bench.shape != "none":
        config, name, source = paper_config(bench.shape), bench.shape, "random weights, paper shape"
    else:
        source = resolve_model(model.model)
        config, name = load_config(source), model.model
    family = get_family(config)
    for ratio in {*bench.ratios, bench.reference_ratio}:
        plan_keep_lists(config, PruneArgs(strategy="paper", ratio=ratio))
    return {"name": name, "source": source, "family": family.name, "model_type": config.model_type,
            "layers": stack_depths(config)}


def plan_runs(model: ModelArgs, bench: BenchArgs) -> tuple[list[RunSpec], list[RunSpec]]:
    """The training and generation runs of one repeat, in execution order."""
    common = {"model": dataclasses.asdict(model), "bench": bench.as_dict()}
    train = [RunSpec("train", "full", "full", 0.0, **common), RunSpec("train", "lora", "lora", 0.0, **common)]
    train += [RunSpec("train", pruned_name(r), "lora", r, **common) for r in bench.ratios]
    generate = []
    if bench.generation:
        generate = [RunSpec("generate", "unpruned", "base", 0.0, **common),
                    RunSpec("generate", f"{pruned_name(bench.reference_ratio)}-merged", "merged",
                            bench.reference_ratio, **common)]
    return train, generate


def run_child(spec: RunSpec, workdir: Path, index: int) -> dict[str, Any]:
    """Run ``spec`` in a fresh ``python -m prunetune.benchmark`` process and return its record.

    Raises:
        UsageError: when the run reports one (exit code 2).
        RuntimeError: for any other failure, with the end of the run's log.
    """
    spec_path, result_path, log_path = (workdir / f"{index:03d}.{ext}" for ext in ("spec.json", "result.json", "log"))
    spec_path.write_text(spec.dumps())
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "prunetune.benchmark", str(spec_path), str(result_path)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            proc.wait()
        except BaseException:  # Ctrl-C or SIGTERM: do not leave the run behind
            proc.kill()
            proc.wait()
            raise
    text = log_path.read_text(errors="replace")
    logger.debug("%s", text)
    if proc.returncode == UsageError.exit_code:
        last = text.strip().splitlines()[-1] if text.strip() else "the run failed"
        raise UsageError(last.removeprefix("error: "))
    if proc.returncode != 0 or not result_path.is_file():
        tail = "\n".join(text.splitlines()[-_LOG_TAIL_LINES:])
        raise RuntimeError(f"benchmark run '{spec.name}' failed with exit code {proc.returncode}:\n{tail}")
    return json.loads(result_path.read_text())


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while runs are going, so the running child is stopped and
    the temporary folder removed (the CLI then exits with 130)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def environment(device: str) -> dict[str, Any]:
    """Versions, device and machine load, recorded with every report."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    versions = {}
    for package in ("prunetune", "torch", "transformers", "peft"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return {
        "device": "cuda" if cuda else "cpu",
        "device_name": torch.cuda.get_device_name() if cuda else _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _contended(result: dict[str, Any]) -> bool:
    if result["kind"] == "train":
        return bool(result["contended"])
    return any(r["contended"] for r in result["batch_sizes"].values())


def _progress(index: int, total: int, repeat: int, repeats: int, result: dict[str, Any]) -> None:
    peak = result["memory"]["peak_memory_bytes"] / 2**30
    if result["kind"] == "train":
        detail = f"{result['step_time_s']:.3f} s/step, {result['tokens_per_s']:.0f} tokens/s, peak {peak:.2f} GiB"
    else:
        detail = ", ".join(f"batch {b}: {r['latency_s']:.2f} s" for b, r in result["batch_sizes"].items())
    if _contended(result):
        detail += " (CONTENDED: other processes shared the CPUs during most steps)"
    logger.info("bench [%d/%d] %s (repeat %d/%d): %s", index, total, result["name"], repeat, repeats, detail)


def run_benchmark(model: ModelArgs, bench: BenchArgs) -> dict[str, Any]:
    """Run every configuration ``bench.repeats`` times, interleaved, and build the report.

    Args:
        model: which model (ignored with ``bench.shape``).
        bench: what to measure.

    Returns:
        The JSON-ready report (schema ``prunetune.bench/1``).
    """
    started = time.perf_counter()
    info = check_model(model, bench)
    env = environment(bench.device)
    train_specs, generate_specs = plan_runs(model, bench)
    train_runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in train_specs}
    generate_runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in generate_specs}
    per_repeat = train_specs + generate_specs
    total = len(per_repeat) * bench.repeats
    logger.info("bench: %s, %d configurations x %d repeats, each in its own process", info["name"],
                len(per_repeat), bench.repeats)
    waited, retried = 0.0, 0
    with _sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="prunetune-bench-") as tmp:
        for repeat in range(bench.repeats):
            for position, spec in enumerate(per_repeat):
                index = repeat * len(per_repeat) + position + 1
                if bench.idle_wait:
                    seconds = wait_for_idle(bench.idle_wait)
                    if seconds >= 2:
                        logger.info("bench: waited %.0f s for other processes to leave the CPUs", seconds)
                    waited += seconds
                result = run_child(spec, Path(tmp), index)
                _progress(index, total, repeat + 1, bench.repeats, result)
                if bench.idle_wait and _contended(result):
                    # Once, after the machine calms down; the repeat keeps its place in the
                    # interleaved order, so its paired ratios still compare neighbours.
                    waited += wait_for_idle(bench.idle_wait)
                    result = run_child(spec, Path(tmp), index)
                    retried += 1
                    _progress(index, total, repeat + 1, bench.repeats, result)
                (train_runs if spec.kind == "train" else generate_runs)[spec.name].append(result)
    env["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    env["idle_wait_s"] = waited
    env["contended_runs_retried"] = retried

    training = summarize_training(train_runs)
    generation = None
    if generate_specs:
        generation = summarize_generation(generate_runs, generate_specs[0].name, generate_specs[1].name,
                                          bench.prompt_length, bench.new_tokens)
    first = train_runs["full"][0]
    info["total_params"] = first["total_params"]
    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": info,
        "settings": bench.as_dict(),
        "precision": first["precision"],
        "environment": env,
        "flop_convention": convention(),
        "training": training,
        "generation": generation,
        "reference": pruned_name(bench.reference_ratio),
        "targets": check_targets(training, generation, pruned_name(bench.reference_ratio)),
        "wall_time_s": time.perf_counter() - started,
    }


def _check_output_file(path: Path) -> None:
    if path.is_dir():
        raise UsageError(f"--output {path} is a folder; give a file name (e.g. bench.json)")
    parent = path.absolute().parent
    if parent.exists() and not os.access(parent, os.W_OK):
        raise UsageError(f"cannot write to {parent}")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (a sibling temp file, then rename)."""
    path.absolute().parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.absolute().parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def bench_command(model: ModelArgs, bench: BenchArgs, output: BenchOutputArgs) -> int:
    """``prunetune bench``: print the JSON report on stdout (and a Markdown summary on stderr)."""
    if output.output is not None:
        _check_output_file(output.output)
    report = run_benchmark(model, bench)
    print(json.dumps(report, indent=2), file=sys.stdout)
    if output.output is not None:
        write_json(output.output, report)
        logger.info("wrote %s", output.output)
    logger.info("\n%s", render_markdown(report))
    return 0
