#!/usr/bin/env python
"""Paired AP differences between finished quality.py runs, without re-running them.

``quality.py --baseline`` pairs a run with one baseline while it runs; this pairs any finished
runs (their ``per_trial_AP``: same trials, same seeds) with another baseline afterwards, e.g.
each encoder's run against a PyTorch fp32 run of the same code. Writes one markdown table
per run and flags riskrank rows whose mean difference is outside ``--tolerance``.

    .venv/bin/python benchmarks/paired_quality.py \\
        --baseline benchmarks/results/quality_fp32_ov_n5.json \\
        --runs benchmarks/results/quality_openvino_n5.json \\
               benchmarks/results/quality_openvino_int8w_n5.json \\
        --out benchmarks/results/quality_openvino_paired.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from quality import paired_ap, render_paired


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", required=True, help="a quality.json with per_trial_AP")
    ap.add_argument("--runs", nargs="+", required=True, help="quality.json files to compare")
    ap.add_argument("--tolerance", type=float, default=0.005)
    ap.add_argument("--out", required=True, help="markdown file to write")
    args = ap.parse_args(argv)
    baseline = json.loads(Path(args.baseline).read_text())
    out = ["# Quality: encoders against a baseline run, paired by trial", ""]
    for run in args.runs:
        data = json.loads(Path(run).read_text())
        rows = paired_ap(data["per_trial_AP"], baseline)
        outside = [
            f"{r['dataset']} {r['scenario']} {r['method']} {r['mean_diff']:+.4f}"
            for r in rows
            if r["method"].startswith("riskrank") and abs(r["mean_diff"]) > args.tolerance
        ]
        encoder = data["meta"].get("encoder", {})
        out += [
            f"### `{run}` ({encoder.get('backend', 'torch')}, "
            f"{encoder.get('precision', encoder.get('quantization', ''))}, commit "
            f"{data['meta'].get('library', {}).get('commit', '?')[:7]})",
            render_paired(rows, args.baseline),
            "riskrank rows outside +-" + f"{args.tolerance}: " + ("; ".join(outside) or "none"),
            "",
        ]
    Path(args.out).write_text("\n".join(out))
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
