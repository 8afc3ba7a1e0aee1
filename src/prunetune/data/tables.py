"""Reading data files as rows of named columns, and writing JSONL.

:func:`open_table` reads CSV/TSV (streamed, so a multi-GB MIMIC-IV-Note export is never
held in memory as rows), a JSON list of objects, or JSONL; each optionally gzipped
(``radiology.csv.gz`` as distributed on PhysioNet). Every problem with the file itself
(missing, unreadable, not UTF-8, malformed) becomes a one-line
:class:`~prunetune.errors.UsageError` that names the file and, where known, the line.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, TextIO

from prunetune.errors import UsageError

TABLE_KINDS = ("csv", "tsv", "json", "jsonl")

# MIMIC-IV discharge notes run past csv's default 131,072-character field limit.
_CSV_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)


def table_kind(path: Path) -> str | None:
    """The kind of table a file name announces (``.csv.gz`` -> ``"csv"``), or None."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    kind = suffixes[-1].lstrip(".") if suffixes else ""
    return kind if kind in TABLE_KINDS else None


def _csv_delimiter(kind: str) -> str:
    """The delimiter of a CSV kind, after making sure long notes fit in a field."""
    # The limit is process-wide state of the csv module, so it is only ever raised.
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    return "\t" if kind == "tsv" else ","


@contextlib.contextmanager
def _open_text(path: Path) -> Iterator[TextIO]:
    """Open ``path`` as UTF-8 text (a BOM is skipped), gunzipping ``*.gz``, with clear errors."""
    try:  # opened here and closed by the `with` below, so open errors and read errors read alike
        if path.suffix.lower() == ".gz":
            handle = gzip.open(path, "rt", encoding="utf-8-sig", newline="")
        else:
            handle = open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        with handle:
            yield handle
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None
    except (gzip.BadGzipFile, EOFError):
        raise UsageError(f"{path} is not a valid gzip file") from None


@dataclass
class Table:
    """A data file seen as rows of named columns.

    Attributes:
        path: the file.
        kind: one of :data:`TABLE_KINDS`.
        columns: the CSV header, or every key used by the JSON objects in first-seen order.
        first_row: the first row (for format detection), or None for an empty file.
    """

    path: Path
    kind: str
    columns: list[str]
    first_row: dict[str, Any] | None
    # JSON and JSONL have to be parsed whole to know their columns, so they are kept.
    _records: list[dict[str, Any]] | None = field(default=None, repr=False)

    def rows(self) -> Iterator[dict[str, Any]]:
        """Iterate over the rows as dicts; a CSV is re-read from disk on each call.

        Raises:
            UsageError: if a CSV line cannot be parsed (names the line).
        """
        if self._records is not None:
            yield from self._records
            return
        with _open_text(self.path) as handle:
            reader = csv.DictReader(handle, delimiter=_csv_delimiter(self.kind))
            try:
                reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
                yield from reader
            except csv.Error as exc:
                raise UsageError(f"{self.path}: line {reader.line_num}: {exc}") from None


def open_table(path: Path, kind: str | None = None) -> Table:
    """Open a data file, reading only what is needed to know its columns.

    Args:
        path: the file.
        kind: one of :data:`TABLE_KINDS`; inferred from the extension when None.

    Returns:
        The table; ``first_row`` is None when the file holds no rows.

    Raises:
        UsageError: for a missing or unreadable file, an unknown extension, or content
            that is not valid CSV / JSON / JSONL.
    """
    if not path.is_file():
        raise UsageError(f"dataset file {path} not found")
    kind = kind or table_kind(path)
    if kind is None:
        raise UsageError(f"cannot tell how to read {path.name} from its extension (expected .jsonl, .json, .csv "
                         "or .tsv, optionally .gz); pass --data-format")
    if kind in ("csv", "tsv"):
        with _open_text(path) as handle:
            reader = csv.reader(handle, delimiter=_csv_delimiter(kind))
            try:
                header = [name.strip() for name in next(reader, [])]
                first = next(reader, None)
            except csv.Error as exc:
                raise UsageError(f"{path}: line {reader.line_num}: {exc}") from None
        first_row = dict(zip(header, first)) if first is not None else None
        return Table(path, kind, header, first_row)
    records = _read_jsonl(path) if kind == "jsonl" else _read_json_list(path)
    columns = list(dict.fromkeys(key for record in records for key in record))
    return Table(path, kind, columns, records[0] if records else None, _records=records)


def _read_json_list(path: Path) -> list[dict[str, Any]]:
    with _open_text(path) as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(data, list):
        raise UsageError(f"{path} must hold a JSON list of objects, not a {type(data).__name__} "
                         "(for one object per line, name it .jsonl)")
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            raise UsageError(f"{path}: item {index} is a {type(record).__name__}, not an object")
    return data


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    with _open_text(path) as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}: line {line_number} is not valid JSON: {exc.msg}") from None
            if not isinstance(record, dict):
                raise UsageError(f"{path}: line {line_number} is a {type(record).__name__}, not an object")
            records.append(record)
    return records


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSONL file into a list of objects (blank lines are skipped).

    Raises:
        UsageError: for a missing file or a line that is not a JSON object.
    """
    if not path.is_file():
        raise UsageError(f"{path} not found")
    return _read_jsonl(path)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line (UTF-8, non-ASCII kept readable).

    Returns:
        The number of rows written.
    """
    count = 0
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count
