"""Peak memory of one phase of work (a training run, a generation pass).

Used by ``finetune`` for ``metrics.json`` and by the benchmark, so both report the same
figure the same way:

* **GPU**: ``torch.cuda.max_memory_allocated`` (memory held by live tensors, the figure
  PEFT's method comparison and torchtune report) after ``reset_peak_memory_stats``,
  plus ``max_memory_reserved`` (what the caching allocator took from the driver).
* **CPU**: the peak resident set size. Linux lets a process reset its high-water mark
  (``VmHWM``) to the current RSS by writing ``5`` to ``/proc/self/clear_refs``, so
  ``VmHWM`` read from ``/proc/self/status`` at the end is the peak of that phase alone
  (weights loaded before it count, since they stay resident). Without ``/proc`` (macOS)
  the fallback is ``getrusage``'s ``ru_maxrss``, the peak since the process started;
  ``peak_memory_scope`` says which one a figure is.
"""

from __future__ import annotations

import contextlib
import resource
import sys
from pathlib import Path
from typing import Any, Iterator

import torch

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")
# Writing "5" to clear_refs resets the peak RSS counter (see proc(5), "/proc/pid/clear_refs").
_RESET_PEAK_RSS = "5"


def _is_cuda(device: torch.device | str | None) -> bool:
    if device is None:
        return torch.cuda.is_available()
    return torch.device(device).type == "cuda"


def reset_peak_memory(device: torch.device | str | None = None) -> str:
    """Start a new measurement window for :func:`read_peak_memory`.

    Args:
        device: the device the work runs on; ``None`` means CUDA when available, else CPU.

    Returns:
        The scope the next reading will have: ``"phase"`` when the counter could be
        reset, ``"process"`` when only the peak since process start is available.
    """
    if _is_cuda(device):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return "phase"
    try:
        _CLEAR_REFS.write_text(_RESET_PEAK_RSS)
        return "phase"
    except OSError:  # no /proc (macOS) or not allowed (some sandboxes)
        return "process"


def _status_bytes(field: str) -> int | None:
    """A size field of ``/proc/self/status`` (``VmHWM``, ``VmRSS``...) in bytes; None without /proc."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                value, unit = line.split()[1:3]
                return int(value) * {"kB": 1024, "mB": 1024**2}.get(unit, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_rss_bytes() -> int | None:
    """The process's resident set size now (``VmRSS``); None where there is no /proc."""
    return _status_bytes("VmRSS")


def _ru_maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def read_peak_memory(device: torch.device | str | None = None, scope: str = "phase") -> dict[str, Any]:
    """Peak memory since the last :func:`reset_peak_memory`.

    Args:
        device: as for :func:`reset_peak_memory`.
        scope: what :func:`reset_peak_memory` returned; recorded as ``peak_memory_scope``.

    Returns:
        ``peak_memory_bytes``, ``peak_memory_kind`` (``cuda_max_allocated`` or
        ``cpu_peak_rss``), ``peak_memory_scope`` (``phase`` or ``process``), and on GPU
        ``cuda_max_reserved_bytes``.
    """
    if _is_cuda(device):
        torch.cuda.synchronize(device)
        return {
            "peak_memory_bytes": int(torch.cuda.max_memory_allocated(device)),
            "peak_memory_kind": "cuda_max_allocated",
            "peak_memory_scope": scope,
            "cuda_max_reserved_bytes": int(torch.cuda.max_memory_reserved(device)),
        }
    peak = _status_bytes("VmHWM") if scope == "phase" else None
    if peak is None:
        peak, scope = _ru_maxrss_bytes(), "process"
    return {"peak_memory_bytes": peak, "peak_memory_kind": "cpu_peak_rss", "peak_memory_scope": scope}


@contextlib.contextmanager
def track_peak_memory(device: torch.device | str | None = None) -> Iterator[dict[str, Any]]:
    """Measure the peak memory of the ``with`` block.

    Example::

        with track_peak_memory(model.device) as memory:
            trainer.train()
        print(memory["peak_memory_bytes"])

    Yields:
        A dict that is filled with :func:`read_peak_memory`'s keys when the block ends
        (also when it raises).
    """
    result: dict[str, Any] = {}
    scope = reset_peak_memory(device)
    try:
        yield result
    finally:
        result.update(read_peak_memory(device, scope))
