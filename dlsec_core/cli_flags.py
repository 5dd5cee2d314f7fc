"""Command-line flags generated from `Config` metadata, so the CLI, the forms and the validator agree.

`ConfigFlags(parser, {"pgd": PGD, "cw": CW, ...})` adds one flag per parameter of any of the configs (`--steps`,
`--binary-search-steps`, `--random-start/--no-random-start`), typed from the field, with the label, range and
default of every config that has it in its help. `flags.given(args, "cw")` returns the flags the user gave, and
a flag that the chosen config does not have is an error naming it and listing the config's own, never a value
silently dropped.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from typing import Any

from dlsec_core.config import ParamSpec, specs
from dlsec_core.errors import InvalidInputError


def _float(text: str) -> float:
    """A float flag; "inf" is accepted here and refused by the validator where a field does not allow it."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


class ConfigFlags:
    """The flags of a family of configs (the attacks, the transforms, the recipes) on one parser."""

    def __init__(
        self,
        parser: argparse._ActionsContainer,
        configs: Mapping[str, type],
        *,
        prefix: str = "",
        skip: tuple[str, ...] = (),
        what: str = "",
    ) -> None:
        self.configs = dict(configs)
        self.prefix = prefix
        self.what = what
        self.owners: dict[str, list[tuple[str, ParamSpec]]] = {}
        for key, cls in self.configs.items():
            for spec in specs(cls):
                if spec.name in skip or spec.kind == "model":
                    continue
                self.owners.setdefault(spec.name, []).append((key, spec))
        for name, owners in self.owners.items():
            self._add(parser, name, owners)

    def flag(self, name: str) -> str:
        return f"--{self.prefix}{name}".replace("_", "-")

    def dest(self, name: str) -> str:
        return f"{self.prefix}{name}".replace("-", "_")

    def _add(
        self, parser: argparse._ActionsContainer, name: str, owners: list[tuple[str, ParamSpec]]
    ) -> None:
        spec = owners[0][1]
        kwargs: dict[str, Any] = {"dest": self.dest(name), "default": None, "help": self._help(owners)}
        options = {str(getattr(o, "value", o)) for _, s in owners for o in (s.options or ())}
        converters: dict[type, Callable[[str], Any]] = {int: int, float: _float, str: str}
        convert = converters.get(spec.type or str)
        if spec.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif options and all(s.options is not None for _, s in owners):
            kwargs["choices"] = sorted(options)
        else:
            kwargs["type"] = convert
            kwargs["metavar"] = {int: "N", float: "X"}.get(spec.type or str, "VALUE")
        parser.add_argument(self.flag(name), **kwargs)

    def _help(self, owners: list[tuple[str, ParamSpec]]) -> str:
        """The label, range and default of each config that has the parameter (grouped when they agree)."""
        groups: dict[str, list[str]] = {}
        for key, spec in owners:
            parts = [spec.label]
            if spec.bounds is not None:
                parts.append(spec.bounds.describe() + (" or inf" if spec.allow_inf else ""))
            default = getattr(spec.default, "value", spec.default)
            if default is not None and not (isinstance(default, float) and math.isinf(default)):
                parts.append(f"default {default}")
            groups.setdefault("; ".join(parts), []).append(key)
        if len(self.configs) == 1:
            return " | ".join(groups).replace("%", "%%")
        text = " | ".join(f"{', '.join(keys)}: {desc}" for desc, keys in groups.items())
        return text.replace("%", "%%")

    def given(self, args: argparse.Namespace, key: str | None) -> dict[str, Any]:
        """The flags given on the command line for config `key` (None: no config chosen).

        Raises `InvalidInputError` naming every given flag that `key` does not have.
        """
        values = {
            name: getattr(args, self.dest(name))
            for name in self.owners
            if getattr(args, self.dest(name), None) is not None
        }
        own = {s.name for s in specs(self.configs[key])} if key is not None else set()
        foreign = [self.flag(name) for name in values if name not in own]
        if foreign:
            if key is None:
                verb = "needs" if len(foreign) == 1 else "need"
                raise InvalidInputError(
                    f"{', '.join(foreign)} {verb} a --{self.what or 'config'} to apply to."
                )
            allowed = [self.flag(n) for n, owners in self.owners.items() if any(k == key for k, _ in owners)]
            raise InvalidInputError(
                f"{', '.join(foreign)} {'is not a parameter' if len(foreign) == 1 else 'are not parameters'} of "
                f"the {self.what} {key}; its parameters are {', '.join(allowed) or 'none'}."
            )
        return values
