"""Texts the text encoder reads as unknown tokens only (emoji, a script outside its
vocabulary) all got one vector: they matched each other at similarity 1 and one campaign
verdict labelled them all (an outsider's report). They are now set aside with a reason."""

from __future__ import annotations

import pyarrow as pa
import pytest

from riskrank.index.signals.text import UNKNOWN_ONLY
from riskrank.index.tables import SchemaError
from riskrank.rank.pipeline import sweep

UNKNOWN = {
    "e_mid": "🖕🖕🖕",
    "e_rage": "😡🤬😡🤬",
    "e_heart": "❤️❤️❤️",
    "e_cake": "🎂🎉🎁",
    "th_insult": "คุณโง่มาก",  # Thai: MiniLM's vocabulary has none of its letters
    "e_punct": "🖕 !!!",  # reads as "🎂 !!!" does: unknown tokens and punctuation only
    "e_word": "🖕 you",  # reads as "❤️ you": one known word beside as many unknown tokens
}
KNOWN = {
    "k_mixed": "I ❤️ you",
    "k_accent": "café olé",
    "k_cjk": "中文",
    "k_plain": "hello",
    "k_bang": "!!!",  # known content, read as it is
    "k_more_words": "you are an idiot 🖕",  # the words outnumber the unknown token
    # One content word carries the vector: set aside, one emoji took a short insult out of
    # every sweep (an outsider's 300k run). Such texts read alike with other emoji.
    "k_word_emoji": "Idiot 🎉",
    "k_word_emojis": "idiot 🔥🎉🎉💰",
    "k_emoji_word": "✅❤️ Idiot.",
    "k_th_word": "ฟรี money",  # reads as "ขาย money" does, and near "money"
}


@pytest.mark.parametrize("fixture", ["text_signal", "torch_signal"])
def test_each_backend_tells_unknown_only_texts(fixture, request):
    encoder = request.getfixturevalue(fixture).encoder
    texts = list(UNKNOWN.values()) + list(KNOWN.values())
    flags = encoder.unknown_only(texts).tolist()
    assert flags == [True] * len(UNKNOWN) + [False] * len(KNOWN)
    # (Why it matters: the encoder gives such texts one vector.)
    vectors = encoder.encode(["🖕🖕🖕", "❤️❤️❤️", "🖕 you", "❤️ you"])
    assert float(vectors[0] @ vectors[1]) > 0.999 and float(vectors[2] @ vectors[3]) > 0.999


def test_unknown_only_texts_are_set_aside_not_matched_or_grouped(
    tmp_path, inventory_items, seeds, trained_model
):
    extra = pa.table({"item_id": list(UNKNOWN), "text": list(UNKNOWN.values())})
    inventory = pa.concat_tables([inventory_items.select(["item_id", "text"]), extra])
    result = sweep(
        inventory, seeds, trained_model, out_dir=tmp_path / "out", budget=None,
        campaigns=True, k=None, show_progress=False,
    )  # fmt: skip
    report, quarantine, queue = result.report, result.quarantine, result.queue
    # None is lost: each is quarantined with the reason, none reaches the queue.
    assert report["items_in"] == inventory.num_rows
    assert report["items_in"] == report["items_indexed"] + report["items_quarantined"]
    held = dict(zip(quarantine["item_id"].to_pylist(), quarantine["reason"].to_pylist()))
    assert set(UNKNOWN) <= set(held) and all(UNKNOWN_ONLY in held[i] for i in UNKNOWN)
    members = {m for ms in queue["campaign_members"].to_pylist() for m in ms}
    assert not members & set(UNKNOWN)
    # A seed that is only emoji would match every such item at 1: it is refused by name.
    emoji_seed = pa.table({"seed_id": ["s_emoji"], "policy": ["scam"], "text": ["🖕"]})
    both = pa.concat_tables([seeds.select(["seed_id", "policy", "text"]), emoji_seed])
    with pytest.raises(SchemaError, match=r"seed 's_emoji': text: too few words the text"):
        sweep(inventory, both, trained_model, budget=None, show_progress=False)


def test_a_sweep_without_inventory_refuses_an_index_still_holding_such_vectors(
    tmp_path, monkeypatch, inventory_items, seeds, trained_model
):
    # An index last updated before the rule holds their vectors; a sweep without an inventory
    # does not update it and searched them (their one vector chained them into a campaign).
    # It now says so and how to mend it; the update it names drops them.
    import riskrank.index.standing as standing_module
    from riskrank.index.signals.text import TextEncoder
    from riskrank.index.store import IndexMismatchError

    extra = pa.table({"item_id": list(UNKNOWN), "text": list(UNKNOWN.values())})
    inventory = pa.concat_tables([inventory_items.select(["item_id", "text"]), extra])
    index_dir = tmp_path / "standing"
    with monkeypatch.context() as m:  # the code before the rule: none refused, none recorded
        m.setattr(TextEncoder, "unknown_only", lambda self, texts: [False] * len(texts))
        m.setattr(standing_module, "UNREADABLE_RULE", None)
        sweep(inventory, seeds, trained_model, index_dir=index_dir, show_progress=False)
    with pytest.raises(
        IndexMismatchError, match=rf"vectors of {len(UNKNOWN)} such item\(s\) \('e_cake'"
    ):
        sweep(None, seeds, trained_model, index_dir=index_dir, show_progress=False)
    sweep(inventory, seeds, trained_model, index_dir=index_dir, show_progress=False)
    result = sweep(None, seeds, trained_model, index_dir=index_dir, show_progress=False)
    assert set(UNKNOWN) <= set(result.quarantine["item_id"].to_pylist())
