#!/usr/bin/env python
"""Time ``LexicalProbe.fit`` (what ``rank.pipeline.train`` fits first) on a real review history.

    .venv/bin/python benchmarks/lexical_fit.py [--dataset insults] [--profile]

History = the demo's: Insults train.csv, or the SpamAssassin old groups. Prints rows, seconds
(wall and process CPU), the machine's load average, and the out-of-fold AP of the probe's scores
(so a faster fit that got worse shows up here).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

import numpy as np
import pyarrow.compute as pc

from riskrank.rank.app import datasets
from riskrank.rank.evaluation.metrics import average_precision
from riskrank.recall.lexical import LexicalProbe


def history(name: str):
    table = datasets.load(name)
    old = (
        pc.equal(table["era"], "old")
        if name == "spamassassin"
        else pc.equal(table["split"], "train")
    )
    return table.filter(old)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", choices=datasets.NAMES, default="insults")
    ap.add_argument("--profile", action="store_true", help="print the top 15 of cProfile")
    args = ap.parse_args(argv)
    hist = history(args.dataset)
    texts = hist["text"].to_pylist()
    ids = hist["item_id"].to_pylist()
    verdicts = (np.asarray(hist["label"].to_pylist()) * 2).tolist()
    pols = ["p"] * len(ids)
    prof = cProfile.Profile() if args.profile else None
    load = os.getloadavg()
    t0, c0 = time.perf_counter(), time.process_time()
    if prof:
        prof.enable()
    probe = LexicalProbe.fit(texts, pols, verdicts, ids)
    if prof:
        prof.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    oof = probe.evidence("p", ids, texts, exclude_self=True)
    score = next(iter(oof.values()))
    print(
        f"{args.dataset}: {len(ids):,} reviewed items, LexicalProbe.fit {wall:.1f} s wall, "
        f"{cpu:.1f} s CPU; out-of-fold AP {average_precision(np.asarray(verdicts), score):.3f}; "
        f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, after "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
