"""Uploaded pictures and canvas drawings as model inputs: formats, safety limits, MNIST-like preparation."""

from __future__ import annotations

import io
import resource
import struct
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFile

from dlsec_core.data.images import (
    MAX_FILE_BYTES,
    drawing_to_input,
    image_to_input,
    open_image,
    read_image_size,
    sniff_image_format,
    tensor_to_png,
)
from dlsec_core.errors import InvalidInputError

MNIST = (1, 28, 28)


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _digit(dark_on_light: bool = True, size: int = 100) -> Image.Image:
    """A "1"-like bar: black on white (paper) or white on black (MNIST)."""
    bg, ink = (255, 0) if dark_on_light else (0, 255)
    im = Image.new("L", (size, size), bg)
    ImageDraw.Draw(im).rectangle((size * 45 // 100, size // 5, size * 55 // 100, size * 4 // 5), fill=ink)
    return im


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header_only(width: int, height: int, bit_depth: int = 8, color_type: int = 2) -> bytes:
    """A tiny PNG whose valid IHDR claims width x height; the IDAT is one row, so decoding would fail anyway."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _png_1bit_full(width: int, height: int) -> bytes:
    """A complete, valid 1-bit PNG of width x height (all black), a few kilobytes: a real decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any pixel data gets decoded."""

    def boom(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", boom)


# ------------------------------------------------------------------------------------------ formats


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_every_allowed_format_becomes_an_mnist_input(fmt: str) -> None:
    data = _encode(_digit(dark_on_light=False).convert("RGB"), fmt)
    assert sniff_image_format(data) == fmt
    x = image_to_input(data, MNIST)
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float(x[0, 0, 14, 14]) > 0.7 and float(x[0, 0, 1, 1]) < 0.1  # light bar, dark corner


def test_rgb_picture_to_gray_and_gray_to_rgb() -> None:
    rgb = Image.new("RGB", (40, 40), (255, 0, 0))
    gray = image_to_input(_encode(rgb, "PNG"), MNIST, invert=False)
    assert gray.shape == (1, 1, 28, 28)
    assert torch.allclose(gray, torch.full_like(gray, 76 / 255), atol=2 / 255)  # ITU-R 601 luma of pure red
    back = image_to_input(_encode(Image.new("L", (40, 40), 200), "PNG"), (3, 32, 32))
    assert back.shape == (1, 3, 32, 32)
    assert torch.allclose(back, torch.full_like(back, 200 / 255), atol=1 / 255)


def test_transparent_png_keeps_its_drawing() -> None:
    for stroke in ((0, 0, 0, 255), (255, 255, 255, 255)):  # dark or light ink on a transparent canvas
        im = Image.new("RGBA", (60, 60), (0, 0, 0, 0))
        ImageDraw.Draw(im).ellipse((15, 10, 45, 50), outline=stroke, width=6)
        x = image_to_input(_encode(im, "PNG"), MNIST)
        assert float(x[0, 0, 0, 0]) < 0.05, stroke  # background dark after flattening (and inverting)
        assert float(x.max()) > 0.8, stroke  # the ring survived


def test_auto_invert_gives_mnist_polarity() -> None:
    paper = image_to_input(_encode(_digit(dark_on_light=True), "PNG"), MNIST)
    mnist = image_to_input(_encode(_digit(dark_on_light=False), "PNG"), MNIST)
    assert float(paper[0, 0, 0].mean()) < 0.05 and float(paper[0, 0, 14, 14]) > 0.7
    assert torch.allclose(paper, mnist, atol=2 / 255)
    kept = image_to_input(_encode(_digit(dark_on_light=True), "PNG"), MNIST, invert=False)
    assert float(kept[0, 0, 0].mean()) > 0.95
    assert float(image_to_input(_encode(_digit(False), "PNG"), MNIST, invert=True)[0, 0, 0, 0]) > 0.95


def test_non_square_picture_is_padded_not_stretched() -> None:
    im = Image.new("L", (200, 50), 0)
    ImageDraw.Draw(im).rectangle((4, 4, 195, 45), fill=255)  # a bright 4:1 bar with a thin dark frame
    x = image_to_input(_encode(im, "PNG"), MNIST, invert=False)[0, 0]
    rows = (x > 0.5).any(dim=1).nonzero().flatten()
    assert 5 <= len(rows) <= 8  # about 28 / 4 rows tall, centred; the rest is padding
    assert abs(float(rows.float().mean()) - 13.5) <= 1.0
    assert float(x[0].max()) < 0.1  # padding took the border colour


def test_photo_sized_jpeg_is_accepted_and_resized_quickly() -> None:
    red = np.broadcast_to(np.linspace(0, 255, 3000).astype(np.uint8), (2000, 3000))
    green = np.broadcast_to(np.linspace(0, 255, 2000).astype(np.uint8)[:, None], (2000, 3000))
    arr = np.stack([red, green, np.full((2000, 3000), 128, np.uint8)], axis=-1)
    data = _encode(Image.fromarray(arr), "JPEG", quality=85)
    assert read_image_size(data) == (3000, 2000)
    start = time.perf_counter()
    x = image_to_input(data, (3, 32, 32))
    assert time.perf_counter() - start < 2.0
    assert x.shape == (1, 3, 32, 32)
    assert float(x[0, 0, 16, 2]) < float(x[0, 0, 16, 29])  # red grows left to right


def test_exif_rotation_is_applied() -> None:
    im = Image.new("RGB", (40, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = _encode(im, "JPEG", exif=exif)
    assert read_image_size(data) == (20, 40)
    assert open_image(data).size == (20, 40)


def test_gif_first_frame_only() -> None:
    frames = [Image.new("L", (30, 30), 255), Image.new("L", (30, 30), 0)]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    x = image_to_input(data, MNIST, invert=False)
    assert float(x.min()) > 0.95


# ------------------------------------------------------------------------------------------ safety


@pytest.mark.parametrize(
    ("width", "height", "bit_depth", "color_type"),
    [
        (10_000, 10_000, 8, 2),  # 100 MP RGB: above Pillow's own warning threshold
        (8_000, 6_000, 8, 2),  # 48 MP: only our limit catches it
        (20_000, 100, 8, 0),  # 2 MP but a side over 10,000
        (60_000, 60_000, 8, 6),  # 3.6 GP: Pillow's DecompressionBombError path
    ],
)
def test_image_bombs_are_refused_from_the_header(
    no_decoding: None, width: int, height: int, bit_depth: int, color_type: int
) -> None:
    data = _png_header_only(width, height, bit_depth, color_type)
    assert len(data) < 200
    start = time.perf_counter()
    with pytest.raises(InvalidInputError, match="too large") as err:
        image_to_input(data, MNIST)
    assert time.perf_counter() - start < 2.0
    assert "40 megapixels" in str(err.value)
    if width * height < 160_000_000:
        assert f"{width:,} x {height:,}" in str(err.value)


def test_real_1bit_bomb_refused_fast_without_memory(no_decoding: None) -> None:
    data = _png_1bit_full(10_000, 10_000)  # 100 MP, a valid file of ~15 kB
    assert len(data) < 50_000
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    with pytest.raises(InvalidInputError, match=r"10,000 x 10,000 pixels"):
        image_to_input(data, MNIST)
    assert time.perf_counter() - start < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 50 * 1024  # < 50 MiB more


def test_pillow_settings_are_left_strict() -> None:
    with pytest.raises(InvalidInputError):
        image_to_input(_png_header_only(10_000, 10_000), MNIST)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS <= 89_478_485


def test_truncated_png_and_jpeg_are_refused() -> None:
    arr = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # noise: nothing compresses
    for fmt in ("PNG", "JPEG"):
        data = _encode(Image.fromarray(arr), fmt)
        with pytest.raises(InvalidInputError, match="truncated or corrupt"):
            image_to_input(data[: len(data) // 2], MNIST, filename="half." + fmt.lower())
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize(
    ("data", "looks_like"),
    [
        (b"hello, this is a text file\n" * 20, "a text file"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "a PDF document"),
        (b"PK\x03\x04\x14\x00\x00\x00" + bytes(40), "a zip archive"),
        (bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)), "some other kind of file"),
        (b"BMW is not a bitmap" * 3, "a text file"),
    ],
)
def test_non_images_are_refused_by_content(data: bytes, looks_like: str) -> None:
    with pytest.raises(InvalidInputError, match="not a PNG or JPEG") as err:
        image_to_input(data, MNIST, filename="digit.png")  # the name says PNG; the content decides
    assert looks_like in str(err.value) and "'digit.png'" in str(err.value)


def test_empty_and_oversized_files_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        image_to_input(b"", MNIST)
    with pytest.raises(InvalidInputError, match="MiB"):
        image_to_input(b"\x89PNG\r\n\x1a\n" + bytes(MAX_FILE_BYTES), MNIST)


def test_png_magic_with_garbage_is_unreadable() -> None:
    with pytest.raises(InvalidInputError, match="not a readable image"):
        image_to_input(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, MNIST)


def test_bad_input_shape() -> None:
    data = _encode(_digit(), "PNG")
    with pytest.raises(InvalidInputError, match="channels"):
        image_to_input(data, (2, 28, 28))
    with pytest.raises(InvalidInputError, match="sides"):
        image_to_input(data, (1, 0, 28))


# ------------------------------------------------------------------------------------------ drawings


def _canvas(opaque: bool = True, size: int = 280) -> np.ndarray:
    """A (size, size, 4) canvas; opaque = white strokes on black, else black strokes on transparent."""
    arr = np.zeros((size, size, 4), dtype=np.uint8)
    if opaque:
        arr[..., 3] = 255
    return arr


def _centre_of_mass(x: torch.Tensor) -> tuple[float, float]:
    img = x[0, 0]
    ys, xs = torch.meshgrid(torch.arange(img.shape[0]), torch.arange(img.shape[1]), indexing="ij")
    return float((ys * img).sum() / img.sum()), float((xs * img).sum() / img.sum())


def test_drawing_is_cropped_scaled_and_centred() -> None:
    arr = _canvas(opaque=True)
    arr[20:120, 30:50, :3] = 255  # a short thick bar in the top-left corner
    x = drawing_to_input(arr, MNIST)
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32
    cy, cx = _centre_of_mass(x)
    assert abs(cy - 13.5) <= 1.0 and abs(cx - 13.5) <= 1.0
    rows = (x[0, 0] > 0.5).any(dim=1).nonzero().flatten()
    assert 18 <= len(rows) <= 21  # the ink's long side fills MNIST's 20-pixel box
    assert float(x[0, 0, 0].max()) == 0.0  # margin stays dark


def test_transparent_canvas_uses_alpha_as_ink() -> None:
    arr = _canvas(opaque=False)
    arr[150:260, 200:230] = (0, 0, 0, 255)  # black ink, opaque only where drawn
    x = drawing_to_input(arr, (3, 28, 28))
    assert x.shape == (1, 3, 28, 28)
    assert float(x.max()) > 0.9
    cy, cx = _centre_of_mass(x[:, :1])
    assert abs(cy - 13.5) <= 1.0 and abs(cx - 13.5) <= 1.0


def test_dark_ink_on_white_canvas_is_inverted() -> None:
    arr = np.full((100, 100, 4), 255, dtype=np.uint8)
    arr[30:70, 45:55, :3] = 0
    x = drawing_to_input(arr, MNIST)
    assert float(x[0, 0, 0, 0]) == 0.0 and float(x.max()) > 0.9


def test_empty_drawing_is_refused() -> None:
    for arr in (_canvas(opaque=True), _canvas(opaque=False), np.full((50, 50, 4), 255, dtype=np.uint8)):
        with pytest.raises(InvalidInputError, match="Draw a digit first"):
            drawing_to_input(arr, MNIST)


def test_drawing_must_be_a_uint8_image() -> None:
    with pytest.raises(InvalidInputError, match="uint8"):
        drawing_to_input(np.zeros((28, 28, 4), dtype=np.float32), MNIST)
    with pytest.raises(InvalidInputError, match="shape"):
        drawing_to_input(np.zeros((28, 28, 5), dtype=np.uint8), MNIST)


# ------------------------------------------------------------------------------------------ tensor_to_png


@pytest.mark.parametrize(("shape", "mode"), [((1, 5, 7), "L"), ((3, 5, 7), "RGB"), ((1, 3, 5, 7), "RGB")])
def test_tensor_to_png_round_trip(shape: tuple[int, ...], mode: str) -> None:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    data = tensor_to_png(x, scale=4)
    im = Image.open(io.BytesIO(data))
    assert im.format == "PNG" and im.mode == mode and im.size == (28, 20)
    arr = np.asarray(im, dtype=np.float32) / 255.0
    chw = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    expected = x.reshape(-1, 5, 7).repeat_interleave(4, dim=1).repeat_interleave(4, dim=2).numpy()
    assert np.abs(chw - expected).max() <= 0.5 / 255 + 1e-6
    # and back through the upload path, at the original size
    back = image_to_input(data, (shape[-3], 5, 7), invert=False)
    assert back.shape == (1, shape[-3], 5, 7)


def test_tensor_to_png_clips_and_validates() -> None:
    x = torch.tensor([[[-1.0, 2.0, float("nan")]]])
    arr = np.asarray(Image.open(io.BytesIO(tensor_to_png(x))))
    assert arr.tolist() == [[0, 255, 0]]
    with pytest.raises(InvalidInputError, match="scale"):
        tensor_to_png(x, scale=0)
    with pytest.raises(InvalidInputError, match="one image"):
        tensor_to_png(torch.rand(2, 1, 5, 5))
    with pytest.raises(InvalidInputError, match="exceeds"):
        tensor_to_png(torch.rand(1, 28, 28), scale=1000)
