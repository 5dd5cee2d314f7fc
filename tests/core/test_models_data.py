"""Model specs and architectures (every registered one, Opacus-compatible), and the built-in datasets."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from opacus.validators import ModuleValidator
from torch import nn

from dlsec_core.data.builtin import DATASETS, Dataset, load_dataset, stratified_split
from dlsec_core.errors import InvalidInputError, NotFoundError
from dlsec_core.models import ARCHITECTURES, ModelSpec, build_model, count_parameters
from dlsec_core.models.spec import Normalize

SHAPES = [(1, 28, 28), (1, 8, 8), (3, 32, 32)]

# -- models --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_every_architecture_builds_and_returns_logits(arch: str, shape: tuple[int, int, int]):
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch=arch, input_shape=shape, num_classes=7)).eval()
    assert count_parameters(model) > 0
    with torch.no_grad():
        logits = model(torch.rand(3, *shape))
    assert logits.shape == (3, 7)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_architectures_are_opacus_compatible_or_name_their_fix(arch: str):
    """Every architecture trains with DP, except those that say which one replaces them (cnn-bn -> cnn-gn)."""
    fix = ARCHITECTURES[arch].dp_fix
    model = build_model(ModelSpec(arch=arch, input_shape=(1, 8, 8), num_classes=10))
    has_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert has_batchnorm == (fix is not None)
    assert (ModuleValidator.validate(model, strict=False) == []) == (fix is None)
    if fix is not None:
        fixed = build_model(ModelSpec(arch=fix, input_shape=(1, 8, 8), num_classes=10))
        assert ARCHITECTURES[fix].dp_fix is None and ModuleValidator.validate(fixed, strict=False) == []


def test_normalization_is_the_first_layer_in_pixel_units():
    spec = ModelSpec(arch="logreg", input_shape=(3, 4, 4), num_classes=2, mean=(0.5, 0.4, 0.3), std=(0.2,))
    model = build_model(spec)
    first = model[0]
    assert isinstance(first, Normalize)
    x = torch.rand(2, 3, 4, 4)
    expected = (x - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / 0.2
    torch.testing.assert_close(first(x), expected)
    assert "0.mean" in model.state_dict() and "0.std" in model.state_dict()
    assert all(not name.startswith("0.") for name, _ in model.named_parameters())  # buffers, never trained


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_spec_json_round_trip(arch: str):
    spec = ModelSpec(arch=arch, input_shape=(3, 32, 32), num_classes=5, mean=(0.1, 0.2, 0.3), std=(0.5,))
    again = ModelSpec.from_json(spec.to_json())
    assert again == spec
    assert again.hparams == ARCHITECTURES[arch].defaults  # defaults are filled in, so they are stored
    shapes = {k: v.shape for k, v in build_model(spec).state_dict().items()}
    assert {k: v.shape for k, v in build_model(again).state_dict().items()} == shapes


def test_spec_hparams_change_the_model():
    small = ModelSpec(arch="mlp", input_shape=(1, 8, 8), num_classes=10, hparams={"hidden": 8, "depth": 1})
    assert count_parameters(build_model(small)) == 64 * 8 + 8 + 8 * 10 + 10


BAD_SPECS: dict[str, dict[str, Any]] = {
    "unknown arch": {"arch": "resnet9000"},
    "two dims": {"input_shape": (28, 28)},
    "zero side": {"input_shape": (1, 0, 28)},
    "too many channels": {"input_shape": (5, 28, 28)},
    "too large": {"input_shape": (1, 4096, 4096)},
    "unknown hparam": {"arch": "mlp", "hparams": {"widht": 3}},
    "hparam for another arch": {"arch": "logreg", "hparams": {"hidden": 3}},
    "zero std": {"std": (0.0,)},
    "negative std": {"std": (-0.5,)},
    "std per wrong channel count": {"std": (0.5, 0.5)},
    "one class": {"num_classes": 1},
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_invalid_specs_are_refused(case: str):
    fields = {"arch": "cnn", "input_shape": (1, 28, 28), "num_classes": 10, **BAD_SPECS[case]}
    with pytest.raises(InvalidInputError):
        ModelSpec(**fields)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '{"arch": "cnn", "input_shape": [1, 28, 28]}',
        '{"arch": "cnn", "input_shape": [1, 28, 28], "num_classes": 10, "extra": 1}',
        '{"arch": "cnn", "input_shape": "abc", "num_classes": 10}',
    ],
)
def test_invalid_spec_json_is_refused(text: str):
    with pytest.raises(InvalidInputError):
        ModelSpec.from_json(text)


# -- datasets ------------------------------------------------------------------------------------------------

EXPECTED_SHAPES = {"mnist5k": (1, 28, 28), "digits": (1, 8, 8)}


@pytest.fixture(scope="module", params=sorted(EXPECTED_SHAPES))
def loaded_twice(request: pytest.FixtureRequest) -> tuple[Dataset, Dataset]:
    """The registered loader called twice (not `load_dataset`, which is cached and would return one object)."""
    loader = DATASETS[request.param][1]
    return loader(), loader()


def test_datasets_are_registered():
    assert set(EXPECTED_SHAPES) <= set(DATASETS)


def test_dataset_tensors(loaded_twice: tuple[Dataset, Dataset]):
    ds, _ = loaded_twice
    assert ds.input_shape == EXPECTED_SHAPES[ds.name]
    assert ds.num_classes == 10
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.ndim == 4 and x.shape[1:] == ds.input_shape and x.shape[0] == y.shape[0]
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert float(x.max()) > 0.9  # scaled to [0, 1], not left at [0, 1/255]
        assert set(y.tolist()) == set(range(10))


def test_dataset_split_is_stratified(loaded_twice: tuple[Dataset, Dataset]):
    ds, _ = loaded_twice
    test_counts = torch.bincount(ds.y_test, minlength=10)
    total = torch.bincount(ds.y_train, minlength=10) + test_counts
    for count, n in zip(test_counts.tolist(), total.tolist(), strict=True):
        assert abs(count - 0.2 * n) <= 1
    assert sum(map(len, ds.test_indices_by_class().values())) == ds.y_test.shape[0]


def test_dataset_loading_is_deterministic(loaded_twice: tuple[Dataset, Dataset]):
    a, b = loaded_twice
    assert a is not b
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_load_dataset_is_cached_and_names_are_checked():
    assert load_dataset("digits") is load_dataset("digits")
    with pytest.raises(NotFoundError):
        load_dataset("nope")


def test_stratified_split_partitions_the_indices():
    labels = np.repeat(np.arange(4), [50, 31, 7, 1])  # uneven classes, one of them a single sample
    x = np.arange(labels.size)
    x_tr, y_tr, x_te, y_te = stratified_split(x, labels, 0.2, seed=1)

    assert len(np.intersect1d(x_tr, x_te)) == 0
    assert np.array_equal(np.sort(np.concatenate([x_tr, x_te])), x)
    assert np.array_equal(labels[x_tr], y_tr) and np.array_equal(labels[x_te], y_te)  # rows stay paired
    assert np.bincount(y_te, minlength=4).tolist() == [10, 6, 1, 0]  # a singleton class stays in training
    assert not np.array_equal(x_tr, np.sort(x_tr))  # training order is shuffled

    again = stratified_split(x, labels, 0.2, seed=1)
    other = stratified_split(x, labels, 0.2, seed=2)
    assert np.array_equal(again[0], x_tr) and np.array_equal(again[2], x_te)
    assert not np.array_equal(other[2], x_te)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_stratified_split_refuses_bad_fractions(fraction: float):
    with pytest.raises(InvalidInputError):
        stratified_split(np.arange(10), np.zeros(10, dtype=np.int64), fraction)


def test_dataset_refuses_inconsistent_tensors():
    good = {
        "name": "t",
        "x_train": torch.zeros(4, 1, 8, 8),
        "y_train": torch.zeros(4, dtype=torch.long),
        "x_test": torch.zeros(2, 1, 8, 8),
        "y_test": torch.zeros(2, dtype=torch.long),
        "class_names": ("a", "b"),
    }
    Dataset(**good)
    for change in (
        {"y_train": torch.zeros(3, dtype=torch.long)},
        {"x_test": torch.zeros(2, 1, 9, 9)},
        {"x_train": torch.zeros(4, 8, 8)},
        {"y_test": torch.zeros(2, dtype=torch.int32)},
        {"x_train": torch.zeros(4, 1, 8, 8, dtype=torch.float64)},
    ):
        with pytest.raises(InvalidInputError):
            Dataset(**{**good, **change})
