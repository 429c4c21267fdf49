"""The benchmarks' --data option: a labelled text set of one's own, read and checked.

quality.py / replay.py / explore_variants.py run on it (hidden-set checks run the same way), so
a bad file must stop with what is wrong, before any embedding.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quality():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(ROOT / "benchmarks"))


def _set(n: int = 60, **cols) -> dict:
    base = {
        "item_id": [f"m{i}" for i in range(n)],
        "text": [f"text number {i}" for i in range(n)],
        "label": [int(i % 3 == 0) for i in range(n)],
    }
    base.update(cols)
    return base


def _write(tmp_path: Path, cols: dict, name: str = "set.parquet") -> Path:
    path = tmp_path / name
    if name.endswith(".csv"):
        pacsv.write_csv(pa.table(cols), path)
    else:
        pq.write_table(pa.table(cols), path)
    return path


def test_a_set_without_split_is_halved_by_id_hash_whatever_the_row_order(quality, tmp_path):
    cols = _set()
    hist, sweep = quality.read_labelled(_write(tmp_path, cols))
    assert hist.num_rows + sweep.num_rows == 60 and min(hist.num_rows, sweep.num_rows) > 15
    assert set(hist["item_id"].to_pylist()).isdisjoint(sweep["item_id"].to_pylist())
    rev = {k: v[::-1] for k, v in cols.items()}
    hist2, _ = quality.read_labelled(_write(tmp_path, rev, "rev.parquet"))
    assert sorted(hist2["item_id"].to_pylist()) == sorted(hist["item_id"].to_pylist())
    label = dict(zip(cols["item_id"], cols["label"]))
    assert all(
        label[i] == y for i, y in zip(hist["item_id"].to_pylist(), hist["label"].to_pylist())
    )


def test_split_and_graded_verdicts_from_csv(quality, tmp_path):
    cols = _set(48, split=["train" if i < 24 else "test" for i in range(48)])
    cols["verdict"] = [3 if i % 4 == 0 else (1 if i % 4 == 1 else 0) for i in range(48)]
    del cols["label"]
    hist, sweep = quality.read_labelled(_write(tmp_path, cols, "set.csv"))
    assert hist["item_id"].to_pylist() == [f"m{i}" for i in range(24)]
    # verdict >= 2 is violating; a borderline 1 is not
    assert hist["label"].to_pylist() == [int(i % 4 == 0) for i in range(24)]
    assert sweep.num_rows == 24


def test_empty_texts_are_left_out_and_counted(quality, tmp_path, capsys):
    cols = _set()
    cols["text"][1] = "  "
    cols["text"][2] = None
    hist, sweep = quality.read_labelled(_write(tmp_path, cols))
    assert hist.num_rows + sweep.num_rows == 58
    assert "2 row(s) with an empty text (or only invisible characters) left out" in (
        capsys.readouterr().out
    )


def test_texts_of_invisible_characters_are_left_out_and_counted_as_the_index_would(
    quality, tmp_path, capsys
):
    """The index quarantines a text of zero-width characters: the set must not count it as
    a row (a replay's violations would include rows it never sees)."""
    cols = _set()
    cols["text"][0] = "\u200b\u200d\u200b"
    hist, sweep = quality.read_labelled(_write(tmp_path, cols))
    assert hist.num_rows + sweep.num_rows == 59
    assert "1 row(s) with an empty text" in capsys.readouterr().out


def test_csv_as_a_data_owner_writes_it(quality, tmp_path):
    """RFC 4180 CSV: quoted texts with line breaks (mails), and ids kept as written."""
    cols = _set()
    # Long enough (about 3 MB) that Arrow's reader splits the file into blocks: a block
    # boundary inside a quoted line break broke rows apart before.
    body = "\n".join(f'line {j}, "quoted" words' for j in range(2000))
    cols["text"] = [f"Subject: offer {i}\n\n{body}" for i in range(60)]
    cols["item_id"] = [str(100 + i) for i in range(60)]  # ids that look like numbers
    cols["item_id"][7], cols["item_id"][8] = "007", "7"
    hist, sweep = quality.read_labelled(_write(tmp_path, cols, "mails.csv"))
    both = pa.concat_tables([hist, sweep])
    assert both.num_rows == 60 and {"007", "7"} <= set(both["item_id"].to_pylist())
    text = dict(zip(both["item_id"].to_pylist(), both["text"].to_pylist()))
    assert text["103"] == cols["text"][3]


def test_a_parquet_directory_is_one_set(quality, tmp_path):
    cols = _set()
    (tmp_path / "set").mkdir()
    for part in range(2):
        chunk = {k: v[part * 30 : (part + 1) * 30] for k, v in cols.items()}
        pq.write_table(pa.table(chunk), tmp_path / "set" / f"part-{part}.parquet")
    hist, sweep = quality.read_labelled(tmp_path / "set")
    assert hist.num_rows + sweep.num_rows == 60


def test_only_the_sides_a_benchmark_uses_need_violations(quality, tmp_path):
    """The replay draws seeds from the sweep side only: a set that is all sweep is fine there
    and refused where the history side is used."""
    path = _write(tmp_path, _set(split=["sweep"] * 60))
    _, sweep = quality.read_labelled(path, sides=("sweep",))
    assert sweep.num_rows == 60
    with pytest.raises(SystemExit, match="history side has 0 rows"):
        quality.read_labelled(path)


@pytest.mark.parametrize(
    "change, says",
    [
        (lambda c: c.pop("text"), "missing column(s) text"),
        (lambda c: c.pop("label"), "label (or verdict)"),
        (lambda c: c["item_id"].__setitem__(5, "m4"), "1 repeated item_id(s), e.g. 'm4'"),
        (lambda c: c["label"].__setitem__(3, 2), "outside [0, 1], e.g. row 3: 2"),
        (lambda c: c["label"].__setitem__(3, None), "e.g. row 3: None"),
        (lambda c: c.__setitem__("verdict", [0] * 60), "both 'label' and 'verdict'"),
        (lambda c: c.__setitem__("text", list(range(60))), "holds int64, not strings"),
        (lambda c: c.__setitem__("split", ["history"] * 59 + ["later"]), "row 59 has 'later'"),
        (lambda c: c.__setitem__("label", [int(i == 0) for i in range(60)]), "needs at least"),
        # 1 written for violating in a verdict column: the likely cause is named.
        (lambda c: c.__setitem__("verdict", c.pop("label")), "name the column 'label' if 1"),
    ],
)
def test_bad_sets_are_refused_naming_the_file_and_the_fault(quality, tmp_path, change, says):
    cols = _set()
    change(cols)
    path = _write(tmp_path, cols)
    with pytest.raises(SystemExit) as err:
        quality.read_labelled(path)
    assert str(path) in str(err.value) and says in str(err.value)


def test_unreadable_or_unknown_files_are_refused(quality, tmp_path):
    bad = tmp_path / "x.parquet"
    bad.write_bytes(b"not parquet")
    for path, says in ((bad, "unreadable"), (tmp_path / "none.parquet", "no such file")):
        with pytest.raises(SystemExit, match=says):
            quality.read_labelled(path)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(SystemExit, match="parquet or .csv"):
        quality.read_labelled(tmp_path / "x.json")


def test_a_csv_that_is_not_utf8_says_so(quality, tmp_path):
    path = tmp_path / "cp1252.csv"
    rows = "".join(f"m{i},text {i},{int(i % 3 == 0)}\n" for i in range(60))
    path.write_bytes(b"item_id,text,label\n" + rows.encode() + "m60,caf\u00e9,0\n".encode("cp1252"))
    with pytest.raises(SystemExit, match="not valid UTF-8"):
        quality.read_labelled(path)


def test_a_parquet_text_that_is_not_utf8_and_an_empty_csv_id_are_refused(quality, tmp_path):
    cols = _set()
    raw = pa.array([t.encode() for t in cols["text"][:-1]] + [b"\xff bad"], pa.binary())
    cols["text"] = raw.view(pa.string())  # Parquet strings are not checked when written or read
    with pytest.raises(SystemExit, match="not valid UTF-8"):
        quality.read_labelled(_write(tmp_path, cols))
    cols = _set()
    cols["item_id"][4] = ""  # a CSV's empty cell, read as a string
    with pytest.raises(SystemExit, match="without an item_id, e.g. row 4"):
        quality.read_labelled(_write(tmp_path, cols, "ids.csv"))


def test_register_data_names_the_policy_and_its_cold_start_donor(quality, tmp_path):
    path = _write(tmp_path, _set())
    ap = argparse.ArgumentParser()
    quality.add_data_options(ap)
    args = ap.parse_args(["--data", f"mine={path}", "--cold-from", "insults"])
    try:
        assert quality.register_data(args.data, args.cold_from) == ["mine"]
        assert quality.POLICY["mine"] == "mine" and quality.OTHER["mine"] == "insults"
        assert quality.split("mine") == quality.EXTRA["mine"]
        made = quality.DATA_FILES["mine"]
        assert made["file"] == str(path.resolve()) and made["cold_from"] == "insults"
        assert len(made["sha256"]) == 64 and sum(made["rows"].values()) == 60
        for spec in ("insults=" + str(path), "mine=" + str(path), "a b=x", "nofile"):
            with pytest.raises(SystemExit):
                quality.register_data([spec], "spamassassin")
    finally:
        for table in (quality.EXTRA, quality.POLICY, quality.OTHER, quality.DATA_FILES):
            table.pop("mine", None)


def test_each_text_model_has_its_own_index_cache(quality, tmp_path):
    """--text-model: another model's vectors never land in (or are read from) the default
    model's cache, and two models do not share one."""
    from riskrank.index.signals import TextEncoder

    default = quality.encoder_cache(TextEncoder(backend="torch"))
    assert default == quality.CACHE  # PyTorch fp32, the first default, keeps its place
    auto = quality.encoder_cache(TextEncoder())
    ran = TextEncoder().backend  # "auto": openvino where the [fast] extra is installed
    assert auto == (quality.CACHE if ran == "torch" else quality.CACHE / ran)
    a = quality.encoder_cache(TextEncoder(str(tmp_path / "a")))
    b = quality.encoder_cache(TextEncoder(str(tmp_path / "b")))
    assert len({default, a, b}) == 3
    assert quality.encoder_cache(TextEncoder(str(tmp_path / "a"), backend="onnx-int8")) not in {
        default,
        a,
        b,
    }


@pytest.fixture(scope="module")
def replay(quality):
    spec = importlib.util.spec_from_file_location("replay", ROOT / "benchmarks" / "replay.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["replay"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("replay", None)


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--methods", "bank,foo"], "unknown method(s) ['foo']"),
        (["--max-rounds", "0"], "at least 1"),
    ],
)
def test_replay_refuses_bad_options_before_any_work(replay, monkeypatch, capsys, argv, says):
    monkeypatch.setattr(sys, "argv", ["replay.py", "--trials", "0", *argv])
    with pytest.raises(SystemExit) as err:
        replay.main()
    assert err.value.code == 2 and says in capsys.readouterr().err


def test_replay_resume_refuses_another_data_file_under_the_same_name(replay, tmp_path):
    """--resume must not average trials of two different files (or cold starts) as one set."""
    made = {"file": "/data/a.parquet", "sha256": "a" * 64, "cold_from": "insults", "rows": {}}
    meta = {"max_rounds": 40, "young_model": "transfer", "lexical": True,
            "library": {"commit": "c0"}, "data": {"mine": made}}  # fmt: skip
    (tmp_path / "replay_mine.json").write_text(json.dumps({"meta": meta, "results": {}}))
    args = argparse.Namespace(out=str(tmp_path), max_rounds=40, young_model="transfer",
                              lexical=True, library={"commit": "c1"})  # fmt: skip
    try:
        for now in (
            {**made, "sha256": "b" * 64},
            {**made, "cold_from": "spamassassin"},
        ):
            replay.quality.DATA_FILES["mine"] = now
            with pytest.raises(SystemExit, match="ran on /data/a.parquet"):
                replay.resume(args, {"mine": {"bank": []}})
        replay.quality.DATA_FILES["mine"] = dict(made)
        replay.resume(args, {"mine": {"bank": []}})  # the same file: resumed
        del meta["data"]  # a run that recorded no file cannot be shown to be this one
        (tmp_path / "replay_mine.json").write_text(json.dumps({"meta": meta, "results": {}}))
        with pytest.raises(SystemExit, match="no recorded data file"):
            replay.resume(args, {"mine": {"bank": []}})
    finally:
        replay.quality.DATA_FILES.pop("mine", None)


def test_labels_in_words_or_digit_strings_and_a_category_text_column(quality, tmp_path):
    """Labels stored as the strings '0'/'1' were refused as "outside [0, 1]", words with no
    hint, and a pandas category text column that the sweep reads (an outsider's report)."""
    cols = _set()
    want = cols["label"]
    for labels in (
        [str(v) for v in want],
        ["violating" if v else " Benign" for v in want],
        ["TRUE" if v else "false" for v in want],
        ["severe" if v else "borderline" for v in want],  # as verdicts: >= 2 is violating
    ):
        hist, sweep = quality.read_labelled(_write(tmp_path, {**cols, "label": labels}))
        got = dict(zip(hist["item_id"].to_pylist(), hist["label"].to_pylist()))
        got.update(zip(sweep["item_id"].to_pylist(), sweep["label"].to_pylist()))
        assert got == dict(zip(cols["item_id"], want))
    with pytest.raises(SystemExit, match=r"'spam' \(label takes 0/1, true/false or the grade"):
        quality.read_labelled(_write(tmp_path, {**cols, "label": ["spam"] * 60}))
    category = pa.table(cols).set_column(1, "text", pa.array(cols["text"]).dictionary_encode())
    pq.write_table(category, tmp_path / "cat.parquet")
    hist, sweep = quality.read_labelled(tmp_path / "cat.parquet")
    assert hist.schema.field("text").type == pa.string()


def test_replay_warns_when_a_set_shares_texts_with_its_cold_start_set(replay):
    """A --data set cut from Insults replayed with --cold-from insults: its cold-start model
    has seen the shared texts' labels, which flatters the early rounds (an outsider's note)."""
    from types import SimpleNamespace

    mine = SimpleNamespace(name="mine", text=["you  idiot", "buy now", "hello there"])
    other = SimpleNamespace(name="insults", text=["you idiot\n", "something else"])
    assert replay.cold_overlap(mine, other) == (
        "replay: 1 of mine's 3 texts are also in insults, whose items train its cold-start "
        "model (round 0 has seen their labels); take --cold-from the other set or leave them out"
    )
    assert replay.cold_overlap(mine, SimpleNamespace(name="spamassassin", text=["x"])) is None


def test_replay_names_the_seconds_a_run_did_not_record(replay):
    """Parts written before the sets' embedding was timed printed `[None, 41]` (a reviewer)."""
    assert replay._recorded([None, 41]) == "[not recorded, 41]"
    assert replay._recorded(None) == "not recorded" and replay._recorded(12) == 12


def test_replay_says_exploration_pays_back_on_the_mean_not_a_majority_of_trials(replay):
    """Three trials won by 1-6 reviews and two lost by 4-6 were "yes": on average exploration
    needed more (an outsider's report). A trial that never got there reads as such."""
    said = replay._pays_back([144, 147, 153, 165, 149], [145, 149, 159, 161, 143])
    assert said == "no (+0.2 reviews on average; fewer in 3 of 5 trials)"
    # A trial exploration never finished counts against it (four of five unfinished read
    # "yes" on the one left: a reviewer's report).
    assert replay._pays_back([None, None, None, None, 100], [120] * 5) == (
        "no (-20.0 reviews on average over the 1 trials both finished; it did not reach 80% "
        "in 4 trial(s) where exploit did; fewer in 1 of 5 trials)"
    )
    assert replay._pays_back([100, 90], [None, 95]).startswith("yes (-5.0 reviews")
    assert replay._n(None) == "not reached" and replay._n(401.2) == "401.2"
    assert replay._reached(None, [None, 300]) == "not reached [not reached, 300]"
    assert replay._reached(150.5, [150, 151]) == "150.5 [150, 151]"


def test_quality_calls_a_lead_within_the_trials_spread_so(quality):
    """+0.001 AP over two trials read "PASS" like a clear win (an outsider's report)."""
    import argparse

    def warm(rr, lr):
        return {"warm": {"riskrank": {"5": {"AP": rr}}, "maxcos": {"5": {"AP": [0.9, 0.01]}},
                         "logreg": {"5": {"AP": lr}}}}  # fmt: skip

    args = argparse.Namespace(datasets=["sms"], n_seeds=[5])
    close = quality.goal_checks({"sms": warm([0.988, 0.004], [0.987, 0.003])}, args)
    assert close[0]["status"] == "PASS (lead within the trials' spread)"
    clear = quality.goal_checks({"sms": warm([0.99, 0.002], [0.95, 0.003])}, args)
    assert clear[0]["status"] == "PASS"
    behind = quality.goal_checks({"sms": warm([0.94, 0.002], [0.95, 0.003])}, args)
    assert behind[0]["status"] == "MISS"


def _tiny_set(replay, tmp_path, name: str, policy: str, words: tuple[str, str]):
    """A ``replay.Set`` over a hashing-signal index: 30 items, every third one violating."""
    import numpy as np
    from hashing_signal import HashingTextSignal

    from riskrank.index import build_index

    ids = [f"{name}-{i}" for i in range(30)]
    y = np.array([int(i % 3 == 0) for i in range(30)])
    text = [f"{words[v]} offer number {i} {words[v]}" for i, v in enumerate(y)]
    index = build_index(
        pa.table({"item_id": ids, "text": text}),
        tmp_path / name,
        signals=[HashingTextSignal()],
        show_progress=False,
    )
    s = object.__new__(replay.Set)
    si = index.signals["text"]
    s.name, s.policy, s.index = name, policy, index
    s.ids = list(si.ids)
    s.row = {i: r for r, i in enumerate(s.ids)}
    order = [ids.index(i) for i in s.ids]
    s.y, s.text = y[order], [text[r] for r in order]
    s.X = np.ascontiguousarray(si.vectors, np.float32)
    s.ngrams = None
    return s


def test_a_data_sets_replay_cold_start_learns_from_both_shipped_sets(replay, tmp_path):
    """``replay.py --data``'s cold start pools both shipped sets' histories, each its own
    policy (borrowing one made the first round depend on which: SMS spam 91 of 100 from
    SpamAssassin's, 100 from Insults'); quality.py keeps one donor and refuses ``both``."""
    ap = argparse.ArgumentParser()
    replay.quality.add_data_options(ap, pooled=True)
    assert ap.parse_args([]).cold_from == replay.quality.POOLED
    single = argparse.ArgumentParser()
    replay.quality.add_data_options(single)
    assert single.parse_args([]).cold_from == "spamassassin"
    with pytest.raises(SystemExit):
        single.parse_args(["--cold-from", "both"])
    try:
        replay.quality.OTHER["mine"] = replay.quality.POOLED
        assert replay.quality.cold_sources("mine") == replay.quality.SHIPPED
        replay.quality.OTHER["mine"] = "insults"
        assert replay.quality.cold_sources("mine") == ("insults",)
    finally:
        replay.quality.OTHER.pop("mine", None)
    a = _tiny_set(replay, tmp_path, "a", "spam", ("hello", "winner cash prize"))
    b = _tiny_set(replay, tmp_path, "b", "insult", ("thanks", "you idiot moron"))
    one = replay.other_context([a], trial=0)
    both = replay.other_context([a, b], trial=0)
    assert set(one["other_hist"]["policy"].to_pylist()) == {"spam"}
    assert set(both["other_hist"]["policy"].to_pylist()) == {"spam", "insult"}
    # each set's own candidates, its 5 seeds left out, as the one-set context has them
    assert both["other_cands"].num_rows == 2 * (30 - 5) == both["other_hist"].num_rows
    first = both["other_cands"].slice(0, 25)
    for col in first.column_names:  # (NaN in some: compared as equal, as repr)
        assert repr(first[col].to_pylist()) == repr(one["other_cands"][col].to_pylist()), col
    assert sorted(both["cold"].calibration_) == sorted(one["cold"].calibration_)
