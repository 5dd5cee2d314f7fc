"""MITRE ATLAS: the ids, names and tactics of the techniques and mitigations the lab demonstrates.

MITRE ATLAS (Adversarial Threat Landscape for Artificial-Intelligence Systems, atlas.mitre.org) is the ATT&CK of
AI systems: tactics (the adversary's goal, e.g. Exfiltration), techniques under them (how, e.g. AML.T0024.000
Infer Training Data Membership) and mitigations (e.g. AML.M0003 Model Hardening). Security teams speak it, so
every attack, defense, recipe and study of the lab names the ATLAS ids it demonstrates (`atlas_ids`).

Source: MITRE ATLAS data version 5.6.0 (`ATLAS_VERSION`), github.com/mitre-atlas/atlas-data `dist/ATLAS.yaml`,
Apache-2.0. `atlas_5_6_0.tsv`, next to this module, keeps only the entries the lab needs (its techniques, their
parent techniques and tactics, and the mitigations it demonstrates) with their ids, names and links; ATLAS's
descriptions are not copied. To move to a new ATLAS version, regenerate the table from the new data and check the
names (tests/core/test_atlas.py compares them with the full table when it is at hand).

Local tags: ATLAS has no entry for some of what the lab shows (differential privacy, watermarking, gradient
leakage in federated learning). Those get a tag in the `DLSEC.` namespace (`LOCAL_TAGS`): the prefix, then a
lowercase name with hyphens (`DLSEC.differential-privacy`). A local tag is never an ATLAS id, and the app says so.

>>> lookup("AML.T0043.000").name
'White-Box Optimization'
>>> lookup("AML.T0043.000").parent
'AML.T0043'
>>> [lookup(t).name for t in lookup("AML.T0015").tactics]
['Initial Access', 'Defense Evasion', 'Impact']
>>> describe(("AML.T0024.000", "DLSEC.differential-privacy"))
'AML.T0024.000 Infer Training Data Membership · DLSEC.differential-privacy Differential privacy (local tag)'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources

from dlsec_core.errors import NotFoundError

ATLAS_VERSION = "5.6.0"
ATLAS_SOURCE = (
    "MITRE ATLAS data version 5.6.0 (github.com/mitre-atlas/atlas-data, dist/ATLAS.yaml, Apache-2.0)"
)
TABLE_FILE = "atlas_5_6_0.tsv"
NO_ENTRY = (
    "ATLAS has no entry for differential privacy, watermarking or gradient leakage in federated learning: the lab "
    "tags them in its own DLSEC. namespace, and a DLSEC. tag is never an ATLAS id."
)

#: The forms an id can take: tactic, technique, subtechnique, mitigation, local tag.
ID_FORMS: dict[str, re.Pattern[str]] = {
    "tactic": re.compile(r"AML\.TA\d{4}"),
    "technique": re.compile(r"AML\.T\d{4}"),
    "subtechnique": re.compile(r"AML\.T\d{4}\.\d{3}"),
    "mitigation": re.compile(r"AML\.M\d{4}"),
    "local": re.compile(r"DLSEC\.[a-z0-9]+(?:-[a-z0-9]+)*"),
}


class Kind(StrEnum):
    TACTIC = "tactic"
    TECHNIQUE = "technique"
    MITIGATION = "mitigation"
    LOCAL = "local"


@dataclass(frozen=True)
class Entry:
    """One ATLAS entry (or local tag): its id, name and links.

    `tactics`: a technique's tactics (empty for a subtechnique: it has its parent's); `parent`: a subtechnique's
    technique; `mitigates`: a mitigation's techniques (those in the lab's table); `note`: for a local tag, why
    it exists (what ATLAS lacks).
    """

    kind: Kind
    id: str
    name: str
    tactics: tuple[str, ...] = ()
    parent: str | None = None
    mitigates: tuple[str, ...] = ()
    note: str = ""

    @property
    def label(self) -> str:
        """ "AML.T0043.000 White-Box Optimization" (a local tag says it is one)."""
        suffix = " (local tag)" if self.kind is Kind.LOCAL else ""
        return f"{self.id} {self.name}{suffix}"


#: What ATLAS has no entry for, as local tags (id -> name, sentence).
LOCAL_TAGS: dict[str, tuple[str, str]] = {
    "DLSEC.differential-privacy": (
        "Differential privacy",
        "Training with a provable bound ε on what one example can change (DP-SGD), its accounting and its audit.",
    ),
    "DLSEC.watermarking": (
        "Model watermarking",
        "A mark embedded in a model so that its owner can later prove a copy (after theft) is theirs.",
    ),
    "DLSEC.federated-gradient-leakage": (
        "Gradient leakage in federated learning",
        "Reconstructing a client's training data from the model updates it shares in federated learning.",
    ),
    "DLSEC.federated-learning": (
        "Federated learning",
        "Training across clients that keep their data and share only model updates (FedAvg), the setting whose "
        "leaks and poisons the lab shows.",
    ),
    "DLSEC.secure-aggregation": (
        "Secure aggregation",
        "Pairwise masks that cancel in the sum, so the server sees only the clients' aggregate update, not one.",
    ),
    "DLSEC.robust-aggregation": (
        "Robust aggregation",
        "A server rule that bounds what a few malicious clients' updates can do to the global model (coordinate-wise "
        "median, trimmed mean, Krum) instead of averaging them.",
    ),
    "DLSEC.no-mitigation": (
        "No mitigation: the undefended baseline",
        "Standard training, the model every defense is compared with: it names the absence of a mitigation.",
    ),
}


def id_form(atlas_id: str) -> str | None:
    """The form of an id ("tactic", "technique", "subtechnique", "mitigation", "local"), None if malformed."""
    return next((form for form, pattern in ID_FORMS.items() if pattern.fullmatch(atlas_id)), None)


@cache
def table() -> dict[str, Entry]:
    """The lab's ATLAS table and the local tags, by id, in the order of the ATLAS data (tactics first)."""
    text = resources.files("dlsec_core").joinpath(TABLE_FILE).read_text(encoding="utf-8")
    entries: dict[str, Entry] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        kind, atlas_id, name, links_text = line.split("\t")
        links = tuple(x for x in links_text.split(",") if x)
        if kind == "tactic":
            entries[atlas_id] = Entry(Kind.TACTIC, atlas_id, name)
        elif kind == "mitigation":
            entries[atlas_id] = Entry(Kind.MITIGATION, atlas_id, name, mitigates=links)
        elif id_form(atlas_id) == "subtechnique":
            entries[atlas_id] = Entry(Kind.TECHNIQUE, atlas_id, name, parent=links[0])
        else:
            entries[atlas_id] = Entry(Kind.TECHNIQUE, atlas_id, name, tactics=links)
    for tag, (name, note) in LOCAL_TAGS.items():
        entries[tag] = Entry(Kind.LOCAL, tag, name, note=note)
    return entries


def lookup(atlas_id: str) -> Entry:
    """The entry of an ATLAS id or local tag in the lab's table."""
    entry = table().get(atlas_id)
    if entry is None:
        raise NotFoundError(
            f"{atlas_id!r} is not in the lab's MITRE ATLAS table ({ATLAS_SOURCE}, subset in {TABLE_FILE}) nor a "
            f"local tag ({', '.join(LOCAL_TAGS)})."
        )
    return entry


def tactics_of(atlas_id: str) -> tuple[str, ...]:
    """A technique's tactics (a subtechnique has its parent's)."""
    entry = lookup(atlas_id)
    return lookup(entry.parent).tactics if entry.parent else entry.tactics


def describe(atlas_ids: tuple[str, ...] | list[str]) -> str:
    """One line naming the ids: "AML.T0015 Evade AI Model · AML.T0043.000 White-Box Optimization"."""
    return " · ".join(lookup(i).label for i in atlas_ids)
