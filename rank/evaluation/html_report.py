"""``report.html``: one self-contained page per sweep that an analyst opens from disk.

No network: CSS, the small sort/filter script, the plot and thumbnails are all inline (images
as base64). Built with Jinja2 with autoescaping on, because inventory text is hostile: a
``<script>`` in an ad is shown, never run.

>>> write_html_report(out, result.report, result.queue, texts=full_texts)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from riskrank.index.manifest import write_text_atomic
from riskrank.rank.evaluation.report import count_rows, index_section, plot_sweep
from riskrank.rank.reviewed import reviewed_elsewhere
from riskrank.recall.history import VERDICT_WORDS as _GRADE_WORDS

TOP_DEFAULT = 50
EXCERPT_WINDOW = 600  # characters of an item's text shown around its first highlight
THUMBNAIL_PX = 96
MARK_CLASS = {0: None, 1: "lexical", 2: "seed", 3: "seed lexical"}
VERDICT_WORDS = dict(enumerate(_GRADE_WORDS))  # 0 benign ... 3 severe (recall/history.py)


# Bidirectional controls in inventory text reorder what the page shows around them (an
# override makes "kcilc" read "click", and can move a reason's words); shown as their names.
_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
BIDI_CONTROLS = {c: f"[U+{c:04X}]" for c in _BIDI}


def visible_controls(value):
    """Every value the page prints, with bidirectional controls shown, not obeyed."""
    return value.translate(BIDI_CONTROLS) if isinstance(value, str) else value


def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined

    # autoescape=True for every template: there is no trusted text in a queue.
    return Environment(
        loader=PackageLoader("riskrank.rank.evaluation", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=visible_controls,
    )


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def thumbnail(
    data: bytes | None, path: str | None = None, base_dir: str | Path | None = None
) -> str | None:
    """A small inline PNG of an image (``data:`` URI), or None when there is none or it cannot
    be decoded safely (the index's guarded decoder: no bombs, no remote URIs)."""
    if not data and not path:
        return None
    from riskrank.index.signals.images import decode_image

    image, _ = decode_image(data, path, base_dir)
    if image is None:
        return None
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def segments(text: str | None, spans: list[dict] | None, window: int = EXCERPT_WINDOW) -> list:
    """``text`` cut into (piece, mark-class-or-None) around its highlights, at most ``window``
    characters starting a little before the first one, for the template to wrap in <mark>.
    Overlapping spans are merged; where a seed span and a lexical one overlap, both classes."""
    if not text:
        return []
    spans = sorted(spans or [], key=lambda s: s["start"])
    lo = max(0, spans[0]["start"] - window // 4) if spans else 0
    hi = min(len(text), lo + window)
    cover = np.zeros(hi - lo, np.int8)
    for s in spans:
        a, b = max(s["start"], lo) - lo, min(s["end"], hi) - lo
        if a < b:
            cover[a:b] |= 2 if s["source"] == "seed" else 1
    out: list[tuple[str, str | None]] = [("\u2026", None)] if lo > 0 else []
    cuts = np.flatnonzero(np.diff(cover)) + 1
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(cover)]):
        out.append((text[lo + a : lo + b], MARK_CLASS[int(cover[a])]))
    if hi < len(text):
        out.append(("\u2026", None))
    return out


def policy_counts(queue: pa.Table) -> list[dict]:
    """Per policy: items queued, how many at P >= 0.8 / 0.5, the mean probability."""
    if queue.num_rows == 0:
        return []
    pols = np.asarray(queue.column("policy").to_pylist(), dtype=object)
    p = np.asarray(queue.column("risk_probability").to_pylist(), float)
    rows = []
    for policy in sorted(set(pols)):
        q = p[pols == policy]
        rows.append(
            {
                "policy": policy,
                "queued": int(len(q)),
                "p80": int((q >= 0.8).sum()),
                "p50": int((q >= 0.5).sum()),
                "mean": float(np.nanmean(q)) if len(q) else float("nan"),
            }
        )
    return rows


def campaigns(queue: pa.Table, limit: int = 30) -> list[dict] | None:
    """Queue rows grouped by ``campaign_id`` (None when the queue has no such column). A
    campaign-mode queue has one row per campaign: its ``campaign_members`` are the items (the
    table said 1 item for a campaign of 12: an outsider's report)."""
    if "campaign_id" not in queue.column_names:
        return None
    groups: dict[str, dict] = {}
    cols = ["campaign_id", "item_id", "policy", "rank", "risk_probability"]
    members = "campaign_members" in queue.column_names
    for row in queue.select(cols + ["campaign_members"] * members).to_pylist():
        cid = row["campaign_id"]
        if cid is None or cid == "":
            continue
        g = groups.setdefault(str(cid), {"id": str(cid), "items": [], "policies": set(), "p": 0.0})
        g["items"].extend((row["campaign_members"] or []) if members else [row["item_id"]])
        g["policies"].add(row["policy"])
        g["p"] = max(g["p"], row["risk_probability"] or 0.0)
        g.setdefault("best_rank", row["rank"])
    # In queue order (the riskiest member first), as a reviewer works: sorting by size put a
    # 106-mail campaign of benign mail (max P 0.03) at the top of the demo's report.
    out = sorted(groups.values(), key=lambda g: g["best_rank"])[:limit]
    for g in out:
        g["policies"] = ", ".join(sorted(g["policies"]))
    return out


def _row_context(
    row: dict,
    text: str | None,
    seed_images: dict,
    image_base_dir,
    stale: bool = False,
    reviewed_images: dict | None = None,
) -> dict:
    verdict = row.get("closest_reviewed_verdict")
    return {
        "rank": row["rank"],
        "item_id": row["item_id"],
        "policy": row["policy"],
        "p": row.get("risk_probability"),
        "action": row.get("action"),
        "remediation": row.get("remediation"),
        "explanation": row.get("explanation") or row.get("reasons"),
        "segments": segments(text, row.get("highlight_spans")),
        # Not the file as it is now where it is not the picture the sweep scored (``stale``).
        "thumb": None
        if stale
        else thumbnail(row.get("image_bytes"), row.get("image_path"), image_base_dir),
        "stale_picture": stale,
        "campaign_id": row.get("campaign_id"),
        # An exploration pick says so and why: a reviewer saw p=0.11 at rank 3 with no sign
        # that it was not the ranker's risk order (a reviewer's report).
        "explore": row.get("slot_reason") if row.get("slot") == "explore" else None,
        # campaign mode: one row stands for its members, and its verdict reaches them all
        "members": len(row.get("campaign_members") or []),
        # `policy:verdict` of reviews of this same content under other policies (a confirmed
        # scam queued for a new policy read as never reviewed: an outsider's week of sweeps)
        "elsewhere": [
            f"{p}: {VERDICT_WORDS.get(v, 'reviewed')}"
            for p, v in reviewed_elsewhere(row.get("reviewed_elsewhere"))
        ],
        # an item reviewed before and edited since: say so (it read as a copy of a rejected ad)
        "reviewed_before": (
            VERDICT_WORDS.get(row.get("previous_verdict"), "reviewed")
            if row.get("reviewed") == "changed"
            else None
        ),
        # campaign mode: other members reviewed before and edited since (queued members with
        # an earlier verdict; only the Parquet column said so: an outsider's loop)
        "members_changed": [
            f"{m} ({VERDICT_WORDS.get(int(v), 'reviewed')})"
            for m, v in zip(
                row.get("campaign_members") or [],
                row.get("campaign_members_previous_verdict") or [],
            )
            if v is not None and v == v and m != row["item_id"]
        ],
        "seed": {
            "id": row.get("closest_seed_id"),
            "excerpt": row.get("closest_seed_excerpt"),
            "signal": row.get("closest_seed_signal"),
            "similarity": row.get("closest_seed_similarity"),
            "distance": row.get("closest_seed_distance"),
            "thumb": seed_images.get(row.get("closest_seed_id")),
        },
        "reviewed": {
            "id": row.get("closest_reviewed_id"),
            "verdict": VERDICT_WORDS.get(verdict, "") if verdict is not None else "",
            "violating": verdict is not None and verdict >= 2,
            "sweep": row.get("closest_reviewed_sweep"),
            "swept_at": row.get("closest_reviewed_swept_at"),
            "campaign": row.get("closest_reviewed_campaign"),
            "similarity": row.get("closest_reviewed_similarity"),
            "signal": row.get("closest_reviewed_signal"),
            "excerpt": row.get("closest_reviewed_excerpt"),
            # A picture match: its picture (the text beside it was an unrelated caption).
            "thumb": (reviewed_images or {}).get(row.get("closest_reviewed_id"))
            if row.get("closest_reviewed_signal") not in (None, "text")
            else None,
        },
    }


def _seed_thumbnails(seeds: pa.Table | None, image_base_dir) -> dict:
    if seeds is None or not {"image_bytes", "image_path"} & set(seeds.column_names):
        return {}
    out = {}
    for s in seeds.to_pylist():
        uri = thumbnail(s.get("image_bytes"), s.get("image_path"), image_base_dir)
        if uri:
            out[s["seed_id"]] = uri
    return out


def reviewed_thumbnails(queue: pa.Table, history: Path | None, image_base_dir) -> dict:
    """Thumbnails of the reviewed items the queue's rows name as closest by a picture signal,
    from the model's ``history`` table (its latest review with a picture: kept as bytes by an
    import, else the file at its path). A reviewer saw "reviewed h005 · violating · pdq sim
    0.95" beside an unrelated caption, and not the picture that matched (an outsider's
    report). ``{}`` without a history file, or where it holds no pictures."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from riskrank.index.schema import IMAGE_BYTES, IMAGE_PATH

    if history is None or not Path(history).is_file():
        return {}
    if not {"closest_reviewed_id", "closest_reviewed_signal"} <= set(queue.column_names):
        return {}
    wanted = {
        i
        for i, s in zip(
            queue["closest_reviewed_id"].to_pylist(), queue["closest_reviewed_signal"].to_pylist()
        )
        if i and s not in (None, "text")
    }
    names = pq.read_schema(history).names
    pictures = [c for c in (IMAGE_BYTES, IMAGE_PATH) if c in names]
    if not wanted or not pictures:
        return {}
    # Only the rows named are copied out of each batch: the whole history's pictures were
    # read into Python for two thumbnails (4,000 of 100 KB: peak RSS 463 -> 1,203 MB; an
    # outsider's review). The latest review with a picture wins, as rows are appended.
    latest: dict[str, dict] = {}
    for batch in pq.ParquetFile(history).iter_batches(
        batch_size=256, columns=["item_id", *pictures]
    ):
        named = pc.is_in(batch.column("item_id"), value_set=pa.array(sorted(wanted)))
        for r in batch.filter(named).to_pylist():
            if r.get(IMAGE_BYTES) or r.get(IMAGE_PATH):
                latest[r["item_id"]] = r
    out = {}
    for item_id, r in latest.items():
        uri = thumbnail(r.get(IMAGE_BYTES), r.get(IMAGE_PATH), image_base_dir)
        if uri:
            out[item_id] = uri
    return out


def write_html_report(
    out: str | Path,
    report: dict,
    queue: pa.Table,
    *,
    quality: dict | None = None,
    labels: pa.Table | None = None,
    texts: dict[str, str] | None = None,
    seeds: pa.Table | None = None,
    image_base_dir: str | Path | None = None,
    top: int = TOP_DEFAULT,
    plot: str | Path | None = None,
    stale: set[str] | None = None,
    history: str | Path | None = None,
) -> Path:
    """Write ``out/report.html``.

    ``texts``: item_id -> full text (the queue's ``text`` is truncated; highlight offsets index
    the full text, so without it only highlights inside the truncated text show). ``seeds``:
    the seed table, for seed thumbnails. ``plot``: the PNG ``plot_sweep`` wrote (drawn here
    when not given). ``top``: queue rows shown. ``stale``: ids whose picture file changed
    since the index the sweep searched was made (``report.pictures_changed_since_indexed``):
    no thumbnail of today's file beside the indexed picture's scores, and a note instead.
    ``history``: the model's ``history.parquet``, for the pictures of the closest reviewed
    items (``reviewed_thumbnails``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot = Path(plot) if plot else plot_sweep(queue, out, labels)[0]
    texts = texts or {}
    seed_images = _seed_thumbnails(seeds, image_base_dir)
    reviewed_images = reviewed_thumbnails(queue.slice(0, top), history, image_base_dir)
    rows = []
    for row in queue.slice(0, top).to_pylist():
        text = texts.get(row["item_id"], row.get("text"))
        changed = row["item_id"] in (stale or ())
        rows.append(_row_context(row, text, seed_images, image_base_dir, changed, reviewed_images))
    counts = count_rows(report)
    html = (
        _environment()
        .get_template("report.html.j2")
        .render(
            generated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            counts=counts,
            index_section=index_section(report),
            seconds=report.get("seconds", {}),
            policies_in_sweep=report.get("policies", []),
            cold=report.get("cold_start_policies", []),
            policy_rows=policy_counts(queue),
            # one row per campaign: the policy table counts campaigns (a reviewer's finding)
            campaign_mode="campaign_members" in queue.column_names,
            warnings=report.get("warnings", []),
            decisions=report.get("decisions", {}),
            unlike={
                policy: ", ".join(
                    f"{c['share_below']:.1%} ({signal})" for signal, c in sorted(cov.items())
                )
                for policy, d in report.get("decisions", {}).items()
                if (cov := d.get("history_coverage"))
            },
            plot=_png_data_uri(plot),
            quality=quality,
            rows=rows,
            top=len(rows),
            queued=queue.num_rows,
            policies=sorted({r["policy"] for r in rows}),
            campaigns=campaigns(queue),
        )
    )
    return write_text_atomic(html, out / "report.html")
