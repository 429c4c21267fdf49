"""A queue row's reasons are taken from the last sweep only where everything they read is the
same (rank/reasons_memo.py): its policy's key, and the row's inputs and contributions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from riskrank.rank.reasons_memo import ExplanationMemo, equal_rows

KEYS = {"scam": "k-scam", "phish": "k-phish"}


def _inputs(p=(0.9, 0.5, float("nan")), action=("escalate", "review", "review")) -> pa.Table:
    return pa.table(
        {
            "item_id": ["a", "b", "c"],
            "policy": ["scam", "phish", "scam"],
            "action": list(action),
            "risk_probability": pa.array(p, pa.float64()),
            "reviewed_elsewhere": pa.array([[], ["x"], None], pa.list_(pa.string())),
        }
    )


def _explained(n: int = 3) -> pa.Table:
    return pa.table({"explanation": [f"reason {i}" for i in range(n)]})


def _reused(path, inputs, contrib, keys=KEYS) -> list[int]:
    rows, explained = ExplanationMemo(path, keys).reusable(inputs, contrib)
    if len(rows):
        assert explained["explanation"].to_pylist() == [f"reason {r}" for r in rows]
    return list(rows)


def test_a_row_s_reasons_are_reused_only_where_its_key_and_inputs_are_unchanged(tmp_path):
    path, contrib = tmp_path / "explained.parquet", np.eye(3)
    ExplanationMemo(path, KEYS).save(_inputs(), contrib, _explained())
    assert _reused(path, _inputs(), contrib) == [0, 1, 2]
    # Rows found by item and policy, wherever they stand in today's queue.
    order = pa.array([2, 0, 1])
    rows, explained = ExplanationMemo(path, KEYS).reusable(_inputs().take(order), contrib[order])
    assert list(rows) == [0, 1, 2] and explained["explanation"].to_pylist() == [
        "reason 2",
        "reason 0",
        "reason 1",
    ]
    # Another key, probability, action or contribution: that row is explained again.
    assert _reused(path, _inputs(), contrib, {**KEYS, "scam": "new"}) == [1]
    assert _reused(path, _inputs(p=(0.9, 0.5, 0.1)), contrib) == [0, 1]
    assert _reused(path, _inputs(action=("escalate", "escalate", "review")), contrib) == [0, 2]
    assert _reused(path, _inputs(), np.eye(3)[[0, 2, 1]]) == [0]
    # None kept without keys (a model never saved).
    assert len(ExplanationMemo(path, None).reusable(_inputs(), contrib)[0]) == 0


def test_a_damaged_file_only_means_the_reasons_are_built_again(tmp_path):
    path = tmp_path / "explained.parquet"
    ExplanationMemo(path, KEYS).save(_inputs(), None, _explained())
    table = pq.read_table(path)
    pq.write_table(table.slice(0, 2), path)  # the stamp counts 3 rows
    assert _reused(path, _inputs(), None) == []
    path.write_bytes(b"not parquet")
    assert _reused(path, _inputs(), None) == []


def test_equal_rows_takes_nan_as_nan_but_not_as_null_or_negative_zero():
    def t(*values):
        return pa.table({"v": pa.array(values, pa.float64())})

    nan = float("nan")
    got = equal_rows(t(1.0, nan, None, 0.0, nan, 2.0), t(1.0, nan, None, -0.0, None, 3.0))
    assert got.tolist() == [True, True, True, False, False, False]
    strings = pa.table({"v": ["a", None, "b"]}), pa.table({"v": ["a", None, None]})
    assert equal_rows(*strings).tolist() == [True, True, False]
