"""The ``prunetune`` command line: one verb per command function.

Each verb maps to a typed function (see :mod:`prunetune.config`); its flags, help and
recipe keys come from that function's dataclass argument groups. Modules are imported
only for the verb being run, so ``prunetune --help`` stays fast.

Exit codes: 0 success, 2 usage or input errors (one line on stderr, no traceback),
130 when interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
from typing import Callable, Sequence

from prunetune.config import add_command_arguments, build_command_kwargs, load_recipe
from prunetune.errors import UsageError

# verb -> (module:function, one-line help). Recipes can be given to any verb with --config.
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("prunetune.summary:info_command", "show a model's family, stacks, layers and parameter counts"),
    "prune": ("prunetune.pruning:prune_command", "drop whole Transformer blocks and save a standard checkpoint"),
    "data": ("prunetune.data.command:data_command", "build train/validation/test JSONL splits from a dataset"),
    "finetune": ("prunetune.training:finetune_command", "LoRA-tune a (pruned) model on source/target pairs"),
    "evaluate": ("prunetune.evaluation:evaluate_command", "generate on a test split and score ROUGE/BLEU"),
    "merge": ("prunetune.export:merge_command", "merge LoRA weights into the base and write a standalone model"),
    "generate": ("prunetune.generation:generate_command", "generate text from a model folder"),
    "run": ("prunetune.pipeline:run_command", "prune -> tune -> evaluate -> merge, against the unpruned LoRA baseline"),
    "bench": ("prunetune.benchmark:bench_command", "side-by-side training/generation efficiency benchmark"),
}


def _resolve(verb: str) -> Callable:
    module_name, func_name = COMMANDS[verb][0].split(":")
    return getattr(importlib.import_module(module_name), func_name)


def _available() -> list[str]:
    names = []
    for verb, (target, _) in COMMANDS.items():
        module_name = target.split(":")[0]
        try:
            if importlib.util.find_spec(module_name) is not None:
                names.append(verb)
        except ModuleNotFoundError:
            pass
    return names


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only ``verb``'s own flags are added (lazy imports)."""
    parser = argparse.ArgumentParser(
        prog="prunetune",
        description="Structured layer pruning + LoRA fine-tuning for language models.",
    )
    parser.add_argument("--version", action="version", version=f"prunetune {_version()}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in _available():
        p = sub.add_parser(name, help=COMMANDS[name][1], description=COMMANDS[name][1])
        if name == verb:
            p.add_argument("--config", metavar="RECIPE.yaml",
                           help="YAML recipe with argument groups as top-level keys; flags override it")
            p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
            add_command_arguments(p, _resolve(name))
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("prunetune")
    except Exception:  # noqa: BLE001 - running from a source tree
        return "unknown"


def _quiet_libraries(verbose: bool) -> None:
    """Keep stderr for our own progress and errors: library load bars and advice are noise."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    if not verbose:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``prunetune`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = next((a for a in argv if not a.startswith("-")), None)
    verb = verb if verb in COMMANDS else None
    parser = build_parser(verb)
    args = vars(parser.parse_args(argv))
    if not args.get("verb"):
        parser.print_help(sys.stderr)
        return 2
    verbose = args.pop("verbose", False)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    _quiet_libraries(verbose)
    verb = args.pop("verb")
    config_path = args.pop("config", None)
    fn = _resolve(verb)
    try:
        # Some verbs (run) take their recipe as a positional argument or fall back to a
        # shipped default; they say how with a ``resolve_recipe`` attribute.
        resolver = getattr(fn, "resolve_recipe", None)
        if config_path is None and resolver is not None:
            config_path = resolver(args)
        recipe = load_recipe(config_path) if config_path else None
        kwargs = build_command_kwargs(fn, recipe, args)
        result = fn(**kwargs)
    except UsageError as exc:
        print(f"prunetune {verb}: error: {exc}", file=sys.stderr)
        return UsageError.exit_code
    except KeyboardInterrupt:
        print(f"prunetune {verb}: interrupted", file=sys.stderr)
        return 130
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
