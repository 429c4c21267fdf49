#!/usr/bin/env python
"""Campaign components: one search of every link vs a cover (``rank.campaigns``).

``radius_components`` finds the components of the campaign link graph from a cover of the
rows by groups around leaders; the way before it searched every link (``radius_pair_chunks``
folded into ``_Components``). Both run here side by side, in one process, on the same rows:
``scale.py``'s synthetic template ads (near-copies: the case that grows as rows²) embedded
with its hashing stand-in encoder, and the same number of rows with no near-copies (random
unit vectors: every row leads its own group, the cover's worst case). Prints seconds, links,
leaders and whether the two partitions are equal.

    .venv/bin/python benchmarks/campaign_links.py --rows 10000 30000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import HashingEncoder, make_texts  # noqa: E402

from riskrank.rank import campaigns  # noqa: E402


def every_link(x: np.ndarray, t: float) -> tuple[np.ndarray, int]:
    parts, links = campaigns._Components(len(x)), 0
    for rows, nbr in campaigns.radius_pair_chunks(x, x, "cosine", t):
        parts.add(rows, nbr)
        links += len(rows)
    return parts.labels(), links


def partition(labels: np.ndarray) -> set:
    groups: dict[int, list[int]] = {}
    for i, lab in enumerate(labels.tolist()):
        groups.setdefault(lab, []).append(i)
    return {tuple(g) for g in groups.values()}


def compare(name: str, x: np.ndarray, t: float) -> dict:
    t0 = time.perf_counter()
    old, links = every_link(x, t)
    t1 = time.perf_counter()
    new = campaigns.radius_components(x, "cosine", t)
    t2 = time.perf_counter()
    leaders = len(campaigns._Space(x, "cosine", t).cover_groups()[0])
    return {
        "rows": len(x),
        "data": name,
        "links": links,
        "components": len(set(new.tolist())),
        "leaders": leaders,
        "every_link_s": round(t1 - t0, 2),
        "cover_s": round(t2 - t1, 2),
        "ratio": round((t2 - t1) / (t1 - t0), 3),
        "equal": partition(old) == partition(new),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 30_000])
    ap.add_argument("--threshold", type=float, default=campaigns.CAMPAIGN_THRESHOLDS["text"])
    args = ap.parse_args(argv)
    enc = HashingEncoder()
    for n in args.rows:
        texts, _ = make_texts(n, np.random.default_rng(n), 0.3)
        rng = np.random.default_rng(0)
        noise = rng.normal(size=(n, 384)).astype(np.float32)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        for name, x in (("template ads", enc.encode(texts)), ("random unit vectors", noise)):
            row = compare(name, x, args.threshold)
            row["load"] = [round(v, 2) for v in os.getloadavg()]
            print("RESULT " + json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
