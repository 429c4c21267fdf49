"""Python's cyclic garbage collector around a sweep: what was loaded is not walked again.

CPython's collector walks every tracked object on a full (generation-2) collection, and one
runs whenever the long-lived objects have grown by a quarter since the last. A sweep imports
PyTorch, transformers and sentence-transformers (some 400,000 objects) and then makes hundreds
of thousands of small ones (spans, rows, content keys), so full collections kept walking the
libraries: on a day-1 standing sweep (benchmarks/incremental.py's, 20,790 items) 10 full
collections took 2.6 s of 37 s, 1.6 s of them inside the encoder's import and ~1 s while the
reasons cache was read and written.

- ``paused()``: the collector off while a model is imported and loaded (imports and weights
  make next to no cyclic garbage); reference counting frees everything else as usual.
- ``frozen()``: everything alive on entry, and whatever ``freeze_more()`` is called for inside
  (the loaded model), is moved to the permanent generation until exit (``gc.freeze`` /
  ``gc.unfreeze``), so the collector walks only the sweep's own objects. Nothing is collected
  less: a frozen object that became garbage is collected after exit. A process that froze
  objects itself before is left as it is (its freeze is not undone on exit). One sweep at a
  time per process is what this counts on (threads sharing one freeze would unfreeze it for
  each other: harmless to results, only slower).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """The cyclic collector off inside (restored to what it was on exit)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


_frozen = 0  # depth of ``frozen`` blocks that froze (nested ones leave it to the outer)


@contextmanager
def frozen() -> Iterator[None]:
    """``gc.freeze()`` on entry and ``gc.unfreeze()`` on exit (also a decorator). Inside,
    ``freeze_more()`` freezes what was made since. Left alone where the process had frozen
    objects itself: its freeze is never undone."""
    global _frozen
    if _frozen or gc.get_freeze_count():
        _frozen += bool(_frozen)
        try:
            yield
        finally:
            _frozen -= bool(_frozen)
        return
    gc.freeze()
    _frozen = 1
    try:
        yield
    finally:
        _frozen = 0
        gc.unfreeze()


def freeze_more() -> None:
    """Inside a ``frozen`` block that froze: freeze what was made since (a loaded model)."""
    if _frozen:
        gc.freeze()


__all__ = ["freeze_more", "frozen", "paused"]
