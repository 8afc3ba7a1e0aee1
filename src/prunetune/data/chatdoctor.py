"""The ChatDoctor family of patient-question -> doctor-answer sets (Li et al., 2023).

* ``chatdoctor``: HealthCareMagic-100k/200k, iCliniq (training release) and
  GenMedGPT-5k, each a JSON list of ``{"instruction", "input", "output"}``. The
  instruction is one fixed sentence for the whole set, so it is dropped; source =
  ``input`` (the patient's question), target = ``output`` (the doctor's answer).
* ``icliniq``: the iCliniq evaluation file, a JSON list of ``{"input",
  "answer_icliniq", "answer_chatgpt", "answer_chatdoctor"}``; source = ``input``,
  target = ``answer_icliniq`` (the human doctor's answer). Pass
  ``--target-column answer_chatgpt`` to train on another answer instead.

Both also read JSONL or CSV with the same columns.
"""

from __future__ import annotations

from prunetune.data.base import DataArgs, RawExamples
from prunetune.data.generic import examples_from_columns
from prunetune.data.tables import Table


def load_chatdoctor(table: Table, args: DataArgs) -> RawExamples:
    """Format ``chatdoctor``: ``input`` -> ``output`` unless columns are given.

    Args:
        table: the opened file.
        args: optional ``source_column``/``target_column``/``subset_column`` overrides.

    Returns:
        The uncleaned examples.
    """
    return examples_from_columns(table, args.source_column or "input", args.target_column or "output",
                                 subset_column=args.subset_column)


def load_icliniq(table: Table, args: DataArgs) -> RawExamples:
    """Format ``icliniq``: ``input`` -> ``answer_icliniq`` unless columns are given.

    Args:
        table: the opened file.
        args: optional ``source_column``/``target_column``/``subset_column`` overrides.

    Returns:
        The uncleaned examples.
    """
    return examples_from_columns(table, args.source_column or "input", args.target_column or "answer_icliniq",
                                 subset_column=args.subset_column)
