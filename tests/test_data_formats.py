"""Every file format of prunetune.data, format auto-detection, and errors about the input file.

All inputs are small made-up files written to tmp_path.
"""

from __future__ import annotations

import csv
import gzip
import json
import runpy
from pathlib import Path

import pytest

from prunetune.data import DEMO_PATH, DataArgs, load_splits, tables
from prunetune.data.iu_xray import IU_XRAY_COLUMNS
from prunetune.errors import UsageError

REPO = Path(__file__).resolve().parents[1]

# Ten distinct questions/answers: enough for non-empty 8/1/1 splits.
PAIRS = [(f"Synthetic question number {i} about a pretend symptom?", f"Made-up answer {i}.") for i in range(10)]


def write_csv(path: Path, header: list[str], rows: list[list[str]], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_json(path: Path, records: list[dict]) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def all_examples(splits):
    return splits.train + splits.validation + splits.test


# --- generic JSONL / JSON / CSV -------------------------------------------------------------

def test_jsonl_with_default_columns_keeps_subset_and_id(tmp_path):
    records = [{"source": s, "target": t, "subset": "a" if i % 2 else "b", "id": f"x{i}", "other": 1}
               for i, (s, t) in enumerate(PAIRS)]
    splits = load_splits(DataArgs(dataset=str(write_jsonl(tmp_path / "d.jsonl", records))))
    assert splits.report["format"] == "jsonl"
    examples = all_examples(splits)
    assert len(examples) == 10
    assert all(set(e) == {"source", "target", "subset", "id"} for e in examples)
    assert {e["id"] for e in examples} == {f"x{i}" for i in range(10)}
    assert splits.report["subsets"]["train"] and sum(sum(c.values()) for c in splits.report["subsets"].values()) == 10


def test_json_list_with_chosen_columns(tmp_path):
    records = [{"question": s, "answer": t, "kind": "q"} for s, t in PAIRS]
    path = write_json(tmp_path / "d.json", records)
    splits = load_splits(DataArgs(dataset=str(path), source_column="question", target_column="answer",
                                  subset_column="kind"))
    assert splits.report["format"] == "json"
    examples = all_examples(splits)
    assert sorted((e["source"], e["target"]) for e in examples) == sorted(PAIRS)
    assert {e["subset"] for e in examples} == {"q"}
    # Without an id column the row number is the id, so each example maps back to its row.
    assert sorted(int(e["id"]) for e in examples) == list(range(10))


@pytest.mark.parametrize("suffix,delimiter", [(".csv", ","), (".tsv", "\t")])
def test_csv_and_tsv(tmp_path, suffix, delimiter):
    path = write_csv(tmp_path / f"d{suffix}", ["text", "summary"], [list(p) for p in PAIRS], delimiter)
    splits = load_splits(DataArgs(dataset=str(path), source_column="text", target_column="summary"))
    assert splits.report["format"] == "csv"
    assert sorted((e["source"], e["target"]) for e in all_examples(splits)) == sorted(PAIRS)


def test_gzipped_jsonl(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"source": s, "target": t}) + "\n" for s, t in PAIRS)
    splits = load_splits(DataArgs(dataset=str(path)))
    assert splits.report["format"] == "jsonl" and splits.report["usable"] == 10


def test_explicit_format_overrides_extension(tmp_path):
    path = tmp_path / "records.txt"
    write_jsonl(path, [{"source": s, "target": t} for s, t in PAIRS])
    assert load_splits(DataArgs(dataset=str(path), data_format="jsonl")).report["usable"] == 10


def test_numbers_are_text_but_lists_are_refused(tmp_path):
    records = [{"source": f"value {i}", "target": i} for i in range(10)]
    splits = load_splits(DataArgs(dataset=str(write_json(tmp_path / "n.json", records))))
    assert {e["target"] for e in all_examples(splits)} == {str(i) for i in range(10)}
    bad = write_json(tmp_path / "bad.json", [{"source": ["a", "b"], "target": "t"}])
    with pytest.raises(UsageError, match="column 'source' of bad.json holds a list, not text"):
        load_splits(DataArgs(dataset=str(bad)))


# --- ChatDoctor family ------------------------------------------------------------------------

def test_chatdoctor(tmp_path):
    instruction = "If you are a doctor, please answer the medical questions based on the patient's description."
    records = [{"instruction": instruction, "input": s, "output": t} for s, t in PAIRS]
    for fmt in ("auto", "chatdoctor"):
        splits = load_splits(DataArgs(dataset=str(write_json(tmp_path / "HealthCareMagic-100k.json", records)),
                                      data_format=fmt))
        assert splits.report["format"] == "chatdoctor"
        examples = all_examples(splits)
        assert sorted((e["source"], e["target"]) for e in examples) == sorted(PAIRS)
        assert not any(instruction in e["source"] for e in examples)


def test_icliniq_evaluation_layout(tmp_path):
    records = [{"input": s, "answer_icliniq": t, "answer_chatgpt": "gpt " + t, "answer_chatdoctor": "cd " + t}
               for s, t in PAIRS]
    path = write_json(tmp_path / "iCliniq.json", records)
    splits = load_splits(DataArgs(dataset=str(path)))
    assert splits.report["format"] == "icliniq"
    assert sorted(e["target"] for e in all_examples(splits)) == sorted(t for _, t in PAIRS)
    # Another answer can be chosen as the target.
    splits = load_splits(DataArgs(dataset=str(path), data_format="icliniq", target_column="answer_chatgpt"))
    assert all(e["target"].startswith("gpt ") for e in all_examples(splits))


# --- IU X-ray -----------------------------------------------------------------------------------

def iu_rows() -> list[list[str]]:
    """Made-up rows in the indiana_reports.csv layout, including the cases the loader must drop."""
    rows = []
    for i in range(12):
        mesh = " Normal " if i % 3 == 0 else "Cardiomegaly/mild;Opacity/lung/base/left"
        rows.append([str(i + 1), mesh, "x", "Xray Chest PA and Lateral", "Synthetic indication.", "None.",
                     f"Synthetic findings   number {i}.\nHeart normal.", f"Synthetic impression {i}."])
    rows.append(["100", "normal", "normal", "Xray", "", "", "", "Impression without findings."])
    rows.append(["101", "normal", "normal", "Xray", "", "", "Findings without impression.", "  "])
    rows.append(["102", "normal", "normal", "Xray", "", "", "Synthetic findings number 0. Heart normal.",
                 "Synthetic impression 0."])  # the same pair as uid 1 once whitespace is collapsed
    return rows


def test_iu_xray(tmp_path):
    path = write_csv(tmp_path / "indiana_reports.csv", list(IU_XRAY_COLUMNS), iu_rows())
    splits = load_splits(DataArgs(dataset=str(path)))
    report = splits.report
    assert report["format"] == "iu_xray"
    assert report["rows"] == 15 and report["usable"] == 12
    assert report["dropped"] == {"empty_source": 1, "empty_target": 1, "duplicate": 1}
    examples = {e["id"]: e for e in all_examples(splits)}
    assert set(examples) == {str(i) for i in range(1, 13)}
    assert examples["1"] == {"source": "Synthetic findings number 0. Heart normal.",
                             "target": "Synthetic impression 0.", "subset": "normal", "id": "1"}
    assert examples["2"]["subset"] == "abnormal"
    assert sum(e["subset"] == "normal" for e in examples.values()) == 4


def test_iu_xray_needs_only_findings_and_impression(tmp_path):
    rows = [[f"Findings {i}.", f"Impression {i}."] for i in range(10)]
    path = write_csv(tmp_path / "reports.csv", ["findings", "impression"], rows)
    splits = load_splits(DataArgs(dataset=str(path), data_format="iu_xray"))
    assert all("subset" not in e for e in all_examples(splits))
    with pytest.raises(UsageError, match=r"column 'impression' not found in reports.csv \(available: findings, "
                                         r"b\); choose one with --target-column"):
        load_splits(DataArgs(dataset=str(write_csv(tmp_path / "reports.csv", ["findings", "b"], rows)),
                             data_format="iu_xray"))


# --- demo ----------------------------------------------------------------------------------------

def test_demo_set():
    splits = load_splits(DataArgs())
    assert splits.report["format"] == "demo"
    assert splits.report["usable"] == 400 and splits.counts() == {"train": 320, "validation": 40, "test": 40}
    examples = all_examples(splits)
    assert {e["subset"] for e in examples} == {"normal", "abnormal"}
    assert all(20 <= len(e["source"].split()) <= 60 and 5 <= len(e["target"].split()) <= 20 for e in examples)
    # The impression is a function of the findings: no source has two targets.
    assert len({e["source"] for e in examples}) == len(examples)
    assert (DEMO_PATH.parent / "README.md").read_text().lower().count("synthetic") >= 1


def test_demo_file_is_what_the_generator_writes(tmp_path):
    script = runpy.run_path(str(REPO / "scripts" / "make_demo_data.py"), run_name="make_demo_data")
    assert script["to_jsonl"](script["generate"]()) == DEMO_PATH.read_text(encoding="utf-8")
    out = tmp_path / "demo.jsonl"
    assert script["main"](["--count", "25", "--seed", "1", "--output", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 25
    assert script["main"](["--check", "--output", str(out)]) == 1  # another seed: out of date
    assert script["main"](["--check"]) == 0


# --- auto-detection and file errors -------------------------------------------------------

@pytest.mark.parametrize("columns,expected", [
    (["findings", "impression", "MeSH"], "iu_xray"),
    (["input", "answer_icliniq", "answer_chatgpt"], "icliniq"),
    (["instruction", "input", "output"], "chatdoctor"),
    (["source", "target", "input", "output"], "jsonl"),  # the package's own layout wins
])
def test_auto_detection_by_columns(tmp_path, columns, expected):
    records = [{c: f"{c} {i}" for c in columns} for i in range(10)]
    assert load_splits(DataArgs(dataset=str(write_jsonl(tmp_path / "d.jsonl", records)))).report["format"] == expected


def test_given_columns_mean_the_generic_reader(tmp_path):
    records = [{"instruction": "i", "input": s, "output": t} for s, t in PAIRS]
    path = write_json(tmp_path / "d.json", records)
    splits = load_splits(DataArgs(dataset=str(path), source_column="output", target_column="input"))
    assert splits.report["format"] == "json"
    assert sorted(e["target"] for e in all_examples(splits)) == sorted(s for s, _ in PAIRS)


def test_unknown_columns_ask_for_source_column(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": s, "reply": t} for s, t in PAIRS])
    with pytest.raises(UsageError, match=r"column 'source' not found in d.jsonl \(available: question, reply\); "
                                         r"choose one with --source-column"):
        load_splits(DataArgs(dataset=str(path)))
    with pytest.raises(UsageError, match="column 'answer' not found .* choose one with --target-column"):
        load_splits(DataArgs(dataset=str(path), source_column="question", target_column="answer"))


def test_file_errors(tmp_path):
    with pytest.raises(UsageError, match="dataset .*missing.jsonl not found"):
        load_splits(DataArgs(dataset=str(tmp_path / "missing.jsonl")))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UsageError, match="cannot tell how to read notes.txt from its extension"):
        load_splits(DataArgs(dataset=str(tmp_path / "notes.txt")))
    with pytest.raises(UsageError, match="cannot tell whether notes.txt is JSON, JSONL or CSV"):
        load_splits(DataArgs(dataset=str(tmp_path / "notes.txt"), data_format="chatdoctor"))
    (tmp_path / "bad.json").write_text('[{"source": "a",')
    with pytest.raises(UsageError, match="bad.json is not valid JSON"):
        load_splits(DataArgs(dataset=str(tmp_path / "bad.json")))
    (tmp_path / "obj.json").write_text('{"source": "a", "target": "b"}')
    with pytest.raises(UsageError, match="must hold a JSON list of objects, not a dict"):
        load_splits(DataArgs(dataset=str(tmp_path / "obj.json")))
    (tmp_path / "bad.jsonl").write_text('{"source": "a", "target": "b"}\nnot json\n')
    with pytest.raises(UsageError, match="bad.jsonl: line 2 is not valid JSON"):
        load_splits(DataArgs(dataset=str(tmp_path / "bad.jsonl")))
    (tmp_path / "latin1.csv").write_bytes("source,target\ncaf\xe9,x\n".encode("latin-1"))
    with pytest.raises(UsageError, match="latin1.csv is not UTF-8 text"):
        load_splits(DataArgs(dataset=str(tmp_path / "latin1.csv")))
    (tmp_path / "plain.jsonl.gz").write_text('{"source": "a", "target": "b"}\n')
    with pytest.raises(UsageError, match="plain.jsonl.gz is not a valid gzip file"):
        load_splits(DataArgs(dataset=str(tmp_path / "plain.jsonl.gz")))
    (tmp_path / "empty.csv").write_text("source,target\n")
    with pytest.raises(UsageError, match="empty.csv holds no rows"):
        load_splits(DataArgs(dataset=str(tmp_path / "empty.csv")))
    with pytest.raises(UsageError, match="is a folder; --data-format csv reads a file"):
        load_splits(DataArgs(dataset=str(tmp_path), data_format="csv"))
    with pytest.raises(UsageError, match="is not a splits folder: train.jsonl, validation.jsonl, test.jsonl missing"):
        load_splits(DataArgs(dataset=str(tmp_path)))


def test_unreadable_file(tmp_path, monkeypatch):
    # chmod cannot make a file unreadable for root (CI containers), so the refusal is simulated.
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tables, "open", refuse, raising=False)
    path = write_jsonl(tmp_path / "d.jsonl", [{"source": "a", "target": "b"}])
    with pytest.raises(UsageError, match="cannot read .*d.jsonl: Permission denied"):
        load_splits(DataArgs(dataset=str(path)))


def test_all_empty_target_column(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["source", "target"], [[s, "  "] for s, _ in PAIRS])
    with pytest.raises(UsageError, match="target column 'target' is empty in every row of d.csv"):
        load_splits(DataArgs(dataset=str(path)))
