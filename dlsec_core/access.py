"""Who may change what: the acting participant of a workshop room, checked by the store itself.

Every model and run has an `owner` (a participant's display name; runs made outside a room carry the browser
session's id, models made outside a room carry none). Reading is open to all: participants see everyone's models.
Changing (deleting a model, cancelling or deleting a run) takes an `Actor`:

- `None`, the lab outside a room (one local user, the CLI, a notebook): everything is allowed, as before rooms;
- a participant: only what they own;
- the instructor: everything.

The rule lives here and the store applies it inside its own transactions (`Store.delete_model`,
`RunStore.cancel`, `RunStore.delete`), so a page that forgot to hide a button still cannot delete another
participant's work.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlsec_core.errors import NotAllowedError

INSTRUCTOR = "instructor"
"""The owner of what the instructor makes (prepared models, runs queued from the instructor's session)."""


@dataclass(frozen=True)
class Actor:
    """The participant doing something: their owner name, and whether they are the room's instructor."""

    owner: str
    instructor: bool = False

    def may_change(self, owner: str | None) -> bool:
        """May this actor delete or cancel something owned by `owner`? (None: made outside any room.)"""
        return self.instructor or (owner is not None and owner == self.owner)


def check_may_change(actor: Actor | None, owner: str | None, what: str) -> None:
    """Raise `NotAllowedError` naming `what` and its owner unless `actor` may change it (None: no room, allowed).

    Args:
        actor: who acts; None outside a room.
        owner: the owner stored on the row.
        what: the thing, as a participant reads it, e.g. "model 'cnn-a' (3f2a...)".
    """
    if actor is None or actor.may_change(owner):
        return
    whose = f"{owner}'s" if owner else "the instructor's (it was made before the room opened)"
    raise NotAllowedError(
        f"You cannot change {what}: it is {whose}. Participants delete and cancel only their own work; "
        "ask the instructor."
    )
