"""How a source text becomes model input, for training and generation alike.

* Encoder-decoder models read the source (optionally preceded by an instruction line,
  like T5's task prefixes) and are trained on the target as labels.
* Decoder-only models read a prompt built with the tokenizer's chat template when it
  has one (instruction + source as the user turn, generation prompt appended), or a
  plain ``### Input / ### Response`` template otherwise; the target follows, ended by
  EOS, and only the target tokens count in the loss.

Sources are truncated in token space *before* templating, so a long note never cuts
the template (and the model never loses the cue to start answering).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prunetune.config import arg
from prunetune.errors import UsageError

IGNORE_INDEX = -100
PLAIN_TEMPLATE = "### Input:\n{source}\n\n### Response:\n"


@dataclass
class PromptArgs:
    """How sources and targets are turned into tokens."""

    instruction: str | None = arg(None, help="task instruction placed before each source (e.g. 'Summarize the findings.')")
    max_source_tokens: int = arg(384, help="sources are truncated to this many tokens")
    max_target_tokens: int = arg(128, help="targets are truncated to this many tokens in training")

    def __post_init__(self) -> None:
        if self.max_source_tokens < 1 or self.max_target_tokens < 1:
            raise UsageError("--max-source-tokens and --max-target-tokens must be positive")


def is_encoder_decoder(model_or_config: Any) -> bool:
    config = getattr(model_or_config, "config", model_or_config)
    return bool(getattr(config, "is_encoder_decoder", False))


def ensure_pad_token(tokenizer: Any) -> None:
    """Decoder-only tokenizers often lack a pad token; reuse EOS (padding is masked anyway)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UsageError("the tokenizer has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token


def _truncate(tokenizer: Any, text: str, max_tokens: int) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)


def build_prompt(tokenizer: Any, source: str, args: PromptArgs, encoder_decoder: bool) -> str:
    """The text the model reads for ``source`` (before the target, for decoder-only)."""
    source = _truncate(tokenizer, source, args.max_source_tokens)
    if encoder_decoder:
        return f"{args.instruction}\n{source}" if args.instruction else source
    user = f"{args.instruction}\n\n{source}" if args.instruction else source
    if getattr(tokenizer, "chat_template", None):
        if args.instruction:
            # The instruction as the system turn replaces the template's default system
            # prompt (SmolLM2 adds ~20 tokens of "You are a helpful AI assistant ...") instead
            # of adding to it: shorter sequences, cheaper training and generation.
            try:
                return tokenizer.apply_chat_template(
                    [{"role": "system", "content": args.instruction}, {"role": "user", "content": source}],
                    tokenize=False, add_generation_prompt=True)
            except Exception:  # noqa: BLE001 - templates without a system role (Gemma) raise
                pass
        return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                             add_generation_prompt=True)
    return PLAIN_TEMPLATE.format(source=user)


def encode_example(tokenizer: Any, source: str, target: str, args: PromptArgs,
                   encoder_decoder: bool) -> dict[str, list[int]]:
    """Token ids and labels for one training pair.

    Returns:
        ``input_ids``, ``attention_mask`` and ``labels``; for decoder-only models the
        prompt positions of ``labels`` are ``-100`` so only the target is learned.
    """
    prompt = build_prompt(tokenizer, source, args, encoder_decoder)
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"][: args.max_target_tokens]
    if tokenizer.eos_token_id is not None:
        target_ids = target_ids + [tokenizer.eos_token_id]
    if encoder_decoder:
        input_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": target_ids}
    # Chat templates already carry their special tokens; a plain template gets BOS if the
    # tokenizer normally adds one.
    prompt_ids = tokenizer(prompt, add_special_tokens=not getattr(tokenizer, "chat_template", None))["input_ids"]
    input_ids = prompt_ids + target_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + target_ids
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def encode_prompt(tokenizer: Any, source: str, args: PromptArgs, encoder_decoder: bool) -> list[int]:
    """Token ids of the generation input for ``source``."""
    prompt = build_prompt(tokenizer, source, args, encoder_decoder)
    add_special = encoder_decoder or not getattr(tokenizer, "chat_template", None)
    return tokenizer(prompt, add_special_tokens=add_special)["input_ids"]
