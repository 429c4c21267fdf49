#!/usr/bin/env python
"""Text encoder throughput, side by side in one run: PyTorch fp32 vs ONNX Runtime int8 vs
OpenVINO (bf16 where the CPU has it).

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
    .venv/bin/python benchmarks/encoder.py --n 256 --rounds 3 --configs torch@256 \
        onnx-int8@256 openvino@256 openvino@256/t1 openvino@256/b1 openvino@256/b64 \
        --out benchmarks/results/encoder_openvino   # the OpenVINO backend (needs .[fast])
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

from encoder_variants import VARIANTS, VariantEncoder  # noqa: E402

from riskrank.index.signals.text import (  # noqa: E402
    BACKENDS,
    DEFAULT_BATCH,
    TextEncoder,
    default_threads,
)
from riskrank.rank.app import datasets  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_CONFIGS = ["torch@256", "onnx-int8@256", "onnx-int8@128", "torch@128"]


def parse_config(text: str) -> dict:
    """``"onnx-int8@256/b16/t1"`` -> TextEncoder keyword arguments (threads: None = default)."""
    head, *opts = text.split("/")
    backend, _, length = head.partition("@")
    if backend not in BACKENDS + VARIANTS:
        raise SystemExit(f"--configs {text!r}: backend is one of {BACKENDS + VARIANTS}")
    kwargs = {"backend": backend, "max_seq_length": int(length or 256), "num_threads": None}
    for opt in opts:
        if opt[:1] not in ("b", "t") or not opt[1:].isdigit():
            raise SystemExit(f"--configs {text!r}: options are /b<batch size> and /t<threads>")
        kwargs["batch_size" if opt[0] == "b" else "num_threads"] = int(opt[1:])
    return kwargs


def sample_texts(n: int) -> tuple[list[str], list[str]]:
    """The timed mails, and calibration texts for static quantisation that are not among them:
    48 other mails and 16 Insults comments (short texts have other activation ranges)."""
    texts = datasets.load("spamassassin").column("text").to_pylist()
    rng = np.random.default_rng(0)
    rows = rng.choice(len(texts), size=min(n, len(texts)), replace=False)
    taken = set(rows.tolist())
    others = [i for i in rng.permutation(len(texts)) if i not in taken][:48]
    comments = datasets.load("insults").column("text").to_pylist()[:1600:100]
    return [texts[i] for i in rows], [texts[i] for i in others] + comments


def make_encoder(kwargs: dict, calibration: list[str]):
    if kwargs["backend"] == "openvino-int8":
        # The library's default calibration (the history sides), as the CLI uses: the vectors
        # compared below are those an index built with this backend holds.
        from riskrank.rank.app.encoder_calibration import history_calibration_texts

        return TextEncoder(**kwargs, calibration=history_calibration_texts())
    if kwargs["backend"] in BACKENDS:
        return TextEncoder(**kwargs)
    return VariantEncoder(
        kwargs["backend"],
        max_seq_length=kwargs["max_seq_length"],
        batch_size=kwargs.get("batch_size", 16),
        num_threads=kwargs["num_threads"],
        calibration=calibration,
    )


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


def profile_int8(texts: list[str], max_seq_length: int, batch_size: int) -> dict:
    """Where one thread's time goes in the library's int8 model: tokenizer vs ONNX Runtime
    (process CPU time), and ORT's per-operator kernel time by operator type."""
    import onnxruntime as ort

    from riskrank.index.signals.text import resolve_text_model
    from riskrank.index.signals.text_onnx import SentenceTokenizer, int8_model_path

    model_dir = resolve_text_model("all-MiniLM-L6-v2")[0]
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.enable_profiling = True
    options.profile_file_prefix = str(RESULTS / "_ort_profile")
    session = ort.InferenceSession(str(int8_model_path(model_dir)), options)
    tokenize = SentenceTokenizer(model_dir, max_seq_length=max_seq_length)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    cpu = {"tokenizer_cpu_s": 0.0, "onnxruntime_cpu_s": 0.0}
    for start in range(0, len(texts), batch_size):
        c0 = time.process_time()
        feeds = tokenize([texts[i] for i in order[start : start + batch_size]])
        c1 = time.process_time()
        session.run(None, feeds)
        cpu["tokenizer_cpu_s"] += c1 - c0
        cpu["onnxruntime_cpu_s"] += time.process_time() - c1
    trace = Path(session.end_profiling())
    by_op: dict[str, float] = {}
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"]["op_name"]
            by_op[op] = by_op.get(op, 0.0) + event["dur"]
    trace.unlink()
    total = sum(by_op.values())
    shares = {op: round(us / total, 3) for op, us in sorted(by_op.items(), key=lambda kv: -kv[1])}
    return {
        **{k: round(v, 2) for k, v in cpu.items()},
        "kernel_time_share": shares,
        "max_seq_length": max_seq_length,
        "batch_size": batch_size,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=256, help="mails to encode per configuration")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS)
    ap.add_argument("--threads", type=int, default=None, help="default: CPUs in affinity")
    ap.add_argument("--out", default=str(RESULTS / "encoder"))
    ap.add_argument(
        "--profile",
        action="store_true",
        help="also profile the int8 model on one thread (tokenizer vs operators), batch 16",
    )
    args = ap.parse_args(argv)
    threads = args.threads or default_threads()
    texts, calibration = sample_texts(args.n)
    encoders = {}
    for cfg in args.configs:
        kwargs = parse_config(cfg)
        kwargs["num_threads"] = kwargs["num_threads"] or threads
        enc = make_encoder(kwargs, calibration)
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
                # What each config ran: the effective precision where the backend records one.
                "identity": encoders[cfg].identity() if hasattr(encoders[cfg], "identity") else {},
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
        "default_batch": DEFAULT_BATCH,
        "machine": platform.processor() or platform.machine(),
        "cpu": cpu_isa(),
        "command": "benchmarks/encoder.py " + " ".join(argv or sys.argv[1:]),
    }
    if args.profile:
        meta["profile_int8"] = profile_int8(texts, 256, 16)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    Path(args.out + ".md").write_text(render(rows, meta))
    print(render(rows, meta))
    return 0


ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_isa() -> dict:
    """The CPU's model and the instruction sets int8 and bf16 kernels depend on (Linux). The
    int8 backends' speed is the CPU's: 3.8x PyTorch on an AVX512-BF16/VNNI EPYC, 0.94x on an
    AVX2-only one (benchmarks/results/encoder_avx2.md)."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return {"model": platform.processor() or "unknown", "flags": "unknown"}
    info = dict(ln.split(":", 1) for ln in first.splitlines() if ":" in ln)
    info = {k.strip(): v.strip() for k, v in info.items()}
    flags = set(info.get("flags", "").split())
    return {
        "model": info.get("model name", ""),
        "family": info.get("cpu family", ""),
        "flags": [f for f in ISA_FLAGS if f in flags],
    }


def render(rows: list[dict], meta: dict) -> str:
    out = [
        "# Text encoder throughput (issue: speed and memory)",
        "",
        f"`{meta['command']}`: {meta['n_texts']} SpamAssassin mails (mean {meta['mean_chars']} "
        f"characters), {meta['rounds']} rounds in alternating order, {meta['threads']} threads, "
        f"{meta['cpus']} CPUs (unless a config says /t), batch: library defaults "
        f"{meta['default_batch']}, candidates 16 (unless /b). Load average (1/5/15 min) "
        f"before {meta['load_before']}, after "
        f"{meta['load_after']}: a shared machine, so compare the ratios, not the absolute rates.",
        *(
            [
                f"CPU: {meta['cpu'].get('model')} (family {meta['cpu'].get('family')}), int8/bf16 "
                f"flags present: {meta['cpu'].get('flags')} (int8 speed depends on them)."
            ]
            if meta.get("cpu")
            else []
        ),
        "",
        "| config (backend@max_seq_length) | items/s per round | median | x baseline "
        "| items/CPU-s per round | median | x baseline | cos to baseline min / mean "
        "| precision run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['config']} | {', '.join(f'{s:.2f}' for s in r['items_per_s'])} "
            f"| {r['median_items_per_s']:.2f} | {r['ratio_to_baseline']:.2f} "
            f"| {', '.join(f'{s:.2f}' for s in r['items_per_cpu_s'])} "
            f"| {r['median_items_per_cpu_s']:.2f} | {r['cpu_ratio_to_baseline']:.2f} "
            f"| {r['cos_to_baseline_min']:.4f} / {r['cos_to_baseline_mean']:.4f} "
            f"| {r.get('identity', {}).get('precision', '-')} |"
        )
    prof = meta.get("profile_int8")
    if prof:
        out += [
            "",
            f"Profile of onnx-int8@{prof['max_seq_length']}, one thread, batch "
            f"{prof['batch_size']}: tokenizer {prof['tokenizer_cpu_s']} CPU-s, ONNX Runtime "
            f"{prof['onnxruntime_cpu_s']} CPU-s; share of ORT kernel time by operator: "
            + ", ".join(f"{op} {s:.1%}" for op, s in prof["kernel_time_share"].items()),
        ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
