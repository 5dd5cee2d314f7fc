"""The model store: one SQLite database (WAL mode) plus one safetensors weights file per model.

Layout under the home folder (`DLSEC_HOME`, default `~/.dlsec`)::

    dlsec.sqlite3               table `models`, one row per model (spec, recipe, metrics as JSON text)
    models/<id>.safetensors     the weights, with the spec in the file's metadata

Atomicity: weights are written to a temporary file in the same folder, flushed, fsync'ed and renamed onto the
final name with `os.replace`; only then is the row inserted, in a transaction, and if that fails the file is
removed. So a row is never visible without its complete file, and a half-written file never replaces a good one.
Deleting removes the row first, then the file. Files left behind by a crash (orphans, `*.tmp`) are removed by
`Store.orphans_cleanup` once they are old enough not to belong to a save in progress.

Every operation opens its own short-lived connection, so a `Store` can be shared by Streamlit's session threads
and by several processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save
from torch import nn

from dlsec_core.access import Actor, check_may_change
from dlsec_core.data.builtin import DATASETS, Dataset
from dlsec_core.device import get_device
from dlsec_core.errors import DlsecError, InvalidInputError, NotFoundError
from dlsec_core.models.spec import ModelSpec, build_model, count_parameters
from dlsec_core.privacy_spend import PrivacySpend, spent_in
from dlsec_core.safe_load import METADATA_SPEC_KEY, load_upload, read_metadata
from dlsec_core.text import duration, timestamp

SCHEMA_VERSION = 4
MAX_NAME_LENGTH = 80
SOURCES = ("trained", "uploaded")
ORPHAN_MIN_AGE_S = 3600.0
"""Files younger than this are never cleaned up: they may belong to a save running in another thread."""

_DB_NAME = "dlsec.sqlite3"
_MODELS_DIR = "models"
_WEIGHTS_SUFFIX = ".safetensors"
_TMP_SUFFIX = ".tmp"
_ID_RE = re.compile(r"^[0-9a-f]{12}$")
_BUSY_TIMEOUT_MS = 30_000
_UNKNOWN = "—"

# Migrations: _MIGRATIONS[v] takes the schema from version v to v + 1.
_MIGRATIONS: dict[int, str] = {
    0: """
    CREATE TABLE IF NOT EXISTS models (
        id              TEXT PRIMARY KEY,
        name            TEXT NOT NULL,
        dataset         TEXT NOT NULL,
        spec            TEXT NOT NULL,
        recipe          TEXT NOT NULL,
        recipe_params   TEXT NOT NULL,
        train_config    TEXT NOT NULL,
        seed            INTEGER,
        clean_accuracy  REAL,
        created_at      TEXT NOT NULL,
        train_seconds   REAL,
        num_parameters  INTEGER NOT NULL,
        source          TEXT NOT NULL,
        history         TEXT NOT NULL,
        file_sha256     TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS models_by_created ON models (created_at);
    CREATE INDEX IF NOT EXISTS models_by_dataset ON models (dataset);
    """,
    # 2: runs of studies (see dlsec_core.runs)
    1: """
    CREATE TABLE IF NOT EXISTS runs (
        id               TEXT PRIMARY KEY,
        study            TEXT NOT NULL,
        title            TEXT NOT NULL,
        config           TEXT NOT NULL,
        seed             INTEGER,
        status           TEXT NOT NULL,
        progress         REAL NOT NULL,
        message          TEXT NOT NULL,
        cancel_requested INTEGER NOT NULL,
        result           TEXT,
        error            TEXT,
        owner            TEXT,
        versions         TEXT NOT NULL,
        worker           TEXT,
        created_at       TEXT NOT NULL,
        started_at       TEXT,
        finished_at      TEXT,
        heartbeat_at     REAL,
        retry_of         TEXT
    );
    CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, created_at);
    CREATE INDEX IF NOT EXISTS runs_by_study ON runs (study, created_at);
    CREATE TABLE IF NOT EXISTS run_models (
        run_id   TEXT NOT NULL,
        model_id TEXT NOT NULL,
        PRIMARY KEY (run_id, model_id)
    );
    CREATE INDEX IF NOT EXISTS run_models_by_model ON run_models (model_id);
    CREATE TABLE IF NOT EXISTS run_events (
        run_id  TEXT NOT NULL,
        seq     INTEGER NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    """,
    # 3: workshop rooms (dlsec_core.access, dlsec_core.room): models have owners (NULL for models made before, or
    # outside a room), and the room's roster of participants who logged in
    2: """
    ALTER TABLE models ADD COLUMN owner TEXT;
    CREATE INDEX IF NOT EXISTS models_by_owner ON models (owner);
    CREATE TABLE IF NOT EXISTS participants (
        name       TEXT PRIMARY KEY,
        role       TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen  TEXT NOT NULL
    );
    """,
    # 4: each participant's passed lesson steps (see dlsec_core.lessons.progress)
    3: """
    CREATE TABLE IF NOT EXISTS lesson_progress (
        owner     TEXT NOT NULL,
        lesson    TEXT NOT NULL,
        step      TEXT NOT NULL,
        passed_at TEXT NOT NULL,
        evidence  TEXT NOT NULL,
        PRIMARY KEY (owner, lesson, step)
    );
    """,
}

_COLUMNS = (
    "id, name, dataset, spec, recipe, recipe_params, train_config, seed, clean_accuracy, created_at, "
    "train_seconds, num_parameters, source, history, owner"
)


class CorruptModelError(DlsecError):
    """A model's row exists but its weights file is missing or damaged."""


def default_home() -> Path:
    """`$DLSEC_HOME` when set, else `~/.dlsec`."""
    env = os.environ.get("DLSEC_HOME", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".dlsec"


# An exported DP model's PrivacySpend record, in its safetensors metadata.
METADATA_PRIVACY_KEY = "dlsec_privacy"
PRIVACY_PARAM = "privacy"  # where an imported model's card keeps the spend its file carried


def privacy_from_metadata(data: bytes) -> PrivacySpend | None:
    """The privacy spend stored in a safetensors file's metadata by `Store.export_model`, or None when absent.

    Raises:
        InvalidInputError: the header is not valid, or the stored record is not a privacy spend.
    """
    text = read_metadata(data).get(METADATA_PRIVACY_KEY)
    if text is None:
        return None
    try:
        record = json.loads(text)
        if not isinstance(record, dict):
            raise InvalidInputError(f"expected a JSON object, got {text[:80]!r}")
        return PrivacySpend.from_record(record)
    except (json.JSONDecodeError, InvalidInputError) as err:
        raise InvalidInputError(f"The privacy record stored inside the file is not usable: {err}") from err


@dataclass(frozen=True, kw_only=True)
class ModelCard:
    """Everything known about a stored model except its weights."""

    id: str  # 12 hex characters
    name: str
    dataset: str  # e.g. "mnist5k", or "upload"
    spec: ModelSpec
    recipe: str  # "standard", "pgd", "dp-sgd", ...; "uploaded" for uploads
    recipe_params: dict[str, Any]
    train_config: dict[str, Any]  # epochs, batch_size, lr, optimizer...
    seed: int | None
    clean_accuracy: float | None  # on the dataset's test split, in [0, 1]
    created_at: str  # ISO 8601, UTC
    train_seconds: float | None
    num_parameters: int
    source: str  # "trained" | "uploaded"
    history: list[dict[str, Any]]  # per-epoch metrics, may be empty
    owner: str | None = None  # the room participant who made it; None outside a room (see dlsec_core.access)

    @property
    def privacy(self) -> PrivacySpend | None:
        """The (ε, δ) this model's training spent and the accountant behind it; None for a model without DP.

        A DP-SGD run's spend is its last epoch's; an imported model keeps the spend its exported file carried
        (`recipe_params["privacy"]`), so an uploaded copy of a DP model stays labelled as one.
        """
        if self.recipe == "dp-sgd":
            return spent_in(self.history)
        carried = self.recipe_params.get(PRIVACY_PARAM)
        return PrivacySpend.from_record(carried) if carried else None

    def to_record(self) -> dict[str, Any]:
        """A flat row for a table: id, name, dataset, arch, recipe, seed, accuracy, created, seconds, params."""
        return {
            "id": self.id,
            "name": self.name,
            "dataset": self.dataset,
            "arch": self.spec.arch,
            "recipe": self.recipe,
            "seed": self.seed,
            "accuracy": self.clean_accuracy,
            "created": self.created_at,
            "seconds": self.train_seconds,
            "params": self.num_parameters,
        }

    def to_display_record(self) -> dict[str, str]:
        """The same row as a person reads it: accuracy in %, the date to the minute, the training time in s or min,
        the parameter count with separators, and '—' where a value is unknown (an upload has no training time)."""
        return {
            "id": self.id,
            "name": self.name,
            "dataset": self.dataset,
            "arch": self.spec.arch,
            "recipe": self.recipe,
            "seed": _UNKNOWN if self.seed is None else str(self.seed),
            "accuracy": _UNKNOWN if self.clean_accuracy is None else f"{100 * self.clean_accuracy:.1f} %",
            "created": timestamp(self.created_at),
            "training time": _UNKNOWN if self.train_seconds is None else duration(self.train_seconds),
            "parameters": f"{self.num_parameters:,}",
        }

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> ModelCard:
        return cls(
            id=row["id"],
            name=row["name"],
            dataset=row["dataset"],
            spec=ModelSpec.from_json(row["spec"]),
            recipe=row["recipe"],
            recipe_params=json.loads(row["recipe_params"]),
            train_config=json.loads(row["train_config"]),
            seed=row["seed"],
            clean_accuracy=row["clean_accuracy"],
            created_at=row["created_at"],
            train_seconds=row["train_seconds"],
            num_parameters=row["num_parameters"],
            source=row["source"],
            history=json.loads(row["history"]),
            owner=row["owner"],
        )


def _clean_name(name: str, what: str = "Model name") -> str:
    if not isinstance(name, str):
        raise InvalidInputError(f"{what} must be text, got {name!r}.")
    cleaned = name.strip()
    if not cleaned:
        raise InvalidInputError(f"{what} must not be empty, got {name!r}.")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise InvalidInputError(
            f"{what} must be at most {MAX_NAME_LENGTH} characters, got {len(cleaned)}: {cleaned!r}."
        )
    if any(not ch.isprintable() for ch in cleaned):
        raise InvalidInputError(f"{what} must not contain control characters, got {cleaned!r}.")
    return cleaned


def _scalar(value: Any) -> Any:
    """JSON fallback for numpy scalars and 0-d tensors (metrics often arrive as those); anything else fails."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _to_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, default=_scalar)
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"{what} must be JSON-serializable, got {value!r}: {err}") from err


def _check_id(model_id: str) -> str:
    if not isinstance(model_id, str) or not _ID_RE.match(model_id):
        raise NotFoundError(f"There is no model with id {model_id!r}.")
    return model_id


def _fsync_dir(path: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(final: Path, data: bytes) -> str:
    """Write `data` to `final` via a hidden, fsync'ed temp file in the same folder; return its SHA-256.

    A crash at any point leaves either the old `final` (or none) and at most a `.tmp` file that
    `Store.orphans_cleanup` removes, never a half-written `final`.
    """
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}{_TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)
    return hashlib.sha256(data).hexdigest()


def _safe_filename(name: str, fallback: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return stem[:MAX_NAME_LENGTH] or fallback


class Store:
    """Models on disk: SQLite rows for the cards, safetensors files for the weights.

    Args:
        home: the folder holding everything; default `$DLSEC_HOME` or `~/.dlsec`. Created if missing.

    Constructing a `Store` is cheap and idempotent: it creates the folders and schema when needed and removes
    stale leftovers of crashed saves. Instances hold no open connection and may be shared between threads.
    """

    def __init__(self, home: str | Path | None = None) -> None:
        self.home: Path = Path(home).expanduser() if home is not None else default_home()
        self.models_dir: Path = self.home / _MODELS_DIR
        self.db_path: Path = self.home / _DB_NAME
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self._migrate()
        self.orphans_cleanup()

    # -- database plumbing -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A fresh connection in autocommit mode; transactions are opened explicitly with BEGIN IMMEDIATE."""
        conn = sqlite3.connect(self.db_path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _enable_wal(self) -> None:
        """Write-ahead logging (readers never wait for a writer), persistent in the file: set once per store.
        Switching a new file to WAL needs it to itself, and SQLite answers "database is locked" at once (no busy
        wait) while another connection holds it, e.g. a second process creating the same store: retry a while."""
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                with self._connect() as conn:
                    if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                        conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _migrate(self) -> None:
        self._enable_wal()
        with self._transaction() as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise DlsecError(
                    f"The model database at {self.db_path} was written by a newer version of dlsec "
                    f"(schema {version}, this one knows {SCHEMA_VERSION}); update dlsec or use another DLSEC_HOME."
                )
            while version < SCHEMA_VERSION:
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                version += 1
                conn.execute(f"PRAGMA user_version = {version}")

    def _weights_path(self, model_id: str) -> Path:
        return self.models_dir / f"{model_id}{_WEIGHTS_SUFFIX}"

    def _insert_row(self, values: dict[str, Any]) -> None:
        columns = ", ".join(values)
        marks = ", ".join(f":{k}" for k in values)
        with self._transaction() as conn:
            conn.execute(f"INSERT INTO models ({columns}) VALUES ({marks})", values)

    def _new_id(self) -> str:
        """A fresh 12-hex id whose row and file do not exist, so a save never overwrites another model's file."""
        for _ in range(16):
            model_id = uuid.uuid4().hex[:12]
            if self._weights_path(model_id).exists():
                continue
            with self._connect() as conn:
                if conn.execute("SELECT 1 FROM models WHERE id = ?", (model_id,)).fetchone() is None:
                    return model_id
        raise RuntimeError("could not draw an unused model id in 16 tries; is uuid4 broken?")

    def _row(self, model_id: str) -> sqlite3.Row:
        _check_id(model_id)
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS}, file_sha256 FROM models WHERE id = ?", (model_id,)
            ).fetchone()
        if row is None:
            raise NotFoundError(f"There is no model with id {model_id!r}; it may have been deleted.")
        return row

    # -- public API --------------------------------------------------------------------------------------------

    def save_model(
        self,
        model: nn.Module,
        spec: ModelSpec,
        *,
        name: str,
        dataset: str,
        recipe: str = "standard",
        recipe_params: dict[str, Any] | None = None,
        train_config: dict[str, Any] | None = None,
        seed: int | None = None,
        clean_accuracy: float | None = None,
        train_seconds: float | None = None,
        history: list[dict[str, Any]] | None = None,
        source: str = "trained",
        owner: str | None = None,
    ) -> ModelCard:
        """Store a model's weights and card; the weights file is complete before the row appears.

        Args:
            model: a model built by `build_model(spec)` (any device; floating tensors are stored as float32).
            spec: the spec the model was built from.
            name: a display name, 1-80 characters after stripping.
            dataset: the dataset it was trained on, e.g. "mnist5k".
            recipe: the training recipe ("standard", "pgd", "dp-sgd", ...).
            recipe_params: the recipe's hyperparameters (JSON-serializable).
            train_config: epochs, batch size, learning rate, optimizer... (JSON-serializable).
            seed: the training seed, if any.
            clean_accuracy: accuracy on the dataset's test split, in [0, 1].
            train_seconds: wall-clock training time.
            history: per-epoch metrics (JSON-serializable dicts).
            source: "trained" or "uploaded".
            owner: the room participant who made it (None outside a room; a run's models get the run's owner
                when it finishes, see `RunStore.finish`).

        Returns:
            The new model's card.

        Raises:
            InvalidInputError: a bad argument, or a model whose tensors do not match `spec`.
        """
        name = _clean_name(name)
        dataset = _clean_name(dataset, "Dataset name")
        recipe = _clean_name(recipe, "Recipe name")
        if source not in SOURCES:
            raise InvalidInputError(f"source must be one of {SOURCES}, got {source!r}.")
        if clean_accuracy is not None:
            clean_accuracy = float(clean_accuracy)
            if not 0.0 <= clean_accuracy <= 1.0:
                raise InvalidInputError(f"clean_accuracy must be in [0, 1], got {clean_accuracy}.")
        if train_seconds is not None:
            train_seconds = float(train_seconds)
            if not train_seconds >= 0.0:
                raise InvalidInputError(f"train_seconds must be >= 0, got {train_seconds}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InvalidInputError(f"seed must be an integer or None, got {seed!r}.")
        recipe_params = dict(recipe_params or {})
        train_config = dict(train_config or {})
        history = [dict(h) for h in (history or [])]
        json_params = _to_json(recipe_params, "recipe_params")
        json_config = _to_json(train_config, "train_config")
        json_history = _to_json(history, "history")

        state = self._state_for_spec(model, spec)
        card = ModelCard(
            id=self._new_id(),
            name=name,
            dataset=dataset,
            spec=spec,
            recipe=recipe,
            recipe_params=json.loads(json_params),
            train_config=json.loads(json_config),
            seed=seed,
            clean_accuracy=clean_accuracy,
            created_at=datetime.now(UTC).isoformat(timespec="microseconds"),
            train_seconds=train_seconds,
            num_parameters=count_parameters(model),
            source=source,
            history=json.loads(json_history),
            owner=owner,
        )
        self._write_model(
            card, save(state, metadata={METADATA_SPEC_KEY: spec.to_json(), "dlsec_format": "1"})
        )
        return card

    def _write_model(self, card: ModelCard, weights: bytes) -> None:
        """Weights file first (atomically), then the row; if the row fails, the file goes."""
        path = self._weights_path(card.id)
        digest = write_atomic(path, weights)
        try:
            self._insert_row(
                {
                    "id": card.id,
                    "name": card.name,
                    "dataset": card.dataset,
                    "spec": card.spec.to_json(),
                    "recipe": card.recipe,
                    "recipe_params": _to_json(card.recipe_params, "recipe_params"),
                    "train_config": _to_json(card.train_config, "train_config"),
                    "seed": card.seed,
                    "clean_accuracy": card.clean_accuracy,
                    "created_at": card.created_at,
                    "train_seconds": card.train_seconds,
                    "num_parameters": card.num_parameters,
                    "source": card.source,
                    "history": _to_json(card.history, "history"),
                    "file_sha256": digest,
                    "owner": card.owner,
                }
            )
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    @staticmethod
    def _state_for_spec(model: nn.Module, spec: ModelSpec) -> dict[str, torch.Tensor]:
        """The model's state dict as contiguous CPU copies (floats as float32), checked against the spec."""
        expected = build_model(spec).state_dict()
        state = model.state_dict()
        if set(state) != set(expected):
            diff = sorted(set(state) ^ set(expected))
            raise InvalidInputError(
                f"The model does not match its spec {spec.arch!r}: differing tensors {diff[:5]}."
            )
        out: dict[str, torch.Tensor] = {}
        for key, t in state.items():
            if tuple(t.shape) != tuple(expected[key].shape):
                raise InvalidInputError(
                    f"The model does not match its spec: {key!r} has shape {tuple(t.shape)}, "
                    f"the spec gives {tuple(expected[key].shape)}."
                )
            t = t.detach().to("cpu")
            if t.is_floating_point():
                t = t.to(torch.float32)
            out[key] = t.clone().contiguous()
        return out

    def list_models(self, dataset: str | None = None) -> list[ModelCard]:
        """All models, newest first; only those trained on `dataset` when given."""
        query = f"SELECT {_COLUMNS} FROM models"
        params: tuple[str, ...] = ()
        if dataset is not None:
            query += " WHERE dataset = ?"
            params = (dataset,)
        query += " ORDER BY created_at DESC, rowid DESC"
        with self._connect() as conn:
            rows = conn.execute(query, params).fetchall()
        return [ModelCard._from_row(r) for r in rows]

    def get_card(self, model_id: str) -> ModelCard:
        """The card of one model.

        Raises:
            NotFoundError: no model has this id.
        """
        return ModelCard._from_row(self._row(model_id))

    def _read_weights(self, model_id: str, row: sqlite3.Row) -> bytes:
        path = self._weights_path(model_id)
        label = f"model {row['name']!r} ({model_id})"
        try:
            data = path.read_bytes()
        except FileNotFoundError as err:
            raise CorruptModelError(
                f"The weights file of {label} is missing ({path}); delete the model and train or import it again."
            ) from err
        if hashlib.sha256(data).hexdigest() != row["file_sha256"]:
            raise CorruptModelError(
                f"The weights file of {label} is damaged (its checksum changed); "
                "delete the model and train or import it again."
            )
        return data

    def adopt(self, card: ModelCard, weights: bytes) -> ModelCard:
        """Store a model that another store made, keeping its id and card (a run executed on another machine
        sends back its new models this way; see `execution.ray_executor`). The weights are validated against the
        card's spec first; nothing is stored if they do not match or the id is taken.
        """
        _check_id(card.id)
        _clean_name(card.name)
        load_upload(weights, card.spec)  # keys, shapes, dtypes, finite values
        with self._connect() as conn:
            if conn.execute("SELECT 1 FROM models WHERE id = ?", (card.id,)).fetchone() is not None:
                raise InvalidInputError(f"A model with id {card.id} is already stored.")
        self._write_model(card, weights)
        return self.get_card(card.id)

    def weights_bytes(self, model_id: str) -> bytes:
        """The stored .safetensors file (spec in its metadata), checksum-verified, e.g. for a download button.

        Raises:
            NotFoundError: no model has this id.
            CorruptModelError: its weights file is missing or damaged.
        """
        return self._read_weights(model_id, self._row(model_id))

    def load_model(self, model_id: str, device: torch.device | None = None) -> tuple[nn.Module, ModelCard]:
        """Rebuild a stored model, in eval mode, on `device` (default: `get_device()`).

        Raises:
            NotFoundError: no model has this id.
            CorruptModelError: its weights file is missing or damaged.
        """
        row = self._row(model_id)
        card = ModelCard._from_row(row)
        data = self._read_weights(model_id, row)
        model = build_model(card.spec)
        try:
            model.load_state_dict(load_safetensors(data), strict=True)
        except (SafetensorError, RuntimeError, ValueError) as err:
            raise CorruptModelError(
                f"The weights file of model {card.name!r} ({model_id}) does not fit its spec: {err}"
            ) from err
        model.to(device if device is not None else get_device())
        model.eval()
        return model, card

    def delete_model(self, model_id: str, *, actor: Actor | None = None) -> None:
        """Remove a model's row, then its weights file.

        Args:
            model_id: the model.
            actor: who deletes it, in a workshop room (None outside one: allowed); see `dlsec_core.access`.

        Raises:
            NotFoundError: no model has this id.
            NotAllowedError: `actor` is a participant and the model is not theirs.
        """
        _check_id(model_id)
        with self._transaction() as conn:  # the owner is read in the deleting transaction
            row = conn.execute("SELECT name, owner FROM models WHERE id = ?", (model_id,)).fetchone()
            if row is None:
                raise NotFoundError(
                    f"There is no model with id {model_id!r}; it may have been deleted already."
                )
            check_may_change(actor, row["owner"], f"model {row['name']!r} ({model_id})")
            conn.execute("DELETE FROM models WHERE id = ?", (model_id,))
        self._weights_path(model_id).unlink(missing_ok=True)

    def rename_model(self, model_id: str, name: str, *, actor: Actor | None = None) -> ModelCard:
        """Give a model a new display name (1-80 characters after stripping).

        Raises:
            NotFoundError: no model has this id.
            InvalidInputError: the name is empty or too long.
            NotAllowedError: `actor` is a participant and the model is not theirs (see `dlsec_core.access`).
        """
        _check_id(model_id)
        name = _clean_name(name)
        with self._transaction() as conn:
            row = conn.execute("SELECT name, owner FROM models WHERE id = ?", (model_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"There is no model with id {model_id!r}; it may have been deleted.")
            check_may_change(actor, row["owner"], f"model {row['name']!r} ({model_id})")
            conn.execute("UPDATE models SET name = ? WHERE id = ?", (name, model_id))
        return self.get_card(model_id)

    def export_model(self, model_id: str, dest_dir: Path) -> tuple[Path, Path]:
        """Write `<name>.safetensors` (spec, and a DP model's privacy spend, in its metadata) and `<name>.spec.json`
        into `dest_dir`.

        Both files are written atomically; existing files of the same names are replaced.

        Returns:
            The weights path and the spec path.

        Raises:
            NotFoundError: no model has this id.
            CorruptModelError: its stored weights file is missing or damaged.
        """
        row = self._row(model_id)
        card = ModelCard._from_row(row)
        data = self._read_weights(model_id, row)  # already carries the spec in its metadata
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        stem = _safe_filename(card.name, card.id)
        weights_path = dest / f"{stem}{_WEIGHTS_SUFFIX}"
        spec_path = dest / f"{stem}.spec.json"
        # The DP spend travels with the weights, so an imported copy keeps its label.
        if card.privacy is not None:
            meta = read_metadata(data) | {METADATA_PRIVACY_KEY: json.dumps(card.privacy.to_record())}
            data = save(load_safetensors(data), metadata=meta)
        write_atomic(weights_path, data)
        write_atomic(spec_path, (json.dumps(card.spec.to_dict(), indent=2, sort_keys=True) + "\n").encode())
        return weights_path, spec_path

    def import_model(
        self,
        data: bytes,
        spec: ModelSpec | None = None,
        *,
        name: str,
        dataset: str = "upload",
        filename: str = "model.safetensors",
        clean_accuracy: float | None = None,
        privacy: PrivacySpend | None = None,
        owner: str | None = None,
    ) -> ModelCard:
        """Validate an uploaded safetensors file (see `dlsec_core.safe_load`) and store it.

        Args:
            data: the file's bytes.
            spec: the model's spec; when None it is read from the file's metadata (files exported here have it).
            name: the display name.
            dataset: what the model was trained on.
            filename: the uploaded name; pickle-based extensions are refused.
            clean_accuracy: a measured test accuracy, if already known.
            privacy: the DP spend of the training that produced the weights; when None it is read from the
                file's metadata (files exported here from a DP model carry it), and absent means no DP.
            owner: the room participant who uploads it (None outside a room).

        Returns:
            The new model's card (recipe "uploaded", source "uploaded"; `card.privacy` is the carried spend).

        Raises:
            UnsafeFileError: a pickle-based file, refused unopened.
            InvalidInputError: anything that makes the file or arguments unusable; nothing is stored then.
        """
        name = _clean_name(name)
        spec, state = load_upload(data, spec, filename=filename)
        if privacy is None:
            privacy = privacy_from_metadata(data)
        model = build_model(spec)
        model.load_state_dict(state, strict=True)
        return self.save_model(
            model,
            spec,
            name=name,
            dataset=dataset,
            recipe="uploaded",
            recipe_params={} if privacy is None else {PRIVACY_PARAM: privacy.to_record()},
            clean_accuracy=clean_accuracy,
            source="uploaded",
            owner=owner,
        )

    # -- the user's own datasets: safetensors files under <home>/datasets, written atomically ---------------
    @property
    def datasets_dir(self) -> Path:
        path = self.home / "datasets"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def save_dataset(self, dataset: Dataset) -> str:
        """Store an uploaded dataset (its split included) under its name; returns the name.

        Raises:
            InvalidInputError: the name is not 1-40 letters, digits, '-' or '_', is a built-in dataset's name, or
                is taken.
        """
        name = dataset.name
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", name):
            raise InvalidInputError(f"Dataset names are 1-40 letters, digits, '-' or '_'; got {name!r}.")
        if name in DATASETS or name in self.list_datasets():
            raise InvalidInputError(f"A dataset named {name!r} already exists; choose another name.")
        tensors = {
            "x_train": dataset.x_train.contiguous(),
            "y_train": dataset.y_train.contiguous(),
            "x_test": dataset.x_test.contiguous(),
            "y_test": dataset.y_test.contiguous(),
        }
        meta = {"class_names": json.dumps(list(dataset.class_names)), "description": dataset.description}
        write_atomic(self.datasets_dir / f"{name}{_WEIGHTS_SUFFIX}", save(tensors, metadata=meta))
        return name

    def list_datasets(self) -> list[str]:
        """Names of the stored user datasets, sorted."""
        return sorted(p.name[: -len(_WEIGHTS_SUFFIX)] for p in self.datasets_dir.glob(f"*{_WEIGHTS_SUFFIX}"))

    def load_dataset(self, name: str) -> Dataset:
        """A stored user dataset.

        Raises:
            NotFoundError: no stored dataset has this name.
            CorruptModelError: its file is damaged.
        """
        if name not in self.list_datasets():
            raise NotFoundError(f"There is no dataset named {name!r}.")
        path = self.datasets_dir / f"{name}{_WEIGHTS_SUFFIX}"
        data = path.read_bytes()
        try:
            t = load_safetensors(data)
            meta = read_metadata(data)
            return Dataset(
                name=name, x_train=t["x_train"], y_train=t["y_train"], x_test=t["x_test"], y_test=t["y_test"],
                class_names=tuple(json.loads(meta["class_names"])), description=meta.get("description", ""),
            )  # fmt: skip
        except (SafetensorError, KeyError, ValueError) as err:
            raise CorruptModelError(
                f"The stored dataset {name!r} is damaged ({err}); delete and upload it again."
            ) from err

    def delete_dataset(self, name: str) -> None:
        if name not in self.list_datasets():
            raise NotFoundError(f"There is no dataset named {name!r}.")
        (self.datasets_dir / f"{name}{_WEIGHTS_SUFFIX}").unlink(missing_ok=True)

    def orphans_cleanup(self, min_age_s: float = ORPHAN_MIN_AGE_S) -> list[Path]:
        """Remove weights files without a row and leftover `*.tmp` files older than `min_age_s` seconds.

        Younger files are kept: they may belong to a save that is running right now in another thread or
        process (its file exists a moment before its row).

        Returns:
            The removed paths.
        """
        if min_age_s < 0:
            raise ValueError(f"min_age_s must be >= 0, got {min_age_s}.")
        with self._connect() as conn:
            known = {r[0] for r in conn.execute("SELECT id FROM models")}
        cutoff = time.time() - min_age_s
        removed: list[Path] = []
        for path in self.models_dir.iterdir():
            if not path.is_file():
                continue
            is_tmp = path.name.endswith(_TMP_SUFFIX)
            is_orphan = (
                path.name.endswith(_WEIGHTS_SUFFIX) and path.name.removesuffix(_WEIGHTS_SUFFIX) not in known
            )
            if not (is_tmp or is_orphan):
                continue
            try:
                if path.stat().st_mtime > cutoff:
                    continue
                path.unlink()
            except FileNotFoundError:  # removed concurrently
                continue
            removed.append(path)
        return removed
