"""MIMIC-IV-Note builders (Johnson et al., PhysioNet 2023) for the user's own credentialed files.

``radiology.csv`` and ``discharge.csv`` (optionally ``.gz``, as downloaded) share the
columns ``note_id, subject_id, hadm_id, note_type, note_seq, charttime, storetime,
text``; only ``text`` is required, and ``note_id`` becomes the example id.

Radiology (format ``mimic_radiology``), report summarization as in the reference paper:

* source = the report header (from "FINAL REPORT" on when present: EXAMINATION,
  INDICATION, TECHNIQUE, COMPARISON ...) followed by the FINDINGS section;
* target = the IMPRESSION section.

Section headers are ALL-CAPS words starting a line and followed by a colon. Notes
without a non-empty FINDINGS or IMPRESSION section (addenda, many CT/MR templates) are
dropped and counted. Sections that preview the target (any header containing IMPRESSION,
such as "PROVISIONAL FINDINGS IMPRESSION (PFI)", and WET READ) never enter the source.

Discharge (format ``mimic_discharge``), diagnosis generation:

* target = the "Discharge Diagnosis:" section ("Discharge Diagnoses:", "Final
  Diagnosis:" and "Final Diagnoses:" also count);
* source = every other section (service, allergies, chief complaint, history of present
  illness, histories, exams, results, hospital course, medications, disposition,
  condition, instructions ...), each with its header, in note order.

Discharge notes use Title Case headers, and Title Case sub-headings inside sections too
("Mental Status:", "Activity Status:" under Discharge Condition), so only the known
section headers of :data:`DISCHARGE_SECTIONS` split a note. The preamble before the first
of them (Name, Unit No, dates, Sex) is left out: it is mostly de-identification
placeholders. Note text is never logged, only counts.
"""

from __future__ import annotations

import logging
import re
from typing import Callable, NamedTuple

from prunetune.data.base import DataArgs, Example, RawExamples, normalize_text
from prunetune.data.generic import cell_text, require_columns
from prunetune.data.tables import Table

logger = logging.getLogger(__name__)

# An ALL-CAPS header at the start of a line, e.g. "FINDINGS:", "RECOMMENDATION(S):".
# At least two characters, so an enumeration like "A: ..." does not split a section.
_RADIOLOGY_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z ,/&()'-]*[A-Z)])[ \t]*:", re.MULTILINE)
FINDINGS_HEADERS = frozenset({"FINDINGS", "FINDING"})
IMPRESSION_HEADERS = frozenset({"IMPRESSION", "IMPRESSIONS"})

DIAGNOSIS_SECTIONS = ("Discharge Diagnosis", "Discharge Diagnoses", "Final Diagnosis", "Final Diagnoses")
DISCHARGE_SECTIONS = (
    "Service", "Allergies", "Attending", "Chief Complaint", "Major Surgical or Invasive Procedure",
    "History of Present Illness", "Past Medical History", "Social History", "Family History",
    "Physical Exam", "Pertinent Results", "Brief Hospital Course", "Medications on Admission",
    "Discharge Medications", "Discharge Disposition", *DIAGNOSIS_SECTIONS, "Discharge Condition",
    "Discharge Instructions", "Followup Instructions",
)
# Case-insensitive, and any run of spaces between words, since hand-typed headers vary.
_DISCHARGE_HEADER = re.compile(
    r"^[ \t]*(" + "|".join(r"[ \t]+".join(map(re.escape, h.split())) for h in DISCHARGE_SECTIONS) + r")[ \t]*:",
    re.MULTILINE | re.IGNORECASE)
_DIAGNOSIS_KEYS = frozenset(h.lower() for h in DIAGNOSIS_SECTIONS)

# Notes read between two progress lines on a full MIMIC-IV-Note file (2.3M radiology notes).
_PROGRESS_EVERY = 100_000


class NotePair(NamedTuple):
    """A note turned into an example (text not yet normalized)."""

    source: str
    target: str


def split_sections(text: str, header: re.Pattern[str]) -> tuple[str, list[tuple[str, str]]]:
    """Cut a note at each header match.

    Args:
        text: the note.
        header: a pattern whose group 1 is the header name and whose match ends after the colon.

    Returns:
        The text before the first header, and ``(header name, body)`` pairs in note
        order; names have their spacing collapsed, bodies keep their line breaks.
    """
    matches = list(header.finditer(text))
    if not matches:
        return text, []
    sections = []
    for match, following in zip(matches, matches[1:] + [None]):
        end = following.start() if following is not None else len(text)
        sections.append((" ".join(match.group(1).split()), text[match.end():end]))
    return text[:matches[0].start()], sections


def radiology_pair(text: str) -> NotePair | str:
    """Build findings-with-header -> impression from one radiology report.

    Args:
        text: the note.

    Returns:
        The pair, or the reason the note is dropped: ``"missing_findings"`` or
        ``"missing_impression"`` (absent or empty section).
    """
    # Anything before "FINAL REPORT" (a preliminary WET READ in some reports) is not part of it.
    start = text.find("FINAL REPORT")
    preamble, sections = split_sections(text[max(start, 0):], _RADIOLOGY_HEADER)
    findings_at = next((i for i, (name, body) in enumerate(sections)
                        if name in FINDINGS_HEADERS and body.strip()), None)
    impression = next((body for name, body in sections if name in IMPRESSION_HEADERS and body.strip()), None)
    if findings_at is None:
        return "missing_findings"
    if impression is None:
        return "missing_impression"
    header = [f"{name}: {body.strip()}" for name, body in sections[:findings_at]
              if "IMPRESSION" not in name and name != "WET READ" and body.strip()]
    findings_name, findings = sections[findings_at]
    source = "\n".join(part for part in (preamble.strip(), *header, f"{findings_name}: {findings.strip()}") if part)
    return NotePair(source, impression.strip())


def discharge_pair(text: str) -> NotePair | str:
    """Build all-other-sections -> discharge diagnosis from one discharge summary.

    Args:
        text: the note.

    Returns:
        The pair, or ``"missing_discharge_diagnosis"`` when no diagnosis section has text.
    """
    _, sections = split_sections(text, _DISCHARGE_HEADER)
    target = None
    parts = []
    for name, body in sections:
        body = body.strip()
        if name.lower() in _DIAGNOSIS_KEYS:
            # Every diagnosis section stays out of the source, even a second, empty one.
            if target is None and body:
                target = body
        elif body:
            parts.append(f"{name}: {body}")
    if target is None:
        return "missing_discharge_diagnosis"
    return NotePair("\n".join(parts), target)


def _load_notes(table: Table, build: Callable[[str], NotePair | str], target_field: str) -> RawExamples:
    require_columns(table, {"text": None})
    id_column = "note_id" if "note_id" in table.columns else None
    examples: list[Example] = []
    dropped: dict[str, int] = {}
    rows = 0
    for rows, row in enumerate(table.rows(), start=1):
        built = build(cell_text(row.get("text"), "text", table))
        if isinstance(built, str):
            dropped[built] = dropped.get(built, 0) + 1
        else:
            note_id = cell_text(row.get(id_column), id_column, table) if id_column else str(rows - 1)
            # Normalized now, so the note and its section slices are freed row by row.
            examples.append({"source": normalize_text(built.source), "target": normalize_text(built.target),
                             "id": note_id})
        if rows % _PROGRESS_EVERY == 0:
            logger.info("%s: %d notes read, %d kept", table.path.name, rows, len(examples))
    return RawExamples(examples, rows=rows, target_field=target_field, dropped=dropped)


def load_mimic_radiology(table: Table, args: DataArgs) -> RawExamples:
    """Format ``mimic_radiology``: header + FINDINGS -> IMPRESSION, one example per report.

    Args:
        table: the opened ``radiology.csv``.
        args: unused (the source and target are fixed); kept for the loader signature.

    Returns:
        The uncleaned examples, with notes lacking either section counted in ``dropped``.
    """
    return _load_notes(table, radiology_pair, "IMPRESSION section")


def load_mimic_discharge(table: Table, args: DataArgs) -> RawExamples:
    """Format ``mimic_discharge``: other sections -> discharge diagnosis, one example per summary.

    Args:
        table: the opened ``discharge.csv``.
        args: unused (the source and target are fixed); kept for the loader signature.

    Returns:
        The uncleaned examples, with notes lacking a diagnosis counted in ``dropped``.
    """
    return _load_notes(table, discharge_pair, "discharge diagnosis section")
