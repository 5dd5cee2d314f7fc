"""Helpers the study configs share: every problem of a config named in one error, arrays as artifact files."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from dlsec_core.errors import DlsecError, InvalidInputError


class Problems:
    """Collects the problems of a config; `raise_any` raises them all as one `InvalidInputError`.

    >>> p = Problems()
    >>> with p.check():
    ...     raise InvalidInputError("One.")
    >>> p.add("Two.")
    >>> p.raise_any()
    Traceback (most recent call last):
    dlsec_core.errors.InvalidInputError: One. Two.
    """

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, sentence: str) -> None:
        self.items.append(sentence)

    @contextmanager
    def check(self, what: str = "") -> Iterator[None]:
        """Note an `InvalidInputError` (or the TypeError of an unknown field in `what`'s settings) and go on."""
        try:
            yield
        except DlsecError as err:
            self.items.append(str(err))
        except TypeError as err:  # SomeConfig(**{"bogus": 1}): "got an unexpected keyword argument 'bogus'"
            name = re.search(r"argument '(\w+)'", str(err))
            self.items.append(
                f"No setting {name[1]!r} in the {what or ''} settings.".replace("  ", " ")
                if name
                else f"Bad {what or 'settings'}: {err}."
            )

    def build(self, factory: Callable[..., Any], params: Any, what: str) -> Any:
        """`factory(**params)`, or None with the problem noted (also when `params` is not a JSON object)."""
        if not isinstance(params, dict):
            self.items.append(f"The {what} settings are a JSON object, got {params!r}.")
            return None
        with self.check(what):
            return factory(**params)
        return None

    def raise_any(self) -> None:
        if self.items:
            raise InvalidInputError(" ".join(self.items))


def model_id_list(model_ids: Any, problems: Problems, *, most: int = 16) -> None:
    """Check a config's list of stored model ids (1 to `most`, no repeats)."""
    if not isinstance(model_ids, list) or not all(isinstance(i, str) and i for i in model_ids):
        problems.add(f"The models are a list of stored model ids, got {model_ids!r}.")
    elif not 1 <= len(model_ids) <= most:
        problems.add(f"Pick 1 to {most} models, got {len(model_ids)}.")
    elif len(set(model_ids)) < len(model_ids):
        problems.add("Pick each model once.")


def npy_bytes(array: npt.ArrayLike) -> bytes:
    """An array as the bytes of a .npy file (an artifact a study returns)."""
    out = io.BytesIO()
    np.save(out, np.asarray(array), allow_pickle=False)
    return out.getvalue()


def read_arrays(paths: Iterable[Path]) -> dict[str, npt.NDArray[Any]]:
    """The .npy artifacts of a run by file name without the suffix (e.g. "images-0")."""
    return {p.stem: np.load(p, allow_pickle=False) for p in paths if p.suffix == ".npy"}
