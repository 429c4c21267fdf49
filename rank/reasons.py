"""Reasons a reviewer can check and act on, as queue columns.

For each queue row: the phrases that drove the score (with character offsets into the item's
text), the closest seed, the closest reviewed item and its verdict, one sentence in plain
words built from those and from the ranker's feature contributions, and a remediation line an
advertiser-facing message can be built from.

>>> queue = explain_queue(queue, candidates, model, seeds)   # doctest: +SKIP
>>> queue.column("explanation")[0]                           # doctest: +SKIP
"uses 'guaranteed', 'approval'; shares 'no credit check' with seed s2; 3 near-copies ..."
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import pyarrow as pa

from riskrank.rank.model import RiskModel
from riskrank.rank.phrases import (
    SPAN_TYPE,
    Span,
    flagged_phrases,
    lexical_spans,
    plain,
    shared_spans,
)
from riskrank.rank.queue import ESCALATE, QUEUE_FRONT, cleared_copy, near_copy_levels
from riskrank.rank.reasons_memo import ExplanationMemo
from riskrank.rank.reviewed import reviewed_elsewhere
from riskrank.rank.sweep_cache import SpanCache, model_identity
from riskrank.recall.history import POSITIVE_VERDICT, UNNAMED_SWEEP
from riskrank.recall.lexical import FEATURE as LEXICAL_FEATURE
from riskrank.recall.lexical import READ_CHARS
from riskrank.recall.seeds import SeedSet

EXCERPT_CHARS = 200
# "Rejected" read two ways to an outsider (the ad rejected, or the flag): the HTML says violating.
VERDICT_WORDS = {
    0: "found benign",
    1: "marked borderline",
    2: "found violating",
    3: "found severely violating",
}

EXPLANATION_SCHEMA = pa.schema(
    [
        pa.field("explanation", pa.string()),
        pa.field("remediation", pa.string()),
        pa.field("flagged_phrases", pa.list_(pa.string())),
        pa.field("highlight_spans", pa.list_(SPAN_TYPE)),
        pa.field("closest_seed_id", pa.string()),
        pa.field("closest_seed_policy", pa.string()),
        pa.field("closest_seed_signal", pa.string()),
        pa.field("closest_seed_similarity", pa.float32()),
        pa.field("closest_seed_distance", pa.float32()),
        pa.field("closest_seed_excerpt", pa.string()),
        pa.field("closest_reviewed_id", pa.string()),
        pa.field("closest_reviewed_verdict", pa.int8()),
        pa.field("closest_reviewed_similarity", pa.float32()),
        pa.field("closest_reviewed_signal", pa.string()),
        pa.field("closest_reviewed_sweep", pa.string()),
        pa.field("closest_reviewed_swept_at", pa.string()),
        pa.field("closest_reviewed_campaign", pa.string()),
        pa.field("closest_reviewed_excerpt", pa.string()),
        pa.field("near_copies_violating", pa.int32()),
    ],
    metadata={"doc": "reasons per queue row (rank/reasons.py); spans index the item's text"},
)


@dataclass
class RowEvidence:
    """What one queue row's reasons are built from."""

    spans: list[Span]
    seed: dict
    reviewed: dict
    contrib: dict[str, float]  # the ranker's positive contributions, by evidence group
    wording: bool = True  # a text the policy's lexical probe read (else its score is NaN)


@lru_cache(maxsize=4096)  # the same seed's or reviewed item's text recurs on many rows
def _excerpt(text: str | None, n: int = EXCERPT_CHARS) -> str | None:
    if not text:
        return None
    text = " ".join(text[:READ_CHARS].split())  # (a seed or review of megabytes: its start)
    return text if len(text) <= n else text[: n - 1].rstrip() + "\u2026"


def _num(row: dict, key: str) -> float:
    v = row.get(key)
    return float(v) if v is not None and v == v else float("nan")


def _group(feature: str) -> str:
    """Which kind of evidence a ranker feature is: lexical, history or seed (by signal)."""
    if feature == LEXICAL_FEATURE:
        return "lexical"
    if feature.startswith("hist_"):
        return "history:" + feature[5:].split("_")[0]
    return "seed:" + feature.split("_")[0]


def _closest_seed(
    row: dict,
    signals: list[str],
    contrib: dict[str, float],
    seeds: dict,
    weak: dict,
    strong: dict | None = None,
    floors: dict | None = None,
    listed: int | None = None,
) -> dict:
    """The closest seed under the signal the ranker leaned on most (similarities of different
    signals are not comparable, contributions are); where no seed is close under it
    (``weak``), under a signal where one matches ``strong`` (default: ``weak``): a ranker whose
    history had no pictures leans on text, and a picture 2 bits from a seed's was explained as
    "no seed is close (text similarity 0.28)" (an outsider's week of sweeps)."""
    have = [s for s in signals if row.get(f"{s}_best_seed_id")]
    if not have:
        return {}

    def matches(s: str, level: dict) -> bool:
        return _num(row, f"{s}_best_sim") >= level.get(s, np.inf)

    # Where the leaned-on signal finds no seed close, one that matches strongly under another
    # signal is named (strong: a weak level, as CLIP's unmeasured default, explained text
    # rows by a loosely similar picture: a reviewer's finding).
    lean = max(have, key=lambda s: (contrib.get("seed:" + s, 0.0), -have.index(s)))
    if not matches(lean, weak):
        have = [s for s in have if matches(s, strong if strong is not None else weak)] or have
    sig = max(have, key=lambda s: (contrib.get("seed:" + s, 0.0), -have.index(s)))
    seed = seeds.get(row[f"{sig}_best_seed_id"], {})
    text = seed.get("text")
    # A hash signal's quality floor (PDQ: flat pictures, whose hashes match any other flat
    # one): a blank white ad was "a near-copy of seed s_white (0 bits)" (an outsider's report).
    quality = _num(row, f"{sig}_quality")
    floor = (floors or {}).get(sig)
    rank = _num(row, f"{sig}_best_rank")
    return {
        "id": row[f"{sig}_best_seed_id"],
        "flat": None if floor is None or not quality >= 0 or quality >= floor else quality,
        "weak": weak.get(sig, -np.inf),
        "policy": seed.get("policy"),
        "signal": sig,
        "similarity": _num(row, f"{sig}_best_sim"),
        "distance": _num(row, f"{sig}_best_distance"),
        # (recall's k + 1 is "not in that seed's list of ``listed``", not a place in it)
        "rank": rank if listed is None or rank <= listed else float("nan"),
        "text": text,
        "excerpt": _excerpt(text) or ("[image]" if _has_image(seed) else None),
    }


def _has_image(row: dict) -> bool:
    return bool(row.get("image_bytes") or row.get("image_path"))


def _closest_reviewed(
    row: dict,
    model: RiskModel,
    signal: str | None,
    stored: dict | None = None,
    weak: dict | None = None,
    coverage: dict | None = None,
) -> dict:
    """The closest reviewed item under ``signal`` (else any signal with history evidence).
    ``stored``: signal -> item id -> stored review, looked up for all rows at once; ``weak``:
    each signal's lower match level, below which the item is not ``close``; ``coverage``:
    policy -> signal -> the level below which an item is unlike the policy's reviews
    (rank/coverage.py), at or above which it is ``covered``."""
    names = [signal] if signal in model.exemplars else []
    names += [s for s in model.exemplars if s not in names]
    found = [r for s in names if (r := _reviewed_under(row, model, s, stored, weak, coverage))]
    # The first signal under which a review is close, else one the policy's reviews cover: a
    # row covered under its picture said "no item reviewed for this policy is close (text
    # similarity 0.30)" (an outsider's review: ``unlike_reviews`` asks every signal).
    for level in ("close", "covered"):
        for r in found:
            if r[level] and r["similarity"] == r["similarity"]:
                return r
    return found[0] if found else {}


def _reviewed_under(
    row: dict,
    model: RiskModel,
    s: str,
    stored: dict | None,
    weak: dict | None,
    coverage: dict | None,
) -> dict:
    """``_closest_reviewed`` under signal ``s`` ({} where the row has no review under it)."""
    item_id = row.get(f"hist_{s}_nearest_id")
    if not item_id:
        return {}
    if stored is not None and item_id in stored.get(s, {}):
        review = stored[s][item_id] or {}
    else:
        review = model.exemplars[s].reviewed([item_id])[0] or {}
    verdict = _num(row, f"hist_{s}_nearest_verdict")
    near = _num(row, f"hist_{s}_n_near_violating")
    similarity = _num(row, f"hist_{s}_nearest_sim")
    return {
        "id": item_id,
        "verdict": None if verdict != verdict else int(verdict),
        "similarity": similarity,
        "close": not similarity < (weak or {}).get(s, -np.inf),  # (NaN: not known)
        "covered": similarity >= (coverage or {}).get(row.get("policy"), {}).get(s, np.inf),
        "signal": s,
        "sweep": review.get("sweep_id"),
        "swept_at": review.get("queue_swept_at"),
        "campaign": _decided_campaign(review.get("verdict_source")),
        "excerpt": _excerpt(review.get("text")),
        "near_violating": None if near != near else int(near),
    }


def _own_review(row: dict, stored: dict | None = None) -> dict | None:
    """An item's own review, for an item queued again as changed since (a picture replaced:
    its closest review under the picture is another item's, and the sentence named that one,
    never that this item was rejected before; an outsider's report)."""
    item_id, before = row["item_id"], row.get("previous_verdict")
    if before is None or before != before:
        return None
    found = (by_id.get(item_id) for by_id in (stored or {}).values())  # (``gather`` read them)
    review = next((r for r in found if r), None) or {}
    if review.get("policy") not in (None, row.get("policy")):
        # The stored review is the item's latest under any policy: another policy's round and
        # day beside this policy's verdict named a review that found it benign (an outsider).
        review = {}
    return {
        "id": item_id,
        "verdict": int(before),
        "own": True,
        "status": "changed",
        "sweep": review.get("sweep_id"),
        "swept_at": review.get("queue_swept_at"),
        "campaign": _decided_campaign(review.get("verdict_source")),
        "near_violating": 0,
    }


def _decided_campaign(source: str | None) -> str | None:
    """The campaign id a verdict was given to (``verdict_source`` ``campaign:<id>``, with
    `` correction`` where it overturned an earlier one), else None."""
    if not isinstance(source, str) or not source.startswith("campaign:"):
        return None
    return source[len("campaign:") :].removesuffix(" correction") or None


QUOTE_CHARS = 60  # a shared span can be a whole paragraph of a copied template
QUOTE_MAX = 5  # phrases quoted in one sentence; ``flagged_phrases`` keeps all of them
# Queue rows explained at a time: their Python rows and lexical features are held per slice
# (all 300,000 rows at once peaked at 6.2 GB; benchmarks/results/cli_scale.md).
REASON_ROWS = 20_000


def _short(phrase: str) -> str:
    # A phrase spanning lines ("claim\r\nnow") put raw line breaks into the one-line
    # explanation (an outsider's report); quoted, its whitespace is one space, and markup
    # inside it is dropped (phrases.plain).
    phrase = plain(phrase)
    if len(phrase) <= QUOTE_CHARS:
        return phrase
    cut = phrase[:QUOTE_CHARS].rsplit(" ", 1)[0] or phrase[:QUOTE_CHARS]
    return cut + " ..."


def _strongest(spans: list, source: str) -> list[str]:
    """The distinct phrases (``_distinct``) of ``spans`` from ``source``, strongest first
    (the summed weight of a phrase's spans: its contribution, or a shared run's words). In
    text order, "Uses 'Multi-Billion', 'Home' and 'Business'" stood beside a remediation
    naming 'Guaranteed', 'FREE' and 'CLICK' (an outsider's audit: 800 of 1,444 demo rows
    left out their strongest phrase)."""
    weight: dict[str, float] = defaultdict(float)
    for sp in spans:
        if sp.source == source:
            weight[plain(sp.phrase).lower()] += sp.weight
    phrases = _distinct([sp.phrase for sp in spans if sp.source == source])
    return sorted(phrases, key=lambda p: -weight[plain(p).lower()])


def _distinct(phrases: list[str]) -> list[str]:
    """``phrases`` once each, compared without case, as the item first writes them: quotes
    were lower-cased ('you should be fucking' for "You should be fucking"), which a
    case-sensitive search of the item does not find (an outsider's report)."""
    seen: dict[str, str] = {}
    for p in phrases:
        seen.setdefault(plain(p).lower(), p)
    return list(seen.values())


def _quote(phrases: list[str]) -> str:
    extra = len(phrases) - QUOTE_MAX
    quoted = [f"'{_short(p)}'" for p in phrases[:QUOTE_MAX]]
    if extra > 0:
        quoted.append(f"{extra} more")
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


NEAREST_SAID = 100  # an item further down its closest seed's list is not said to be near


def _ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, ..."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _seed_is_close(seed: dict) -> bool:
    """Whether the closest seed matches at all under its signal (NaN or below its lower match
    level: no)."""
    return bool(seed) and seed["similarity"] >= seed.get("weak", -np.inf)


def _seed_clause(ev: RowEvidence) -> str | None:
    seed = ev.seed
    if not seed:
        return None
    shared = _strongest(ev.spans, "seed")[:3]
    if shared and _shares_said(ev):
        return f"shares {_quote(shared)} with seed {seed['id']}"
    close = _seed_is_close(seed)
    if seed["distance"] == seed["distance"] and close:  # a perceptual hash: how many bits differ
        bits = f"{seed['signal'].upper()}: {seed['distance']:.0f} bits differ"
        if seed.get("flat") is not None:
            return (
                f"its image hashes like seed {seed['id']} ({bits}), but it is nearly flat "
                f"(quality {seed['flat']:.0f} of 100), and flat pictures hash alike"
            )
        return f"its image is a near-copy of seed {seed['id']} ({bits})"
    kind = "image" if seed.get("signal", "text") != "text" else "text"
    if not close and seed["distance"] == seed["distance"]:
        return (
            f"no seed is close (nearest {seed['id']}, {seed['signal'].upper()}: "
            f"{seed['distance']:.0f} bits differ)"
        )
    if not close:
        # Where the ranker leaned on it, how near it is to that seed among today's items: a
        # new policy's top rows (P 0.985) said only "no seed is close", which reads against
        # the score; closeness relative to the inventory is what moved it (an outsider's
        # report). The seed's own ranked list is read to its first NEAREST_SAID places.
        nearest = (
            f"; the {_ordinal(int(seed['rank']))} nearest item to it in this inventory"
            if _nearest_said(ev)
            else ""
        )
        return (
            f"no seed is close (nearest {seed['id']}, {kind} similarity "
            f"{_below(seed['similarity'])}{nearest})"
        )
    return f"its {kind} resembles seed {seed['id']} (similarity {seed['similarity']:.2f})"


def _below(similarity: float) -> str:
    """A similarity short of the match level, to two places cut, not rounded: 0.4958 read
    "no seed is close (... similarity 0.50)" beside a match level of 0.50 (an outsider's
    report)."""
    if not math.isfinite(similarity):
        return f"{similarity:.2f}"
    return f"{math.floor(round(similarity * 100, 6)) / 100:.2f}"  # (0.57 * 100 is 56.99...)


def _nearest_said(ev: RowEvidence) -> bool:
    """Whether a seed that is not close is said to be near in this inventory: the ranker
    leaned on it and the item is among the first ``NEAREST_SAID`` of its list."""
    rank = ev.seed.get("rank", float("nan"))
    leaned = ev.contrib.get(f"seed:{ev.seed.get('signal')}", 0.0) > 0
    return leaned and 1 <= rank <= NEAREST_SAID


LONG_RUN = 5  # words of a shared run that is evidence whatever the seed's similarity


def _shares_said(ev: RowEvidence) -> bool:
    """Whether the words the item shares with its closest seed are said as evidence: where
    the seed matches, is near it in this inventory, or a run is ``LONG_RUN`` words or more.
    "Shares 'and sports' with seed S" was said of a casino ad beside a day-trading seed at
    similarity 0.21, and "no seed is close" never (an outsider's audit: 1,512 of 1,582 demo
    rows with such a clause had a seed below its match level)."""
    if not ev.seed:
        return False
    if _seed_is_close(ev.seed) or _nearest_said(ev):
        return True
    return any(s.source == "seed" and s.weight >= LONG_RUN for s in ev.spans)


def _seed_against(ev: RowEvidence) -> bool:
    """The seed clause says no seed is close (and nothing for the item)."""
    seed = ev.seed
    if not seed or _seed_is_close(seed):
        return False
    if any(s.source == "seed" for s in ev.spans) and _shares_said(ev):
        return False
    return seed["distance"] == seed["distance"] or not _nearest_said(ev)


def _history_against(ev: RowEvidence) -> bool:
    """The history clause says only that nothing reviewed is close, or that the nearest
    review found it benign: no own or other-policy verdict, no rejected near-copy."""
    rev = ev.reviewed
    if not rev or rev.get("own") or rev.get("elsewhere") or rev.get("near_violating"):
        return False
    return _benign(rev) or not (rev.get("close", True) or rev.get("covered"))


def _benign(rev: dict) -> bool:
    """The review found the item not violating (a verdict below ``POSITIVE_VERDICT``)."""
    return rev.get("verdict") is not None and rev["verdict"] < POSITIVE_VERDICT


def _history_clause(ev: RowEvidence) -> str | None:
    rev = ev.reviewed
    elsewhere = _elsewhere(rev.get("elsewhere") if rev else None)
    said = _review_clause({k: v for k, v in rev.items() if k != "elsewhere"}) if rev else None
    if not elsewhere or (rev or {}).get("own"):
        return said
    # Its own review under another policy: "no reviewed item is close" read as "nothing like
    # it was ever reviewed" of an item rejected as severe for scam (an outsider's report).
    return f"{said}; {elsewhere}" if said else elsewhere


def _elsewhere(values) -> str | None:
    """``reviewed_elsewhere`` (``policy:verdict``) in words: "this item was found violating under
    scam"."""
    parts = [
        f"this item was {VERDICT_WORDS.get(verdict, 'reviewed')} under {policy}"
        for policy, verdict in reviewed_elsewhere(values)
    ]
    return "; ".join(parts) or None


def _review_clause(rev: dict) -> str | None:
    if not rev:
        return None
    near = rev.get("near_violating") or 0
    # "in history" (the labelled history's rows name no sweep) said nothing, and left "2
    # near-copies were rejected; the closest in history" on 346 of the demo's items.
    named = rev.get("sweep") and rev["sweep"] != UNNAMED_SWEEP
    when = f" in {rev['sweep']}" if named else ""
    if rev.get("swept_at"):  # the day its queue was swept: "review-v3" names a model version
        when += f" (queue of {str(rev['swept_at'])[:10]})"
    with_campaign = f" with campaign {rev['campaign']}" if rev.get("campaign") else ""
    if rev.get("own"):
        # Its own earlier review (an edited ad queued again) read "1 near-copy was rejected",
        # and the reviewer took it for a copy of another ad (an outsider's week of sweeps).
        words = VERDICT_WORDS.get(rev["verdict"], "reviewed")
        others = near - int(rev["verdict"] is not None and rev["verdict"] >= 2)
        since = {"changed": ", and it has changed since", "unchanged": ", unchanged since"}
        were = "y was" if others == 1 else "ies were"
        tail = "" if others <= 0 else f"; {others} other near-cop{were} found violating"
        status = since.get(rev.get("status"), "")
        return f"this item was {words}{when}{with_campaign}{status}{tail}"
    if near:
        if near == 1 or not (when or with_campaign):
            copies = "1 near-copy was" if near == 1 else f"{near} near-copies were"
            return f"{copies} found violating{when}{with_campaign}"
        # The batch, day and campaign are the closest review's, not all of theirs (a
        # reviewer read "14 near-copies were rejected in review-v3 (queue of ...)").
        return f"{near} near-copies were found violating; the closest{when}{with_campaign}"
    words = VERDICT_WORDS.get(rev["verdict"], "reviewed")
    said = f"the closest reviewed item {rev['id']} was {words}{when}{with_campaign}"
    similarity = (
        f"{_signal_words(rev['signal'])} similarity {rev['similarity']:.2f}"
        if "signal" in rev and rev.get("similarity") == rev.get("similarity")
        else None
    )
    if rev.get("close", True):
        # A benign one with its similarity: the ranker can read it as far (the ``reasons``
        # column's "similarity to the closest item reviewers found benign = 0.645 (low)"
        # stood beside "the closest reviewed item H was found benign" in 628 demo rows; an
        # outsider's audit).
        return f"{said} ({similarity})" if _benign(rev) and similarity else said
    if rev.get("covered"):
        # Not a near match, but as close as the policy's reviews are to each other under
        # this signal (rank/coverage.py's level; ``unlike_reviews`` asks it of every signal).
        # "No item reviewed for this policy is close (nearest ..., rejected; 0.49)" led 597
        # automatic removals whose ranker leaned on that rejection (an outsider's 300,000-item
        # sweep).
        return (
            f"its nearest reviewed item {rev['id']} was {words}{when}{with_campaign} ({similarity})"
        )
    # A picture 110 bits from every reviewed one was "the closest reviewed item h007 was
    # found benign", read as evidence (an outsider's report): the nearest, said as such.
    return (
        f"no item reviewed for this policy is close (nearest {rev['id']}, {words}{when}"
        f"{with_campaign}; {similarity})"
    )


def _signal_words(signal: str) -> str:
    return {"text": "text", "image": "image"}.get(signal, signal.upper())


def sentence(ev: RowEvidence) -> str:
    """One plain-words sentence: the evidence groups the ranker leaned on, strongest first."""
    clauses: dict[str, str | None] = {}
    weight = _weights(ev.contrib)
    lexical = _strongest(ev.spans, "lexical")
    if lexical:
        clauses["lexical"] = f"uses {_quote(lexical[:3])}"
    elif weight["lexical"] > 0 and ev.wording:
        # The probe's character n-grams can raise a text no word of which stands out: an
        # automatic removal of ". jif ukqdrblkougooeoffnxsmbowei" read only "its nearest
        # reviewed item was found benign; no seed is close" (an outsider's audit).
        clauses["lexical"] = "its wording as a whole scores like violating items"
    clauses["seed"] = _seed_clause(ev)
    clauses["history"] = _history_clause(ev)
    # What speaks against the item (no seed or review near it, a benign review) comes after
    # what speaks for it, however much the ranker leaned on that group: an automatic removal
    # read "No item reviewed for this policy is close ...; uses 'free' and 'click'; no seed
    # is close" (an outsider's 300,000-item sweep).
    against = {"lexical": False, "seed": _seed_against(ev), "history": _history_against(ev)}
    order = sorted(clauses, key=lambda g: (against[g], -weight[g]))
    parts = [clauses[g] for g in order if clauses[g] and (weight[g] > 0 or g != "lexical")]
    if not parts:
        return "little evidence of risk"
    text = "; ".join(parts)
    return text[0].upper() + text[1:]


def _weights(contrib: dict[str, float]) -> dict[str, float]:
    """The ranker's positive contributions per kind of evidence (lexical, seed, history)."""
    weight = {"lexical": 0.0, "seed": 0.0, "history": 0.0}
    for group, c in contrib.items():
        weight[group.split(":")[0]] += c
    return weight


# Wording an advertiser must keep: how a reader opts out of mail. SpamAssassin's spam carries
# "to be removed from this list" far more often than its ham does, so the probe weighs it; an
# unsubscribe line is still not what to change (a sender must offer one). A flagged phrase is
# opt-out wording where it holds such words (``OPT_OUT``) and the line it stands in is about a
# list or mail (``MAILING``), or it says "unsubscribe": "Negative items can be removed from
# your report" and "Remove your wrinkles" are claims to change (a reviewer's check).
OPT_OUT = re.compile(
    r"unsubscrib|(?<![a-z])opt[\s-]?out\b|\bremov(e|ed|al)\b|\bno longer (wish|want)\b|"
    r"\bstop receiving\b",
    re.IGNORECASE,
)
# A line about a list or mail, or about how to leave one ("To be removed call: 888-...",
# "reply with REMOVE in the subject line", "removal instructions", "click below", an address).
# On the demo's queue, of the flagged phrases with removal words, 888 are kept out of
# remediations and 42 rows keep one (claims such as "Remove wrinkles and cellulite", ham's
# "how I could remove a HDD password"); with list words alone, 83 rows advised removing an
# opt-out line.
MAILING = re.compile(
    r"\b(lists?|mailings?|e-?mails?|newsletters?|database|subscri\w*|messages?)\b|"
    r"unsubscrib|mailto:|\breceiv\w* (this|these|our|further|future|more|any)\b|"
    r"\b(reply|subject|instructions?|call)\b|\bclick(ing)? (here|below|on)\b|"
    r"\b(see|go|look) below\b|[\w.-]+@[\w-]+\.\w",
    re.IGNORECASE,
)
CONTEXT_CHARS = 300  # of the line on either side of a phrase


def opt_out(phrase: str, spans: list, text: str) -> bool:
    """Whether the flagged ``phrase`` (of ``text``, made of ``spans``) is opt-out wording."""
    if not OPT_OUT.search(phrase):
        return False
    if "unsubscrib" in phrase.lower():
        return True
    # Where it stands: its spans (whole words of it; "remove" is no span of "be removed"),
    # any of them in such a line.
    places = [sp.start for sp in spans if _holds(phrase, plain(sp.phrase))]
    if not places:
        return bool(MAILING.search(phrase))
    return any(MAILING.search(_line_around(text, at)) for at in places)


def _line_around(text: str, at: int) -> str:
    """The line of ``text`` at ``at``, at most ``CONTEXT_CHARS`` either side."""
    start = max(text.rfind("\n", 0, at) + 1, at - CONTEXT_CHARS)
    end = text.find("\n", at)
    return text[start : min(len(text) if end < 0 else end, at + CONTEXT_CHARS)]


def _holds(phrase: str, part: str) -> bool:
    """``part`` stands in ``phrase`` as whole words (case-insensitive): the lexical word
    "Win" is not in "Window cleaning" (a reviewer's check)."""
    # (str.find, not a regular expression per word: compiling one for each distinct word of
    # a 300,000-row queue cost ~0.5 ms a phrase once the re module's cache overflowed.)
    phrase, part = phrase.lower(), part.lower()
    if not part:
        return False
    at = phrase.find(part)
    while at >= 0:
        end = at + len(part)
        before = phrase[at - 1] if at else " "
        after = phrase[end] if end < len(phrase) else " "
        if not _word_char(before) and not _word_char(after):
            return True
        at = phrase.find(part, at + 1)
    return False


def _word_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def remediation(action: str | None, phrases: list[str], seed: dict) -> str:
    """What to do, and for an advertiser what to change."""
    action = action or "escalate"
    todo = [f"change or remove {_quote(phrases)}"] if phrases else []
    # Only a picture that matches: "replace the image that matches seed X" stood beside "no
    # seed is close (106 bits differ)" on 21 of 131 picture ads (an outsider's report).
    # (Nor where the picture is nearly flat: its hash matches any flat one, as the
    # explanation says; an outsider's review.)
    if (
        seed
        and seed.get("signal") not in (None, "text")
        and _seed_is_close(seed)
        and seed.get("flat") is None
    ):
        todo.append(f"replace the image that matches seed {seed['id']}")
    return f"{action}: {'; '.join(todo)}" if todo else action


def explain_queue(
    queue: pa.Table,
    candidates: pa.Table,
    model: RiskModel,
    seeds: SeedSet,
    *,
    cache: SpanCache | str | Path | None = None,
    contributions: np.ndarray | None = None,
    k: int | None = None,
    kept: ExplanationMemo | None = None,
) -> pa.Table:
    """``queue`` with the columns of ``EXPLANATION_SCHEMA`` after its front columns.

    Text comes from ``candidates`` (the queue's own ``text`` is truncated), so span offsets
    index the item's full text as the inventory gave it. ``cache``: phrase attributions
    (rank/sweep_cache.py), or the Parquet file of them: texts attributed by the sweep that
    wrote it are not attributed again; it is then rewritten with this queue's. The reasons
    are the same with or without it. ``contributions``: the queue rows' ``RiskRanker``
    contributions (``ScoredCandidates.contributions`` of the rows queued), if the ranking
    kept them; otherwise they are computed here. ``k``: the recall depth the candidates were
    found with (a ``best_rank`` past it means "not in that seed's list"; None: every item was).
    ``kept``: the last sweep's reasons by row (rank/reasons_memo.py): a row whose policy's key
    and whose inputs are unchanged takes them instead of being explained again; this queue's
    are kept in it for the next sweep.
    """
    if "item_id" not in queue.column_names:
        return queue
    if queue.num_rows == 0:  # a quiet day's queue has a full one's columns
        return _with_columns(queue, EXPLANATION_SCHEMA.empty_table())
    spans = cache if isinstance(cache, SpanCache) else SpanCache(cache, model_identity(model.info))
    texts = _full_texts(candidates)
    inputs = queue.select([c for c in queue.column_names if _row_column(c)])
    reused, kept_rows = kept.reusable(inputs, contributions) if kept is not None else ([], None)
    todo = np.setdiff1d(np.arange(queue.num_rows), reused)
    fresh = queue.take(pa.array(todo)) if len(reused) else queue
    fresh_contrib = None if contributions is None else contributions[todo]
    parts = [EXPLANATION_SCHEMA.empty_table()]
    for start in range(0, fresh.num_rows, REASON_ROWS):  # Python rows held a slice at a time
        part = fresh.slice(start, REASON_ROWS)
        contrib = None if fresh_contrib is None else fresh_contrib[start : start + REASON_ROWS]
        rows = _explain_rows(_RowInputs.gather(part, texts, model, seeds, contrib), model, spans, k)
        parts.append(pa.Table.from_pylist(rows, EXPLANATION_SCHEMA))
    explained = pa.concat_tables(parts)
    if len(reused):  # back into queue order
        explained = pa.concat_tables([explained, kept_rows.cast(EXPLANATION_SCHEMA)])
        at = np.concatenate([todo, reused])
        explained = explained.take(pa.array(np.argsort(at, kind="stable")))
        # The reused rows' attributions stay in the file for a later day that explains them.
        spans.keep_stored()
    spans.save()
    if kept is not None:
        kept.save(inputs, contributions, explained)
    return _with_columns(queue, explained)


def _full_texts(candidates: pa.Table) -> dict[str, str]:
    if "text" not in candidates.column_names:
        return {}
    return dict(zip(candidates["item_id"].to_pylist(), candidates["text"].to_pylist()))


def _explain_rows(
    inputs: _RowInputs, model: RiskModel, spans: SpanCache, k: int | None = None
) -> list[dict]:
    """The reasons of each of ``inputs``' rows (``EXPLANATION_SCHEMA``)."""
    weak = {s.name: float(s.match_thresholds[0]) for s in model.signals}
    strong = near_copy_levels(model.signals)
    coverage = getattr(model.ranker, "coverage_", {})
    floors = {s.name: s.quality_floor for s in model.signals if hasattr(s, "quality_floor")}
    closest = [
        _closest_seed(row, inputs.signals, contrib, inputs.seed_rows, weak, strong, floors, k)
        for row, contrib in zip(inputs.rows, inputs.contrib)
    ]
    lexical = _attribute_lexical(inputs, model, spans)
    rows = []
    for i, row in enumerate(inputs.rows):
        text, seed = inputs.texts[i], closest[i]
        found = list(lexical[i])
        if text and seed.get("text"):
            key = spans.shared_key(text, seed["text"])
            found += spans.get(key, partial(shared_spans, text, seed["text"]))
        reviewed = _closest_reviewed(row, model, seed.get("signal"), inputs.stored, weak, coverage)
        own = None
        if row.get("reviewed") == "changed" and reviewed.get("id") != row["item_id"]:
            own = _own_review(row, inputs.stored)
        probe = model.lexical is not None and row["policy"] in model.lexical.coefs
        row_out = _explain_row(row, text, inputs.contrib[i], seed, found, reviewed, own, probe)
        held = _held_clause(row, strong, reviewed)
        if held:
            row_out["explanation"] += f"; {held}"
        rows.append(row_out)
    return rows


def _held_clause(row: dict, strong: dict[str, float], reviewed: dict | None = None) -> str | None:
    """Why a row whose probability reached its automatic action is left to a reviewer, where
    that is a near-copy reviewers found benign (rank/queue.py ``suggested_actions``). Where
    the sentence already names that review (``reviewed``: the closest, benign, as close), it
    is not said twice."""
    p, t = row.get("risk_probability"), row.get("action_threshold")
    if row.get("action") != ESCALATE or p is None or t is None or t != t or p < t:
        return None
    found = cleared_copy(row, strong)
    if found is None:
        return None
    signal, sim = found
    if (
        reviewed
        and _benign(reviewed)
        and reviewed.get("signal") == signal
        and f"{reviewed.get('similarity') or 0:.2f}" == f"{sim:.2f}"
    ):
        return "left to a reviewer, as that reviewed item is a near-copy"
    said = f"{_signal_words(signal)} similarity {sim:.2f}"
    return f"left to a reviewer: a near-copy was found benign in review ({said})"


def _with_columns(queue: pa.Table, cols: pa.Table) -> pa.Table:
    """``cols`` after the queue's front columns, replacing any of the same name."""
    table = queue.drop([c for c in cols.column_names if c in queue.column_names])
    front = [c for c in QUEUE_FRONT if c in table.column_names]
    rest = [c for c in table.column_names if c not in front]
    out = table.select(front)
    for name in cols.column_names:
        out = out.append_column(cols.schema.field(name), cols.column(name))
    for name in rest:
        out = out.append_column(table.schema.field(name), table.column(name))
    return out


@dataclass
class _RowInputs:
    """What the queue's reasons are computed from, row by row."""

    rows: list[dict]
    texts: list[str | None]
    contrib: list[dict[str, float]]  # the ranker's positive contributions, by evidence group
    seed_rows: dict[str, dict]
    signals: list[str]
    stored: dict[str, dict[str, dict]]  # signal -> reviewed item id -> its stored review

    @classmethod
    def gather(
        cls,
        queue: pa.Table,
        full_text: dict[str, str],
        model: RiskModel,
        seeds: SeedSet,
        contributions: np.ndarray | None = None,
    ) -> _RowInputs:
        # The model's signals: an inventory column renamed meta_text_best_seed_id is no signal
        # (its text cells, read as similarities, failed the reasons).
        names = {s.name for s in model.signals}
        signals = [
            c[: -len("_best_seed_id")]
            for c in queue.column_names
            if c.endswith("_best_seed_id") and c[: -len("_best_seed_id")] in names
        ]
        rows = queue.select([c for c in queue.column_names if _row_column(c)]).to_pylist()
        stored = {}
        # (Items queued as changed since their review: their own review too, ``_own_review``.)
        changed = {r["item_id"] for r in rows if r.get("reviewed") == "changed"}
        for s, ex in model.exemplars.items():  # one lookup per signal, not one per row
            wanted = sorted(({r.get(f"hist_{s}_nearest_id") for r in rows} | changed) - {None, ""})
            stored[s] = dict(zip(wanted, ex.reviewed(wanted)))
        return cls(
            rows,
            [full_text.get(r["item_id"]) for r in rows],
            _group_contributions(queue, model, contributions),
            {r["seed_id"]: r for r in seeds.table.to_pylist()},
            signals,
            stored,
        )


def _row_column(name: str) -> bool:
    """The queue columns the reasons read (the rest of a wide queue is not copied to Python)."""
    return (
        name in ("item_id", "policy", "action", "reviewed", "previous_verdict")
        or name in ("risk_probability", "action_threshold")  # (a held-back action's clause)
        or name == "reviewed_elsewhere"
        or name.startswith("hist_")
        or name.endswith(("_best_seed_id", "_best_sim", "_best_distance", "_quality", "_best_rank"))
    )


def _group_contributions(
    queue: pa.Table, model: RiskModel, contributions: np.ndarray | None = None
) -> list[dict[str, float]]:
    """Per row, the ranker's positive contributions summed by evidence group (``_group``)."""
    features = model.ranker.features_
    groups = sorted({_group(f) for f in features})
    member = np.zeros((len(features), len(groups)))
    for j, f in enumerate(features):
        member[j, groups.index(_group(f))] = 1.0
    if contributions is None:
        contributions = model.ranker.contributions(queue)
    positive = np.maximum(contributions, 0.0)
    touched = (positive > 0).astype(float) @ member > 0
    sums = positive @ member
    return [
        {groups[k]: float(sums[i, k]) for k in np.flatnonzero(touched[i])} for i in range(len(sums))
    ]


def _attribute_lexical(inputs: _RowInputs, model: RiskModel, spans: SpanCache) -> list[list]:
    """Per row, the lexical probe's spans of its text (empty where the row's policy has no
    probe); each distinct (policy, text) is attributed once, and only if ``spans`` lacks it."""
    probe = model.lexical
    keys: list[str | None] = []
    todo: dict[str, tuple[str, str]] = {}
    for row, text in zip(inputs.rows, inputs.texts):
        if not text or probe is None or row["policy"] not in probe.coefs:
            keys.append(None)
            continue
        keys.append(spans.lexical_key(row["policy"], text))
        todo[keys[-1]] = (row["policy"], text)
    missing = spans.missing([k for k in keys if k is not None])
    # Each text's values come from the n-grams the attribution hashes anyway (rank/phrases.py
    # _own_values): no vectorizer pass over the texts again, which took as long as recall's.
    for key in missing:
        policy, text = todo[key]
        spans.put(key, lexical_spans(probe.coefs[policy][0], text))
    return [spans.get(k) if k is not None else [] for k in keys]


def _explain_row(
    row: dict,
    text: str | None,
    contrib: dict[str, float],
    seed: dict,
    spans: list,
    reviewed: dict,
    own: dict | None = None,
    probe: bool = True,
) -> dict:
    """``own``: the item's own earlier review, where it is queued as changed since and its
    closest review under the signal the ranker leaned on is another item's (the sentence
    names its own; the ``closest_reviewed_*`` columns keep the closest). ``probe``: the row's
    policy has a lexical probe (without one, or without a text, its score is NaN, which the
    booster can still read as risk: no sentence says the wording scored)."""
    spans.sort(key=lambda s: (s.start, s.end))
    said = reviewed
    if reviewed and reviewed.get("id") == row.get("item_id"):
        said = reviewed = {**reviewed, "own": True, "status": row.get("reviewed")}
    elif own:
        said = own
    if row.get("reviewed_elsewhere"):
        said = {**said, "elsewhere": row["reviewed_elsewhere"]}
    ev = RowEvidence(spans, seed, said, contrib, wording=bool(text) and probe)
    phrases = flagged_phrases(spans, text or "")
    # What to change: the words the explanation names. Highlighted words the ranker's
    # lexical evidence did not raise the score by (a probe score below zero) were "change or
    # remove 'doctor'" at P 0.05, beside an explanation naming none (an outsider's report).
    raised = _weights(contrib)["lexical"] > 0
    # Runs shared with the seed are something to change where they are said as evidence; of
    # a seed at similarity 0.3, "change or remove 'easy to' and 'seen on'", runs that were not
    # even among the flagged phrases (an outsider's audit).
    runs = {plain(s.phrase).lower() for s in spans if s.source == "seed"}
    runs = runs if runs and _shares_said(ev) else set()
    words = {plain(s.phrase).lower() for s in spans if s.source == "lexical"} if raised else ()
    to_change = [
        p for p in phrases if any(_holds(p, w) for w in words) or any(_holds(p, r) for r in runs)
    ]
    # Opt-out wording is never advice to remove (an outsider's audit: "change or remove 'To
    # be removed'" on 672 of the demo's 1,971 rows with a list); it stays flagged.
    to_change = [p for p in to_change if not opt_out(p, spans, text or "")]
    verdict = reviewed.get("verdict")
    return {
        "explanation": sentence(ev),
        "remediation": remediation(row.get("action"), to_change, seed),
        "flagged_phrases": phrases,
        "highlight_spans": [s.as_row() for s in spans],
        "closest_seed_id": seed.get("id"),
        "closest_seed_policy": seed.get("policy"),
        "closest_seed_signal": seed.get("signal"),
        "closest_seed_similarity": seed.get("similarity"),
        "closest_seed_distance": seed.get("distance"),
        "closest_seed_excerpt": seed.get("excerpt"),
        "closest_reviewed_id": reviewed.get("id"),
        "closest_reviewed_verdict": verdict,
        "closest_reviewed_similarity": reviewed.get("similarity"),
        "closest_reviewed_signal": reviewed.get("signal"),
        "closest_reviewed_sweep": reviewed.get("sweep"),
        "closest_reviewed_swept_at": reviewed.get("swept_at"),
        "closest_reviewed_campaign": reviewed.get("campaign"),
        "closest_reviewed_excerpt": reviewed.get("excerpt"),
        "near_copies_violating": reviewed.get("near_violating"),
    }


__all__ = ["EXPLANATION_SCHEMA", "RowEvidence", "explain_queue", "remediation", "sentence"]
