"""Fixed layer-selection patterns: which blocks of a stack to keep.

Each pattern maps ``(num_layers, ratio)`` to a sorted keep-list, dropping
``round(ratio * num_layers)`` blocks:

* ``paper`` -- the reference paper's pattern (arXiv 2305.08285, LoraLPrun): keep the
  first three blocks and the last one, drop evenly spaced ("alternate") middle blocks.
  For 12 layers at ratio 1/3 this keeps ``[0, 1, 2, 4, 6, 8, 10, 11]``.
* ``top`` -- drop the deepest blocks but keep the last one (it feeds the head).
* ``bottom`` -- drop the shallowest blocks but keep block 0 (it reads the embeddings).
* ``uniform`` -- keep evenly spaced blocks, always including the first and the last.

Importance-driven selection (measured per block) lives in its own module.
"""

from __future__ import annotations

from typing import Literal

from prunetune.errors import UsageError

Strategy = Literal["none", "paper", "top", "bottom", "uniform"]
PATTERNS = ("paper", "top", "bottom", "uniform")


def num_to_drop(num_layers: int, ratio: float) -> int:
    """``round(ratio * num_layers)``, with .5 rounded up so 1/3 of 12 drops 4."""
    if not 0.0 <= ratio < 1.0:
        raise UsageError(f"ratio must be in [0, 1), got {ratio}")
    return int(ratio * num_layers + 0.5 + 1e-9)


def select_layers(strategy: str, num_layers: int, ratio: float, stack: str = "decoder") -> list[int]:
    """The keep-list a fixed pattern gives for one stack.

    Args:
        strategy: one of :data:`PATTERNS` (or ``none`` to keep everything).
        num_layers: depth of the stack.
        ratio: fraction of blocks to drop, in [0, 1).
        stack: stack name, used in error messages.

    Returns:
        Sorted 0-based indices of the blocks to keep (never empty).

    Raises:
        UsageError: if the pattern cannot drop that many blocks from this stack.
    """
    n_drop = num_to_drop(num_layers, ratio)
    everything = list(range(num_layers))
    if strategy == "none" or n_drop == 0:
        return everything
    if strategy == "paper":
        middle = list(range(3, num_layers - 1))
        if n_drop > len(middle):
            raise UsageError(
                f"the paper pattern keeps the first 3 and the last layer, so it can drop at most "
                f"{len(middle)} of the {num_layers} {stack} layers; ratio {ratio:g} asks for {n_drop}"
            )
        # floor(k * m / n) spreads the drops over the middle; for m = 2n it is every other
        # block starting at block 3, exactly the paper's choice for BART.
        dropped = {middle[(k * len(middle)) // n_drop] for k in range(n_drop)}
    elif strategy == "top":
        if n_drop > num_layers - 1:
            raise UsageError(f"'top' keeps the last {stack} layer, so it can drop at most {num_layers - 1}")
        dropped = set(range(num_layers - 1 - n_drop, num_layers - 1))
    elif strategy == "bottom":
        if n_drop > num_layers - 1:
            raise UsageError(f"'bottom' keeps {stack} layer 0, so it can drop at most {num_layers - 1}")
        dropped = set(range(1, 1 + n_drop))
    elif strategy == "uniform":
        n_keep = num_layers - n_drop
        if n_keep < 2 and num_layers > 1:
            raise UsageError(f"'uniform' keeps the first and last {stack} layers, so it can drop at most {num_layers - 2}")
        if n_keep == 1:
            return [0]
        kept = sorted({round(i * (num_layers - 1) / (n_keep - 1)) for i in range(n_keep)})
        return kept
    else:
        raise UsageError(f"unknown strategy '{strategy}' (choose from none, {', '.join(PATTERNS)})")
    return [i for i in everything if i not in dropped]
