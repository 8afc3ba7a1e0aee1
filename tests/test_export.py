"""``prunetune merge``: merged weights equal base + adapter, reload without prunetune/peft, card."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from finetune_dirs import INSTRUCTION, make_finetune_dir
from prunetune.cli import main


def _logits(model, enc_dec: bool) -> torch.Tensor:
    ids = torch.tensor([[5, 17, 42, 9, 33, 2]])
    with torch.no_grad():
        if enc_dec:
            return model(input_ids=ids, decoder_input_ids=torch.tensor([[0, 8, 21]])).logits
        return model(input_ids=ids).logits


# A fresh interpreter where prunetune and peft cannot be imported (a None entry in
# sys.modules makes both `import` and importlib.util.find_spec treat them as absent).
# Arguments: pairs of (merged folder, "1" if encoder-decoder); prints one line per folder
# (whether config.prunetune survived) and saves the logits next to each folder.
RELOAD_SCRIPT = """
import sys
sys.modules["prunetune"] = None
sys.modules["peft"] = None
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
args = sys.argv[1:]
for folder, enc_dec in zip(args[::2], args[1::2]):
    enc_dec = enc_dec == "1"
    model = (AutoModelForSeq2SeqLM if enc_dec else AutoModelForCausalLM).from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = torch.tensor([[5, 17, 42, 9, 33, 2]])
    with torch.no_grad():
        if enc_dec:
            logits = model(input_ids=ids, decoder_input_ids=torch.tensor([[0, 8, 21]])).logits
        else:
            logits = model(input_ids=ids).logits
    model.generate(**tokenizer("hello", return_tensors="pt"), max_new_tokens=3)
    torch.save(logits, folder + ".logits.pt")
    print(getattr(model.config, "prunetune", None) is not None)
assert not [m for m in sys.modules if m and m.split(".")[0] in ("prunetune", "peft") and sys.modules[m]]
"""

CASES = {"t5": True, "llama": False}  # model type -> pruned base


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    """model type -> (finetune folder, merged folder, evaluate metrics file), merged via the CLI."""
    root = tmp_path_factory.mktemp("merge")
    result = {}
    for model_type, pruned in CASES.items():
        work = root / model_type
        work.mkdir()
        folder = make_finetune_dir(work, model_type, pruned=pruned)
        scores = {"rouge1": 30.0, "rouge2": 10.0, "rougeL": 25.0, "rougeLsum": 25.0, "bleu": 5.0, "num_examples": 3}
        eval_metrics = work / "eval.json"
        eval_metrics.write_text(json.dumps({"model": scores, "most_frequent_target": scores, "lead_1": scores,
                                            "num_examples": 3, "split": "test", "generation": {"num_beams": 6}}))
        out = work / f"merged-{model_type}"
        assert main(["merge", "--model", str(folder), "--output", str(out), "--eval-metrics", str(eval_metrics)]) == 0
        result[model_type] = (folder, out)
    return result


@pytest.mark.parametrize("model_type", list(CASES))
def test_merged_equals_adapter_model(merged, model_type):
    from prunetune.inference import load_for_inference

    folder, out = merged[model_type]
    assert {"config.json", "model.safetensors", "generation_config.json", "README.md",
            "prunetune.json", "tokenizer_config.json"} <= {p.name for p in out.iterdir()}
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())  # no temporary folder left
    peft_model, _, info = load_for_inference(folder, device="cpu")
    assert info.kind == "finetune" and (info.pruning is not None) == CASES[model_type]
    enc_dec = model_type == "t5"
    expected = _logits(peft_model, enc_dec)
    # The merge is not a no-op: the adapter changes the base's outputs.
    with peft_model.disable_adapter():
        assert not torch.allclose(_logits(peft_model, enc_dec), expected, atol=1e-3)

    # The merged folder remembers the training prompt, and prunetune loads it as "merged".
    model, _, merged_info = load_for_inference(out, device="cpu")
    assert merged_info.kind == "merged" and merged_info.prompt.instruction == INSTRUCTION
    assert merged_info.prompt.max_source_tokens == 64 and merged_info.pruning == info.pruning
    torch.testing.assert_close(_logits(model, enc_dec), expected, atol=1e-4, rtol=0)


def test_merged_folders_load_without_prunetune_or_peft(merged, tmp_path):
    from prunetune.inference import load_for_inference

    args = []
    for model_type, (_, out) in merged.items():
        args += [str(out), "1" if model_type == "t5" else "0"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", RELOAD_SCRIPT, *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(pruned) for pruned in CASES.values()]  # the layer record travels
    for model_type, (folder, out) in merged.items():
        peft_model, _, _ = load_for_inference(folder, device="cpu")
        expected = _logits(peft_model, model_type == "t5")
        torch.testing.assert_close(torch.load(f"{out}.logits.pt"), expected, atol=1e-4, rtol=0)


def test_model_card(merged, monkeypatch):
    folder, out = merged["t5"]
    card = (out / "README.md").read_text()
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta == {"base_model": str(folder.parent / "source-model"), "library_name": "transformers",
                    "tags": ["prunetune", "lora", "layer-pruning"]}
    assert "| encoder | 3 | 4 | 0,2,3 |" in body and "| decoder | 3 | 4 | 0,2,3 |" in body
    assert "| r | 4 |" in body and "| alpha | 8 |" in body and "| dropout | 0 |" in body
    assert "| target modules | q, v |" in body and "| preset | attention |" in body
    assert "| train | 3 |" in body and "| test | 3 |" in body
    assert "## Training" in body and "| train_seconds | 1.5 |" in body and "**validation**" in body
    assert "## Evaluation" in body and "| lead_1 |" in body and "most_frequent_target" in body
    assert "AutoModelForSeq2SeqLM.from_pretrained('merged-t5')" in body
    assert INSTRUCTION in body
    assert "Not pruned" in (merged["llama"][1] / "README.md").read_text()
    # The loading example in each card runs as written.
    for model_type, (_, out) in merged.items():
        body = (out / "README.md").read_text()
        code = body.split("```python\n", 1)[1].split("```", 1)[0]
        monkeypatch.chdir(out.parent)
        exec(compile(code.replace("max_new_tokens=128", "max_new_tokens=4"), "card", "exec"), {})


def test_merge_refuses_existing_output_and_non_finetune_folder(tmp_path, tiny_t5_dir, capsys):
    folder = make_finetune_dir(tmp_path, "t5")
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["merge", "--model", str(folder), "--output", str(out)]) == 2
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["merge", "--model", str(tiny_t5_dir), "--output", str(tmp_path / "m2")]) == 2
    assert main(["merge", "--model", str(folder)]) == 2
    assert not (tmp_path / "m2").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "--overwrite" in err[0] and "finetune.json" in err[1] and "--output" in err[2]
    assert main(["merge", "--model", str(folder), "--output", str(out), "--overwrite"]) == 0
    assert (out / "model.safetensors").is_file() and not (out / "keep.txt").exists()
