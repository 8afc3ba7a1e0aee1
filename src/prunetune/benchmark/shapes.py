"""Randomly initialised models with the reference paper's shapes (``--shape``).

LoraLPrun (arXiv 2305.08285) tunes BART-large and T5-large. Speed and memory depend on
shapes, not on weight values, so on a GPU machine without the checkpoints the benchmark
builds these models from their configs. The dimensions are those of the published
``facebook/bart-large`` and ``t5-large`` ``config.json`` files; nothing is downloaded.
"""

from __future__ import annotations

from typing import Any, Callable


def _bart_large() -> Any:
    from transformers import BartConfig

    return BartConfig(
        vocab_size=50265, d_model=1024, encoder_layers=12, decoder_layers=12,
        encoder_attention_heads=16, decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096,
        max_position_embeddings=1024, activation_function="gelu", scale_embedding=False,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2,
    )


def _t5_large() -> Any:
    from transformers import T5Config

    return T5Config(
        vocab_size=32128, d_model=1024, d_kv=64, d_ff=4096, num_layers=24, num_decoder_layers=24,
        num_heads=16, relative_attention_num_buckets=32, relative_attention_max_distance=128,
        feed_forward_proj="relu", tie_word_embeddings=True,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )


#: ``--shape`` value -> config factory.
PAPER_SHAPES: dict[str, Callable[[], Any]] = {"bart-large": _bart_large, "t5-large": _t5_large}


def paper_config(shape: str) -> Any:
    """The config of a paper shape (``bart-large`` or ``t5-large``)."""
    return PAPER_SHAPES[shape]()


def build_random_model(shape: str, device: Any = None, seed: int = 0) -> Any:
    """A seq2seq LM of ``shape`` with random weights, initialised directly on ``device``.

    Initialising on the GPU takes seconds where a CPU needs minutes for T5-large.
    """
    import torch
    from transformers import AutoModelForSeq2SeqLM

    torch.manual_seed(seed)
    with torch.device(device or "cpu"):
        return AutoModelForSeq2SeqLM.from_config(paper_config(shape))
