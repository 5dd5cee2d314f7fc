"""Workflows shared by the UI jobs and the CLI: train-and-store, uploads of data and models, multi-model sweeps,
and the guarantee that an interrupted training run never becomes a stored model."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dlsec_core.attacks import FGSM
from dlsec_core.errors import DlsecError, InvalidInputError, NotFoundError
from dlsec_core.evaluation import sweep
from dlsec_core.store import Store
from dlsec_core.training.loop import TrainConfig, run_to_end
from dlsec_core.workflows import (
    CurveFindings,
    ModelSweepPoint,
    import_and_evaluate,
    resolve_dataset,
    store_uploaded_dataset,
    sweep_models,
    train_and_store,
)

REPO = Path(__file__).resolve().parents[2]
FAST = TrainConfig(epochs=2, lr=0.05, shift=0)


def _npz(n_per_class: int = 10, classes: int = 3, side: int = 8) -> bytes:
    rng = np.random.default_rng(0)
    x = (rng.random((n_per_class * classes, side, side)) * 255).astype(np.uint8)
    y = np.repeat(np.arange(classes), n_per_class)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    return buf.getvalue()


def test_train_and_store_saves_card_only_at_the_end(tmp_home: Path) -> None:
    store = Store()
    gen = train_and_store(store, dataset="digits", arch="logreg", name="t", config=FAST)
    events = []
    for event in gen:
        events.append(event)
        assert store.list_models() == []  # nothing visible while training runs
    cards = store.list_models()
    assert len(cards) == 1
    card = cards[0]
    assert card.name == "t" and card.dataset == "digits" and card.recipe == "standard" and card.seed == 0
    assert card.train_config["epochs"] == 2 and len(card.history) == 2
    assert card.clean_accuracy == events[-1].test_accuracy
    assert card.train_seconds is not None and card.train_seconds > 0


def test_closing_training_early_stores_nothing(tmp_home: Path) -> None:
    store = Store()
    gen = train_and_store(store, dataset="digits", arch="cnn", config=TrainConfig(epochs=5, shift=0))
    next(gen)
    gen.close()  # what a worker does on cancel
    assert store.list_models() == []
    assert list((tmp_home / "models").iterdir()) == []


def test_killed_training_process_leaves_no_model(tmp_path: Path) -> None:
    """SIGKILL a CLI training run mid-way: the store has no model and no stray weights file."""
    home = tmp_path / "home"
    env = {**os.environ, "DLSEC_HOME": str(home), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dlsec_core",
            "train",
            "--dataset",
            "digits",
            "--arch",
            "cnn",
            "--epochs",
            "200",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()  # first epoch done: training is well under way
    assert line.startswith("epoch 1/200"), line
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    store = Store(home)
    assert store.list_models() == []
    assert [p for p in (home / "models").iterdir()] == []


def test_uploaded_dataset_round_trip_and_training(tmp_home: Path) -> None:
    store = Store()
    data = store_uploaded_dataset(store, _npz(), "mine.npz", "mine")
    again = resolve_dataset(store, "mine")
    assert torch.equal(data.x_train, again.x_train) and torch.equal(data.y_test, again.y_test)
    assert again.class_names == data.class_names
    card = run_to_end(train_and_store(store, dataset="mine", arch="mlp", config=TrainConfig(epochs=1)))
    assert card.dataset == "mine" and card.spec.input_shape == (1, 8, 8) and card.spec.num_classes == 3


@pytest.mark.parametrize(
    ("payload", "filename", "name"),
    [
        (b"not a zip", "x.npz", "ok"),
        (b"hello", "x.txt", "ok"),
        (_npz(), "x.npz", "bad name!"),
        (_npz(), "x.npz", "digits"),  # a built-in's name
    ],
)
def test_bad_dataset_uploads_store_nothing(tmp_home: Path, payload: bytes, filename: str, name: str) -> None:
    store = Store()
    with pytest.raises(DlsecError) as info:
        store_uploaded_dataset(store, payload, filename, name)
    assert str(info.value)
    assert store.list_datasets() == []


def test_import_and_evaluate_measures_accuracy(tmp_home: Path, stored_model) -> None:  # type: ignore[no-untyped-def]
    store = Store()
    data = store.weights_bytes(stored_model.id)
    card = import_and_evaluate(store, data, None, name="copy", dataset="digits")
    assert card.clean_accuracy == pytest.approx(stored_model.clean_accuracy)
    with pytest.raises(InvalidInputError, match="pick the dataset"):
        import_and_evaluate(store, data, None, name="copy2", dataset="mnist5k")
    assert len(store.list_models()) == 2


def test_sweep_models_matches_the_single_model_sweep(tmp_home: Path, stored_model) -> None:  # type: ignore[no-untyped-def]
    store = Store()
    eps = [0.0, 0.1, 0.2]
    events = list(
        sweep_models(
            store, [stored_model.id, stored_model.id], FGSM(), eps, n_images=100, sanity_checks=False
        )
    )
    points = [e for e in events if isinstance(e, ModelSweepPoint)]
    checks = [e for e in events if isinstance(e, CurveFindings)]
    assert [p.point.eps for p in points] == eps * 2
    assert len(checks) == 2 and events[6:] == checks  # every curve is drawn before any check runs
    assert not [
        f for c in checks for f in c.findings if f.severity == "warning"
    ]  # a plain model: nothing to flag
    model, _ = store.load_model(stored_model.id)
    data = resolve_dataset(store, "digits")
    direct = [p.accuracy for p in sweep(model, data.x_test[:100], data.y_test[:100], FGSM(), eps)]
    assert [p.point.accuracy for p in points[:3]] == direct
    with pytest.raises(NotFoundError):
        list(sweep_models(store, ["000000000000"], FGSM(), eps))


def test_defended_sweep_shows_the_gap_and_flags_masking(tmp_home: Path, stored_model) -> None:  # type: ignore[no-untyped-def]
    """Bit-depth reduction: the naive curve (zero gradients) looks robust, the adaptive (BPDA) one does not, and
    the checks say so: zero gradients, black-box beating white-box, naive overestimating."""
    from dlsec_core.attacks import PGD
    from dlsec_core.defenses.transforms import BitDepth

    store = Store()
    gen = sweep_models(
        store, [stored_model.id], PGD(steps=10), [0.0, 0.2], n_images=100, defense=BitDepth(bits=2)
    )
    report = run_to_end(gen)  # type: ignore[arg-type]
    by_curve: dict[str, list[float]] = {}
    for rec in report.records:
        kind = rec["model"].rsplit("(", 1)[1] if rec["defense"] else "undefended"
        by_curve.setdefault(kind, []).append(rec["accuracy"])
    assert set(by_curve) == {"undefended", "adaptive)", "naive)"}  # one chart: baseline, honest, flattering
    assert by_curve["naive)"][-1] > by_curve["adaptive)"][-1] + 0.3
    naive_codes = {f["code"] for f in report.findings if f["curve"].endswith("(naive)")}
    assert {"zero-gradients", "black-box-beats-white-box", "naive-overestimates"} <= naive_codes
    adaptive_warnings = [
        f for f in report.findings if f["curve"].endswith("(adaptive)") and f["severity"] == "warning"
    ]
    assert adaptive_warnings == []


@pytest.fixture(scope="module")
def digits_mlp():  # type: ignore[no-untyped-def]
    """A small ReLU network on `digits`: FGSM, one linear step, is clearly weaker on it than Square or PGD."""
    from dlsec_core.training.loop import train
    from dlsec_core.workflows import spec_for

    data = resolve_dataset(Store(Path("/nonexistent")), "digits")
    return run_to_end(train(spec_for(data, "mlp"), data, TrainConfig(epochs=3, lr=0.05, shift=0)))


def test_fgsm_losing_to_square_is_called_weak_and_masking_is_still_caught(
    tmp_home: Path, digits_mlp, save_trained
) -> None:  # type: ignore[no-untyped-def]
    """Issue 13 item 8. On an honest network FGSM loses to Square, but PGD with restarts does as well as Square:
    a weak attack, not gradient masking. Behind naive bit-depth reduction (zero gradients) PGD loses too: masking."""
    from dlsec_core.defenses.transforms import BitDepth

    card = save_trained(tmp_home, digits_mlp, name="digits-mlp")
    gen = sweep_models(Store(), [card.id], FGSM(), [0.0, 0.15], n_images=100, defense=BitDepth(bits=2))
    report = run_to_end(gen)  # type: ignore[arg-type]
    fgsm_final = [r["accuracy"] for r in report.records if r["mode"] == "undefended"][-1]
    mode = {r["model"]: r["mode"] for r in report.records}
    by_curve: dict[str, set[str]] = {"undefended": set(), "adaptive": set(), "naive": set()}
    for f in report.findings:
        by_curve[mode[f["curve"]]].add(f["code"])
    assert fgsm_final > 0.3  # FGSM leaves many digits standing...
    assert "weak-white-box-attack" in by_curve["undefended"]  # ...which Square and PGD both take
    assert "black-box-beats-white-box" not in by_curve["undefended"] | by_curve["adaptive"]
    assert "black-box-beats-white-box" in by_curve["naive"]
    weak = next(f for f in report.findings if f["code"] == "weak-white-box-attack")
    assert "FGSM" in weak["title"] and "PGD (50 steps, 3 random restarts)" in weak["sentence"]


def test_a_sweep_runs_no_attack_at_eps_zero(tmp_home: Path, stored_model) -> None:  # type: ignore[no-untyped-def]
    """Issue 13 item 10: at ε = 0 PGD used to run all its steps; the point is the clean accuracy, measured by one
    forward pass, and its point time says so."""
    from dlsec_core.attacks import PGD

    store = Store()
    model, _ = store.load_model(stored_model.id)
    data = resolve_dataset(store, "digits")
    x, y = data.x_test[:100], data.y_test[:100]
    calls = {"n": 0}

    def count(*_: object) -> None:
        calls["n"] += 1

    handle = model.register_forward_hook(count)
    (point,) = list(sweep(model, x, y, PGD(steps=40), [0.0]))
    handle.remove()
    assert calls["n"] == 1  # one forward pass over the 100 images, no attack steps
    assert point.accuracy == pytest.approx(float((model(x).argmax(1) == y).float().mean()))
    record = point.to_record()
    assert record["point_s"] <= record["curve_elapsed_s"] and "elapsed_s" not in record


def test_defended_sweep_with_a_random_transform_is_reproducible(tmp_home: Path, stored_model) -> None:  # type: ignore[no-untyped-def]
    from dlsec_core.attacks import PGD
    from dlsec_core.defenses.transforms import GaussianNoise

    store = Store()

    def accuracies(seed: int) -> list[float]:
        gen = sweep_models(
            store, [stored_model.id], PGD(steps=3), [0.0, 0.2], n_images=60, defense=GaussianNoise(sigma=0.3),
            seed=seed, sanity_checks=False,
        )  # fmt: skip
        return [r["accuracy"] for r in run_to_end(gen).records]  # type: ignore[arg-type]

    assert accuracies(1) == accuracies(1)
