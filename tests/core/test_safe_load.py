"""Safe model import: every bad upload is refused with a sentence, nothing runs, nothing is stored."""

from __future__ import annotations

import io
import json
import pickle
import pickletools
import random
import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save

import dlsec_core.safe_load as safe_load
from dlsec_core.errors import DlsecError, InvalidInputError, UnsafeFileError
from dlsec_core.models import ModelSpec, build_model
from dlsec_core.safe_load import (
    build_checked,
    load_state_dict,
    load_upload,
    read_metadata,
    spec_from_upload,
)
from dlsec_core.store import Store

SPEC = ModelSpec(
    arch="mlp",
    input_shape=(1, 8, 8),
    num_classes=3,
    hparams={"hidden": 16, "depth": 1},
    mean=(0.5,),
    std=(0.25,),
)


def state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return dict(build_model(SPEC).state_dict())


def st_bytes(tensors: dict[str, torch.Tensor] | None = None, metadata: dict[str, str] | None = None) -> bytes:
    return save(state() if tensors is None else tensors, metadata=metadata)


def probe_logits(sd: dict[str, torch.Tensor]) -> torch.Tensor:
    model = build_model(SPEC).eval()
    model.load_state_dict(sd)
    with torch.no_grad():
        return model(torch.rand(2, *SPEC.input_shape, generator=torch.Generator().manual_seed(1)))


class Evil:
    """Unpickling this creates the marker file: proof that code ran."""

    marker = ""

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


def evil_pickle(marker: Path, protocol: int) -> bytes:
    evil = Evil()
    evil.marker = str(marker)
    return pickle.dumps({"0.mean": evil}, protocol=protocol)


@pytest.mark.parametrize("protocol", range(6))
def test_evil_pickle_really_calls_open(tmp_path: Path, protocol: int) -> None:
    """The fixture is a real exploit: its opcodes import `open` and call it (checked without unpickling)."""
    data = evil_pickle(tmp_path / "MARKER", protocol)
    ops = [op.name for op, _, _ in pickletools.genops(data)]
    assert "REDUCE" in ops and (b"open" in data) and str(tmp_path / "MARKER").encode() in data


def torch_save_bytes(**kwargs: bool) -> bytes:
    buf = io.BytesIO()
    torch.save(state(), buf, **kwargs)
    return buf.getvalue()


def torchscript_bytes() -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():  # TorchScript is deprecated; users still have such files
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(build_model(SPEC).eval(), torch.zeros(1, *SPEC.input_shape)), buf)
    return buf.getvalue()


def npy_bytes() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros(3, dtype=np.float32))
    return buf.getvalue()


def with_tensor(key: str, value: torch.Tensor) -> bytes:
    sd = state()
    sd[key] = value
    return st_bytes(sd)


def without(key: str) -> bytes:
    sd = state()
    del sd[key]
    return st_bytes(sd)


def nan_at(key: str, value: float) -> bytes:
    sd = state()
    t = sd[key].clone()
    t.view(-1)[3] = value
    sd[key] = t
    return st_bytes(sd)


def lying_header() -> bytes:
    good = st_bytes()
    return struct.pack("<Q", len(good) * 10) + good[8:]


def non_json_header() -> bytes:
    return struct.pack("<Q", 6) + b"{nope}" + b"\x00" * 16


# (case id, filename, data builder (marker path -> bytes), error type)
Case = tuple[str, str, Callable[[Path], bytes], type[DlsecError]]
BAD_UPLOADS: list[Case] = [
    *[
        (f"ext{ext}", f"model{ext}", lambda m: st_bytes(), UnsafeFileError)
        for ext in (".pt", ".pth", ".pkl", ".bin")
    ],
    ("ext.PT-uppercase", "MODEL.PT", lambda m: st_bytes(), UnsafeFileError),
    *[
        (f"pickle-p{p}-as-pt", "model.pt", lambda m, p=p: evil_pickle(m, p), UnsafeFileError)
        for p in (2, 3, 4, 5)
    ],
    *[
        (f"pickle-p{p}-renamed", "model.safetensors", lambda m, p=p: evil_pickle(m, p), UnsafeFileError)
        for p in (2, 3, 4, 5)
    ],
    *[
        (
            f"pickle-p{p}-text-protocol",
            "model.safetensors",
            lambda m, p=p: evil_pickle(m, p),
            InvalidInputError,
        )
        for p in (0, 1)
    ],
    ("torch-save-zip-renamed", "model.safetensors", lambda m: torch_save_bytes(), UnsafeFileError),
    (
        "torch-save-legacy-renamed",
        "model.safetensors",
        lambda m: torch_save_bytes(_use_new_zipfile_serialization=False),
        UnsafeFileError,
    ),
    ("torchscript-renamed", "weights.safetensors", lambda m: torchscript_bytes(), UnsafeFileError),
    ("npy-renamed", "model.safetensors", lambda m: npy_bytes(), UnsafeFileError),
    ("truncated", "model.safetensors", lambda m: st_bytes()[:-37], InvalidInputError),
    ("truncated-in-header", "model.safetensors", lambda m: st_bytes()[:40], InvalidInputError),
    ("random-bytes", "model.safetensors", lambda m: random.Random(0).randbytes(4096), InvalidInputError),
    ("empty", "model.safetensors", lambda m: b"", InvalidInputError),
    ("three-bytes", "model.safetensors", lambda m: b"abc", InvalidInputError),
    ("header-longer-than-file", "model.safetensors", lambda m: lying_header(), InvalidInputError),
    ("header-not-json", "model.safetensors", lambda m: non_json_header(), InvalidInputError),
    (
        "unexpected-key",
        "model.safetensors",
        lambda m: with_tensor("extra.weight", torch.zeros(2)),
        InvalidInputError,
    ),
    ("missing-key", "model.safetensors", lambda m: without("1.1.weight"), InvalidInputError),
    (
        "wrong-shape",
        "model.safetensors",
        lambda m: with_tensor("1.1.weight", torch.zeros(16, 63)),
        InvalidInputError,
    ),
    (
        "int-dtype",
        "model.safetensors",
        lambda m: with_tensor("1.1.weight", torch.zeros(16, 64, dtype=torch.int64)),
        InvalidInputError,
    ),
    (
        "bool-dtype",
        "model.safetensors",
        lambda m: with_tensor("1.3.bias", torch.zeros(3, dtype=torch.bool)),
        InvalidInputError,
    ),
    ("nan", "model.safetensors", lambda m: nan_at("1.1.weight", float("nan")), InvalidInputError),
    ("inf", "model.safetensors", lambda m: nan_at("1.3.weight", float("-inf")), InvalidInputError),
    (
        "float64-overflows-float32",
        "model.safetensors",
        lambda m: with_tensor("1.3.bias", torch.full((3,), 1e300, dtype=torch.float64)),
        InvalidInputError,
    ),
    (
        "wrong-normalization",
        "model.safetensors",
        lambda m: with_tensor("0.std", torch.full((1, 1, 1, 1), 0.3)),
        InvalidInputError,
    ),
]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "home")
    torch.manual_seed(99)
    s.save_model(build_model(SPEC), SPEC, name="existing", dataset="d")
    return s


def snapshot(store: Store) -> tuple[list[str], set[str]]:
    return [c.id for c in store.list_models()], {p.name for p in store.models_dir.iterdir()}


@pytest.mark.parametrize(
    ("filename", "make", "error"), [c[1:] for c in BAD_UPLOADS], ids=[c[0] for c in BAD_UPLOADS]
)
def test_bad_upload_is_refused_and_nothing_is_stored(
    store: Store, tmp_path: Path, filename: str, make: Callable[[Path], bytes], error: type[DlsecError]
) -> None:
    marker = tmp_path / "MARKER"
    data = make(marker)
    before = snapshot(store)
    with pytest.raises(error) as err:
        store.import_model(data, SPEC, name="upload", filename=filename)
    message = str(err.value)
    assert message.strip() and message[0].isupper()
    if error is UnsafeFileError:
        assert "arbitrary code" in message and "save_file(model.state_dict()" in message
    # Also without a spec: the file must not be opened to look for one either.
    with pytest.raises(DlsecError):
        store.import_model(data, name="upload", filename=filename)
    assert not marker.exists(), "unpickling happened"
    assert snapshot(store) == before


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("truncated", "not a valid .safetensors"),
        ("empty", "empty"),
        ("header-longer-than-file", "header claims"),
        ("unexpected-key", "'extra.weight'"),
        ("missing-key", "'1.1.weight'"),
        ("wrong-shape", "(16, 63)"),
        ("int-dtype", "int64"),
        ("nan", "'1.1.weight'"),
        ("inf", "'1.3.weight'"),
        ("wrong-normalization", "std"),
    ],
)
def test_messages_name_the_problem(tmp_path: Path, case: str, expected: str) -> None:
    make = {c[0]: c[2] for c in BAD_UPLOADS}[case]
    with pytest.raises(InvalidInputError) as err:
        load_state_dict(make(tmp_path / "m"), SPEC)
    assert expected in str(err.value)


def test_valid_file_loads_and_float_dtypes_are_cast(tmp_path: Path) -> None:
    ref = probe_logits(state())
    for dtype in (torch.float32, torch.float64):
        sd = {k: v.to(dtype) for k, v in state().items()}
        out = load_state_dict(st_bytes(sd), SPEC, filename="model.safetensors")
        assert all(v.dtype == torch.float32 and v.device.type == "cpu" for v in out.values())
        assert torch.equal(probe_logits(out), ref)
    for dtype in (torch.float16, torch.bfloat16):
        out = load_state_dict(st_bytes({k: v.to(dtype) for k, v in state().items()}), SPEC)
        assert all(v.dtype == torch.float32 for v in out.values())
        assert torch.allclose(probe_logits(out), ref, atol=0.1)


def test_normalization_buffers_may_be_omitted() -> None:
    sd = state()
    body = {k: v for k, v in sd.items() if not k.startswith("0.")}
    out = load_state_dict(st_bytes(body), SPEC)
    assert torch.equal(out["0.std"], sd["0.std"]) and torch.equal(probe_logits(out), probe_logits(sd))


@pytest.mark.parametrize("first_two", [b"\x80\x02", b"\x80\x05"])
def test_safetensors_header_starting_like_a_pickle_is_accepted(first_two: bytes) -> None:
    """A header of 640 (0x280) bytes starts with b'\\x80\\x02': the sniffing must not call it a pickle."""
    target = struct.unpack("<H", first_two)[0]
    base = struct.unpack("<Q", st_bytes(metadata={"pad": ""})[:8])[0]
    for pad in range(max(0, target - base - 16), target - base + 16):
        data = st_bytes(metadata={"pad": "x" * pad})
        if struct.unpack("<Q", data[:8])[0] == target:
            break
    else:
        pytest.fail("could not build the header length")
    assert data[:2] == first_two
    assert torch.equal(probe_logits(load_state_dict(data, SPEC)), probe_logits(state()))


def test_read_metadata() -> None:
    assert read_metadata(st_bytes(metadata={"dlsec_spec": SPEC.to_json(), "k": "v"}))["k"] == "v"
    assert read_metadata(st_bytes()) == {}
    with pytest.raises(InvalidInputError, match="not a valid"):
        read_metadata(b"\x00" * 4)
    with pytest.raises(InvalidInputError, match="header claims"):
        read_metadata(struct.pack("<Q", 2**63) + b"{}")
    bad_meta = json.dumps({"__metadata__": {"k": 1}}).encode()
    with pytest.raises(InvalidInputError, match="strings"):
        read_metadata(struct.pack("<Q", len(bad_meta)) + bad_meta)


def test_spec_from_metadata_or_error() -> None:
    spec, sd = load_upload(st_bytes(metadata={"dlsec_spec": SPEC.to_json()}))
    assert spec == SPEC and torch.equal(probe_logits(sd), probe_logits(state()))
    with pytest.raises(InvalidInputError, match="Upload the model's spec JSON too"):
        load_upload(st_bytes())
    with pytest.raises(InvalidInputError, match="stored inside the file"):
        load_upload(st_bytes(metadata={"dlsec_spec": '{"arch": "resnet9000"}'}))
    # An explicit spec wins over the metadata.
    assert load_upload(st_bytes(metadata={"dlsec_spec": "garbage"}), SPEC)[0] == SPEC


def test_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safe_load, "MAX_UPLOAD_BYTES", 1024)
    data = st_bytes()
    assert len(data) > 1024
    with pytest.raises(InvalidInputError, match="limit"):
        load_state_dict(data, SPEC)
    with pytest.raises(InvalidInputError, match="limit"):
        load_upload(data)


def test_not_bytes_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="str"):
        load_state_dict("model.safetensors", SPEC)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("upload", "expected"),
    [
        ("{not json", "not valid JSON"),
        (b"\xff\xfe{\x00", "not UTF-8"),
        ('{"arch": "resnet9000", "input_shape": [1, 8, 8], "num_classes": 3}', "Unknown architecture"),
        ('{"arch": "mlp"}', "lacks"),
        ("[1, 2]", "JSON object"),
        ("", "empty"),
        (b"   ", "empty"),
        ("[" * 50_000, "nested too deeply"),
        (b" " * 100_000, "64 KiB"),
    ],
)
def test_bad_spec_uploads(upload: str | bytes, expected: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        spec_from_upload(upload)
    assert expected in str(err.value)


def test_spec_upload_accepts_bytes_with_bom() -> None:
    assert spec_from_upload(b"\xef\xbb\xbf" + SPEC.to_json().encode()) == SPEC


@pytest.mark.parametrize("hparams", [{"hidden": 10**9}, {"hidden": -3}, {"hidden": "wide"}, {"depth": 10**5}])
def test_untrusted_spec_hyperparameters_are_refused_by_the_spec(hparams: dict) -> None:
    with pytest.raises(InvalidInputError, match="hidden|depth"):
        ModelSpec(arch="mlp", input_shape=(1, 8, 8), num_classes=3, hparams=hparams)


def test_oversized_models_are_refused_before_allocating(store: Store) -> None:
    # Every hyperparameter within its bounds, yet 16 layers of 4096x4096 is ~270M parameters.
    spec = ModelSpec(arch="mlp", input_shape=(1, 8, 8), num_classes=3, hparams={"hidden": 4096, "depth": 16})
    with pytest.raises(InvalidInputError, match="parameters"):
        build_checked(spec)
    before = snapshot(store)
    with pytest.raises(InvalidInputError, match="parameters"):
        store.import_model(st_bytes(), spec, name="big")
    assert snapshot(store) == before


def test_non_finite_output_is_refused() -> None:
    sd = state()
    sd["1.3.weight"] = torch.full_like(sd["1.3.weight"], 3e38)
    sd["1.1.bias"] = torch.full_like(sd["1.1.bias"], 1e3)
    with pytest.raises(InvalidInputError, match="not finite"):
        load_state_dict(st_bytes(sd), SPEC)


@pytest.mark.parametrize("with_spec", [True, False], ids=["with-spec", "spec-from-file"])
def test_a_text_file_is_called_not_safetensors(with_spec: bool) -> None:
    """A text file uploaded as weights: its first 8 bytes read as a length of about 7.9e18; the message must say
    what the file is not (and what it looks like), not quote that number."""
    text = b"my model: a small CNN trained for 10 epochs\nlayers: conv, conv, fc, fc\n"
    with pytest.raises(InvalidInputError) as err:
        load_upload(text, SPEC if with_spec else None)
    message = str(err.value)
    assert message.startswith("This is not a .safetensors file")
    assert "text file" in message and "'my model: a small CNN" in message
    assert "header claims" not in message and f"{struct.unpack('<Q', text[:8])[0]:,}" not in message
    assert "save_file(model.state_dict()" in message  # how to make one
    # Binary junk is not called text; a real but truncated file still says it is truncated.
    junk = bytes(range(256))
    with pytest.raises(InvalidInputError, match="not a .safetensors file") as err:
        load_upload(junk, SPEC)
    assert "text file" not in str(err.value)
    with pytest.raises(InvalidInputError, match="header claims"):
        load_upload(lying_header(), SPEC)
