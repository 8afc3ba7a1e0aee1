"""``prunetune generate``: --prompt, --input-file/--output-file, standard input, errors."""

from __future__ import annotations

import io
import json
import sys

import pytest

from prunetune.cli import main
from finetune_dirs import INSTRUCTION, make_finetune_dir

FAST = ["--max-new-tokens", "5"]


@pytest.fixture(scope="module")
def finetune_dir(tmp_path_factory):
    return make_finetune_dir(tmp_path_factory.mktemp("gen"), "llama", pruned=True)


@pytest.fixture(scope="module")
def reference(finetune_dir):
    """Outputs of the adapter model built with the recorded prompt, to compare against."""
    from prunetune.generation import GenerationArgs, generate_texts
    from prunetune.inference import load_for_inference

    model, tokenizer, info = load_for_inference(finetune_dir, device="cpu")
    assert info.prompt.instruction == INSTRUCTION

    def run(sources, instruction=None):
        return generate_texts(model, tokenizer, sources, info.prompt_for(instruction),
                              GenerationArgs(max_new_tokens=5), progress=False)
    return run


def test_generate_prompt(finetune_dir, reference, capsys):
    assert main(["generate", "--model", str(finetune_dir), "--prompt", "Lungs clear.", *FAST]) == 0
    assert capsys.readouterr().out == reference(["Lungs clear."])[0] + "\n"
    assert main(["generate", "--model", str(finetune_dir), "--prompt", "Lungs clear.", "--instruction", "Other.",
                 *FAST]) == 0
    assert capsys.readouterr().out == reference(["Lungs clear."], "Other.")[0] + "\n"


def test_generate_input_file_to_output_file(tmp_path, finetune_dir, reference, capsys):
    rows = [{"id": "a", "source": "Heart normal."}, {"id": "b", "source": "Small effusion. No pneumothorax."}]
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    output = tmp_path / "out" / "results.jsonl"
    assert main(["generate", "--model", str(finetune_dir), "--input-file", str(inputs),
                 "--output-file", str(output), *FAST]) == 0
    written = [json.loads(line) for line in output.read_text().splitlines()]
    expected = reference([r["source"] for r in rows])
    assert written == [{**r, "prediction": p} for r, p in zip(rows, expected)]
    assert capsys.readouterr().out == ""  # results went to the file


def test_generate_text_file_and_piped_stdin_print_one_line_each(tmp_path, finetune_dir, reference, capsys,
                                                                monkeypatch):
    inputs = tmp_path / "in.txt"
    inputs.write_text("Heart normal.\n\nLungs clear.\nNo effusion.\n")
    expected = [" ".join(p.splitlines()) for p in reference(["Heart normal.", "Lungs clear.", "No effusion."])]
    assert main(["generate", "--model", str(finetune_dir), "--input-file", str(inputs), *FAST]) == 0
    assert capsys.readouterr().out.splitlines() == expected

    monkeypatch.setattr(sys, "stdin", io.StringIO(inputs.read_text()))  # not a TTY: one batch
    assert main(["generate", "--model", str(finetune_dir), *FAST]) == 0
    assert capsys.readouterr().out.splitlines() == expected


def test_generate_interactive(finetune_dir, reference, capsys, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdin", Terminal("Heart normal.\n\nLungs clear.\n"))
    assert main(["generate", "--model", str(finetune_dir), *FAST]) == 0
    captured = capsys.readouterr()
    assert captured.out == "".join(p + "\n" for p in reference(["Heart normal.", "Lungs clear."]))
    assert "> " in captured.err  # the prompt marker goes to stderr


@pytest.mark.parametrize("case", ["missing model", "not a model", "missing input", "prompt and file",
                                  "row without source", "empty prompt"])
def test_generate_usage_errors(tmp_path, finetune_dir, capsys, case):
    model = str(finetune_dir)
    output = tmp_path / "results.jsonl"
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text(json.dumps({"text": "no source"}) + "\n")
    (tmp_path / "folder").mkdir()
    argv = {
        "missing model": ["--model", str(tmp_path / "nope"), "--prompt", "x"],
        "not a model": ["--model", str(tmp_path / "folder"), "--prompt", "x"],
        "missing input": ["--model", model, "--input-file", str(tmp_path / "absent.jsonl")],
        "prompt and file": ["--model", model, "--prompt", "x", "--input-file", str(bad_jsonl)],
        "row without source": ["--model", model, "--input-file", str(bad_jsonl)],
        "empty prompt": ["--model", model, "--prompt", "  "],
    }[case]
    assert main(["generate", *argv, "--output-file", str(output), *FAST]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("prunetune generate: error: "), err
    assert captured.out == "" and not output.exists()
