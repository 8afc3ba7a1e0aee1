"""IU X-ray (Indiana University chest X-ray reports, Open-i; Demner-Fushman et al., JAMIA 2016).

The widely shared ``indiana_reports.csv`` export has the columns ``uid, MeSH, Problems,
image, indication, comparison, findings, impression``. The task is radiology report
summarization, findings -> impression. Rows with empty findings or impression are
dropped by the common cleaning (3,331 of the 3,851 reports have both).

Each example keeps ``uid`` as ``id`` and gets a ``subset``: "normal" when the MeSH
column is exactly "normal" (the report has no coded finding), else "abnormal". Scores
per subset matter here: about a third of the reports are normal and their impressions
are near-identical, which flatters any model on the whole set.
"""

from __future__ import annotations

from typing import Any

from prunetune.data.base import DataArgs, RawExamples
from prunetune.data.generic import examples_from_columns
from prunetune.data.tables import Table

IU_XRAY_COLUMNS = ("uid", "MeSH", "Problems", "image", "indication", "comparison", "findings", "impression")


def iu_xray_subset(row: dict[str, Any]) -> str:
    """The subset of a report: "normal" when its MeSH terms are just "normal" (any case), else "abnormal"."""
    return "normal" if str(row.get("MeSH") or "").strip().lower() == "normal" else "abnormal"


def load_iu_xray(table: Table, args: DataArgs) -> RawExamples:
    """Format ``iu_xray``: ``findings`` -> ``impression`` with ``subset`` from MeSH.

    Only ``findings`` and ``impression`` are required; without a ``MeSH`` column there
    is no subset, without ``uid`` the row number is the id.

    Args:
        table: the opened ``indiana_reports.csv`` (or a JSON/JSONL file with its columns).
        args: optional ``source_column``/``target_column`` overrides, and
            ``subset_column`` to take the subset from a column instead of MeSH.

    Returns:
        The uncleaned examples.
    """
    has_mesh = "MeSH" in table.columns
    return examples_from_columns(
        table, args.source_column or "findings", args.target_column or "impression",
        subset_column=args.subset_column, id_column="uid" if "uid" in table.columns else None,
        subset_from=iu_xray_subset if has_mesh else None)
