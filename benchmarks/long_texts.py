"""Long texts through the text encoder: read whole against read in part (``read_in_part``).

A text past ``ENCODE_CHARS`` (65,536 characters) is cut at a space or line break where the
part kept already fills the model's token window, so the model reads the same tokens. This
script encodes ``--texts`` texts of ``--chars`` characters each way, each in its own process
(peak RSS is per process), and compares the vectors. The texts are words drawn from a fixed
list with a fixed seed (a scam mail's vocabulary; any prose behaves alike).

    .venv/bin/python benchmarks/long_texts.py --texts 10 --chars 1000000

Run it with ``RISKRANK_FETCH=1`` where MiniLM is not cached yet.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WORDS = (
    "free prize claim your offer today loan credit approval guaranteed the a of click here "
    "winner account verify payment shipping fee limited time"
).split()


def texts(n: int, chars: int) -> list[str]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        words = rng.choice(WORDS, size=chars // 5)
        out.append(" ".join(words)[:chars])
    return out


def child(mode: str, n: int, chars: int, vectors: Path) -> None:
    """Encode in this process and print seconds and peak RSS as JSON."""
    import riskrank.index.signals.text as text_module
    from riskrank.index.signals.text import TextEncoder

    if mode == "whole":
        text_module.ENCODE_CHARS = 10**12  # never cut: the code before read_in_part
    encoder = TextEncoder()
    encoder.encode(["warm up"])
    data = texts(n, chars)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    vecs = encoder.encode(data)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.save(vectors, vecs)
    print(json.dumps({"mode": mode, "seconds": seconds, "peak_before_mib": before,
                      "peak_after_mib": after, "backend": encoder.backend}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=10)
    ap.add_argument("--chars", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/long_texts"))
    ap.add_argument("--child", choices=("whole", "part"), help=argparse.SUPPRESS)
    ap.add_argument("--vectors", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.texts, args.chars, args.vectors)
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    runs, vecs = {}, {}
    for mode in ("part", "whole"):
        path = args.out.parent / f".long_texts_{mode}.npy"
        cmd = [sys.executable, __file__, "--child", mode, "--texts", str(args.texts),
               "--chars", str(args.chars), "--vectors", str(path)]  # fmt: skip
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        runs[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        vecs[mode] = np.load(path)
        path.unlink()
    diff = float(np.abs(vecs["part"] - vecs["whole"]).max())
    load = os.getloadavg()
    result = {"texts": args.texts, "chars": args.chars, "runs": runs, "max_abs_diff": diff,
              "load": [round(x, 2) for x in load], "machine": platform.platform()}  # fmt: skip
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = [
        "# Long texts through the text encoder: read whole vs read in part",
        "",
        f"`python benchmarks/long_texts.py --texts {args.texts} --chars {args.chars}`; "
        f"{platform.platform()}, {os.cpu_count()} CPUs, load average at the end "
        f"{result['load']}; encoder backend {runs['part']['backend']}. Each way in its own "
        "process; peak RSS is the process's, before and after encoding.",
        "",
        "| way | seconds | peak RSS before / after MiB | added MiB |",
        "|---|---|---|---|",
    ]
    for mode, label in (("whole", "read whole (before)"), ("part", "read in part")):
        r = runs[mode]
        lines.append(
            f"| {label} | {r['seconds']:.2f} | {r['peak_before_mib']:.0f} / "
            f"{r['peak_after_mib']:.0f} | {r['peak_after_mib'] - r['peak_before_mib']:.0f} |"
        )
    lines += ["", f"Largest absolute difference between the two ways' vectors: {diff}."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
