"""Shared fixtures: tiny randomly initialised models of every supported family.

Like PEFT's and transformers' own tests, models are built from small configs, so the
suite runs offline on CPU in seconds.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

VOCAB = 96
HIDDEN = 32


def _common(**kw):
    return dict(vocab_size=VOCAB, **kw)


def tiny_config(model_type: str, num_layers: int = 6):
    """A tiny config of ``model_type`` with ``num_layers`` blocks per stack."""
    from transformers import (
        BartConfig, GemmaConfig, GPT2Config, GPTNeoXConfig, LlamaConfig, MBartConfig, MistralConfig,
        MT5Config, PegasusConfig, Phi3Config, Qwen2Config, Qwen3Config, T5Config,
    )

    dec = dict(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=num_layers, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    t5 = dict(d_model=HIDDEN, d_ff=64, d_kv=8, num_heads=4, num_layers=num_layers, num_decoder_layers=num_layers,
              relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    bart = dict(d_model=HIDDEN, encoder_layers=num_layers, decoder_layers=num_layers, encoder_attention_heads=4,
                decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
                pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=None)
    factories = {
        "t5": lambda: T5Config(**_common(**t5)),
        "flan-t5": lambda: T5Config(**_common(**t5, feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
        "mt5": lambda: MT5Config(**_common(**t5)),
        "bart": lambda: BartConfig(**_common(**bart)),
        "mbart": lambda: MBartConfig(**_common(**bart)),
        "pegasus": lambda: PegasusConfig(**_common(**bart)),
        "llama": lambda: LlamaConfig(**_common(**dec)),
        "qwen2": lambda: Qwen2Config(**_common(**dec)),
        "qwen3": lambda: Qwen3Config(**_common(**dec, head_dim=8)),
        "mistral": lambda: MistralConfig(**_common(**dec)),
        "gemma": lambda: GemmaConfig(**_common(**dec, head_dim=8)),
        "phi3": lambda: Phi3Config(**_common(**{**dec, "pad_token_id": 0})),
        "gpt2": lambda: GPT2Config(**_common(n_embd=HIDDEN, n_layer=num_layers, n_head=4, n_positions=128,
                                             bos_token_id=1, eos_token_id=2)),
        "gpt_neox": lambda: GPTNeoXConfig(**_common(hidden_size=HIDDEN, intermediate_size=64,
                                                    num_hidden_layers=num_layers, num_attention_heads=4,
                                                    max_position_embeddings=128, bos_token_id=1, eos_token_id=2)),
    }
    return factories[model_type]()


ENCODER_DECODER = ["t5", "flan-t5", "mt5", "bart", "mbart", "pegasus"]
DECODER_ONLY = ["llama", "qwen2", "qwen3", "mistral", "gemma", "phi3", "gpt2", "gpt_neox"]
ALL_FAMILIES = ENCODER_DECODER + DECODER_ONLY


def tiny_model(model_type: str, num_layers: int = 6, seed: int = 0):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    torch.manual_seed(seed)
    config = tiny_config(model_type, num_layers)
    cls = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    return cls.from_config(config).eval()


@pytest.fixture(params=ALL_FAMILIES)
def family_name(request):
    return request.param


def tiny_tokenizer():
    """A byte-level BPE tokenizer with no merges (one token per byte), built offline.

    It encodes any text, so end-to-end tests can train and generate with real strings.
    Special tokens: <pad>=0, <s>=1, </s>=2, <unk>=3.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>")


def save_tiny_model(model_type: str, folder, num_layers: int = 4, seed: int = 0):
    """Save a tiny random model of ``model_type`` with :func:`tiny_tokenizer` to ``folder``.

    The vocabulary matches the tokenizer and special token ids are 0/1/2 (pad/bos/eos),
    so the folder works end to end (training, generation, reload). Returns the folder.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    tok = tiny_tokenizer()
    config = tiny_config(model_type, num_layers)
    config.vocab_size = len(tok)
    for key, value in (("pad_token_id", 0), ("bos_token_id", 1), ("eos_token_id", 2)):
        setattr(config, key, value)
    if config.is_encoder_decoder:
        config.decoder_start_token_id = 0
    torch.manual_seed(seed)
    cls = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model = cls.from_config(config)
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = 2
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_t5_dir(tmp_path):
    return save_tiny_model("t5", tmp_path / "tiny-t5")


@pytest.fixture
def tiny_llama_dir(tmp_path):
    return save_tiny_model("llama", tmp_path / "tiny-llama")
