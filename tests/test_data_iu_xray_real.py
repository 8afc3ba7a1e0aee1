"""Optional check on the real IU X-ray export (skipped where ../shared/data is absent).

The file is public, de-identified data kept outside the repository; nothing of it is
copied here, only the counts it must produce.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from prunetune.data import DataArgs, load_splits
from prunetune.data.base import clean_examples
from prunetune.data.iu_xray import load_iu_xray
from prunetune.data.tables import open_table

IU_XRAY = Path(os.environ.get("PRUNETUNE_IU_XRAY",
                              Path(__file__).resolve().parents[2] / "shared" / "data" / "iu_xray" /
                              "indiana_reports.csv"))

pytestmark = pytest.mark.skipif(not IU_XRAY.is_file(), reason=f"{IU_XRAY} not available")


def test_real_iu_xray_counts():
    splits = load_splits(DataArgs(dataset=str(IU_XRAY)))
    report = splits.report
    assert report["format"] == "iu_xray"
    assert report["rows"] == 3851
    # 3,331 reports have both findings and impression; 699 of them repeat an earlier pair.
    assert report["dropped"] == {"empty_source": 514, "empty_target": 6, "duplicate": 699}
    assert report["usable"] == 2632
    assert splits.counts() == {"train": 2106, "validation": 263, "test": 263}
    subsets = Counter()
    for counts in report["subsets"].values():
        subsets.update(counts)
    assert subsets == {"normal": 583, "abnormal": 2049}


def test_real_iu_xray_before_deduplication():
    raw = load_iu_xray(open_table(IU_XRAY), DataArgs(dataset=str(IU_XRAY)))
    usable = [e for e in raw.examples if e["source"].strip() and e["target"].strip()]
    assert len(usable) == 3331
    assert Counter(e["subset"] for e in usable) == {"normal": 1195, "abnormal": 2136}
    kept, _ = clean_examples(raw.examples)
    assert len({e["id"] for e in kept}) == len(kept)
