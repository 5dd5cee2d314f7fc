"""The study commands' flags: every range error comes from the study's validator (no second range in argparse),
the extremes the validator accepts pass, and a flag the command would not use is an error, never dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dlsec_core import cli
from dlsec_core.config import spec_of
from dlsec_core.privacy.inversion import MAX_STEPS
from dlsec_core.studies.base import StudyConfig
from dlsec_core.studies.certification import CertificationStudyConfig


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch, tmp_home: Path) -> list[tuple[str, StudyConfig]]:
    """The configs the commands would queue with --detach (the real, validated configs; no worker is started)."""
    out: list[tuple[str, StudyConfig]] = []
    monkeypatch.setattr(
        cli, "submit_detached", lambda store, name, config, as_json: out.append((name, config))
    )
    return out


def error_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert cli.main(list(argv)) == 2
    return capsys.readouterr().err


def test_certify_ranges_are_the_validators(
    queued: list[tuple[str, StudyConfig]], capsys: pytest.CaptureFixture[str]
) -> None:
    high = spec_of(CertificationStudyConfig, "sigma").bounds.hi  # type: ignore[union-attr]
    assert (
        cli.main(["certify", "--model", "m", "--sigma", str(high), "--n", "1", "--samples", "1", "--detach"])
        == 0
    )
    ((_, config),) = queued
    assert (config.sigma, config.n_images, config.n) == (high, 1, 1)  # type: ignore[attr-defined]
    err = error_of(capsys, "certify", "--model", "m", "--sigma", "10.5", "--n", "0", "--samples", "0")
    assert "Certification study: 3 settings are invalid" in err
    assert all(f"`{name}`" in err for name in ("sigma", "n_images", "n"))
    assert (
        "a number in (0, 10]"
        in cli.build_parser()._subparsers._group_actions[0].choices["certify"].format_help()
    )  # type: ignore[union-attr]


def test_detect_median_one_is_refused_not_dropped(
    queued: list[tuple[str, StudyConfig]], capsys: pytest.CaptureFixture[str]
) -> None:
    err = error_of(capsys, "detect", "--model", "m", "--median", "1", "--fpr", "1")
    assert "a median window (`size`) must be an integer from 2 to 5, got 1" in err and "`fpr`" in err
    assert cli.main(["detect", "--model", "m", "--median", "0", "--bits", "8", "--detach"]) == 0
    assert cli.main(["detect", "--model", "m", "--median", "5", "--detach"]) == 0
    assert [c.squeezers for _, c in queued] == [  # type: ignore[attr-defined]
        [{"kind": "bit_depth", "size": 8}],
        [{"kind": "bit_depth", "size": 1}, {"kind": "median", "size": 5}],
    ]


def test_eps_list_with_a_grid_flag_is_an_error(
    queued: list[tuple[str, StudyConfig]], capsys: pytest.CaptureFixture[str]
) -> None:
    err = error_of(capsys, "sweep", "--model", "m", "--eps", "0,0.1", "--points", "5")
    assert "--points would be ignored" in err
    err = error_of(capsys, "detect", "--model", "m", "--eps", "0,0.1", "--eps-max", "0.2")
    assert "--eps-max would be ignored" in err
    assert cli.main(["sweep", "--model", "m", "--eps-max", "0.2", "--points", "3", "--detach"]) == 0
    assert cli.main(["detect", "--model", "m", "--eps", "0,0.1", "--detach"]) == 0
    assert [c.eps for _, c in queued] == [[0.0, 0.1, 0.2], [0.0, 0.1]]  # type: ignore[attr-defined]


def test_sweep_without_detach_is_validated_like_a_run(
    capsys: pytest.CaptureFixture[str], tmp_home: Path
) -> None:
    err = error_of(capsys, "sweep", "--model", "m", "--n", "0", "--seed", "-1")
    assert "Robustness sweep: 2 settings are invalid" in err and "`n_images`" in err and "`seed`" in err


def test_lira_flags_need_the_lira_attack(
    queued: list[tuple[str, StudyConfig]], capsys: pytest.CaptureFixture[str]
) -> None:
    err = error_of(capsys, "membership", "m", "--shadows", "4", "--shadow-epochs", "2")
    assert "--shadows, --shadow-epochs: LiRA settings, which the loss attack does not use" in err
    err = error_of(capsys, "membership", "m", "--attack", "lira", "--shadows", "1", "--n", "9")
    assert all(f"`{name}`" in err for name in ("shadows", "n"))
    assert cli.main(["membership", "m", "--attack", "lira", "--shadows", "2", "--seed", "3", "--detach"]) == 0
    ((_, config),) = queued
    assert config.lira == {"shadows": 2, "seed": 3}  # type: ignore[attr-defined]


def test_invert_and_audit_flags_are_generated_from_their_configs(
    queued: list[tuple[str, StudyConfig]], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["invert", "m", "--steps", str(MAX_STEPS), "--tv-weight", "1000", "--objective", "1-p", "--detach"]
    assert cli.main(argv) == 0
    err = error_of(capsys, "invert", "m", "--steps", str(MAX_STEPS + 1), "--lr", "0", "--detach")
    assert "Inversion settings: 2 settings are invalid" in err and "`steps`" in err and "`lr`" in err
    assert (
        cli.main(
            ["audit", "--canaries", "60", "--k-plus", "30", "--k-minus", "30", "--delta", "0", "--detach"]
        )
        == 0
    )
    err = error_of(capsys, "audit", "--canaries", "60", "--k-plus", "31", "--k-minus", "30")
    assert "k₊ + k₋ must be from 1 to the number of canaries (60), got 31 + 30" in err
    err = error_of(capsys, "audit", "--confidence", "1")
    assert "`confidence`" in err
    (_, inv), (_, audit) = queued
    assert inv.inversion == {"steps": MAX_STEPS, "tv_weight": 1000.0, "objective": "1-p"}  # type: ignore[attr-defined]
    assert audit.audit == {"canaries": 60, "k_plus": 30, "k_minus": 30, "delta": 0.0, "seed": 0}  # type: ignore[attr-defined]


def test_frontier_training_flags_without_targets_are_an_error(
    queued: list[tuple[str, StudyConfig]], capsys: pytest.CaptureFixture[str]
) -> None:
    err = error_of(capsys, "frontier", "--epochs", "3", "--delta", "1e-6")
    assert "--epochs, --delta only apply with --targets" in err
    assert (
        cli.main(["frontier", "--targets", "1,2", "--delta", "0.1", "--max-grad-norm", "1e4", "--detach"])
        == 0
    )
    err = error_of(capsys, "frontier", "--targets", "1", "--delta", "0.2")
    assert "`delta`" in err
    ((_, config),) = queued
    assert (config.delta, config.max_grad_norm, config.accountant) == (0.1, 1e4, "rdp")  # type: ignore[attr-defined]


def test_every_study_flag_reaches_its_config(queued: list[Any]) -> None:
    """No flag is parsed and then left out: each command's flags, given, change the queued config."""
    argv = [
        "certify",
        "--model",
        "m",
        "--sigma",
        "0.5",
        "--n",
        "7",
        "--samples",
        "9",
        "--seed",
        "4",
        "--detach",
    ]
    assert cli.main(argv) == 0
    ((_, c),) = queued
    assert (c.sigma, c.n_images, c.n, c.seed) == (0.5, 7, 9, 4)
