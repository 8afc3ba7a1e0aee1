"""MIMIC-IV-Note builders on synthetic notes in the MIMIC-IV-Note layout.

Every note below is made up (fictional patients, findings and diagnoses); only the
layout (columns, section headers, de-identification blanks ``___``) follows the real
files, which need credentialed access and never enter the repository.
"""

from __future__ import annotations

import csv
import gzip
import logging
from pathlib import Path

import pytest

from prunetune.data import DataArgs, load_splits
from prunetune.data.mimic import discharge_pair, radiology_pair
from prunetune.errors import UsageError

COLUMNS = ["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"]

RADIOLOGY = """\
WET READ: ZZZ WET READ LEAK ZZZ
                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ year old synthetic test patient with pretend cough.

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  None.

 FINDINGS:

 Fictional lungs are clear.  No pleural effusion.
 Heart size is normal.

 IMPRESSION:

 No acute cardiopulmonary process (synthetic {n}).

 NOTIFICATION:  Made-up notification text.
"""

# IMPRESSION first and a provisional impression: neither may reach the source.
RADIOLOGY_IMPRESSION_FIRST = """\
EXAMINATION:  CT HEAD W/O CONTRAST

PROVISIONAL FINDINGS IMPRESSION (PFI): ZZZ PFI LEAK ZZZ

IMPRESSION:  Imaginary small subdural hematoma.

FINDINGS:  A pretend 4 mm hyperdense collection along the left convexity.
"""

RADIOLOGY_NO_IMPRESSION = """\
EXAMINATION:  CHEST (PORTABLE AP)

FINDINGS:  Synthetic line tip in the pretend SVC.
"""

RADIOLOGY_ADDENDUM = "ADDENDUM:  Made-up addendum with no sections of interest.\n"

RADIOLOGY_EMPTY_FINDINGS = "EXAMINATION:  CHEST\n\nFINDINGS:\n\nIMPRESSION:  Fictional impression.\n"

DISCHARGE = """\
 \nName:  ___                     Unit No:   ___
 \nAdmission Date:  ___              Discharge Date:   ___
 \nDate of Birth:  ___             Sex:   F
 \nService: MEDICINE
 \nAllergies: \nNo Known Allergies / Adverse Drug Reactions
 \nAttending: ___.
 \nChief Complaint:\nFictional purple hiccups {n}
 \nMajor Surgical or Invasive Procedure:\nNone
 \nHistory of Present Illness:\nMs. ___ is an imaginary patient with pretend hiccups.
 \nPast Medical History:\nMade-up syndrome
 \nSocial History:\n___
Family History:\nNoncontributory (synthetic)
 \nPhysical Exam:\nADMISSION PHYSICAL EXAM:\nVS: 98.6 120/80 70 16 99% RA
 \nPertinent Results:\nSynthetic labs within normal limits.
 \nBrief Hospital Course:\nTreated with pretend medicine.
 \nMedications on Admission:\nNone
 \nDischarge Medications:\n1. Placebo 10 mg PO daily
 \nDischarge Disposition:\nHome
 \n{diagnosis_header}:\nPrimary: Purple hiccups (fictional)
 \nDischarge Condition:\nMental Status: Clear and coherent.\nActivity Status: Ambulatory - Independent.
 \nDischarge Instructions:\nDear Ms. ___, you were in a made-up hospital.
 \nFollowup Instructions:\n___
"""


def write_notes(path: Path, texts: list[str], note_type: str) -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for i, text in enumerate(texts):
            writer.writerow([f"{10000 + i}-{note_type}-{i}", str(10000 + i), "", note_type, str(i),
                             "2180-01-01 00:00:00", "", text])
    return path


# --- section parsing -------------------------------------------------------------------------------

def test_radiology_pair_takes_header_and_findings():
    pair = radiology_pair(RADIOLOGY.format(n=1))
    source = " ".join(pair.source.split())
    assert source.startswith("FINAL REPORT EXAMINATION: CHEST (PA AND LAT) INDICATION: ___ year old")
    assert "TECHNIQUE: Chest PA and lateral COMPARISON: None." in source
    assert source.endswith("FINDINGS: Fictional lungs are clear. No pleural effusion. Heart size is normal.")
    assert "WET READ" not in source and "ZZZ" not in source and "NOTIFICATION" not in source
    assert pair.target == "No acute cardiopulmonary process (synthetic 1)."


def test_radiology_pair_never_leaks_the_impression():
    pair = radiology_pair(RADIOLOGY_IMPRESSION_FIRST)
    assert "ZZZ" not in pair.source and "subdural" not in pair.source
    assert pair.source.startswith("EXAMINATION: CT HEAD W/O CONTRAST")
    assert pair.target == "Imaginary small subdural hematoma."


@pytest.mark.parametrize("text,reason", [
    (RADIOLOGY_NO_IMPRESSION, "missing_impression"),
    (RADIOLOGY_ADDENDUM, "missing_findings"),
    (RADIOLOGY_EMPTY_FINDINGS, "missing_findings"),
])
def test_radiology_pair_drops_notes_missing_a_section(text, reason):
    assert radiology_pair(text) == reason


def test_discharge_pair():
    pair = discharge_pair(DISCHARGE.format(n=1, diagnosis_header="Discharge Diagnosis"))
    source = " ".join(pair.source.split())
    assert pair.target == "Primary: Purple hiccups (fictional)"
    assert source.startswith("Service: MEDICINE Allergies: No Known Allergies / Adverse Drug Reactions")
    for header in ("Chief Complaint:", "History of Present Illness:", "Past Medical History:", "Social History:",
                   "Family History:", "Physical Exam: ADMISSION PHYSICAL EXAM:", "Pertinent Results:",
                   "Brief Hospital Course:", "Medications on Admission:", "Discharge Medications:",
                   "Discharge Disposition: Home", "Discharge Instructions:", "Followup Instructions: ___"):
        assert header in source
    # Title Case sub-headings stay inside their section instead of starting a new one.
    assert "Discharge Condition: Mental Status: Clear and coherent. Activity Status:" in source
    # Neither the diagnosis nor the preamble (name, dates, sex) reaches the source.
    assert "Purple hiccups (fictional)" not in source and "Diagnosis" not in source
    assert "Name:" not in source and "Date of Birth" not in source


@pytest.mark.parametrize("header", ["Discharge Diagnoses", "Final Diagnosis", "DISCHARGE DIAGNOSIS"])
def test_discharge_pair_diagnosis_header_variants(header):
    pair = discharge_pair(DISCHARGE.format(n=1, diagnosis_header=header))
    assert pair.target == "Primary: Purple hiccups (fictional)"


def test_discharge_pair_without_diagnosis():
    text = DISCHARGE.format(n=1, diagnosis_header="Discharge Diagnosis").replace(
        "Discharge Diagnosis:\nPrimary: Purple hiccups (fictional)", "")
    assert discharge_pair(text) == "missing_discharge_diagnosis"


# --- loaders -------------------------------------------------------------------------------------

def test_mimic_radiology_loader(tmp_path, caplog):
    texts = [RADIOLOGY.format(n=i) for i in range(10)]
    texts += [RADIOLOGY_IMPRESSION_FIRST, RADIOLOGY_NO_IMPRESSION, RADIOLOGY_ADDENDUM, RADIOLOGY.format(n=0)]
    path = write_notes(tmp_path / "radiology.csv.gz", texts, "RR")
    with caplog.at_level(logging.INFO, logger="prunetune.data"):
        splits = load_splits(DataArgs(dataset=str(path)))
    report = splits.report
    assert report["format"] == "mimic_radiology"
    assert report["rows"] == 14 and report["usable"] == 11
    assert report["dropped"] == {"missing_impression": 1, "missing_findings": 1, "empty_source": 0,
                                 "empty_target": 0, "duplicate": 1}
    examples = splits.train + splits.validation + splits.test
    assert {e["id"] for e in examples} == {f"{10000 + i}-RR-{i}" for i in range(11)}
    # Only counts are logged, never note text.
    assert "14 rows read, 11 usable" in caplog.text
    assert not any(word in caplog.text for word in ("Fictional", "cardiopulmonary", "subdural", "INDICATION"))


def test_mimic_discharge_loader(tmp_path, caplog):
    texts = [DISCHARGE.format(n=i, diagnosis_header="Discharge Diagnosis") for i in range(9)]
    texts.append(DISCHARGE.format(n=9, diagnosis_header="Final Diagnosis"))
    texts.append("Service: MEDICINE\n\nChief Complaint:\nA fictional note without any diagnosis.\n")
    path = write_notes(tmp_path / "notes.csv", texts, "DS")  # detected from note_type, not the name
    with caplog.at_level(logging.INFO, logger="prunetune.data"):
        splits = load_splits(DataArgs(dataset=str(path)))
    assert splits.report["format"] == "mimic_discharge"
    assert splits.report["usable"] == 10 and splits.report["dropped"]["missing_discharge_diagnosis"] == 1
    examples = splits.train + splits.validation + splits.test
    assert {e["target"] for e in examples} == {"Primary: Purple hiccups (fictional)"}
    assert not any(word in caplog.text for word in ("hiccups", "Placebo", "MEDICINE"))


def test_mimic_errors(tmp_path):
    texts = [RADIOLOGY.format(n=i) for i in range(10)]
    ambiguous = write_notes(tmp_path / "notes.csv", texts, "XX")
    with pytest.raises(UsageError, match="neither its name nor its note_type tells radiology from discharge"):
        load_splits(DataArgs(dataset=str(ambiguous)))
    assert load_splits(DataArgs(dataset=str(ambiguous), data_format="mimic_radiology")).report["usable"] == 10
    with pytest.raises(UsageError, match="--source-column does not apply to the mimic_radiology format"):
        load_splits(DataArgs(dataset=str(ambiguous), data_format="mimic_radiology", source_column="text"))
    with pytest.raises(UsageError, match="no usable examples in notes.csv: 10 rows read, dropped "
                                         "missing_discharge_diagnosis=10"):
        load_splits(DataArgs(dataset=str(ambiguous), data_format="mimic_discharge"))
    no_text = tmp_path / "radiology.csv"
    no_text.write_text("note_id,body\n1,x\n")
    with pytest.raises(UsageError, match=r"column 'text' not found in radiology.csv \(available: note_id, body\)$"):
        load_splits(DataArgs(dataset=str(no_text), data_format="mimic_radiology"))
