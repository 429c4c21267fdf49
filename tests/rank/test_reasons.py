"""Reasons per queue row: phrases with offsets, closest seed and reviewed item, one sentence."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import SCAM

from riskrank.rank.phrases import (
    delete_spans,
    flagged_phrases,
    lexical_spans,
    shared_spans,
    word_contributions,
)
from riskrank.rank.reasons import EXPLANATION_SCHEMA, RowEvidence
from riskrank.recall.lexical import FEATURE, LexicalProbe, lexical_features


@pytest.fixture(scope="module")
def probe(history) -> LexicalProbe:
    return LexicalProbe.fit(
        history["text"].to_pylist(),
        history["policy"].to_pylist(),
        history["verdict"].to_pylist(),
        history["item_id"].to_pylist(),
    )


def _probe_score(probe: LexicalProbe, text: str) -> float:
    coef, intercept = probe.coefs["scam"]
    return float((lexical_features([text]) @ coef)[0] + intercept)


def test_word_shares_add_up_to_the_probe_score(probe, inventory_items):
    coef, intercept = probe.coefs["scam"]
    for text in inventory_items["text"].to_pylist()[:20] + ["approval, approval!! $$$ no-credit"]:
        words, scores = word_contributions(coef, text)
        assert len(words) == len(text.split())
        assert scores.sum() + intercept == pytest.approx(_probe_score(probe, text), abs=1e-4)


def test_word_shares_are_the_same_from_the_vectorizers_feature_rows(probe, inventory_items):
    # The reasons step makes each text's feature values from the n-grams it hashes for the
    # shares, without the vectorizer: the shares and spans must be those of the vectorizer's
    # rows (of a batch of texts, or of the text alone), exactly. (All 12,654 texts of
    # SpamAssassin and Insults were checked so too, with a random coefficient vector.)
    coef, _ = probe.coefs["scam"]
    texts = inventory_items["text"].to_pylist()[:30]
    texts += ["", "!!!", "Ünïcödé wörds, naïve café!", "emoji 😀 test\r\nline two", "a b a b a"]
    texts += ["ΟΔΟΣ ΣΟΦΟΣ straße ẞ", "a\u00a0b\u2009c \x1c d", "ＡＢＣ ｄｅｆ Ⅻ", "İstanbul İZMİR"]
    texts += ["ΝΟΜΟΣ:ΑΘΗΝΑ", "ΤΟΥΣ'ΑΛΛΟΥΣ ΦΙΛΟΥΣ"]  # a sigma's lower case depends on what follows
    batch = lexical_features(texts).tocsr()
    batch.sort_indices()
    rows = [batch[i] for i in range(len(texts))]
    for text, row in zip(texts, rows):
        words, scores = word_contributions(coef, text)
        words_b, scores_b = word_contributions(coef, text, row=row)
        assert words == words_b and np.array_equal(scores, scores_b)
        assert lexical_spans(coef, text) == lexical_spans(coef, text, row=row)
        alone = lexical_features([text]) if text.strip() else None
        assert alone is None or np.array_equal(word_contributions(coef, text, alone)[1], scores)


def test_lexical_spans_point_into_the_text_and_move_the_score(probe, inventory_items):
    coef, _ = probe.coefs["scam"]
    texts = inventory_items.filter(pa.compute.equal(inventory_items["label"], 1))["text"]
    dropped = 0
    for text in texts.to_pylist():
        spans = lexical_spans(coef, text)
        assert spans and all(text[s.start : s.end] == s.phrase for s in spans)
        assert all(s.weight > 0 and s.source == "lexical" for s in spans)
        dropped += _probe_score(probe, delete_spans(text, spans)) < _probe_score(probe, text)
    assert dropped == len(texts)


def test_lexical_highlights_are_content_words_not_pronouns(probe):
    """The probe weights 'You' and 'it' in "Congratulations! You won ..." (they do add to the
    score), but a reviewer cannot act on a highlighted pronoun: stop words may only extend a
    phrase around a content word ("claim it today"), never stand alone."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    coef, _ = probe.coefs["scam"]
    texts = [
        "Congratulations! You won a car. Pay a small $5 shipping fee to claim it today",
        "Claim your prize: you and your family are winners, your reward awaits you",
        "Guaranteed loan approval in 3 minutes, no credit check, bad credit ok, apply now",
    ]
    for text in texts:
        words, scores = word_contributions(coef, text)
        spans = lexical_spans(coef, text)
        assert spans, text
        for s in spans:
            assert text[s.start : s.end] == s.phrase and s.weight > 0
            tokens = re.findall(r"[^\W\d_]+", s.phrase.lower())
            assert any(t not in ENGLISH_STOP_WORDS for t in tokens), (s.phrase, text)
        # The strongest content word is still highlighted.
        content = [
            (score, text[a:b])
            for (a, b), score in zip(words, scores)
            if re.sub(r"\W", "", text[a:b].lower()) not in ENGLISH_STOP_WORDS
        ]
        best = re.sub(r"^\W+|\W+$", "", max(content)[1])
        assert any(best in s.phrase for s in spans), (best, [s.phrase for s in spans])
    phrases = [s.phrase for s in lexical_spans(coef, texts[0])]
    assert "You" not in phrases and "claim it today" in phrases, phrases
    # A word far weaker than the item's strongest is not worth a reviewer's attention.
    assert all("family" not in p for p in (s.phrase for s in lexical_spans(coef, texts[1])))


def test_long_texts_highlight_until_half_the_wording_evidence_is_covered(probe):
    """Six words carried too little of a long mail's evidence to move the ranker; past six,
    highlights go on until they carry half of the content words' positive contribution."""
    from riskrank.rank.phrases import COVER_SHARE, _is_stop_word

    coef, _ = probe.coefs["scam"]
    text = " ".join(SCAM).format(
        prize="car", fee="20", n="10", brand="Rolex", day="Monday", food="salmon", team="city"
    )
    words, scores = word_contributions(coef, text)
    by_type: dict[str, float] = {}
    for (a, b), score in zip(words, scores):
        key = re.sub(r"^\W+|\W+$", "", text[a:b].lower())
        if not _is_stop_word(key):
            by_type[key] = by_type.get(key, 0.0) + score
    positive = sum(v for v in by_type.values() if v > 0)
    spans = lexical_spans(coef, text)
    lit = {re.sub(r"^\W+|\W+$", "", text[a:b].lower()) for a, b in words} & {
        w for s in spans for w in re.findall(r"\S+", s.phrase.lower())
    }
    chosen = {w for w in lit if w in by_type}
    assert len(chosen) > 6, chosen
    assert sum(by_type[w] for w in chosen) >= COVER_SHARE * positive
    # The short ad of the same wording still gets few, strong words.
    assert len(lexical_spans(coef, SCAM[1])) <= 6


def test_shared_spans_are_word_runs_common_to_item_and_seed():
    text = "APPLY NOW: Guaranteed loan approval, no credit check. Of the best."
    seed = "Instant loan approval guaranteed, no credit check needed; the best of the best"
    spans = shared_spans(text, seed)
    # "approval, no" is not in the seed: two runs, not one; "of the" alone is all stop words.
    assert [s.phrase for s in spans] == ["loan approval", "no credit check", "Of the best"]
    assert all(text[s.start : s.end] == s.phrase and s.source == "seed" for s in spans)
    assert shared_spans(text, None) == [] and shared_spans("", seed) == []
    # As the item writes them (a lower-cased quote is not found by a case-sensitive search)
    assert flagged_phrases(spans, text) == ["no credit check", "Of the best", "loan approval"]
    assert shared_spans("of the day", "of the night") == []


def test_a_text_of_megabytes_is_read_to_the_probes_limit(probe):
    """A landing page pasted into an ad: the probe and the reasons read its first READ_CHARS
    characters (one 5.7 MB text had peaked a 200-item sweep at 2.3 GB of memory)."""
    from riskrank.recall.lexical import READ_CHARS

    coef, intercept = probe.coefs["scam"]
    head = "Guaranteed loan approval, no credit check. " + "our shop sells garden chairs " * 5000
    head = head[:READ_CHARS]
    text = head + " claim your prize now, wire the fee today" * 2000
    assert len(text) > READ_CHARS
    assert (lexical_features([text]) != lexical_features([head])).nnz == 0
    words, scores = word_contributions(coef, text)
    assert words and words[-1][1] <= READ_CHARS
    assert scores.sum() + intercept == pytest.approx(_probe_score(probe, head), abs=1e-4)
    spans = lexical_spans(coef, text)
    assert spans and all(s.end <= READ_CHARS and text[s.start : s.end] == s.phrase for s in spans)
    assert shared_spans(text, "claim your prize now, wire the fee") == []
    assert [s.phrase for s in shared_spans(text, "loan approval")] == ["loan approval"]
    # A text blank in what the probe reads has no score, as an empty one (a reviewer's note).
    blank = " " * READ_CHARS + "claim your prize now"
    assert np.isnan(probe.evidence("scam", ["b"], [blank], exclude_self=False)[FEATURE][0])


def test_flagged_phrases_merge_what_reads_as_one_mark():
    from riskrank.rank.phrases import Span

    text = "Cheap Rolex, 90% off, authentic quality. Congratulations! You won"
    spans = [
        Span(0, 5, "Cheap", "lexical", 0.5),
        Span(13, 20, "90% off", "lexical", 0.2),
        Span(13, 39, "90% off, authentic quality", "seed", 4.0),
        Span(41, 56, "Congratulations", "lexical", 0.9),
        Span(58, 65, "You won", "lexical", 0.1),
    ]
    assert flagged_phrases(spans, text) == [
        "Congratulations",
        "Cheap",
        "90% off, authentic quality",
        "You won",
    ]
    # Phrases differing only in case are one, written as the item first writes it.
    again = text + ". CHEAP"
    more = [*spans, Span(len(again) - 5, len(again), "CHEAP", "lexical", 0.5)]
    assert flagged_phrases(more, again)[:2] == ["Cheap", "Congratulations"]


def test_lexical_runs_stop_at_clause_breaks(probe):
    coef, _ = probe.coefs["scam"]
    text = "Congratulations! You won a car. Pay a small fee to claim it today"
    phrases = [s.phrase for s in lexical_spans(coef, text, max_words=20)]
    assert not any("!" in p or "." in p for p in phrases), phrases


def test_delete_spans_merges_overlaps():
    from riskrank.rank.phrases import Span

    text = "win a free iphone today"
    spans = [Span(4, 10, "a free", "seed"), Span(6, 17, "free iphone", "lexical")]
    assert delete_spans(text, spans) == "win today"


def test_queue_rows_carry_checkable_reasons(explained_sweep, history):
    inv, seeds, result = explained_sweep
    queue = result.queue
    for field in EXPLANATION_SCHEMA:
        assert queue.schema.field(field.name).type == field.type
    text_of = dict(zip(inv["item_id"].to_pylist(), inv["text"].to_pylist()))
    verdict_of = dict(zip(history["item_id"].to_pylist(), history["verdict"].to_pylist()))
    seed_ids = set(seeds["seed_id"].to_pylist())
    top = queue.slice(0, 20).to_pylist()
    for row in top:
        text = text_of[row["item_id"]]
        for span in row["highlight_spans"]:
            assert text[span["start"] : span["end"]] == span["phrase"]
        assert row["closest_seed_id"] in seed_ids
        assert row["closest_seed_policy"] == row["policy"]
        if row["policy"] == "scam":  # the policy with review history
            assert verdict_of[row["closest_reviewed_id"]] == row["closest_reviewed_verdict"]
            assert row["closest_reviewed_signal"] == "text"  # which signal its similarity is in
        assert row["explanation"] and "log-odds" not in row["explanation"]
        assert row["action"] in row["remediation"]
    # The data contract's footnote on NaN is not part of the words a reviewer reads beside a
    # number (an outsider saw "(NaN: none reviewed so) (text) = 0.735" in 182 of 300 rows).
    # (Which of the two history columns that carry the footnote leads the reasons is the
    # booster's choice: on a fresh install of 2026-12-06 the benign one, before it the other.)
    reasons = queue["reasons"].to_pylist()
    footnoted = ("reviewers confirmed violating", "reviewers found benign")
    assert any(name in r for r in reasons for name in footnoted)
    assert not any("NaN" in r for r in reasons)
    # Evidence that raises the risk by being low says so (a reviewer read "similarity to the
    # closest item reviewers found benign = 0.254" as resembling a benign item).
    from riskrank.recall.candidates import describe_feature, monotone_direction

    names = result.candidates.column_names
    lowering = {describe_feature(f) for f in names if monotone_direction(f) < 0}
    parts = [p for r in reasons for p in r.split("; ") if p]
    low = [p for p in parts if p.rsplit(" = ", 1)[0] in lowering]
    assert low and all(p.endswith(" (low)") for p in low)
    assert not any(p.endswith(" (low)") for p in parts if p not in low)
    # A negative log-odds (or z-score) that raised the score says how (an outsider read
    # "log-odds of a linear classifier ... = -1.23" as the classifier leaning benign).
    negative = [p for p in parts if not p.endswith(")") and " = -" in p]
    assert not negative, negative[:3]
    said = [p for p in parts if p.endswith(" (negative, yet higher than usual)")]
    assert all(" = -" in p and p.rsplit(" = ", 1)[0] not in lowering for p in said)
    # Violations queued under the policy with history are explained by their wording and by
    # earlier rejections.
    label_of = dict(zip(inv["item_id"].to_pylist(), inv["label"].to_pylist()))
    scam = [r for r in queue.to_pylist() if r["policy"] == "scam" and label_of[r["item_id"]]]
    assert len(scam) >= 5
    assert sum(bool(r["flagged_phrases"]) for r in scam) >= len(scam) - 1
    assert sum("found violating" in r["explanation"] for r in scam) >= len(scam) // 2
    # A policy without review history still gets a closest seed and a sentence.
    cold = [r for r in queue.to_pylist() if r["policy"] == "diet"]
    assert cold and all(r["closest_seed_id"].startswith("d") and r["explanation"] for r in cold)
    evil = next(r for r in queue.to_pylist() if r["item_id"] == "evil")
    assert evil["explanation"]
    if evil["policy"] == "scam":  # else the cold policy's transferred probability won
        assert any(s["source"] == "seed" for s in evil["highlight_spans"])
        assert "no credit check" in evil["explanation"]


def test_readme_documents_every_queue_column():
    from riskrank.rank.queue import QUEUE_SCHEMA

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", readme, re.M))
    for name in [f.name for f in QUEUE_SCHEMA] + [f.name for f in EXPLANATION_SCHEMA]:
        assert name in documented, f"queue column {name} is not in the README's queue table"


def _unexplained(queue: pa.Table) -> pa.Table:
    return queue.drop([c for c in EXPLANATION_SCHEMA.names if c in queue.column_names])


def _same(a: pa.Table, b: pa.Table) -> bool:
    """Column by column, NaN equal to NaN (a text seed's hash distance is NaN)."""
    for name in EXPLANATION_SCHEMA.names:
        for x, y in zip(a.column(name).to_pylist(), b.column(name).to_pylist(), strict=True):
            if x != y and not (x != x and y != y):
                return False
    return True


def test_the_caches_are_keyed_by_how_much_of_a_text_the_probe_reads(trained_model, monkeypatch):
    """Scores and spans cached before READ_CHARS (of a whole long text) were reused after it
    (a reviewer's finding): the model identity and the shared-span key both name the rule."""
    from riskrank.rank import sweep_cache

    before = (
        sweep_cache.model_identity(trained_model.info),
        sweep_cache.SpanCache.shared_key("an item", "a seed"),
    )
    monkeypatch.setattr(sweep_cache, "READ_RULE", "read_chars=None")
    after = (
        sweep_cache.model_identity(trained_model.info),
        sweep_cache.SpanCache.shared_key("an item", "a seed"),
    )
    assert before[0] and after[0] and before[0] != after[0] and before[1] != after[1]


def test_the_caches_are_keyed_by_the_span_computations_version(trained_model, monkeypatch):
    """Spans a sweep cached were reused whatever rank/phrases.py computes now: its version is
    part of both span keys, so a change that bumps it attributes every text anew."""
    from riskrank.rank import phrases, sweep_cache

    cache = sweep_cache.SpanCache(None, sweep_cache.model_identity(trained_model.info))

    def keys():
        return (cache.lexical_key("scam", "an item"), cache.shared_key("an item", "a seed"))

    before = keys()
    monkeypatch.setattr(phrases, "SPANS_VERSION", phrases.SPANS_VERSION + 1)
    after = keys()
    assert before[0] != after[0] and before[1] != after[1]
    # The probe's scores do not depend on it: the model's identity (their key) stays.
    assert cache.model_id == sweep_cache.model_identity(trained_model.info)


def test_cached_attributions_give_the_reasons_an_uncached_sweep_gives(
    explained_sweep, trained_model, tmp_path
):
    from riskrank.rank.reasons import explain_queue
    from riskrank.rank.sweep_cache import SpanCache, model_identity
    from riskrank.recall.seeds import SeedSet

    _, seeds, result = explained_sweep
    queue, cands = _unexplained(result.queue), result.candidates
    seeds = SeedSet.from_table(seeds)
    path = tmp_path / "reasons.parquet"
    model_id = model_identity(trained_model.info)
    assert model_id  # a trained (saved) model has an identity

    first = SpanCache(path, model_id)
    fresh = explain_queue(queue, cands, trained_model, seeds, cache=first)
    assert _same(fresh, result.queue) and first.computed > 0 and path.exists()
    # Copies of one text are attributed once even in one sweep.
    assert first.computed < 2 * queue.num_rows

    again = SpanCache(path, model_id)
    assert _same(explain_queue(queue, cands, trained_model, seeds, cache=again), fresh)
    assert again.counts() == {"attributed": 0, "reused": first.computed}

    # An edited text is attributed anew (never stale); every other one comes from the file.
    texts = cands.column("text").to_pylist()
    edited = queue.column("item_id")[0].as_py()
    for at, item_id in enumerate(cands.column("item_id").to_pylist()):  # a row per policy
        if item_id == edited:
            texts[at] = texts[at] + " Act now: guaranteed approval, no credit check!"
    cands2 = cands.set_column(cands.column_names.index("text"), "text", pa.array(texts))
    third = SpanCache(path, model_id)
    cached = explain_queue(queue, cands2, trained_model, seeds, cache=third)
    assert _same(cached, explain_queue(queue, cands2, trained_model, seeds))
    assert not _same(cached, fresh)
    rows_of_edited = queue.column("item_id").to_pylist().count(edited)  # one per policy
    assert 1 <= third.computed <= 2 * rows_of_edited  # its lexical and its shared spans
    assert third.counts()["reused"] > 0

    # Another model's lexical attributions are not this one's.
    other = SpanCache(path, "another-model")
    assert _same(explain_queue(queue, cands2, trained_model, seeds, cache=other), cached)
    assert other.computed > third.computed
    # A corrupt file is ignored, loudly.
    path.write_bytes(b"not parquet")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("riskrank.rank.sweep_cache")
    logger.addHandler(handler)  # pytest's logging plugin is off (pyproject.toml)
    try:
        broken = explain_queue(queue, cands, trained_model, seeds, cache=path)
    finally:
        logger.removeHandler(handler)
    assert _same(broken, fresh)
    assert any("ignoring the reasons cache" in r.getMessage() for r in records)


def test_an_unchanged_standing_index_is_swept_without_vectorizing_any_text(
    explained_sweep, trained_model, tmp_path, monkeypatch
):
    """The lexical probe's scores and the phrase attributions of the last sweep's texts are
    reused (rank/sweep_cache.py): the n-gram vectorizer sees no text, the queue is the same."""
    import importlib
    import shutil

    from riskrank.rank.pipeline import sweep
    from riskrank.rank.policy_memo import FILE as POLICIES
    from riskrank.rank.reasons_memo import FILE as EXPLAINED
    from riskrank.recall.lexical import lexical_features

    _, seeds, fixture = explained_sweep
    standing = tmp_path / "standing"
    shutil.copytree(fixture.out_dir / "index", standing)
    (standing / EXPLAINED).unlink(missing_ok=True)  # the reasons are built, from the caches
    # The cache is keyed to the model's identity (its saved files' checksums); another test
    # may have saved the session's model object elsewhere since, so sweep once to key it.
    first = sweep(
        None, seeds, trained_model, index_dir=standing, out_dir=tmp_path / "first",
        show_progress=False,
    )  # fmt: skip
    assert (standing / "cache" / "lexical.parquet").exists()
    vectorized: list[int] = []

    def counting(texts):
        vectorized.append(len(texts))
        return lexical_features(texts)

    # By module object: the package attribute ``riskrank.recall`` is the recall function.
    for name in ("riskrank.recall.lexical", "riskrank.rank.phrases"):
        monkeypatch.setattr(importlib.import_module(name), "lexical_features", counting)
    # Recall runs (the policy's rows are not taken whole from the last sweep: policy_memo),
    # and so do the reasons (nor are they: reasons_memo).
    (standing / POLICIES).unlink()
    (standing / EXPLAINED).unlink()
    again = sweep(
        None, seeds, trained_model, index_dir=standing, out_dir=tmp_path / "out",
        show_progress=False,
    )  # fmt: skip
    assert vectorized == []
    used = sum(first.report["reasons"].values())  # all of them, attributed or reused
    assert again.report["reasons"] == {"attributed": 0, "reused": used}
    assert again.queue["item_id"].to_pylist() == first.queue["item_id"].to_pylist()
    np.testing.assert_array_equal(
        again.candidates["hist_lexical_probe_score"].to_numpy(),
        first.candidates["hist_lexical_probe_score"].to_numpy(),
    )
    assert _same(again.queue, first.queue)

    # A text edited since is vectorized (its own score, never the old one), the rest is not.
    (standing / "cache" / "lexical.parquet").unlink()
    (standing / POLICIES).unlink()
    again2 = sweep(
        None, seeds, trained_model, index_dir=standing, out_dir=tmp_path / "out2",
        show_progress=False,
    )  # fmt: skip
    assert sum(vectorized) > 0  # the memo file was gone: every text scored anew, same scores
    np.testing.assert_array_equal(
        again2.candidates["hist_lexical_probe_score"].to_numpy(),
        first.candidates["hist_lexical_probe_score"].to_numpy(),
    )


def test_probe_memo_hits_are_the_scores_the_ngrams_give(history):
    from riskrank.recall.lexical import LexicalProbe, score_key

    rows = history.filter(pa.compute.is_valid(history["text"]))
    probe = LexicalProbe.fit(
        rows["text"].to_pylist(), rows["policy"].to_pylist(), rows["verdict"].to_pylist(),
        rows["item_id"].to_pylist(),
    )  # fmt: skip
    policy = probe.policies[0]
    texts = [*rows["text"].to_pylist()[:20], "", None, "guaranteed approval today"]
    ids = [f"x{i}" for i in range(len(texts))]
    fresh = probe.evidence(policy, ids, texts, exclude_self=False)["hist_lexical_probe_score"]
    probe.memo = {score_key(policy, t): float(s) for t, s in zip(texts[:10], fresh[:10])}
    probe.memo[score_key(policy, texts[-1])] = 123.0  # a hit is used as it is
    memo = probe.evidence(policy, ids, texts, exclude_self=False)["hist_lexical_probe_score"]
    np.testing.assert_array_equal(memo[:-1], fresh[:-1])
    assert memo[-1] == 123.0 and np.isnan(memo[20]) and np.isnan(memo[21])


def test_probe_scores_of_texts_vectorized_in_batches_are_the_scores_of_all_at_once(
    probe, history, monkeypatch
):
    """A policy's candidates are vectorized a few million characters at a time (the n-gram
    matrix of all of them was 2.0 of a 3.7 GB peak on 150,000 real mails): the same scores,
    bit for bit."""
    from riskrank.recall import lexical

    texts = [*history["text"].to_pylist(), "", None, "x" * 300]
    ids = [f"x{i}" for i in range(len(texts))]
    whole = probe.evidence("scam", ids, texts, exclude_self=False)[FEATURE]
    monkeypatch.setattr(lexical, "BATCH_CHARS", 200)
    assert len(lexical._batches(texts)) > 10
    cut = probe.evidence("scam", ids, texts, exclude_self=False)[FEATURE]
    np.testing.assert_array_equal(cut, whole)


def test_a_recall_vectorizes_each_distinct_text_once_for_all_its_policies(
    probe, history, monkeypatch
):
    """The probe's n-grams do not depend on the policy, and inventories hold exact copies: one
    recall vectorizes each distinct text once and scores it for every policy then. The same
    scores as each policy's own pass, bit for bit (half of a sweep of real mails was the
    vectorizer, run again for each policy and copy)."""
    from riskrank.recall import lexical

    coef, intercept = probe.coefs["scam"]
    two = LexicalProbe({"scam": (coef, intercept), "other": (coef[::-1].copy(), -0.3)})
    texts = history["text"].to_pylist()[:30]
    texts = [*texts, *texts[:10], None, "", " "]
    ids = [f"x{i}" for i in range(len(texts))]
    alone = {p: two.evidence(p, ids, texts, exclude_self=False)[FEATURE] for p in two.coefs}
    vectorized = []
    features = lexical.lexical_features
    monkeypatch.setattr(lexical, "lexical_features", lambda t: vectorized.extend(t) or features(t))
    shared = lexical.ProbeScores(two, ["scam", "other", "no probe"])
    for policy in ("scam", "other"):
        together = two.evidence(policy, ids, texts, exclude_self=False, scores=shared)[FEATURE]
        np.testing.assert_array_equal(together, alone[policy])
    assert sorted(vectorized) == sorted(set(texts[:30]))
    assert alone["scam"][0] == np.float32(_probe_score(probe, texts[0]))
    assert np.isnan(alone["other"][-3:]).all()


def test_reasons_from_the_rankings_contributions_equal_reasons_computed_again(
    explained_sweep, trained_model
):
    # The sweep hands the ranker's per-feature contributions to the reasons step instead of
    # running pred_contrib over the queue a second time: the same reasons either way, for
    # both model variants (the diet policy runs cold).
    from riskrank.rank.pipeline import queued_rows
    from riskrank.rank.reasons import explain_queue
    from riskrank.recall.seeds import SeedSet

    _, seeds, result = explained_sweep
    cands, ranker = result.candidates, trained_model.ranker
    scored = ranker.score(cands)
    assert set(scored.variant) == {"full", "cold"}
    np.testing.assert_array_equal(scored.contributions, ranker.contributions(cands))
    queue = result.queue
    kept = queued_rows(queue, cands, scored.contributions)
    assert kept is not None and len(kept) == queue.num_rows
    seed_set = SeedSet.from_table(seeds)
    again = explain_queue(queue, cands, trained_model, seed_set)
    given = explain_queue(queue, cands, trained_model, seed_set, contributions=kept)
    assert given.to_pandas().equals(again.to_pandas())
    assert again.to_pandas().equals(queue.to_pandas())  # what the sweep itself wrote


def test_reasons_explained_a_few_rows_at_a_time_equal_all_at_once(
    explained_sweep, trained_model, monkeypatch
):
    # A queue is explained a slice at a time (memory); slices of 3 rows, with and without the
    # ranker's contributions, give the reasons the sweep wrote in one slice.
    import riskrank.rank.reasons as reasons
    from riskrank.rank.pipeline import queued_rows
    from riskrank.recall.seeds import SeedSet

    _, seeds, result = explained_sweep
    cands, queue = result.candidates, result.queue
    assert queue.num_rows > 6
    kept = queued_rows(queue, cands, trained_model.ranker.score(cands).contributions)
    monkeypatch.setattr(reasons, "REASON_ROWS", 3)
    seed_set = SeedSet.from_table(seeds)
    for contributions in (None, kept):
        sliced = reasons.explain_queue(
            queue, cands, trained_model, seed_set, contributions=contributions
        )
        assert sliced.to_pandas().equals(queue.to_pandas())


def test_span_cache_reads_back_what_it_saved(tmp_path):
    from riskrank.rank.phrases import Span
    from riskrank.rank.sweep_cache import SPAN_TYPE, SpanCache

    assert Span._fields == tuple(f.name for f in SPAN_TYPE)  # read back by position
    cache = SpanCache(tmp_path / "reasons.parquet", "model-1")
    spans = {
        "a": [Span(0, 5, "Cheap", "lexical", 0.5), Span(6, 9, "now", "seed", 2.0)],
        "b": [],  # a text with nothing to highlight is kept too (not attributed again)
        "c": [Span(3, 4, "é", "lexical", 1e-9)],
    }
    for key, value in spans.items():
        cache.put(key, value)
    cache.save()
    again = SpanCache(tmp_path / "reasons.parquet", "model-1")
    assert again.stored == spans
    assert again.missing(["a", "b", "c", "d"]) == ["d"]


def test_a_highlight_over_a_whole_pasted_text_is_kept_short():
    """A 200 KB text highlighted end to end was one 199,996-character flagged phrase, carried
    in every queue row twice; the phrase keeps its start (the spans keep where it is)."""
    from riskrank.rank.phrases import PHRASE_CHARS, Span, flagged_phrases

    text = "free money click here now " * 8000
    phrases = flagged_phrases([Span(0, len(text) - 1, text[:-1], "lexical", 1.0)], text)
    assert len(phrases) == 1 and len(phrases[0]) <= PHRASE_CHARS
    assert phrases[0].startswith("free money click here now") and phrases[0].endswith(" ...")


def test_the_closest_seed_is_one_that_matches_when_some_signal_matches():
    """A ranker trained on texts leans on text; a row whose picture is 2 bits from a seed's
    was explained "no seed is close (text similarity 0.28)" (an outsider's week of sweeps)."""
    from riskrank.rank.reasons import _closest_seed, _seed_clause

    row = {
        "text_best_seed_id": "s-text", "text_best_sim": 0.28,
        "pdq_best_seed_id": "s-pic", "pdq_best_sim": 1 - 2 / 256, "pdq_best_distance": 2.0,
    }  # fmt: skip
    weak = {"text": 0.5, "pdq": 1 - 62 / 256}
    contrib = {"seed:text": 0.9, "seed:pdq": 0.01}
    seed = _closest_seed(row, ["text", "pdq"], contrib, {}, weak)
    assert seed["id"] == "s-pic" and seed["signal"] == "pdq"
    clause = _seed_clause(RowEvidence(spans=[], seed=seed, reviewed={}, contrib=contrib))
    assert clause == "its image is a near-copy of seed s-pic (PDQ: 2 bits differ)"
    # No signal matches: the one the ranker leaned on, as before.
    far = {**row, "pdq_best_sim": 0.6, "pdq_best_distance": 102.0}
    assert _closest_seed(far, ["text", "pdq"], contrib, {}, weak)["signal"] == "text"
    # A picture 102 bits away is no near-copy, whichever signal is named (a review).
    lean = {"seed:pdq": 0.9}
    seed = _closest_seed(far, ["text", "pdq"], lean, {}, weak)
    clause = _seed_clause(RowEvidence(spans=[], seed=seed, reviewed={}, contrib=lean))
    assert clause == "no seed is close (nearest s-pic, PDQ: 102 bits differ)"
    # Another signal overrides only where it matches strongly: CLIP's unmeasured weak level
    # explained text rows by a loosely similar picture (a review).
    clip = {**row, "image_best_seed_id": "s-img", "image_best_sim": 0.55}
    del clip["pdq_best_seed_id"]
    levels = ({"text": 0.5, "image": 0.5}, {"text": 0.7, "image": 0.7})
    assert _closest_seed(clip, ["text", "image"], contrib, {}, *levels)["signal"] == "text"
    clip["image_best_sim"] = 0.8
    assert _closest_seed(clip, ["text", "image"], contrib, {}, *levels)["signal"] == "image"


def test_an_items_own_earlier_review_is_not_called_a_near_copy():
    """An ad edited after its review is queued again; its closest review is its own earlier
    version, which read "1 near-copy was rejected" (an outsider's week of sweeps)."""
    from riskrank.rank.reasons import _history_clause

    own = {"id": "ad-1", "verdict": 2, "sweep": "day-0", "near_violating": 1, "own": True}
    said = _history_clause(RowEvidence([], {}, {**own, "status": "changed"}, {}))
    assert said == "this item was found violating in day-0, and it has changed since"
    said = _history_clause(RowEvidence([], {}, {**own, "near_violating": 3}, {}))
    assert said == (
        "this item was found violating in day-0; 2 other near-copies were found violating"
    )
    other = {**own, "own": False, "id": "ad-9"}
    said = _history_clause(RowEvidence([], {}, other, {}))
    assert said == "1 near-copy was found violating in day-0"


def test_a_review_says_the_day_its_queue_was_swept_and_the_campaign_decided():
    """``review-v3`` names the model version an import made, and read as today's decision
    when day-1 verdicts were imported late; a campaign decided yesterday was not named where
    its new near-copies came back (an outsider's week)."""
    from riskrank.rank.reasons import _decided_campaign, _history_clause

    rev = {"id": "ad-9", "verdict": 2, "sweep": "review-v3", "near_violating": 14}
    rev |= {"swept_at": "2026-12-05T06:00:00+00:00", "campaign": "c-ad-1"}
    assert _history_clause(RowEvidence([], {}, rev, {})) == (
        "14 near-copies were found violating; the closest in review-v3 (queue of 2026-12-05) with "
        "campaign c-ad-1"
    )
    own = {**rev, "own": True, "near_violating": 1, "status": "changed"}
    assert _history_clause(RowEvidence([], {}, own, {})) == (
        "this item was found violating in review-v3 (queue of 2026-12-05) with campaign c-ad-1, "
        "and it has changed since"
    )
    assert _decided_campaign("campaign:c-ad-1 correction") == "c-ad-1"
    assert _decided_campaign("item") is None and _decided_campaign(None) is None


def test_the_explanation_is_one_line_when_a_phrase_spans_lines():
    from riskrank.rank.phrases import Span
    from riskrank.rank.reasons import sentence

    spans = [Span(0, 16, "claim\r\nyour  prize", "lexical", 1.0)]
    said = sentence(RowEvidence(spans=spans, seed={}, reviewed={}, contrib={"lexical": 1.0}))
    assert said == "Uses 'claim your prize'"


def _coef_for(words: str) -> np.ndarray:
    """A probe's coefficients that weigh exactly the n-grams of ``words``."""
    return np.asarray(lexical_features([words]).toarray()[0], np.float32)


def test_a_flagged_word_on_many_lines_is_not_one_long_phrase():
    # 100 lines of one flagged word were one 622-character span; its phrase, cut to 200
    # characters, was all the remediation named, never the insult after it (an outsider's
    # report). A line ends a phrase as a clause break does.
    text = "line\r\n" * 100 + "you are a stupid idiot and a moron\r\nyou filthy pig"
    spans = lexical_spans(_coef_for("line stupid idiot moron filthy pig"), text)
    assert all(text[s.start : s.end] == s.phrase for s in spans)
    assert not any("\r" in s.phrase or "\n" in s.phrase for s in spans)
    assert flagged_phrases(spans, text) == ["line", "stupid idiot", "filthy pig", "moron"]


def test_markup_is_not_part_of_a_flagged_phrase():
    # Phrases began inside a tag ('p>you are a <b>stupid</b> idiot') and carried markup and
    # script into the remediation; then a tag before punctuation ('scheme</b'), a tag's
    # attributes ('color="red">guaranteed') and a lone '<br>' ('br') still did (outsiders'
    # reports). The spans still point into the raw text; markup is never highlighted or quoted.
    coef = _coef_for("stupid idiot moron filthy pig guaranteed crypto doubling scheme br alert")
    cases = {
        "<p>You are a <b>stupid</b> idiot &amp; a <i>moron</i></p>"
        # (</p> ends the paragraph: "filthy pig" is read on a line of its own, as in a browser)
        "<script>alert(1)</script> filthy pig": ["You are a stupid idiot", "filthy pig", "a moron"],
        "<b>guaranteed crypto doubling scheme</b>. call now": ["guaranteed crypto doubling scheme"],
        '<font color="red">guaranteed</font> crypto doubling scheme': [
            "guaranteed crypto doubling scheme"
        ],
        '<a href="http://x.example">guaranteed crypto doubling</a>, scheme today': [
            "guaranteed crypto doubling",
            "scheme",
        ],
        "<p><b>guaranteed crypto doubling scheme</b></p>\n<br>\ncall now": [
            "guaranteed crypto doubling scheme"
        ],
    }
    for text, want in cases.items():
        spans = lexical_spans(coef, text)
        assert all(text[s.start : s.end] == s.phrase for s in spans)
        assert flagged_phrases(spans, text) == want, text


def test_angle_brackets_that_are_not_markup_are_quoted_as_written():
    # Every "<...>" was dropped as a tag: "invest < $50 today and get > $5000" was quoted as
    # "invest $5000", a phrase the ad does not hold (an outsider's report).
    from riskrank.rank.phrases import Span

    for text in (
        "invest < $50 today and get > $5000",
        "email me at <winner@lotto-prize.example> to claim",
        "you moron <you idiot loser> you moron",
        "<u r a stupid moron idiot> bye",  # (an element's name, words but no attribute value)
        "if a<b and c>d",
    ):
        assert flagged_phrases([Span(0, len(text), text, "lexical", 1.0)], text) == [text]
    spans = lexical_spans(_coef_for("moron idiot loser"), "you moron <you idiot loser> you")
    assert "idiot loser" in " ".join(s.phrase for s in spans)


def test_no_picture_remedy_or_reviewed_item_where_nothing_is_close():
    # A picture 106 bits from every seed's was told "replace the image that matches seed
    # s_img0", and one 110 bits from every reviewed picture read "the closest reviewed item
    # h007 was found benign" (an outsider's report): both only where the match holds.
    from riskrank.rank.reasons import remediation, sentence

    far = {"id": "s_img0", "signal": "pdq", "similarity": 0.59, "distance": 106.0, "weak": 0.8}
    near = {**far, "similarity": 0.99, "distance": 2.0}
    assert remediation("escalate", [], far) == "escalate"
    assert (
        remediation("escalate", [], near) == "escalate: replace the image that matches seed s_img0"
    )
    benign = {"id": "h007", "verdict": 0, "similarity": 0.57, "signal": "pdq", "close": False}
    said = sentence(RowEvidence(spans=[], seed=far, reviewed=benign, contrib={"history": 1.0}))
    assert "the closest reviewed item" not in said
    assert "policy is close (nearest h007, found benign; PDQ similarity 0.57)" in said
    close = {**benign, "similarity": 0.97, "close": True}
    said = sentence(RowEvidence(spans=[], seed=near, reviewed=close, contrib={"history": 1.0}))
    assert "he closest reviewed item h007 was found benign" in said


def test_an_item_queued_as_changed_is_told_its_own_review():
    # An ad whose picture was replaced after it was rejected came back with "the closest
    # reviewed item h007 was found benign" (another picture's review), never that it was
    # rejected itself; and an edited text's own review never said "changed since", the
    # queue's `reviewed` column not being read (an outsider's report).
    from riskrank.rank.reasons import _explain_row, _own_review

    row = {"item_id": "x", "policy": "scam", "reviewed": "changed", "previous_verdict": 2}
    stored = {"pdq": {"x": {"sweep_id": "review-v2", "queue_swept_at": "2026-12-06T06:00:00"}}}
    closest = {"id": "h007", "verdict": 0, "similarity": 0.57, "signal": "pdq", "close": False}
    own = _own_review(row, stored)
    out = _explain_row(row, None, {"history": 1.0}, {}, [], closest, own)
    assert out["explanation"] == (
        "This item was found violating in review-v2 (queue of 2026-12-06), and it has changed since"
    )
    assert out["closest_reviewed_id"] == "h007"  # the columns keep the closest review
    assert _own_review({**row, "previous_verdict": None}, stored) is None
    # Another policy's later review is not this verdict's round.
    other = {"pdq": {"x": {**stored["pdq"]["x"], "policy": "insult", "sweep_id": "review-v3"}}}
    out = _explain_row(row, None, {"history": 1.0}, {}, [], closest, _own_review(row, other))
    assert out["explanation"] == "This item was found violating, and it has changed since"


def test_a_review_under_another_policy_is_said():
    # "No reviewed item is close" was said of an item rejected as severe under scam, queued
    # under counterfeit (history evidence is per policy; an outsider's report).
    from riskrank.rank.reasons import _explain_row

    row = {"item_id": "x", "policy": "counterfeit", "reviewed_elsewhere": ["scam:3"]}
    closest = {"id": "h9", "verdict": 0, "similarity": 0.58, "signal": "pdq", "close": False}
    out = _explain_row(row, None, {"history": 1.0}, {}, [], closest)
    assert out["explanation"] == (
        "No item reviewed for this policy is close (nearest h9, found benign; PDQ similarity "
        "0.58); this item was found severely violating under scam"
    )
    alone = _explain_row(row, None, {"history": 1.0}, {}, [], {})
    assert alone["explanation"] == "This item was found severely violating under scam"


def test_the_labelled_historys_unnamed_sweep_is_not_said():
    """The demo said "2 near-copies were rejected; the closest in history" on 346 items:
    "history" is the sweep_id of history rows that name none, which says nothing."""
    from riskrank.rank.reasons import _history_clause

    rev = {"id": "h-1", "verdict": 2, "sweep": "history", "near_violating": 2}
    assert _history_clause(RowEvidence([], {}, rev, {})) == "2 near-copies were found violating"
    one = {**rev, "near_violating": 0}
    assert _history_clause(RowEvidence([], {}, one, {})) == (
        "the closest reviewed item h-1 was found violating"
    )
    named = {**rev, "sweep": "day-3"}
    assert _history_clause(RowEvidence([], {}, named, {})) == (
        "2 near-copies were found violating; the closest in day-3"
    )


def test_a_flat_pictures_pdq_match_is_said_to_be_unreliable():
    """A blank white ad was "a near-copy of seed s_white (PDQ: 0 bits differ)" while its own
    hash had quality 0: flat pictures hash alike (an outsider's picture inventory). The floor
    is the signal's own (PdqSignal.quality_floor)."""
    import io

    from PIL import Image

    from riskrank.index.signals.pdq import PdqSignal
    from riskrank.rank.reasons import _closest_seed, _seed_clause

    signal = PdqSignal()
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(buf, "PNG")
    hashed = signal.embed_items(pa.table({"item_id": ["w"], "image_bytes": [buf.getvalue()]}))
    quality = float(hashed.quality[0])
    assert quality < signal.quality_floor
    row = {"pdq_best_seed_id": "s_white", "pdq_best_sim": 1.0, "pdq_best_distance": 0.0}
    floors = {"pdq": signal.quality_floor}
    contrib = {"seed:pdq": 1.0}
    flat = _closest_seed({**row, "pdq_quality": quality}, ["pdq"], contrib, {}, {"pdq": 0.8},
                         floors=floors)  # fmt: skip
    said = _seed_clause(RowEvidence(spans=[], seed=flat, reviewed={}, contrib=contrib))
    assert said == (
        f"its image hashes like seed s_white (PDQ: 0 bits differ), but it is nearly flat "
        f"(quality {quality:.0f} of 100), and flat pictures hash alike"
    )
    sharp = _closest_seed({**row, "pdq_quality": 90.0}, ["pdq"], contrib, {}, {"pdq": 0.8},
                          floors=floors)  # fmt: skip
    said = _seed_clause(RowEvidence(spans=[], seed=sharp, reviewed={}, contrib=contrib))
    assert said == "its image is a near-copy of seed s_white (PDQ: 0 bits differ)"


def test_a_phrase_ends_where_markup_ends_a_sentence_or_a_line():
    """ "moron.</p><p>Go" and "idiot</div><div>go" are one whitespace word each: the phrase
    ran across the break ("you are an idiot and a moron. go away", text a reviewer cannot
    find), and a seed's shared words ran across sentence ends (an outsider's report)."""
    from riskrank.rank.phrases import flagged_phrases, plain, shared_spans

    coef = _coef_for("idiot moron loser stupid go away")
    plain_text = flagged_phrases(
        lexical_spans(coef, "You are an idiot and a moron. Go away, loser"),
        "You are an idiot and a moron. Go away, loser",
    )
    for text in (
        "<p>You are an idiot and a moron.</p><p>Go away, loser</p>",
        "You are an idiot and a moron.<br>Go away, loser",
        "You are an idiot and a moron.</p> <p>Go away, loser",
        "You are an idiot and a moron.<b>Go</b> away, loser",
    ):
        spans = lexical_spans(coef, text)
        assert sorted(flagged_phrases(spans, text)) == sorted(plain_text), text
        assert not any(". go" in plain(s.phrase.lower()) for s in spans)
    text = "<div>you stupid idiot</div><div>go away loser</div>"
    assert flagged_phrases(lexical_spans(coef, text), text) == [
        "you stupid idiot", "go away loser"
    ]  # fmt: skip
    # An inline tag inside a word is read as nothing, a block element as a break.
    assert plain("stu<b>pid</b> idiot") == "stupid idiot" and plain("a<br>b") == "a b"
    # Shared with a seed: runs stop at sentence and line ends, not at a price's point.
    seed = "you are a moron go away now only $5.99 today"
    said = [s.phrase for s in shared_spans("you are a moron. Go away now", seed)]
    assert said == ["you are a moron", "Go away now"]
    assert [s.phrase for s in shared_spans("win big<br>only $5.99 today", seed)] == [
        "only $5.99 today"
    ]


def test_remediation_names_only_words_that_raised_the_score():
    """ "escalate: change or remove 'doctor'" on a comment at P 0.05 whose lexical evidence
    lowered its score, beside an explanation naming no word (an outsider's report): what to
    change is what the explanation names."""
    from riskrank.rank.phrases import Span
    from riskrank.rank.reasons import _explain_row

    text = "You're forgetting DOCTOR WHO THEME, you fool"
    spans = [Span(18, 24, "DOCTOR", "lexical", 0.3), Span(40, 44, "fool", "seed", 1.0)]
    seed = {"id": "s1", "signal": "text", "similarity": 0.9, "distance": float("nan"),
            "weak": 0.5, "text": "fool"}  # fmt: skip
    row = {"item_id": "x", "policy": "insult", "action": "escalate"}
    low = _explain_row(row, text, {"seed:text": 0.4, "lexical": 0.0}, seed, list(spans), {})
    assert "DOCTOR" not in low["remediation"] and "DOCTOR" not in low["explanation"]
    assert low["remediation"] == "escalate: change or remove 'fool'"
    assert low["flagged_phrases"] == ["DOCTOR", "fool"]  # (still highlighted: it is evidence)
    high = _explain_row(row, text, {"seed:text": 0.4, "lexical": 0.5}, seed, list(spans), {})
    assert "'DOCTOR'" in high["remediation"] and "'DOCTOR'" in high["explanation"]


def test_a_shared_run_is_one_stretch_of_the_seed():
    """Chained word pairs quoted "do not wish to receive" of a seed saying "does not wish to
    receive" ("do not" stood in "DO NOT REPLY"), and "this is professional" of "this is a
    professional" (an outsider's report): every quoted run is in the seed, word for word."""
    seed = (
        "We don't want anyone to receive our mailings who does not wish to receive them. "
        "This is a professional communication sent to insurance professionals. To be "
        "removed from this mailing list, DO NOT REPLY to this message."
    )
    text = (
        "If you do not wish to receive this, reply. This is professional communication sent "
        "to insurance professionals: please reply to this message now"
    )
    said = [s.phrase for s in shared_spans(text, seed)]
    assert said == [
        "not wish to receive", "professional communication sent to insurance professionals",
        "reply to this message",
    ]  # fmt: skip

    def words(t):
        return " ".join(re.findall(r"\w+", t.lower()))

    assert all(words(p) in words(seed) for p in said)


def test_a_seed_far_in_similarity_but_near_in_this_inventory_is_said_so():
    """A new policy's rows at P 0.985 read only "No seed is close (nearest sp4, text
    similarity 0.48)" (an outsider's cold start): where the ranker leaned on the seed, the
    sentence says how near the item is to it among today's items."""
    from riskrank.rank.reasons import _closest_seed, _ordinal, _seed_clause

    row = {"text_best_seed_id": "sp4", "text_best_sim": 0.48, "text_best_rank": 17.0}
    leaned = {"seed:text": 0.8}
    seed = _closest_seed(row, ["text"], leaned, {}, {"text": 0.5})
    said = _seed_clause(RowEvidence([], seed, {}, leaned))
    assert said == (
        "no seed is close (nearest sp4, text similarity 0.48; the 17th nearest item to it in "
        "this inventory)"
    )
    not_leaned = _seed_clause(RowEvidence([], seed, {}, {"history": 0.8}))
    assert not_leaned == "no seed is close (nearest sp4, text similarity 0.48)"
    far = _closest_seed({**row, "text_best_rank": 5001.0}, ["text"], leaned, {}, {"text": 0.5})
    assert _seed_clause(RowEvidence([], far, {}, leaned)).endswith("similarity 0.48)")
    # Short of the match level by a hair: cut, not rounded up to it ("similarity 0.50" beside
    # a match level of 0.50: an outsider's report).
    hair = _closest_seed({**row, "text_best_sim": 0.4958}, ["text"], {}, {}, {"text": 0.5})
    assert _seed_clause(RowEvidence([], hair, {}, {})) == (
        "no seed is close (nearest sp4, text similarity 0.49)"
    )
    # Recall writes k + 1 for "not in this seed's list": with k 20 a row read "the 21st
    # nearest item to it" (an outsider's review).
    unlisted = {**row, "text_best_rank": 21.0}
    past = _closest_seed(unlisted, ["text"], leaned, {}, {"text": 0.5}, listed=20)
    assert _seed_clause(RowEvidence([], past, {}, leaned)).endswith("similarity 0.48)")
    at = _closest_seed({**row, "text_best_rank": 20.0}, ["text"], leaned, {}, {"text": 0.5},
                       listed=20)  # fmt: skip
    assert "the 20th nearest" in _seed_clause(RowEvidence([], at, {}, leaned))
    assert [_ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"
    ]  # fmt: skip


def test_shared_runs_never_overlap_and_fragments_are_not_content():
    """An item repeating a phrase its seed repeats got one overlapping seed span per word
    (14,001 spans, 168 MB of phrases for one 96 KB text), and "it's a", "I'm a", "e.g" were
    quoted as shared with the seed (an outsider's review of the one-stretch rule)."""
    from riskrank.rank.phrases import RUN_WORDS

    text = "idiot " * 16000
    spans = shared_spans(text, "idiot " * 2000)
    assert all(a.end < b.start for a, b in zip(spans, spans[1:]))
    assert len(spans) <= -(-16000 // RUN_WORDS) and spans[0].start == 0
    assert sum(len(s.phrase) for s in spans) <= len(text)
    small = shared_spans("fuck you " * 60, "fuck you " * 20)
    assert [(s.start, s.end) for s in small] == [(0, 179), (180, 359), (360, 539)]
    for fragment in ("it's a", "I'm a", "it's the", "that's it", "I'd", "e.g", "don't you"):
        assert shared_spans(f"well {fragment} yes", f"no {fragment} maybe") == [], fragment
    assert [s.phrase for s in shared_spans("we'll be fine", "so we'll be fine")] == [
        "we'll be fine"
    ]


def test_markup_inside_a_shared_run_reads_as_nothing():
    """With one-letter words counted, the "b" of "<b>" broke a run shared with the seed, and
    a run began inside "</a>" ('a> free gift ...', markup quoted; an outsider's review)."""
    from riskrank.rank.phrases import plain

    seed = "Get a free laptop today. Click here to claim your prize now"
    text = "Get a free <i>laptop</i> today. Click <u>here</u> to claim your <b>prize</b> now"
    said = [plain(s.phrase) for s in shared_spans(text, seed)]
    assert said == ["Get a free laptop today", "Click here to claim your prize now"]
    text = "Reply <a href='mailto:x@y.com'>here</a> free gift for every reader"
    spans = shared_spans(text, "Get a free gift for every reader today")
    assert [s.phrase for s in spans] == ["free gift for every reader"]
    assert all(text[s.start : s.end] == s.phrase for s in spans)
    assert [s.phrase for s in shared_spans("win big<br>prize now", "win big prize now")] == [
        "win big", "prize now"
    ]  # fmt: skip


def test_no_picture_remedy_for_a_flat_pictures_match():
    """The explanation called a flat picture's PDQ match unreliable, while the remediation
    still said "replace the image that matches seed s_white" (an outsider's review)."""
    from riskrank.rank.reasons import remediation

    seed = {"id": "s_white", "signal": "pdq", "similarity": 1.0, "distance": 0.0, "weak": 0.8}
    assert remediation("escalate", [], {**seed, "flat": 0.0}) == "escalate"
    assert remediation("escalate", [], {**seed, "flat": None}) == (
        "escalate: replace the image that matches seed s_white"
    )


def test_shared_runs_end_at_quoted_and_cjk_sentence_ends_and_keep_vowel_signs():
    """A run crossed `."` and `。`, and stopped before a Hindi word's last vowel sign ('तुम
    बेवकूफ ह' of 'तुम बेवकूफ हो'; an outsider's review)."""
    said = [s.phrase for s in shared_spans("अरे तुम बेवकूफ हो सच", "तुम बेवकूफ हो")]
    assert said == ["तुम बेवकूफ हो"]
    text = 'He said "you moron." Go away now'
    assert [s.phrase for s in shared_spans(text, "you moron go away now")] == [
        "you moron", "Go away now"
    ]  # fmt: skip
    assert [s.phrase for s in shared_spans("白痴 笨蛋。你好 朋友", "白痴 笨蛋 你好 朋友")] == [
        "白痴 笨蛋", "你好 朋友"
    ]  # fmt: skip
    # A lexical phrase too: "moron.' go away" ran across the quoted sentence's end.
    coef = _coef_for("moron go away")
    assert [s.phrase for s in lexical_spans(coef, "you 'moron.' go away")] == ["moron", "go away"]


def test_what_speaks_against_an_item_comes_after_what_speaks_for_it():
    """An outsider's 300,000-item sweep: 597 automatic removals read "No item reviewed for
    this policy is close (nearest h1, rejected; text similarity 0.49); uses 'free' and
    'click'; no seed is close ...", the ranker having leaned on that rejection, and 0.49 being
    above the level below which the queue calls an item unlike the policy's reviews."""
    from riskrank.rank.phrases import Span
    from riskrank.rank.reasons import sentence

    words = [Span(0, 4, "free", "lexical", 1.0), Span(5, 10, "click", "lexical", 0.5)]
    seed = {"id": "s1", "signal": "text", "similarity": 0.41, "distance": float("nan")}
    seed.update(weak=0.6, rank=float("nan"))
    rejected = {"id": "h1", "verdict": 2, "similarity": 0.49, "signal": "text", "close": False}
    leaned = {"history:text": 2.0, "lexical": 1.0}
    # As close as the policy's reviews are to one another: the rejection is evidence.
    said = sentence(RowEvidence(words, seed, {**rejected, "covered": True}, leaned))
    assert said == (
        "Its nearest reviewed item h1 was found violating (text similarity 0.49); uses 'free' and "
        "'click'; no seed is close (nearest s1, text similarity 0.41)"
    )
    # Unlike every review: the absence is said, after the words.
    said = sentence(RowEvidence(words, seed, {**rejected, "covered": False}, leaned))
    assert said == (
        "Uses 'free' and 'click'; no item reviewed for this policy is close (nearest h1, "
        "found violating; text similarity 0.49); no seed is close (nearest s1, text "
        "similarity 0.41)"
    )
    # A benign closest review, however much the ranker leaned on the history, comes last.
    benign = {**rejected, "verdict": 0, "similarity": 0.9, "close": True}
    said = sentence(RowEvidence(words, {**seed, "similarity": 0.8}, benign, leaned))
    assert said == (
        "Uses 'free' and 'click'; its text resembles seed s1 (similarity 0.80); the closest "
        "reviewed item h1 was found benign (text similarity 0.90)"
    )


def test_an_outsiders_audit_of_the_demo_queues_sentences():
    """An outsider audited every row of the demo's and the review loop's queues: the quotes
    were the first phrases in the text rather than the strongest; two-word runs shared with a
    far seed were said as evidence; an advertiser was told to remove their opt-out line; a
    removal whose probe raised it by no single word read only evidence against it."""
    from riskrank.rank.phrases import Span
    from riskrank.rank.reasons import _explain_row

    text = "Home Business.\nTo be removed from our list click here.\nGUARANTEED FREE money"
    text += " and sports"

    def span(phrase, source, weight):
        at = text.index(phrase)
        return Span(at, at + len(phrase), phrase, source, weight)

    spans = [
        span("Home", "lexical", 0.1),
        span("To be removed", "lexical", 0.9),
        span("GUARANTEED", "lexical", 0.6),
        span("FREE", "lexical", 0.3),
        span("and sports", "seed", 2.0),
    ]
    far = {"id": "s1", "signal": "text", "similarity": 0.21, "distance": float("nan"),
           "weak": 0.5, "rank": float("nan"), "text": "day trading and sports"}  # fmt: skip
    row = {"item_id": "x", "policy": "spam", "action": "remove"}
    out = _explain_row(row, text, {"lexical": 2.0, "seed:text": 0.1}, far, list(spans), {})
    assert out["explanation"] == (
        "Uses 'To be removed', 'GUARANTEED' and 'FREE'; no seed is close (nearest s1, text "
        "similarity 0.21)"
    )
    assert "To be removed" in out["flagged_phrases"]  # evidence, still highlighted
    assert out["remediation"] == "remove: change or remove 'GUARANTEED FREE' and 'Home'"
    # Where the words did not raise it, only a run shared with a seed that is evidence.
    low = _explain_row(row, text, {"lexical": 0.0, "seed:text": 0.1}, far, list(spans), {})
    assert low["remediation"] == "remove"
    seed = {**far, "text": "and sports betting pays daily"}
    shared = [span("and sports", "seed", 2.0), span("Home", "seed", 5.0)]
    low = _explain_row(row, text, {"lexical": 0.0, "seed:text": 0.1}, seed, shared, {})
    assert low["explanation"] == "Shares 'Home' and 'and sports' with seed s1"
    assert low["remediation"] == "remove: change or remove 'Home' and 'and sports'"
    # The probe raised it, no word stands out; said only of a text the probe read (without
    # one, or without a probe, its score is NaN, which the booster can still read as risk).
    garbled = ". jif ukqdrblkougooeoffnxsmbowei"
    out = _explain_row(row, garbled, {"lexical": 0.3}, far, [], {})
    assert out["explanation"] == (
        "Its wording as a whole scores like violating items; no seed is close (nearest s1, "
        "text similarity 0.21)"
    )
    for text_, probe in ((None, True), (garbled, False)):
        out = _explain_row(row, text_, {"lexical": 0.3}, far, [], {}, None, probe)
        assert out["explanation"] == "No seed is close (nearest s1, text similarity 0.21)"


def test_remediation_phrases_hold_the_words_as_whole_words():
    """The lexical word "Win" named "Window cleaning", a phrase from a seed the sentence did
    not name (a reviewer's check); a seed dict without its signal raised KeyError."""
    from riskrank.rank.phrases import Span
    from riskrank.rank.reasons import _holds, sentence

    assert _holds("Win big", "win") and not _holds("Window cleaning", "win")
    assert _holds("Win $5 now", "$5") and not _holds("Win $50", "$5")
    seed = {"id": "s1", "similarity": 0.2, "weak": 0.5, "distance": float("nan")}
    ev = RowEvidence([Span(0, 15, "Window cleaning", "seed", 2.0)], seed, {}, {"seed:text": 1})
    assert sentence(ev) == "No seed is close (nearest s1, text similarity 0.20)"


def test_opt_out_wording_is_kept_and_claims_are_not():
    """Opt-out wording (a line about a list or mail) is never advice to remove; claims that
    share its words are (a reviewer's check of the first rule: "Negative items can be removed
    from your report" and "Remove your wrinkles" were never named)."""
    from riskrank.rank.phrases import Span
    from riskrank.rank.reasons import opt_out

    def said(phrase, text):
        at = text.index(phrase)
        return opt_out(phrase, [Span(at, at + len(phrase), phrase, "lexical", 1.0)], text)

    for phrase, text in (
        ("To be removed", "Ad text.\nTo be removed from our mailing list, reply REMOVE"),
        ("REMOVE", "To stop these e-mails reply REMOVE"),
        ("CLICK HERE REMOVAL", "CLICK HERE REMOVAL from this list"),
        ("unsubscribe", "Best deals. unsubscribe"),
        ("Opt-out", "Opt-out of future mailings here"),
        ("no longer wish", "If you no longer wish to receive our newsletter, write"),
        ("be removed", "Apply now! To be removed call: 888-800-6339"),
        ("remove", "To remove see below. We submit web sites to search engines"),
        ("be removed", "In error? If you would like to be removed stiy@yahoo.com"),
    ):
        assert said(phrase, text), phrase
    for phrase, text in (
        ("can be removed", "Negative items can be removed from your report!"),
        ("Remove your wrinkles", "Remove your wrinkles in 7 days"),
        ("wish to be rich", "Do you wish to be rich? Call now"),
        ("adopt out", "We adopt out puppies, write to our list"),
        ("hair removal", "Laser hair removal: 90% off"),
        ("remove", "Anyone know how I could remove a HDD password from an Acer?"),
    ):
        assert not said(phrase, text), phrase


def test_the_closest_review_is_said_under_a_signal_that_covers_the_item():
    """A row with text and a picture, covered under its picture only, said "no item reviewed
    for this policy is close (text similarity 0.30)" (an outsider's review)."""
    from types import SimpleNamespace

    from riskrank.rank.reasons import _closest_reviewed

    row = {"item_id": "x", "policy": "scam"}
    for s, item, sim in (("text", "h1", 0.30), ("pdq", "h2", 0.75)):
        row.update({f"hist_{s}_nearest_id": item, f"hist_{s}_nearest_sim": sim})
        row.update({f"hist_{s}_nearest_verdict": 2, f"hist_{s}_n_near_violating": 0})
    model = SimpleNamespace(exemplars={"text": None, "pdq": None})
    stored = {"text": {"h1": {}}, "pdq": {"h2": {}}}
    weak = {"text": 0.5, "pdq": 0.9}
    coverage = {"scam": {"text": 0.4, "pdq": 0.6}}
    said = _closest_reviewed(row, model, "text", stored, weak, coverage)
    assert (said["id"], said["signal"], said["close"], said["covered"]) == ("h2", "pdq", 0, 1)
    # Close under text: text, as the seed's signal.
    row["hist_text_nearest_sim"] = 0.6
    assert _closest_reviewed(row, model, "text", stored, weak, coverage)["id"] == "h1"
    # Covered under neither: the seed's signal's.
    row.update(hist_text_nearest_sim=0.3, hist_pdq_nearest_sim=0.5)
    said = _closest_reviewed(row, model, "text", stored, weak, coverage)
    assert (said["id"], said["covered"]) == ("h1", False)


def test_a_shared_run_does_not_start_or_end_inside_a_number():
    """ "Shares '000 in' with seed S" of "$5,000 in" beside a seed's "$1,000 in" (an
    outsider's audit of the demo queue)."""

    def said(text, seed):
        return [s.phrase for s in shared_spans(text, seed)]

    assert said("Earn $5,000 in a week at home", "Earn $1,000 in a week at home") == [
        "in a week at home"
    ]
    assert said("Get 5,000 dollars now", "Get 5,000 dollars now") == ["Get 5,000 dollars now"]
    assert said("we pay 12.50 each", "they pay 12 dollars") == []
    assert said("only 3.5 percent", "only 3 percent") == []
    # Every group of a number (a reviewer's check: "Send pay $5" of "$5,000,000").
    assert said("Send pay $5,000,000", "Send pay $5,000,001") == ["Send pay"]
    # One number alone is one word, no run of two ("shares 'To Make' and '1,000'"), and the
    # words after it may still start one; numbers apart (a phone number) are words.
    assert said("Earn $1,000 today. To Make money", "pay $1,000 weekly. To Make it") == ["To Make"]
    assert said("Earn $1,000 weekly now", "we pay $1,000 weekly.") == ["1,000 weekly"]
    assert said("call 555 1234 now", "please call 555 1234") == ["call 555 1234"]
    assert said("ref 2002 08 22 x", "on 2002 08 22 y") == ["2002 08 22"]
    # Other groupings of one number (a reviewer's finding), a plain space is two numbers.
    for one in ("1\u202f000", "1\u00a0000", "١٬٠٠٠", "1'000"):
        assert said(f"pay {one} now", f"get {one} today") == [], one
    assert said("Earn $5\u202f000 in a week", "Earn $1\u202f000 in a week") == ["in a week"]


def test_a_negative_value_that_raised_the_score_says_how():
    """A reviewer read "log-odds of a linear classifier trained on the reviewed items (text) =
    -1.23", listed among what raised the score, as the classifier leaning benign (in 563 rows
    of an outsider's queue): it raised the score by being less negative than usual."""
    from riskrank.rank.ranker import _reason

    said = _reason("hist_text_probe_score", -1.234)
    assert said.endswith("(text) = -1.23 (negative, yet higher than usual)"), said
    assert _reason("hist_text_probe_score", 0.5).endswith("= 0.5")
    assert _reason("hist_text_neg_max_sim", 0.254).endswith("= 0.254 (low)")
    assert _reason("hist_text_probe_score", -1.234, monotone=False).endswith("= -1.23")


def test_garbled_words_are_never_highlighted_or_shared(probe):
    """An auditor found remediations quoting 'more \ufffd\ufffd\ufffd' (mail decoded with its
    unreadable bytes replaced): a word holding U+FFFD is not wording a reviewer can act on."""
    from riskrank.rank.phrases import shared_spans

    coef, _ = probe.coefs["scam"]
    every_gram_counts = np.abs(coef) + 1.0  # so the garbled word would weigh the most
    garbled = "\ufffd" * 9
    text = f"Claim your prize now, more {garbled} offer {garbled}x today"
    spans = lexical_spans(every_gram_counts, text)
    assert spans and not [s.phrase for s in spans if "\ufffd" in s.phrase]
    shared = shared_spans(text, f"prize now more {garbled} offer {garbled}x")
    assert not [s for s in shared if "\ufffd" in text[s.start : s.end]]
