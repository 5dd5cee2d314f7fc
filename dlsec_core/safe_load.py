"""Loading a user's model file without ever running code from it.

Pickle-based formats (what `torch.save` writes, TorchScript archives, `.pkl`, `.npy` with objects) can execute
arbitrary code while being read, so they are refused by name and by content before anything is parsed, with a
two-line recipe to convert them. Only safetensors files are read: a JSON header plus raw tensor bytes, with no code
path at all (see https://huggingface.co/docs/safetensors). Every tensor is then checked against the model that
the spec describes (names, shapes, dtypes, finite values) and the model is run once on a blank input.

Nothing in this project unpickles: the security here does not depend on the sniffing being perfect, only on the
fact that the one reader used is safetensors; the sniffing gives the user the right explanation.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _load_safetensors
from torch import nn

from dlsec_core.errors import InvalidInputError, UnsafeFileError
from dlsec_core.models.spec import ModelSpec, build_model, count_parameters

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
"""Largest model file accepted (200 MiB), so one upload cannot exhaust the server's memory."""

MAX_SPEC_BYTES = 64 * 1024
"""Largest spec JSON accepted; a real spec is a few hundred bytes."""

MAX_PARAMETERS = MAX_UPLOAD_BYTES // 4
"""Largest model a spec may describe (float32 parameters that fit in `MAX_UPLOAD_BYTES`)."""

METADATA_SPEC_KEY = "dlsec_spec"
"""Key in the safetensors `__metadata__` that holds the model's spec as JSON."""

_MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit on the JSON header

UNSAFE_EXTENSIONS = frozenset(
    {
        ".pt",
        ".pth",
        ".pt2",
        ".ptl",
        ".pkl",
        ".pickle",
        ".bin",
        ".ckpt",
        ".jit",
        ".torchscript",
        ".tar",
        ".zip",
        ".npy",
        ".npz",
        ".joblib",
        ".dill",
        ".mar",
    }
)
"""File extensions of formats that may contain a pickle."""

CONVERT_HINT = (
    "Convert it on your own computer with two lines of Python:\n"
    "    from safetensors.torch import save_file\n"
    '    save_file(model.state_dict(), "model.safetensors")'
)

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _unsafe_message(what: str) -> str:
    return (
        f"{what} Files like this are loaded by unpickling, and unpickling a file can run arbitrary code on the "
        f"server, so they are refused without being opened. Upload a .safetensors file instead. {CONVERT_HINT}"
    )


def _invalid_message(detail: str) -> str:
    return f"This is not a valid .safetensors file (truncated or corrupt): {detail}. {CONVERT_HINT}"


def _not_safetensors_message(data: bytes) -> str:
    """For a file that does not even start like safetensors (8 bytes of header length, then '{'): say so, and
    what it looks like instead, rather than quoting the nonsense length its first 8 bytes would give."""
    text = ""
    for cut in range(4):  # the first 200 bytes may end inside a multi-byte character
        try:
            text = data[: 200 - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    looks = ""
    if text and all(ch.isprintable() or ch in "\t\r\n" for ch in text):
        first = " ".join(text.split())[:40]
        looks = f" It looks like a text file (it starts with {first!r})."
    return (
        "This is not a .safetensors file: a safetensors file starts with 8 bytes giving the length of a JSON "
        f"header, then the header itself, and this one does not.{looks} Save a model's weights as one on your own "
        f"computer with two lines of Python:\n{CONVERT_HINT.split(chr(10), 1)[1]}"
    )


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInputError(f"Expected the file's bytes, got a {type(data).__name__}.")
    return bytes(data)


def _looks_like_safetensors(data: bytes) -> bool:
    """True when the first bytes could start a safetensors file (u64 header length that fits, then '{')."""
    if len(data) < 10:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    return n <= len(data) - 8 and data[8:9] == b"{"


def _sniff_unsafe(data: bytes) -> str | None:
    """Why `data` looks like a pickle-based format, or None.

    A safetensors file starts with its header length as a little-endian u64, which may itself begin with byte
    0x80 (a 640-byte header does), so a plausible safetensors start is never called a pickle.
    """
    if _looks_like_safetensors(data):
        return None
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return f"This file is a Python pickle (protocol {data[1]}), the format of torch.save's legacy files."
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "This file is a zip archive, the format torch.save and TorchScript use (it contains a pickle)."
    if data[257:262] == b"ustar":
        return "This file is a tar archive, the format of very old torch.save files (it contains a pickle)."
    if data[:6] == b"\x93NUMPY":
        return "This file is a NumPy .npy array, which may contain pickled Python objects."
    return None


def check_not_unsafe(data: bytes, filename: str = "model.safetensors") -> None:
    """Refuse pickle-based files by extension and by content, before anything is parsed.

    Args:
        data: the uploaded file's bytes.
        filename: the name it was uploaded under (only its extension is used).

    Raises:
        UnsafeFileError: the name or the first bytes say the file is a pickle, zip, tar or .npy file.
        InvalidInputError: `data` is not bytes.
    """
    raw = _as_bytes(data)
    suffix = Path(str(filename)).suffix.lower()
    if suffix in UNSAFE_EXTENSIONS:
        raise UnsafeFileError(_unsafe_message(f"The file {Path(str(filename)).name!r} is a {suffix} file."))
    reason = _sniff_unsafe(raw)
    if reason is not None:
        raise UnsafeFileError(_unsafe_message(reason))


def _parse_header(data: bytes) -> dict[str, Any]:
    """The safetensors JSON header: 8 bytes little-endian u64 length N, then N bytes of JSON."""
    if len(data) == 0:
        raise InvalidInputError(_invalid_message("the file is empty"))
    if len(data) < 8:
        raise InvalidInputError(_invalid_message(f"the file has only {len(data)} bytes"))
    (n,) = struct.unpack("<Q", data[:8])
    if data[8:9] != b"{":  # every safetensors header is a JSON object right after its 8-byte length
        raise InvalidInputError(_not_safetensors_message(data))
    if n > len(data) - 8 or n > _MAX_HEADER_BYTES:
        raise InvalidInputError(
            _invalid_message(
                f"the header claims {n:,} bytes but the file has only {len(data) - 8:,} after it"
            )
        )
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise InvalidInputError(_invalid_message(f"the header is not JSON ({err})")) from err
    if not isinstance(header, dict):
        raise InvalidInputError(_invalid_message("the header is not a JSON object"))
    return header


def read_metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` string map of a safetensors file (empty when it has none).

    Args:
        data: the file's bytes.

    Returns:
        The metadata, e.g. `{"dlsec_spec": "{...}"}` for files this project exported.

    Raises:
        InvalidInputError: the bytes are not a safetensors header or the metadata is not a string map.
    """
    header = _parse_header(_as_bytes(data))
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise InvalidInputError(_invalid_message("its __metadata__ is not a map of strings to strings"))
    return dict(meta)


def spec_from_upload(text_or_bytes: str | bytes) -> ModelSpec:
    """Parse an uploaded model spec (JSON, UTF-8).

    Args:
        text_or_bytes: the spec file's text or raw bytes.

    Returns:
        The validated spec.

    Raises:
        InvalidInputError: not UTF-8, too large, not JSON, or not a valid spec (e.g. unknown architecture).
    """
    if isinstance(text_or_bytes, bytes | bytearray | memoryview):
        raw = bytes(text_or_bytes)
        if len(raw) > MAX_SPEC_BYTES:
            raise InvalidInputError(f"The spec file has {len(raw):,} bytes; a model spec is under 64 KiB.")
        try:
            text = raw.decode("utf-8-sig")  # tolerate the BOM some Windows editors add
        except UnicodeDecodeError as err:
            raise InvalidInputError(
                f"The spec file is not UTF-8 text (byte {err.start} cannot be decoded); upload the .spec.json file."
            ) from err
    elif isinstance(text_or_bytes, str):
        text = text_or_bytes
        if len(text) > MAX_SPEC_BYTES:
            raise InvalidInputError(f"The spec has {len(text):,} characters; a model spec is under 64 KiB.")
    else:
        raise InvalidInputError(f"Expected the spec's text or bytes, got a {type(text_or_bytes).__name__}.")
    if not text.strip():
        raise InvalidInputError("The spec file is empty.")
    try:
        return ModelSpec.from_json(text)
    except RecursionError as err:
        raise InvalidInputError("The spec is nested too deeply to be a model spec.") from err


def spec_from_metadata(data: bytes) -> ModelSpec | None:
    """The spec stored in a safetensors file's metadata by `Store.export_model`, or None when absent.

    Raises:
        InvalidInputError: the header is not valid, or the stored spec is not a valid spec.
    """
    text = read_metadata(data).get(METADATA_SPEC_KEY)
    if text is None:
        return None
    try:
        return spec_from_upload(text)
    except InvalidInputError as err:
        raise InvalidInputError(f"The spec stored inside the file is not usable: {err}") from err


def build_checked(spec: ModelSpec) -> nn.Module:
    """`build_model(spec)` on CPU, after checking on the meta device that it builds and is not too large.

    An uploaded spec is untrusted: hyperparameters such as `hidden=10**9` would otherwise allocate terabytes.

    Raises:
        InvalidInputError: the hyperparameters cannot build the architecture, or the model is too large.
    """
    try:
        with torch.device("meta"):  # shapes only, no memory
            n_params = count_parameters(build_model(spec))
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:
        raise InvalidInputError(
            f"The spec's hyperparameters {spec.hparams} cannot build a {spec.arch!r} model: {err}"
        ) from err
    if n_params > MAX_PARAMETERS:
        raise InvalidInputError(
            f"The spec describes a model with {n_params:,} parameters; the limit is {MAX_PARAMETERS:,}."
        )
    return build_model(spec)


def _few(names: list[str], k: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:k])
    return shown + (f" and {len(names) - k} more" if len(names) > k else "")


def _check_tensors(
    got: dict[str, torch.Tensor], model: nn.Module, spec: ModelSpec
) -> dict[str, torch.Tensor]:
    """Match `got` against `model`'s state dict; return it complete, float32 where the model is float, on CPU."""
    expected = model.state_dict()
    norm_keys = {"0.mean", "0.std"}  # the Normalize layer's buffers: derived from the spec, may be omitted
    missing = sorted(set(expected) - set(got) - norm_keys)
    unexpected = sorted(set(got) - set(expected))
    if missing:
        raise InvalidInputError(
            f"The file lacks {len(missing)} tensor(s) a {spec.arch!r} model needs: {_few(missing)}. "
            "Check that the spec describes the model that was saved."
        )
    if unexpected:
        raise InvalidInputError(
            f"The file has {len(unexpected)} tensor(s) a {spec.arch!r} model does not have: {_few(unexpected)}. "
            "Check that the spec describes the model that was saved."
        )
    out: dict[str, torch.Tensor] = {}
    for key, ref in expected.items():
        if key not in got:
            out[key] = ref.detach().clone()
            continue
        t = got[key]
        if tuple(t.shape) != tuple(ref.shape):
            raise InvalidInputError(
                f"Tensor {key!r} has shape {tuple(t.shape)}, but the spec's model expects {tuple(ref.shape)}."
            )
        if ref.is_floating_point():
            if t.dtype not in _FLOAT_DTYPES:
                raise InvalidInputError(
                    f"Tensor {key!r} has dtype {str(t.dtype).removeprefix('torch.')}; "
                    "expected floating point numbers (float32, float16, bfloat16 or float64)."
                )
            t = t.to(device="cpu", dtype=torch.float32)
            if not bool(torch.isfinite(t).all()):
                raise InvalidInputError(
                    f"Tensor {key!r} contains NaN or infinite values (after conversion to float32)."
                )
        elif t.dtype != ref.dtype:
            raise InvalidInputError(
                f"Tensor {key!r} has dtype {str(t.dtype).removeprefix('torch.')}, "
                f"expected {str(ref.dtype).removeprefix('torch.')}."
            )
        out[key] = t.detach().to("cpu").contiguous()
    for key in norm_keys & set(got):
        if not torch.allclose(out[key], expected[key], rtol=1e-4, atol=1e-6):
            raise InvalidInputError(
                f"The file's normalization {key.removeprefix('0.')} {out[key].flatten().tolist()} differs from "
                f"the spec's {expected[key].flatten().tolist()}; fix the spec's mean/std."
            )
    return out


def load_state_dict(
    data: bytes, spec: ModelSpec, *, filename: str = "model.safetensors"
) -> dict[str, torch.Tensor]:
    """Read and validate an uploaded safetensors file against the model `spec` describes.

    Checks, in order: the name and first bytes are not a pickle-based format, the size limit, the safetensors
    structure, tensor names, shapes, dtypes (float16/bfloat16/float64 are converted to float32), finite values,
    and finally one forward pass on a blank input that must give finite logits of shape (1, num_classes). The
    Normalize layer's buffers (`0.mean`, `0.std`) may be omitted; they are then taken from the spec.

    Args:
        data: the file's bytes.
        spec: the architecture the weights belong to.
        filename: the uploaded name; `.pt`, `.pth`, `.pkl`, `.bin`... are refused.

    Returns:
        The complete state dict, float32 tensors on CPU, ready for `build_model(spec).load_state_dict`.

    Raises:
        UnsafeFileError: a pickle-based file (by name or content), refused unopened.
        InvalidInputError: anything else that makes the file unusable, with a sentence saying what.
    """
    raw = _as_bytes(data)
    check_not_unsafe(raw, filename)
    if len(raw) > MAX_UPLOAD_BYTES:
        raise InvalidInputError(
            f"The file has {len(raw) / 2**20:.0f} MiB; the limit is {MAX_UPLOAD_BYTES // 2**20} MiB."
        )
    _parse_header(raw)  # clear messages for empty, short, or lying headers
    try:
        tensors = _load_safetensors(raw)
    except (SafetensorError, ValueError, TypeError, RuntimeError, OverflowError, MemoryError) as err:
        raise InvalidInputError(_invalid_message(str(err))) from err
    model = build_checked(spec)
    state = _check_tensors(tensors, model, spec)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # shapes and names were checked; this is a safety net
        raise InvalidInputError(f"The weights do not fit the spec's model: {err}") from err
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, *spec.input_shape))
    if tuple(out.shape) != (1, spec.num_classes):
        raise InvalidInputError(
            f"The model outputs shape {tuple(out.shape)} for one image; expected (1, {spec.num_classes})."
        )
    if not bool(torch.isfinite(out).all()):
        raise InvalidInputError(
            "The model's output on a blank image is not finite (NaN or Inf); the weights are unusable."
        )
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def load_upload(
    data: bytes, spec: ModelSpec | None = None, *, filename: str = "model.safetensors"
) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
    """Validate an uploaded model file; the spec comes from the argument or else from the file's metadata.

    Args:
        data: the file's bytes.
        spec: the model's spec; when None, the `dlsec_spec` entry of the file's metadata is used.
        filename: the uploaded name (see `load_state_dict`).

    Returns:
        The spec and the validated float32 CPU state dict.

    Raises:
        UnsafeFileError: a pickle-based file.
        InvalidInputError: an unusable file, or no spec given and none inside the file.
    """
    raw = _as_bytes(data)
    check_not_unsafe(raw, filename)  # before even the header is read
    if spec is None:
        if len(raw) > MAX_UPLOAD_BYTES:
            raise InvalidInputError(
                f"The file has {len(raw) / 2**20:.0f} MiB; the limit is {MAX_UPLOAD_BYTES // 2**20} MiB."
            )
        spec = spec_from_metadata(raw)
        if spec is None:
            raise InvalidInputError(
                "This file does not say which architecture it belongs to. Upload the model's spec JSON too."
            )
    return spec, load_state_dict(raw, spec, filename=filename)
