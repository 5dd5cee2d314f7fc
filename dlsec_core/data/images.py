"""The user's own images, turned into model inputs safely.

An uploaded file is judged by its content, never by its name: the first bytes must be those of a PNG, JPEG, WEBP,
BMP or GIF. Pillow opens images lazily, so the dimensions in the header are checked *before* any pixel is decoded;
this refuses decompression bombs (a few kilobytes that claim 100 megapixels) without spending the memory. Pillow's
own guard backs ours up: its `MAX_IMAGE_PIXELS` is tightened, and its `DecompressionBombWarning` refuses a file
too (it is an error while decoding). Truncated files are refused (`ImageFile.LOAD_TRUNCATED_IMAGES` stays off).

Pictures become MNIST-like inputs the way MNIST itself was made (LeCun et al., 1998): light digit on a dark
background, the digit scaled into a 20x20 box and centred by its centre of mass in the 28x28 field.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps

from dlsec_core.errors import InvalidInputError

MAX_FILE_BYTES = 20 * 1024 * 1024
"""Largest image file accepted (20 MiB)."""

MAX_PIXELS = 40_000_000
"""Largest image accepted, in pixels (40 megapixels: more than any phone photo)."""

MAX_SIDE = 10_000
"""Longest side accepted, in pixels."""

MAX_INPUT_SIDE = 1024
"""Largest model input side `image_to_input` produces."""

MAX_PNG_SIDE = 4096
"""Largest side of a picture `tensor_to_png` writes."""

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
"""Pillow format names accepted, recognised by their magic bytes."""

# Pillow's own guard protects every other path in this process that opens an image: it warns above
# MAX_IMAGE_PIXELS and raises above twice that. Ours (MAX_PIXELS) is stricter and runs first.
if Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS > 2 * MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = 2 * MAX_PIXELS

_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}  # BITMAPCOREHEADER ... BITMAPV5HEADER
_MNIST_BOX = 20 / 28  # MNIST digits fit a 20x20 box inside the 28x28 field
_INK_THRESHOLD = 0.1  # a drawing pixel darker than this is background

# Everything Pillow's decoders are known to raise on a malformed file; MemoryError is deliberately not here.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    IndexError,
    KeyError,
    TypeError,
)


def sniff_image_format(data: bytes) -> str | None:
    """The image format the magic bytes announce, or None if they announce none of `ALLOWED_FORMATS`.

    Args:
        data: The file's content (only the first few dozen bytes are looked at).

    Returns:
        "PNG", "JPEG", "WEBP", "BMP", "GIF" or None.
    """
    head = bytes(data[:32])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    # "BM" alone is two letters of text; the DIB header size that follows the 14-byte file header is not.
    if head[:2] == b"BM" and len(head) >= 18 and struct.unpack("<I", head[14:18])[0] in _BMP_HEADER_SIZES:
        return "BMP"
    return None


def describe_content(data: bytes) -> str:
    """What a file looks like from its first bytes ("a PDF document", "a text file", ...), for error messages."""
    head = bytes(data[:512])
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "a zip archive"
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy array"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "a TIFF image, which is not supported"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"avif"):
        return "a HEIC/AVIF photo; export it as JPEG first"
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<svg", b"<?xml")):
        return "an SVG/XML drawing; vector images are not supported"
    if stripped.startswith((b"<!doctype html", b"<html")):
        return "a web page"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "some other kind of file"
    return "a text file"


def _subject(filename: str) -> str:
    return f"{filename!r}" if filename else "This file"


@contextmanager
def _strict_pillow() -> Iterator[None]:
    """Decompression-bomb warnings as errors and truncated images refused, for the duration of one decode."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _too_large(filename: str, found: str) -> InvalidInputError:
    return InvalidInputError(
        f"{_subject(filename)} is too large to open safely: {found}. The limit is "
        f"{MAX_PIXELS / 1e6:.0f} megapixels and {MAX_SIDE:,} pixels a side; shrink the picture first."
    )


def _open_lazy(data: bytes, filename: str = "") -> ImageFile.ImageFile:
    """Check the content and the header's dimensions; no pixel is decoded yet."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInputError(f"Expected the file's bytes, got {type(data).__name__}.")
    if len(data) == 0:
        raise InvalidInputError(f"{_subject(filename)} is empty.")
    if len(data) > MAX_FILE_BYTES:
        raise InvalidInputError(
            f"{_subject(filename)} is {len(data) / 2**20:.1f} MiB; images up to "
            f"{MAX_FILE_BYTES // 2**20} MiB are accepted."
        )
    fmt = sniff_image_format(data)
    if fmt is None:
        raise InvalidInputError(
            f"{_subject(filename)} is not a PNG or JPEG image (it looks like {describe_content(data)}). "
            "Upload a PNG, JPEG, WEBP, BMP or GIF file."
        )
    try:
        with warnings.catch_warnings(record=True) as caught:
            # Pillow's bomb warning is recorded here, not raised, so that the check below can name the size;
            # either way the image is refused before decoding. Above 2 x MAX_IMAGE_PIXELS, Pillow raises.
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(bytes(data)), formats=[fmt])
    except Image.DecompressionBombError as exc:
        count = re.search(r"\((\d+) pixels\)", str(exc))
        found = f"{int(count.group(1)):,} pixels" if count else "far more pixels than allowed"
        raise _too_large(filename, found) from exc
    except _DECODE_ERRORS as exc:
        raise InvalidInputError(
            f"{_subject(filename)} is not a readable image (it may be truncated or corrupt)."
        ) from exc
    bomb = any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught)
    width, height = im.size
    if bomb or width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
        im.close()
        raise _too_large(filename, f"{width:,} x {height:,} pixels ({width * height / 1e6:.1f} megapixels)")
    if width < 1 or height < 1:
        im.close()
        raise InvalidInputError(f"{_subject(filename)} has no pixels ({width} x {height}).")
    return im


def read_image_size(data: bytes, *, filename: str = "") -> tuple[int, int]:
    """An image's upright (width, height), read from its header with the same checks as `open_image`.

    Nothing is decoded, so this is cheap even for a large photo.

    Args:
        data: The file's bytes.
        filename: The name the user gave the file, used in error messages only.

    Returns:
        (width, height), swapped when the EXIF orientation says the picture is rotated by 90 degrees.

    Raises:
        InvalidInputError: As `open_image`, except for damage further into the file than the header.
    """
    im = _open_lazy(data, filename)
    try:
        width, height = im.size
        try:
            orientation = im.getexif().get(0x0112, 1)  # EXIF "Orientation"
        except _DECODE_ERRORS:
            orientation = 1  # unreadable EXIF: open_image will report it if it matters
        return (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    finally:
        im.close()


def open_image(data: bytes, *, filename: str = "") -> Image.Image:
    """Decode an uploaded image safely: content sniffed, size checked before decoding, EXIF rotation applied.

    Args:
        data: The file's bytes (PNG, JPEG, WEBP, BMP or GIF; only a GIF's or WEBP's first frame is read).
        filename: The name the user gave the file, used in error messages only.

    Returns:
        The decoded Pillow image, upright, in whatever mode the file uses.

    Raises:
        InvalidInputError: Empty, too big, not an allowed image format, a decompression bomb, or unreadable.
    """
    im = _open_lazy(data, filename)
    try:
        with _strict_pillow():
            im.load()  # the first frame only: Image.open leaves animations on frame 0
            upright = ImageOps.exif_transpose(im) or im  # a copy: in_place=False never returns None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_large(filename, "more pixels than its header announced") from exc
    except _DECODE_ERRORS as exc:
        raise InvalidInputError(
            f"{_subject(filename)} is not a readable image (it may be truncated or corrupt)."
        ) from exc
    finally:
        im.close()
    return upright


def _check_input_shape(input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in input_shape)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"input_shape must be (C, H, W), got {input_shape!r}.") from exc
    if c not in (1, 3):
        raise InvalidInputError(f"Images can become 1 (grayscale) or 3 (RGB) channels, not {c}.")
    if not (1 <= h <= MAX_INPUT_SIDE and 1 <= w <= MAX_INPUT_SIDE):
        raise InvalidInputError(f"input_shape sides must be 1..{MAX_INPUT_SIDE}, got {h} x {w}.")
    return c, h, w


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info


def _flatten(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> "L" or "RGB", transparency composited onto a background that contrasts with the content.

    White on black is chosen when the visible content is mostly light (a light stroke on a transparent canvas),
    black on white otherwise, so the drawing survives either way.
    """
    if im.mode.startswith("I") or im.mode == "F":
        # 16-bit and 32-bit grayscale (e.g. a 16-bit PNG): Pillow's convert("L") clips instead of scaling.
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max(initial=0.0) > 255 else 255.0
        if im.mode == "F":
            top = 1.0 if arr.max(initial=0.0) <= 1.0 else 255.0
        return Image.fromarray(np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8))
    if _has_alpha(im):
        rgba = im.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64) / 255.0
        if alpha.min(initial=1.0) >= 1.0:
            return rgba.convert("RGB")
        lum = np.asarray(rgba.convert("L"), dtype=np.float64) / 255.0
        weight = alpha.sum()
        content = float((lum * alpha).sum() / weight) if weight > 0 else 0.0
        background = (0, 0, 0, 255) if content > 0.5 else (255, 255, 255, 255)
        base = Image.new("RGBA", rgba.size, background)
        base.alpha_composite(rgba)
        return base.convert("RGB")
    if im.mode in ("1", "L"):
        return im.convert("L")
    return im.convert("RGB")  # P, CMYK, YCbCr, RGB, ...


def _border(arr: np.ndarray) -> np.ndarray:
    """The outermost ring of pixels: (H, W[, C]) -> (K[, C])."""
    if arr.shape[0] <= 2 or arr.shape[1] <= 2:
        return arr.reshape(-1, *arr.shape[2:])
    return np.concatenate([arr[0], arr[-1], arr[1:-1, 0], arr[1:-1, -1]])


def _fit(im: Image.Image, height: int, width: int) -> Image.Image:
    """Resize keeping the aspect ratio, then pad to (height, width) with the border's median colour."""
    if im.size == (width, height):
        return im
    arr = np.asarray(im)
    fill_arr = np.median(_border(arr), axis=0)
    fill: int | tuple[int, ...] = (
        int(fill_arr) if np.ndim(fill_arr) == 0 else tuple(int(v) for v in np.atleast_1d(fill_arr))
    )
    src_w, src_h = im.size
    scale = min(width / src_w, height / src_h)
    new_w = min(width, max(1, round(src_w * scale)))
    new_h = min(height, max(1, round(src_h * scale)))
    # LANCZOS antialiases when shrinking; reducing_gap first box-reduces big photos, much faster at no visible cost.
    resized = im.resize((new_w, new_h), Image.Resampling.LANCZOS, reducing_gap=3.0)
    canvas = Image.new(im.mode, (width, height), fill)
    canvas.paste(resized, ((width - new_w) // 2, (height - new_h) // 2))
    return canvas


def _prepare(im: Image.Image, channels: int, height: int, width: int, invert: bool | None) -> np.ndarray:
    """Decoded image -> uint8 array (H, W) for one channel or (H, W, 3) for three."""
    flat = _flatten(im)
    flat = flat.convert("L") if channels == 1 else flat.convert("RGB")
    if invert is None:
        # MNIST is white on black: a bright border means a dark digit on paper, which must be flipped.
        invert = channels == 1 and float(_border(np.asarray(flat)).mean()) > 127.5
    if invert:
        flat = ImageOps.invert(flat)
    return np.asarray(_fit(flat, height, width), dtype=np.uint8)


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    """uint8 (H, W) or (H, W, C) -> float32 (1, C, H, W) in [0, 1]."""
    chw = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)
    return torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32) / 255.0).unsqueeze(0)


def image_to_input(
    data: bytes,
    input_shape: tuple[int, int, int],
    *,
    filename: str = "",
    invert: bool | None = None,
) -> torch.Tensor:
    """An uploaded picture as one model input.

    The image is decoded safely (see `open_image`), transparency is flattened, it is converted to grayscale or
    RGB, fitted into (H, W) keeping its aspect ratio (padding with its border colour) and scaled to [0, 1].

    Args:
        data: The file's bytes: PNG, JPEG, WEBP, BMP or GIF (first frame).
        input_shape: The model's (C, H, W); C is 1 (grayscale) or 3 (RGB).
        filename: The name the user gave the file, used in error messages only.
        invert: Swap dark and light. None (the default) inverts a grayscale picture whose border is bright, so a
            dark digit on white paper becomes MNIST's light digit on black; colour pictures are left alone.

    Returns:
        A float32 tensor (1, C, H, W) with values in [0, 1].

    Raises:
        InvalidInputError: The file is not an acceptable image, or input_shape is not (1 or 3, H, W).
    """
    c, h, w = _check_input_shape(input_shape)
    im = open_image(data, filename=filename)
    return _to_tensor(_prepare(im, c, h, w, invert))


def drawing_to_input(rgba: np.ndarray, input_shape: tuple[int, int, int]) -> torch.Tensor:
    """A drawing-canvas picture as an MNIST-like input.

    The ink is the alpha channel when the canvas's border is transparent, else the brightness (inverted when the
    background is light). As in MNIST, the ink's bounding box is scaled to fit a 20/28 box, and the result is shifted so its
    centre of mass sits in the middle of the field.

    Args:
        rgba: The canvas, uint8 (H, W, 4) RGBA; (H, W, 3) RGB and (H, W) grayscale are accepted too.
        input_shape: The model's (C, H, W); for C = 3 the grayscale result is repeated.

    Returns:
        A float32 tensor (1, C, H, W) in [0, 1]: light ink on a black background.

    Raises:
        InvalidInputError: Nothing is drawn, or the array is not an image canvas.
    """
    c, h, w = _check_input_shape(input_shape)
    arr = np.asarray(rgba)
    if arr.dtype != np.uint8:
        raise InvalidInputError(f"The drawing must be a uint8 array, got {arr.dtype}.")
    if (
        arr.ndim == 3
        and arr.shape[2] == 4
        and arr.shape[0] * arr.shape[1]
        and _border(arr[..., 3]).mean() < 128
    ):
        ink = arr[..., 3].astype(np.float32) / 255.0  # transparent canvas: the alpha channel is the ink
    elif (arr.ndim == 3 and arr.shape[2] in (3, 4)) or arr.ndim == 2:
        gray = arr if arr.ndim == 2 else arr[..., :3] @ np.array([0.299, 0.587, 0.114])
        ink = np.asarray(gray, dtype=np.float32) / 255.0
        if ink.size and float(_border(ink).mean()) > 0.5:
            ink = 1.0 - ink  # dark strokes on a light canvas
    else:
        raise InvalidInputError(f"The drawing must be (H, W, 4) RGBA, got shape {arr.shape}.")
    mask = ink > _INK_THRESHOLD
    if not mask.any():
        raise InvalidInputError("Draw a digit first.")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # the ink's bounding box

    box = max(1, round(min(h, w) * _MNIST_BOX))
    scale = box / max(crop.shape)
    new_h, new_w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    small = Image.fromarray(np.rint(crop * 255).astype(np.uint8)).resize(
        (new_w, new_h), Image.Resampling.LANCZOS
    )
    digit = np.asarray(small, dtype=np.float32) / 255.0

    # Place so the centre of mass is in the middle, but never push ink off the field.
    ys, xs = np.mgrid[0:new_h, 0:new_w]
    mass = float(digit.sum()) or 1.0
    com_y, com_x = float((ys * digit).sum()) / mass, float((xs * digit).sum()) / mass
    top = int(np.clip(round((h - 1) / 2 - com_y), 0, h - new_h))
    left = int(np.clip(round((w - 1) / 2 - com_x), 0, w - new_w))
    field = np.zeros((h, w), dtype=np.float32)
    field[top : top + new_h, left : left + new_w] = digit
    return torch.from_numpy(field).expand(c, h, w).unsqueeze(0).contiguous()


def tensor_to_png(x: torch.Tensor, scale: int = 1) -> bytes:
    """An image tensor as PNG bytes, for displays and the CLI.

    Args:
        x: (C, H, W) or (1, C, H, W) with C in {1, 3}; values are clipped to [0, 1].
        scale: Integer upscaling factor (nearest neighbour, so pixels stay crisp).

    Returns:
        The PNG file's bytes (mode "L" for one channel, "RGB" for three).

    Raises:
        InvalidInputError: A shape that is not one image, or a scale below 1 or making the picture too big.
    """
    if not isinstance(x, torch.Tensor):
        raise InvalidInputError(f"Expected a tensor, got {type(x).__name__}.")
    t = x.detach().to("cpu", torch.float32)
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3 or t.shape[0] not in (1, 3):
        raise InvalidInputError(f"Expected one image (C, H, W) with C = 1 or 3, got shape {tuple(x.shape)}.")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise InvalidInputError(f"scale must be a whole number >= 1, got {scale!r}.")
    _, h, w = t.shape
    if max(h, w) * scale > MAX_PNG_SIDE:
        raise InvalidInputError(f"{w} x {h} scaled by {scale} exceeds {MAX_PNG_SIDE} pixels a side.")
    arr = torch.nan_to_num(t, nan=0.0).clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).numpy()
    if scale > 1:
        arr = arr.repeat(scale, axis=1).repeat(scale, axis=2)  # (C, H, W) -> (C, H*s, W*s)
    im = Image.fromarray(arr[0]) if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
