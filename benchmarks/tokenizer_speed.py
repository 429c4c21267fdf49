#!/usr/bin/env python
"""Tokenising on the CPU: transformers' wrapper against riskrank's ``FastTokenizer``
(``index/signals/text_tokens.py``), uncut and cut, and what that does to the encoder.

    .venv/bin/python benchmarks/tokenizer_speed.py   # -> benchmarks/results/tokenizer_speed.md

Texts: every SpamAssassin mail (the data set loader caps a mail at 5,000 characters), and
``--pages`` longer texts made by joining 20 consecutive mails with newlines (~28,000
characters: a landing page or a long listing). Each tokenizer runs once to warm up, then the
fastest of ``--repeat`` runs counts; all in one process, on the shipped MiniLM's tokenizer, with
the Rust tokenizer's default threads (all CPUs). Every tokenizer's features are compared with
the wrapper's. Then ``encode_padded`` (PyTorch fp32, batch 64) on ``--encode-texts`` mails with
either tokenizer, alternating, ``--rounds`` rounds: the whole encoder's texts/s and whether the
vectors are bitwise the same.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def best(fn, repeat: int) -> tuple[float, object]:
    out = fn()  # warm-up
    seconds = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        seconds = min(seconds, time.perf_counter() - t)
    return seconds, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pages", type=int, default=200)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--encode-texts", type=int, default=400)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / "tokenizer_speed.md"))
    args = p.parse_args(argv)

    from riskrank.index.signals.text import TextEncoder, encode_padded
    from riskrank.index.signals.text_tokens import FastTokenizer, same_features
    from riskrank.rank.app import datasets

    load_before = os.getloadavg()
    mails = datasets.load("spamassassin").column("text").to_pylist()
    pages = ["\n".join(mails[i : i + 20]) for i in range(0, 20 * args.pages, 20)]
    enc = TextEncoder()
    enc.encode(mails[:8])
    st = enc._load()
    tokenizers = {
        "transformers' wrapper (before)": st.preprocess,
        "Rust tokenizer, uncut": FastTokenizer.for_model(st, cut=False),
        "Rust tokenizer, cut (riskrank's default)": FastTokenizer.for_model(st),
    }
    rows = []
    for label, texts in (("SpamAssassin mails", mails), ("pages of 20 mails", pages)):
        chars = np.mean([len(t) for t in texts])
        want = None
        for name, tok in tokenizers.items():
            seconds, got = best(lambda t=tok, x=texts: t(x), args.repeat)
            same = "(reference)" if want is None else str(same_features(got, want))
            want = got if want is None else want
            rows.append((label, len(texts), chars, name, len(texts) / seconds, same))
            print(rows[-1], flush=True)

    sample = [mails[i] for i in np.random.default_rng(0).permutation(len(mails))]
    sample = sample[: args.encode_texts]
    rates: dict[str, list[float]] = {"wrapper": [], "fast": []}
    bitwise = True
    for _ in range(args.rounds):
        ref = None
        for name, fast in (("wrapper", False), ("fast", True)):
            t = time.perf_counter()
            v = encode_padded(st, sample, 64, False, fast_tokenizer=fast)
            rates[name].append(len(sample) / (time.perf_counter() - t))
            bitwise &= ref is None or bool(np.array_equal(v, ref))
            ref = v if ref is None else ref
        print(rates, flush=True)

    lines = [
        "# Tokenising on the CPU: the wrapper vs the Rust tokenizer (issue 15)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs. Load "
        f"average before/after: {load_before} / {os.getloadavg()}. Command: "
        "`.venv/bin/python benchmarks/tokenizer_speed.py` (see its docstring).",
        "",
        "| texts | n | characters (mean) | tokenizer | texts/s | same features |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {label} | {n:,} | {chars:,.0f} | {name} | {rate:,.0f} | {same} |"
        for label, n, chars, name, rate, same in rows
    ]
    lines += [
        "",
        f"The whole encoder (PyTorch fp32, batch 64, {len(sample)} mails, {args.rounds} "
        "alternating rounds, texts/s per round):",
        "",
        "| tokenizer | texts/s per round | mean |",
        "|---|---|---|",
    ]
    for name, r in rates.items():
        lines.append(f"| {name} | {', '.join(f'{x:.1f}' for x in r)} | {np.mean(r):.1f} |")
    ratio = np.mean(rates["fast"]) / np.mean(rates["wrapper"])
    lines += ["", f"Ratio of the means: {ratio:.2f}x; vectors bitwise the same: {bitwise}.", ""]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
