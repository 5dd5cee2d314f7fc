"""One registry of named config classes of a kind (attacks, input transforms, output policies, extraction attacks).

A registry is a dict `name -> class` (so pages and tests list and index it as before); `register` is the class
decorator that adds a class under its `name`, `build(name, **settings)` makes one, naming an unknown class or an
unknown setting in a sentence the user can act on.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Generic, TypeVar

from dlsec_core.errors import InvalidInputError, NotFoundError

T = TypeVar("T")


class Registry(dict[str, type[T]], Generic[T]):
    """The registered classes of one kind, e.g. `ATTACKS = Registry[Attack]("attack")`."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: add `cls` under its `name` (empty or taken names are a programming error)."""
        name = getattr(cls, "name", "")
        if not name or name in self:
            raise ValueError(f"{self.kind} name {name!r} is empty or registered twice")
        self[name] = cls
        return cls

    def build(self, name: str, **params: Any) -> T:
        """The registered class `name` made with `params`; an unknown name or setting is one clear error."""
        if name not in self:
            raise NotFoundError(f"No {self.kind} named {name!r}; choose one of {', '.join(self)}.")
        cls = self[name]
        unknown = set(params) - {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        if unknown:
            raise InvalidInputError(f"{name} has no parameter(s) {', '.join(sorted(unknown))}.")
        return cls(**params)
