"""The one signal registry, keyed by type name (``Signal.type_name``, ``type`` in manifests).

Manifests, saved models, the CLI's ``--signals`` and the README's evidence table all read this
registry. Built-in signals register below, one line each; a plug-in registers the same way from
its own module (``register_signal(MySignal)``), and recall, ranking and the CLI pick it up.
"""

from __future__ import annotations

from riskrank.index.signals.base import CliOption, EvidenceColumn, IndexKind, Signal
from riskrank.index.signals.clip import ClipImageSignal, ClipTextSignal
from riskrank.index.signals.nsfw import NsfwSignal
from riskrank.index.signals.pdq import PdqSignal
from riskrank.index.signals.text import TextEmbeddingSignal
from riskrank.index.tables import SchemaError

_REGISTRY: dict[str, type[Signal]] = {}


def _check_declarations(cls: type[Signal]) -> None:
    """Refuse a signal class that leaves part of the contract undeclared, naming the part."""
    problems = []
    if not isinstance(cls, type) or not issubclass(cls, Signal):
        raise TypeError(f"register_signal: expected a Signal subclass, got {cls!r}")
    if not cls.type_name:
        problems.append("type_name is empty")
    if not cls.name or not cls.name.isidentifier():
        problems.append(f"name {cls.name!r} is not an identifier (it prefixes column names)")
    if not isinstance(cls.index_kind, IndexKind):
        problems.append(f"index_kind {cls.index_kind!r} is not an IndexKind")
    if not all(isinstance(c, EvidenceColumn) for c in cls.evidence_columns):
        problems.append("evidence_columns must all be EvidenceColumn")
    if not all(isinstance(o, CliOption) for o in cls.cli_options):
        problems.append("cli_options must all be CliOption")
    if getattr(cls, "__abstractmethods__", None):
        problems.append(f"abstract methods not implemented: {sorted(cls.__abstractmethods__)}")
    if problems:
        raise TypeError(f"register_signal({cls.__name__}): " + "; ".join(problems))


def register_signal(cls: type[Signal]) -> type[Signal]:
    """Make a signal type known to manifests, models, recall, ranking and the CLI.

    Returns the class, so it also works as a decorator. Registering another class under a
    taken type name is refused; registering the same class again is a no-op. Two classes may
    share a signal name (a test encoder standing in for ``text``); ``--signals NAME`` then
    means the first registered.
    """
    _check_declarations(cls)
    other = _REGISTRY.get(cls.type_name)
    if other is not None and other is not cls:
        raise ValueError(f"register_signal: type name {cls.type_name!r} is taken by {other}")
    _REGISTRY[cls.type_name] = cls
    return cls


def unregister_signal(type_name: str) -> None:
    """Forget a registered signal type (tests that register their own)."""
    _REGISTRY.pop(type_name, None)


def registered_signals() -> dict[str, type[Signal]]:
    """Every registered signal type, by type name, in registration order."""
    return dict(_REGISTRY)


def signal_class(name: str) -> type[Signal]:
    """The registered class with this type name, else the first with this signal name
    (``pdq``, ``text``, ...)."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    for cls in _REGISTRY.values():
        if name == cls.name:
            return cls
    known = ", ".join(dict.fromkeys(cls.name for cls in _REGISTRY.values()))
    raise ValueError(f"unknown signal {name!r}; registered: {known}")


def signal_from_manifest(entry: dict) -> Signal:
    """Rebuild the query-side signal an index (or a saved model) was built with."""
    type_name = entry.get("type")
    if type_name not in _REGISTRY:
        raise SchemaError(
            f"manifest names signal type {type_name!r}, which is not registered; "
            f"known: {sorted(_REGISTRY)} (register the plug-in before loading)"
        )
    return _REGISTRY[type_name].from_manifest(entry)


# The built-in signals: one line each.
register_signal(TextEmbeddingSignal)
register_signal(ClipImageSignal)
register_signal(ClipTextSignal)
register_signal(PdqSignal)
register_signal(NsfwSignal)

# What every process knows on importing riskrank (a Ray worker, a fresh session); a plug-in is
# known only where its own code registered it.
BUILT_IN_TYPES = frozenset(_REGISTRY)
