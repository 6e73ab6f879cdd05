"""The rule registry: every check registers itself here with :func:`rule`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from ..suggestions import Suggestion
from .context import MapContext

RuleFunction = Callable[[MapContext], Iterable[Suggestion]]


@dataclass(frozen=True)
class Rule:
    """One check: ``id`` is the Suggestion's ``check``; ``modes`` None means every mode."""

    id: str
    category: str
    title: str  # one line, as Mapset Verifier lists its checks
    run: RuleFunction
    modes: frozenset[int] | None = None

    def applies_to(self, mode: int) -> bool:
        return self.modes is None or mode in self.modes


RULES: dict[str, Rule] = {}


def rule(id: str, category: str, title: str, modes: Iterable[int] | None = None) -> Callable[[RuleFunction], RuleFunction]:
    """Register the decorated function as the check ``id``."""

    def register(run: RuleFunction) -> RuleFunction:
        if id in RULES:
            raise ValueError(f"rule {id!r} is registered twice")
        RULES[id] = Rule(id, category, title, run, frozenset(modes) if modes is not None else None)
        return run

    return register
