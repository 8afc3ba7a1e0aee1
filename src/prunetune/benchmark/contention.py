"""Detecting CPU contention from other processes, so timings on a shared machine stay honest.

Linux's pressure-stall information (PSI, ``/proc/pressure/cpu``) counts the time during
which at least one runnable task waited for a CPU ("some", in microseconds). A step that
runs alone on the machine stalls for well under 1% of its wall time; one that shares the
cores with another job stalls for most of it (and OpenMP threads that lose their core
make it several times slower). So each timed step records its stall fraction
``delta(stall) / delta(wall)``, and :func:`robust_median` reports the median of the clean
steps; while steps are contended a run takes more of them (:func:`sample_until_clean`,
bounded). Before each run the benchmark also waits, for a bounded time, until other
processes leave the CPUs mostly idle (:func:`wait_for_idle`, from ``/proc/stat``).
Without PSI (macOS, old kernels) nothing is filtered.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")

_PSI_CPU = Path("/proc/pressure/cpu")
_STAT = Path("/proc/stat")

#: A step whose stall fraction exceeds this shared its CPUs with another process.
CONTENDED_STALL_FRACTION = 0.05
#: While samples are contended, a run takes more of them, up to this many times the
#: requested number, until it has the requested number of clean ones.
MAX_SAMPLE_FACTOR = 3
#: ``wait_for_idle`` waits while other processes keep more than this share of the CPUs busy.
BUSY_CPU_FRACTION = 0.25


def _some_line() -> str | None:
    try:
        return _PSI_CPU.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None


def cpu_stall_seconds() -> float | None:
    """Cumulative seconds some task waited for a CPU (PSI ``some total``), or None."""
    line = _some_line()
    if not line:
        return None
    fields = dict(item.split("=", 1) for item in line.split()[1:])
    return int(fields["total"]) / 1e6


def _cpu_times() -> tuple[int, int] | None:
    """``(busy, total)`` jiffies of all CPUs since boot, from ``/proc/stat``."""
    try:
        values = [int(v) for v in _STAT.read_text().splitlines()[0].split()[1:]]
    except (OSError, IndexError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def cpu_busy_fraction(interval_s: float = 1.0) -> float | None:
    """Share of all CPUs that were busy during the next ``interval_s`` seconds, or None."""
    start = _cpu_times()
    time.sleep(interval_s)
    end = _cpu_times()
    if start is None or end is None or end[1] == start[1]:
        return None
    return (end[0] - start[0]) / (end[1] - start[1])


def stall_fraction(stall_start: float | None, stall_end: float | None, wall: float) -> float | None:
    if stall_start is None or stall_end is None or wall <= 0:
        return None
    return (stall_end - stall_start) / wall


def is_clean(stall: float | None) -> bool:
    """Whether a sample ran without contention (always True without PSI)."""
    return stall is None or stall <= CONTENDED_STALL_FRACTION


def sample_until_clean(take: Callable[[], T], wanted: int, stall_of: Callable[[T], float | None]) -> list[T]:
    """Take ``wanted`` samples, then more while fewer than ``wanted`` of them are clean.

    Stops at :data:`MAX_SAMPLE_FACTOR` x ``wanted`` samples, so a busy machine costs
    bounded extra time.
    """
    samples = [take() for _ in range(wanted)]
    while (sum(is_clean(stall_of(x)) for x in samples) < wanted
           and len(samples) < MAX_SAMPLE_FACTOR * wanted):
        samples.append(take())
    return samples


def robust_median(times: list[float], stalls: list[float | None]) -> tuple[float, int, bool]:
    """Median of the uncontended samples when at least half are, else of all samples.

    Returns:
        ``(median, clean_samples, contended)``; ``contended`` is True when fewer than half
        of the samples ran without contention (the median then includes contended ones).
    """
    clean = [t for t, s in zip(times, stalls) if is_clean(s)]
    if 2 * len(clean) >= len(times):
        return statistics.median(clean), len(clean), False
    return statistics.median(times), len(clean), True


def wait_for_idle(max_wait_s: float, poll_s: float = 0.5) -> float:
    """Wait (at most ``max_wait_s``) until other processes leave the CPUs mostly idle.

    Call it while this process itself is idle: every busy CPU then belongs to someone else.

    Returns:
        Seconds waited (at least one polling interval where ``/proc/stat`` exists).
    """
    start = time.monotonic()
    while True:
        busy = cpu_busy_fraction(poll_s)
        if busy is None or busy < BUSY_CPU_FRACTION or time.monotonic() - start >= max_wait_s:
            return time.monotonic() - start
