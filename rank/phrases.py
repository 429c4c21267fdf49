"""Which words of an item drove its score, with character offsets a UI can highlight.

Two kinds of span:

* ``lexical``: words whose n-grams carry the lexical probe's log-odds (recall/lexical.py). The
  probe is linear, so its score minus the intercept is exactly the sum over hashed features of
  ``coef * tfidf``; each feature's share is handed to the words it came from (a word bigram
  splits it between its two words, a character n-gram belongs to the word it lies in, a
  feature seen several times splits it between its occurrences). Summing per word type and
  keeping the strongest few gives phrases that really move the probe.
* ``seed``: runs of at least two words the item shares with its closest seed, word for word.

>>> spans = lexical_spans(probe.coefs["scam"][0], "Guaranteed approval, no credit check")
... # doctest: +SKIP
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections import defaultdict
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, HashingVectorizer
from sklearn.utils import murmurhash3_32

from riskrank.recall.lexical import N_FEATURES, READ_CHARS, lexical_features

# sklearn's default token pattern: what the probe's word n-grams are made of.
TOKEN = re.compile(r"(?u)\b\w\w+\b")
# The words of shared runs: every word, one letter too ("a professional" is not "professional").
SHARED_TOKEN = re.compile(r"(?u)\w+")
# Not content in a shared run, beside stop words and single letters: the pieces of English
# contractions that \w+ splits off ("it's" -> "it", "s"; "don't" -> "don", "t"), so "it's a"
# and "I'm a" are not quoted as shared with a seed (an outsider's review).
CONTRACTION_PARTS = frozenset(
    "ll re ve nt don doesn didn isn aren wasn weren won wouldn couldn shouldn haven hasn hadn "
    "ain".split()
)
# At most this many words a shared run: a text repeating its seed is a row of such runs (the
# highlight reads them as one mark), and matching stays linear in the text.
RUN_WORDS = 64
# char_wb n-grams never cross whitespace, so a whitespace-separated word owns its n-grams.
WORD = re.compile(r"\S+")
MAX_FLAGGED_WORDS = 6  # word types highlighted per item: enough to act on, few enough to read
# A word adding under a tenth of what the item's strongest word adds is noise to a reader
# ("family" at 0.017 next to "claim" at 0.186 in a prize scam).
MIN_WORD_SHARE = 0.1
# A long mail spreads its wording evidence over many words: six of them carried too little
# of it to move the ranker (benchmarks/results/faithfulness.md), so highlights go on until
# they carry half of the item's content-word evidence, at most MAX_COVER_WORDS word types.
COVER_SHARE = 0.5
MAX_COVER_WORDS = 20
LETTERS = re.compile(r"[^\W\d_]+")
MIN_SHARED_TOKENS = 2
# The version of what this module computes. A standing index's sweeps keep spans by a digest
# of their inputs (rank/sweep_cache.py), and this number is part of it: a change here that
# gives other spans for the same text must bump it, or yesterday's spans come back unchanged.
# 2: runs stop at line breaks; 3: markup is not highlighted or quoted; 4: an element's name
# followed by words but no attribute value is text; 5: markup that ends a line or sentence
# ends a phrase; 6: shared runs are one stretch of the seed, every word counted; 7: they
# never overlap, words inside markup are not read, and stop words, single letters and
# contraction pieces alone are not one; a sentence ends at `."` and `。` too; 8: a shared run
# neither starts nor ends inside a number ("000 in" of "$5,000 in"); 9: one number alone
# ("1,000") is no run; 10: digit groups joined by no-break spaces, apostrophes and the Arabic
# separators too.
SPANS_VERSION = 10
# Markup: an HTML tag (a mail, a pasted landing page), a comment, or a script or style element
# with its contents. Only elements HTML names count, so "invest < $50 ... > $5000" and "<you
# idiot>" are text. A tag may hold spaces (attributes), so tags are found in the whole text:
# a highlighted word's edges skip them ("<b>stupid</b>." marks "stupid"), a word that is only
# markup ("<br>", "href='x'>") is never highlighted, and a phrase as read drops the tags inside
# it. The probe's own words (whitespace-separated, as its char_wb n-grams are) and their shares
# are not changed.
HTML_ELEMENTS = (
    "a abbr address area article aside audio b base bdi bdo big blink blockquote body br "
    "button canvas caption center cite code col colgroup data datalist dd del details dfn "
    "dialog dir div dl dt em embed fieldset figcaption figure font footer form frame frameset "
    "h1 h2 h3 h4 h5 h6 head header hr html i iframe img input ins kbd label legend li link main "
    "map mark marquee menu meta meter nav nobr noscript object ol optgroup option output p "
    "param picture pre progress q rp rt ruby s samp script section select small source span "
    "strike strong style sub summary sup svg table tbody td template textarea tfoot th thead "
    "time title tr track tt u ul var video wbr xml o:p"
).split()
TAG = re.compile(
    r"<(script|style)\b[^<>]*>.*?</\1\s*>|<!--.*?-->|<![A-Za-z][^<>]*>"
    r"|</?(?:" + "|".join(map(re.escape, HTML_ELEMENTS)) + r")"
    # No attributes, or attributes with a value: "<u r a stupid moron idiot>" and "a<b and
    # c>d" are text (an outsider's report), "<br/>", "<font color=red>" are markup.
    r"(?:\s*/?|\s+[^<>]*=[^<>]*)>",
    re.I | re.S,
)
LINE_BREAK = re.compile(r"[\r\n]")
CLAUSE_END = re.compile(r"[.,;:!?)\]][\"'\u2019\u201d)\]]*$|[\u3002\uff01\uff1f\uff1b\uff0c]$")
SENTENCE_END = re.compile(r"[.!?;:]")
# Elements a browser starts a new line or block for: read apart, as lines are. "moron.</p><p>Go"
# and "idiot</div><div>go" are one whitespace word, and were highlighted as one phrase across
# the break ("moron. go away": text a reviewer cannot find; an outsider's report).
BLOCK_TAG = re.compile(
    r"</?(?:address|article|aside|blockquote|body|br|caption|center|dd|details|dialog|div|dl|dt"
    r"|fieldset|figcaption|figure|footer|form|h[1-6]|head|header|hr|html|li|main|nav|ol|p|pre"
    r"|section|summary|table|tbody|td|tfoot|th|thead|title|tr|ul)(?:\s*/?|\s+[^<>]*)>",
    re.I,
)

SPAN_TYPE = pa.struct(
    [
        pa.field("start", pa.int32()),
        pa.field("end", pa.int32()),
        pa.field("phrase", pa.string()),
        pa.field("source", pa.string()),
    ]
)


class Span(NamedTuple):
    """``text[start:end] == phrase``; ``source`` is ``lexical`` or ``seed``. A named tuple,
    not a frozen dataclass: a daily sweep reads ~60,000 of them back from its cache
    (rank/sweep_cache.py), and a frozen dataclass took 8 µs each to make."""

    start: int
    end: int
    phrase: str
    source: str
    weight: float = 0.0

    def as_row(self) -> dict:
        return {"start": self.start, "end": self.end, "phrase": self.phrase, "source": self.source}


@lru_cache(maxsize=1)
def _char_analyzer():
    # The same settings as the probe's character half (recall/lexical.py).
    return HashingVectorizer(analyzer="char_wb", ngram_range=(2, 5)).build_analyzer()


@lru_cache(maxsize=200_000)
def _char_features(word: str) -> np.ndarray:
    return np.array([N_FEATURES + _hash(g) for g in _char_analyzer()(word)], np.int64)


@lru_cache(maxsize=500_000)
def _hash(gram: str) -> int:
    return abs(murmurhash3_32(gram, seed=0)) % N_FEATURES


Features = sp.csr_matrix | tuple[np.ndarray, np.ndarray]


def word_contributions(
    coef: np.ndarray, text: str, row: Features | None = None
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Whitespace-separated words of ``text`` (start, end) and each one's share of the probe's
    log-odds (they sum to the probe score minus its intercept). ``row``: the text's
    ``lexical_features`` row (a one-row matrix, or its indices sorted and values), where the
    caller has it; without one the values are made from the n-grams hashed here. Words past
    the probe's ``READ_CHARS`` characters are not its evidence and are not listed."""
    text = text[:READ_CHARS]
    words = [(m.start(), m.end()) for m in WORD.finditer(text)]
    if not words:
        return words, np.zeros(0)
    if row is None and (len(text.lower()) != len(text) or "\u03a3" in text):
        # Lower case that changes a text's length ("İ" is two characters then), or that
        # depends on what follows (a capital sigma is final or not by the letter after it,
        # "ΝΟΜΟΣ:ΑΘΗΝΑ": a reviewer's fuzzing), can move the vectorizer's word tokens away
        # from these words' (lower-cased one by one): its own features are read then.
        row = lexical_features([text])
    if row is not None and not isinstance(row, tuple):
        row = row.tocsr().copy()
        row.sort_indices()
        row = (row.indices, row.data)
    return words, _word_shares(coef, text, words, row)


def _word_shares(
    coef: np.ndarray,
    text: str,
    words: list[tuple[int, int]],
    row: tuple[np.ndarray, np.ndarray] | None,
) -> np.ndarray:
    """``word_contributions``' shares. Built with one array per kind of feature, not one per
    word (a first sweep attributes every candidate's text: 2.5 ms a text, most of the reasons
    step), in the same order as before, so the shares sum in the same order to the same
    values. ``row``: the text's features (indices sorted, values) as the vectorizer gave
    them; without one, its values are made here from the n-grams hashed below, which are
    the vectorizer's (``_own_values``)."""
    starts = np.array([s for s, _ in words])
    tokens = list(TOKEN.finditer(text))
    owner = np.searchsorted(starts, [m.start() for m in tokens], side="right") - 1
    low = [m.group().lower() for m in tokens]
    # One entry per (feature occurrence, word it belongs to); a bigram is two half entries.
    feats = [np.array([_hash(t) for t in low], np.int64)]
    owners, frac = [owner], [np.ones(len(low))]
    if len(low) > 1:
        bigrams = np.array([_hash(a + " " + b) for a, b in zip(low, low[1:])], np.int64)
        feats += [bigrams, bigrams]
        owners += [owner[:-1], owner[1:]]
        frac += [np.full(len(bigrams), 0.5)] * 2
    chars = [_char_features(text[a:b]) for a, b in words]  # each word's n-grams, in order
    sizes = np.fromiter(map(len, chars), np.int64, len(chars))
    feats.append(np.concatenate(chars))
    owners.append(np.repeat(np.arange(len(words), dtype=np.int64), sizes))
    frac.append(np.ones(int(sizes.sum())))
    feats, owners, frac = np.concatenate(feats), np.concatenate(owners), np.concatenate(frac)
    unique, inverse = np.unique(feats, return_inverse=True)
    count = np.bincount(inverse, weights=frac)  # occurrences of each feature in the text
    if row is None:
        value = (_own_values(count) * coef[unique])[inverse]
    else:
        indices, data = row
        contrib = data * coef[indices]
        at = np.minimum(np.searchsorted(indices, feats), max(len(indices) - 1, 0))
        hit = (indices[at] == feats) if len(indices) else np.zeros(len(feats), bool)
        value = np.where(hit, contrib[at] if len(contrib) else 0.0, 0.0)
    share = value * frac / count[inverse]
    return np.bincount(owners, weights=share, minlength=len(words))


def _own_values(count: np.ndarray) -> np.ndarray:
    """``lexical_features``' values of a text from the count of each of its hashed features
    (in the order of their indices): sublinear tf, divided by the row's L2 norm summed in
    that order, as scikit-learn's ``normalize`` sums it. The vectorizer's pass over the text
    (as long as this whole attribution on long mails) is not needed again."""
    data = 1.0 + np.log(count)
    return data / np.sqrt(np.cumsum(data * data)[-1])


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop punctuation around a word ("approval," -> "approval") unless nothing is left."""
    a, b = _inner(text[start:end])
    return (start + a, start + b) if b else (start, end)


INNER = re.compile(r"\w(.*\w)?", re.S)
WORD_CHAR = re.compile(r"\w")


@lru_cache(maxsize=200_000)
def _inner(word: str) -> tuple[int, int]:
    """Where ``word``'s first to last word character lie ((0, 0): none). Cached: a text's
    words repeat, and so do a sweep's."""
    inner = INNER.search(word)
    return (inner.start(), inner.end()) if inner else (0, 0)


def _bounds(text: str, words: list[tuple[int, int]]) -> list[tuple[int, int] | None]:
    """Each word's first to last word character outside markup (``TAG``); None for a word
    that is markup only. Without markup, ``_trim``: punctuation around a word dropped, a word
    of punctuation alone kept as it is."""
    tags = [(m.start(), m.end()) for m in TAG.finditer(text)] if "<" in text else []
    if not tags:
        return [_trim(text, s, e) for s, e in words]
    outside = np.ones(len(text) + 1, bool)
    for a, b in tags:
        outside[a:b] = False
    out: list[tuple[int, int] | None] = []
    for s, e in words:
        if outside[s:e].all():
            out.append(_trim(text, s, e))
            continue
        chars = [m.start() for m in WORD_CHAR.finditer(text, s, e) if outside[m.start()]]
        out.append((chars[0], chars[-1] + 1) if chars else None)
    return out


def _pieces(
    text: str, words: list[tuple[int, int]], scores: np.ndarray
) -> tuple[list[tuple[int, int]], np.ndarray, list[bool]]:
    """``words`` cut where markup inside a whitespace word ends a line or a clause: at a
    block element (``BLOCK_TAG``), or at a tag after clause punctuation ("moron.</p><p>Go",
    "alone.</blockquote>You"). Each piece takes the word's share in proportion to its word
    characters (the probe read the word whole); ``ends`` says where a piece ends a clause
    though its own text does not show it. Words without such markup are as given."""
    if "<" not in text:
        return words, scores, [False] * len(words)
    out: list[tuple[int, int]] = []
    shares: list[float] = []
    ends: list[bool] = []
    for (s, e), score in zip(words, scores):
        cuts = [] if "<" not in text[s:e] else _cuts(text, s, e)
        if not cuts:
            out.append((s, e))
            shares.append(float(score))
            ends.append(False)
            continue
        pieces, start = [], s
        for a, b in cuts:
            pieces.append((start, a))
            start = b
        pieces.append((start, e))
        counts = [len(WORD_CHAR.findall(TAG.sub("", text[a:b]))) for a, b in pieces]
        total = sum(counts) or 1
        for i, ((a, b), n) in enumerate(zip(pieces, counts)):
            out.append((a, b))
            shares.append(float(score) * n / total)
            ends.append(i < len(pieces) - 1)
    return out, np.asarray(shares, dtype=float), ends


def _cuts(text: str, s: int, e: int) -> list[tuple[int, int]]:
    """The stretches of markup inside ``text[s:e]`` that end a line or a clause: block
    elements, and any tag run right after clause punctuation (runs of tags merged)."""
    runs: list[list[int]] = []
    for m in TAG.finditer(text, s, e):
        if runs and runs[-1][1] == m.start():
            runs[-1][1] = m.end()
        else:
            runs.append([m.start(), m.end()])
    cuts = []
    for a, b in runs:
        # The character before a run of tags is the word's own (runs are merged, and a word
        # holds no space): read alone, not the word again before every run (a 98,611-
        # character minified page took 33 s; an outsider's review).
        if a > s and b < e and (BLOCK_TAG.search(text, a, b) or SENTENCE_END.match(text[a - 1])):
            cuts.append((a, b))
    return cuts


GARBLED = "\ufffd"  # the replacement character: bytes a decoder could not read


def plain(phrase: str) -> str:
    """``phrase`` as a reader quotes it: markup (``TAG``) dropped unless that leaves
    nothing (a block element as a space), its whitespace one space."""
    # A block element reads as a break, an inline one as nothing ("stu<b>pid</b>" reads
    # "stupid", and was quoted "stu pid").
    text = TAG.sub(_as_read, phrase) if "<" in phrase else phrase
    return " ".join((text if text.strip() else phrase).split())


def _as_read(tag: re.Match) -> str:
    return " " if BLOCK_TAG.fullmatch(tag.group()) else ""


@lru_cache(maxsize=200_000)
def _is_stop_word(key: str) -> bool:
    """A word made only of stop words and single letters ("you", "you're", "it's", "I"):
    function words a reviewer cannot act on. Numbers and symbols ("$5", "!!!") are not."""
    parts = LETTERS.findall(key)
    return bool(parts) and all(len(p) == 1 or p in ENGLISH_STOP_WORDS for p in parts)


def _chosen_types(
    keys: list[str], scores: np.ndarray, max_words: int, min_share: float, cover: float
) -> set[str]:
    """Content word types strongest first: at least ``max_words`` of them, more (up to
    ``MAX_COVER_WORDS``) until they carry ``cover`` of the item's positive content-word
    contribution; each adding at least ``min_share`` of the strongest one's contribution."""
    by_type: dict[str, float] = defaultdict(float)
    for key, score in zip(keys, scores):
        if key and not _is_stop_word(key):  # ("": a word of markup alone)
            by_type[key] += score
    top = sorted((k for k, v in by_type.items() if v > 0), key=lambda k: -by_type[k])
    if not top:
        return set()
    floor, goal = min_share * by_type[top[0]], cover * sum(by_type[k] for k in top)
    chosen: set[str] = set()
    carried = 0.0
    for key in top[: max(max_words, MAX_COVER_WORDS)]:
        if by_type[key] < floor or (len(chosen) >= max_words and carried >= goal):
            break
        chosen.add(key)
        carried += by_type[key]
    return chosen


def lexical_spans(
    coef: np.ndarray,
    text: str,
    *,
    max_words: int = MAX_FLAGGED_WORDS,
    min_share: float = MIN_WORD_SHARE,
    cover: float = COVER_SHARE,
    row: Features | None = None,
) -> list[Span]:
    """Every occurrence of the content word types that add most to the probe's score
    (``max_words`` of them, more in a long text until they carry ``cover`` of its content
    words' contribution), adjacent ones merged into phrases; each span's weight is its
    words' contribution.

    Stop words (scikit-learn's ``ENGLISH_STOP_WORDS``) are never highlighted on their own,
    however much the probe weights them ('you', 'your' in scam mail): a reviewer acts on
    "shipping fee", not on "you". One that itself adds to the score may extend a phrase
    around a highlighted word ("claim it today", "no credit check"), so the phrase reads as
    written and its whole weight is cut when the faithfulness check deletes it.
    """
    if not text or not text.strip():
        return []
    text = text[:READ_CHARS]  # what the probe read (recall/lexical.py)
    words, scores = word_contributions(coef, text, row)
    words, scores, cut_after = _pieces(text, words, scores)
    bounds = _bounds(text, words)
    # "": markup, or a word holding U+FFFD (text decoded with errors replaced: an auditor
    # found 'more \ufffd\ufffd\ufffd' in remediations), which no reviewer can act on or quote
    keys = ["" if b is None else text[b[0] : b[1]].lower() for b in bounds]
    if GARBLED in text:  # (rare: most texts skip the pass)
        keys = ["" if GARBLED in text[a:b] else k for k, (a, b) in zip(keys, words)]
    chosen = _chosen_types(keys, scores, max_words, min_share, cover)
    core = [k in chosen for k in keys]

    def _ends_clause(w: int) -> bool:
        # A line ends a clause too: 100 lines of one flagged word were one 622-character
        # phrase, cut before the insult after them (an outsider's report). So does a block
        # element ("moron.</p> <p>Go"), and punctuation before markup ("moron.</b> go").
        own = text[words[w][0] : words[w][1]]
        if cut_after[w] or CLAUSE_END.search(TAG.sub("", own).rstrip() if "<" in own else own):
            return True
        if w + 1 == len(words):
            return False
        after = bounds[w][1] if bounds[w] else words[w][1]
        between = text[after : bounds[w + 1][0] if bounds[w + 1] else words[w + 1][0]]
        return bool(LINE_BREAK.search(between) or ("<" in between and BLOCK_TAG.search(between)))

    joins = [c or (_is_stop_word(k) and x > 0) for c, k, x in zip(core, keys, scores)]
    spans: list[Span] = []
    run: list[int] = []
    for w in range(len(words) + 1):
        # A run stops at a sentence or clause break: "Congratulations! You" is two phrases.
        breaks = w == len(words) or not joins[w]
        breaks = breaks or bool(run and _ends_clause(w - 1))
        if not breaks:
            run.append(w)
            continue
        # A stop word at the end that leads into an unhighlighted word of the same clause
        # belongs to that next phrase ("Pay a [small fee]"); at a clause end it stays ("now").
        while run and not core[run[-1]] and w < len(words) and not _ends_clause(run[-1]):
            run.pop()
        if any(core[r] for r in run):  # stop words alone are not a phrase
            start, end = bounds[run[0]][0], bounds[run[-1]][1]
            weight = float(sum(scores[r] for r in run))
            spans.append(Span(start, end, text[start:end], "lexical", weight))
        run = [w] if w < len(words) and joins[w] else []
    return spans


def shared_spans(text: str, seed_text: str | None, *, min_tokens: int = MIN_SHARED_TOKENS):
    """Runs of ``min_tokens``+ words ``text`` shares with ``seed_text``, word for word and
    in the seed's order (case-insensitive), skipping runs made only of stop words: from the
    first word, the longest the seed holds (at most ``RUN_WORDS``), then from the word after
    it. Both are read to ``READ_CHARS`` characters, as the probe reads them: a text of
    megabytes made millions of tokens.

    Every word counts, one letter too, and a run is one stretch of the seed: chained word
    pairs quoted "do not wish to receive" of a seed saying "does not wish to receive" (its
    pair "do not" stood elsewhere, in "DO NOT REPLY"), and "this is professional" of "this is
    a professional" (an outsider's report)."""
    if not text or not seed_text:
        return []
    text = text[:READ_CHARS]
    seed, starts = _seed_words(seed_text[:READ_CHARS])
    tokens = _words(text)
    # A garbled word (U+FFFD) matches no seed word and ends a run, in a word or between two.
    low = [text[a:b].lower() for a, b in tokens]
    if GARBLED in text:
        low = [None if GARBLED in w else w for w in low]
    # A run stops where a reader's sentence or line does, as a lexical phrase does: "moron.
    # Go away" shared with a seed was one phrase across the sentence end. (Read only between
    # words a run would join: most word pairs of an item are in no seed.)
    gaps: dict[int, bool] = {}

    def apart(j: int) -> bool:
        if j not in gaps:
            gap = text[tokens[j][1] : tokens[j + 1][0] + 1]
            gaps[j] = _breaks(gap) or GARBLED in gap
        return gaps[j]

    spans = []
    i = 0
    while i + 1 < len(tokens):
        length = 0
        at = starts.get((low[i], low[i + 1]), ())
        for p in at if at and not apart(i) else ():
            k = 2
            while (
                k < RUN_WORDS
                and i + k < len(tokens)
                and p + k < len(seed)
                and low[i + k] == seed[p + k]
                and not apart(i + k - 1)
            ):
                k += 1
            length = max(length, k)
        if length and _inside_number(text, tokens[i], before=True):
            length = 0  # (the run may start at the next word)
        while length and _inside_number(text, tokens[i + length - 1], before=False):
            length -= 1  # ("$5,000,000": every group of it)
        if length < min_tokens:
            i += 1
            continue
        last = i + length - 1
        if _one_number(text, tokens[i : last + 1]) or not any(
            _content(t) for t in low[i : last + 1]
        ):
            # Stop words and fragments alone ("it's a", "do not" of "DO NOT REPLY") are not
            # quoted, and the next word may start a run that is ("not wish to receive"); past
            # a run as long as runs go, so "the the the ..." stays linear.
            i += length if length >= RUN_WORDS else 1
            continue
        start, end = tokens[i][0], tokens[last][1]
        spans.append(Span(start, end, text[start:end], "seed", float(length)))
        # The next run starts after this one: runs never overlap (one from every word of an
        # item repeating its seed was 14,001 spans of one 96 KB text; an outsider's review).
        i = last + 1
    return spans


# What joins the digit groups of one number: a comma or point, a no-break or narrow
# no-break space (French, Swiss, ISO groupings), an apostrophe (Swiss), the Arabic thousands
# and decimal separators ("1 000" and "١٬٠٠٠" were quoted as two words: a reviewer's finding).
# A plain space is not one: "2024 2025" are two numbers.
DIGIT_GROUPS = ",.\u00a0\u202f'\u2019\u066b\u066c"


def _inside_number(text: str, word: tuple[int, int], *, before: bool) -> bool:
    """Whether ``word`` is digits that go on a number through a separator before it (the
    "000" of "$5,000") or after it (the "5"): a run shared with a seed said "000 in" of
    "$5,000 in" beside a seed's "$1,000 in" (an outsider's audit)."""
    a, b = word
    if not text[a:b].isdigit():
        return False
    if before:
        return a >= 2 and text[a - 1] in DIGIT_GROUPS and text[a - 2].isdigit()
    return b + 1 < len(text) and text[b] in DIGIT_GROUPS and text[b + 1].isdigit()


def _one_number(text: str, words: list[tuple[int, int]]) -> bool:
    """Whether ``words`` are the digit groups of one number ("1,000", "3.50"): one word to a
    reader, not a run of two shared with a seed (an outsider's audit: "shares 'To Make', 'make
    you' and '1,000'")."""
    return all(text[a:b].isdigit() for a, b in words) and all(
        len(text[b:a]) == 1 and text[b:a] in DIGIT_GROUPS
        for (_, b), (a, _) in zip(words, words[1:])
    )


def _words(text: str) -> list[tuple[int, int]]:
    """Where the words of ``text`` are, outside markup (``TAG``), each with the combining
    marks after it (a Hindi word's last vowel sign is no ``\\w``: a shared run stopped at
    'तुम बेवकूफ ह' of 'तुम बेवकूफ हो'). With one-letter words counted, the "b" of "<b>"
    broke a run and one began inside "</a>" (outsiders' reviews); inline markup inside a
    copied phrase now reads as nothing, a block element as a break."""
    words = []
    for m in SHARED_TOKEN.finditer(text):
        end = m.end()
        while end < len(text) and text[end] > "\x7f" and unicodedata.category(text[end])[0] == "M":
            end += 1
        if words and m.start() < words[-1][1]:  # (marks taken by the word before)
            continue
        words.append((m.start(), end))
    if "<" not in text:
        return words
    tags = [(m.start(), m.end()) for m in TAG.finditer(text)]
    if not tags:
        return words
    starts = [a for a, _ in tags]
    out = []
    for w in words:
        j = bisect_right(starts, w[0]) - 1
        if j < 0 or w[0] >= tags[j][1]:
            out.append(w)
    return out


def _content(word: str) -> bool:
    """A word of a shared run that says something: not a stop word, a single letter or
    digit, or a contraction's piece."""
    return (
        len(word) > 1
        and word not in ENGLISH_STOP_WORDS
        and word not in CONTRACTION_PARTS
        and GARBLED not in word
    )


# A sentence's end between two words: punctuation (and closing quotes or brackets) before a
# space or markup, a CJK full stop, or a line break (`."` and `。` did not end one: an
# outsider's review).
SENTENCE_GAP = re.compile(r"[.!?;:][\"'\u2019\u201d)\]]*(?=\s|<)|[\u3002\uff01\uff1f\uff1b]|[\r\n]")


def _breaks(gap: str) -> bool:
    """Whether the characters between two words (and the next word's first) end a sentence
    or a line for a reader: punctuation before a space or markup, a line break, a block
    element; not the point of "5.99"."""
    return bool(SENTENCE_GAP.search(gap) or ("<" in gap and BLOCK_TAG.search(gap)))


@lru_cache(maxsize=1024)
def _seed_words(seed_text: str) -> tuple[list[str], dict[tuple[str, str], list[int]]]:
    """A seed's words, lower-cased, and where each word pair starts in them (the first
    ``PAIR_PLACES``): a sweep matches each of a few seeds against thousands of items, and
    read the seed for every one."""
    words = [seed_text[a:b].lower() for a, b in _words(seed_text)]
    starts: dict[tuple[str, str], list[int]] = defaultdict(list)
    for p in range(len(words) - 1):
        at = starts[(words[p], words[p + 1])]
        if len(at) < PAIR_PLACES:
            at.append(p)
    return words, dict(starts)


# Where a word pair is looked up in a seed, at most: a seed repeating a sentence 200 times
# matched an item repeating it from every place (0.3 s an item; its runs are alike anyway).
PAIR_PLACES = 16


def flagged_phrases(spans: list[Span], text: str, limit: int = 5) -> list[str]:
    """What is highlighted, as distinct phrases strongest first: overlapping or touching
    spans of either source are merged (what a reader sees as one mark is one phrase); a
    phrase's weight is its lexical contribution plus a bonus per shared-seed word. Phrases
    differing only in case are one, written as the item first writes it."""
    merged: list[list] = []  # [start, end, weight]
    for s in sorted(spans, key=lambda s: s.start):
        weight = s.weight if s.source == "lexical" else 0.01 * s.weight
        gap = text[merged[-1][1] : s.start] if merged else None
        touching = gap is not None and s.start <= merged[-1][1] + 1 and not gap.strip()
        if touching and not LINE_BREAK.search(gap):  # (lines are read apart, as in spans)
            merged[-1][1] = max(merged[-1][1], s.end)
            merged[-1][2] += weight
        else:
            merged.append([s.start, s.end, weight])
    total: dict[str, float] = defaultdict(float)
    written: dict[str, str] = {}  # as the item first writes it (a search finds it)
    for start, end, weight in merged:
        phrase = plain(text[start:end])
        total[phrase.lower()] += weight
        written.setdefault(phrase.lower(), phrase)
    strongest = sorted(total, key=lambda p: -total[p])[:limit]
    # A highlight can cover a whole pasted template (a 200 KB text was one 199,996-character
    # phrase): the queue keeps its start, as it does of the text (``highlight_spans`` keep
    # where it is).
    return list(dict.fromkeys(_cut(written[p]) for p in strongest))


PHRASE_CHARS = 200


def _cut(phrase: str) -> str:
    """At most ``PHRASE_CHARS`` characters, " ..." included, cut between words."""
    if len(phrase) <= PHRASE_CHARS:
        return phrase
    room = PHRASE_CHARS - 4
    # One character more: a space there means the last word ends at the cut and is kept.
    return (phrase[: room + 1].rsplit(" ", 1)[0] or phrase[:room]) + " ..."


def delete_spans(text: str, spans: list[Span]) -> str:
    """``text`` with every span cut out (overlaps merged): what the faithfulness check scores."""
    keep, pos = [], 0
    for s in sorted(spans, key=lambda s: s.start):
        if s.start > pos:
            keep.append(text[pos : s.start])
        pos = max(pos, s.end)
    keep.append(text[pos:])
    return " ".join(" ".join(keep).split())
