#!/usr/bin/env python
"""Full int8 with bf16 or f32 float operations, beside PyTorch fp32: what a portable int8 costs.

``backend="openvino-int8"`` runs its MatMuls int8 and the rest (layer norms, GELU, softmax, the
float MatMuls) at the CPU's precision: bf16 on CPUs that have it, f32 elsewhere, and the index
manifest records which, so an index of one is refused to a query encoder of the other. An int8
encoder whose float operations ran f32 everywhere would not be tied to a CPU family that way.
This times the library's int8 IR (the default calibration) compiled both ways, through the
library's ``OpenVinoSentenceModel``, beside ``TextEncoder()`` (PyTorch fp32): the same mails,
rounds in alternating order, items/s and items/CPU-s, cosine to PyTorch.

    .venv/bin/python benchmarks/int8_precision.py --n 256 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from riskrank.index.signals.text import TextEncoder, resolve_text_model
from riskrank.index.signals.text_openvino import OpenVinoSentenceModel, quantized_ir_path
from riskrank.rank.app import datasets
from riskrank.rank.app.encoder_calibration import history_calibration_texts

RESULTS = Path(__file__).resolve().parent / "results"
BATCH, LENGTH, THREADS = 16, 256, 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=256, help="SpamAssassin mails timed")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS / "int8_precision"))
    args = ap.parse_args()

    texts = datasets.load("spamassassin").column("text").to_pylist()
    rows = np.random.default_rng(0).choice(len(texts), size=min(args.n, len(texts)), replace=False)
    texts = [texts[i] for i in rows]
    torch_enc = TextEncoder(num_threads=THREADS)
    path, _ = resolve_text_model(torch_enc.model)
    ir = quantized_ir_path(path, history_calibration_texts(), max_seq_length=LENGTH)
    int8 = {
        p: OpenVinoSentenceModel(path, max_seq_length=LENGTH, num_threads=THREADS, ir=ir,
                                 precision=p)
        for p in ("bf16", "f32")
    }  # fmt: skip
    encoders = {
        "torch fp32": lambda: torch_enc.encode(texts),
        **{f"openvino-int8, float ops {p}": (lambda m=m: m.encode(texts, BATCH, False))
           for p, m in int8.items()},
    }  # fmt: skip
    ran = {"torch fp32": "f32", **{f"openvino-int8, float ops {p}": m.precision
                                   for p, m in int8.items()}}  # fmt: skip
    for run in encoders.values():  # warm-up: first calls compile and allocate
        run()
    names = list(encoders)
    wall = {n: [] for n in names}
    cpu = {n: [] for n in names}
    vectors = {}
    load_before = [round(x, 2) for x in os.getloadavg()]
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            vectors[name] = encoders[name]()
            wall[name].append(len(texts) / (time.perf_counter() - t0))
            cpu[name].append(len(texts) / (time.process_time() - c0))
    load_after = [round(x, 2) for x in os.getloadavg()]
    base_w, base_c = np.median(wall[names[0]]), np.median(cpu[names[0]])
    rows_out = []
    for name in names:
        cos = (vectors[name] * vectors[names[0]]).sum(1)
        rows_out.append({
            "config": name, "precision run": ran[name],
            "items_per_s": [round(x, 2) for x in wall[name]],
            "items_per_cpu_s": [round(x, 2) for x in cpu[name]],
            "x_torch_items_per_s": round(float(np.median(wall[name]) / base_w), 2),
            "x_torch_per_cpu_s": round(float(np.median(cpu[name]) / base_c), 2),
            "cos_min": round(float(cos.min()), 4), "cos_mean": round(float(cos.mean()), 4),
        })  # fmt: skip
    command = f"benchmarks/int8_precision.py --n {args.n} --rounds {args.rounds}"
    meta = {"command": command, "mails": len(texts), "rounds": args.rounds, "threads": THREADS,
            "batch": BATCH, "max_seq_length": LENGTH, "load_before": load_before,
            "load_after": load_after}  # fmt: skip
    Path(args.out + ".json").write_text(json.dumps({"meta": meta, "rows": rows_out}, indent=1))
    lines = [
        "# Full int8: bf16 or f32 float operations, beside PyTorch fp32 (issue 15)",
        "",
        f"`{command}`: {len(texts)} SpamAssassin mails, {args.rounds} rounds in alternating "
        f"order, {THREADS} threads, int8 batches of {BATCH}. Load average (1/5/15 min) before "
        f"{load_before}, after {load_after}.",
        "",
        "| config | float ops run | items/s per round | x torch | items/CPU-s per round "
        "| x torch | cos to torch min / mean |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows_out:
        lines.append(
            f"| {r['config']} | {r['precision run']} | {', '.join(map(str, r['items_per_s']))} "
            f"| {r['x_torch_items_per_s']:.2f} | {', '.join(map(str, r['items_per_cpu_s']))} "
            f"| {r['x_torch_per_cpu_s']:.2f} | {r['cos_min']:.4f} / {r['cos_mean']:.4f} |"
        )
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
