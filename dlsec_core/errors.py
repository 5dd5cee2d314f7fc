"""The project's own error types.

Every error a user can cause (a bad file, an impossible parameter) is a `DlsecError` whose message is a sentence a
workshop participant understands. Pages and the CLI catch `DlsecError` and show `str(err)`; anything else is a
bug and is allowed to surface.
"""

from __future__ import annotations


class DlsecError(Exception):
    """Base class: the message is meant for the end user."""


class InvalidInputError(DlsecError, ValueError):
    """A file, an array or a parameter that cannot be used as given."""


class UnsafeFileError(InvalidInputError):
    """A file that could run code when loaded (pickle, TorchScript); refused without opening it."""


class NotFoundError(DlsecError, KeyError):
    """A model, job or dataset id that does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; we want the plain sentence.
        return str(self.args[0]) if self.args else "not found"


class CancelledError(DlsecError):
    """A job that was cancelled by its user."""


class NotAllowedError(DlsecError, PermissionError):
    """Something this participant may not do in a workshop room: change another participant's model or run, queue
    more runs than the room allows, or log in with a wrong passcode."""
