"""The analytic FLOP model (prunetune.flops) against hand counts and against torch's FLOP counter.

Hand counts use the conftest tiny models: hidden 32, 4 heads, vocab 96; LLaMA with 2 KV
heads of dim 8 (GQA) and FFN 64, GPT-2 with FFN 4*32, T5 with d_kv 8 and d_ff 64.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from conftest import ALL_FAMILIES, tiny_config, tiny_model
from prunetune.architectures import get_family
from prunetune.flops import (
    flop_ideal_speedup, forward_flops, generation_flops, model_shape, training_step_flops,
)
from prunetune.pruning import prune_layers


def _lora(model, r=2):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0,
                                            target_modules=list(get_family(model).ffn_modules)))


def _eager(model_type, num_layers):
    torch.manual_seed(0)
    config = tiny_config(model_type, num_layers)
    cls = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    return cls.from_config(config, attn_implementation="eager").train()


# ---- hand counts -----------------------------------------------------------------------

# LLaMA, per token and layer, T = 8 keys:
#   q 2*32*32 = 2048, k 2*32*16 = 1024, v 1024, o 2048                    -> 6144
#   attention 4 * T * (4 heads * 8) = 4 * 8 * 32                          -> 1024
#   gate 2*32*64 = 4096, up 4096, down 4096                               -> 12288
#   layer                                                                  = 19456
# head 2*32*96 = 6144; two layers: 2 * 19456 + 6144 = 45056 per token.
LLAMA_FORWARD_PER_TOKEN = 2 * (6144 + 1024 + 12288) + 6144


def test_llama_forward_and_full_finetuning_hand_count():
    shape = model_shape(tiny_model("llama", 2))
    step = training_step_flops(shape, batch_size=2, seq_length=8)
    assert step.tokens == 16
    assert step.forward == 16 * LLAMA_FORWARD_PER_TOKEN == 720_896
    # Full fine-tuning: dL/dx and dL/dW for every projection, attention backward 2x: 2x forward.
    assert step.backward == 2 * step.forward
    assert step.parts["head"] == {"forward": 16 * 6144, "backward": 16 * 2 * 6144}


def test_llama_lora_hand_count():
    # LoRA r=2 on gate (32->64), up (32->64), down (64->32); forward 2*r*(d_in+d_out) = 384 each.
    shape = model_shape(_lora(tiny_model("llama", 2)))
    step = training_step_flops(shape, batch_size=2, seq_length=8)
    lora_forward = 3 * 384
    assert step.forward == 16 * (LLAMA_FORWARD_PER_TOKEN + 2 * lora_forward)
    # Backward per token.
    # Layer 0: its input (the frozen embedding) needs no grad, so attention gets no backward.
    #   gate: base 0 (input needs no grad), LoRA dW 384 + dX into B 2*2*64=256  -> 640
    #   up: the same                                                            -> 640
    #   down: its input needs grad (LoRA above): base dX 4096;
    #         LoRA dW 384 + dX into B 2*2*32=128 + dX into A 2*64*2=256        -> 4864
    layer0 = 640 + 640 + 4096 + 384 + 128 + 256
    # Layer 1: the stream needs grad. Base weights frozen: dX only.
    #   q,k,v dX 4096, attention backward 4 matmuls * 2*8*32 = 2048, o dX 2048 -> 8192
    #   gate/up: dX 4096 + LoRA 384 + 256 + dX into A 2*32*2=128 (each)        -> 2 * 4864
    #   down: dX 4096 + 768                                                     -> 4864
    layer1 = 4096 + 2048 + 2048 + 3 * 4864
    head = 6144  # dX only: the head is frozen
    assert (layer0, layer1) == (6144, 22784)
    assert step.backward == 16 * (layer0 + layer1 + head) == 561_152
    assert step.parts["lora"]["forward"] == 16 * 2 * lora_forward


# GPT-2 (fused c_attn 32->96, FFN 32->128->32), per token and layer, T = 8:
#   c_attn 6144 + attention 4*8*32 = 1024 + c_proj 2048 + c_fc 8192 + mlp.c_proj 8192 = 25600
GPT2_FORWARD_PER_TOKEN = 2 * 25600 + 6144


def test_gpt2_hand_count():
    step = training_step_flops(model_shape(tiny_model("gpt2", 2)), batch_size=1, seq_length=8)
    assert step.forward == 8 * GPT2_FORWARD_PER_TOKEN
    assert step.total == 3 * step.forward  # the "6N" rule: full fine-tuning = 3x forward
    lora = training_step_flops(model_shape(_lora(tiny_model("gpt2", 2))), batch_size=1, seq_length=8)
    # Conv1D adapters: c_fc 2*2*(32+128) = 640, c_proj 640 per layer.
    assert lora.forward == 8 * (GPT2_FORWARD_PER_TOKEN + 2 * 1280)


def test_t5_encoder_decoder_hand_count():
    # S = 6 source, T = 8 target tokens, batch 1; attention width 4 heads * d_kv 8 = 32.
    # Encoder layer, per source token: q,k,v,o 4*2048 + attention 4*6*32 = 768 + wi 4096 + wo 4096 = 17152.
    encoder = 6 * 2 * 17152
    # Decoder layer, per target token: self-attn 8192 + 4*8*32 = 1024; cross q,o 4096 + scores 4*6*32 = 768;
    # FFN 8192 -> 22272. Cross k,v read the encoder output: 2*2*32*32 = 4096 per *source* token.
    decoder = 2 * (8 * 22272 + 6 * 4096)
    head = 8 * 2 * 32 * 96
    step = forward_flops(model_shape(tiny_model("t5", 2)), batch_size=1, seq_length=6, target_length=8)
    assert step.tokens == 14
    assert step.parts["encoder"]["forward"] == encoder
    assert step.parts["decoder"]["forward"] == decoder
    assert step.forward == encoder + decoder + head == 660_480
    assert step.backward == 0


def test_generation_hand_count_llama():
    # Prefill of P = 5 tokens (attention over 5 keys each), then N - 1 = 2 steps over 6 and 7 keys;
    # the head runs once per new token.
    shape = model_shape(tiny_model("llama", 2))
    projections = 6144 + 12288
    prefill = 5 * 2 * (projections + 4 * 5 * 32)
    steps = sum(2 * (projections + 4 * keys * 32) for keys in (6, 7))
    assert generation_flops(shape, batch_size=1, prompt_length=5, new_tokens=3).forward == prefill + steps + 3 * 6144


def test_pruned_model_counts_like_a_shallower_one():
    pruned = prune_layers(tiny_model("llama", 4), keep_decoder=[0, 3])
    assert training_step_flops(model_shape(pruned), 2, 8).total == training_step_flops(
        model_shape(tiny_model("llama", 2)), 2, 8).total
    full = training_step_flops(model_shape(tiny_model("llama", 4)), 2, 8)
    half = training_step_flops(model_shape(prune_layers(tiny_model("llama", 4), keep_decoder=[0, 3])), 2, 8)
    assert flop_ideal_speedup(full, half) == pytest.approx((4 * 19456 + 6144) / (2 * 19456 + 6144))


# ---- every family against torch.utils.flop_counter ------------------------------------


@pytest.mark.parametrize("method", ["full", "lora"])
@pytest.mark.parametrize("model_type", ALL_FAMILIES)
def test_matches_torch_flop_counter(model_type, method):
    from torch.utils.flop_counter import FlopCounterMode

    model = _eager(model_type, 3)  # eager attention: its matmuls are visible to the counter
    if method == "lora":
        model = _lora(model)
    encoder_decoder = model.config.is_encoder_decoder
    b, s, t = 2, 6, 8
    ids = torch.randint(3, 90, (b, s if encoder_decoder else t))
    labels = torch.randint(3, 90, (b, t)) if encoder_decoder else ids
    with FlopCounterMode(display=False) as forward:
        loss = model(input_ids=ids, labels=labels, use_cache=False).loss
    with FlopCounterMode(display=False) as backward:
        loss.backward()
    ours = training_step_flops(model_shape(model), b, s if encoder_decoder else t, t if encoder_decoder else None)
    assert (ours.forward, ours.backward) == (forward.get_total_flops(), backward.get_total_flops())


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "t5", "bart"])
def test_generation_matches_torch_flop_counter(model_type):
    from torch.utils.flop_counter import FlopCounterMode

    model = _eager(model_type, 2).eval()
    ids = torch.randint(3, 90, (2, 5))
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, min_new_tokens=4,
                       do_sample=False, pad_token_id=0)
    assert generation_flops(model_shape(model), 2, 5, 4).forward == counter.get_total_flops()


def test_paper_shapes_count_without_weights():
    from prunetune.benchmark.shapes import paper_config

    for shape, layers in (("bart-large", 12), ("t5-large", 24)):
        with torch.device("meta"):
            model = AutoModelForSeq2SeqLM.from_config(paper_config(shape))
        info = model_shape(model)
        assert info.num_layers() == {"encoder": layers, "decoder": layers}
        step = training_step_flops(info, batch_size=1, seq_length=512)
        assert step.total == 3 * step.forward
