"""RelSel windows: the authors' fixed_first layout, the seeded shuffled layout, and merging."""

import pytest

from utilann.annotate.windows import merge_windows, relsel_windows


def test_fixed_first_reproduces_the_papers_two_windows():
    is_human = [True] + [False] * 30  # 1 human positive + 30 negatives
    windows = relsel_windows(is_human, 16, "fixed_first")
    assert windows == [[0] + list(range(1, 16)), [0] + list(range(16, 31))]


def test_fixed_first_balances_windows_and_repeats_all_humans():
    is_human = [True, True] + [False] * 9
    windows = relsel_windows(is_human, 6, "fixed_first")
    assert [w[:2] for w in windows] == [[0, 1]] * 3
    assert sorted(i for w in windows for i in w[2:]) == list(range(2, 11))
    assert max(map(len, windows)) - min(map(len, windows)) <= 1


def test_fixed_first_without_room_for_negatives_is_a_clear_error():
    with pytest.raises(ValueError, match="no room"):
        relsel_windows([True] * 4 + [False], 4, "fixed_first", query_id="q1")


def test_shuffled_shows_each_passage_once_reproducibly():
    is_human = [True] + [False] * 30
    a = relsel_windows(is_human, 16, "shuffled", seed=3, query_id="q7")
    assert a == relsel_windows(is_human, 16, "shuffled", seed=3, query_id="q7")
    assert a != relsel_windows(is_human, 16, "shuffled", seed=4, query_id="q7")
    assert sorted(i for w in a for i in w) == list(range(31))
    assert [len(w) for w in a] == [16, 15]


def test_small_pools_and_unknown_policy():
    assert relsel_windows([], 16, "fixed_first") == []
    assert relsel_windows([True, False], 16, "fixed_first") == [[0, 1]]
    with pytest.raises(ValueError, match="position policy"):
        relsel_windows([True], 16, "random")


def test_merge_keeps_the_first_windows_label():
    windows = [[0, 1, 2], [0, 3, 4]]
    labels = merge_windows(windows, [{1}, {0, 4}])
    assert labels == {0: False, 1: True, 2: False, 3: False, 4: True}
    assert list(labels) == [0, 1, 2, 3, 4]  # display order
