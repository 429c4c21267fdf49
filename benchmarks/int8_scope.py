#!/usr/bin/env python
"""Which MatMuls the full-int8 text encoder keeps float: speed against closeness to f32.

``backend="openvino-int8"`` (index/signals/text_openvino.py) quantises MiniLM's MatMuls to int8
with NNCF, calibrated on the history-side corpus (rank/app/encoder_calibration.py), and keeps
the FFN down-projections of layers 0 and 1 float (``INT8_KEEP_FLOAT``). This quantises the same
f32 IR with other choices (all 36 int8; keep layer 0's; layers 0-2's; all six) and runs each
through the library's ``OpenVinoSentenceModel`` (tokeniser, padded batches of 16, pooling),
beside the bf16 backend; the library's choice also with f32 for its float operations. Timed on
SpamAssassin's newer mails (the swept side, never calibrated on), rounds in alternating order,
items/s and items/CPU-s; cosine to the f32 IR on those mails and on Insults test comments
(short texts, other activation ranges).

    .venv/bin/python benchmarks/int8_scope.py --mails 128 --comments 256 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from riskrank.index.signals.text import resolve_text_model
from riskrank.index.signals.text_openvino import (
    INT8_KEEP_FLOAT,
    OpenVinoSentenceModel,
    import_openvino,
    openvino_ir_path,
    quantize,
)
from riskrank.rank.app import datasets
from riskrank.rank.app.encoder_calibration import history_calibration_texts

RESULTS = Path(__file__).resolve().parent / "results"
DOWN = r".*/layer\.{}/output/dense/MatMul"
SCOPES = {
    "int8, all 36 MatMuls": (),
    "int8, keep FFN-down of layer 0": (DOWN.format(0),),
    "int8, keep FFN-down of layers 0-1 (library)": INT8_KEEP_FLOAT,
    "int8, keep FFN-down of layers 0-2": tuple(DOWN.format(i) for i in range(3)),
    "int8, keep FFN-down of all 6 layers": tuple(DOWN.format(i) for i in range(6)),
}


def swept_texts(n_mails: int, n_comments: int) -> dict[str, list[str]]:
    """Seeded samples of the swept sides: SpamAssassin era "new", Insults "test"."""
    rng = np.random.default_rng(0)
    spam = datasets.load("spamassassin")
    mails = spam.filter(pc.equal(spam["era"], "new")).column("text").to_pylist()
    insults = datasets.load("insults")
    comments = insults.filter(pc.equal(insults["split"], "test")).column("text").to_pylist()
    return {
        "mails": [mails[i] for i in rng.choice(len(mails), n_mails, replace=False)],
        "comments": [comments[i] for i in rng.choice(len(comments), n_comments, replace=False)],
    }


def build_models(model_dir: Path, scratch: Path, threads: int) -> tuple[dict, object]:
    """name -> OpenVinoSentenceModel (bf16 backend, each int8 scope, the library's scope with
    f32 float operations), and the f32 reference."""
    ov = import_openvino()
    f32 = openvino_ir_path(model_dir)
    calibration = history_calibration_texts()
    common = {"max_seq_length": 256, "num_threads": threads}
    models = {"openvino (bf16, no int8)": OpenVinoSentenceModel(model_dir, **common)}
    for i, (name, keep) in enumerate(SCOPES.items()):
        model = quantize(ov.Core().read_model(f32), model_dir, calibration, 256, keep)
        ov.save_model(model, scratch / f"{i}.xml", compress_to_fp16=False)
        models[name] = OpenVinoSentenceModel(model_dir, ir=scratch / f"{i}.xml", **common)
        if keep == INT8_KEEP_FLOAT:
            models[name + ", float ops f32"] = OpenVinoSentenceModel(
                model_dir, ir=scratch / f"{i}.xml", precision="f32", **common
            )
    reference = OpenVinoSentenceModel(model_dir, precision="f32", **common)
    return models, reference


def measure(models: dict, reference, texts: dict, rounds: int) -> list[dict]:
    refs = {k: reference.encode(v, 16, False) for k, v in texts.items()}
    names = list(models)
    speed = {n: [] for n in names}
    per_cpu = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            models[name].encode(texts["mails"], 16, False)
            speed[name].append(len(texts["mails"]) / (time.perf_counter() - t0))
            per_cpu[name].append(len(texts["mails"]) / (time.process_time() - c0))
            print(f"  round {r}: {name:45s} {per_cpu[name][-1]:7.2f} items/CPU-s", flush=True)
    base = float(np.median(per_cpu[names[0]]))
    rows = []
    for name in names:
        row = {
            "config": name,
            "precision": models[name].precision,
            "items_per_s": [round(s, 2) for s in speed[name]],
            "items_per_cpu_s": [round(s, 2) for s in per_cpu[name]],
            "median_items_per_cpu_s": round(float(np.median(per_cpu[name])), 2),
            "cpu_ratio_to_bf16": round(float(np.median(per_cpu[name])) / base, 2),
        }
        for kind, ref in refs.items():
            cos = (models[name].encode(texts[kind], 16, False) * ref).sum(axis=1)
            row[f"cos_{kind}_min"] = round(float(cos.min()), 4)
            row[f"cos_{kind}_mean"] = round(float(cos.mean()), 5)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mails", type=int, default=128)
    ap.add_argument("--comments", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "int8_scope"))
    args = ap.parse_args(argv)
    model_dir = Path(resolve_text_model("all-MiniLM-L6-v2")[0])
    texts = swept_texts(args.mails, args.comments)
    with tempfile.TemporaryDirectory() as scratch:
        models, reference = build_models(model_dir, Path(scratch), args.threads)
        load_before = os.getloadavg()
        rows = measure(models, reference, texts, args.rounds)
        load_after = os.getloadavg()
    meta = {
        "command": "benchmarks/int8_scope.py " + " ".join(argv or sys.argv[1:]),
        "mails": args.mails,
        "comments": args.comments,
        "rounds": args.rounds,
        "threads": args.threads,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "machine": platform.processor() or platform.machine(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    Path(args.out + ".md").write_text(render(rows, meta))
    print(render(rows, meta))
    return 0


def render(rows: list[dict], meta: dict) -> str:
    out = [
        "# Full-int8 text encoder: which MatMuls stay float",
        "",
        f"`{meta['command']}`: {meta['mails']} SpamAssassin mails (era new) timed, "
        f"{meta['rounds']} rounds in alternating order, {meta['threads']} threads; cosine to "
        f"the f32 IR on those mails and on {meta['comments']} Insults test comments. Load "
        f"average before {meta['load_before']}, after {meta['load_after']} (shared machine: "
        "compare items/CPU-s).",
        "",
        "| config | float ops | items/CPU-s per round | median | x bf16 | cos mails min / mean "
        "| cos comments min / mean |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['config']} | {r['precision']} "
            f"| {', '.join(f'{s:.2f}' for s in r['items_per_cpu_s'])} "
            f"| {r['median_items_per_cpu_s']:.2f} | {r['cpu_ratio_to_bf16']:.2f} "
            f"| {r['cos_mails_min']:.4f} / {r['cos_mails_mean']:.5f} "
            f"| {r['cos_comments_min']:.4f} / {r['cos_comments_mean']:.5f} |"
        )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
