"""Load any prunetune result, or any model, ready to generate.

:func:`load_for_inference` accepts three kinds of input and returns the model, its
tokenizer and an :class:`InferenceInfo` that says what was loaded:

* a ``prunetune finetune`` output folder (it holds ``finetune.json``): the base model
  is loaded (the pruned ``base/`` inside the folder, or the recorded model path / hub id
  / built-in name), the LoRA adapter in ``adapter/`` is attached with
  ``peft.PeftModel.from_pretrained`` and the tokenizer comes from ``adapter/``;
* a ``prunetune merge`` output folder (it holds :data:`MERGE_RECORD`): a plain
  checkpoint whose record keeps the training prompt;
* anything :func:`prunetune.models.load_model` resolves: a model folder (pruned or not),
  a hub id, a built-in name.

The prompt settings recorded at training time travel in ``info.prompt``, so evaluation
and generation build the model input exactly as training did; only the instruction can
be overridden (:meth:`InferenceInfo.prompt_for`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from prunetune.config import arg
from prunetune.errors import UsageError
from prunetune.prompting import PromptArgs, ensure_pad_token

logger = logging.getLogger(__name__)

FINETUNE_RECORD = "finetune.json"
MERGE_RECORD = "prunetune.json"
ADAPTER_DIR = "adapter"
DATA_DIR = "data"

Kind = Literal["finetune", "merged", "model"]


@dataclass
class InferenceModelArgs:
    """The model to run: a finetune output folder, a merged folder, or any model."""

    model: str | None = arg(None, help="prunetune finetune/merge output folder, or any model folder, hub id or "
                                       "built-in name (required)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = arg(
        "auto", help="weights dtype when loading ('auto' keeps the checkpoint's)")

    def __post_init__(self) -> None:
        if self.model is None or not str(self.model).strip():
            raise UsageError("--model is required (a finetune output folder, a merged folder or a model)")
        self.model = str(self.model).strip()


@dataclass
class InferenceInfo:
    """What :func:`load_for_inference` loaded.

    Attributes:
        path: the folder or name that was given.
        kind: ``finetune`` (base + LoRA adapter), ``merged`` or ``model``.
        prompt: prompt settings recorded at training (defaults for a plain model).
        pruning: the ``config.prunetune`` record of the loaded base, or None if unpruned.
        source_model: the model training (or pruning) started from, if known.
        base_model: what the base weights were loaded from (resolved path or hub id).
        record: ``finetune.json`` or the merge record as read; ``{}`` for a plain model.
    """

    path: str
    kind: Kind
    prompt: PromptArgs
    pruning: dict[str, Any] | None
    source_model: str | None
    base_model: str
    record: dict[str, Any] = field(default_factory=dict)

    def prompt_for(self, instruction: str | None = None) -> PromptArgs:
        """The recorded prompt, with ``instruction`` replacing the recorded one if given.

        An empty string removes the instruction (a model tuned without one).
        """
        if instruction is None:
            return self.prompt
        return dataclasses.replace(self.prompt, instruction=instruction.strip() or None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for metrics files and model cards)."""
        return {"path": self.path, "kind": self.kind, "source_model": self.source_model,
                "base_model": self.base_model, "pruning": self.pruning, "prompt": dataclasses.asdict(self.prompt)}


def read_record(path: Path) -> dict[str, Any]:
    """Read a JSON record file (``finetune.json``, the merge record) as a mapping.

    Raises:
        UsageError: if it is missing, not JSON, or not an object.
    """
    if not path.is_file():
        raise UsageError(f"{path} not found")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise UsageError(f"{path} must hold a JSON object")
    return record


def prompt_from_record(record: dict[str, Any], where: Path) -> PromptArgs:
    """Rebuild :class:`PromptArgs` from a record's ``prompt`` entry.

    Keys this version does not know are ignored, so newer records still load.

    Raises:
        UsageError: if the entry is not a mapping or holds invalid values.
    """
    saved = record.get("prompt") or {}
    if not isinstance(saved, dict):
        raise UsageError(f"{where}: 'prompt' must be a mapping")
    known = {f.name for f in dataclasses.fields(PromptArgs)}
    try:
        return PromptArgs(**{k: v for k, v in saved.items() if k in known})
    except TypeError as exc:
        raise UsageError(f"{where}: invalid prompt settings ({exc})") from None


def is_finetune_dir(path: str | Path) -> bool:
    """True if ``path`` is a ``prunetune finetune`` output folder."""
    return (Path(path).expanduser() / FINETUNE_RECORD).is_file()


def finetune_data_dir(folder: str | Path) -> Path | None:
    """The ``data/`` splits a finetune folder was tuned on, if it kept all three."""
    data = Path(folder).expanduser() / DATA_DIR
    return data if all((data / f"{split}.jsonl").is_file() for split in ("train", "validation", "test")) else None


def finetune_base(folder: Path, record: dict[str, Any]) -> str:
    """Where the base of a finetune folder lives: its ``base/`` or the recorded model.

    Raises:
        UsageError: if ``base_model`` is missing or names a folder inside ``folder``
            that is gone.
    """
    base = record.get("base_model")
    if not isinstance(base, str) or not base.strip():
        raise UsageError(f"{folder / FINETUNE_RECORD} has no 'base_model'")
    inside = folder / base
    if not Path(base).is_absolute() and inside.exists():
        return str(inside)
    if base == "base":
        raise UsageError(f"{folder} records a pruned base in base/, but {inside} is missing")
    return base


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _load_tokenizer(*folders: Path | str) -> Any:
    """The first tokenizer that loads from ``folders`` (adapter first, then base)."""
    from transformers import AutoTokenizer

    for folder in folders:
        if Path(folder).is_dir() and not (Path(folder) / "tokenizer_config.json").is_file():
            continue
        try:
            return AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError, TypeError) as exc:
            logger.debug("no tokenizer in %s: %s", folder, exc)
    raise UsageError(f"no tokenizer found in {' or '.join(map(str, folders))}")


def _load_finetune(folder: Path, dtype: str) -> tuple[Any, Any, InferenceInfo]:
    from peft import PeftModel

    from prunetune.models import load_model
    from prunetune.pruning import pruning_record

    record = read_record(folder / FINETUNE_RECORD)
    prompt = prompt_from_record(record, folder / FINETUNE_RECORD)
    adapter = folder / ADAPTER_DIR
    if not (adapter / "adapter_config.json").is_file():
        raise UsageError(f"{folder} has no LoRA adapter ({adapter / 'adapter_config.json'} is missing)")
    base = finetune_base(folder, record)
    model, _, base_path = load_model(base, dtype, with_tokenizer=False)
    try:
        # The recorded base, not adapter_config's base_model_name_or_path: the folder may
        # have moved since training, and base/ is found relative to it.
        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise UsageError(f"cannot attach the adapter in {adapter} to {base}: {_first_line(exc)}") from None
    tokenizer = _load_tokenizer(adapter, base_path)
    info = InferenceInfo(
        path=str(folder), kind="finetune", prompt=prompt,
        pruning=pruning_record(model.get_base_model()) or record.get("pruning"),
        source_model=record.get("source_model") or base, base_model=base_path, record=record,
    )
    return model, tokenizer, info


def load_for_inference(path_or_name: str | Path, dtype: str = "auto",
                       device: str | None = None) -> tuple[Any, Any, InferenceInfo]:
    """Load a finetune folder, merged folder or any model, in eval mode.

    Args:
        path_or_name: a ``prunetune finetune`` or ``merge`` output folder, a model
            folder, a hub id or a built-in name.
        dtype: ``auto`` keeps the checkpoint's dtype; else float32/bfloat16/float16.
        device: where to put the model; default CUDA when available, else CPU.

    Returns:
        ``(model, tokenizer, info)``; the model is a ``PeftModel`` for a finetune folder.
        The tokenizer always has a pad token.

    Raises:
        UsageError: for a missing folder, a folder that is not a model, an unreadable
            record, or an adapter that does not fit its base.
    """
    import torch

    from prunetune.models import BUILTIN_MODELS, load_model
    from prunetune.pruning import pruning_record

    name = str(path_or_name)
    folder = Path(name).expanduser()
    if folder.is_dir() and is_finetune_dir(folder):
        model, tokenizer, info = _load_finetune(folder, dtype)
    else:
        if name not in BUILTIN_MODELS and folder.is_dir() and not (folder / "config.json").is_file():
            raise UsageError(f"{folder} is neither a model folder (no config.json) nor a finetune output "
                             f"folder (no {FINETUNE_RECORD})")
        model, tokenizer, resolved = load_model(name, dtype)
        if tokenizer is None:
            raise UsageError(f"{name} has no tokenizer")
        merged = folder / MERGE_RECORD if folder.is_dir() else None
        record = read_record(merged) if merged is not None and merged.is_file() else {}
        pruning = pruning_record(model)
        info = InferenceInfo(
            path=name, kind="merged" if record else "model",
            prompt=prompt_from_record(record, merged) if record else PromptArgs(),
            pruning=pruning, source_model=record.get("source_model") or (pruning or {}).get("source_model") or name,
            base_model=resolved, record=record,
        )
    ensure_pad_token(tokenizer)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    logger.info("loaded %s (%s%s) on %s", name, info.kind, ", pruned" if info.pruning else "", device)
    return model, tokenizer, info
