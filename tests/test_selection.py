"""Fixed selection patterns."""

import pytest

from prunetune.errors import UsageError
from prunetune.selection import num_to_drop, select_layers


def test_paper_pattern_matches_reference_for_bart_large():
    assert select_layers("paper", 12, 1 / 3) == [0, 1, 2, 4, 6, 8, 10, 11]


@pytest.mark.parametrize("n, ratio", [(12, 0.25), (12, 0.5), (24, 1 / 3), (30, 0.33), (16, 0.4)])
def test_paper_pattern_keeps_first_three_and_last(n, ratio):
    keep = select_layers("paper", n, ratio)
    assert keep[:3] == [0, 1, 2] and keep[-1] == n - 1
    assert len(keep) == n - num_to_drop(n, ratio)


def test_other_patterns():
    assert select_layers("top", 12, 1 / 3) == [0, 1, 2, 3, 4, 5, 6, 11]
    assert select_layers("bottom", 12, 1 / 3) == [0, 5, 6, 7, 8, 9, 10, 11]
    assert select_layers("uniform", 12, 1 / 3) == [0, 2, 3, 5, 6, 8, 9, 11]
    assert select_layers("uniform", 5, 0.4) == [0, 2, 4]
    assert select_layers("none", 4, 0.5) == [0, 1, 2, 3]
    assert select_layers("paper", 12, 0.0) == list(range(12))


def test_patterns_refuse_impossible_ratios():
    with pytest.raises(UsageError, match="at most 1"):
        select_layers("paper", 5, 0.5)
    with pytest.raises(UsageError, match="ratio"):
        select_layers("top", 12, 1.0)
