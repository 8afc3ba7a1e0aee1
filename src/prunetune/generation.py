"""Batched generation for encoder-decoder and decoder-only models.

Prompts are built by :mod:`prunetune.prompting` exactly as in training, sorted by
length so each batch pads little, left-padded for decoder-only models (generation
continues from the right edge) and returned in the original order. Only the newly
generated tokens are decoded.

``prunetune generate`` (:func:`generate_command`) runs it on a prompt, a file or
standard input, with any model :func:`prunetune.inference.load_for_inference` loads.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from prunetune.config import arg
from prunetune.errors import UsageError
from prunetune.inference import InferenceModelArgs, load_for_inference
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


# --- prunetune generate ---------------------------------------------------------------

@dataclass
class GenerateArgs:
    """What to generate from: one text, a file, or standard input."""

    prompt: str | None = arg(None, help="one source text to generate from")
    input_file: Path | None = arg(None, help="batch input: JSONL (.jsonl) with a 'source' field per line, "
                                             "or any other file read as one source per non-blank line")
    output_file: Path | None = arg(None, help="write the results as JSONL (each input row plus 'prediction') "
                                              "instead of printing them")
    instruction: str | None = arg(None, help="replace the instruction recorded at training ('' removes it)")

    def __post_init__(self) -> None:
        if self.prompt is not None and self.input_file is not None:
            raise UsageError("give either --prompt or --input-file, not both")
        if self.prompt is not None and not self.prompt.strip():
            raise UsageError("--prompt is empty")


def read_sources(path: Path) -> list[dict[str, Any]]:
    """Rows with a ``source`` text from a ``.jsonl`` file, or one per non-blank line of any other file.

    Raises:
        UsageError: for a missing file, a JSONL row without a text ``source``, or no input at all.
    """
    from prunetune.data.tables import read_jsonl

    if not path.is_file():
        raise UsageError(f"input file {path} not found")
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        rows = read_jsonl(path)
        for number, row in enumerate(rows, start=1):
            if not isinstance(row.get("source"), str) or not row["source"].strip():
                raise UsageError(f"{path}: row {number} needs a non-empty text 'source' field")
    else:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise UsageError(f"{path} is not UTF-8 text") from None
        rows = [{"source": line.strip()} for line in lines if line.strip()]
    if not rows:
        raise UsageError(f"{path} holds no input")
    return rows


def _write_results(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write JSONL next to ``path`` and rename it into place, so a failure leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _interactive(model: Any, tokenizer: Any, prompt: PromptArgs, generation: GenerationArgs) -> None:
    """Read a source per line from the terminal and print each result, until EOF (Ctrl-D)."""
    print("enter a source text per line; Ctrl-D to quit", file=sys.stderr)
    while True:
        print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            print(file=sys.stderr)
            return
        if line.strip():
            print(generate_texts(model, tokenizer, [line.strip()], prompt, generation, progress=False)[0],
                  flush=True)


def generate_command(model: InferenceModelArgs, generation: GenerationArgs, inputs: GenerateArgs) -> int:
    """``prunetune generate``: outputs for ``--prompt``, ``--input-file`` or stdin.

    Input comes from ``--prompt`` (one text), ``--input-file``, or standard input: an
    interactive loop on a terminal, otherwise every non-blank line as one batch.
    Results go to stdout (one per line, inner newlines flattened so that line i
    answers input i) or, with ``--output-file``, to a JSONL file; progress and logs go
    to stderr. The prompt recorded at training is used unless ``--instruction`` is given.
    """
    interactive = inputs.prompt is None and inputs.input_file is None and sys.stdin.isatty()
    if interactive and inputs.output_file is not None:
        raise UsageError("--output-file needs --prompt, --input-file or piped standard input")
    if inputs.output_file is not None and inputs.output_file.is_dir():
        raise UsageError(f"--output-file {inputs.output_file} is a folder")
    if inputs.prompt is not None:
        rows = [{"source": inputs.prompt.strip()}]
    elif inputs.input_file is not None:
        rows = read_sources(inputs.input_file)
    elif not interactive:
        rows = [{"source": line.strip()} for line in sys.stdin.read().splitlines() if line.strip()]
        if not rows:
            raise UsageError("standard input holds no text")
    loaded, tokenizer, info = load_for_inference(model.model, model.dtype)
    prompt = info.prompt_for(inputs.instruction)
    if interactive:
        _interactive(loaded, tokenizer, prompt, generation)
        return 0
    predictions = generate_texts(loaded, tokenizer, [row["source"] for row in rows], prompt, generation)
    if inputs.output_file is not None:
        _write_results(inputs.output_file, [{**row, "prediction": p} for row, p in zip(rows, predictions)])
        logger.info("wrote %d results to %s", len(rows), inputs.output_file)
    elif inputs.prompt is not None:
        print(predictions[0])
    else:
        for prediction in predictions:
            print(" ".join(prediction.splitlines()))
    return 0
