#!/usr/bin/env python
"""IVF build in proportion: the old rule and the new one, side by side on the same vectors.

* ``old``: what ``VectorIndex.build`` did before issue 15: ``IVF<4*sqrt(n)>,Flat`` (4096 lists
  at 1M), k-means on a 200k-row sample (FAISS's default cap of 256 points per list does not
  bite), add in 100k blocks.
* ``new``: today's product rule: ``choose_index_key``'s IVF key (``ivf_nlist``: ~sqrt(n) lists) and
  ``new_index`` (at most ``POINTS_PER_CENTROID`` points per list), same sample, same blocks.

Both are timed train and add separately, in ``--order`` (default old then new), on the same
clustered synthetic MiniLM-width vectors as ``benchmarks/cpu_index.py`` (its ``make_data``
with its defaults), and scored by recall@10 against exact search (FAISS ``IndexFlatIP``) for
``--queries`` perturbed copies of inventory items, at each index's default nprobe (nlist/32).
Load averages are recorded around every build: the machine is shared.

    .venv/bin/python benchmarks/ivf_build.py              # 1M items
    .venv/bin/python benchmarks/ivf_build.py --sizes 100000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import faiss
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cpu_index import DIM, make_data, picker_ivf_key, recall_at  # noqa: E402

from riskrank.index.vectors.faiss_index import (  # noqa: E402
    POINTS_PER_CENTROID,
    default_nprobe,
    new_index,
    training_positions,
)

OLD_TRAIN_SAMPLE = 200_000
ADD_BLOCK = 100_000


def old_key(n: int) -> str:
    return f"IVF{max(64, 2 ** round(math.log2(4 * math.sqrt(n))))},Flat"


def build(vectors: np.ndarray, key: str, points_per_centroid: int | None) -> tuple[object, dict]:
    """Train + add as ``train_and_add`` does, timing the two apart. ``None``: FAISS's default
    cap (the old behaviour); otherwise the product's ``new_index``."""
    n, dim = vectors.shape
    if points_per_centroid is None:
        index = faiss.index_factory(dim, key, faiss.METRIC_INNER_PRODUCT)
    else:
        index = new_index(dim, key)
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    index.train(vectors[training_positions(n, train_sample=OLD_TRAIN_SAMPLE, seed=0)])
    t1, c1 = time.perf_counter(), time.process_time()
    for start in range(0, n, ADD_BLOCK):
        index.add(vectors[start : start + ADD_BLOCK])
    t2, c2 = time.perf_counter(), time.process_time()
    ivf = faiss.extract_index_ivf(index)
    return index, {
        "key": key,
        "trained_on": min(OLD_TRAIN_SAMPLE, n, ivf.cp.max_points_per_centroid * ivf.nlist),
        "train_s": round(t1 - t0, 2),
        "add_s": round(t2 - t1, 2),
        "train_add_s": round(t2 - t0, 2),
        "train_add_cpu_s": round(c2 - c0, 2),  # all threads: the work, whatever the load
        "train_cpu_s": round(c1 - c0, 2),
        "load1_before": round(load0, 2),
        "load1_after": round(os.getloadavg()[0], 2),
    }


def measure(n: int, args) -> list[dict]:
    items, queries = make_data(
        n,
        args.queries,
        dim=DIM,
        topics=100,
        topic_noise=1.0,
        clusters=2000,
        noise=1.0,
        query_noise=0.5,
        seed=args.seed,
    )
    exact = faiss.IndexFlatIP(DIM)
    exact.add(items)
    _, truth = exact.search(queries, 10)
    del exact
    configs = {
        "old": (old_key(n), None),
        "new": (picker_ivf_key(n, DIM, "64G"), POINTS_PER_CENTROID),
    }
    rows = []
    for name in args.order:
        key, ppc = configs[name]
        index, row = build(items, key, ppc)
        nprobe = default_nprobe(key)
        faiss.extract_index_ivf(index).nprobe = nprobe
        _, found = index.search(queries, 10)
        row.update(
            rule=name, n=n, nprobe=nprobe, recall_at_10=round(recall_at(found, truth, 10), 4)
        )
        print(json.dumps(row), flush=True)
        rows.append(row)
        del index
    return rows


def render(rows: list[dict], meta: dict) -> str:
    out = [
        "# IVF build: old rule vs new, same vectors (issue: speed and memory)",
        "",
        f"`{meta['command']}` with {meta['threads']} FAISS threads on {meta['cpus']} CPUs "
        f"shared with other jobs (1-min load average around each build in the table). Data: "
        f"`benchmarks/cpu_index.py`'s clustered vectors (dim {DIM}, seed {meta['seed']}), "
        f"{meta['queries']} queries, recall@10 vs exact `IndexFlatIP`.",
        "",
        "| n | rule | key | nprobe | trained on | train s | add s | train+add s "
        "| train+add CPU-s (train) | recall@10 | load before / after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['n']:,} | {r['rule']} | {r['key']} | {r['nprobe']} | {r['trained_on']:,} "
            f"| {r['train_s']} | {r['add_s']} | {r['train_add_s']} "
            f"| {r['train_add_cpu_s']} ({r['train_cpu_s']}) | {r['recall_at_10']:.4f} "
            f"| {r['load1_before']} / {r['load1_after']} |"
        )
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--order", nargs="+", default=["old", "new"], choices=["old", "new"])
    ap.add_argument("--threads", type=int, default=2, help="FAISS OpenMP threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "ivf_build"))
    args = ap.parse_args(argv)
    faiss.omp_set_num_threads(args.threads)
    rows = [row for n in args.sizes for row in measure(n, args)]
    meta = {
        "command": "benchmarks/ivf_build.py " + " ".join(argv or sys.argv[1:]),
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "seed": args.seed,
        "queries": args.queries,
    }
    Path(args.out + ".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    Path(args.out + ".md").write_text(render(rows, meta))
    print(render(rows, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
