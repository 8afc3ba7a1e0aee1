"""`prunetune prune` and `prunetune info` end to end, including every bad input."""

from __future__ import annotations

import json
import os

import pytest
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from conftest import save_tiny_model
from prunetune.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_prune_llama_paper_pattern(tmp_path, capsys):
    src = save_tiny_model("llama", tmp_path / "llama8", num_layers=8)
    dst = tmp_path / "pruned"
    code, out, err = _run(capsys, "prune", "--model", str(src), "--strategy", "paper", "--ratio", "0.25",
                          "--output", str(dst))
    assert code == 0, err
    assert "| decoder | 8 -> 6 | 0,1,2,4,6,7 |" in out
    model = AutoModelForCausalLM.from_pretrained(dst)
    assert model.config.num_hidden_layers == 6 and len(model.model.layers) == 6
    assert AutoTokenizer.from_pretrained(dst)("abc")["input_ids"]
    record = json.loads((dst / "pruning.json").read_text())
    assert record["kept_layers"] == {"decoder": [0, 1, 2, 4, 6, 7]}
    assert record["source_model"] == str(src)
    assert (dst / "model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_prune_t5_explicit_lists_drop_block_zero(tiny_t5_dir, tmp_path, capsys):
    dst = tmp_path / "pruned-t5"
    code, _, err = _run(capsys, "prune", "--model", str(tiny_t5_dir), "--keep-encoder", "1,3",
                        "--keep-decoder", "0,1,2", "--output", str(dst))
    assert code == 0, err
    model = AutoModelForSeq2SeqLM.from_pretrained(dst)
    assert (model.config.num_layers, model.config.num_decoder_layers) == (2, 3)
    assert model.encoder.block[0].layer[0].SelfAttention.has_relative_attention_bias
    out = model.generate(input_ids=AutoTokenizer.from_pretrained(dst)("hello", return_tensors="pt")["input_ids"],
                         max_new_tokens=4)
    assert out.shape[0] == 1


def test_dry_run_writes_nothing(tiny_llama_dir, tmp_path, capsys):
    code, out, _ = _run(capsys, "prune", "--model", str(tiny_llama_dir), "--keep-decoder", "0,3", "--dry-run")
    assert code == 0 and "| decoder | 4 -> 2 | 0,3 |" in out


def test_overwrite(tiny_llama_dir, tmp_path, capsys):
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "keep.txt").write_text("user data")
    code, _, err = _run(capsys, "prune", "--model", str(tiny_llama_dir), "--keep-decoder", "0", "--output", str(dst))
    assert code == 2 and "not empty" in err
    assert (dst / "keep.txt").read_text() == "user data"
    code, _, err = _run(capsys, "prune", "--model", str(tiny_llama_dir), "--keep-decoder", "0", "--output", str(dst),
                        "--overwrite")
    assert code == 0, err
    assert not (dst / "keep.txt").exists() and (dst / "config.json").is_file()


def _bert_folder(path):
    from transformers import BertConfig, BertForMaskedLM

    BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=32)).save_pretrained(path)
    return path


@pytest.mark.parametrize("case, flags, message", [
    ("missing", ["--keep-decoder", "0"], "does not exist"),
    ("not_a_model", ["--keep-decoder", "0"], "not a Hugging Face model folder"),
    ("unsupported", ["--keep-decoder", "0"], "unsupported architecture 'bert'"),
    ("ok", ["--keep-decoder", "0,9"], "out of range"),
    ("ok", ["--keep-decoder", "1,1"], "twice"),
    ("ok", ["--keep-decoder", "2,1"], "ascending"),
    ("ok", ["--keep-decoder", ","], "empty"),
    ("ok", ["--keep-decoder", "a,b"], "not a valid int"),
    ("ok", ["--keep-encoder", "0"], "decoder-only"),
    ("ok", ["--strategy", "paper", "--ratio", "1"], "ratio"),
    ("ok", ["--strategy", "paper", "--ratio", "-0.2"], "ratio"),
    ("ok", [], "nothing to prune"),
])
def test_bad_input_is_one_line_exit_2_and_no_output(case, flags, message, tiny_llama_dir, tmp_path, capsys):
    src = {"missing": tmp_path / "nope", "not_a_model": tmp_path, "ok": tiny_llama_dir,
           "unsupported": _bert_folder(tmp_path / "bert") if case == "unsupported" else None}[case]
    dst = tmp_path / "out"
    code, _, err = _run(capsys, "prune", "--model", str(src), *flags, "--output", str(dst))
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not dst.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_unreadable_model_folder(tiny_llama_dir, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root can read anything")
    os.chmod(tiny_llama_dir, 0)
    try:
        code, _, err = _run(capsys, "prune", "--model", str(tiny_llama_dir), "--keep-decoder", "0", "--output",
                            str(tmp_path / "o"))
    finally:
        os.chmod(tiny_llama_dir, 0o755)
    assert code == 2 and "not readable" in err


def test_info_table_and_json(tmp_path, capsys):
    folder = save_tiny_model("bart", tmp_path / "bart")
    code, out, _ = _run(capsys, "info", str(folder))
    assert code == 0 and "family: bart" in out and "| encoder | 4 |" in out and "| decoder | 4 |" in out
    code, out, _ = _run(capsys, "info", str(folder), "--json")
    data = json.loads(out)
    parts = sum(s["params"] for s in data["stacks"].values()) + data["embeddings"] + data["head"] + data["other"]
    assert parts == data["total"]
    assert data["stacks"]["encoder"]["layers"] == 4


def test_info_on_pruned_model_reports_kept_layers(tiny_llama_dir, tmp_path, capsys):
    dst = tmp_path / "p"
    assert main(["prune", "--model", str(tiny_llama_dir), "--keep-decoder", "1,2", "--output", str(dst)]) == 0
    capsys.readouterr()
    code, out, _ = _run(capsys, "info", str(dst))
    assert code == 0 and "pruned: kept decoder 1,2" in out


def test_recipe_drives_prune(tiny_llama_dir, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model:\n  model: {tiny_llama_dir}\nprune:\n  strategy: top\n  ratio: 0.5\n")
    code, out, err = _run(capsys, "prune", "--config", str(recipe), "--output", str(tmp_path / "o"))
    assert code == 0, err and "0,3" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("prune:\n  ratioo: 0.5\n")
    code, _, err = _run(capsys, "prune", "--config", str(bad), "--output", str(tmp_path / "o2"))
    assert code == 2 and "unknown recipe key 'prune.ratioo'" in err


def test_help_on_every_verb(capsys):
    from prunetune.cli import COMMANDS, _available

    for verb in _available():
        with pytest.raises(SystemExit) as exc:
            main([verb, "--help"])
        assert exc.value.code == 0
    assert set(_available()) <= set(COMMANDS)
