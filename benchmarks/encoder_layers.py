#!/usr/bin/env python
"""Fewer transformer layers for the 3x encoder goal (issue 15): an experiment, not a backend.

On this AVX2-only CPU the best backend at equal quality is ONNX Runtime's dynamic int8 at about
1.8x PyTorch fp32 (results/encoder_avx2_onnx.md); the goal is 3x. MiniLM-L6's time is its six
transformer layers, so keeping the first ``k`` of them (no retraining) divides the work by
about 6/k, and int8 on top multiplies the two. This script builds such models from the shipped
MiniLM and measures what they cost in ranking quality:

* ``minilm-L<k>``: the first ``k`` layers, mean pooling and normalisation as MiniLM has them.
* ``minilm-L<k>c`` (``--center``): the same, with the mean pooled vector of a fixed corpus
  subtracted before normalising (a sentence-transformers Dense module, weight I, bias -mean).
  Mean-pooled intermediate layers are anisotropic (all vectors close together); centring is
  the usual cheap remedy. The corpus is the history-side calibration texts
  (rank.app.encoder_calibration: 200 SpamAssassin history mails + 100 Insults training
  comments), none of them among the swept items ``quality.py`` judges.

Speed: 128 SpamAssassin mails, ``encoder.py``'s sample, rounds in alternating order, items per
second and per CPU-second against ``torch`` on the full model. Quality: ``quality.py --quick``
(n=5, 2 trials, warm and cold, both sets) per model, in a subprocess each; riskrank's and max
cosine's AP are reported against the full model's run in the same invocation.

    .venv/bin/python benchmarks/encoder_layers.py --layers 3 --center [--skip-quality]

Models go to benchmarks/.cache/encoder_layers/ (never committed); writes
benchmarks/results/encoder_layers.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"
MODELS = HERE / ".cache" / "encoder_layers"
TITLE = "Fewer MiniLM layers for the 3x encoder goal (issue 15, an experiment not adopted)"


def keep_layers(st, keep: list[int]) -> None:
    """Cut a loaded SentenceTransformer's transformer to its layers ``keep`` (in place)."""
    import torch

    auto = st[0].auto_model
    auto.encoder.layer = torch.nn.ModuleList([auto.encoder.layer[i] for i in keep])
    auto.config.num_hidden_layers = len(keep)


def make_models(layers: list[int], center: bool) -> dict[str, str]:
    """Name -> directory of each variant (built once)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    from riskrank.index.signals.text import resolve_text_model
    from riskrank.rank.app.encoder_calibration import history_calibration_texts

    full, _ = resolve_text_model("all-MiniLM-L6-v2")
    out = {}
    for k in layers:
        plain = MODELS / f"minilm-L{k}"
        if not (plain / "modules.json").exists():
            st = SentenceTransformer(full, device="cpu")
            keep_layers(st, list(range(k)))
            st.save(str(plain))
        out[f"L{k}"] = str(plain)
        if not center:
            continue
        centred = MODELS / f"minilm-L{k}c"
        if not (centred / "modules.json").exists():
            st = SentenceTransformer(str(plain), device="cpu")
            pooled = SentenceTransformer(modules=[st[0], st[1]], device="cpu")
            texts = list(history_calibration_texts().texts)
            mean = pooled.encode(texts, batch_size=16, convert_to_numpy=True).mean(0)
            dim = int(mean.shape[0])
            dense = Dense(dim, dim, bias=True, activation_function=torch.nn.Identity())
            with torch.no_grad():
                dense.linear.weight.copy_(torch.eye(dim))
                dense.linear.bias.copy_(torch.from_numpy(-mean))
            SentenceTransformer(modules=[st[0], st[1], dense, Normalize()], device="cpu").save(
                str(centred)
            )
        out[f"L{k}c"] = str(centred)
    return out


def anisotropy(models: dict[str, str]) -> dict[str, float]:
    """Mean pairwise cosine of 256 history-side texts under each model (full one included)."""
    from riskrank.index.signals import TextEncoder
    from riskrank.rank.app.encoder_calibration import history_calibration_texts

    texts = list(history_calibration_texts().texts)[:256]
    out = {}
    for name, path in {"L6": None, **models}.items():
        v = (TextEncoder(path) if path else TextEncoder()).encode(texts)
        out[name] = round(float((v @ v.T).mean()), 4)
    return out


def speed(models: dict[str, str], rounds: int) -> dict:
    from encoder import sample_texts, timed_rounds

    from riskrank.index.signals import TextEncoder

    texts, _ = sample_texts(128)
    encoders = {"torch L6": TextEncoder(), "onnx-int8 L6": TextEncoder(backend="onnx-int8")}
    for name, path in models.items():
        encoders[f"torch {name}"] = TextEncoder(path)
        if not name.endswith("c"):  # the int8 path pools itself: no Dense module after it
            encoders[f"onnx-int8 {name}"] = TextEncoder(path, backend="onnx-int8")
    for enc in encoders.values():
        enc.encode(texts[:2])  # load and export outside the timing
    per_s, per_cpu, _ = timed_rounds(encoders, texts, rounds)
    base_s, base_cpu = np.median(per_s["torch L6"]), np.median(per_cpu["torch L6"])
    return {
        name: {
            "items_per_s": [round(x, 2) for x in per_s[name]],
            "x_wall": round(float(np.median(per_s[name]) / base_s), 2),
            "x_cpu": round(float(np.median(per_cpu[name]) / base_cpu), 2),
        }
        for name in encoders
    }


def quality(models: dict[str, str], backend_of: dict[str, str], out: Path) -> dict:
    """``quality.py --quick`` per model; AP of riskrank and max cosine per set and scenario."""
    res = {}
    for name, path in {"L6": None, **models}.items():
        backend = backend_of.get(name, "torch")
        cmd = [sys.executable, str(HERE / "quality.py"), "--quick", "--out", str(out / name)]
        cmd += ["--text-backend", backend] + (["--text-model", path] if path else [])
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        q = json.loads((out / f"{name}.json").read_text())["results"]
        res[name] = {
            "backend": backend,
            "AP": {
                f"{ds}/{sc}": {
                    m: round(q[ds][sc][m]["5"]["AP"][0], 3) for m in ("riskrank", "maxcos")
                }
                for ds in q
                for sc in q[ds]
            },
        }
    return res


def markdown(res: dict) -> str:
    lines = [
        "# " + res.get("title", TITLE),
        "",
        f"`{res['command']}` at {res['library']['commit'][:7]}"
        f"{' (library files changed since)' if res['library'].get('library_uncommitted') else ''}"
        f"; {res['machine']}; load average before "
        f"{res['load'][0]}, after {res['load'][1]}. How the models are made: the script's "
        "docstring.",
        "",
        "Mean pairwise cosine of 256 history-side texts (anisotropy; MiniLM-L6 as shipped "
        "first): " + ", ".join(f"{k} {v}" for k, v in res["anisotropy"].items()) + ".",
        "",
        "| encoder | items/s per round | x torch L6 (wall) | x torch L6 (CPU) |",
        "|---|---|---|---|",
    ]
    for name, s in res["speed"].items():
        lines.append(
            f"| {name} | {', '.join(map(str, s['items_per_s']))} | {s['x_wall']} | {s['x_cpu']} |"
        )
    if res.get("quality"):
        keys = list(next(iter(res["quality"].values()))["AP"])
        lines += [
            "",
            "AP, `quality.py --quick` (n=5, mean of 2 trials): riskrank / max cosine to the seeds.",
            "",
            "| model (backend) | " + " | ".join(keys) + " |",
            "|---|" + "---|" * len(keys),
        ]
        for name, q in res["quality"].items():
            cells = [f"{q['AP'][k]['riskrank']} / {q['AP'][k]['maxcos']}" for k in keys]
            lines.append(f"| {name} ({q['backend']}) | " + " | ".join(cells) + " |")
    lines += ["", *res.get("notes", [])]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, nargs="+", default=[3])
    p.add_argument("--center", action="store_true", help="also the centred variants")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also time (and judge) a model of your own, e.g. encoder_distil.py's student",
    )
    p.add_argument("--out", default="encoder_layers", help="results/<out>.{md,json}")
    p.add_argument("--work", default="/tmp/encoder_layers", help="quality.py's outputs")
    p.add_argument("--note", action="append", default=[], help="a line printed under the tables")
    p.add_argument(
        "--rebuild", action="store_true", help="the tables again from the JSON, notes added"
    )
    args = p.parse_args()
    if args.rebuild:
        res = json.loads((RESULTS / f"{args.out}.json").read_text())
        res["notes"] = res.get("notes", []) + args.note
        (RESULTS / f"{args.out}.json").write_text(json.dumps(res, indent=2))
        (RESULTS / f"{args.out}.md").write_text(markdown(res))
        return
    from encoder import cpu_isa
    from quality import library_state

    load_before = tuple(round(x, 2) for x in os.getloadavg())
    t0 = time.time()
    models = make_models(args.layers, args.center)
    models.update(dict(m.split("=", 1) for m in args.model))
    cpu = cpu_isa()
    res = {
        "title": TITLE
        + (
            " and models of your own: " + ", ".join(m.split("=")[0] for m in args.model)
            if args.model
            else ""
        ),
        "command": "benchmarks/encoder_layers.py " + " ".join(sys.argv[1:]),
        "library": library_state(),
        "machine": f"{os.cpu_count()} CPUs, {cpu['model']}, int8/bf16 flags {cpu['flags']}",
        "anisotropy": anisotropy(models),
        "speed": speed(models, args.rounds),
    }
    if not args.skip_quality:
        # The int8 run stands for the plain truncation (the 3x candidate); the centred models
        # run on PyTorch (ONNX export pools without the Dense module).
        backend_of = {n: "onnx-int8" for n in models if not n.endswith("c")}
        Path(args.work).mkdir(parents=True, exist_ok=True)
        res["quality"] = quality(models, backend_of, Path(args.work))
    res["notes"] = args.note
    res["load"] = [load_before, tuple(round(x, 2) for x in os.getloadavg())]
    res["seconds"] = round(time.time() - t0, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(res, indent=2))
    text = markdown(res)
    (RESULTS / f"{args.out}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
