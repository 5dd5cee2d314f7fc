"""One base for every config: fields declared once, with their range, options and help.

A config is a frozen dataclass deriving from `Config`, whose hyperparameters are declared with `param(...)`:

    steps: int = param(40, "Steps", min=1, max=10_000, help="...")
    alpha: float | None = param(None, "Step size α", min=0.0, min_open=True, max=10.0)

The metadata drives everything that used to be written three times and drifted apart:

- `validate()` (run by `__post_init__`) checks every field against it: the type, NaN and infinity, the range
  (each end inclusive unless `min_open` / `max_open`), the options. It collects *every* problem and raises one
  `InvalidInputError` listing them all, as Opacus's `ModuleValidator.validate` does for a model. Subclasses add
  rules that involve several fields by overriding `cross_check(problems)`, which appends to the same list.
- forms (`dlsec_ui.widgets.config_form`) and CLI flags (`dlsec_core.cli_flags`) are generated from `specs(cls)`,
  so the page, the command line and the validator offer and accept exactly the same values.
- `to_json` / `from_json` round-trip a config; unknown and missing fields are named all at once.

Fields declared as plain dataclass fields (no `param`: lists, dicts of nested settings) are checked by the
subclass's `check_plain(problems)`, which runs with the field checks (so one error names every bad setting); rules
between fields go in `cross_check`, which runs once every field is valid on its own.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import numbers
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from dlsec_core.errors import InvalidInputError

_MISSING: Any = dataclasses.MISSING


def param(
    default: Any = _MISSING,
    label: str = "",
    *,
    help: str = "",
    min: float | None = None,
    max: float | None = None,
    min_open: bool = False,
    max_open: bool = False,
    options: typing.Iterable[Any] | None = None,
    step: float | None = None,
    kind: str | None = None,
    allow_inf: bool = False,
    default_factory: Any = _MISSING,
    compare: bool = True,
    repr: bool = True,
    **extra: Any,
) -> Any:
    """A config field with its label, help, range and options, read by the validator, forms and CLI flags.

    Args:
        default: the default value (or give `default_factory`).
        label: the name people see (form label, CLI help); "Short name (details)" reads best.
        help: one sentence more (form tooltip, CLI help).
        min, max: the allowed range; an end is inclusive unless `min_open` / `max_open` says it is exclusive.
        options: the allowed values (for an enum field: its members, the default).
        step: the form's increment.
        kind: how to edit it when the type does not say (e.g. "model": a stored model, picked, not typed).
        allow_inf: a float field may be +inf (a minimal attack's "no budget").
        extra: further metadata kept as is (e.g. `describe=False`: not part of a one-line description).
    """
    meta: dict[str, Any] = {"label": label, "help": help, **extra}
    for key, value in (("min", min), ("max", max), ("step", step), ("kind", kind)):
        if value is not None:
            meta[key] = value
    if min_open:
        meta["min_open"] = True
    if max_open:
        meta["max_open"] = True
    if allow_inf:
        meta["allow_inf"] = True
    if options is not None:
        meta["options"] = tuple(options)
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, compare=compare, repr=repr, metadata=meta)
    return dataclasses.field(default=default, compare=compare, repr=repr, metadata=meta)


@dataclass(frozen=True)
class Bounds:
    """A numeric field's range; each end inclusive unless open; None = unbounded on that side."""

    lo: float | None
    hi: float | None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False

    def contains(self, value: float) -> bool:
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return not (self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi))

    def extremes(self) -> tuple[float | None, float | None]:
        """The smallest and largest values a form may offer: the ends themselves, or for an open end the nearest
        value inside it (the next integer, or the next float)."""
        return self._inside(self.lo, self.lo_open, +1), self._inside(self.hi, self.hi_open, -1)

    def _inside(self, end: float | None, is_open: bool, direction: int) -> float | None:
        if end is None or not is_open:
            return end
        if self.integer:
            return end + direction
        return math.nextafter(end, direction * math.inf)

    def describe(self) -> str:
        """E.g. "an integer from 1 to 10,000", "a number in (0, 1]", "a number ≥ 0"."""
        what = "an integer" if self.integer else "a number"
        lo, hi = _num(self.lo), _num(self.hi)
        if self.lo is not None and self.hi is not None:
            if not self.lo_open and not self.hi_open:
                return f"{what} from {lo} to {hi}"
            return f"{what} in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{what} {'>' if self.lo_open else '≥'} {lo}"
        if self.hi is not None:
            return f"{what} {'<' if self.hi_open else '≤'} {hi}"
        return what


def _num(value: float | None) -> str:
    if value is None:
        return ""
    if float(value).is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    return f"{value:g}"


@dataclass(frozen=True)
class ParamSpec:
    """One `param` field of a config class, resolved: what the validator, a form and a CLI flag need."""

    name: str
    label: str
    help: str
    type: type | None  # int, float, bool, str or an Enum subclass; None = not checked (dicts, modules, ...)
    optional: bool  # None is allowed
    default: Any  # MISSING when the field is required
    options: tuple[Any, ...] | None
    bounds: Bounds | None
    step: float | None
    kind: str | None
    allow_inf: bool
    metadata: typing.Mapping[str, Any]

    @property
    def short_label(self) -> str:
        """The label up to its first parenthesis: "Step size α (pixel units; ...)" -> "Step size α"."""
        return self.label.split(" (")[0].strip() or self.name

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def problem(self, value: Any) -> tuple[str | None, Any]:
        """(None, the value converted to the field's type) when `value` is allowed, else (a sentence, value)."""
        if value is None:
            return (None, None) if self.optional else (self._bad(value, "must be given"), value)
        value, type_problem = self._converted(value)
        if type_problem:
            return self._bad(value, type_problem), value
        if self.options is not None and value not in self.options:
            shown = ", ".join(str(getattr(o, "value", o)) for o in self.options)
            return self._bad(value, f"must be one of {shown}"), value
        in_range = (
            self.bounds is None or (self.allow_inf and value == math.inf) or self.bounds.contains(value)
        )
        if not in_range:
            return self._bad(value, f"must be {self.bounds.describe()}"), value  # type: ignore[union-attr]
        return None, value

    def _converted(self, value: Any) -> tuple[Any, str | None]:
        kind = self.type
        if kind is None:
            return value, None
        if kind is bool:
            return (value, None) if isinstance(value, bool) else (value, "must be true or false")
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                return value, f"must be {self.bounds.describe() if self.bounds else 'an integer'}"
            return int(value), None
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                return value, f"must be {self.bounds.describe() if self.bounds else 'a number'}"
            value = float(value)
            if math.isnan(value):
                return value, "must be a number, not NaN"
            if math.isinf(value) and not (self.allow_inf and value > 0):
                return value, "must be finite" + ("" if not self.allow_inf else " or +inf")
            return value, None
        if kind is str:
            return (value, None) if isinstance(value, str) else (value, "must be text")
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            try:
                return kind(value), None
            except ValueError:
                shown = ", ".join(str(m.value) for m in kind)
                return value, f"must be one of {shown}"
        return value, None

    def _bad(self, value: Any, what: str) -> str:
        shown = getattr(value, "value", value)
        return f"{self.short_label} (`{self.name}`) {what}, got {shown!r}"


_SIMPLE = {"int": int, "float": float, "bool": bool, "str": str}


def _resolve(cls: type, f: dataclasses.Field[Any]) -> tuple[type | None, bool]:
    """(the field's checked type or None, whether None is allowed), from its annotation."""
    try:
        hint: Any = typing.get_type_hints(cls)[f.name]
    except Exception:  # an annotation naming a type only imported for type checkers: parse the text
        text = str(f.type).replace(" ", "")
        parts = text.split("|")
        optional = "None" in parts
        rest = [p for p in parts if p != "None"]
        return (_SIMPLE.get(rest[0]) if len(rest) == 1 else None), optional
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        optional = type(None) in args
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else None
    if hint in (int, float, bool, str) or (isinstance(hint, type) and issubclass(hint, enum.Enum)):
        return hint, optional
    return None, optional


_SPECS: dict[type, tuple[ParamSpec, ...]] = {}


def specs(cls: type) -> tuple[ParamSpec, ...]:
    """The `param` fields of a config class (or any dataclass whose fields carry `param` metadata), in order."""
    if cls not in _SPECS:
        _SPECS[cls] = _read_specs(cls)
    return _SPECS[cls]


def _read_specs(cls: type) -> tuple[ParamSpec, ...]:
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if "label" not in meta or not f.init:
            continue
        kind, optional = _resolve(cls, f)
        if meta.get("kind") == "model":
            kind = None
        options = meta.get("options")
        if options is None and isinstance(kind, type) and issubclass(kind, enum.Enum):
            options = tuple(kind)
        if not set(meta.get("form_options", ())) <= set(options or ()):
            raise TypeError(f"{cls.__name__}.{f.name}: form_options must be a subset of its options")
        bounds = None
        if kind in (int, float) and ("min" in meta or "max" in meta):
            bounds = Bounds(
                meta.get("min"), meta.get("max"), bool(meta.get("min_open")), bool(meta.get("max_open")),
                integer=kind is int,
            )  # fmt: skip
        default = f.default if f.default is not _MISSING else _MISSING
        if default is _MISSING and f.default_factory is not _MISSING:
            default = typing.cast(Any, f.default_factory)()
        out.append(
            ParamSpec(
                name=f.name,
                label=meta["label"],
                help=meta.get("help", ""),
                type=kind,
                optional=optional,
                default=default,
                options=None if options is None else tuple(options),
                bounds=bounds,
                step=meta.get("step"),
                kind=meta.get("kind"),
                allow_inf=bool(meta.get("allow_inf")),
                metadata=meta,
            )  # fmt: skip
        )
    return tuple(out)


def spec_of(cls: type, name: str) -> ParamSpec:
    """The `param` field `name` of `cls` (KeyError when it has none)."""
    for s in specs(cls):
        if s.name == name:
            return s
    raise KeyError(f"{cls.__name__} has no parameter {name!r}")


@dataclass(frozen=True, kw_only=True)
class Config:
    """Base of every config: validated from its fields' `param` metadata, JSON round-trip.

    Subclasses declare hyperparameters with `param(...)` and put rules that involve several fields in
    `cross_check`. Class variable `title` (if any) names the config in error messages.
    """

    #: True: `cross_check` runs even when a field is bad (each of its rules first checks the fields it reads),
    #: so a bad ε list is named beside a bad image count; False: only once every field is valid on its own.
    cross_check_always: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every `param` field and `check_plain`, then the cross-field rules; raise one error listing every
        problem.

        Values are converted to the declared type on the way (an int for a float field becomes a float, "l2" for
        a `Norm` field becomes `Norm.L2`). Cross-field rules run only once each field is valid on its own.
        """
        problems: list[str] = []
        for spec in specs(type(self)):
            problem, value = spec.problem(getattr(self, spec.name))
            if problem:
                problems.append(problem)
            elif value is not getattr(self, spec.name):
                object.__setattr__(self, spec.name, value)
        self.check_plain(problems)
        if not problems or self.cross_check_always:
            self.cross_check(problems)
        if problems:
            raise InvalidInputError(_summary(self.config_name(), problems))

    def check_plain(self, problems: list[str]) -> None:
        """Checks of fields declared without `param` (a list of ids, a dict of nested settings) that stand on
        their own: they run beside the `param` checks, so one error names them all (subclasses call super)."""

    def cross_check(self, problems: list[str]) -> None:
        """Rules between fields: append a sentence per problem (subclasses call `super().cross_check`)."""

    @classmethod
    def config_name(cls) -> str:
        title = getattr(cls, "title", "")
        return title if isinstance(title, str) and title else cls.__name__

    @classmethod
    def parameters(cls) -> tuple[ParamSpec, ...]:
        """The `param` fields with their resolved metadata (for forms and CLI flags)."""
        return specs(cls)

    def to_json(self) -> dict[str, Any]:
        """The fields as plain JSON (enums as their strings; +inf as "inf"); model-valued fields are left out."""
        data = {}
        for f in dataclasses.fields(self):
            if not f.init or f.metadata.get("kind") == "model":
                continue
            value = getattr(self, f.name)
            if isinstance(value, float) and value == math.inf and f.metadata.get("allow_inf"):
                value = "inf"
            data[f.name] = _plain(value)
        return typing.cast(dict[str, Any], json.loads(json.dumps(data, allow_nan=False)))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> typing.Self:
        """Rebuild a config; unknown and missing fields are one error naming them all."""
        if not isinstance(data, dict):
            raise InvalidInputError(f"A {cls.__name__} is a JSON object, got {data!r}.")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - set(fields))
        missing = sorted(
            name for name, f in fields.items()
            if name not in data and f.default is _MISSING and f.default_factory is _MISSING
        )  # fmt: skip
        problems = [f"it has no field(s) {', '.join(unknown)}"] if unknown else []
        problems += [f"field(s) {', '.join(missing)} missing"] if missing else []
        if problems:
            raise InvalidInputError(f"{cls.__name__}: {'; '.join(problems)}.")
        values = {
            k: math.inf if v == "inf" and fields[k].metadata.get("allow_inf") else v for k, v in data.items()
        }
        return cls(**values)


def _plain(value: Any) -> Any:
    """Enums as their values, dataclasses, tuples, lists and dicts recursively (JSON-able)."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _summary(name: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{name}: {problems[0]}."
    return f"{name}: {len(problems)} settings are invalid: " + "; ".join(problems) + "."
