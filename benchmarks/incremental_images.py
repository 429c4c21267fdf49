#!/usr/bin/env python
"""Daily updates of a standing index of ads with pictures: what each signal embeds (issue 12).

Data (real): Insults comments as the ads' texts (the product's data set loader), and as
creatives the Fashion-MNIST test images (112 px PNG) and the opencv-doc sample photos, both
fetched from Debian by benchmarks/images.py into ``--cache``. One creative serves two ads on
average (campaigns reuse their pictures). Signals: MiniLM text (the default encoder, PyTorch
fp32) and PDQ.

* **day 0**: ``--ads`` ads, each creative a file under ``exports/2026-12-04/<ad>.png``
  (``image_path``).
* **day 1**: the export writes to a new dated folder under new file names
  (``exports/2026-12-05/creative-<n>.png``); 5% new ads (new text, new creative), 3% of the
  ads get a new creative (text unchanged), 2% an edited text (creative unchanged), 1% are
  taken down.
* **day 2**: day 1's ads again, the creatives shipped as ``image_bytes`` in the table.

Each day: the standing index's update (``StandingIndex.update``) and a from-scratch build of
the same day (``build_index`` into a fresh directory), one after the other in this process,
with the encoders loaded once beforehand (so neither pays the imports). The update's version
is checked against the build: the same ids in the same positions and the same vectors, per
signal. Also reported, **computed from the keys, not run**: what the update embedded before
this change, which planned on the tuple of all signals' keys (a row with any new content was
embedded by every signal) and whose image keys digested the file's path too
(``signal_content_keys(legacy=True)``).

    .venv/bin/python benchmarks/incremental_images.py [--ads 3000]

Writes benchmarks/results/incremental_images.{md,json} (then run benchmarks/make_results.py).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

from images import fashion_mnist, opencv_photos  # noqa: E402

from riskrank.index.build import build_index  # noqa: E402
from riskrank.index.signals.pdq import PdqSignal  # noqa: E402
from riskrank.index.signals.text import TextEmbeddingSignal  # noqa: E402
from riskrank.index.standing import NOTHING, StandingIndex, signal_content_keys  # noqa: E402


def png(data: bytes) -> bytes:
    """Every creative as a PNG (the opencv photos come as JPEG and PNG)."""
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def make_days(root: Path, ads: int, cache: Path, seed: int = 0) -> dict:
    """The three days' tables (day 0 and 1 by path under ``root/exports``, day 2 by bytes)."""
    from riskrank.rank.app.datasets import load

    rng = np.random.default_rng(seed)
    insults = load("insults")
    n_new, n_swap, n_edit, n_del = (max(1, int(f * ads)) for f in (0.05, 0.03, 0.02, 0.01))
    pictures = [png(b) for b in opencv_photos(cache).values()]
    need = ads // 2 + n_new + n_swap
    pictures += list(fashion_mnist(cache, max(0, need - len(pictures))).values())
    pictures = [pictures[i] for i in rng.permutation(len(pictures))]
    texts = insults["text"].to_pylist()
    order = rng.permutation(len(texts))
    total = ads + n_new
    ad_texts = [texts[i] for i in order[:total]]
    ad_ids = [f"ad{i:06d}" for i in range(total)]
    first = ads // 2  # creatives of day 0; the rest are day 1's new and swapped-in ones
    creative = [int(c) for c in rng.integers(0, first, ads)]  # about two ads per creative
    creative += list(range(first, first + n_new))
    swap = set(rng.choice(ads, n_swap, replace=False).tolist())
    rest = [r for r in range(ads) if r not in swap]
    edit = set(rng.choice(rest, n_edit, replace=False).tolist())
    rest = [r for r in rest if r not in edit]
    gone = set(rng.choice(rest, n_del, replace=False).tolist())

    def export(day: str, rows: list[int], which: list[int], by_name) -> pa.Table:
        folder = root / "exports" / day
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for r in rows:
            name = by_name(r, which[r])
            if not (folder / name).exists():
                (folder / name).write_bytes(pictures[which[r]])
            paths.append(f"{day}/{name}")
        return pa.table(
            {
                "item_id": [ad_ids[r] for r in rows],
                "text": [day_texts[r] for r in rows],
                "image_path": paths,
            }
        )

    day_texts = list(ad_texts)
    day0 = export("2026-12-04", list(range(ads)), creative, lambda r, c: f"{ad_ids[r]}.png")
    swapped = [first + n_new + k for k in range(n_swap)]
    creative1 = list(creative)
    for r, c in zip(sorted(swap), swapped):
        creative1[r] = c
    day_texts = [t + " (edited)" if r in edit else t for r, t in enumerate(ad_texts)]
    rows1 = [r for r in range(total) if r not in gone]
    day1 = export("2026-12-05", rows1, creative1, lambda r, c: f"creative-{c:05d}.png")
    day2 = pa.table(
        {
            "item_id": day1["item_id"],
            "text": day1["text"],
            "image_bytes": pa.array([pictures[creative1[r]] for r in rows1], pa.binary()),
        }
    )
    counts = {
        "ads": ads,
        "creatives_day0": len(set(creative[:ads])),
        "new": n_new,
        "creatives_swapped": n_swap,
        "texts_edited": n_edit,
        "taken_down": n_del,
        "day1_ads": len(rows1),
        "opencv_photos": len(opencv_photos(cache)),
    }
    return {"day0": day0, "day1": day1, "day2": day2, "counts": counts}


def before_change(table: pa.Table, signals, known: dict[str, set]) -> tuple[int, dict]:
    """What the update before this change would embed, per signal: one row per distinct tuple
    of all signals' keys (path-digesting image keys) that has a key unknown yesterday, embedded
    by every signal. Returns that count and today's keys in that format."""
    keys = {s.name: signal_content_keys(table, s, legacy=True) for s in signals}
    tuples = set()
    for r in range(table.num_rows):
        row = tuple(keys[s.name][r] for s in signals)
        new = any(
            k not in known.get(s.name, ()) and not k.endswith(NOTHING) for k, s in zip(row, signals)
        )
        if new:
            tuples.add(row)
    return len(tuples), {n: set(k) for n, k in keys.items()}


def same_index(a, b) -> dict:
    """Per signal: the same ids in the same positions and the same vectors."""
    out = {}
    for name, w in b.signals.items():
        g = a.signals[name]
        ids = list(g.ids) == list(w.ids)
        vec = ids and np.array_equal(np.asarray(g.vectors), np.asarray(w.vectors))
        out[name] = {"items": len(w.ids), "same_ids": ids, "same_vectors": bool(vec)}
    return out


def run(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="rr-incimg-", dir=args.work))
    try:
        days = make_days(work, args.ads, args.cache)
        text = TextEmbeddingSignal()
        pdq = PdqSignal(base_dir=work / "exports")
        signals = [text, pdq]
        t0 = time.time()
        text.encoder.encode(["warm the encoder up"])  # imports and weights, paid once
        load_s = time.time() - t0
        standing = StandingIndex(work / "standing")
        known: dict[str, set] = {}
        rows = []
        for day in ("day0", "day1", "day2"):
            table = days[day]
            before, known = before_change(table, signals, known)
            t0 = time.time()
            idx, stats = standing.update(table, signals, show_progress=False)
            wall = time.time() - t0
            scratch_dir = work / f"scratch-{day}"
            t0 = time.time()
            ref = build_index(table, scratch_dir, signals=signals, show_progress=False)
            scratch = time.time() - t0
            rows.append(
                {
                    "day": day,
                    "items": table.num_rows,
                    "embedded": stats.embedded,
                    "embedded_by_signal": stats.embedded_by_signal,
                    "before_change_rows_embedded_by_every_signal": before,
                    "added": stats.added,
                    "changed": stats.changed,
                    "unchanged": stats.unchanged,
                    "removed": stats.removed,
                    "wall_s": round(wall, 2),
                    "stages_s": {k: round(v, 2) for k, v in stats.seconds.items()},
                    "scratch_wall_s": round(scratch, 2),
                    "ratio": round(wall / scratch, 3),
                    "equal_to_scratch": same_index(idx, ref),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(scratch_dir)
        return {"counts": days["counts"], "encoder_load_s": round(load_s, 2), "days": rows}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def markdown(res: dict, args, load: tuple, seconds: float) -> str:
    c = res["counts"]
    lines = [
        "Command: `.venv/bin/python benchmarks/incremental_images.py"
        + (f" --ads {args.ads}`" if args.ads != 3000 else "`"),
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python "
        f"{platform.python_version()}; load average at start {load[0]}, at end {load[1]}; "
        f"{seconds:.0f} s in all.",
        "",
        f"Ads: {c['ads']:,} Insults comments as texts with {c['creatives_day0']:,} creatives "
        f"(the {c['opencv_photos']} opencv-doc photos, then Fashion-MNIST test images); day 1: "
        f"{c['new']} new ads, {c['creatives_swapped']} creatives swapped, "
        f"{c['texts_edited']} texts edited, {c['taken_down']} taken down, and every creative "
        "re-exported to a new dated folder under a new name -> "
        f"{c['day1_ads']:,} ads; day 2: day 1 again with the creatives as `image_bytes`. "
        f"Signals: MiniLM text (PyTorch fp32) and PDQ; encoders loaded beforehand "
        f"({res['encoder_load_s']} s, counted in neither column).",
        "",
        "| day | items | embedded (text / pdq) | before this change, computed: rows x every "
        "signal | update wall s (read / embed / index) | from-scratch build wall s | ratio | "
        "same ids, positions and vectors as the build |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in res["days"]:
        by = d["embedded_by_signal"]
        st = d["stages_s"]
        same = all(v["same_ids"] and v["same_vectors"] for v in d["equal_to_scratch"].values())
        lines.append(
            f"| {d['day']} | {d['items']:,} | {by.get('text', 0):,} / {by.get('pdq', 0):,} | "
            f"{d['before_change_rows_embedded_by_every_signal']:,} | {d['wall_s']} "
            f"({st.get('read', 0)} / {st.get('embed', 0)} / {st.get('index', 0)}) | "
            f"{d['scratch_wall_s']} | {d['ratio']} | {'yes' if same else 'NO'} |"
        )
    lines += [
        "",
        "Embedded counts are distinct contents per signal (copies of one creative or text "
        "under many ads cost one). The before-this-change column is what the update at "
        "2cfd208 (before 4ab4f13 and 11b57be) would have embedded for these tables, computed "
        "from its keys (`signal_content_keys(legacy=True)`) and its plan, not a timed run of "
        "that code.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ads", type=int, default=3000)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "riskrank")
    ap.add_argument("--work", default=None, help="where the temporary files go")
    ap.add_argument("--out", type=Path, default=RESULTS / "incremental_images")
    args = ap.parse_args()
    load0, t0 = os.getloadavg(), time.time()
    res = run(args)
    load1 = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    loads = tuple(tuple(round(x, 2) for x in load) for load in (load0, load1))
    md = markdown(res, args, loads, time.time() - t0)
    args.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
