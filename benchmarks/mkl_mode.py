#!/usr/bin/env python
"""Intel MKL's default mode against its strict reproducible mode (index/cpu_math.py), side by
side: the PyTorch text encoder's speed on the same mails, and whether a text's vector depends
on what shares its batch.

Each configuration runs in its own process (MKL reads ``MKL_CBWR`` once, at its first call):
``AUTO`` is MKL's default code path without strict mode (what PyTorch ran before riskrank set
the mode), ``AUTO,STRICT`` what ``import riskrank`` sets now. Rounds alternate the order
(A B, B A, ...) so that a change in the machine's load is shared out. Per run: items/s,
items per CPU-second, and the largest difference between a text's vector encoded with its
batchmates and alone (0 = bitwise the same).

    .venv/bin/python benchmarks/mkl_mode.py --n 256 --rounds 2 --out benchmarks/results/mkl_mode
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from encoder import cpu_isa  # the sibling benchmark's record of the CPU

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("AUTO", "AUTO,STRICT")

WORKER = r"""
import json, resource, sys, time
import numpy as np
from riskrank.index.cpu_math import mkl_strict
from riskrank.index.signals import TextEmbeddingSignal
from riskrank.rank.app import datasets

n = int(sys.argv[1])
texts = datasets.load_spamassassin()["text"].to_pylist()
texts = [texts[i] for i in np.random.default_rng(0).choice(len(texts), n, replace=False)]
enc = TextEmbeddingSignal().encoder
enc.encode(texts[:4])  # the model loaded, not timed
r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
together = enc.encode(texts)
wall = time.perf_counter() - w0
r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
alone = np.concatenate([enc.encode([t]) for t in texts[:32]])
print(json.dumps({
    "strict": mkl_strict(), "wall_s": wall, "cpu_s": cpu,
    "max_diff_alone_vs_batch": float(np.abs(together[:32] - alone).max()),
}))
"""


def run_one(mode: str, n: int) -> dict:
    env = {**os.environ, "MKL_CBWR": mode}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(n)], env=env, capture_output=True, text=True, check=True
    )
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row.update(mode=mode, items_per_s=n / row["wall_s"], items_per_cpu_s=n / row["cpu_s"])
    return row


def markdown(runs: list[dict], meta: dict) -> str:
    lines = [
        "# MKL's default mode vs strict reproducible mode (PyTorch text encoder)",
        "",
        f"`{meta['command']}`: {meta['n']} SpamAssassin mails, {meta['rounds']} rounds in "
        f"alternating order, each run its own process. CPU: {meta['cpu']['model']} "
        f"({', '.join(meta['cpu']['flags'])}). Load average before "
        f"{meta['load_before']}, after {meta['load_after']}.",
        "",
        "| round | MKL_CBWR | strict (read back) | items/s | items/CPU-s | max diff, alone vs "
        "batch (32 texts) |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['round']} | {r['mode']} | {r['strict']} | {r['items_per_s']:.1f} | "
            f"{r['items_per_cpu_s']:.1f} | {r['max_diff_alone_vs_batch']:.2e} |"
        )
    for mode in MODES:
        rows = [r for r in runs if r["mode"] == mode]
        mean = sum(r["items_per_cpu_s"] for r in rows) / len(rows)
        lines.append(f"\nMean items/CPU-s with MKL_CBWR={mode}: {mean:.2f}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "mkl_mode"))
    args = ap.parse_args()
    meta = {
        "command": "benchmarks/mkl_mode.py " + " ".join(sys.argv[1:]),
        "n": args.n,
        "rounds": args.rounds,
        "cpu": cpu_isa(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }
    runs = []
    for k in range(args.rounds):
        for mode in MODES if k % 2 == 0 else MODES[::-1]:
            row = run_one(mode, args.n) | {"round": k + 1}
            print(json.dumps(row), flush=True)
            runs.append(row)
    meta["load_after"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=2))
    out.with_suffix(".md").write_text(markdown(runs, meta))
    print(markdown(runs, meta))


if __name__ == "__main__":
    main()
