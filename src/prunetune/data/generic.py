"""Generic JSON / JSONL / CSV data: source and target are columns the user names.

Defaults are ``source`` and ``target`` (the layout of the split files this package
writes, so any of them can be read back as a plain file). A ``subset`` column and an
``id`` column are kept when present; rows without an id get their 0-based row number,
so every example can be traced back to its row in the input.

:func:`examples_from_columns` is the shared reader for every column-based format
(ChatDoctor, iCliniq and IU X-ray only differ in their default columns).
"""

from __future__ import annotations

from typing import Any, Callable

from prunetune.data.base import DataArgs, Example, RawExamples
from prunetune.data.tables import Table
from prunetune.errors import UsageError


def require_columns(table: Table, columns: dict[str, str | None]) -> None:
    """Check that each needed column exists.

    Args:
        table: the opened file.
        columns: column -> the option that picks it (None for a fixed column), e.g.
            ``{"findings": "--source-column", "text": None}``.

    Raises:
        UsageError: naming the first missing column, the available ones and the option.
    """
    for column, option in columns.items():
        if column not in table.columns:
            available = ", ".join(table.columns) or "none"
            hint = f"; choose one with {option}" if option else ""
            raise UsageError(f"column {column!r} not found in {table.path.name} (available: {available}){hint}")


def cell_text(value: Any, column: str, table: Table) -> str:
    """A cell as text: None is empty, numbers are written out, lists and objects are refused.

    Raises:
        UsageError: if the cell holds a list or an object (the wrong column was chosen).
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, bool)):
        return str(value)
    raise UsageError(f"column {column!r} of {table.path.name} holds a {type(value).__name__}, not text")


def examples_from_columns(table: Table, source_column: str, target_column: str, *,
                          subset_column: str | None = None, id_column: str | None = None,
                          subset_from: Callable[[dict[str, Any]], str] | None = None) -> RawExamples:
    """Read one example per row from named columns.

    Args:
        table: the opened file.
        source_column: column holding the model input.
        target_column: column holding the reference output.
        subset_column: column copied into ``subset``, if any.
        id_column: column copied into ``id``; the row number is used when None.
        subset_from: derives ``subset`` from the whole row when ``subset_column`` is None.

    Returns:
        The uncleaned examples.

    Raises:
        UsageError: for a missing column (see :func:`require_columns`) or a cell that
            is not text.
    """
    needed: dict[str, str | None] = {source_column: "--source-column", target_column: "--target-column"}
    if subset_column is not None:
        needed[subset_column] = "--subset-column"
    require_columns(table, needed)
    examples: list[Example] = []
    for index, row in enumerate(table.rows()):
        example: Example = {"source": cell_text(row.get(source_column), source_column, table),
                            "target": cell_text(row.get(target_column), target_column, table)}
        if subset_column is not None:
            example["subset"] = cell_text(row.get(subset_column), subset_column, table)
        elif subset_from is not None:
            example["subset"] = subset_from(row)
        example["id"] = cell_text(row.get(id_column), id_column, table) if id_column else str(index)
        examples.append(example)
    return RawExamples(examples, rows=len(examples), target_field=f"target column {target_column!r}")


def load_generic(table: Table, args: DataArgs) -> RawExamples:
    """Formats ``jsonl``, ``json`` and ``csv`` (and the bundled demo set, which is JSONL).

    Args:
        table: the opened file.
        args: ``source_column``/``target_column`` (default ``source``/``target``) and
            ``subset_column`` (default: a ``subset`` column if there is one).

    Returns:
        The uncleaned examples.
    """
    subset_column = args.subset_column or ("subset" if "subset" in table.columns else None)
    return examples_from_columns(table, args.source_column or "source", args.target_column or "target",
                                 subset_column=subset_column, id_column="id" if "id" in table.columns else None)
