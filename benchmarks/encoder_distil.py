#!/usr/bin/env python
"""A 3-layer MiniLM student distilled from the shipped MiniLM-L6 (issue 15, an experiment).

``encoder_layers.py`` showed that MiniLM cut to 3 layers runs 2.7-3.3x PyTorch fp32 with ONNX
int8 but loses cold-start quality: its vectors are no similarity space. This trains the cut
model to give the full model's vectors back: the student keeps teacher layers ``--keep``
(default 0, 2, 5), and is trained with the mean squared distance between its unit vectors and
the teacher's (AdamW, lr 1e-4, 100 warm-up steps then linear decay, batch 16, texts sorted by
length within shuffled chunks of 800, seed 0, ``max_seq_length`` 256). ``--relational W`` adds
W times the mean squared difference between the batch's pairwise cosines and the teacher's:
cold start compares the student's vectors with the student's, not with the teacher's.

Training texts: the HISTORY sides of ``quality.py``'s two sets (3,250 SpamAssassin mails of the
old era, 3,947 Insults training comments; labels unused), never the swept items it judges.
The teacher's vectors are those ``quality.py`` cached for those sides (benchmarks/.cache/<set>/
history: run ``quality.py`` once first). In-domain texts are the benchmark's advantage: a model
shipped to users would be distilled on texts of their kind, which this does not measure.

    .venv/bin/python benchmarks/encoder_distil.py --out benchmarks/.cache/encoder_layers/minilm-L3d
    .venv/bin/python benchmarks/quality.py --quick --text-model <out> [--text-backend onnx-int8]

Then ``encoder_layers.py --model L3d=<out>`` times it beside the full and the cut model; a
library user loads it as ``TextEncoder(<out>, backend="onnx-int8")``.
Results: benchmarks/results/encoder_distil.md (written by hand from those runs).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

CACHE = Path(__file__).resolve().parent / ".cache"


def history_texts_and_targets() -> tuple[list[str], np.ndarray]:
    """The history sides' texts and the teacher's unit vectors of them, in index order."""
    texts, targets = [], []
    for name in ("spamassassin", "insults"):
        root = CACHE / name / "history"
        if not (root / "text" / "vectors.npy").exists():
            raise SystemExit(f"{root}: no cached index; run benchmarks/quality.py once first")
        items = pq.read_table(root / "items.parquet").to_pydict()
        text_of = dict(zip(items["item_id"], items["text"]))
        ids = pq.read_table(root / "text" / "ids.parquet").column(0).to_pylist()
        texts += [text_of[i] for i in ids]
        targets.append(np.load(root / "text" / "vectors.npy"))
    return texts, np.concatenate(targets)


def length_batches(lengths: np.ndarray, batch: int, rng: np.random.Generator) -> list:
    """Shuffled batches of similar lengths (less padding): sorted within chunks of 50."""
    perm = rng.permutation(len(lengths))
    out = []
    for start in range(0, len(perm), batch * 50):
        chunk = perm[start : start + batch * 50]
        chunk = chunk[np.argsort(lengths[chunk])]
        out += [chunk[i : i + batch] for i in range(0, len(chunk), batch)]
    rng.shuffle(out)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", default="0,2,5", help="teacher layers the student keeps")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--relational",
        type=float,
        default=0.0,
        help="weight of a second loss on the batch's pairwise cosines (student vs teacher);"
        " 0 (the default) trains on the vectors alone",
    )
    p.add_argument("--out", required=True, help="directory the student is saved to")
    args = p.parse_args()

    import torch
    from encoder_layers import keep_layers  # benchmarks/: this script's directory
    from sentence_transformers import SentenceTransformer

    from riskrank.index.signals.text import resolve_text_model

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    keep = [int(x) for x in args.keep.split(",")]
    texts, targets = history_texts_and_targets()
    y = torch.from_numpy(targets).float()
    print(f"{len(texts)} texts, teacher vectors {tuple(y.shape)}", flush=True)

    st = SentenceTransformer(resolve_text_model("all-MiniLM-L6-v2")[0], device="cpu")
    st.max_seq_length = 256
    keep_layers(st, keep)

    batch = 16
    steps = args.epochs * ((len(texts) + batch - 1) // batch)
    opt = torch.optim.AdamW(st.parameters(), lr=1e-4, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * max(0.0, 1 - s / steps)
    )
    lengths = np.array([len(t) for t in texts])
    rng = np.random.default_rng(0)
    st.train()
    t0 = time.time()
    for epoch in range(args.epochs):
        batches = length_batches(lengths, batch, rng)
        total = mse_total = 0.0
        for b, rows in enumerate(batches):
            out = st(st.tokenize([texts[i] for i in rows]))["sentence_embedding"]
            # mean squared distance per text between unit vectors (= 2 - 2 cosine)
            loss = torch.nn.functional.mse_loss(out, y[rows]) * y.shape[1]
            mse_total += loss.item()
            if args.relational and len(rows) > 1:
                # cold start ranks items by their cosine to the seeds, both sides the
                # student's: match the batch's pairwise cosines to the teacher's too
                off = ~torch.eye(len(rows), dtype=torch.bool)
                rel = (out @ out.T - y[rows] @ y[rows].T)[off]
                loss = loss + args.relational * rel.pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
            if b % 50 == 0:
                print(f"epoch {epoch} batch {b}/{len(batches)} loss {total / (b + 1):.4f}")
        mean, mse = total / len(batches), mse_total / len(batches)
        # The cosine from the vectors' term alone (with --relational the loss holds both).
        print(
            f"epoch {epoch}: mean loss {mean:.4f} (mean cosine to the teacher {1 - mse / 2:.4f}),"
            f" {time.time() - t0:.0f} s",
            flush=True,
        )
    st.eval()
    st.save(args.out)
    (Path(args.out) / "distil.json").write_text(json.dumps(vars(args), indent=1))
    print("saved", args.out)


if __name__ == "__main__":
    main()
