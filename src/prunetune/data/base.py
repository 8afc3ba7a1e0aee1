"""Shared pieces of the data package: the argument group, the example type, cleaning.

* :class:`DataArgs` - which dataset to read and how to split it; an argument group
  reused by ``prunetune data``, ``finetune`` and ``run`` (hence the prefixed field names).
* :class:`Example` - one ``source``/``target`` pair as stored in the split JSONL files.
* :class:`RawExamples` - what a format loader hands back, before cleaning.
* :func:`clean_examples` - the cleaning every loader's output goes through.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Iterable, Literal, TypedDict

from prunetune.config import arg
from prunetune.errors import UsageError

DataFormat = Literal["auto", "jsonl", "json", "csv", "chatdoctor", "icliniq", "iu_xray",
                     "mimic_radiology", "mimic_discharge", "splits", "demo"]
DATA_FORMATS: tuple[str, ...] = typing.get_args(DataFormat)

# Formats whose source and target are not columns (notes split into sections, files that
# already hold ``source``/``target``), so --source-column and friends would be ignored.
FORMATS_WITHOUT_COLUMNS = ("mimic_radiology", "mimic_discharge", "splits", "demo")

# Why an example is dropped by :func:`clean_examples`; always reported, zeros included,
# so reports of different runs have the same keys.
DROP_REASONS = ("empty_source", "empty_target", "duplicate")


class _ExampleFields(TypedDict):
    source: str
    target: str


class Example(_ExampleFields, total=False):
    """One pair; ``subset`` (e.g. "normal"/"abnormal") and ``id`` are optional."""

    subset: str
    id: str


@dataclass
class DataArgs:
    """Dataset to read and how to split it into train/validation/test."""

    dataset: str = arg("demo", help="a data file (.jsonl, .json, .csv, .tsv, optionally .gz), a folder holding "
                                    "train.jsonl/validation.jsonl/test.jsonl, or 'demo' for the bundled synthetic "
                                    "radiology set (write ./demo for a file of that name)")
    data_format: DataFormat = arg("auto", help="how to read --dataset; 'auto': a folder is read as splits, a file "
                                               "by its columns (note_id+text: MIMIC-IV-Note, findings+impression: "
                                               "iu_xray, input+answer_icliniq: icliniq, input+output: chatdoctor), "
                                               "else by its extension; given --source-column or --target-column, "
                                               "always by its extension")
    source_column: str | None = arg(None, help="column holding the model input (default 'source', or the format's "
                                               "own: chatdoctor/icliniq 'input', iu_xray 'findings')")
    target_column: str | None = arg(None, help="column holding the reference output (default 'target', or the "
                                               "format's own: chatdoctor 'output', icliniq 'answer_icliniq', "
                                               "iu_xray 'impression')")
    subset_column: str | None = arg(None, help="column copied into each example's 'subset' field, for per-subset "
                                               "scores (default: a 'subset' column if present; iu_xray derives "
                                               "normal/abnormal from MeSH)")
    split_ratios: list[float] = arg(help="train,validation,test fractions of the usable examples; they sum to 1",
                                    default_factory=lambda: [0.8, 0.1, 0.1])
    split_seed: int = arg(42, help="seed of the shuffle that assigns examples to splits")
    max_examples: int | None = arg(None, help="keep at most this many examples (after the seeded shuffle, before "
                                              "splitting; for a splits folder: of train) for quick runs")
    max_eval_examples: int | None = arg(None, help="keep at most this many validation and test examples each")

    def __post_init__(self) -> None:
        if self.data_format not in DATA_FORMATS:
            raise UsageError(f"unknown data format {self.data_format!r} (choose from {', '.join(DATA_FORMATS)})")
        # Accept a Path from Python callers; the field stays a str because "demo" is not a path.
        self.dataset = str(self.dataset).strip()
        if not self.dataset:
            raise UsageError("--dataset is empty")
        if self.data_format == "demo" and self.dataset != "demo":
            raise UsageError(f"--data-format demo reads the bundled set; it takes no --dataset ({self.dataset})")
        if self.dataset == "demo" and self.data_format not in ("auto", "demo"):
            raise UsageError(f"--dataset demo is the bundled set; --data-format {self.data_format} does not apply "
                             "(write ./demo to read a file named demo)")
        for name in ("source_column", "target_column", "subset_column"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise UsageError(f"--{name.replace('_', '-')} is empty")
        if self.source_column is not None and self.source_column == self.target_column:
            raise UsageError(f"--source-column and --target-column are both {self.source_column!r}")
        self.check_columns_apply("demo" if self.dataset == "demo" else self.data_format)
        self._check_split_ratios()
        for name in ("max_examples", "max_eval_examples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}")

    def _check_split_ratios(self) -> None:
        if len(self.split_ratios) != 3:
            raise UsageError(f"--split-ratios takes 3 values (train,validation,test), got {len(self.split_ratios)}")
        self.split_ratios = [float(r) for r in self.split_ratios]
        shown = format_ratios(self.split_ratios)
        if not all(0 <= r < 1 for r in self.split_ratios):
            raise UsageError(f"--split-ratios: each value must be in [0, 1), got {shown}")
        if self.split_ratios[0] <= 0:
            raise UsageError(f"--split-ratios: the train fraction must be positive, got {shown}")
        # A tolerance, because 0.7+0.2+0.1 is not exactly 1.0 in floating point.
        if abs(sum(self.split_ratios) - 1) > 1e-6:
            raise UsageError(f"--split-ratios must sum to 1, got {shown} (sum {sum(self.split_ratios):g})")

    def check_columns_apply(self, data_format: str) -> None:
        """Refuse column options for a format that has no columns to choose from.

        Called again once ``auto`` has been resolved, since only then is the format known.

        Args:
            data_format: the resolved format.

        Raises:
            UsageError: naming the first column option that was given.
        """
        if data_format not in FORMATS_WITHOUT_COLUMNS:
            return
        for name in ("source_column", "target_column", "subset_column"):
            if getattr(self, name) is not None:
                raise UsageError(f"--{name.replace('_', '-')} does not apply to the {data_format} format "
                                 "(its source and target are fixed)")


@dataclass
class RawExamples:
    """What a format loader returns: examples before cleaning, and what it skipped.

    Attributes:
        examples: pairs in file order; text not yet normalized, possibly empty.
        rows: rows (or notes, or objects) read from the file.
        target_field: what the target was read from, for error messages
            (e.g. "target column 'impression'").
        dropped: rows the loader itself skipped, by reason (e.g. ``missing_impression``).
    """

    examples: list[Example]
    rows: int
    target_field: str
    dropped: dict[str, int] = field(default_factory=dict)


def normalize_text(text: str) -> str:
    """Strip and collapse every run of whitespace (newlines included) to one space."""
    normalized = " ".join(text.split())
    # Hand back the very same object when nothing changed, so text a loader already
    # normalized is not held twice (millions of MIMIC notes would double peak memory).
    return text if normalized == text else normalized


def clean_examples(examples: Iterable[Example]) -> tuple[list[Example], dict[str, int]]:
    """Normalize whitespace, then drop empty and exactly repeated pairs.

    The first occurrence of a repeated ``(source, target)`` pair is kept, so the result
    does not depend on anything but the input order.

    Args:
        examples: pairs as produced by a format loader.

    Returns:
        The kept examples (only ``source``, ``target`` and non-empty ``subset``/``id``)
        and the number dropped for each of :data:`DROP_REASONS`.
    """
    kept: list[Example] = []
    dropped = dict.fromkeys(DROP_REASONS, 0)
    seen: set[tuple[str, str]] = set()
    for example in examples:
        source = normalize_text(example["source"])
        target = normalize_text(example["target"])
        if not source:
            dropped["empty_source"] += 1
            continue
        if not target:
            dropped["empty_target"] += 1
            continue
        if (source, target) in seen:
            dropped["duplicate"] += 1
            continue
        seen.add((source, target))
        cleaned: Example = {"source": source, "target": target}
        for extra in ("subset", "id"):
            value = example.get(extra)
            value = normalize_text(str(value)) if value is not None else ""
            if value:
                cleaned[extra] = value
        kept.append(cleaned)
    return kept, dropped


def format_ratios(ratios: Iterable[float]) -> str:
    """``[0.8, 0.1, 0.1]`` -> ``"0.8,0.1,0.1"``, as typed on the command line."""
    return ",".join(f"{r:g}" for r in ratios)
