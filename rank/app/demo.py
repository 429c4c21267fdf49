"""The real-data demo: SpamAssassin (or Insults) as seeds + review history + a live sweep.

SpamAssassin: seeds and history come from the older groups (spam-1, easy-ham-1, hard-ham-1),
the sweep runs over the newer ones (spam-2, easy-ham-2), as a team would meet a new wave of a
campaign. Insults: train.csv is history, test_with_solutions.csv the sweep.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from riskrank.index.tables import write_parquet
from riskrank.rank.app import datasets

POLICY = {"spamassassin": "spam", "insults": "insult"}
ACTION = {"spamassassin": "remove", "insults": "remove"}


def prepare(name: str, out: Path, *, n_seeds: int = 5, seed: int = 0) -> dict[str, Path]:
    """Write the demo's inputs as Parquet: inventory, seeds, history, labels."""
    table = datasets.load(name)
    if name == "spamassassin":
        old_mask = pc.equal(table["era"], "old")
    elif name == "insults":
        old_mask = pc.equal(table["split"], "train")
    else:
        raise ValueError(f"unknown demo dataset {name!r}; choose from {sorted(POLICY)}")
    old, new = table.filter(old_mask), table.filter(pc.invert(old_mask))
    policy = POLICY[name]
    positives = old.filter(pc.equal(old["label"], 1))
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(positives.num_rows, size=n_seeds, replace=False))
    seeds = pa.table(
        {
            "seed_id": positives["item_id"].take(pick),
            "policy": pa.array([policy] * n_seeds),
            "text": positives["text"].take(pick),
            "severity": pa.array([3] * n_seeds, pa.int8()),
            "action": pa.array([ACTION[name]] * n_seeds),
        }
    )
    history = pa.table(
        {
            "item_id": old["item_id"],
            "text": old["text"],
            "policy": pa.array([policy] * old.num_rows),
            "verdict": pc.multiply(old["label"].cast(pa.int8()), pa.scalar(2, pa.int8())),
            "sweep_id": pa.array(["history"] * old.num_rows),
        }
    )
    meta = [c for c in new.column_names if c not in ("label", "era", "split", "usage")]
    inventory = new.select(meta)
    labels = pa.table(
        {
            "item_id": new["item_id"],
            "policy": pa.array([policy] * new.num_rows),
            "verdict": pc.multiply(new["label"].cast(pa.int8()), pa.scalar(2, pa.int8())),
        }
    )
    paths = {}
    for key, t in (
        ("inventory", inventory),
        ("seeds", seeds),
        ("history", history),
        ("labels", labels),
    ):
        paths[key] = write_parquet(t, out / f"{key}.parquet")
    return paths
