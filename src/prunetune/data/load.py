"""From :class:`~prunetune.data.base.DataArgs` to splits: format detection and :func:`load_splits`.

Every format goes through the same steps: open the file, detect the format if asked
(``auto``), let the format's loader turn rows into examples, clean them
(:func:`~prunetune.data.base.clean_examples`), shuffle with the seed, cap, split, and
report what happened.

``--data-format auto`` resolves as follows:

1. ``demo`` -> the bundled synthetic set.
2. A folder -> ``splits`` (it must hold train.jsonl, validation.jsonl and test.jsonl).
3. A file: with ``--source-column`` or ``--target-column`` given, the generic reader for
   its extension (``.jsonl``, ``.json``, ``.csv``/``.tsv``, each optionally ``.gz``).
   Otherwise by its columns, first match wins:

   * ``source`` + ``target`` -> the generic reader (files this package wrote);
   * ``note_id`` + ``text`` -> ``mimic_radiology`` or ``mimic_discharge``, by the file
     name ("radiology"/"discharge") or else the first note's type (RR/AR or DS/AD);
   * ``findings`` + ``impression`` -> ``iu_xray``;
   * ``input`` + ``answer_icliniq`` -> ``icliniq``;
   * ``input`` + ``output`` -> ``chatdoctor``;
   * anything else -> the generic reader, which then asks for ``--source-column``.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from prunetune.data.base import DataArgs, Example, RawExamples, clean_examples
from prunetune.data.chatdoctor import load_chatdoctor, load_icliniq
from prunetune.data.demo import DEMO_PATH
from prunetune.data.generic import load_generic
from prunetune.data.iu_xray import load_iu_xray
from prunetune.data.mimic import load_mimic_discharge, load_mimic_radiology
from prunetune.data.splits import DatasetSplits, check_splits_not_empty, read_splits, sample_examples, split_examples
from prunetune.data.tables import Table, open_table, table_kind
from prunetune.errors import UsageError

logger = logging.getLogger(__name__)

Loader = Callable[[Table, DataArgs], RawExamples]

# Format -> loader of the file formats ("auto" and "splits" are resolved before).
LOADERS: dict[str, Loader] = {
    "jsonl": load_generic,
    "json": load_generic,
    "csv": load_generic,
    "demo": load_generic,
    "chatdoctor": load_chatdoctor,
    "icliniq": load_icliniq,
    "iu_xray": load_iu_xray,
    "mimic_radiology": load_mimic_radiology,
    "mimic_discharge": load_mimic_discharge,
}

_MIMIC_NOTE_TYPES = {"RR": "mimic_radiology", "AR": "mimic_radiology",
                     "DS": "mimic_discharge", "AD": "mimic_discharge"}


def detect_format(table: Table, args: DataArgs) -> str:
    """Resolve ``auto`` for an opened file (rule 3 of the module docstring).

    Args:
        table: the opened file.
        args: only ``source_column``/``target_column`` matter here.

    Returns:
        One of the keys of :data:`LOADERS` other than ``demo``.

    Raises:
        UsageError: for a MIMIC-IV-Note file that is neither radiology nor discharge
            by name or note type.
    """
    generic = "csv" if table.kind == "tsv" else table.kind
    columns = set(table.columns)
    if args.source_column or args.target_column or {"source", "target"} <= columns:
        return generic
    if {"note_id", "text"} <= columns:
        name = table.path.name.lower()
        for kind in ("radiology", "discharge"):
            if kind in name:
                return f"mimic_{kind}"
        note_type = str((table.first_row or {}).get("note_type") or "").strip().upper()
        if note_type in _MIMIC_NOTE_TYPES:
            return _MIMIC_NOTE_TYPES[note_type]
        raise UsageError(f"{table.path.name} looks like MIMIC-IV-Note (note_id, text) but neither its name nor its "
                         "note_type tells radiology from discharge; pass --data-format mimic_radiology or "
                         "mimic_discharge")
    if {"findings", "impression"} <= columns:
        return "iu_xray"
    if {"input", "answer_icliniq"} <= columns:
        return "icliniq"
    if {"input", "output"} <= columns:
        return "chatdoctor"
    return generic


def _table_kind(data_format: str, path: Path) -> str | None:
    """How to parse ``path`` for ``data_format`` (None: let :func:`open_table` complain)."""
    if data_format in ("jsonl", "json"):
        return data_format
    kind = table_kind(path)
    if data_format in ("csv", "mimic_radiology", "mimic_discharge"):
        return kind if kind in ("csv", "tsv") else "csv"
    if kind is None and data_format != "auto":
        raise UsageError(f"cannot tell whether {path.name} is JSON, JSONL or CSV; give it a .json, .jsonl, .csv "
                         "or .tsv extension")
    return kind


def _describe(dropped: dict[str, int]) -> str:
    return ", ".join(f"{reason}={count}" for reason, count in dropped.items() if count) or "nothing"


def load_splits(args: DataArgs) -> DatasetSplits:
    """Read ``args.dataset``, clean it and split it reproducibly.

    Args:
        args: the dataset, its format and columns, split ratios, seed and caps.

    Returns:
        The splits, whose ``report`` holds the format used, the input path, rows read,
        usable examples, rows dropped by reason, ratios, seed, caps, counts per split
        and per subset, and a fingerprint of the contents.

    Raises:
        UsageError: for a missing or unreadable file, a format that cannot be inferred,
            a missing column, a target that is empty in every row, no usable examples,
            or a split that comes out empty.
    """
    if args.dataset == "demo" or args.data_format == "demo":
        path, data_format = DEMO_PATH, "demo"
    else:
        path, data_format = Path(args.dataset).expanduser(), args.data_format
    if not path.exists():
        raise UsageError(f"dataset {path} not found")
    if path.is_dir():
        if data_format not in ("auto", "splits"):
            raise UsageError(f"{path} is a folder; --data-format {data_format} reads a file")
        args.check_columns_apply("splits")
        return _load_splits_folder(path, args)
    if data_format == "splits":
        raise UsageError(f"--data-format splits reads a folder holding train.jsonl, validation.jsonl and "
                         f"test.jsonl; {path} is a file")

    table = open_table(path, _table_kind(data_format, path))
    if table.first_row is None:
        raise UsageError(f"{path} holds no rows")
    if data_format == "auto":
        data_format = detect_format(table, args)
        logger.info("%s: detected format %s", path.name, data_format)
        args.check_columns_apply(data_format)
    raw = LOADERS[data_format](table, args)
    if raw.examples and not any(example["target"].strip() for example in raw.examples):
        raise UsageError(f"{raw.target_field} is empty in every row of {path.name}")
    examples, cleaning = clean_examples(raw.examples)
    dropped = {**raw.dropped, **cleaning}
    if not examples:
        raise UsageError(f"no usable examples in {path.name}: {raw.rows} rows read, dropped {_describe(dropped)}")

    splits = split_examples(examples, args.split_ratios, args.split_seed, args.max_examples)
    check_splits_not_empty(splits, sum(splits.counts().values()), args.split_ratios)
    splits.validation = sample_examples(splits.validation, args.max_eval_examples, args.split_seed)
    splits.test = sample_examples(splits.test, args.max_eval_examples, args.split_seed)
    splits.report = _report(splits, args, data_format, path, raw.rows, len(examples), dropped)
    return splits


def _load_splits_folder(folder: Path, args: DataArgs) -> DatasetSplits:
    """Format ``splits``: clean each stored split, then apply the caps.

    ``max_examples`` caps train and ``max_eval_examples`` validation and test, each as a
    seeded sample that keeps file order.
    """
    stored = read_splits(folder)
    rows = sum(stored.counts().values())
    dropped: Counter[str] = Counter()
    cleaned: dict[str, list[Example]] = {}
    for name, examples in stored.items():
        kept, why = clean_examples(examples)
        dropped.update(why)
        # A split written empty was meant to be empty (a 0 ratio); one emptied by cleaning was not.
        if examples and not kept:
            raise UsageError(f"{name} split is empty: {folder / name}.jsonl holds no usable examples")
        cap = args.max_examples if name == "train" else args.max_eval_examples
        cleaned[name] = sample_examples(kept, cap, args.split_seed)
    if not cleaned["train"]:
        raise UsageError(f"train split is empty: {folder}/train.jsonl holds no examples")
    splits = DatasetSplits(**cleaned)
    usable = rows - sum(dropped.values())
    splits.report = _report(splits, args, "splits", folder, rows, usable, dict(dropped))
    # Keep where the stored splits came from, through any number of re-reads.
    origin = stored.report.get("origin") or {key: stored.report[key] for key in ("format", "dataset", "fingerprint")
                                             if key in stored.report}
    if origin:
        splits.report["origin"] = origin
    return splits


def _report(splits: DatasetSplits, args: DataArgs, data_format: str, path: Path, rows: int, usable: int,
            dropped: dict[str, int]) -> dict[str, Any]:
    """The ``data_info.json`` record (fixed keys), logged as counts only."""
    counts = splits.counts()
    report = {
        "format": data_format,
        "dataset": str(path.absolute()),
        "rows": rows,
        "usable": usable,
        "dropped": dropped,
        "split_ratios": args.split_ratios if data_format != "splits" else None,
        "split_seed": args.split_seed,
        "max_examples": args.max_examples,
        "max_eval_examples": args.max_eval_examples,
        "counts": counts,
        "subsets": splits.subset_counts(),
        "fingerprint": splits.fingerprint(),
    }
    logger.info("%s (%s): %d rows read, %d usable; dropped %s", path.name, data_format, rows, usable,
                _describe(dropped))
    capped = f" (capped from {usable})" if sum(counts.values()) < usable else ""
    logger.info("splits: %s%s", ", ".join(f"{name}={count}" for name, count in counts.items()), capped)
    return report
