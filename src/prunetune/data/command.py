"""``prunetune data``: write the train/validation/test splits of a dataset to a folder.

    prunetune data --dataset indiana_reports.csv --output runs/iu_xray/data
    prunetune data --dataset discharge.csv.gz --max-examples 20000 --output runs/mimic_dis/data

The folder gets ``train.jsonl``, ``validation.jsonl``, ``test.jsonl`` and
``data_info.json``, all at once (see :mod:`prunetune.outputs`); a failed run leaves
nothing behind. Later commands can take the folder as ``--dataset``.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from prunetune.config import arg
from prunetune.data.base import DataArgs
from prunetune.data.load import load_splits
from prunetune.data.splits import write_splits
from prunetune.errors import UsageError
from prunetune.outputs import atomic_output_dir, check_output_dir

logger = logging.getLogger(__name__)


@dataclass
class DataOutputArgs:
    """Where to write the splits."""

    output: Path | None = arg(None, help="folder to write train.jsonl, validation.jsonl, test.jsonl and "
                                         "data_info.json to (required; written atomically)")
    overwrite: bool = arg(False, help="replace a non-empty output folder")


def data_command(data: DataArgs, output: DataOutputArgs) -> int:
    """Load, clean and split ``data.dataset``, then write the splits folder.

    Prints one summary line on stdout (the folder and the count per split); progress
    and the cleaning report go to stderr through logging.

    Args:
        data: the dataset, its format, split ratios, seed and caps.
        output: the destination folder and whether to replace it.

    Returns:
        0 on success.

    Raises:
        UsageError: for a missing ``--output``, a non-empty output folder without
            ``--overwrite``, or any problem with the dataset (see
            :func:`~prunetune.data.load.load_splits`).
    """
    if output.output is None:
        raise UsageError("--output is required (the folder to write the splits to)")
    # Fail on the destination before reading what may be a multi-GB file.
    check_output_dir(output.output, output.overwrite)
    splits = load_splits(data)
    with atomic_output_dir(output.output, output.overwrite) as tmp:
        write_splits(splits, tmp)
    logger.info("wrote %s", output.output)
    counts = " ".join(f"{name}={count}" for name, count in splits.counts().items())
    print(f"{output.output}: {counts} ({splits.report['format']})", file=sys.stdout)
    return 0
