#!/usr/bin/env python
"""When is a cold policy taken as absent from an inventory? The presence threshold (issue 13).

A cold policy (seeds, no reviews) none of whose candidates comes as close to one of its seeds
as ``Signal.presence_threshold`` is calibrated as absent (``rank.ranker.seed_matched``): its
base rate is one violation among its candidates, so it cannot take a mixed queue with items
that merely rank best among nothing like its seeds. The threshold trades two errors: a present
policy taken as absent (its violations sink below every other policy's rows, and nobody
reviews them), and an absent one taken as present (its best items are put at high
probability). This measures both with MiniLM on the two labelled sets.

For each seeds' set (5 violating history items drawn with ``numpy.random.default_rng(t)``, as
benchmarks/quality.py draws them) and each inventory (the other set's or the same set's sweep
side), ``--draws`` draws; inventories of 300, 1,000 and every item (drawn at random, seeded),
and for a present policy also at 2% and 5% prevalence. Per case: the nearest item's cosine to
a seed (min / median / max over draws) and in how many draws a rule would call the policy
absent: no item at 0.5 (the weak match threshold, the rule before), at 0.45, at 0.40.

    .venv/bin/python benchmarks/presence.py [--draws 20]

Writes benchmarks/results/presence.{md,json}. Uses the cached MiniLM indexes of quality.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/quality.py
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"

import quality  # noqa: E402  (the data sets, splits and cached indexes)

from riskrank.index.signals import TextEmbeddingSignal  # noqa: E402

LEVELS = (0.5, 0.45, 0.40)
SIZES = (300, 1000, None)  # None: every indexed item of the sweep side
PREVALENCE = (None, 0.02, 0.05)  # None: as drawn (the set's own share)


def inventory_rows(y: np.ndarray, size: int | None, prev, rng) -> np.ndarray | None:
    """Rows of one drawn inventory: ``size`` at random, or with ``prev`` of them violating."""
    n = len(y)
    if size is None or size >= n:
        return np.arange(n) if prev is None else None
    if prev is None:
        return np.sort(rng.choice(n, size=size, replace=False))
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    n_pos = max(1, int(round(prev * size)))
    if size - n_pos > len(neg) or n_pos > len(pos):
        return None
    picked = [rng.choice(pos, n_pos, replace=False), rng.choice(neg, size - n_pos, replace=False)]
    return np.sort(np.concatenate(picked))


def measure(data: dict, draws: int) -> list[dict]:
    cases = []
    for seeds_name, sd in data.items():
        for inv_name, inv in data.items():
            present = seeds_name == inv_name
            X, y = inv.Xs[inv.sweep_has_vec], inv.y[inv.sweep_has_vec]
            for size in SIZES:
                for prev in PREVALENCE if present else (None,):
                    nearest = []
                    for t in range(draws):
                        rows = inventory_rows(y, size, prev, np.random.default_rng(1000 + t))
                        if rows is None:
                            break
                        q = sd.seeds(5, t)[1]["text"].vectors
                        nearest.append(float((X[rows] @ q.T).max()))
                    if not nearest:
                        continue
                    cases.append(
                        {
                            "seeds": seeds_name,
                            "inventory": inv_name,
                            "present": present,
                            "items": size or len(X),
                            "prevalence": prev if prev is not None else round(float(y.mean()), 3),
                            "draws": len(nearest),
                            "nearest": [round(v, 4) for v in nearest],
                            "absent_at": {str(lv): sum(v < lv for v in nearest) for lv in LEVELS},
                        }
                    )
    return cases


def render(cases: list[dict], meta: dict) -> str:
    level = TextEmbeddingSignal.presence_threshold
    lines = [
        "# When is a cold policy taken as absent? (benchmarks/presence.py, issue 13)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']}; {meta['seconds']} s. MiniLM (PyTorch fp32) vectors of "
        "quality.py's cached indexes; seeds: 5 violating history items of the named set, "
        "drawn per draw t with `default_rng(t)`; inventory: the sweep side of the named set, "
        "all of it or drawn at random (seeded), at its own share of violations or at 2% / 5%.",
        "",
        "Per case: the cosine of the inventory's nearest item to one of the seeds over the "
        "draws, and in how many draws a rule 'no candidate at L' calls the policy absent. "
        f"The shipped level is {level:.2f} (`TextEmbeddingSignal.presence_threshold`); "
        "before it, the weak match threshold 0.5.",
        "",
        "| seeds | inventory | policy there | items | violating share | nearest: min / median"
        " / max | absent at 0.50 | at 0.45 | at 0.40 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        v = c["nearest"]
        a = c["absent_at"]
        lines.append(
            f"| {c['seeds']} | {c['inventory']} | {'present' if c['present'] else 'absent'} | "
            f"{c['items']:,} | {c['prevalence']} | {min(v):.3f} / {np.median(v):.3f} / "
            f"{max(v):.3f} | {a['0.5']} of {c['draws']} | {a['0.45']} | {a['0.4']} |"
        )
    wrong = {
        lv: (
            sum(c["absent_at"][str(lv)] for c in cases if c["present"]),
            sum(c["draws"] for c in cases if c["present"]),
            sum(c["draws"] - c["absent_at"][str(lv)] for c in cases if not c["present"]),
            sum(c["draws"] for c in cases if not c["present"]),
        )
        for lv in LEVELS
    }
    lines += ["", "Errors over all cases (draws):", ""]
    for lv, (pa_, pn, ap, an) in wrong.items():
        lines.append(
            f"- no candidate at {lv:.2f}: a present policy taken as absent in {pa_} of {pn}, "
            f"an absent one taken as present in {ap} of {an}"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--out", default=str(RESULTS / "presence"))
    args = ap.parse_args(argv)
    t0 = time.time()
    signal = TextEmbeddingSignal()
    data = {name: quality.Data(name, signal) for name in ("spamassassin", "insults")}
    cases = measure(data, args.draws)
    meta = {
        "command": "python benchmarks/presence.py" + (" " + " ".join(argv or sys.argv[1:])),
        "machine": f"{os.cpu_count()} CPUs, {platform.platform()}",
        "seconds": round(time.time() - t0),
        "presence_threshold": TextEmbeddingSignal.presence_threshold,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "cases": cases}, indent=1))
    out.with_suffix(".md").write_text(render(cases, meta))
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
