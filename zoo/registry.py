"""The one registry pattern of the suite: models, frameworks and backends are all
looked up by name here, and a misspelt name is answered with the valid ones."""

from __future__ import annotations

import difflib
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownName(LookupError):
    """A name that is not registered; the message is meant for the user as is."""

    def __init__(self, kind: str, name: object, valid: list[str], prefix: str = ""):
        """`prefix` is shown before the name and each valid one, but not compared
        (a shared `workload.` must not make every key look alike)."""
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        close = difflib.get_close_matches(str(name), self.valid, n=1, cutoff=0.6)
        hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
        listed = ", ".join(prefix + v for v in self.valid)
        super().__init__(f"unknown {kind} '{prefix}{name}'.{hint} Valid: {listed}")

    def __str__(self) -> str:  # LookupError would quote the message
        return self.args[0]


class Registry(Generic[T]):
    """Name -> class. Classes register themselves with `@registry.register` and carry
    their own `name` attribute, so the name lives next to the code it names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, cls: T) -> T:
        name = cls.name
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = cls
        return cls

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownName(self.kind, name, list(self._entries)) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[T]:
        return iter(self._entries[n] for n in self.names())
