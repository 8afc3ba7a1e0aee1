"""`prunetune run` end to end on a tiny LLaMA: both arms, tests, merge, report."""

from __future__ import annotations

import json

import pytest
import yaml

from prunetune.cli import main
from prunetune.pipeline import quality_kept


def _write_data(path, n=40):
    rows = []
    for i in range(n):
        finding = ["clear lungs", "small left effusion", "enlarged heart", "right lower lobe opacity"][i % 4]
        rows.append({"source": f"Synthetic report {i}: {finding}. No other change.", "target": finding,
                     "subset": "normal" if i % 4 == 0 else "abnormal"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_run_end_to_end(tiny_llama_dir, tmp_path, capsys):
    data = _write_data(tmp_path / "pairs.jsonl")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"model": str(tiny_llama_dir)},
        "prune": {"keep_decoder": [0, 3]},
        "data": {"dataset": str(data)},
        "prompt": {"max_source_tokens": 64, "max_target_tokens": 16},
        "train": {"max_steps": 2, "batch_size": 4, "eval_steps": 2, "eval_max_examples": 2, "warmup_steps": 0,
                  "report_to": "none"},
        "generation": {"max_new_tokens": 4},
        "run": {"test_num_beams": 1, "test_max_new_tokens": 4, "test_no_repeat_ngram_size": 0},
    }))
    run_dir = tmp_path / "run"
    code = main(["run", str(recipe), "--run-dir", str(run_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    for name in ("results.json", "report.md", "recipe.yaml", "data/test.jsonl", "baseline/metrics.json",
                 "pruned/metrics.json", "pruned/base/config.json", "pruned-test/metrics.json",
                 "baseline-test/predictions.jsonl", "untuned-original-test/metrics.json",
                 "untuned-pruned-test/metrics.json", "merged/config.json", "merged/README.md"):
        assert (run_dir / name).exists(), name
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["arms"]) == {"baseline", "pruned"}
    assert results["arms"]["pruned"]["num_layers"] == {"decoder": 2}
    assert results["arms"]["baseline"]["num_layers"] == {"decoder": 4}
    for arm in results["arms"].values():
        for key in ("trainable_percent_of_original", "peak_memory_bytes", "train_seconds",
                    "train_tokens_per_second"):
            assert arm[key] is not None and arm[key] > 0, key
        assert "rougeL" in arm["test"]
    assert set(results["trivial"]) == {"most_frequent_target", "lead_1"}
    assert set(results["untuned"]) == {"original", "pruned"}
    assert set(results["quality_kept"]) <= {"rouge1", "rouge2", "rougeL", "rougeLsum", "bleu"}
    assert results["by_subset"]["labels"] and set(results["by_subset"]["labels"]) <= {"normal", "abnormal"}
    rows = results["by_subset"]["rows"]
    for label, kept in results["by_subset"]["rougeL_kept"].items():  # labels where the baseline scored > 0
        assert kept == pytest.approx(100 * rows["LoRA pruned"][label] / rows["LoRA baseline"][label])
    frequent = results["trivial"]["most_frequent_target"]["rougeL"]
    assert results["rougeL_over_most_frequent"] == {
        name: pytest.approx(arm["test"]["rougeL"] - frequent) for name, arm in results["arms"].items()}
    report = (run_dir / "report.md").read_text()
    assert "| LoRA pruned |" in report and "| most frequent target |" in report and "| lead 1 |" in report
    assert "LoRA baseline" in out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]


def test_run_bad_recipe_key_leaves_nothing(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("train:\n  max_stepz: 3\n")
    code = main(["run", str(recipe), "--run-dir", str(tmp_path / "r")])
    _, err = capsys.readouterr()
    assert code == 2 and "unknown recipe key 'train.max_stepz'" in err
    assert not (tmp_path / "r").exists()


def test_run_missing_data_leaves_nothing(tmp_path, capsys):
    code = main(["run", "--dataset", str(tmp_path / "missing.jsonl"), "--run-dir", str(tmp_path / "r")])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_quality_kept():
    assert quality_kept({"rouge1": 46.0, "rougeL": 40.0}, {"rouge1": 50.0, "rougeL": 40.0, "bleu": 0.0}) == {
        "rouge1": 92.0, "rougeL": 100.0}


def test_report_shows_kept_by_subset_and_margin_over_the_commonest_answer():
    from prunetune.pipeline import render_report

    def scores(rouge_l):
        return {"rouge1": rouge_l, "rouge2": rouge_l / 2, "rougeL": rouge_l, "bleu": 1.0}

    results = {
        "recipe": "synthetic", "model": "m", "data": {"source": "d", "sizes": {"train": 8, "validation": 1, "test": 4}},
        "test_generation": {"num_beams": 1, "max_new_tokens": 8, "no_repeat_ngram_size": 3},
        "arms": {"baseline": {"test": scores(40.0)}, "pruned": {"test": scores(36.0)}},
        "trivial": {"most_frequent_target": scores(38.0), "lead_1": scores(5.0)},
        "quality_kept": {"rougeL": 90.0},
        "by_subset": {"labels": ["abnormal", "normal"],
                      "rows": {"LoRA baseline": {"abnormal": 30.0, "normal": 60.0},
                               "LoRA pruned": {"abnormal": 27.6, "normal": 60.0}},
                      "rougeL_kept": {"abnormal": 92.0, "normal": 100.0}},
        "rougeL_over_most_frequent": {"baseline": 2.0, "pruned": -2.0},
        "wall_seconds": 1.0,
    }
    report = render_report(results)
    assert "| ROUGE-L kept (pruned / baseline) | 92.0% | 100.0% |" in report
    assert "LoRA baseline +2.00, LoRA pruned -2.00" in report
    del results["rougeL_over_most_frequent"], results["by_subset"]["rougeL_kept"]  # results.json of older runs
    assert "ROUGE-L kept (pruned" not in render_report(results)
