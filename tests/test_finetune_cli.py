"""``prunetune finetune`` end to end on tiny random models: the exact files it writes,
its refusals of bad input, and Ctrl-C + ``--resume``.
"""

from __future__ import annotations

import importlib.util
import json
import random

import pytest

from prunetune.cli import main
from prunetune.config import build_command_kwargs
from prunetune.training import finetune_command, partial_dir

# One thread: tiny models gain nothing from more, and two threads on a busy two-core
# machine spin against each other (a 32-wide linear then takes milliseconds).
FAST = ["--max-steps", "4", "--num-threads", "1", "--eval-steps", "2", "--batch-size", "2", "--max-new-tokens", "8",
        "--max-source-tokens", "48", "--max-target-tokens", "16", "--eval-max-examples", "2"]
RUN_KEYS = {"base_model", "source_model", "is_encoder_decoder", "pruning", "prompt", "lora", "args"}
METRIC_KEYS = {"trainable_params", "total_params", "original_total_params", "trainable_percent_of_original",
               "layers_kept", "num_layers", "peak_memory_bytes", "peak_memory_kind", "train_seconds",
               "train_samples_per_second", "train_tokens_per_second", "train_steps", "train_loss",
               "eval_seconds", "best_step", "best_metric", "validation", "device", "precision", "versions"}
WORDS = "lung heart normal effusion clear opacity mild no acute nodule left right base".split()


@pytest.fixture
def data_file(tmp_path):
    rng = random.Random(0)
    path = tmp_path / "pairs.jsonl"
    with path.open("w") as f:
        for _ in range(24):
            source = " ".join(rng.choices(WORDS, k=10))
            f.write(json.dumps({"source": source, "target": " ".join(source.split()[:3])}) + "\n")
    return path


def run(model_dir, data_file, out, *extra):
    return main(["finetune", "--model", str(model_dir), "--dataset", str(data_file), "--output", str(out),
                 *FAST, *extra])


def read(folder, name):
    return json.loads((folder / name).read_text())


def test_t5_pruned_run_writes_the_run_folder(tiny_t5_dir, data_file, tmp_path):
    out = tmp_path / "run"
    assert run(tiny_t5_dir, data_file, out, "--keep-decoder", "0,2") == 0
    # logs/ exists when TensorBoard (the optional `logging` extra) is installed: --report-to auto.
    has_tensorboard = importlib.util.find_spec("tensorboard") is not None
    expected = ["adapter", "base", "data", "finetune.json"] + (["logs"] if has_tensorboard else []) + ["metrics.json"]
    assert sorted(p.name for p in out.iterdir()) == expected
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "adapter" / "tokenizer_config.json").is_file()
    assert (out / "base" / "config.json").is_file() and (out / "base" / "pruning.json").is_file()
    assert {"train.jsonl", "validation.jsonl", "test.jsonl"} <= {p.name for p in (out / "data").iterdir()}
    assert not partial_dir(out).exists()

    run_info = read(out, "finetune.json")
    assert set(run_info) == RUN_KEYS
    assert run_info["base_model"] == "base"
    assert run_info["source_model"] == str(tiny_t5_dir)
    assert run_info["is_encoder_decoder"] is True
    assert run_info["pruning"]["kept_layers"] == {"encoder": [0, 1, 2, 3], "decoder": [0, 2]}
    assert run_info["lora"]["lora_r"] == 16 and run_info["args"]["train"]["max_steps"] == 4
    # The recipe is complete: it rebuilds every argument group of the command.
    rebuilt = build_command_kwargs(finetune_command, recipe=run_info["args"])
    assert rebuilt["prune"].keep_decoder == [0, 2] and rebuilt["train"].eval_steps == 2

    metrics = read(out, "metrics.json")
    assert METRIC_KEYS <= set(metrics)
    assert metrics["num_layers"] == {"encoder": 4, "decoder": 2}
    assert metrics["layers_kept"]["decoder"] == [0, 2]
    assert metrics["train_steps"] == 4 and metrics["best_step"] in (2, 4)
    assert metrics["peak_memory_kind"] == "cpu_peak_rss" and metrics["peak_memory_bytes"] > 0
    assert metrics["lora_dropout_impl"] == "masked"  # CPU: multi-threaded mask draw (same distribution)
    assert metrics["trainable_params"] < metrics["total_params"] < metrics["original_total_params"]
    assert metrics["trainable_percent_of_original"] == pytest.approx(
        100 * metrics["trainable_params"] / metrics["original_total_params"])
    assert {"rouge1", "rougeL", "bleu"} <= set(metrics["validation"])
    assert metrics["best_metric"] == pytest.approx(metrics["validation"]["rouge1"])
    assert set(metrics["versions"]) >= {"torch", "transformers", "peft"}


def test_llama_unpruned_run_selects_on_loss(tiny_llama_dir, data_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(tiny_llama_dir, data_file, out, "--metric-for-best", "loss", "--report-to", "none") == 0
    assert sorted(p.name for p in out.iterdir()) == ["adapter", "data", "finetune.json", "metrics.json"]
    run_info = read(out, "finetune.json")
    assert run_info["base_model"] == str(tiny_llama_dir) and run_info["pruning"] is None
    assert run_info["is_encoder_decoder"] is False
    metrics = read(out, "metrics.json")
    # Selected on loss, yet the kept adapter's generation scores are reported.
    assert metrics["metric_for_best"] == "loss" and "rouge1" in metrics["validation"]
    assert metrics["layers_kept"] == {"decoder": [0, 1, 2, 3]}
    assert metrics["original_total_params"] + metrics["trainable_params"] == metrics["total_params"]
    assert "trainable parameters" in capsys.readouterr().out


def test_without_validation_split_the_last_adapter_is_kept(tiny_llama_dir, data_file, tmp_path):
    out = tmp_path / "run"
    assert run(tiny_llama_dir, data_file, out, "--split-ratios", "0.9,0,0.1", "--report-to", "none") == 0
    metrics = read(out, "metrics.json")
    assert metrics["validation"] is None and metrics["best_metric"] is None
    assert metrics["best_step"] == metrics["train_steps"] == 4
    assert (out / "data" / "validation.jsonl").read_text() == ""


@pytest.mark.parametrize("case", ["lora_target", "missing_data", "non_empty_output"])
def test_bad_input_exits_2_and_writes_nothing(case, tiny_llama_dir, data_file, tmp_path, capsys):
    out = tmp_path / "run"
    extra = []
    if case == "lora_target":
        extra = ["--lora-targets", "no_such_layer"]
    elif case == "missing_data":
        data_file = tmp_path / "missing.jsonl"
    else:
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    assert run(tiny_llama_dir, data_file, out, *extra) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("prunetune finetune: error:")
    assert not partial_dir(out).exists()
    if case == "non_empty_output":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert not out.exists()


def test_ctrl_c_keeps_a_checkpoint_and_resume_finishes(tiny_llama_dir, data_file, tmp_path, monkeypatch):
    from prunetune.training.trainer import FinetuneTrainer

    original_step = FinetuneTrainer.training_step

    def interrupted_step(self, *args, **kwargs):
        if self.state.global_step == 2:
            raise KeyboardInterrupt
        return original_step(self, *args, **kwargs)

    out = tmp_path / "run"
    monkeypatch.setattr(FinetuneTrainer, "training_step", interrupted_step)
    assert run(tiny_llama_dir, data_file, out, "--report-to", "none") == 130
    partial = partial_dir(out)
    assert not out.exists()
    assert (partial / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    monkeypatch.setattr(FinetuneTrainer, "training_step", original_step)

    # Without --resume the interrupted run is neither silently resumed nor discarded.
    assert run(tiny_llama_dir, data_file, out, "--report-to", "none") == 2
    # A different command must not continue it.
    assert run(tiny_llama_dir, data_file, out, "--report-to", "none", "--resume", "--lora-r", "8") == 2
    assert partial.exists()

    assert run(tiny_llama_dir, data_file, out, "--report-to", "none", "--resume") == 0
    assert not partial.exists()
    metrics = read(out, "metrics.json")
    assert metrics["resumed_from_step"] == 2 and metrics["train_steps"] == 4
    assert not (out / "checkpoints").exists()
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
