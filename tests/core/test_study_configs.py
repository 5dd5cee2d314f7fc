"""The study configs and the algorithm configs they carry are `Config`s: every setting declared once with its
range, options and help; one error names every bad setting; the JSON of a config written by the code before this
change (main at 30041e9) still loads, to the same JSON."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest

from dlsec_core.config import Config, ParamSpec, specs
from dlsec_core.defenses.detection import FeatureSqueezingDetector, Squeezer
from dlsec_core.errors import InvalidInputError
from dlsec_core.privacy.audit import AuditConfig
from dlsec_core.privacy.inversion import InversionConfig
from dlsec_core.privacy.membership import LiraConfig
from dlsec_core.studies.catalog import STUDIES
from dlsec_core.studies.certification import CertificationStudyConfig
from dlsec_core.studies.detection import DetectionStudyConfig
from dlsec_core.studies.federated import FederatedStudyConfig
from dlsec_core.studies.inversion import InversionStudyConfig
from dlsec_core.studies.membership import MembershipStudyConfig
from dlsec_core.studies.ownership import OwnershipStudyConfig
from dlsec_core.studies.scan import ScanStudyConfig
from dlsec_core.studies.sweep import SweepStudyConfig
from dlsec_core.studies.theft import ExtractionStudyConfig
from dlsec_core.studies.train import TrainStudyConfig

#: the fields a config cannot do without, so one field at a time can be varied
REQUIRED: dict[type, dict[str, Any]] = {
    SweepStudyConfig: {"model_ids": ["m"]},
    DetectionStudyConfig: {"model_id": "m"},
    CertificationStudyConfig: {"model_id": "m"},
    MembershipStudyConfig: {"model_ids": ["m"]},
    InversionStudyConfig: {"model_ids": ["m"]},
    Squeezer: {"kind": "bit_depth", "size": 1},
    ExtractionStudyConfig: {"model_id": "m"},
    OwnershipStudyConfig: {"owner_id": "a", "suspect_id": "b"},
    ScanStudyConfig: {"model_id": "m"},
    FederatedStudyConfig: {"clip": 1.0},  # server noise is σ·clip: a clip makes every noise value meaningful
}
CONFIGS: list[type[Config]] = [
    *(study.config_type for study in STUDIES.values()),
    AuditConfig,
    LiraConfig,
    InversionConfig,
    FeatureSqueezingDetector,
]


#: settings a field's values need from the others (cross-field rules), as (config, field) -> settings
COUPLED: dict[tuple[type, str], dict[str, Any]] = {
    (FederatedStudyConfig, "malicious"): {"clients": 1000},  # up to K malicious clients
    (FederatedStudyConfig, "aggregator"): {
        "clip": None
    },  # a robust rule needs each update, not DP's noisy sum
}


def make(cls: type, **values: Any) -> Any:
    coupled = {k: v for name in values for k, v in COUPLED.get((cls, name), {}).items()}
    return cls(**{**REQUIRED.get(cls, {}), **coupled, **values})


def test_every_study_config_is_checked_from_its_metadata() -> None:
    for study in STUDIES.values():
        cls = study.config_type
        assert issubclass(cls, Config) and "__post_init__" not in vars(cls), cls.__name__
        plain = {
            "model_ids",
            "classes",
            "inversion",
        }  # InversionStudyConfig: a list of ids, of classes, settings
        assert (
            specs(cls) or cls is InversionStudyConfig and plain == {f.name for f in dataclasses.fields(cls)}
        )
    for cls in (AuditConfig, LiraConfig, InversionConfig, FeatureSqueezingDetector, Squeezer):
        assert issubclass(cls, Config) and "__post_init__" not in vars(cls), cls.__name__


def outside(spec: ParamSpec) -> list[float]:
    """Values just past each end of a field's range (for an open end: the end itself)."""
    b = spec.bounds
    assert b is not None
    out: list[float] = []
    for end, is_open, direction in ((b.lo, b.lo_open, -1), (b.hi, b.hi_open, +1)):
        if end is not None:
            out.append(
                end
                if is_open
                else end + direction
                if b.integer
                else math.nextafter(end, direction * math.inf)
            )
    return out


@pytest.mark.parametrize("cls", CONFIGS, ids=[c.__name__ for c in CONFIGS])
def test_extremes_are_accepted_and_just_past_refused(cls: type) -> None:
    checked = 0
    for spec in specs(cls):
        if spec.bounds is None:
            continue
        for value in spec.bounds.extremes():
            if value is not None and not (cls is AuditConfig and spec.name in ("k_plus", "k_minus")):
                assert getattr(make(cls, **{spec.name: value}), spec.name) == value, (spec.name, value)
                checked += 1
        for value in outside(spec):
            with pytest.raises(InvalidInputError, match=f"`{spec.name}`"):
                make(cls, **{spec.name: value})
        for option in spec.options or ():
            assert make(cls, **{spec.name: option})
    assert checked or not [s for s in specs(cls) if s.bounds is not None]


def bad_value(spec: ParamSpec) -> Any:
    """A value the field refuses on its own."""
    if spec.options is not None:
        return "no-such-option"
    if spec.bounds is not None:
        return outside(spec)[0]
    return 12345 if spec.type in (str, bool) else "text"


@pytest.mark.parametrize("cls", CONFIGS, ids=[c.__name__ for c in CONFIGS])
def test_one_error_names_every_bad_field(cls: type) -> None:
    bad = {s.name: bad_value(s) for s in specs(cls) if not s.optional or s.bounds is not None or s.options}
    if cls is InversionStudyConfig:  # no scalar settings: its lists and its nested settings
        bad = {"model_ids": [], "classes": [-1], "inversion": {"steps": 0, "lr": 0.0}}
    with pytest.raises(InvalidInputError) as err:
        make(cls, **bad)
    text = str(err.value)
    assert text.startswith(f"{cls.config_name()}: {len(bad)} settings are invalid"), text
    for name in bad if cls is not InversionStudyConfig else ("model_ids", "classes", "steps", "lr"):
        assert f"`{name}`" in text, (name, text)


def test_plain_fields_and_nested_settings_are_named_beside_the_scalar_ones() -> None:
    with pytest.raises(InvalidInputError) as err:
        SweepStudyConfig(model_ids=[], n_images=0, attack_params={"bogus": 1}, eps=[2.0], defense="jpeg",
                         defense_params={"quality": 0})  # fmt: skip
    text = str(err.value)
    for part in (
        "`n_images`",
        "pick 1 to 16 models",
        "attack_params: fgsm has no parameter(s) bogus",
        "`quality`",
    ):
        assert part in text, text
    with pytest.raises(
        InvalidInputError
    ) as err:  # ε list vs the norm: a cross-field rule, named with the rest
        SweepStudyConfig(model_ids=["m"], n_images=0, eps=[2.0])
    assert "`n_images`" in str(err.value) and "L∞ ε above 1" in str(err.value)
    assert SweepStudyConfig(model_ids=["m"], attack_params={"norm": "l2"}, eps=[2.0]).eps == [2.0]
    with pytest.raises(InvalidInputError) as err:
        MembershipStudyConfig(model_ids=["a", "a"], n=5, lira={"shadows": 1, "variant": "x", "bogus": 2})
    text = str(err.value)
    for part in ("`n`", "once", "'bogus'", "`shadows`", "`variant`"):
        assert part in text, text
    with pytest.raises(InvalidInputError, match=r"k₊ \+ k₋ must be from 1 to the number of canaries \(10\)"):
        AuditConfig(canaries=10, k_plus=6, k_minus=6)
    assert AuditConfig(canaries=10, k_plus=5, k_minus=5).guesses() == (5, 5)
    with pytest.raises(InvalidInputError, match=r"a median window \(`size`\) must be an integer from 2 to 5"):
        Squeezer("median", 1)
    assert Squeezer("bit_depth", 8).size == 8


def test_store_lookups_are_left_to_execute() -> None:
    """A dataset or model that does not exist is not a field rule: the config builds; the run fails on it."""
    assert TrainStudyConfig(dataset="not-stored-yet").dataset == "not-stored-yet"
    assert CertificationStudyConfig(model_id="not-stored").model_id == "not-stored"


#: `to_json()` of one config per study, as main at 30041e9 (before this change) wrote them
WRITTEN_BY_MAIN: dict[str, dict[str, Any]] = json.loads(
    '{"sweep": {"model_ids": ["a1", "b2"], "attack": "pgd", "attack_params": {"steps": 5, "norm": "l2", "alpha": '
    'null, "random_start": true}, "eps": [0.0, 0.5, 1.0], "n_images": 64, "seed": 3, "defense": "jpeg", '
    '"defense_params": {"quality": 40}, "sanity_checks": false, "surrogate_id": null}, "train": {"dataset": '
    '"digits", "arch": "logreg", "name": "tiny", "recipe": "pgd", "recipe_params": {"eps": 0.1, "steps": 3}, '
    '"train": {"epochs": 2, "batch_size": 64, "seed": 1}, "hparams": {}}, "detection": {"model_id": "a1", '
    '"squeezers": [{"kind": "bit_depth", "size": 2}], "fpr": 0.1, "attack": "fgsm", "attack_params": {"norm": '
    '"linf"}, "eps": [0.0, 0.1], "n_images": 40, "adaptive_images": 20, "plain_steps": 5, "adaptive_steps": 10, '
    '"adaptive_restarts": 1, "seed": 2, "surrogate_id": null}, "certification": {"model_id": "a1", "sigma": 0.5, '
    '"n_images": 20, "n0": 10, "n": 100, "alpha": 0.01, "pgd_steps": 3, "eot_samples": 2, "draws": 4, "seed": 1}, '
    '"membership": {"model_ids": ["a1", "b2"], "attack": "lira", "n": 50, "lira": {"shadows": 4, "variant": '
    '"offline", "epochs": 2, "seed": 7}}, "inversion": {"model_ids": ["a1"], "classes": [0, 3, 3], "inversion": '
    '{"steps": 20, "lr": 0.05, "optimizer": "sign", "objective": "1-p", "tv_weight": 0.5, "l2_weight": 0.0, '
    '"start": 0.3, "init_noise": 0.1, "stop_at": 0.9, "seed": 5}}, "audit": {"dataset": "digits", "arch": '
    '"logreg", "recipe": "dp-sgd", "recipe_params": {"noise_multiplier": 1.1, "max_grad_norm": 1.0}, "train": '
    '{"epochs": 1, "batch_size": 64, "seed": 0}, "audit": {"canaries": 100, "k_plus": 5, "k_minus": 5, '
    '"confidence": 0.9, "delta": 1e-05, "keep_test": 50, "seed": 1}, "control": false}, "frontier": {"dataset": '
    '"digits", "arch": "logreg", "targets": [1.0, 4.0], "train": {"epochs": 1}, "accountant": "prv", '
    '"max_grad_norm": 0.5, "delta": 1e-06, "baseline": false}}'
)


@pytest.mark.parametrize(
    "study", sorted(WRITTEN_BY_MAIN)
)  # the studies that had stored runs before the change
def test_a_config_written_by_main_still_loads_to_the_same_json(study: str) -> None:
    cls = STUDIES[study].config_type
    config = cls.from_json(WRITTEN_BY_MAIN[study])
    assert config.to_json() == WRITTEN_BY_MAIN[study]
    assert cls.from_json(json.loads(json.dumps(config.to_json()))) == config
    assert cls.from_json(make(cls).to_json()) == make(cls)  # the defaults round-trip too
