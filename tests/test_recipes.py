"""Every shipped recipe loads into the run command's argument groups."""

import pytest

from prunetune.config import build_command_kwargs, load_recipe
from prunetune.errors import UsageError
from prunetune.pipeline import resolve_recipe, run_command, shipped_recipes

RECIPES = sorted(shipped_recipes())


def test_default_and_paper_recipes_ship():
    assert "default" in RECIPES
    for model in ("bart-large", "t5-large"):
        for data in ("mimic-radiology", "mimic-discharge", "healthcaremagic", "icliniq"):
            assert f"{model}-{data}" in RECIPES


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_loads(name):
    path = resolve_recipe(name)
    text = path.read_text()
    assert text.startswith("#") and "prunetune run" in text.split("\n\n")[0]  # opens with the command
    kwargs = build_command_kwargs(run_command, load_recipe(path))
    assert kwargs["prune"].active
    assert kwargs["lora"].lora_r == 16 and kwargs["lora"].lora_alpha == 32 and kwargs["lora"].lora_dropout == 0.1
    assert kwargs["lora"].lora_preset == "ffn"
    if name.startswith("bart-large"):
        assert kwargs["prune"].keep_encoder == kwargs["prune"].keep_decoder == [0, 1, 2, 4, 6, 8, 10, 11]
    if name.startswith(("bart-large", "t5-large")):  # the paper's settings
        assert (kwargs["run"].test_num_beams, kwargs["run"].test_max_new_tokens,
                kwargs["run"].test_no_repeat_ngram_size) == (6, 128, 3)
        assert kwargs["train"].learning_rate == 1e-4 and kwargs["train"].warmup_steps == 1000
        assert kwargs["train"].weight_decay == 0.01 and kwargs["train"].metric_for_best == "rouge1"


def test_unknown_recipe_name():
    with pytest.raises(UsageError, match="shipped recipes"):
        resolve_recipe("no-such-recipe")
