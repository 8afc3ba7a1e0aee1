"""Datasets as reproducible train/validation/test splits of ``source``/``target`` pairs.

Usage::

    from prunetune.data import DataArgs, load_splits, write_splits
    splits = load_splits(DataArgs(dataset="indiana_reports.csv"))   # format inferred
    write_splits(splits, "runs/iu_xray/data")                       # + data_info.json

What lives where:

* ``base.py`` - :class:`DataArgs` (the argument group), :class:`Example`, cleaning.
* ``tables.py`` - reading CSV/TSV/JSON/JSONL (optionally gzipped) and writing JSONL.
* ``generic.py`` - any of those files with user-chosen source/target columns.
* ``chatdoctor.py`` - HealthCareMagic, iCliniq, GenMedGPT (ChatDoctor family).
* ``iu_xray.py`` - IU X-ray ``indiana_reports.csv``: findings -> impression.
* ``mimic.py`` - MIMIC-IV-Note radiology (findings -> impression) and discharge
  (note -> discharge diagnosis) builders, from the user's credentialed files.
* ``demo.py`` - the bundled synthetic radiology set (``demo/radiology_demo.jsonl``).
* ``splits.py`` - seeded splitting, caps, :class:`DatasetSplits`, the splits folder.
* ``load.py`` - format detection and :func:`load_splits`, the one entry point.
* ``command.py`` - ``prunetune data``: write the splits of any dataset to a folder.

Every loader's output is cleaned the same way (whitespace collapsed, empty and exactly
repeated pairs dropped, counts reported); no text is ever logged, only counts.
"""

from prunetune.data.base import DATA_FORMATS, DataArgs, DataFormat, Example, clean_examples
from prunetune.data.demo import DEMO_PATH
from prunetune.data.load import detect_format, load_splits
from prunetune.data.splits import INFO_FILE, SPLIT_NAMES, DatasetSplits, read_splits, write_splits

__all__ = [
    "DATA_FORMATS",
    "DEMO_PATH",
    "INFO_FILE",
    "SPLIT_NAMES",
    "DataArgs",
    "DataFormat",
    "DatasetSplits",
    "Example",
    "clean_examples",
    "detect_format",
    "load_splits",
    "read_splits",
    "write_splits",
]
