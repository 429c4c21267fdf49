#!/usr/bin/env python
"""OpenVINO compile settings for the text encoder, side by side in one run.

The library compiles its OpenVINO IR (index/signals/text_openvino.py) with
``PERFORMANCE_HINT=LATENCY``, one stream and ``INFERENCE_NUM_THREADS`` = the CPUs it may use.
This times the same IR and the same padded batches (``text.padded_batches``, batch 16) under
other settings, one synchronous request at a time as the library runs it: the hint
(THROUGHPUT lets OpenVINO split the CPUs into streams, which one request at a time cannot
fill), threads 1 vs 2, and bf16 vs f32. Rounds alternate order; items/s and items/CPU-s.

    .venv/bin/python benchmarks/openvino_settings.py --n 128 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from riskrank.index.signals.text import padded_batches, resolve_text_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encoder import sample_texts  # noqa: E402

SETTINGS = {
    "LATENCY/t2/bf16 (library)": {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 2},
    "LATENCY/t1/bf16": {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1},
    "THROUGHPUT/bf16 (streams: OpenVINO's choice)": {"PERFORMANCE_HINT": "THROUGHPUT"},
    "LATENCY/t2/f32": {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": 2,
        "INFERENCE_PRECISION_HINT": "f32",
    },
}


def feeds_for(texts: list[str], model_dir: str) -> list[dict]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok(texts, truncation=True, max_length=256)["input_ids"]
    out = []
    for width, rows in padded_batches(np.array([len(x) for x in ids]), 16):
        f = {k: np.zeros((len(rows), width), np.int64) for k in ("input_ids", "attention_mask")}
        for j, i in enumerate(rows):
            f["input_ids"][j, : len(ids[i])] = ids[i]
            f["attention_mask"][j, : len(ids[i])] = 1
        f["token_type_ids"] = np.zeros_like(f["input_ids"])
        out.append(f)
    return out


def render(rows: dict, meta: dict, command: str) -> str:
    out = [
        "# OpenVINO compile settings for the text encoder",
        "",
        f"`benchmarks/openvino_settings.py {command}`: {meta['n_texts']} SpamAssassin mails, "
        f"model only (tokenised beforehand), batches of 16 texts of one padded width, "
        f"{meta['rounds']} rounds in alternating order, OpenVINO {meta['openvino']}. "
        f"Load average before {meta['load_before']}, after {meta['load_after']}.",
        "",
        "| setting | items/s per round | median | items/CPU-s per round | median |",
        "|---|---|---|---|---|",
    ]
    for n, r in rows.items():
        out.append(
            f"| {n} | {', '.join(map(str, r['items_per_s']))} | {r['median_items_per_s']} "
            f"| {', '.join(map(str, r['items_per_cpu_s']))} | {r['median_items_per_cpu_s']} |"
        )
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    import openvino as ov

    from riskrank.index.signals.text_openvino import openvino_ir_path

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None, help="write <out>.json")
    args = ap.parse_args(argv)
    model_dir = resolve_text_model("all-MiniLM-L6-v2")[0]
    texts, _ = sample_texts(args.n)
    batches = feeds_for(texts, model_dir)
    core = ov.Core()
    requests = {}
    for name, cfg in SETTINGS.items():
        base = {"ENABLE_CPU_PINNING": False, "INFERENCE_PRECISION_HINT": "bf16"}
        if cfg["PERFORMANCE_HINT"] == "LATENCY":
            base["NUM_STREAMS"] = 1
        compiled = core.compile_model(
            core.read_model(openvino_ir_path(model_dir)), "CPU", {**base, **cfg}
        )
        requests[name] = compiled.create_infer_request()
        requests[name].infer(batches[0])
        print(name, "streams", compiled.get_property("NUM_STREAMS"), flush=True)
    load_before = os.getloadavg()
    wall = {n: [] for n in SETTINGS}
    cpu = {n: [] for n in SETTINGS}
    names = list(SETTINGS)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            for f in batches:
                requests[name].infer(f)
            wall[name].append(len(texts) / (time.perf_counter() - t0))
            cpu[name].append(len(texts) / (time.process_time() - c0))
    rows = {
        n: {
            "items_per_s": [round(x, 2) for x in wall[n]],
            "items_per_cpu_s": [round(x, 2) for x in cpu[n]],
            "median_items_per_s": round(float(np.median(wall[n])), 2),
            "median_items_per_cpu_s": round(float(np.median(cpu[n])), 2),
        }
        for n in names
    }
    meta = {
        "n_texts": len(texts),
        "rounds": args.rounds,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "openvino": ov.__version__,
    }
    text = render(rows, meta, " ".join(argv or sys.argv[1:]))
    print(text)
    if args.out:
        Path(args.out + ".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
        Path(args.out + ".md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
