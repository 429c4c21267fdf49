"""Progress bars are drawn on a terminal only: a scheduled job's log gets no bar lines
(outsider CB: 92 of them for a 15 s sweep, one per redraw)."""

import contextlib
import io

import riskrank as rr
from riskrank.index import progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def drawn(show: bool, stream) -> str:
    for _ in progress.bar(range(3), show=show, file=stream, desc="work", mininterval=0):
        pass
    return stream.getvalue()


def test_a_bar_is_drawn_only_when_asked_for_and_on_a_terminal():
    assert "work" in drawn(True, Terminal())
    assert drawn(True, io.StringIO()) == ""  # a log file or a pipe
    assert drawn(False, Terminal()) == ""


def test_a_sweep_writes_no_bar_lines_into_a_log(tmp_path, hashing_model, seeds, inventory_items):
    inv = inventory_items.drop(["label"])
    for stream, name in ((io.StringIO(), "log"), (Terminal(), "terminal")):
        with contextlib.redirect_stderr(stream):
            rr.sweep(inv, seeds, hashing_model, out_dir=tmp_path / name, show_progress=True)
        if name == "log":
            assert "recall" not in stream.getvalue() and "|" not in stream.getvalue()
        else:
            assert "recall" in stream.getvalue()  # the same sweep on a terminal shows its bars
