#!/usr/bin/env python
"""Text encoder throughput, side by side in one run: PyTorch fp32 vs ONNX Runtime int8.

The same ``--n`` SpamAssassin mails (drawn with ``numpy.random.default_rng(0)``; the texts
the issue profiled) go through every configuration of ``TextEncoder`` (``--configs``,
``backend@max_seq_length``, optionally ``/b<batch size>`` and ``/t<threads>``: e.g.
``onnx-int8@256/b16/t1``), in ``--rounds`` rounds whose order alternates (A B C, C B A, ...)
so a change in machine load between configurations is shared out rather than charged to one.
Reported: items/s per round, the median, its ratio to the first configuration (the baseline,
PyTorch fp32 at 256 tokens as in ``TextEncoder()``), and how close each configuration's
vectors are to the baseline's (cosine per text, min and mean). Models are loaded, and the int8
export made, before any timing. Load averages are recorded before and after.

    .venv/bin/python benchmarks/encoder.py            # 256 mails, 2 rounds
    .venv/bin/python benchmarks/encoder.py --n 64 --rounds 1   # smoke
    .venv/bin/python benchmarks/encoder.py --n 128 --configs torch@256 onnx-int8@256 \
        onnx-int8@256/b16 onnx-int8@256/t1 onnx-int8@256/b16/t1   # batch size and threads
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

# PyTorch's OpenMP threads spin between parallel regions by default; on a shared machine that
# burns CPU its neighbours need and skews CPU-time figures. ONNX Runtime's sessions are made
# with spinning off too (index/signals/text_onnx.py). Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from riskrank.index.signals.text import TextEncoder, default_threads  # noqa: E402
from riskrank.rank.app import datasets  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_CONFIGS = ["torch@256", "onnx-int8@256", "onnx-int8@128", "torch@128"]


def parse_config(text: str) -> dict:
    """``"onnx-int8@256/b16/t1"`` -> TextEncoder keyword arguments (threads: None = default)."""
    head, *opts = text.split("/")
    backend, _, length = head.partition("@")
    kwargs = {"backend": backend, "max_seq_length": int(length or 256), "num_threads": None}
    for opt in opts:
        if opt[:1] not in ("b", "t") or not opt[1:].isdigit():
            raise SystemExit(f"--configs {text!r}: options are /b<batch size> and /t<threads>")
        kwargs["batch_size" if opt[0] == "b" else "num_threads"] = int(opt[1:])
    return kwargs


def sample_texts(n: int) -> list[str]:
    texts = datasets.load("spamassassin").column("text").to_pylist()
    rows = np.random.default_rng(0).choice(len(texts), size=min(n, len(texts)), replace=False)
    return [texts[i] for i in rows]


def timed_rounds(encoders: dict, texts: list[str], rounds: int) -> tuple[dict, dict, dict]:
    """items per wall second and per CPU second (all threads of this process) per
    configuration per round (alternating order), and each one's last vectors. On a loaded
    machine wall time mostly measures the neighbours; CPU time measures the work."""
    names = list(encoders)
    speed: dict[str, list[float]] = {n: [] for n in names}
    per_cpu: dict[str, list[float]] = {n: [] for n in names}
    vectors = {}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            vectors[name] = encoders[name].encode(texts)
            speed[name].append(len(texts) / (time.perf_counter() - t0))
            per_cpu[name].append(len(texts) / (time.process_time() - c0))
            print(
                f"  round {r}: {name:16s} {speed[name][-1]:8.2f} items/s "
                f"{per_cpu[name][-1]:8.2f} items/CPU-s",
                flush=True,
            )
    return speed, per_cpu, vectors


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=256, help="mails to encode per configuration")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS)
    ap.add_argument("--threads", type=int, default=None, help="default: CPUs in affinity")
    ap.add_argument("--out", default=str(RESULTS / "encoder"))
    args = ap.parse_args(argv)
    threads = args.threads or default_threads()
    texts = sample_texts(args.n)
    encoders = {}
    for cfg in args.configs:
        kwargs = parse_config(cfg)
        kwargs["num_threads"] = kwargs["num_threads"] or threads
        enc = TextEncoder(**kwargs)
        enc.encode(texts[:4])  # load the model (and make the int8 export) before timing
        encoders[cfg] = enc
    load_before = os.getloadavg()
    speed, per_cpu, vectors = timed_rounds(encoders, texts, args.rounds)
    load_after = os.getloadavg()
    base = args.configs[0]
    rows = []
    for cfg in args.configs:
        cos = (vectors[cfg] * vectors[base]).sum(axis=1)
        med = float(np.median(speed[cfg]))
        med_cpu = float(np.median(per_cpu[cfg]))
        rows.append(
            {
                "items_per_cpu_s": [round(s, 3) for s in per_cpu[cfg]],
                "median_items_per_cpu_s": round(med_cpu, 3),
                "cpu_ratio_to_baseline": round(med_cpu / float(np.median(per_cpu[base])), 2),
                "config": cfg,
                "items_per_s": [round(s, 3) for s in speed[cfg]],
                "median_items_per_s": round(med, 3),
                "ratio_to_baseline": round(med / float(np.median(speed[base])), 2),
                "cos_to_baseline_min": round(float(cos.min()), 4),
                "cos_to_baseline_mean": round(float(cos.mean()), 4),
            }
        )
    meta = {
        "n_texts": len(texts),
        "rounds": args.rounds,
        "threads": threads,
        "mean_chars": round(float(np.mean([len(t) for t in texts])), 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "command": "benchmarks/encoder.py " + " ".join(argv or sys.argv[1:]),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    Path(args.out + ".md").write_text(render(rows, meta))
    print(render(rows, meta))
    return 0


def render(rows: list[dict], meta: dict) -> str:
    out = [
        "# Text encoder throughput (issue: speed and memory)",
        "",
        f"`{meta['command']}`: {meta['n_texts']} SpamAssassin mails (mean {meta['mean_chars']} "
        f"characters), {meta['rounds']} rounds in alternating order, {meta['threads']} threads, "
        f"{meta['cpus']} CPUs (unless a config says /t), batch 64 (unless /b). Load average "
        f"(1/5/15 min) before {meta['load_before']}, after "
        f"{meta['load_after']}: a shared machine, so compare the ratios, not the absolute rates.",
        "",
        "| config (backend@max_seq_length) | items/s per round | median | x baseline "
        "| items/CPU-s per round | median | x baseline | cos to baseline min / mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['config']} | {', '.join(f'{s:.2f}' for s in r['items_per_s'])} "
            f"| {r['median_items_per_s']:.2f} | {r['ratio_to_baseline']:.2f} "
            f"| {', '.join(f'{s:.2f}' for s in r['items_per_cpu_s'])} "
            f"| {r['median_items_per_cpu_s']:.2f} | {r['cpu_ratio_to_baseline']:.2f} "
            f"| {r['cos_to_baseline_min']:.4f} / {r['cos_to_baseline_mean']:.4f} |"
        )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
