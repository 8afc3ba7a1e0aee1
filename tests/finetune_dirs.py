"""A ``prunetune finetune`` output folder built by its contract, without training.

:func:`make_finetune_dir` writes ``adapter/``, an optional pruned ``base/``,
``finetune.json``, ``metrics.json`` and ``data/`` directly with peft, so the merge,
evaluation and generation tests do not depend on the training module. The rows are
synthetic radiology-style sentences written for the tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from conftest import save_tiny_model

LORA_TARGETS = {"t5": ["q", "v"], "llama": ["q_proj", "v_proj"]}
INSTRUCTION = "Summarize the findings."

TRAIN = [{"source": "Heart size normal. Lungs clear.", "target": "No acute disease.", "subset": "normal"},
         {"source": "Mild cardiomegaly. No effusion.", "target": "Cardiomegaly.", "subset": "abnormal"},
         {"source": "Lungs are clear. No pneumothorax.", "target": "No acute disease.", "subset": "normal"}]
VALIDATION = [{"source": "Clear lungs. Normal heart.", "target": "Normal chest.", "subset": "normal"}]
TEST = [{"source": "Small left effusion. Heart normal.", "target": "Left effusion.", "subset": "abnormal", "id": "t1"},
        {"source": "No focal consolidation. Normal heart size.", "target": "No acute disease.", "subset": "normal",
         "id": "t2"},
        {"source": "Right lower lobe opacity. Possible pneumonia.", "target": "Pneumonia.", "subset": "abnormal",
         "id": "t3"}]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def make_finetune_dir(root: Path, model_type: str = "t5", pruned: bool = False, test: list[dict] | None = None,
                      instruction: str | None = INSTRUCTION) -> Path:
    """A finetune output folder for a tiny model with a random (non-zero) LoRA adapter.

    Args:
        root: where to create ``source-model/`` and ``finetune/``.
        model_type: ``t5`` or ``llama``.
        pruned: prune the base (keep layers 0, 2, 3 of each stack) and store it in ``base/``.
        test: rows of ``data/test.jsonl`` (default :data:`TEST`).
        instruction: the recorded training instruction.

    Returns:
        The ``finetune/`` folder.
    """
    from peft import LoraConfig, get_peft_model

    from prunetune.models import load_model
    from prunetune.pruning import prune_layers, save_pruned

    source = save_tiny_model(model_type, root / "source-model")
    folder = root / "finetune"
    folder.mkdir()
    model, tokenizer, _ = load_model(str(source))
    base_model, pruning = str(source), None
    if pruned:
        enc_dec = model.config.is_encoder_decoder
        prune_layers(model, keep_encoder=[0, 2, 3] if enc_dec else None, keep_decoder=[0, 2, 3])
        save_pruned(model, tokenizer, folder / "base", source=str(source))
        base_model, pruning = "base", model.config.prunetune
    lora = {"lora_preset": "attention", "lora_targets": LORA_TARGETS[model_type], "lora_r": 4, "lora_alpha": 8,
            "lora_dropout": 0.0, "use_dora": False}
    # init_lora_weights=False makes B non-zero, so merging actually changes the weights.
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=LORA_TARGETS[model_type],
                        init_lora_weights=False,
                        task_type="SEQ_2_SEQ_LM" if model.config.is_encoder_decoder else "CAUSAL_LM")
    torch.manual_seed(1)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(folder / "adapter")
    tokenizer.save_pretrained(folder / "adapter")
    prompt = {"instruction": instruction, "max_source_tokens": 64, "max_target_tokens": 32}
    record = {"base_model": base_model, "source_model": str(source),
              "is_encoder_decoder": model.config.is_encoder_decoder, "pruning": pruning, "prompt": prompt,
              "lora": lora, "args": {"data": {"dataset": "demo"}, "prompt": prompt, "lora": lora}}
    (folder / "finetune.json").write_text(json.dumps(record, indent=2))
    metrics = {"train_seconds": 1.5, "trainable_params": 1234, "peak_memory_bytes": None,
               "validation": {"rouge1": 12.5, "rouge2": 3.0, "rougeL": 11.0, "rougeLsum": 11.0, "bleu": 1.0}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "data").mkdir()
    for name, rows in (("train", TRAIN), ("validation", VALIDATION), ("test", TEST if test is None else test)):
        _write_jsonl(folder / "data" / f"{name}.jsonl", rows)
    return folder
