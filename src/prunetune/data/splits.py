"""Train/validation/test splits: seeded splitting, caps, and the splits folder on disk.

A splits folder holds ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl`` (one
:class:`~prunetune.data.base.Example` per line) and ``data_info.json`` (the report of
the run that wrote it: format, input path, counts, dropped rows by reason, ratios, seed
and a fingerprint of the contents). Commands that train or evaluate can be pointed at
such a folder, so every run of a comparison sees exactly the same examples.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from prunetune.data.base import Example, format_ratios
from prunetune.data.tables import read_jsonl, write_jsonl
from prunetune.errors import UsageError

SPLIT_NAMES = ("train", "validation", "test")
INFO_FILE = "data_info.json"


@dataclass
class DatasetSplits:
    """The three splits and the report of how they were made.

    Attributes:
        train: training examples.
        validation: examples for model selection / early stopping.
        test: held-out examples for the final scores.
        report: counts per split and subset, dropped rows by reason, format, input path,
            ratios, seed and fingerprint (written as ``data_info.json``).
    """

    train: list[Example]
    validation: list[Example]
    test: list[Example]
    report: dict[str, Any] = field(default_factory=dict)

    def items(self) -> Iterator[tuple[str, list[Example]]]:
        """``(name, examples)`` for train, validation and test, in that order."""
        for name in SPLIT_NAMES:
            yield name, getattr(self, name)

    def counts(self) -> dict[str, int]:
        """Number of examples per split."""
        return {name: len(examples) for name, examples in self.items()}

    def subset_counts(self) -> dict[str, dict[str, int]]:
        """Examples per ``subset`` value in each split (empty dicts when there are no subsets)."""
        return {name: dict(sorted(Counter(e["subset"] for e in examples if "subset" in e).items()))
                for name, examples in self.items()}

    def fingerprint(self) -> str:
        """A short SHA-256 of the split contents: equal fingerprints mean identical splits."""
        digest = hashlib.sha256()
        for name, examples in self.items():
            digest.update(name.encode())
            for example in examples:
                digest.update(json.dumps(example, sort_keys=True, ensure_ascii=False).encode())
        return digest.hexdigest()[:16]


def split_sizes(total: int, ratios: Sequence[float]) -> tuple[int, int, int]:
    """Sizes of train, validation and test for ``total`` examples.

    Validation and test are rounded half up; train takes the rest, so the sizes always
    add up to ``total`` (400 at 0.8,0.1,0.1 -> 320, 40, 40).
    """
    validation = int(total * ratios[1] + 0.5)
    test = int(total * ratios[2] + 0.5)
    return max(total - validation - test, 0), validation, test


def split_examples(examples: Sequence[Example], ratios: Sequence[float], seed: int,
                   max_examples: int | None = None) -> DatasetSplits:
    """Shuffle with ``seed``, optionally cap, and cut into train/validation/test.

    The same examples in the same order with the same seed always give the same
    splits. The cap applies after the shuffle, so a capped run is a random sample and
    not the head of the file.

    Args:
        examples: cleaned examples in file order.
        ratios: train, validation and test fractions (summing to 1).
        seed: seed of the shuffle.
        max_examples: keep at most this many examples in total.

    Returns:
        The splits, with an empty report.
    """
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    if max_examples is not None:
        shuffled = shuffled[:max_examples]
    n_train, n_validation, _ = split_sizes(len(shuffled), ratios)
    return DatasetSplits(train=shuffled[:n_train],
                         validation=shuffled[n_train:n_train + n_validation],
                         test=shuffled[n_train + n_validation:])


def sample_examples(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    """At most ``limit`` examples, drawn with ``seed`` and kept in their original order.

    Args:
        examples: one split.
        limit: the cap; None keeps everything.
        seed: seed of the draw, so a capped split is the same on every run.

    Returns:
        ``examples`` itself when it is within the cap, else a seeded random subset.
    """
    if limit is None or len(examples) <= limit:
        return examples
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


def check_splits_not_empty(splits: DatasetSplits, usable: int, ratios: Sequence[float]) -> None:
    """Refuse a split that came out empty although its ratio asked for examples.

    A split whose ratio is 0 was asked to be empty and is left alone.

    Raises:
        UsageError: e.g. "validation split is empty: 3 usable examples is too few for
            split ratios 0.8,0.1,0.1".
    """
    for (name, examples), ratio in zip(splits.items(), ratios):
        if not examples and ratio > 0:
            raise UsageError(f"{name} split is empty: {usable} usable examples is too few for split ratios "
                             f"{format_ratios(ratios)}")


def write_splits(splits: DatasetSplits, folder: str | Path) -> None:
    """Write ``train.jsonl``, ``validation.jsonl``, ``test.jsonl`` and ``data_info.json``.

    The folder is created if needed and existing files are replaced; for an
    all-or-nothing result write into :func:`prunetune.outputs.atomic_output_dir`.

    Args:
        splits: the splits; ``splits.report`` becomes ``data_info.json``.
        folder: destination folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, examples in splits.items():
        write_jsonl(folder / f"{name}.jsonl", examples)
    (folder / INFO_FILE).write_text(json.dumps(splits.report, indent=2, ensure_ascii=False) + "\n",
                                    encoding="utf-8")


def has_splits(folder: Path) -> bool:
    """Whether ``folder`` holds all three split files."""
    return all((folder / f"{name}.jsonl").is_file() for name in SPLIT_NAMES)


def read_splits(folder: str | Path) -> DatasetSplits:
    """Read a splits folder back as written by :func:`write_splits`, without any cleaning.

    Args:
        folder: a folder with ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl``;
            ``data_info.json`` is optional.

    Returns:
        The splits; ``report`` is the stored ``data_info.json`` or empty.

    Raises:
        UsageError: if a split file is missing or a row lacks ``source`` or ``target``.
    """
    folder = Path(folder)
    missing = [f"{name}.jsonl" for name in SPLIT_NAMES if not (folder / f"{name}.jsonl").is_file()]
    if missing:
        raise UsageError(f"{folder} is not a splits folder: {', '.join(missing)} missing")
    loaded = {}
    for name in SPLIT_NAMES:
        rows = read_jsonl(folder / f"{name}.jsonl")
        for number, row in enumerate(rows, start=1):
            if not isinstance(row.get("source"), str) or not isinstance(row.get("target"), str):
                raise UsageError(f"{folder / name}.jsonl: row {number} needs text 'source' and 'target' fields")
        loaded[name] = rows
    info = folder / INFO_FILE
    try:
        report = json.loads(info.read_text(encoding="utf-8")) if info.is_file() else {}
    except json.JSONDecodeError:
        raise UsageError(f"{info} is not valid JSON") from None
    return DatasetSplits(**loaded, report=report)
