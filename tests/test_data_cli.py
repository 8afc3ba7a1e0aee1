"""``prunetune data`` end to end through the real entry point: files written, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunetune.cli import main
from prunetune.data import DataArgs
from prunetune.data.command import DataOutputArgs, data_command
from prunetune.errors import UsageError

INFO_KEYS = {"format", "dataset", "rows", "usable", "dropped", "split_ratios", "split_seed", "max_examples",
             "max_eval_examples", "counts", "subsets", "fingerprint"}


def write_csv(path: Path, count: int) -> Path:
    lines = ["id,findings,impression,MeSH"]
    lines += [f"r{i},Synthetic findings {i}.,Synthetic impression {i}.,{'normal' if i % 4 == 0 else 'Mass'}"
              for i in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_data_writes_the_splits_folder(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["data", "--dataset", str(write_csv(tmp_path / "reports.csv", 40)), "--data-format", "iu_xray",
                 "--split-ratios", "0.5,0.25,0.25", "--split-seed", "3", "--output", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["data_info.json", "test.jsonl", "train.jsonl",
                                                      "validation.jsonl"]
    rows = {name: read_jsonl(out / f"{name}.jsonl") for name in ("train", "validation", "test")}
    assert {name: len(r) for name, r in rows.items()} == {"train": 20, "validation": 10, "test": 10}
    assert all(set(row) == {"source", "target", "subset", "id"} for r in rows.values() for row in r)
    info = json.loads((out / "data_info.json").read_text())
    assert set(info) == INFO_KEYS
    assert info["format"] == "iu_xray" and info["split_ratios"] == [0.5, 0.25, 0.25] and info["split_seed"] == 3
    assert info["subsets"]["train"]["normal"] + info["subsets"]["validation"].get("normal", 0) + \
        info["subsets"]["test"].get("normal", 0) == 10
    assert capsys.readouterr().out == f"{out}: train=20 validation=10 test=10 (iu_xray)\n"
    # No temporary folders are left beside the output.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "reports.csv"]


def test_data_demo_default_and_recipe(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("data:\n  max_examples: 100\n  split_ratios: [0.6, 0.2, 0.2]\n")
    assert main(["data", "--config", str(recipe), "--output", str(tmp_path / "demo")]) == 0
    info = json.loads((tmp_path / "demo" / "data_info.json").read_text())
    assert info["format"] == "demo" and info["counts"] == {"train": 60, "validation": 20, "test": 20}
    # Flags override the recipe.
    assert main(["data", "--config", str(recipe), "--max-examples", "50", "--output", str(tmp_path / "demo2")]) == 0
    assert json.loads((tmp_path / "demo2" / "data_info.json").read_text())["counts"]["train"] == 30


@pytest.mark.parametrize("extra,message", [
    ([], "--output is required"),
    (["--dataset", "no/such/file.jsonl"], "dataset no/such/file.jsonl not found"),
    (["--target-column", "nope"], "--target-column does not apply to the demo format"),
    (["--split-ratios", "0.8,0.3,0.1"], "--split-ratios must sum to 1"),
])
def test_data_usage_errors_exit_2(tmp_path, capsys, extra, message):
    args = ["data", *extra]
    if extra:
        args += ["--output", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"prunetune data: error: {message}" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # a failed run leaves nothing behind


def test_failed_load_leaves_no_output(tmp_path, capsys):
    bad = tmp_path / "tiny.csv"
    bad.write_text("source,target\na,b\nc,d\n")
    assert main(["data", "--dataset", str(bad), "--output", str(tmp_path / "out")]) == 2
    assert "validation split is empty: 2 usable examples is too few" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.csv"]


def test_existing_output_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    assert main(["data", "--output", str(out)]) == 2
    assert "exists and is not empty (use --overwrite" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "old"
    assert main(["data", "--output", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["data_info.json", "test.jsonl", "train.jsonl",
                                                      "validation.jsonl"]


def test_data_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data", "--help"])
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    for flag in ("--dataset", "--data-format", "--source-column", "--target-column", "--subset-column",
                 "--split-ratios", "--split-seed", "--max-examples", "--max-eval-examples", "--output", "--overwrite"):
        assert flag in help_text


def test_data_command_python_api(tmp_path):
    assert data_command(DataArgs(max_examples=20), DataOutputArgs(output=tmp_path / "o")) == 0
    assert json.loads((tmp_path / "o" / "data_info.json").read_text())["usable"] == 400
    with pytest.raises(UsageError, match="--output is required"):
        data_command(DataArgs(), DataOutputArgs())
