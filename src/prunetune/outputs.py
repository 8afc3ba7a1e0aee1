"""Atomic output folders.

Every command that writes a folder (pruned model, run folder, merged model) writes it
under a temporary sibling name and renames it into place only when everything in it
is complete, so an interrupted or failed run never leaves a half-written result behind
and a pre-existing destination is left untouched until the very end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from prunetune.errors import UsageError


def check_output_dir(dst: str | os.PathLike, overwrite: bool = False) -> Path:
    """Validate an output folder before any expensive work starts.

    Raises:
        UsageError: if ``dst`` exists and is not an empty folder and ``overwrite`` is
            false, or if it exists as a file.
    """
    dst = Path(dst)
    if dst.exists():
        if not dst.is_dir():
            raise UsageError(f"output path {dst} exists and is not a folder")
        if any(dst.iterdir()) and not overwrite:
            raise UsageError(f"output folder {dst} exists and is not empty (use --overwrite to replace it)")
    parent = dst.absolute().parent
    if parent.exists() and not os.access(parent, os.W_OK):
        raise UsageError(f"cannot write to {parent}")
    return dst


@contextlib.contextmanager
def atomic_output_dir(dst: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``dst`` only if the block succeeds.

    The temporary folder is a sibling of ``dst`` (same file system, so the final
    ``rename`` is atomic). On any exception, including KeyboardInterrupt, it is removed
    and ``dst`` is untouched.
    """
    dst = check_output_dir(dst, overwrite).absolute()
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, dst)


def replace_dir(tmp: Path, dst: Path) -> None:
    """Rename the finished folder ``tmp`` to ``dst``, replacing an existing ``dst``.

    The old folder is moved aside first, so there is no moment without a complete ``dst``.
    """
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{os.getpid()}"
        os.rename(dst, old)
        os.rename(tmp, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, dst)
