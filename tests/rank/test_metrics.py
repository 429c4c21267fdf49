"""Metrics with tied scores are their expected value over every order of the ties."""

import itertools
import re

import numpy as np
import pytest

from riskrank.rank.evaluation.metrics import (
    average_precision,
    expected_calibration_error,
    ndcg_at,
    precision_at,
    recall_at,
)


def _strict(metric, labels, scores, *args):
    """The metric of one strict order: ``scores`` broken by position (no ties left)."""
    n = len(scores)
    return metric(labels, np.asarray(scores, float) - np.arange(n) * 1e-9, *args)


def _brute(metric, labels, scores, *args):
    """The mean of ``metric`` over every ordering of the tied items (small inputs only)."""
    labels, scores = np.asarray(labels), np.asarray(scores, float)
    vals = []
    for perm in itertools.permutations(range(len(labels))):
        perm = np.array(perm)
        s = scores[perm]
        # Keep the order of distinct scores; only tied items trade places.
        if not np.all(np.diff(np.nan_to_num(s, nan=-np.inf, neginf=-1e300)) <= 0):
            continue
        vals.append(_strict(metric, labels[perm], s, *args))
    return float(np.mean(vals))


@pytest.mark.parametrize("seed", range(6))
def test_tied_metrics_equal_the_mean_over_every_order(seed):
    rng = np.random.default_rng(seed)
    n = 7
    scores = rng.choice([0.9, 0.5, 0.5, 0.2, -np.inf], n)
    scores[rng.integers(n)] = np.nan  # not scored: ranked with the -inf tail
    labels = rng.integers(0, 4, n)
    labels[0] = 2  # at least one positive
    for metric, args in (
        (average_precision, ()),
        (precision_at, (3,)),
        (precision_at, (10,)),
        (recall_at, (2,)),
        (ndcg_at, (4,)),
    ):
        want = _brute(metric, labels, scores, *args)
        assert metric(labels, scores, *args) == pytest.approx(want, abs=1e-9), metric.__name__


def test_metrics_do_not_depend_on_row_order():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 500)
    s = np.where(rng.random(500) < 0.3, rng.random(500), -np.inf)  # a long tied tail
    perm = rng.permutation(500)
    for metric, args in ((average_precision, ()), (precision_at, (200,)), (ndcg_at, (300,))):
        assert metric(y, s, *args) == pytest.approx(metric(y[perm], s[perm], *args), abs=1e-12)


def test_without_ties_the_metrics_are_the_usual_ones():
    y = np.array([1, 0, 1, 0, 0, 1])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    assert average_precision(y, s) == pytest.approx((1 + 2 / 3 + 3 / 6) / 3)
    assert precision_at(y, s, 3) == pytest.approx(2 / 3)
    assert recall_at(y, s, 2) == pytest.approx(1 / 3)
    # All tied: AP is the expected AP of a random order, P@k the base rate.
    flat = np.zeros(6)
    assert precision_at(y, flat, 2) == pytest.approx(0.5)
    assert average_precision(y, flat) == pytest.approx(_brute(average_precision, y, flat))


def test_evaluate_counts_campaign_members_and_ignores_the_labels_row_order():
    import pyarrow as pa

    from riskrank.rank.evaluation.report import evaluate

    queue = pa.table(
        {
            "item_id": ["a", "d"],
            "rank": [1, 2],
            "campaign_members": pa.array([["a", "b", "c"], ["d"]], pa.list_(pa.string())),
        }
    )
    ids = ["a", "b", "c", "d", "e", "f", "g", "h"]
    verdicts = [2, 2, 0, 0, 2, 0, 2, 0]
    labels = pa.table({"item_id": ids, "verdict": verdicts})
    got = evaluate(queue, labels)
    assert got["coverage"] == pytest.approx(4 / 8)  # the campaign's members are held
    # a, b, c tied at rank 1, then d, then the unqueued tail (e-h): P@10 is all 8 rows.
    assert got["P@10"] == pytest.approx(4 / 8)
    flipped = labels.take(pa.array(list(range(7, -1, -1))))
    assert evaluate(queue, flipped) == pytest.approx(got)
    # Python numbers, not numpy scalars beside Python ones (an analyst's notebook: outsider CB)
    assert {type(v).__name__ for v in got.values()} <= {"int", "float", "NoneType"}


def test_expected_calibration_error_weighs_each_bins_gap_by_its_rows():
    p = np.array([0.1, 0.1, 0.9, 0.9])
    assert expected_calibration_error(p, np.array([0, 0, 1, 0])) == pytest.approx(0.25)
    assert expected_calibration_error(p, np.array([0, 0, 1, 1])) == pytest.approx(0.1)
    assert expected_calibration_error(np.array([1.0]), np.array([1])) == 0.0  # p=1: last bin
    assert np.isnan(expected_calibration_error(np.zeros(0), np.zeros(0)))
    rng = np.random.default_rng(0)
    q = rng.random(1000)
    y = rng.random(1000) < q
    assert expected_calibration_error(q, y) < 0.05 < expected_calibration_error(q, ~y)


@pytest.mark.parametrize(
    "column, values, truth",
    [
        ("verdict", [0, 2, 3], [0, 1, 1]),
        ("verdict", [0, 1, 2], [0, 0, 1]),  # 1 is borderline: not violating
        ("verdict", ["Violating", "benign", "2"], [1, 0, 1]),
        ("verdict", ["borderline", "benign", "borderline"], [0, 0, 0]),  # words: no 0/1 doubt
        ("label", [0, 1, 1], [0, 1, 1]),
        ("label", [1.0, 0.0, 1.0], [1, 0, 1]),
        ("label", ["violating", "benign", "borderline"], [1, 0, 0]),
        ("label", [True, False, True], [1, 0, 1]),
        ("label", ["true", "False", "TRUE"], [1, 0, 1]),
        ("label", ["1", "0", "1"], [1, 0, 1]),
        ("label", ["1.0", "0.0", " 1 "], [1, 0, 1]),  # a CSV's floats, spaces
    ],
)
def test_labels_are_read_as_violating_or_not(column, values, truth):
    """A verdict of 1 was scored as a violation (150 borderline items moved AP 0.704 ->
    0.741), and words failed only after a whole sweep (an outsider's report)."""
    import pyarrow as pa

    from riskrank.rank.evaluation.report import check_labels

    read = check_labels(pa.table({"item_id": ["a", "b", "c"], column: values}))
    assert read["label"].to_pylist() == truth and "verdict" not in read.column_names
    assert check_labels(read).equals(read)  # read again: the same


@pytest.mark.parametrize(
    "column, values, says",
    [
        ("verdict", [0, 1, 1], "every verdict written as a number is 0 or 1"),
        ("verdict", [-1, 2, 0], "row 0 has verdict -1"),
        ("label", [0, 2, 1], "row 1 has label 2"),
        ("label", ["0", "2", "1"], "row 1 has label '2'"),
        ("label", [0, float("nan"), 1], "row 1 has label nan"),
        ("label", [0, None, 1], "row 1 has label None"),
        ("label", ["spam", "ham", "spam"], "row 0 has label 'spam'"),
    ],
)
def test_unreadable_labels_are_refused_naming_the_row(column, values, says):
    import pyarrow as pa

    from riskrank.index.tables import SchemaError
    from riskrank.rank.evaluation.report import check_labels

    with pytest.raises(SchemaError, match=re.escape(says)):
        check_labels(pa.table({"item_id": ["a", "b", "c"], column: values}))


def test_a_verdict_and_a_label_column_that_disagree_are_refused():
    """Outsider CD: verdict 3 and label 0 on every row counted every row a positive, and
    nothing said the label column was passed over."""
    import pyarrow as pa

    from riskrank.index.tables import SchemaError
    from riskrank.rank.evaluation.report import check_labels

    agree = pa.table({"item_id": ["a", "b"], "verdict": [3, 0], "label": [1, 0]})
    assert check_labels(agree).column("label").to_pylist() == [1, 0]
    # An empty or unreadable label says nothing against the verdict (reviewer CE).
    for empty in ([None, None], [float("nan"), 0], ["spam", "ham"]):
        partial = agree.set_column(2, "label", pa.array(empty))
        assert check_labels(partial).column("label").to_pylist() == [1, 0], empty
    differ = agree.set_column(2, "label", pa.array([0, 0]))
    with pytest.raises(SchemaError, match=r"disagree on 1 row \(first: row 0, verdict 3, label 0"):
        check_labels(differ)


def test_items_decided_before_and_not_queued_are_left_out_of_the_score():
    """Day 2 scored the 68 violations confirmed on day 1 (reviewed, unchanged, not queued) as
    misses: 94 positives, AP 0.256, where the items still to decide gave 0.310."""
    from types import SimpleNamespace

    import pyarrow as pa

    from riskrank.rank.evaluation.report import DECIDED, sweep_quality

    queue = pa.table({"item_id": ["c", "d"], "rank": [1, 2]})
    cands = pa.table(
        {
            "item_id": ["a", "a", "b", "c", "d", "e"],
            "reviewed": ["unchanged", "unchanged", "unchanged", "changed", None, "unchanged"],
        }
    )
    labels = pa.table({"item_id": ["a", "b", "c", "d", "e", "f"], "label": [1, 1, 1, 0, 0, 1]})
    result = SimpleNamespace(queue=queue, candidates=cands, swept_ids=None)
    quality, scored = sweep_quality(result, labels)
    assert scored["item_id"].to_pylist() == ["c", "d", "f"] and quality[DECIDED] == 3
    assert quality["items"] == 3 and quality["positives"] == 2
    # Without the candidates (a queue alone), every labelled item is scored, as before.
    quality, scored = sweep_quality(SimpleNamespace(queue=queue, swept_ids=None), labels)
    assert quality["items"] == 6 and DECIDED not in quality
