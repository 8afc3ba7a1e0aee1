"""`prunetune bench` end to end on a tiny LLaMA (one run per configuration, each in a child
process), the report's schema and ratios, the Markdown renderer, and argument checks.

Timings of a tiny model are noise; only the structure and the arithmetic are checked.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import runpy
import sys
from pathlib import Path

import pytest

from conftest import save_tiny_model
from prunetune.benchmark import BenchArgs, render_markdown
from prunetune.benchmark.args import ratio_label
from prunetune.benchmark.contention import (
    CONTENDED_STALL_FRACTION, MAX_SAMPLE_FACTOR, robust_median, sample_until_clean,
)
from prunetune.benchmark.report import TARGETS, check_targets, compare
from prunetune.cli import main
from prunetune.errors import UsageError

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

TOP_LEVEL_KEYS = {"schema", "created", "model", "settings", "precision", "environment", "flop_convention",
                  "training", "generation", "reference", "targets", "wall_time_s"}
TRAINING_KEYS = {"method", "pruning_ratio", "layers", "kept_layers", "trainable_params", "total_params",
                 "trainable_percent", "tokens_per_step", "step_time_s", "step_time_spread", "tokens_per_s",
                 "peak_memory_bytes", "peak_memory_kind", "peak_memory_scope", "start_memory_bytes",
                 "cuda_max_reserved_bytes",
                 "forward_flops_per_token", "flops_per_token", "flops", "contended_runs", "runs"}
COMPARISON_KEYS = {"speedup", "flop_ideal_speedup", "fraction_of_ideal", "memory_ratio", "trainable_params_ratio"}
GENERATION_CELL_KEYS = {"latency_s", "prefill_s", "decode_s_per_token", "tokens_per_s", "flops", "latencies_s",
                        "latency_spread", "contended_runs"}


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One quick bench: full, lora, pruned-1/2 and the generation pair, via the CLI."""
    root = tmp_path_factory.mktemp("bench")
    model = save_tiny_model("llama", root / "tiny-llama", num_layers=8)
    out_file = root / "results" / "bench.json"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        # Rank 2: at hidden size 32 the default r=16 would cost more FLOPs than the base weights.
        code = main(["bench", "--model", str(model), "--quick", "--ratios", "0.5", "--reference-ratio", "0.5",
                     "--lora-r", "2", "--output", str(out_file)])
    assert code == 0
    return json.loads(stdout.getvalue()), out_file


def test_report_schema(bench_run):
    report, out_file = bench_run
    assert set(report) == TOP_LEVEL_KEYS
    assert report["schema"] == "prunetune.bench/1"
    assert json.loads(out_file.read_text()) == report  # --output holds exactly what stdout printed
    assert list(report["training"]) == ["full", "lora", "pruned-1/2"]
    for entry in report["training"].values():
        assert set(entry) - {"vs_full", "vs_lora"} == TRAINING_KEYS
        assert entry["peak_memory_kind"] in ("cpu_peak_rss", "cuda_max_allocated")
        # --quick measures 2 steps, more (bounded) if other processes contend for the CPUs.
        assert len(entry["runs"]) == 1 and 2 <= len(entry["runs"][0]["step_times_s"]) <= 2 * MAX_SAMPLE_FACTOR
    assert set(report["flop_convention"]) == {"counted", "backward_rule", "summary"}
    assert report["model"]["layers"] == {"decoder": 8}


def test_configurations_are_what_they_claim(bench_run):
    training = bench_run[0]["training"]
    full, lora, pruned = training["full"], training["lora"], training["pruned-1/2"]
    assert full["trainable_params"] == full["total_params"] == bench_run[0]["model"]["total_params"]
    assert 0 < pruned["trainable_params"] < lora["trainable_params"] < full["trainable_params"]
    assert pruned["kept_layers"] == {"decoder": [0, 1, 2, 7]} and pruned["layers"] == {"decoder": 4}
    assert lora["kept_layers"] is None
    # FLOP model: full FT = 3x forward; frozen-base LoRA needs less backward; pruning removes layers.
    assert full["flops"]["total"] == 3 * full["flops"]["forward"]
    assert lora["flops_per_token"] < full["flops_per_token"]
    assert pruned["flops_per_token"] < lora["flops_per_token"]
    for entry in training.values():
        assert math.isfinite(entry["runs"][0]["loss_last"])


def test_ratios_are_computed(bench_run):
    training = bench_run[0]["training"]
    pruned = training["pruned-1/2"]
    assert "vs_full" not in training["full"] and "vs_lora" not in training["lora"]
    for base in ("full", "lora"):
        cmp = pruned[f"vs_{base}"]
        assert set(cmp) == COMPARISON_KEYS
        # One repeat: the paired median is the plain quotient.
        assert cmp["speedup"] == pytest.approx(pruned["tokens_per_s"] / training[base]["tokens_per_s"])
        assert cmp["flop_ideal_speedup"] == pytest.approx(training[base]["flops_per_token"] / pruned["flops_per_token"])
        assert cmp["fraction_of_ideal"] == pytest.approx(cmp["speedup"] / cmp["flop_ideal_speedup"])
        assert cmp["memory_ratio"] == pytest.approx(pruned["peak_memory_bytes"] / training[base]["peak_memory_bytes"])
        assert cmp["flop_ideal_speedup"] > 1


def test_generation_and_targets(bench_run):
    report = bench_run[0]
    generation = report["generation"]
    assert (generation["baseline"], generation["candidate"]) == ("unpruned", "pruned-1/2-merged")
    assert generation["models"]["pruned-1/2-merged"]["layers"] == {"decoder": 4}
    assert list(generation["batch_sizes"]) == ["1", "2"]
    for row in generation["batch_sizes"].values():
        for name in ("unpruned", "pruned-1/2-merged"):
            assert set(row[name]) == GENERATION_CELL_KEYS
        assert row["flop_ideal_speedup"] == pytest.approx(row["unpruned"]["flops"] / row["pruned-1/2-merged"]["flops"])
        assert row["flop_ideal_speedup"] > 1
    keys = [t["target"] for t in report["targets"]]
    assert keys == [t.key for t in TARGETS[:3]] + ["generation_fraction_of_ideal"] * 2
    assert all(isinstance(t["met"], bool) for t in report["targets"])


def test_render_efficiency_script(bench_run, tmp_path, monkeypatch, capsys):
    _, out_file = bench_run
    markdown = render_markdown(json.loads(out_file.read_text()))
    assert markdown.startswith("## Efficiency\n") and "| pruned 1/2 + LoRA |" in markdown
    monkeypatch.setattr(sys, "argv", ["render_efficiency.py", str(out_file)])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(BENCHMARKS / "render_efficiency.py"), run_name="__main__")
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == markdown


# ---- fast checks (no child processes) ---------------------------------------------------


def test_bad_settings_are_usage_errors():
    with pytest.raises(UsageError, match="--steps"):
        BenchArgs(steps=0)
    with pytest.raises(UsageError, match="ratios"):
        BenchArgs(ratios=[0.5, 1.0])
    with pytest.raises(UsageError, match="duplicates"):
        BenchArgs(ratios=[0.5, 0.5])
    quick = BenchArgs(quick=True, steps=50)
    assert (quick.steps, quick.repeats, quick.idle_wait) == (2, 1, 0.0)


def test_unusable_ratio_fails_before_any_run(tmp_path, capsys):
    model = save_tiny_model("llama", tmp_path / "llama4", num_layers=4)
    code = main(["bench", "--model", str(model), "--quick", "--ratios", "0.5"])
    assert code == 2 and "paper pattern" in capsys.readouterr().err


def test_cuda_request_without_gpu(tmp_path, capsys):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    code = main(["bench", "--model", str(tmp_path), "--device", "cuda"])
    assert code == 2 and "no CUDA device" in capsys.readouterr().err


def test_ratio_labels():
    assert [ratio_label(r) for r in (1 / 4, 1 / 3, 0.5, 0.3, 0.37)] == ["1/4", "1/3", "1/2", "3/10", "0.37"]


def test_comparison_and_targets_arithmetic():
    def entry(tokens_per_s, memory, flops_per_token, trainable_params):
        runs = [{"tokens_per_s_run": t, "peak_memory_bytes": m} for t, m in zip(tokens_per_s, memory)]
        return {"tokens_per_step": 512, "flops_per_token": flops_per_token, "trainable_params": trainable_params,
                "runs": runs}

    # Three repeats; the machine is slower in the second. Per-repeat ratios: 2.5, 2.5, 3.0.
    base = entry([100.0, 50.0, 100.0], [1000, 1000, 1000], 600.0, 100)
    pruned = entry([250.0, 125.0, 300.0], [400, 400, 500], 200.0, 1)
    cmp = compare(pruned, base)
    assert cmp == {"speedup": 2.5, "flop_ideal_speedup": 3.0, "fraction_of_ideal": 2.5 / 3.0, "memory_ratio": 0.4,
                   "trainable_params_ratio": 0.01}
    targets = check_targets({"pruned-1/3": {"vs_full": cmp, "vs_lora": cmp}}, None, "pruned-1/3")
    assert [t["met"] for t in targets] == [True, True, False]


def test_robust_median_drops_contended_steps():
    busy = CONTENDED_STALL_FRACTION * 10
    assert robust_median([1.0, 1.2, 9.0], [0.0, 0.01, busy]) == (1.1, 2, False)
    assert robust_median([1.0, 8.0, 9.0], [0.0, busy, busy]) == (8.0, 1, True)
    assert robust_median([1.0, 3.0], [None, None]) == (2.0, 2, False)


def test_contended_samples_are_retaken_within_a_bound():
    busy = CONTENDED_STALL_FRACTION * 10
    stalls = iter([busy, 0.0, busy, 0.0, 0.0, 0.0])
    assert sample_until_clean(lambda: next(stalls), 2, lambda s: s) == [busy, 0.0, busy, 0.0]
    always_busy = sample_until_clean(lambda: busy, 2, lambda s: s)
    assert len(always_busy) == MAX_SAMPLE_FACTOR * 2
    assert sample_until_clean(lambda: None, 3, lambda s: s) == [None] * 3  # no PSI: exactly as asked


@pytest.mark.gpu
def test_bench_on_cuda(tmp_path):
    model = save_tiny_model("llama", tmp_path / "tiny-llama", num_layers=8)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["bench", "--model", str(model), "--quick", "--ratios", "0.5", "--device", "cuda"]) == 0
    report = json.loads(stdout.getvalue())
    assert report["precision"] == "bf16"
    assert {e["peak_memory_kind"] for e in report["training"].values()} == {"cuda_max_allocated"}


def test_masked_dropout_matches_dropout_semantics():
    import torch

    from prunetune.training.dropout import MaskedDropout, use_masked_lora_dropout

    torch.manual_seed(0)
    x = torch.ones(200_000, requires_grad=True)
    dropout = MaskedDropout(0.1)
    y = dropout(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.9, abs=0.005)
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.9))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(x * keep / (1 - p))/dx = keep / (1 - p)
    assert dropout.eval()(x) is x

    from peft import LoraConfig, get_peft_model

    from conftest import tiny_model

    model = get_peft_model(tiny_model("llama", 2), LoraConfig(r=2, lora_dropout=0.1,
                                                              target_modules=["gate_proj", "up_proj", "down_proj"]))
    assert use_masked_lora_dropout(model) == 6
    assert all(isinstance(m.lora_dropout["default"], MaskedDropout) for m in model.modules()
               if hasattr(m, "lora_dropout"))
