"""Benign seeds through the ranker: a real offer that closely matches the scam seed is pushed
below the scam look-alikes once the policy has a benign seed for it."""

import numpy as np
import pyarrow as pa
from conftest import make_items, train_small

from riskrank.rank.pipeline import sweep

SCAM_LOAN = "Guaranteed loan approval in {n} minutes, no credit check, bad credit ok, apply now"
# Closer to the violating seed below than the scams are: without an allowlist it leads the queue.
REAL_LOAN = "Instant loan approval from {bank}: a credit check is needed, guaranteed fair rates"
VIOLATING = [
    ("s1", "You won a free iPhone! Just pay the shipping fee to claim your prize"),
    ("s2", "Instant loan approval guaranteed, no credit check needed"),
    ("s3", "Replica Rolex watches, designer handbags at 90% off"),
]
BENIGN = ("b1", "Instant loan approval from your bank: a credit check is needed, fair rates")


def _items(prefix: str, seed: int, n: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    rows = make_items(30, 60, prefix=prefix, seed=seed).select(["item_id", "text", "label"])
    rows = rows.to_pylist()
    for i in range(n):
        minutes = str(rng.choice(["3", "10", "15", "30"]))
        bank = str(rng.choice(["City Bank", "First Savings", "Union Credit", "Metro Bank"]))
        scam, real = SCAM_LOAN.format(n=minutes), REAL_LOAN.format(bank=bank)
        rows.append({"item_id": f"{prefix}-scam{i}", "text": scam, "label": 1})
        rows.append({"item_id": f"{prefix}-real{i}", "text": real, "label": 0})
    return pa.Table.from_pylist(rows)


def _seeds(policy: str, violating, benign=()) -> pa.Table:
    rows = [(s, t, "example") for s, t in violating] + [(s, t, "benign") for s, t in benign]
    return pa.table(
        {
            "seed_id": [r[0] for r in rows],
            "policy": [policy] * len(rows),
            "text": [r[1] for r in rows],
            "kind": [r[2] for r in rows],
        }
    )


def _history() -> pa.Table:
    """Reviewed loan offers and scams under "scam" (verdict 2 for the scams)."""
    hist = _items("h", 1, 20)
    return pa.table(
        {
            "item_id": hist["item_id"],
            "text": hist["text"],
            "policy": ["scam"] * hist.num_rows,
            "verdict": pa.array([2 * v for v in hist["label"].to_pylist()], pa.int8()),
        }
    )


def _ranks(queue: pa.Table, marker: str) -> list[int]:
    q = queue.to_pandas()
    return sorted(q.loc[q.item_id.str.contains(marker), "rank"])


def test_benign_template_is_pushed_below_violating_lookalikes(tmp_path, hashing_signal):
    history = _history()
    # The ranker learns what closeness to a benign seed is worth from reviewed real offers.
    model = train_small(
        history, _seeds("scam", VIOLATING, [BENIGN]), tmp_path / "m", hashing_signal
    )
    assert "text_benign_margin" in model.ranker.features_
    assert any("_benign_" in f for f in model.ranker.features_used())  # (no warning below)
    inventory = _items("i", 2, 10).drop(["label"])
    # A new policy (no history of its own: seed and allowlist evidence only), with and
    # without the benign seed for the real offers.
    plain = sweep(inventory, _seeds("loans", VIOLATING[1:2]), model, k=200, show_progress=False)
    allow = sweep(
        inventory, _seeds("loans", VIOLATING[1:2], [BENIGN]), model, k=200, show_progress=False
    )
    scam, real = _ranks(plain.queue, "-scam"), _ranks(plain.queue, "-real")
    assert len(scam) == len(real) == 10
    assert min(real) < max(scam)  # without the allowlist the real offers are mixed in (or lead)
    scam, real = _ranks(allow.queue, "-scam"), _ranks(allow.queue, "-real")
    assert len(scam) == len(real) == 10
    assert max(scam) < min(real)
    assert not [w for w in allow.report["warnings"] if "benign seeds" in w]


def test_benign_seeds_a_model_never_learnt_are_said_to_be_ignored(tmp_path, hashing_signal):
    """An allowlist added at sweep time to a model trained without benign seeds moved no
    score (0 of 516 rows) and nothing said so (an outsider's week of sweeps)."""
    history = _history()
    model = train_small(history, _seeds("scam", VIOLATING), tmp_path / "m", hashing_signal)
    assert not any("_benign_" in f for f in model.ranker.features_used())
    inventory = _items("i", 2, 10).drop(["label"])
    res = sweep(inventory, _seeds("scam", VIOLATING, [BENIGN]), model, k=200, show_progress=False)
    said = [w for w in res.report["warnings"] if "benign seeds" in w]
    assert said and "'scam'" in said[0] and "retrain" in said[0]
    plain = sweep(inventory, _seeds("scam", VIOLATING), model, k=200, show_progress=False)
    assert not [w for w in plain.report["warnings"] if "benign seeds" in w]
