"""The Config base: one error naming every bad field, metadata-driven ranges, JSON, Norm, generated CLI flags."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from dlsec_core.attacks import ATTACKS, CW, PGD, DeepFool, get_attack
from dlsec_core.attacks.norms import Norm
from dlsec_core.catalog import RECIPES
from dlsec_core.cli import _attack_params, _defense_params, _recipe_params, build_parser, main
from dlsec_core.config import Config, ParamSpec, param, specs
from dlsec_core.data.builtin import load_dataset
from dlsec_core.data.images import tensor_to_png
from dlsec_core.defenses.transforms import TRANSFORMS, get_transform
from dlsec_core.errors import InvalidInputError
from dlsec_core.store import ModelCard
from dlsec_core.studies.base import StudyConfig
from dlsec_core.training.loop import TrainConfig


@dataclass(frozen=True, kw_only=True)
class Toy(Config):
    title: ClassVar[str] = "Toy settings"

    count: int = param(3, "Count", min=1, max=10)
    rate: float = param(0.5, "Rate", min=0.0, min_open=True, max=1.0)
    budget: float = param(1.0, "Budget", min=0.0, allow_inf=True)
    flag: bool = param(True, "Flag")
    mode: str = param("a", "Mode", options=("a", "b"))
    norm: Norm = param(Norm.LINF, "Norm")
    step: float | None = param(None, "Step", min=0.0, max=1.0)
    lo: int = param(0, "Low", min=0, max=100)
    hi: int = param(100, "High", min=0, max=100)

    def cross_check(self, problems: list[str]) -> None:
        super().cross_check(problems)
        if self.lo > self.hi:
            problems.append(f"low {self.lo} is above high {self.hi}")


def test_one_error_names_every_bad_field() -> None:
    with pytest.raises(InvalidInputError) as err:
        Toy(count=0, rate=0.0, budget=-math.inf, flag="yes", mode="c", norm="l1", step=2.0)  # type: ignore[arg-type]
    text = str(err.value)
    assert text.startswith("Toy settings: 7 settings are invalid")
    for name in ("count", "rate", "budget", "flag", "mode", "norm", "step"):
        assert f"`{name}`" in text, name
    assert "(0, 1]" in text  # the open end is stated


def test_types_nan_and_inf_are_checked() -> None:
    for bad in ({"count": 2.5}, {"count": True}, {"rate": math.nan}, {"rate": "0.5"}, {"rate": math.inf}):
        with pytest.raises(InvalidInputError):
            Toy(**bad)  # type: ignore[arg-type]
    assert Toy(budget=math.inf).budget == math.inf  # allowed where declared
    assert Toy(step=None).step is None  # optional


def test_values_are_converted_to_the_declared_type() -> None:
    toy = Toy(rate=1, norm="l2")  # type: ignore[arg-type]
    assert isinstance(toy.rate, float) and toy.norm is Norm.L2


def test_cross_field_rules_append_to_the_same_error() -> None:
    with pytest.raises(InvalidInputError, match="low 50 is above high 10"):
        Toy(lo=50, hi=10)
    assert Toy(lo=10, hi=10).lo == 10


def test_pgd_reports_every_problem_at_once() -> None:
    with pytest.raises(InvalidInputError) as err:
        PGD(eps=float("nan"), norm="l1", steps=0, alpha=-1.0)  # type: ignore[arg-type]
    assert all(f"`{n}`" in str(err.value) for n in ("eps", "norm", "steps", "alpha"))


def test_json_round_trip_keeps_plain_strings_and_infinity() -> None:
    cw = CW(norm="linf", eps=0.2, steps=7)  # type: ignore[arg-type]
    data = cw.to_json()
    assert data["norm"] == "linf" and type(data["norm"]) is str
    assert json.loads(json.dumps(DeepFool().to_json()))["eps"] == "inf"
    assert CW.from_json(json.loads(json.dumps(data))) == cw
    assert DeepFool.from_json(DeepFool().to_json()).eps == math.inf


def test_from_json_names_unknown_and_missing_fields_at_once() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Needs(StudyConfig):
        model_ids: list[str]
        n: int = 1

    with pytest.raises(InvalidInputError) as err:
        Needs.from_json({"bogus": 1, "other": 2})
    assert all(word in str(err.value) for word in ("bogus", "other", "model_ids"))


def test_a_study_config_with_plain_fields_and_its_own_post_init_keeps_working() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Old(StudyConfig):
        model_ids: list[str]
        n_images: int = 10
        extra: dict[str, Any] = field(default_factory=dict)

        def __post_init__(self) -> None:
            if not self.model_ids:
                raise InvalidInputError("Pick at least one model.")

    old = Old(model_ids=["a"], extra={"k": [1, 2]})
    assert Old.from_json(old.to_json()) == old
    with pytest.raises(InvalidInputError, match="Pick at least one"):
        Old(model_ids=[])


def test_norm_is_a_str_enum_equal_to_the_old_strings() -> None:
    assert Norm.LINF == "linf" and Norm("l2") is Norm.L2 and f"{Norm.L2}" == "l2"
    assert PGD(norm="l2").norm is Norm.L2  # type: ignore[arg-type]
    assert Norm.LINF.max_eps == 1.0 and Norm.L2.max_eps == math.inf
    with pytest.raises(InvalidInputError, match="L∞ ε above 1"):
        PGD(eps=1.5)
    assert PGD(eps=1.5, norm="l2").eps == 1.5  # type: ignore[arg-type]


# -- every registered config: the validator accepts its declared extremes and refuses just past them ---------
def registered() -> list[tuple[str, type]]:
    return (
        [(f"attack:{n}", c) for n, c in ATTACKS.items()]
        + [(f"transform:{n}", c) for n, c in TRANSFORMS.items()]
        + [(f"recipe:{n}", c) for n, c in RECIPES.items()]
        + [("TrainConfig", TrainConfig)]
    )


def outside(spec: ParamSpec) -> list[float]:
    """Values just past each end of a field's range (for an open end: the end itself)."""
    b = spec.bounds
    assert b is not None
    out: list[float] = []
    for end, is_open, direction in ((b.lo, b.lo_open, -1), (b.hi, b.hi_open, +1)):
        if end is None:
            continue
        if is_open:
            out.append(end)
        else:
            out.append(end + direction if b.integer else math.nextafter(end, direction * math.inf))
    return out


@pytest.mark.parametrize(("key", "cls"), registered(), ids=[k for k, _ in registered()])
def test_validator_accepts_the_extremes_and_refuses_just_past(key: str, cls: type) -> None:
    checked = 0
    for spec in specs(cls):
        if spec.bounds is None or spec.name == "eps" and key.startswith("attack:"):
            continue  # an attack's ε range depends on its norm: see test_norm_is_a_str_enum...
        for value in spec.bounds.extremes():
            if value is not None:
                assert getattr(cls(**{spec.name: value}), spec.name) == value, (spec.name, value)
                checked += 1
        for value in outside(spec):
            with pytest.raises(InvalidInputError, match=f"`{spec.name}`"):
                cls(**{spec.name: value})
    assert checked or not [s for s in specs(cls) if s.bounds is not None and s.name != "eps"]


# -- CLI flags generated from the same metadata ----------------------------------------------------------------
def built_attack(*argv: str) -> Any:
    args = build_parser().parse_args(["attack", "--model", "m", "x.png", *argv])
    return get_attack(args.attack, **_attack_params(args))


def test_cli_flags_reach_cw_and_deepfool() -> None:
    cw = built_attack("--attack", "cw", "--steps", "100", "--c", "2.5", "--binary-search-steps", "3")
    assert (cw.steps, cw.c, cw.binary_search_steps) == (100, 2.5, 3)
    deepfool = built_attack("--attack", "deepfool", "--steps", "20", "--overshoot", "0.1", "--norm", "linf")
    assert (deepfool.steps, deepfool.overshoot, deepfool.norm) == (20, 0.1, Norm.LINF)
    pgd = built_attack("--attack", "pgd", "--steps", "7", "--alpha", "0.01", "--no-random-start")
    assert (pgd.steps, pgd.alpha, pgd.random_start) == (7, 0.01, False)


def test_a_flag_the_chosen_attack_does_not_have_is_an_error() -> None:
    with pytest.raises(InvalidInputError, match="--steps is not a parameter of the attack fgsm"):
        built_attack("--attack", "fgsm", "--steps", "10")
    with pytest.raises(InvalidInputError, match="--c, --overshoot are not parameters of the attack pgd"):
        built_attack("--attack", "pgd", "--c", "1", "--overshoot", "0.1")


def test_cli_range_errors_come_from_the_validator() -> None:
    with pytest.raises(InvalidInputError, match="`steps`"):
        built_attack("--attack", "pgd", "--steps", "10001")
    assert (
        built_attack("--attack", "pgd", "--steps", "10000").steps == 10_000
    )  # the form's and validator's max


def test_defense_and_recipe_flags() -> None:
    args = build_parser().parse_args(
        ["attack", "--model", "m", "x.png", "--defense", "jpeg", "--defense-quality", "30"]
    )
    assert get_transform(args.defense, **_defense_params(args)).quality == 30  # type: ignore[attr-defined]
    args = build_parser().parse_args(["attack", "--model", "m", "x.png", "--defense-bits", "3"])
    with pytest.raises(InvalidInputError, match="--defense-bits needs a --defense"):
        _defense_params(args)
    args = build_parser().parse_args(
        ["train", "--recipe", "pgd", "--recipe-eps", "0.2", "--recipe-steps", "3"]
    )
    assert _recipe_params(args) == {"eps": 0.2, "steps": 3}
    args = build_parser().parse_args(["train", "--recipe", "standard", "--recipe-eps", "0.2"])
    with pytest.raises(InvalidInputError, match="--recipe-eps is not a parameter of the recipe standard"):
        _recipe_params(args)


def test_cli_help_is_the_metadata() -> None:
    text = build_parser()._subparsers._group_actions[0].choices["attack"].format_help()  # type: ignore[union-attr]
    assert "Adam steps (per binary-search step)" in text and "an integer from 1 to 10,000" in text


def test_deepfool_steps_reach_the_attack_end_to_end(
    capsys: pytest.CaptureFixture[str], stored_model: ModelCard, tmp_home: Path, tmp_path: Path
) -> None:
    digit = tmp_path / "digit.png"
    digit.write_bytes(tensor_to_png(load_dataset("digits").x_test[3], scale=4))
    assert (
        main(
            [
                "attack",
                "--model",
                stored_model.id,
                str(digit),
                "--attack",
                "deepfool",
                "--steps",
                "1",
                "--json",
            ]
        )
        == 0
    )
    assert (
        "steps=1," in json.loads(capsys.readouterr().out)["attack"]
    )  # DeepFool.describe() of the built attack
    assert main(["attack", "--model", stored_model.id, str(digit), "--attack", "fgsm", "--steps", "1"]) == 2
    assert "--steps is not a parameter of the attack fgsm" in capsys.readouterr().err
