"""Workshop preparation: the file format and its errors, prepare end to end (runs owned by the instructor, a scan
per model), idempotence (a second prepare queues nothing, an interrupted one's runs are followed), and the sample
workshop in the repo."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlsec_core.access import INSTRUCTOR
from dlsec_core.cli import main
from dlsec_core.errors import InvalidInputError
from dlsec_core.execution.worker import in_process, serve
from dlsec_core.runs import RunStatus, RunStore
from dlsec_core.store import Store
from dlsec_core.studies.catalog import submit
from dlsec_core.workshop import load_workshop, parse_workshop, plan, prepare

ROOT = Path(__file__).resolve().parents[2]

TINY = """
[workshop]
title = "tiny"
scan_preset = "quick"

[[models]]
name = "tiny-logreg"
dataset = "digits"
arch = "logreg"
train = { epochs = 1, lr = 0.05, shift = 0 }

[[models]]
name = "tiny-mlp"
dataset = "digits"
arch = "mlp"
hparams = { hidden = 16 }  # its depth: the architecture's default, which the stored spec spells out
train = { epochs = 1, lr = 0.05, shift = 0 }
scan = false
"""


def in_this_process(runs: RunStore) -> None:
    """Execute one queued run here, as a worker process would (no process is started by these tests)."""
    serve(runs, max_runs=1, idle_exit_s=0, lower_priority=False, engine=in_process)


def test_the_sample_workshop_is_valid() -> None:
    workshop = load_workshop(ROOT / "workshops" / "sample.toml")
    assert [(m.name, m.train.dataset, m.train.arch, m.train.recipe, m.scan) for m in workshop.models] == [
        ("ws-cnn-standard", "mnist5k", "cnn", "standard", True),
        ("ws-cnn-adversarial", "mnist5k", "cnn", "fgsm-rs", True),
        ("ws-cnn-dp", "mnist5k", "cnn", "dp-sgd", True),
    ]
    assert workshop.models[1].train.build()[0].params()["eps"] == 0.1
    dp, train = workshop.models[2].train.build()
    assert dp.params()["target_epsilon"] == 3.0 and train.epochs == 5 and train.batch_size == 512  # suggested


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[workshop\n", "is not valid TOML"),
        (
            "[[models]]\nname = 'a'\nepochs = 3\n",
            "model 'a' ([[models]] entry 1) has unknown keys ['epochs']",
        ),
        ("[[models]]\narch = 'cnn'\n", "[[models]] entry 1 needs a `name`"),
        ("[[models]]\nname = 'a'\n[[models]]\nname = 'a'\n", "each model name once: ['a']"),
        ("[[models]]\nname = 'a'\ntrain = { epochs = 0 }\n", "model 'a' ([[models]] entry 1): "),
        ("[[models]]\nname = 'a'\nrecipe = 'magic'\n", "model 'a'"),
        (
            "[workshop]\nscan_preset = 'slow'\n[[models]]\nname = 'a'\n",
            "scan_preset must be one of ['quick', 'thorough'], got 'slow'",
        ),
        ("[workshop]\ntitle = 'x'\n", "list at least one model"),
        ("[workshop]\nscan = 'yes'\n[[models]]\nname = 'a'\n", "scan is true or false"),
    ],
    ids=["toml", "unknown-key", "no-name", "duplicate", "epochs", "recipe", "preset", "no-models", "scan"],
)
def test_bad_workshop_files_are_named(text: str, expected: str) -> None:
    with pytest.raises(InvalidInputError, match="^my.toml ") as err:
        parse_workshop(text, "my.toml")
    assert expected in str(err.value)


def test_two_problems_are_named_at_once(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="There is no workshop file"):
        load_workshop(tmp_path / "missing.toml")
    text = "[[models]]\nname = 'a'\ntrain = { epochs = 0 }\n[[models]]\nname = 'b'\nscan = 1\n"
    with pytest.raises(InvalidInputError, match=r"2 problem\(s\): model 'a'.*; model 'b'.*scan"):
        parse_workshop(text, "my.toml")


def test_prepare_trains_scans_and_is_idempotent(tmp_home: Path) -> None:
    store, workshop = Store(tmp_home), parse_workshop(TINY)
    lines: list[str] = []
    done = prepare(store, workshop, drive=in_this_process, on_progress=lines.append, poll_s=0.01)
    assert [(p.name, p.training, p.scan) for p in done] == [
        ("tiny-logreg", "done", "done"),
        ("tiny-mlp", "done", "off"),
    ]
    cards = {c.name: c for c in store.list_models()}
    assert set(cards) == {"tiny-logreg", "tiny-mlp"}
    assert {c.owner for c in cards.values()} == {INSTRUCTOR}  # participants cannot delete them
    assert [p.model_id for p in done] == [cards["tiny-logreg"].id, cards["tiny-mlp"].id]
    runs = RunStore(store)
    (scan,) = runs.list_runs(study="scan")
    assert scan.status == RunStatus.DONE and scan.owner == INSTRUCTOR
    assert scan.config["model_id"] == cards["tiny-logreg"].id and scan.result is not None
    assert (
        "tiny-logreg: training queued, scan waiting" in lines
        and "tiny-logreg: training done, scan done" in lines
    )

    again = prepare(store, workshop, drive=in_this_process, poll_s=0.01)  # nothing to do
    assert [(p.training, p.scan) for p in again] == [("kept", "kept"), ("kept", "off")]
    assert runs.count_runs() == 3 and len(store.list_models()) == 2

    changed = TINY.replace(
        "epochs = 1, lr = 0.05, shift = 0 }\nscan", "epochs = 2, lr = 0.05, shift = 0 }\nscan"
    )
    with pytest.raises(InvalidInputError, match="a stored model is named 'tiny-mlp'.*trained otherwise"):
        prepare(store, parse_workshop(changed), drive=in_this_process, poll_s=0.01)
    assert runs.count_runs() == 3  # nothing queued


def test_an_interrupted_prepare_is_followed_not_repeated(tmp_home: Path) -> None:
    store, workshop = Store(tmp_home), parse_workshop(TINY)
    runs = RunStore(store)
    left = submit(
        runs, "train", workshop.models[0].train, owner=INSTRUCTOR
    )  # queued by a prepare that was stopped
    steps = plan(store, workshop)
    assert [(p.training, p.train_run) for p in steps] == [("queued", left.id), ("new", None)]
    done = prepare(store, workshop, drive=in_this_process, poll_s=0.01)
    assert all(not p.failed for p in done)
    assert runs.count_runs(study="train") == 2 and done[0].train_run == left.id


def test_cli_plan_and_errors(tmp_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(tmp_home), "workshop", "plan", str(ROOT / "workshops" / "sample.toml")]) == 0
    out = capsys.readouterr().out
    assert "ws-cnn-dp" in out and "training new; scan waiting" in out
    bad = tmp_home / "bad.toml"
    bad.write_text("[[models]]\nname = 'a'\ndataset = 'nowhere'\n", encoding="utf-8")
    assert main(["--home", str(tmp_home), "workshop", "prepare", str(bad)]) == 2
    assert "there is no dataset 'nowhere'" in capsys.readouterr().err
    assert RunStore(Store(tmp_home)).count_runs() == 0
