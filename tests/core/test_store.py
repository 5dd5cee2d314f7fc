"""The model store: round trips, listing, atomic writes, crash leftovers, concurrency, export/import."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import dlsec_core.store as store_mod
from dlsec_core.errors import DlsecError, InvalidInputError, NotFoundError
from dlsec_core.models import ModelSpec, build_model
from dlsec_core.safe_load import read_metadata, spec_from_upload
from dlsec_core.store import CorruptModelError, ModelCard, Store

CPU = torch.device("cpu")
SPEC = ModelSpec(
    arch="mlp",
    input_shape=(1, 8, 8),
    num_classes=3,
    hparams={"hidden": 16, "depth": 1},
    mean=(0.5,),
    std=(0.25,),
)


def random_model(seed: int = 0, spec: ModelSpec = SPEC) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(spec).eval()


def probe() -> torch.Tensor:
    return torch.rand(4, *SPEC.input_shape, generator=torch.Generator().manual_seed(123))


def logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(probe())


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "home")


def files(store: Store) -> set[str]:
    return {p.name for p in store.models_dir.iterdir()}


def test_round_trip_gives_identical_logits_and_card(store: Store) -> None:
    model = random_model(1)
    history = [{"epoch": 1, "loss": 0.5, "accuracy": 0.8}, {"epoch": 2, "loss": 0.25, "accuracy": 0.9}]
    card = store.save_model(
        model,
        SPEC,
        name="  my mlp  ",
        dataset="digits",
        recipe="pgd",
        recipe_params={"eps": 0.1, "steps": 7},
        train_config={"epochs": 2, "batch_size": 32, "lr": 0.01, "optimizer": "adam"},
        seed=7,
        clean_accuracy=0.9,
        train_seconds=1.5,
        history=history,
    )
    assert card.name == "my mlp"
    assert len(card.id) == 12 and int(card.id, 16) >= 0
    loaded, card2 = store.load_model(card.id, device=CPU)
    assert not loaded.training
    assert torch.equal(logits(loaded), logits(model))
    assert card2 == card == store.get_card(card.id)
    assert card2.spec == SPEC
    assert card2.history == history
    assert card2.recipe_params == {"eps": 0.1, "steps": 7}
    assert card2.train_config["optimizer"] == "adam"
    assert card2.num_parameters == sum(p.numel() for p in model.parameters())
    assert card2.source == "trained" and card2.seed == 7 and card2.train_seconds == 1.5
    assert files(store) == {f"{card.id}.safetensors"}
    # The stored file describes itself.
    meta = read_metadata((store.models_dir / f"{card.id}.safetensors").read_bytes())
    assert ModelSpec.from_json(meta["dlsec_spec"]) == SPEC


def test_to_record_is_flat(store: Store) -> None:
    card = store.save_model(random_model(), SPEC, name="m", dataset="digits", seed=3, clean_accuracy=0.5)
    rec = card.to_record()
    assert set(rec) == {
        "id",
        "name",
        "dataset",
        "arch",
        "recipe",
        "seed",
        "accuracy",
        "created",
        "seconds",
        "params",
    }
    assert rec["arch"] == "mlp" and rec["accuracy"] == 0.5 and rec["recipe"] == "standard"
    assert all(not isinstance(v, dict | list) for v in rec.values())


def test_display_record_is_what_a_person_reads(store: Store) -> None:
    """The Models page's table: no raw floats, microsecond timestamps or 'None' (issue 13, item 17)."""
    trained = store.save_model(
        random_model(),
        SPEC,
        name="m",
        dataset="digits",
        seed=3,
        clean_accuracy=0.97654,
        train_seconds=231.0897,
    )
    uploaded = store.import_model(store.weights_bytes(trained.id), name="u", dataset="digits")
    row = trained.to_display_record()
    assert row["accuracy"] == "97.7 %" and row["training time"] == "3 min 51 s" and row["seed"] == "3"
    assert row["parameters"] == f"{trained.num_parameters:,}"
    created = datetime.fromisoformat(trained.created_at)
    assert row["created"] == created.strftime("%Y-%m-%d %H:%M") + " UTC"
    assert [row[k] for k in ("id", "name", "dataset", "arch", "recipe")] == [
        trained.id,
        "m",
        "digits",
        "mlp",
        "standard",
    ]
    up = uploaded.to_display_record()
    assert up["training time"] == up["seed"] == up["accuracy"] == "—"
    assert all(isinstance(v, str) and v != "None" for r in (row, up) for v in r.values())


def test_home_from_env_with_wal_and_schema_version(tmp_home: Path) -> None:
    s = Store()
    assert s.home == tmp_home
    assert (tmp_home / "dlsec.sqlite3").is_file() and (tmp_home / "models").is_dir()
    Store()  # idempotent
    conn = sqlite3.connect(tmp_home / "dlsec.sqlite3")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == store_mod.SCHEMA_VERSION
    finally:
        conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "h"
    Store(home)
    conn = sqlite3.connect(home / "dlsec.sqlite3")
    conn.execute(f"PRAGMA user_version = {store_mod.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(DlsecError, match="newer version"):
        Store(home)


def test_list_newest_first_and_by_dataset(store: Store) -> None:
    ids = [
        store.save_model(random_model(i), SPEC, name=f"m{i}", dataset=("a" if i % 2 else "b")).id
        for i in range(4)
    ]
    assert [c.id for c in store.list_models()] == ids[::-1]
    assert [c.id for c in store.list_models("a")] == [ids[3], ids[1]]
    assert store.list_models("nothing") == []


def test_delete_removes_row_and_file(store: Store) -> None:
    keep = store.save_model(random_model(1), SPEC, name="keep", dataset="d")
    gone = store.save_model(random_model(2), SPEC, name="gone", dataset="d")
    store.delete_model(gone.id)
    assert [c.id for c in store.list_models()] == [keep.id]
    assert files(store) == {f"{keep.id}.safetensors"}
    with pytest.raises(NotFoundError) as err:
        store.delete_model(gone.id)
    assert gone.id in str(err.value)


@pytest.mark.parametrize("bad_id", ["0123456789ab", "nope", "", "../../etc/passwd"])
def test_unknown_ids_raise_not_found(store: Store, bad_id: str) -> None:
    for call in (store.get_card, store.delete_model, store.load_model):
        with pytest.raises(NotFoundError) as err:
            call(bad_id)
        assert str(err.value).startswith("There is no model")
    with pytest.raises(NotFoundError):
        store.rename_model(bad_id, "x")


def test_rename(store: Store) -> None:
    card = store.save_model(random_model(), SPEC, name="old", dataset="d")
    renamed = store.rename_model(card.id, "  new name ")
    assert renamed.name == "new name" and store.get_card(card.id).name == "new name"
    assert renamed.spec == card.spec and renamed.created_at == card.created_at
    for bad in ["", "   ", "x" * 81, "a\nb"]:
        with pytest.raises(InvalidInputError) as err:
            store.rename_model(card.id, bad)
        assert str(err.value)
    assert store.get_card(card.id).name == "new name"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": ""},
        {"name": "x" * 81},
        {"dataset": " "},
        {"clean_accuracy": 1.5},
        {"train_seconds": -1.0},
        {"source": "stolen"},
        {"seed": 1.5},
        {"recipe_params": {"fn": object()}},
        {"history": [{"t": torch.zeros(2)}]},
    ],
)
def test_save_validates_arguments_and_stores_nothing(store: Store, kwargs: dict) -> None:
    args = {"name": "m", "dataset": "d", **kwargs}
    with pytest.raises(InvalidInputError) as err:
        store.save_model(random_model(), SPEC, **args)
    assert str(err.value)
    assert store.list_models() == [] and files(store) == set()


def test_numpy_and_0d_tensor_metrics_are_stored_as_numbers(store: Store) -> None:
    history = [{"epoch": np.int64(1), "loss": torch.tensor(0.5), "accuracy": np.float32(0.75)}]
    card = store.save_model(random_model(), SPEC, name="m", dataset="d", history=history)
    assert store.get_card(card.id).history == [{"epoch": 1, "loss": 0.5, "accuracy": 0.75}] == card.history


def test_save_refuses_model_that_does_not_match_spec(store: Store) -> None:
    other = ModelSpec(arch="mlp", input_shape=(1, 8, 8), num_classes=3, hparams={"hidden": 8, "depth": 1})
    with pytest.raises(InvalidInputError, match="does not match"):
        store.save_model(random_model(spec=other), SPEC, name="m", dataset="d")
    with pytest.raises(InvalidInputError, match="does not match"):
        store.save_model(nn.Linear(2, 2), SPEC, name="m", dataset="d")
    assert store.list_models() == [] and files(store) == set()


# -- atomicity ---------------------------------------------------------------------------------------------------


def test_failed_insert_leaves_no_file_and_no_row(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    keep = store.save_model(random_model(1), SPEC, name="keep", dataset="d")

    def broken_insert(self: Store, values: dict) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Store, "_insert_row", broken_insert)
    with pytest.raises(sqlite3.OperationalError):
        store.save_model(random_model(2), SPEC, name="lost", dataset="d")
    assert [c.id for c in store.list_models()] == [keep.id]
    assert files(store) == {f"{keep.id}.safetensors"}


def test_sqlite_abort_inside_transaction_removes_file(store: Store) -> None:
    """A real SQLite failure during the insert (a trigger aborts it): the new file is removed, nothing else."""
    keep = store.save_model(random_model(1), SPEC, name="keep", dataset="d")
    conn = sqlite3.connect(store.db_path)
    conn.execute(
        "CREATE TRIGGER no_more BEFORE INSERT ON models BEGIN SELECT RAISE(ABORT, 'quota exceeded'); END"
    )
    conn.commit()
    conn.close()
    with pytest.raises(sqlite3.IntegrityError, match="quota"):
        store.save_model(random_model(2), SPEC, name="lost", dataset="d")
    assert [c.id for c in store.list_models()] == [keep.id]
    assert files(store) == {f"{keep.id}.safetensors"}


def test_id_collision_draws_a_new_id(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeUUID:
        def __init__(self, hex_: str) -> None:
            self.hex = hex_

    draws = iter(["f" * 32, "f" * 32, "e" * 32])
    monkeypatch.setattr(store_mod.uuid, "uuid4", lambda: FakeUUID(next(draws)))
    first = store.save_model(random_model(1), SPEC, name="a", dataset="d")
    first_bytes = (store.models_dir / f"{first.id}.safetensors").read_bytes()
    second = store.save_model(random_model(2), SPEC, name="b", dataset="d")
    assert (first.id, second.id) == ("f" * 12, "e" * 12)
    assert (store.models_dir / f"{first.id}.safetensors").read_bytes() == first_bytes


def test_crash_mid_write_leaves_nothing_and_keeps_other_model(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    keep_model = random_model(1)
    keep = store.save_model(keep_model, SPEC, name="keep", dataset="d")
    keep_path = store.models_dir / f"{keep.id}.safetensors"
    keep_bytes = keep_path.read_bytes()
    real_fsync = store_mod.os.fsync
    seen: list[Path] = []

    def half_then_crash(fd: int) -> None:  # the disk fills up halfway through the new weights file
        path = Path(f"/proc/self/fd/{fd}").resolve()
        if path.parent == store.models_dir:
            os.ftruncate(fd, os.fstat(fd).st_size // 2)
            seen.append(path)
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(store_mod.os, "fsync", half_then_crash)
    with pytest.raises(OSError, match="No space"):
        store.save_model(random_model(2), SPEC, name="crash", dataset="d")
    assert seen and seen[0].parent == store.models_dir and seen[0].name.endswith(".tmp")
    assert [c.id for c in store.list_models()] == [keep.id]
    assert files(store) == {keep_path.name}
    assert keep_path.read_bytes() == keep_bytes
    loaded, _ = store.load_model(keep.id, device=CPU)
    assert torch.equal(logits(loaded), logits(keep_model))


def test_crash_before_rename_never_replaces_final_file(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def fsync_fails(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(store_mod.os, "fsync", fsync_fails)
    with pytest.raises(OSError, match="Input/output"):
        store.save_model(random_model(), SPEC, name="m", dataset="d")
    assert store.list_models() == [] and files(store) == set()


def _age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_cleanup_removes_stale_tmp_and_orphans_only(tmp_path: Path) -> None:
    home = tmp_path / "h"
    store = Store(home)
    card = store.save_model(random_model(), SPEC, name="m", dataset="d")
    stale_tmp = store.models_dir / "0123456789ab.safetensors.deadbeef.tmp"
    fresh_tmp = store.models_dir / "0123456789ac.safetensors.cafebabe.tmp"
    orphan = store.models_dir / "0123456789ad.safetensors"
    for p in (stale_tmp, fresh_tmp, orphan):
        p.write_bytes(b"half")
    _age(stale_tmp, 2 * store_mod.ORPHAN_MIN_AGE_S)
    _age(orphan, 2 * store_mod.ORPHAN_MIN_AGE_S)
    _age(store.models_dir / f"{card.id}.safetensors", 2 * store_mod.ORPHAN_MIN_AGE_S)
    Store(home)  # construction runs the cleanup
    assert files(store) == {f"{card.id}.safetensors", fresh_tmp.name}
    assert store.orphans_cleanup(min_age_s=0) == [fresh_tmp]
    store.load_model(card.id, device=CPU)
    with pytest.raises(ValueError, match="-1"):
        store.orphans_cleanup(min_age_s=-1)


def test_missing_or_damaged_file_raises_corrupt(store: Store, tmp_path: Path) -> None:
    card = store.save_model(random_model(), SPEC, name="m", dataset="d")
    path = store.models_dir / f"{card.id}.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptModelError, match="damaged"):
        store.load_model(card.id, device=CPU)
    path.unlink()
    with pytest.raises(CorruptModelError, match="missing"):
        store.load_model(card.id, device=CPU)
    with pytest.raises(CorruptModelError):
        store.export_model(card.id, tmp_path / "out")
    store.delete_model(card.id)  # a broken model can still be deleted
    assert store.list_models() == []


def test_concurrent_saves_from_threads(tmp_path: Path) -> None:
    home = tmp_path / "h"
    models = {seed: random_model(seed) for seed in range(20)}  # torch's global RNG is not per thread
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker(t: int) -> None:
        try:
            barrier.wait()
            s = Store(home)  # each thread constructs its own, racing on schema creation
            for seed in range(5 * t, 5 * t + 5):
                s.save_model(models[seed], SPEC, name=f"t{t}-{seed}", dataset="d", seed=seed)
        except BaseException as err:  # collected and re-raised in the main thread
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    store = Store(home)
    cards = store.list_models()
    assert len(cards) == 20 and len({c.id for c in cards}) == 20
    assert sorted(c.seed for c in cards if c.seed is not None) == list(range(20))
    assert len(files(store)) == 20
    for c in cards:
        model, _ = store.load_model(c.id, device=CPU)
        assert c.seed is not None
        assert torch.equal(logits(model), logits(models[c.seed]))


def test_concurrent_saves_from_processes(tmp_path: Path) -> None:
    home = tmp_path / "h"
    script = textwrap.dedent(
        """
        import sys, torch
        from dlsec_core.models import ModelSpec, build_model
        from dlsec_core.store import Store
        spec = ModelSpec.from_json(sys.argv[2])
        store = Store(sys.argv[1])
        for i in range(3):
            torch.manual_seed(int(sys.argv[3]) + i)
            store.save_model(build_model(spec), spec, name=f"p{sys.argv[3]}-{i}", dataset="d")
        """
    )
    repo = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(home), SPEC.to_json(), str(10 * k)], cwd=repo)
        for k in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    store = Store(home)
    cards = store.list_models()
    assert len(cards) == 6 and len(files(store)) == 6
    for c in cards:
        store.load_model(c.id, device=CPU)


# -- export / import ---------------------------------------------------------------------------------------------


def test_export_import_round_trip_with_and_without_spec(store: Store, tmp_path: Path) -> None:
    model = random_model(5)
    card = store.save_model(model, SPEC, name="my model/v1", dataset="digits", clean_accuracy=0.75)
    weights, spec_path = store.export_model(card.id, tmp_path / "export")
    assert weights.name == "my_model_v1.safetensors" and spec_path.name == "my_model_v1.spec.json"
    assert [p.name for p in weights.parent.iterdir() if p.name.endswith(".tmp")] == []
    spec = spec_from_upload(spec_path.read_bytes())
    assert spec == SPEC
    assert json.loads(spec_path.read_text())["arch"] == "mlp"

    data = weights.read_bytes()
    with_spec = store.import_model(data, spec, name="imported", filename=weights.name, clean_accuracy=0.75)
    from_meta = store.import_model(data, name="from metadata")
    for imported in (with_spec, from_meta):
        assert (
            imported.source == "uploaded" and imported.recipe == "uploaded" and imported.dataset == "upload"
        )
        assert imported.spec == SPEC
        loaded, _ = store.load_model(imported.id, device=CPU)
        assert torch.equal(logits(loaded), logits(model))
    assert with_spec.clean_accuracy == 0.75 and from_meta.clean_accuracy is None
    assert len(store.list_models()) == 3


def test_export_replaces_existing_files(store: Store, tmp_path: Path) -> None:
    a = store.save_model(random_model(1), SPEC, name="same", dataset="d")
    b = store.save_model(random_model(2), SPEC, name="same", dataset="d")
    out = tmp_path / "out"
    wa, _ = store.export_model(a.id, out)
    first = wa.read_bytes()
    wb, _ = store.export_model(b.id, out)
    assert wa == wb and wb.read_bytes() != first
    assert sorted(p.name for p in out.iterdir()) == ["same.safetensors", "same.spec.json"]


def test_card_is_frozen(store: Store) -> None:
    card = store.save_model(random_model(), SPEC, name="m", dataset="d")
    assert isinstance(card, ModelCard)
    with pytest.raises(AttributeError):
        card.name = "other"  # type: ignore[misc]
