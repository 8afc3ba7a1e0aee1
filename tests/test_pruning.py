"""Layer pruning: exact equivalence with a fresh shallower model, KV cache, reload, bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import ALL_FAMILIES, ENCODER_DECODER, tiny_config, tiny_model
from prunetune.errors import UsageError
from prunetune.pruning import PruneArgs, plan_keep_lists, prune_layers, pruning_record, validate_keep

# Written out here rather than read from prunetune's table, so the test checks the table.
DEPTH_FIELDS = {
    "t5": ("num_layers", "num_decoder_layers"), "flan-t5": ("num_layers", "num_decoder_layers"),
    "mt5": ("num_layers", "num_decoder_layers"), "bart": ("encoder_layers", "decoder_layers"),
    "mbart": ("encoder_layers", "decoder_layers"), "pegasus": ("encoder_layers", "decoder_layers"),
    "gpt2": (None, "n_layer"),
}
KEEP = {"encoder": [1, 3, 4], "decoder": [0, 2, 5]}  # drops T5 encoder block 0 (owner of the position bias)


def _inputs(config):
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16, 17, 18]])
    kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if config.is_encoder_decoder:
        kwargs["decoder_input_ids"] = torch.tensor([[0, 4, 5, 6], [0, 7, 8, 9]])
    return kwargs


def _fresh_model(family: str, keep: dict[str, list[int]]):
    config = tiny_config(family, num_layers=6)
    enc_field, dec_field = DEPTH_FIELDS.get(family, (None, "num_hidden_layers"))
    if enc_field:
        setattr(config, enc_field, len(keep["encoder"]))
    setattr(config, dec_field, len(keep["decoder"]))
    if hasattr(config, "layer_types") and not config.is_encoder_decoder:
        config.layer_types = [config.layer_types[i] for i in keep["decoder"]]
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    cls = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    return cls.from_config(config).eval()


_LAYER_KEY = re.compile(r"^(.*?(?:block|layers|\bh))\.(\d+)\.(.*)$")


def _remap_state_dict(state_dict, keep):
    """Original weights renamed to the shallower model's indices (by hand, independently)."""
    out = {}
    for key, value in state_dict.items():
        m = _LAYER_KEY.match(key)
        if not m:
            out[key] = value
            continue
        prefix, idx, rest = m.group(1), int(m.group(2)), m.group(3)
        stack = "encoder" if "encoder" in prefix else "decoder"
        if "relative_attention_bias" in rest:  # T5: owned by the first block of each stack
            out[f"{prefix}.0.{rest}"] = value
        elif idx in keep[stack]:
            out[f"{prefix}.{keep[stack].index(idx)}.{rest}"] = value
    return out


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_pruned_equals_fresh_shallow_model(family):
    original = tiny_model(family)
    keep = dict(KEEP) if family in ENCODER_DECODER else {"decoder": KEEP["decoder"]}
    expected_state = _remap_state_dict(original.state_dict(), keep)
    pruned = prune_layers(original, keep_encoder=keep.get("encoder"), keep_decoder=keep["decoder"])
    fresh = _fresh_model(family, keep)
    fresh.load_state_dict(expected_state, strict=True)
    inputs = _inputs(pruned.config)
    with torch.no_grad():
        torch.testing.assert_close(pruned(**inputs).logits, fresh(**inputs).logits, atol=1e-6, rtol=1e-5)
    assert pruned.num_parameters() == fresh.num_parameters()
    assert pruning_record(pruned)["kept_layers"] == keep


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_generate_with_and_without_cache_agree(family):
    model = tiny_model(family, seed=1)
    enc_dec = model.config.is_encoder_decoder
    prune_layers(model, keep_encoder=[0, 2] if enc_dec else None, keep_decoder=[1, 3, 4])
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, min_new_tokens=10,
                  do_sample=False, pad_token_id=0)
    cached = model.generate(**kwargs, use_cache=True)
    uncached = model.generate(**kwargs, use_cache=False)
    assert torch.equal(cached, uncached)
    for i, block in enumerate(model.base_model.layers if hasattr(model.base_model, "layers") else []):
        assert all(m.layer_idx == i for m in block.modules() if hasattr(m, "layer_idx"))


def test_pruning_twice_records_original_indices():
    model = tiny_model("llama", num_layers=8)
    prune_layers(model, keep_decoder=[0, 2, 4, 6, 7])
    prune_layers(model, keep_decoder=[0, 2, 4])
    assert pruning_record(model)["kept_layers"] == {"decoder": [0, 4, 7]}
    assert pruning_record(model)["original_num_layers"] == {"decoder": 8}
    assert model.config.num_hidden_layers == 3


def test_t5_stack_configs_follow_new_depth():
    model = tiny_model("t5")
    prune_layers(model, keep_encoder=[2, 5], keep_decoder=[0, 1, 3])
    assert (model.config.num_layers, model.config.num_decoder_layers) == (2, 3)
    assert model.encoder.config.num_layers == 2 and model.decoder.config.num_layers == 3
    assert model.encoder.block[0].layer[0].SelfAttention.has_relative_attention_bias


def test_save_and_reload_in_fresh_process_without_prunetune(tmp_path):
    """Each family reloads with plain transformers at the pruned depth, with identical logits."""
    cases = {}
    for family in ALL_FAMILIES:
        model = tiny_model(family)
        enc_dec = model.config.is_encoder_decoder
        prune_layers(model, keep_encoder=[0, 5] if enc_dec else None, keep_decoder=[1, 2, 4])
        folder = tmp_path / family
        model.save_pretrained(folder)
        inputs = _inputs(model.config)
        with torch.no_grad():
            torch.save({"inputs": inputs, "logits": model(**inputs).logits}, folder / "expected.pt")
        cases[family] = str(folder)
    script = textwrap.dedent(f"""
        import json, sys, torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM
        cases = json.loads({json.dumps(json.dumps(cases))})
        for family, folder in cases.items():
            config = AutoConfig.from_pretrained(folder)
            cls = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
            model = cls.from_pretrained(folder).eval()
            ref = torch.load(folder + "/expected.pt")
            with torch.no_grad():
                out = model(**ref["inputs"]).logits
            torch.testing.assert_close(out, ref["logits"], atol=1e-6, rtol=1e-5)
            assert config.prunetune["kept_layers"]["decoder"] == [1, 2, 4], family
            # encoder 2 / decoder 3 layers: the KV cache must be sized from the decoder
            model.generate(input_ids=ref["inputs"]["input_ids"], max_new_tokens=3, pad_token_id=0)
        assert "prunetune" not in sys.modules
        print("ok", len(cases))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"ok {len(ALL_FAMILIES)}"
    assert not list(tmp_path.glob("*/pytorch_model.bin"))
    assert all((tmp_path / f / "model.safetensors").is_file() for f in ALL_FAMILIES)


@pytest.mark.parametrize("keep, message", [
    ([], "empty"),
    ([0, 0, 1], "twice"),
    ([2, 1], "ascending"),
    ([0, 6], "out of range"),
    ([-1, 2], "negative"),
])
def test_bad_keep_lists(keep, message):
    with pytest.raises(UsageError, match=message):
        validate_keep(keep, 6, "decoder")


def test_plan_rejects_encoder_list_for_decoder_only():
    with pytest.raises(UsageError, match="decoder-only"):
        plan_keep_lists(tiny_config("llama"), PruneArgs(keep_encoder=[0, 1]))


def test_plan_with_strategy_and_explicit_list():
    plan = plan_keep_lists(tiny_config("bart", 12), PruneArgs(keep_encoder=[0, 11], strategy="paper", ratio=1 / 3))
    assert plan == {"encoder": [0, 11], "decoder": [0, 1, 2, 4, 6, 8, 10, 11]}
    only_dec = plan_keep_lists(tiny_config("t5", 12), PruneArgs(strategy="top", ratio=0.25, prune_stacks="decoder"))
    assert only_dec["encoder"] == list(range(12)) and only_dec["decoder"] == [0, 1, 2, 3, 4, 5, 6, 7, 11]


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_ratio_out_of_range(ratio):
    with pytest.raises(UsageError, match="ratio"):
        PruneArgs(strategy="paper", ratio=ratio)


def test_unsupported_family_names_supported_ones():
    from transformers import BertConfig, BertForMaskedLM

    model = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=32))
    with pytest.raises(UsageError, match="unsupported architecture 'bert'.*llama"):
        prune_layers(model, keep_decoder=[0])


def test_record_is_json_serialisable():
    model = tiny_model("bart")
    prune_layers(model, keep_encoder=[0, 1], keep_decoder=[2])
    json.dumps(model.config.to_dict())
