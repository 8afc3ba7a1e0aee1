"""Batched generation for encoder-decoder and decoder-only models.

Prompts are built by :mod:`prunetune.prompting` exactly as in training, sorted by
length so each batch pads little, left-padded for decoder-only models (generation
continues from the right edge) and returned in the original order. Only the newly
generated tokens are decoded.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from prunetune.config import arg
from prunetune.errors import UsageError
from prunetune.prompting import PromptArgs, encode_prompt, ensure_pad_token, is_encoder_decoder

logger = logging.getLogger(__name__)


@dataclass
class GenerationArgs:
    """Decoding settings (the paper's test setting: --num-beams 6 --max-new-tokens 128 --no-repeat-ngram-size 3)."""

    num_beams: int = arg(1, help="beam width (1 = greedy)")
    max_new_tokens: int = arg(128, help="maximum generated tokens per example")
    no_repeat_ngram_size: int = arg(0, help="forbid repeating n-grams of this size (0 = off)")
    generation_batch_size: int = arg(16, help="examples per generation batch")

    def __post_init__(self) -> None:
        if self.num_beams < 1 or self.max_new_tokens < 1 or self.generation_batch_size < 1:
            raise UsageError("--num-beams, --max-new-tokens and --generation-batch-size must be positive")
        if self.no_repeat_ngram_size < 0:
            raise UsageError("--no-repeat-ngram-size must be >= 0")


def _pad(batch: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(x) for x in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, x in enumerate(batch):
        sl = slice(width - len(x), width) if left else slice(0, len(x))
        ids[row, sl] = torch.tensor(x, dtype=torch.long)
        mask[row, sl] = 1
    return ids, mask


@torch.inference_mode()
def generate_texts(model: Any, tokenizer: Any, sources: Sequence[str], prompt: PromptArgs | None = None,
                   generation: GenerationArgs | None = None, progress: bool = True) -> list[str]:
    """Generate one output per source.

    Args:
        model: a (possibly PEFT-wrapped) seq2seq or causal LM.
        tokenizer: its tokenizer.
        sources: input texts.
        prompt: prompt settings; must match those used in training.
        generation: decoding settings.
        progress: show a progress bar on stderr.

    Returns:
        Decoded outputs, stripped, in the order of ``sources``.
    """
    prompt = prompt or PromptArgs()
    generation = generation or GenerationArgs()
    enc_dec = is_encoder_decoder(model)
    ensure_pad_token(tokenizer)
    encoded = [encode_prompt(tokenizer, s, prompt, enc_dec) for s in sources]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    outputs: list[str] = [""] * len(encoded)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    batches = range(0, len(order), generation.generation_batch_size)
    if progress and len(batches) > 1:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="generating", file=sys.stderr, leave=False)
    eos = tokenizer.eos_token_id
    for start in batches:
        idx = order[start:start + generation.generation_batch_size]
        ids, mask = _pad([encoded[i] for i in idx], tokenizer.pad_token_id, left=not enc_dec)
        out = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device),
            max_new_tokens=generation.max_new_tokens, num_beams=generation.num_beams,
            no_repeat_ngram_size=generation.no_repeat_ngram_size or None, do_sample=False,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=eos,
            temperature=None, top_p=None, top_k=None,
        )
        new_tokens = out if enc_dec else out[:, ids.shape[1]:]
        for row, i in enumerate(idx):
            outputs[i] = tokenizer.decode(new_tokens[row], skip_special_tokens=True).strip()
    if was_training:
        model.train()
    return outputs
