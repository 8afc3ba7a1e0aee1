"""Cleaning, seeded splitting, caps, the splits folder, and DataArgs validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunetune.data import DataArgs, DatasetSplits, clean_examples, load_splits, read_splits, write_splits
from prunetune.data.splits import split_sizes
from prunetune.errors import UsageError


def write_pairs(path: Path, count: int, **extra) -> Path:
    rows = [{"source": f"Synthetic source {i}.", "target": f"Synthetic target {i}.", "subset": "even" if i % 2 == 0
             else "odd", **extra} for i in range(count)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def pairs(examples):
    return [(e["source"], e["target"]) for e in examples]


# --- cleaning -----------------------------------------------------------------------------------

def test_clean_examples_normalizes_and_counts():
    raw = [
        {"source": "  a\n\n b\t c  ", "target": " x  y ", "subset": " s ", "id": 7},
        {"source": "a b c", "target": "x y", "id": "dup"},  # same pair once whitespace is collapsed
        {"source": " \n ", "target": "t"},
        {"source": "s", "target": "\u00a0"},  # a non-breaking space is whitespace too
        {"source": "", "target": ""},  # counted once, as an empty source
        {"source": "a b c", "target": "z", "subset": "", "id": None},
    ]
    kept, dropped = clean_examples(raw)
    assert kept == [{"source": "a b c", "target": "x y", "subset": "s", "id": "7"},
                    {"source": "a b c", "target": "z"}]
    assert dropped == {"empty_source": 2, "empty_target": 1, "duplicate": 1}


def test_cleaning_is_reported(tmp_path):
    path = write_pairs(tmp_path / "d.jsonl", 20)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"source": "Synthetic  source 0.", "target": "Synthetic target 0."}) + "\n")
        handle.write(json.dumps({"source": "", "target": "t"}) + "\n")
    report = load_splits(DataArgs(dataset=str(path))).report
    assert report["rows"] == 22 and report["usable"] == 20
    assert report["dropped"] == {"empty_source": 1, "empty_target": 0, "duplicate": 1}


# --- splitting ------------------------------------------------------------------------------------

@pytest.mark.parametrize("total,ratios,expected", [
    (100, [0.8, 0.1, 0.1], (80, 10, 10)),
    (400, [0.8, 0.1, 0.1], (320, 40, 40)),
    (15, [0.8, 0.1, 0.1], (11, 2, 2)),
    (10, [0.7, 0.2, 0.1], (7, 2, 1)),
    (10, [0.9, 0.1, 0.0], (9, 1, 0)),
    (3, [0.8, 0.1, 0.1], (3, 0, 0)),
])
def test_split_sizes(total, ratios, expected):
    assert split_sizes(total, ratios) == expected


def test_splits_are_reproducible_and_partition_the_data(tmp_path):
    path = write_pairs(tmp_path / "d.jsonl", 100)
    first = load_splits(DataArgs(dataset=str(path)))
    again = load_splits(DataArgs(dataset=str(path)))
    other = load_splits(DataArgs(dataset=str(path), split_seed=7))
    assert first.counts() == {"train": 80, "validation": 10, "test": 10}
    assert (first.train, first.validation, first.test) == (again.train, again.validation, again.test)
    assert first.report["fingerprint"] == again.report["fingerprint"] != other.report["fingerprint"]
    assert pairs(first.test) != pairs(other.test)
    everything = pairs(first.train) + pairs(first.validation) + pairs(first.test)
    assert len(set(everything)) == 100
    assert set(everything) == {(f"Synthetic source {i}.", f"Synthetic target {i}.") for i in range(100)}
    # Shuffled, not the head of the file.
    assert pairs(first.test) != everything[:10]
    assert first.report["subsets"]["train"] == {
        "even": sum(e["subset"] == "even" for e in first.train), "odd": sum(e["subset"] == "odd" for e in first.train)}


def test_max_examples_caps_after_the_shuffle(tmp_path):
    path = write_pairs(tmp_path / "d.jsonl", 100)
    capped = load_splits(DataArgs(dataset=str(path), max_examples=50))
    assert capped.counts() == {"train": 40, "validation": 5, "test": 5}
    ids = [int(e["source"].split()[-1].rstrip(".")) for e in capped.train + capped.validation + capped.test]
    assert sorted(ids) != list(range(50))  # a random sample, not the first 50 rows
    assert capped.report["max_examples"] == 50


def test_max_eval_examples(tmp_path):
    path = write_pairs(tmp_path / "d.jsonl", 100)
    full = load_splits(DataArgs(dataset=str(path)))
    capped = load_splits(DataArgs(dataset=str(path), max_eval_examples=4))
    assert capped.counts() == {"train": 80, "validation": 4, "test": 4}
    assert capped.train == full.train
    assert set(pairs(capped.test)) <= set(pairs(full.test))


def test_zero_ratio_gives_an_empty_split_on_purpose(tmp_path):
    splits = load_splits(DataArgs(dataset=str(write_pairs(tmp_path / "d.jsonl", 10)), split_ratios=[0.9, 0.1, 0]))
    assert splits.counts() == {"train": 9, "validation": 1, "test": 0}


def test_too_few_examples_for_a_split(tmp_path):
    path = write_pairs(tmp_path / "d.jsonl", 3)
    with pytest.raises(UsageError, match=r"^validation split is empty: 3 usable examples is too few for split "
                                         r"ratios 0.8,0.1,0.1$"):
        load_splits(DataArgs(dataset=str(path)))
    with pytest.raises(UsageError, match="test split is empty: 4 usable examples"):
        load_splits(DataArgs(dataset=str(write_pairs(tmp_path / "d.jsonl", 20)), max_examples=4,
                             split_ratios=[0.7, 0.2, 0.1]))


# --- the splits folder --------------------------------------------------------------------------

def test_write_and_read_back(tmp_path):
    splits = load_splits(DataArgs(dataset=str(write_pairs(tmp_path / "d.jsonl", 50))))
    folder = tmp_path / "splits"
    write_splits(splits, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["data_info.json", "test.jsonl", "train.jsonl",
                                                         "validation.jsonl"]
    assert json.loads((folder / "data_info.json").read_text()) == splits.report
    first_line = json.loads((folder / "train.jsonl").read_text().splitlines()[0])
    assert set(first_line) == {"source", "target", "subset", "id"}

    stored = read_splits(folder)
    assert (stored.train, stored.validation, stored.test, stored.report) == (
        splits.train, splits.validation, splits.test, splits.report)

    reloaded = load_splits(DataArgs(dataset=str(folder)))
    assert reloaded.report["format"] == "splits"
    assert reloaded.counts() == splits.counts() and reloaded.train == splits.train
    assert reloaded.report["fingerprint"] == splits.report["fingerprint"]
    assert reloaded.report["origin"] == {"format": "jsonl", "dataset": str((tmp_path / "d.jsonl").absolute()),
                                         "fingerprint": splits.report["fingerprint"]}
    # The origin survives a second round trip.
    write_splits(reloaded, tmp_path / "again")
    assert load_splits(DataArgs(dataset=str(tmp_path / "again"))).report["origin"] == reloaded.report["origin"]


def test_splits_folder_caps_are_seeded_samples(tmp_path):
    folder = tmp_path / "splits"
    write_splits(load_splits(DataArgs(dataset=str(write_pairs(tmp_path / "d.jsonl", 100)))), folder)
    args = DataArgs(dataset=str(folder), data_format="splits", max_examples=30, max_eval_examples=3)
    capped = load_splits(args)
    assert capped.counts() == {"train": 30, "validation": 3, "test": 3}
    assert capped.train == load_splits(args).train
    full = read_splits(folder)
    positions = [full.train.index(e) for e in capped.train]
    assert positions == sorted(positions) and positions != list(range(30))


def test_splits_folder_errors(tmp_path):
    folder = tmp_path / "splits"
    write_splits(DatasetSplits(train=[{"source": "s", "target": "t"}], validation=[{"source": " ", "target": "t"}],
                               test=[]), folder)
    with pytest.raises(UsageError, match="validation split is empty: .*validation.jsonl holds no usable examples"):
        load_splits(DataArgs(dataset=str(folder)))
    (folder / "validation.jsonl").write_text('{"source": "s"}\n')
    with pytest.raises(UsageError, match="validation.jsonl: row 1 needs text 'source' and 'target' fields"):
        read_splits(folder)
    with pytest.raises(UsageError, match="--data-format splits reads a folder"):
        load_splits(DataArgs(dataset=str(folder / "train.jsonl"), data_format="splits"))
    with pytest.raises(UsageError, match="--target-column does not apply to the splits format"):
        load_splits(DataArgs(dataset=str(folder), target_column="x"))


# --- DataArgs validation -------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,message", [
    ({"data_format": "xml"}, "unknown data format 'xml'"),
    ({"dataset": " "}, "--dataset is empty"),
    ({"split_ratios": [0.8, 0.2]}, "--split-ratios takes 3 values"),
    ({"split_ratios": [0.8, 0.1, 0.2]}, r"--split-ratios must sum to 1, got 0.8,0.1,0.2 \(sum 1.1\)"),
    ({"split_ratios": [1.0, 0.0, 0.0]}, r"each value must be in \[0, 1\)"),
    ({"split_ratios": [0.6, -0.1, 0.5]}, r"each value must be in \[0, 1\)"),
    ({"split_ratios": [0.0, 0.5, 0.5]}, "the train fraction must be positive"),
    ({"max_examples": 0}, "--max-examples must be at least 1"),
    ({"max_eval_examples": -1}, "--max-eval-examples must be at least 1"),
    ({"source_column": "a", "target_column": "a"}, "--source-column and --target-column are both 'a'"),
    ({"target_column": ""}, "--target-column is empty"),
    ({"dataset": "demo", "data_format": "csv"}, "--dataset demo is the bundled set"),
    ({"dataset": "x.csv", "data_format": "demo"}, "--data-format demo reads the bundled set"),
    ({"data_format": "mimic_discharge", "dataset": "d.csv", "subset_column": "s"},
     "--subset-column does not apply to the mimic_discharge format"),
])
def test_data_args_validation(kwargs, message):
    with pytest.raises(UsageError, match=message):
        DataArgs(**kwargs)


def test_data_args_accepts_a_path_and_inexact_ratios(tmp_path):
    # 0.7 + 0.2 + 0.1 is 0.9999999999999999 in floating point.
    args = DataArgs(dataset=tmp_path / "d.jsonl", split_ratios=[0.7, 0.2, 0.1])
    assert args.dataset == str(tmp_path / "d.jsonl") and args.split_ratios == [0.7, 0.2, 0.1]
