"""The user's own dataset: an .npz of arrays, or a zip of image folders (one folder per class).

Both arrive as zip archives, so both are opened in memory (nothing is ever extracted to disk) and every archive is
checked before anything is decompressed: the number of entries, the sizes the entries declare (Python's zipfile
never returns more bytes than declared, so the declared total bounds the memory), unsafe member names and
password protection. Arrays are read with `numpy.load(..., allow_pickle=False)` after their `.npy` headers have
been checked, so an object array (a pickle, which can run code) is refused before a byte of it is read. Every
image in a folder zip goes through the same safe loader as a single upload (`dlsec_core.data.images`).

The result is a `Dataset` with the same seeded, stratified train/test split as the built-in datasets.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections import Counter
from pathlib import PurePosixPath

import numpy as np

from dlsec_core.data.builtin import Dataset, make_dataset
from dlsec_core.data.images import (
    MAX_FILE_BYTES,
    _prepare,
    describe_content,
    open_image,
    read_image_size,
)
from dlsec_core.errors import InvalidInputError, UnsafeFileError

MAX_ARCHIVE_BYTES = 1024**3
"""Largest upload accepted (1 GiB), compressed."""

MAX_UNPACKED_BYTES = 1024**3
"""Largest total size the archive's entries may declare once decompressed (1 GiB): the zip-bomb guard."""

MAX_IMAGES = 200_000
"""Most images in one dataset."""

MAX_IMAGE_SIDE = 256
"""Longest image side in a dataset."""

MIN_IMAGE_SIDE = 8
"""Shortest image side in a dataset (the built-in `digits` are 8x8)."""

MAX_VALUES = 200_000_000
"""Most pixel values (N * C * H * W) in one dataset: 800 MB as float32, enough for CIFAR-10's 50,000 images."""

MAX_CLASSES = 1000
"""Most classes in one dataset."""

MAX_ZIP_ENTRIES = 50_000
"""Most entries (files and folders) in an image-folder zip."""

MAX_FOLDER_IMAGE_SIDE = 64
"""Images from a folder zip are shrunk to fit this square unless `image_size` says otherwise."""

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"})
"""Files in a folder zip that are read as images; anything else is skipped (and reported)."""

_NPZ_KEYS = ("x", "y", "class_names")
_MAX_NPZ_ENTRIES = 64
_MAX_CLASS_NAME = 100
_IGNORED_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
_SAVE_HINT = "numpy.savez_compressed('data.npz', x=x, y=y)"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _human(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def _some(names: list[str], k: int = 3) -> str:
    shown = ", ".join(repr(n) for n in names[:k])
    return shown + (f" and {len(names) - k} more" if len(names) > k else "")


# ---------------------------------------------------------------------------------------------- zip archives


def _open_zip(data: bytes, what: str) -> zipfile.ZipFile:
    """Size and content checks, then the archive opened in memory."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInputError(f"Expected the file's bytes, got {type(data).__name__}.")
    data = bytes(data)
    if len(data) == 0:
        raise InvalidInputError("The file is empty.")
    if len(data) > MAX_ARCHIVE_BYTES:
        raise InvalidInputError(
            f"The file is {len(data) / 2**30:.1f} GiB; uploads up to {MAX_ARCHIVE_BYTES / 2**30:.0f} GiB are accepted."
        )
    if data.startswith(b"\x80") or data.startswith(b"\x93NUMPY"):
        raise _pickle_or_npy(data)
    if not data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise InvalidInputError(f"This file is not {what} (it looks like {describe_content(data)}).")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidInputError(
            f"This file cannot be read as {what} (the zip archive may be truncated or corrupt)."
        ) from exc
    return zf


def _pickle_or_npy(data: bytes) -> InvalidInputError:
    if data.startswith(b"\x93NUMPY"):
        return InvalidInputError(
            f"This is a single .npy array, not an .npz archive: save images and labels together with {_SAVE_HINT}."
        )
    return UnsafeFileError(
        "This file looks like a Python pickle, which can run code when it is opened, so it was refused unread. "
        f"Save your arrays with {_SAVE_HINT} instead."
    )


def _check_entries(infos: list[zipfile.ZipInfo], max_entries: int) -> None:
    """Entry count, declared sizes and encryption, before anything is decompressed."""
    if len(infos) > max_entries:
        raise InvalidInputError(
            f"The archive has {len(infos):,} entries; at most {max_entries:,} are accepted."
        )
    total = sum(info.file_size for info in infos)
    if total > MAX_UNPACKED_BYTES:
        raise InvalidInputError(
            f"The archive would unpack to {_human(total)}; at most {_human(MAX_UNPACKED_BYTES)} is accepted "
            "(this protects the server from zip bombs)."
        )
    locked = [info.filename for info in infos if info.flag_bits & 0x1]
    if locked:
        raise InvalidInputError(
            f"The archive is password-protected ({_some(locked)}); upload it without a password."
        )


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    try:
        with zf.open(info) as f:
            blob = f.read(limit + 1)  # zipfile also stops at the declared size; this is a second fence
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
        raise InvalidInputError(
            f"{info.filename!r} is damaged inside the zip (it may be truncated or corrupt)."
        ) from exc
    if len(blob) > limit:
        raise InvalidInputError(f"{info.filename!r} is larger than {limit / 2**20:.0f} MiB.")
    return blob


# ---------------------------------------------------------------------------------------------- .npz arrays


def _npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a member's .npy header, without reading its data."""
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InvalidInputError(
            f"{key!r} in this .npz is not a readable NumPy array (it may be truncated or corrupt)."
        ) from exc
    if dtype.hasobject:
        raise UnsafeFileError(
            f"{key!r} is stored as Python objects (a pickle), which could run code when loaded, so it was refused "
            "unread. Save plain numeric arrays, and class names as a string array: numpy.array(names, dtype=str)."
        )
    if dtype.names is not None:
        raise InvalidInputError(
            f"{key!r} must be a plain array of numbers, not a structured array ({dtype})."
        )
    declared = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if declared > info.file_size:
        raise InvalidInputError(f"{key!r} in this .npz claims more data than it holds; the file is corrupt.")
    return tuple(int(s) for s in shape), dtype


def _check_x_shape(shape: tuple[int, ...]) -> None:
    if len(shape) == 4 and shape[1] not in (1, 3) and shape[3] in (1, 3):
        raise InvalidInputError(
            f"x has shape {shape}, which looks like channels-last (N, H, W, C); images must be (N, C, H, W). "
            "Convert with x.transpose(0, 3, 1, 2)."
        )
    if len(shape) not in (3, 4):
        raise InvalidInputError(
            f"x must be images shaped (N, H, W) or (N, C, H, W), got shape {shape} ({len(shape)} dimensions)."
        )
    if len(shape) == 4 and shape[1] not in (1, 3):
        raise InvalidInputError(
            f"x must have 1 (grayscale) or 3 (RGB) channels, got {shape[1]} in shape {shape}."
        )
    n, h, w = shape[0], shape[-2], shape[-1]
    if n == 0:
        raise InvalidInputError("x holds no images.")
    if n > MAX_IMAGES:
        raise InvalidInputError(f"x holds {n:,} images; at most {MAX_IMAGES:,} are accepted.")
    if max(h, w) > MAX_IMAGE_SIDE or min(h, w) < MIN_IMAGE_SIDE:
        raise InvalidInputError(
            f"Images are {h} x {w} pixels; sides from {MIN_IMAGE_SIDE} to {MAX_IMAGE_SIDE} are accepted."
        )
    values = int(np.prod(shape, dtype=np.int64))
    if values > MAX_VALUES:
        raise InvalidInputError(f"x holds {values:,} pixel values; at most {MAX_VALUES:,} are accepted.")


def _pixels(x: np.ndarray) -> np.ndarray:
    """Checked pixels -> float32 (N, C, H, W) in [0, 1]."""
    if x.dtype.kind not in "uif":
        raise InvalidInputError(
            f"x must hold numbers (uint8 pixels 0..255 or floats in [0, 1]), got dtype {x.dtype}."
        )
    if x.ndim == 3:
        x = x[:, None]  # (N, H, W) -> (N, 1, H, W)
    if x.dtype.kind == "f":
        finite = np.isfinite(x)
        if not finite.all():
            bad = np.flatnonzero(~finite.reshape(len(x), -1).all(axis=1))
            raise InvalidInputError(
                f"x contains {int((~finite).sum()):,} NaN or infinite values, in {_plural(len(bad), 'image')} "
                f"(the first is image {int(bad[0])}); fix or drop them."
            )
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            hint = (
                " They look like 0..255: divide by 255 or save them as uint8."
                if hi <= 255 and lo >= 0
                else ""
            )
            raise InvalidInputError(
                f"Float pixels must be in [0, 1], but x ranges from {lo:.4g} to {hi:.4g}.{hint}"
            )
        return np.clip(x, 0.0, 1.0).astype(np.float32)
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi > 255:
        raise InvalidInputError(f"Integer pixels must be in 0..255, but x ranges from {lo} to {hi}.")
    return x.astype(np.float32) / np.float32(255.0)


def _labels(y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Checked labels -> (int64 (N,), images per class)."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # (N, 1), as Keras ships CIFAR labels -> (N,)
    if y.ndim != 1:
        raise InvalidInputError(f"y must be one label per image, shaped (N,), got shape {y.shape}.")
    if y.dtype.kind not in "ui":
        whole = y.dtype.kind == "f" and bool(np.isfinite(y).all()) and bool((y == np.round(y)).all())
        hint = " They are whole numbers: convert with y.astype(int)." if whole else ""
        raise InvalidInputError(f"y must hold integer class labels 0..K-1, got dtype {y.dtype}.{hint}")
    if len(y) != n:
        raise InvalidInputError(
            f"x holds {n:,} images but y holds {len(y):,} labels; there must be one per image."
        )
    if int(y.min()) < 0:
        raise InvalidInputError(f"Labels must be 0..K-1, but y contains {int(y.min())}.")
    labels, counts = np.unique(y, return_counts=True)
    k, top = len(labels), int(labels[-1])
    if top != k - 1:
        # The first missing labels are all below k + 5 (k distinct values cannot fill 0..top when top >= k).
        missing = [int(v) for v in np.setdiff1d(np.arange(k + 5), labels) if v < top][:5]
        raise InvalidInputError(
            f"Labels must be 0..K-1 with every value used, but y goes up to {top} and "
            f"{', '.join(map(str, missing))}{'...' if top + 1 - k > len(missing) else ''} "
            f"{'is' if top + 1 - k == 1 else 'are'} missing. Renumber them, e.g. with "
            "numpy.unique(y, return_inverse=True)[1]."
        )
    if k < 2:
        raise InvalidInputError(f"Every image has label {top}; at least 2 classes are needed.")
    if k > MAX_CLASSES:
        raise InvalidInputError(f"y has {k:,} classes; at most {MAX_CLASSES:,} are accepted.")
    return y.astype(np.int64), counts


def _class_names(raw: np.ndarray | None, k: int) -> tuple[str, ...]:
    if raw is None:
        return tuple(str(i) for i in range(k))
    if raw.dtype.kind not in "US" or raw.ndim != 1:
        raise InvalidInputError(
            f"class_names must be a 1-D array of strings, got dtype {raw.dtype} and shape {raw.shape}."
        )
    names = tuple(
        (v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)).strip()
        for v in raw.tolist()
    )
    if len(names) != k:
        raise InvalidInputError(f"class_names has {len(names)} names but y has {k} classes.")
    if any(not n for n in names):
        raise InvalidInputError("class_names contains an empty name.")
    if any(len(n) > _MAX_CLASS_NAME for n in names):
        raise InvalidInputError(f"Class names may be at most {_MAX_CLASS_NAME} characters long.")
    dupes = sorted(n for n, c in Counter(names).items() if c > 1)
    if dupes:
        raise InvalidInputError(f"class_names repeats {_some(dupes)}; every class needs its own name.")
    return names


def _check_counts(counts: np.ndarray, names: tuple[str, ...]) -> None:
    small = [f"{names[i]!r} ({int(c)})" for i, c in enumerate(counts) if c < 2]
    if small:
        raise InvalidInputError(
            f"Every class needs at least 2 images (one to train on, one to test), but "
            f"{', '.join(small[:5])}{' ...' if len(small) > 5 else ''} {'has' if len(small) == 1 else 'have'} fewer."
        )


def load_npz(data: bytes, *, name: str = "upload") -> Dataset:
    """A dataset from an uploaded .npz file, checked without ever unpickling.

    The archive must hold `x`, the images, shaped (N, H, W) or (N, C, H, W) with C = 1 or 3, either uint8 in
    0..255 or floats in [0, 1]; and `y`, integer labels 0..K-1 shaped (N,). An optional `class_names` string
    array names the K classes. Write one with `numpy.savez_compressed("data.npz", x=x, y=y)`.

    Args:
        data: The file's bytes.
        name: The dataset's name.

    Returns:
        The dataset with the seeded, stratified 80/20 train/test split.

    Raises:
        UnsafeFileError: A pickle, or an array stored as Python objects.
        InvalidInputError: Anything else that cannot be used, with the offending value in the message.
    """
    with _open_zip(data, "an .npz file") as zf:
        infos = zf.infolist()
        _check_entries(infos, _MAX_NPZ_ENTRIES)
        members = {info.filename: info for info in infos}
        keys = sorted(m[:-4] for m in members if m.endswith(".npy"))
        missing = [k for k in ("x", "y") if f"{k}.npy" not in members]
        if missing:
            found = f"it holds {_some(keys, 6)}" if keys else "it holds no arrays"
            raise InvalidInputError(
                f"The .npz must contain arrays named 'x' (images) and 'y' (labels), but {found}. "
                f"Save it with {_SAVE_HINT}."
            )
        headers = {k: _npy_header(zf, members[f"{k}.npy"], k) for k in _NPZ_KEYS if f"{k}.npy" in members}
    _check_x_shape(headers["x"][0])

    try:
        with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as npz:
            x_raw, y_raw = npz["x"], npz["y"]
            names_raw = npz["class_names"] if "class_names" in headers else None
    except ValueError as exc:  # numpy refuses object arrays itself, too
        if "allow_pickle" in str(exc):
            raise UnsafeFileError("This .npz holds Python objects (a pickle) and was refused.") from exc
        raise InvalidInputError("This .npz could not be read (it may be truncated or corrupt).") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InvalidInputError("This .npz could not be read (it may be truncated or corrupt).") from exc

    x = _pixels(x_raw)
    y, counts = _labels(y_raw, len(x))
    class_names = _class_names(names_raw, len(counts))
    _check_counts(counts, class_names)
    c, h, w = x.shape[1:]
    description = f"Uploaded .npz: {len(x):,} images ({c}x{h}x{w}) in {len(class_names)} classes."
    return make_dataset(name, x, y, class_names, description=description)


# ---------------------------------------------------------------------------------------------- image folders


def _member_parts(filename: str) -> list[str] | None:
    """A member's path components, or None when the name could escape a folder (absolute, '..', drive, NUL)."""
    path = filename.replace("\\", "/")
    if "\x00" in path or path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None
    return parts


def _check_size_arg(image_size: tuple[int, int] | None, channels: int | None) -> None:
    if image_size is not None:
        try:
            h, w = (int(v) for v in image_size)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"image_size must be (height, width), got {image_size!r}.") from exc
        if min(h, w) < MIN_IMAGE_SIDE or max(h, w) > MAX_IMAGE_SIDE:
            raise InvalidInputError(
                f"image_size sides must be {MIN_IMAGE_SIDE}..{MAX_IMAGE_SIDE}, got {h} x {w}."
            )
    if channels not in (None, 1, 3):
        raise InvalidInputError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}.")


def _common_size(sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """The most common (width, height), shrunk to fit MAX_FOLDER_IMAGE_SIDE -> (height, width)."""
    (w, h), _ = Counter(sizes).most_common(1)[0]
    scale = min(1.0, MAX_FOLDER_IMAGE_SIDE / max(w, h))
    scale = max(scale, MIN_IMAGE_SIDE / min(w, h))  # tiny icons are enlarged to the smallest side accepted
    return (
        min(MAX_FOLDER_IMAGE_SIDE, max(MIN_IMAGE_SIDE, round(h * scale))),
        min(MAX_FOLDER_IMAGE_SIDE, max(MIN_IMAGE_SIDE, round(w * scale))),
    )


def load_image_folder_zip(
    data: bytes,
    *,
    name: str = "upload",
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
) -> Dataset:
    """A dataset from a zip with one folder of images per class (`cats/1.png`, `dogs/7.jpg`, ...).

    Class names are the sorted folder names; one wrapper folder around them (what zipping a folder gives) is
    fine. `__MACOSX/`, hidden files and files without an image extension are skipped; a file with an image
    extension that is not a readable image is an error naming it. Nothing is extracted to disk.

    Args:
        data: The zip file's bytes.
        name: The dataset's name.
        image_size: (height, width) every image is fitted into (aspect ratio kept, padded with the border
            colour). None: the most common size, shrunk to fit 64x64.
        channels: 1 (grayscale) or 3 (RGB). None: 1 when every image is gray, else 3.

    Returns:
        The dataset with the seeded, stratified 80/20 train/test split.

    Raises:
        InvalidInputError: An unsafe or oversized archive, a bad image (named), or too few classes or images.
    """
    _check_size_arg(image_size, channels)
    with _open_zip(data, "a zip archive") as zf:
        infos = zf.infolist()
        _check_entries(infos, MAX_ZIP_ENTRIES)
        unsafe = [info.filename for info in infos if _member_parts(info.filename) is None]
        if unsafe:
            raise InvalidInputError(
                f"The zip contains unsafe paths ({_some(unsafe)}) that point outside its folders; it was refused."
            )

        images: list[tuple[zipfile.ZipInfo, list[str]]] = []
        skipped: list[str] = []
        for info in infos:
            parts = _member_parts(info.filename) or []
            if info.is_dir() or not parts or any(p in _IGNORED_NAMES or p.startswith(".") for p in parts):
                continue
            if PurePosixPath(parts[-1]).suffix.lower() in IMAGE_EXTENSIONS:
                images.append((info, parts))
            else:
                skipped.append("/".join(parts))
        if not images:
            raise InvalidInputError(
                "The zip holds no images (looked for " + ", ".join(sorted(IMAGE_EXTENSIONS)) + " files)."
            )
        if len(images) > MAX_IMAGES:
            raise InvalidInputError(
                f"The zip holds {len(images):,} images; at most {MAX_IMAGES:,} are accepted."
            )
        big = [info.filename for info, _ in images if info.file_size > MAX_FILE_BYTES]
        if big:
            raise InvalidInputError(
                f"{_some(big)} {'is' if len(big) == 1 else 'are'} larger than {MAX_FILE_BYTES // 2**20} MiB."
            )

        # One or more wrapper folders around the class folders (zipping "pets/" gives "pets/cats/1.png").
        paths = [parts for _, parts in images]
        while all(len(p) >= 3 for p in paths) and len({p[0] for p in paths}) == 1:
            paths = [p[1:] for p in paths]
        loose = ["/".join(p) for p in paths if len(p) < 2]
        if loose:
            raise InvalidInputError(
                f"{_some(loose)} {'is' if len(loose) == 1 else 'are'} not inside a class folder. Put each class's "
                "images in a folder named after the class (cats/1.png, dogs/2.png) and zip those folders."
            )
        class_names = tuple(sorted({p[0] for p in paths}))
        if len(class_names) < 2:
            raise InvalidInputError(
                f"Found only one class folder ({class_names[0]!r}); at least 2 classes are needed."
            )
        if len(class_names) > MAX_CLASSES:
            raise InvalidInputError(
                f"Found {len(class_names):,} class folders; at most {MAX_CLASSES:,} are accepted."
            )
        index = {c: i for i, c in enumerate(class_names)}
        y = np.array([index[p[0]] for p in paths], dtype=np.int64)
        _check_counts(np.bincount(y, minlength=len(class_names)), class_names)

        # Pass 1: headers only, to choose the common size (and catch non-images before any decoding).
        if image_size is None:
            sizes = [
                read_image_size(_read_member(zf, info, MAX_FILE_BYTES), filename=info.filename)
                for info, _ in images
            ]
            h, w = _common_size(sizes)
        else:
            h, w = (int(v) for v in image_size)
        if len(images) * 3 * h * w > MAX_VALUES:
            raise InvalidInputError(
                f"{len(images):,} images of {h} x {w} pixels are too many values; choose a smaller image_size."
            )

        # Pass 2: decode one image at a time into the final (N, H, W, 3) uint8 stack.
        stack = np.empty((len(images), h, w, 3), dtype=np.uint8)
        for i, (info, _) in enumerate(images):
            im = open_image(_read_member(zf, info, MAX_FILE_BYTES), filename=info.filename)
            stack[i] = _prepare(im, 3, h, w, invert=False)

    if channels is None:
        # Gray content, whatever the files' modes: JPEG may wobble R, G, B by a level or two.
        gray = all(int(np.ptp(s.astype(np.int16), axis=-1).max()) <= 2 for s in stack)
        channels = 1 if gray else 3
    if channels == 1:
        lum = stack @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (N, H, W, 3) -> (N, H, W)
        x = (lum / np.float32(255.0))[:, None].astype(np.float32)  # -> (N, 1, H, W)
    else:
        x = stack.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)  # (N, H, W, 3) -> (N, 3, H, W)

    description = (
        f"Uploaded image folders: {len(x):,} images in {len(class_names)} classes, fitted into {h}x{w}, "
        f"{'grayscale' if channels == 1 else 'RGB'}."
    )
    if skipped:
        description += f" Skipped {_plural(len(skipped), 'non-image file')} ({_some(skipped)})."
    return make_dataset(name, x, y, class_names, description=description)
