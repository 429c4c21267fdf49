"""Progress bars: the one place that decides whether a bar is drawn.

tqdm redraws a bar several times a second. On a terminal that rewrites one line in place; in a
scheduled job's log (stderr a file or a pipe) every redraw is a new line, so the log grows with
the run time (outsider CB: 92 bar lines, 85 of them ``encode``, for a 15 s sweep). So a bar is
drawn where the caller asks for progress AND its stream is a terminal: tqdm's own rule for
``disable=None``. In Jupyter ``tqdm.auto`` gives the notebook widget, which draws either way.
A log still says what a sweep did: its stages are logged (``riskrank`` logger).
"""

from __future__ import annotations

from tqdm.auto import tqdm


def bar(iterable=None, *, show: bool, **kwargs) -> tqdm:
    """A ``tqdm`` bar over ``iterable`` (or one updated by hand, ``total=``), drawn only when
    ``show`` and the bar's stream (``file=``, default stderr) is a terminal."""
    return tqdm(iterable, disable=None if show else True, **kwargs)
