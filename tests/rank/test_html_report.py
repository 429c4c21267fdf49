"""report.html: self-contained, escaped, and working in a real (headless Chromium) browser."""

from __future__ import annotations

import re
import shutil

import pyarrow as pa
import pytest

from riskrank.rank.evaluation.html_report import campaigns, segments, write_html_report


@pytest.fixture(scope="module")
def html_report(tmp_path_factory, explained_sweep):
    from riskrank.rank.evaluation.report import evaluate

    inv, seeds, result = explained_sweep
    labels = pa.table({"item_id": inv["item_id"], "verdict": pa.compute.multiply(inv["label"], 2)})
    texts = dict(zip(inv["item_id"].to_pylist(), inv["text"].to_pylist()))
    out = tmp_path_factory.mktemp("html")
    path = write_html_report(
        out,
        result.report,
        result.queue,
        quality=evaluate(result.queue, labels),
        labels=labels,
        texts=texts,
        seeds=seeds,
        top=100,
    )
    return path, result.queue, texts


def test_report_is_one_self_contained_escaped_file(html_report):
    path, queue, _ = html_report
    html = path.read_text()
    # Nothing is fetched: no external src/href, images inline.
    assert not re.search(r'(src|href)="(?!data:|#)', html)
    assert "http://" not in html and "https://" not in html
    assert html.count("<script>") == 1  # ours; the inventory's is shown as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'src="data:image/png;base64,' in html
    assert html.count('class="queue-row"') == min(100, queue.num_rows)
    for key in ("items in", "items quarantined", "<td>AP</td>", "<td>diet</td>"):
        assert key in html


def test_segments_cut_text_around_highlights():
    text = "x" * 1000 + " guaranteed approval now " + "y" * 1000
    spans = [
        {"start": 1001, "end": 1020, "phrase": "guaranteed approval", "source": "lexical"},
        {"start": 1012, "end": 1024, "phrase": "approval now", "source": "seed"},
    ]
    segs = segments(text, spans, window=200)
    assert segs[0] == ("\u2026", None) and segs[-1] == ("\u2026", None)
    marked = [(p, c) for p, c in segs if c]
    assert marked == [
        ("guaranteed ", "lexical"),
        ("approval", "seed lexical"),
        (" now", "seed"),
    ]
    assert sum(len(p) for p, s in segs[1:-1]) == 200
    assert segments("short", []) == [("short", None)]


def test_campaigns_group_queue_rows():
    q = pa.table(
        {
            "rank": [1, 2, 3, 4, 5, 6],
            "item_id": ["a", "b", "c", "d", "e", "f"],
            "policy": ["scam", "scam", "diet", "scam", "scam", "scam"],
            "risk_probability": [0.9, 0.8, 0.7, 0.1, 0.1, 0.05],
            "campaign_id": ["c1", None, "c1", "c2", "c2", "c2"],
        }
    )
    groups = campaigns(q)
    # The riskiest campaign first, not the largest (c2 is larger and benign-looking).
    assert [g["id"] for g in groups] == ["c1", "c2"]
    assert groups[0]["items"] == ["a", "c"] and groups[0]["policies"] == "diet, scam"
    assert campaigns(q.drop(["campaign_id"])) is None


def test_campaign_mode_rows_count_their_members(tmp_path):
    """A campaign-mode queue holds one row per campaign: the table said 1 item for a campaign
    of 3, and the row did not say that its verdict judges every member (an outsider's report)."""
    q = pa.table(
        {
            "rank": [1, 2],
            "item_id": ["a", "d"],
            "policy": ["scam", "scam"],
            "risk_probability": [0.9, 0.2],
            "campaign_id": ["c-a", "c-d"],
            "campaign_members": [["a", "b", "c"], ["d"]],
        }
    )
    groups = campaigns(q)
    assert [g["items"] for g in groups] == [["a", "b", "c"], ["d"]]
    report = {"inventory": {"input_rows": 4}, "timings_s": {}}
    page = write_html_report(tmp_path, report, q).read_text()
    assert (
        "campaign c-a &middot; 3 items: a verdict by campaign_id judges them all (by item_id, "
        "this item only)" in page
    )
    assert "campaign c-d &middot;" not in page
    assert "<th>queued (campaigns)</th>" in page  # the policy table counts campaigns here
    # A member other than the representative reviewed before and edited since: only the
    # Parquet column said so (an outsider's loop).
    q = q.append_column(
        "campaign_members_previous_verdict",
        pa.array([[None, 2, None], [None]], pa.list_(pa.int8())),
    )
    page = write_html_report(tmp_path, report, q).read_text()
    assert page.count("members reviewed before and changed since: b (violating)") == 1


def _chromium():
    browser = next(
        (
            shutil.which(b)
            for b in ("chromium", "chromium-browser", "google-chrome")
            if shutil.which(b)
        ),
        None,
    )
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip(
            "headless Chromium is not installed: apt-get install chromium chromium-driver "
            "(.ci/run does this)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install -e .[test]")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    opts.add_argument("--window-size=1500,1600")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


def test_report_in_headless_chromium(html_report, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    path, queue, texts = html_report
    top = queue.slice(0, 100).to_pylist()
    driver = _chromium()
    try:
        driver.get(path.as_uri())
        rows = driver.find_elements(By.CSS_SELECTOR, "#queue tbody tr.queue-row")
        assert [r.get_attribute("data-rank") for r in rows] == [str(r["rank"]) for r in top]
        first = rows[0].text
        assert top[0]["item_id"] in first and top[0]["explanation"] in first
        # Highlights: the browser shows exactly the marked pieces of each row's excerpt.
        n_marks = 0
        for tr, row in zip(rows, top):
            marks = [m.text.strip() for m in tr.find_elements(By.CSS_SELECTOR, ".excerpt mark")]
            expected = segments(texts[row["item_id"]], row["highlight_spans"])
            assert marks == [p.strip() for p, cls in expected if cls]
            n_marks += len(marks)
        assert (
            n_marks >= 10 and len(driver.find_elements(By.CSS_SELECTOR, "#queue mark")) == n_marks
        )
        # Hostile text is shown, not run.
        with pytest.raises(NoAlertPresentException):
            _ = driver.switch_to.alert.text
        evil = [tr for tr, row in zip(rows, top) if row["item_id"] == "evil"]
        if evil:
            assert "<script>alert(1)</script>" in evil[0].text
        # Filter by policy.
        policies = sorted(
            {r["policy"] for r in top}, key=lambda p: [r["policy"] for r in top].count(p)
        )
        assert len(policies) == 2, policies  # scam, and diet (cold start)
        diet = [r for r in top if r["policy"] == policies[0]]
        Select(driver.find_element(By.ID, "policy-filter")).select_by_value(policies[0])
        visible = [r for r in rows if r.is_displayed()]
        assert len(visible) == len(diet) and all(
            r.get_attribute("data-policy") == policies[0] for r in visible
        )
        assert driver.find_element(By.ID, "shown").text == f"{len(diet)} shown"
        Select(driver.find_element(By.ID, "policy-filter")).select_by_value("")
        assert all(r.is_displayed() for r in rows)
        # Sort by probability (ascending on first click).
        driver.find_element(By.CSS_SELECTOR, 'th[data-key="p"]').click()
        ps = [
            float(r.get_attribute("data-p"))
            for r in driver.find_elements(By.CSS_SELECTOR, "#queue tbody tr.queue-row")
        ]
        assert ps == sorted(ps)
        driver.find_element(By.CSS_SELECTOR, 'th[data-key="rank"]').click()
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        driver.quit()


def test_bidirectional_controls_are_shown_not_obeyed():
    """A right-to-left override in an ad's text reorders what the reviewer reads around it
    ("kcilc" reads "click"); every value the page prints shows such controls by name."""
    from riskrank.rank.evaluation.html_report import _environment

    page = _environment().from_string("<p>{{ text }}</p>").render(text="free \u202ekcilc\u202c now")
    assert "\u202e" not in page and "free [U+202E]kcilc[U+202C] now" in page


def test_an_item_edited_since_its_review_says_so(tmp_path):
    """An ad queued again because it changed since its review showed no sign of it and read
    as "a near-copy of a rejected ad" (an outsider's week of sweeps)."""
    q = pa.table(
        {
            "rank": [1, 2],
            "item_id": ["a", "b"],
            "policy": ["scam", "scam"],
            "risk_probability": [0.9, 0.2],
            "reviewed": ["changed", ""],
            "previous_verdict": pa.array([2, None], pa.int8()),
            "reviewed_elsewhere": [[], ["scam:2", "spam:0"]],
        }
    )
    report = {"inventory": {"input_rows": 2}, "timings_s": {}}
    page = write_html_report(tmp_path, report, q).read_text()
    assert page.count("reviewed before: violating; changed since") == 1
    # The same content judged under other policies is shown too.
    assert page.count("judged under other policies: scam: violating, spam: benign") == 1


def test_the_closest_review_shows_its_day_and_campaign(tmp_path):
    """ "review-v3" names the model version an import made; the page also shows when the
    reviewed queue was swept and the campaign it was decided with (an outsider's week)."""
    q = pa.table(
        {
            "rank": [1],
            "item_id": ["a"],
            "policy": ["scam"],
            "risk_probability": [0.9],
            "closest_reviewed_id": ["b"],
            "closest_reviewed_verdict": pa.array([2], pa.int8()),
            "closest_reviewed_sweep": ["review-v3"],
            "closest_reviewed_swept_at": ["2026-12-05T06:00:00+00:00"],
            "closest_reviewed_campaign": ["c-b"],
        }
    )
    report = {"inventory": {"input_rows": 1}, "timings_s": {}}
    page = write_html_report(tmp_path, report, q).read_text()
    assert "review-v3 (queue of 2026-12-05) &middot; campaign c-b" in page


def test_the_policy_table_says_how_each_policy_was_calibrated_and_when_it_acts(tmp_path):
    """The kind of calibration and the automatic-action threshold were only in report.md and
    report.json: report.html's policy table showed neither (an outsider's finding)."""
    q = pa.table(
        {
            "rank": [1, 2],
            "item_id": ["a", "b"],
            "policy": ["insult", "spam"],
            "risk_probability": [0.7, 0.9],
        }
    )
    report = {
        "inventory": {"input_rows": 2},
        "decisions": {
            "insult": {"model": "transfer", "calibration": "policy_reviews",
                       "action_threshold": None},
            "spam": {"model": "warm", "calibration": "own_reviews", "action_threshold": 0.8125},
        },
    }  # fmt: skip
    page = write_html_report(tmp_path, report, q).read_text()
    rows = page.split('<table id="policies">')[1].split("</table>")[0].split("<tr>")[2:]
    assert "policy_reviews" in rows[0] and "never (escalate)" in rows[0], rows[0]
    assert "transfer" in rows[0]
    assert "own_reviews" in rows[1] and "0.812" in rows[1] and "warm" in rows[1], rows[1]


def _noise_jpeg(seed: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG")
    return buf.getvalue()


def test_a_sweep_without_inventory_does_not_show_a_picture_changed_since_indexing(
    tmp_path, history, seeds
):
    # A sweep over the standing index as it stands scores the indexed pictures, but the HTML
    # read each file as it is now: a seed copy written over an ad's file was shown beside
    # "No seed is close" (an outsider's report). That row shows no picture, and says why.
    from hashing_signal import HashingTextSignal

    from riskrank.index.signals.pdq import PdqSignal
    from riskrank.rank.evaluation.report import pictures_changed_since_indexed
    from riskrank.rank.pipeline import sweep, train

    folder = tmp_path / "creatives"
    folder.mkdir()
    for i in range(3):
        (folder / f"p{i}.jpg").write_bytes(_noise_jpeg(i))
    signals = [HashingTextSignal(), PdqSignal(base_dir=folder)]
    model = train(history, seeds, tmp_path / "m", signals=signals, k=200, show_progress=False)
    texts = ["free iphone, pay the shipping fee", "loan approval, no credit check", "a lake"]
    inv = pa.table({"item_id": ["a", "b", "c"], "text": texts,
                    "image_path": ["p0.jpg", "p1.jpg", "p2.jpg"]})  # fmt: skip
    kw = {"index_dir": tmp_path / "st", "image_base_dir": folder, "show_progress": False}
    sweep(inv, seeds, model, out_dir=tmp_path / "day", **kw)
    (folder / "p1.jpg").write_bytes(_noise_jpeg(9))  # replaced after the index was made
    result = sweep(None, seeds, model, out_dir=tmp_path / "retro", reports=True, **kw)
    assert pictures_changed_since_indexed(result.report, result.queue, folder) == {"b"}
    html = (tmp_path / "retro" / "report.html").read_text()
    assert html.count("picture not shown: its file has changed") == 1
    assert html.count('alt="item image"') == 2
    # Files not found now (no --image-base-dir) have no thumbnail, and are no sign of change.
    blind = sweep(None, seeds, model, out_dir=tmp_path / "blind", reports=True,
                  index_dir=tmp_path / "st", show_progress=False)  # fmt: skip
    assert pictures_changed_since_indexed(blind.report, blind.queue, None) == set()
    assert "picture not shown" not in (tmp_path / "blind" / "report.html").read_text()
    # With today's inventory the index is today's: nothing is stale.
    today = sweep(inv, seeds, model, out_dir=tmp_path / "day2", **kw)
    assert pictures_changed_since_indexed(today.report, today.queue, folder) == set()


def test_a_picture_match_to_a_reviewed_item_shows_its_picture(tmp_path, history, seeds):
    """ "reviewed h005 · violating · pdq sim 0.95" stood beside an unrelated caption: the
    reviewer could not see the picture that matched (an outsider's report). The model's
    history keeps its reviewed pictures; the report shows the one named."""
    from hashing_signal import HashingTextSignal

    from riskrank.index.signals.pdq import PdqSignal
    from riskrank.rank.pipeline import sweep, train

    pictures = [_noise_jpeg(i) if i < 6 else None for i in range(history.num_rows)]
    hist = history.append_column("image_bytes", pa.array(pictures, pa.binary()))
    reviewed = hist.slice(0, 6).to_pylist()
    model = train(hist, seeds, tmp_path / "m", signals=[HashingTextSignal(), PdqSignal()], k=200,
                  show_progress=False)  # fmt: skip
    inv = pa.table(
        {
            "item_id": ["copy", "other"],
            "image_bytes": [reviewed[2]["image_bytes"], _noise_jpeg(40)],
        }
    )
    pic = pa.table({"seed_id": ["s-pic"], "policy": ["scam"], "image_bytes": [_noise_jpeg(41)]})
    both = pa.concat_tables([seeds, pic], promote_options="default")
    for given in (model, tmp_path / "m"):  # a model in memory (train's) and one loaded
        out = tmp_path / f"run-{type(given).__name__}"
        result = sweep(inv, both, given, out_dir=out, reports=True, k=None, show_progress=False)
        assert result.report["model"]["dir"] == str((tmp_path / "m").resolve())
        rows = {r["item_id"]: r for r in result.queue.to_pylist()}
        assert rows["copy"]["closest_reviewed_id"] == reviewed[2]["item_id"]
        assert rows["copy"]["closest_reviewed_signal"] == "pdq"
        html = (out / "report.html").read_text()
        shown = sum(r["closest_reviewed_signal"] == "pdq" for r in rows.values())
        assert html.count('alt="reviewed image"') == shown >= 1


def test_an_explore_pick_says_so_in_both_reports(tmp_path, explained_sweep):
    """Only queue.parquet said which rows were exploration picks: the reports showed rank 3 at
    p=0.11 with nothing saying it was not the risk order (a reviewer's report)."""
    from riskrank.rank.evaluation.report import write_report

    _, seeds, result = explained_sweep
    queue = result.queue
    why = "explore: ranker unsure, leaning violation (p=0.56) | <b>x</b>"
    slots = ["exploit"] * queue.num_rows
    reasons = [f"risk: p={p:.2f}" for p in queue["risk_probability"].to_pylist()]
    slots[2], reasons[2] = "explore", why
    for name, values in (("slot", slots), ("slot_reason", reasons)):
        queue = queue.set_column(queue.column_names.index(name), name, pa.array(values))
    html = write_html_report(tmp_path, result.report, queue, seeds=seeds, top=10).read_text()
    assert html.count('<span class="explore">') == 1 and "<b>x</b>" not in html
    assert "(p=0.56) | &lt;b&gt;x&lt;/b&gt;" in html
    md = write_report(tmp_path, result.report, queue).read_text()
    rows = [line for line in md.splitlines() if line.startswith("| 3 |")]
    assert len(rows) == 1 and "**explore: ranker unsure" in rows[0], md
    assert "(p=0.56) \\| &lt;b&gt;x&lt;/b&gt;**" in rows[0]  # a "|" would end the cell
    assert md.count("explore: ") == 1


def test_report_md_cells_hold_hostile_ids_as_text(tmp_path, explained_sweep):
    """An id with a "|" split its row of report.md (8 cells, the policy under P(risk)), and
    ``<img onerror>`` went into it as markup (an outsider's report; report.html escaped it)."""
    from riskrank.rank.evaluation.report import write_report

    _, _, result = explained_sweep
    queue = result.queue
    ids = queue["item_id"].to_pylist()
    ids[0] = "evil|pipe<img src=x onerror=alert(2)>\nnext"
    queue = queue.set_column(queue.column_names.index("item_id"), "item_id", pa.array(ids))
    md = write_report(tmp_path, result.report, queue).read_text()
    (row,) = [line for line in md.splitlines() if line.startswith("| 1 |")]
    assert "<img" not in md and "evil\\|pipe&lt;img src=x onerror=alert(2)&gt; next" in row
    assert len(re.split(r"(?<!\\)\|", row)) == 8, row  # 6 cells between 7 bars
    # A backslash before a bar, and link or image syntax: text too (a reviewer's finding);
    # the other sections quote policies and warnings as text as well.
    from riskrank.rank.evaluation.report import md_cell

    assert (
        md_cell("a\\|b") == "a\\\\\\|b"
        and md_cell("![t](http://x/p.png)") == "!\\[t\\](http://x/p.png)"
    )
    report = {**result.report, "policies": ["x|<b>y</b>"], "warnings": ["policy 'x|<b>y</b>'"]}
    md = write_report(tmp_path, report, queue).read_text()
    assert "<b>" not in md and "| policies | x\\|&lt;b&gt;y&lt;/b&gt; |" in md
