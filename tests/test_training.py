"""Unit tests of the LoRA presets, the training data path and the helpers of ``finetune``.

End-to-end runs of the command are in ``test_finetune_cli.py``.
"""

from __future__ import annotations

import re

import pytest
import torch

from conftest import tiny_model, tiny_tokenizer
from prunetune.errors import UsageError
from prunetune.memory import read_peak_memory, reset_peak_memory, track_peak_memory
from prunetune.prompting import IGNORE_INDEX, PromptArgs
from prunetune.training import (
    QV_MODULES,
    LoraArgs,
    TrainArgs,
    build_lora_model,
    count_trainable,
    linear_layers,
    lora_target_modules,
)
from prunetune.training.trainer import (
    count_tokens,
    effective_warmup,
    encode_examples,
    last_checkpoint,
    make_collator,
    planned_steps,
)

# The feed-forward linears of each family, written out independently of architectures.py.
FFN_PATHS = {
    "t5": r"\.DenseReluDense\.(wi|wo)$",
    "flan-t5": r"\.DenseReluDense\.(wi_0|wi_1|wo)$",
    "bart": r"\.layers\.\d+\.(fc1|fc2)$",
    "llama": r"\.mlp\.(gate_proj|up_proj|down_proj)$",
    "gpt2": r"\.mlp\.(c_fc|c_proj)$",
}
# FFN linears per block: T5 wi+wo, gated T5 wi_0+wi_1+wo, BART fc1+fc2, LLaMA 3, GPT-2 c_fc+c_proj.
FFN_PER_BLOCK = {"t5": 2, "flan-t5": 3, "bart": 2, "llama": 3, "gpt2": 2}
STACKS = {"t5": 2, "flan-t5": 2, "bart": 2, "llama": 1, "gpt2": 1}
NUM_LAYERS = 2


def adapted_paths(peft_model) -> set[str]:
    """Paths (relative to the wrapped model) of the modules that got a LoRA adapter."""
    from peft.tuners.lora import LoraLayer

    prefix = "base_model.model."
    return {name[len(prefix):] for name, module in peft_model.named_modules() if isinstance(module, LoraLayer)}


@pytest.mark.parametrize("model_type", sorted(FFN_PATHS))
def test_ffn_preset_adapts_exactly_the_feed_forward_linears(model_type):
    model = tiny_model(model_type, num_layers=NUM_LAYERS)
    expected = {p for p in linear_layers(model) if re.search(FFN_PATHS[model_type], p)}
    assert len(expected) == NUM_LAYERS * STACKS[model_type] * FFN_PER_BLOCK[model_type]
    peft_model = build_lora_model(model, LoraArgs())
    assert adapted_paths(peft_model) == expected


@pytest.mark.parametrize("model_type", ["t5", "bart", "llama", "gpt2", "gpt_neox", "phi3"])
def test_qv_preset_adapts_attention_query_and_value(model_type):
    from prunetune.architectures import get_family

    model = tiny_model(model_type, num_layers=NUM_LAYERS)
    peft_model = build_lora_model(model, LoraArgs(lora_preset="qv"))
    paths = adapted_paths(peft_model)
    wanted = QV_MODULES[get_family(model).name]
    assert paths and all(any(p == w or p.endswith("." + w) for w in wanted) for p in paths)


def test_all_linear_preset_skips_the_output_head():
    model = tiny_model("llama", num_layers=NUM_LAYERS)
    targets = lora_target_modules(model, LoraArgs(lora_preset="all-linear"))
    assert set(targets) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert "lm_head" not in adapted_paths(build_lora_model(model, LoraArgs(lora_preset="all-linear")))


def test_explicit_targets_override_the_preset():
    model = tiny_model("llama", num_layers=NUM_LAYERS)
    peft_model = build_lora_model(model, LoraArgs(lora_targets=["o_proj"]))
    assert {p.rsplit(".", 1)[-1] for p in adapted_paths(peft_model)} == {"o_proj"}


def test_unknown_target_is_a_usage_error_naming_real_layers():
    model = tiny_model("llama", num_layers=NUM_LAYERS)
    with pytest.raises(UsageError, match=r"'nope' matches no linear layer.*gate_proj"):
        lora_target_modules(model, LoraArgs(lora_targets=["nope"]))
    # A module that exists but is not a linear layer cannot take LoRA either.
    with pytest.raises(UsageError, match="'mlp' matches no linear layer"):
        lora_target_modules(model, LoraArgs(lora_targets=["mlp"]))


def test_trainable_count_is_r_times_in_plus_out_per_adapted_linear():
    model = tiny_model("llama", num_layers=NUM_LAYERS)
    original = count_trainable(model)[1]
    lora = LoraArgs(lora_r=4)
    shapes = [(m.in_features, m.out_features) for p, m in linear_layers(model).items()
              if p.rsplit(".", 1)[-1] in lora_target_modules(model, lora)]
    peft_model = build_lora_model(model, lora)
    trainable, total = count_trainable(peft_model)
    assert trainable == sum(lora.lora_r * (i + o) for i, o in shapes)
    assert total == original + trainable
    assert all(not p.requires_grad for n, p in peft_model.named_parameters() if "lora_" not in n)


def test_lora_args_validation():
    with pytest.raises(UsageError):
        LoraArgs(lora_r=0)
    with pytest.raises(UsageError):
        LoraArgs(lora_dropout=1.0)
    with pytest.raises(UsageError):
        LoraArgs(lora_targets=[])


def test_train_args_validation():
    with pytest.raises(UsageError, match="--batch-size"):
        TrainArgs(batch_size=0)
    with pytest.raises(UsageError, match="--max-steps"):
        TrainArgs(max_steps=0)
    with pytest.raises(UsageError):
        TrainArgs(learning_rate=-1)


@pytest.fixture
def pairs():
    return [{"source": "no acute findings in the chest", "target": "normal"},
            {"source": "small left effusion", "target": "left pleural effusion, small"},
            {"source": "clear lungs", "target": "no disease"}]


def test_collated_decoder_only_batch_learns_only_the_target(pairs):
    tokenizer = tiny_tokenizer()
    tokenizer.padding_side = "left"  # as many decoder-only tokenizers ship, for generation
    features = encode_examples(tokenizer, pairs, PromptArgs(instruction="Summarize."), encoder_decoder=False)
    batch = make_collator(tokenizer)(features)
    width = max(len(f["input_ids"]) for f in features)
    assert batch["input_ids"].shape == batch["labels"].shape == (len(pairs), width)
    for row, (example, feature) in enumerate(zip(pairs, features)):
        n = len(feature["input_ids"])
        labels, mask = batch["labels"][row], batch["attention_mask"][row]
        # Right padding: real tokens first, then padding that is masked everywhere.
        assert mask[:n].all() and not mask[n:].any()
        assert (labels[n:] == IGNORE_INDEX).all()
        learned = labels[labels != IGNORE_INDEX]
        assert tokenizer.decode(learned, skip_special_tokens=True) == example["target"]
        assert learned[-1] == tokenizer.eos_token_id
        # The learned positions are exactly the last ones of the example: the prompt is masked.
        prompt_len = n - len(learned)
        assert prompt_len > 0 and (labels[:prompt_len] == IGNORE_INDEX).all()
        assert torch.equal(labels[prompt_len:n], batch["input_ids"][row, prompt_len:n])
    assert tokenizer.padding_side == "left"  # the collator pads its own copy


def test_collated_seq2seq_batch_pads_labels_with_ignore_index(pairs):
    tokenizer = tiny_tokenizer()
    features = encode_examples(tokenizer, pairs, PromptArgs(), encoder_decoder=True)
    batch = make_collator(tokenizer)(features)
    for row, feature in enumerate(features):
        n = len(feature["labels"])
        assert batch["labels"][row, :n].tolist() == feature["labels"]
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()
    assert count_tokens(batch, encoder_decoder=True) == sum(
        len(f["input_ids"]) + len(f["labels"]) for f in features)
    assert count_tokens(batch, encoder_decoder=False) == sum(len(f["input_ids"]) for f in features)


def test_warmup_is_clipped_to_a_tenth_of_short_runs():
    train = TrainArgs(warmup_steps=1000, max_steps=50)
    assert effective_warmup(train, planned_steps(100, train)) == 5
    assert effective_warmup(TrainArgs(warmup_steps=1000), 20_000) == 1000
    # 100 examples / batch 8 -> 13 batches -> 7 steps per epoch with accumulation 2.
    assert planned_steps(100, TrainArgs(batch_size=8, gradient_accumulation_steps=2, num_epochs=3)) == 21


def test_last_checkpoint_ignores_incomplete_ones(tmp_path):
    assert last_checkpoint(tmp_path / "missing") is None
    for step, complete in ((2, True), (4, True), (6, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-4"


def test_peak_memory_on_cpu_covers_the_block():
    size = 64 * 2**20
    with track_peak_memory("cpu") as memory:
        block = torch.ones(size // 4, dtype=torch.float32)
        del block
    assert memory["peak_memory_kind"] == "cpu_peak_rss"
    assert memory["peak_memory_scope"] in ("phase", "process")
    scope = reset_peak_memory("cpu")
    if scope == "phase":  # the block's peak is above the (freshly reset) current level
        baseline = read_peak_memory("cpu", scope)["peak_memory_bytes"]
        assert memory["peak_memory_bytes"] >= baseline + size // 2


def test_target_only_lm_head_loss_matches_full_loss(tiny_llama_dir):
    """compute_loss with logits_to_keep gives the stock loss and gradients, for every family's API."""
    import torch
    from transformers import TrainingArguments

    from prunetune.models import load_model
    from prunetune.prompting import PromptArgs
    from prunetune.training import LoraArgs, build_lora_model
    from prunetune.training.trainer import FinetuneTrainer, encode_examples, make_collator

    model, tok, _ = load_model(str(tiny_llama_dir))
    model = build_lora_model(model, LoraArgs(lora_dropout=0.0))
    feats = encode_examples(tok, [{"source": "a long prompt " * 3, "target": "yes"},
                                  {"source": "short", "target": "a longer target text"}], PromptArgs(), False)
    batch = make_collator(tok)(feats)
    args = TrainingArguments(output_dir="/tmp/unused", use_cpu=True, report_to="none")
    trainer = FinetuneTrainer(model=model, args=args, processing_class=tok)
    for n_items in (None, int((batch["labels"][:, 1:] != -100).sum())):
        model.zero_grad()
        ours = trainer.compute_loss(model, dict(batch), num_items_in_batch=n_items)
        ours.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        model.zero_grad()
        trainer.encoder_decoder = True  # forces the stock path
        stock = trainer.compute_loss(model, dict(batch), num_items_in_batch=n_items)
        stock.backward()
        trainer.encoder_decoder = False
        torch.testing.assert_close(ours, stock, atol=1e-5, rtol=1e-5)
        for a, p in zip(grads, [p for p in model.parameters() if p.requires_grad]):
            torch.testing.assert_close(a, p.grad, atol=1e-5, rtol=1e-4)


def test_training_step_builds_no_kv_cache(tiny_llama_dir, tmp_path):
    """A training forward runs with use_cache=False (a cache costs time and memory, and is unused)."""
    from transformers import TrainingArguments

    from prunetune.models import load_model
    from prunetune.prompting import PromptArgs
    from prunetune.training import LoraArgs, build_lora_model
    from prunetune.training.trainer import FinetuneTrainer, encode_examples, make_collator

    model, tok, _ = load_model(str(tiny_llama_dir))
    model = build_lora_model(model, LoraArgs())
    seen = []
    decoder = model.get_base_model().model
    decoder.register_forward_pre_hook(lambda _m, _a, kw: seen.append(kw.get("use_cache")), with_kwargs=True)
    batch = make_collator(tok)(encode_examples(tok, [{"source": "findings", "target": "impression"}],
                                               PromptArgs(), False))
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    trainer = FinetuneTrainer(model=model, args=args, processing_class=tok)
    trainer.current_gradient_accumulation_steps = 1  # set by train() before its first step
    loss = trainer.training_step(model, dict(batch))
    assert loss.item() > 0 and seen == [False]
    assert trainer.tokens_seen > 0 and trainer.samples_seen == 1
