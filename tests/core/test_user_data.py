"""The user's own datasets: .npz arrays and zips of image folders, validated and never unpickled."""

from __future__ import annotations

import io
import pathlib
import zipfile
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from dlsec_core.data import user
from dlsec_core.data.builtin import Dataset
from dlsec_core.data.images import MAX_FILE_BYTES
from dlsec_core.data.user import load_image_folder_zip, load_npz
from dlsec_core.errors import InvalidInputError, UnsafeFileError

RNG = np.random.default_rng(0)


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    kwds: dict[str, Any] = arrays  # numpy's stubs mistake ** for its allow_pickle flag
    np.savez_compressed(buf, **kwds)
    return buf.getvalue()


def _xy(n_per_class: int = 5, k: int = 3, shape: tuple[int, ...] = (12, 10)) -> tuple[np.ndarray, np.ndarray]:
    x = RNG.integers(0, 256, (n_per_class * k, *shape), dtype=np.uint8)
    y = np.repeat(np.arange(k), n_per_class)
    return x, y


def _all_x(ds: Dataset) -> torch.Tensor:
    return torch.cat([ds.x_train, ds.x_test])


class _Marker:
    """Unpickling this creates a file: proof that code from the upload ran."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (pathlib.Path.write_text, (self.path, "pwned"))


# ------------------------------------------------------------------------------------------ .npz


def test_uint8_npz_becomes_a_split_dataset() -> None:
    x, y = _xy()
    ds = load_npz(_npz(x=x, y=y, class_names=np.array(["cat", "dog", "eel"])), name="pets")
    assert ds.name == "pets" and ds.class_names == ("cat", "dog", "eel")
    assert ds.input_shape == (1, 12, 10)
    assert len(ds.y_train) + len(ds.y_test) == 15
    assert sorted(ds.y_test.tolist()) == [0, 1, 2]  # stratified: one test image per class of 5
    assert ds.x_train.dtype == torch.float32 and float(_all_x(ds).max()) <= 1.0
    # pixel values are x / 255, whatever the order the split chose
    assert sorted((_all_x(ds) * 255).round().flatten().tolist()) == sorted(x.astype(float).flatten().tolist())


def test_float_nchw_npz_and_default_class_names() -> None:
    x, y = _xy(k=2, shape=(1, 9, 9))
    buf = io.BytesIO()
    np.savez(buf, x=x.astype(np.float32) / 255, y=y.astype(np.int32))  # uncompressed, as np.savez writes
    ds = load_npz(buf.getvalue())
    assert ds.input_shape == (1, 9, 9) and ds.class_names == ("0", "1")
    rgb = load_npz(_npz(x=RNG.random((6, 3, 8, 8)), y=np.array([0, 0, 1, 1, 0, 1])))
    assert rgb.input_shape == (3, 8, 8)


def test_keras_style_column_labels_are_accepted() -> None:
    x, y = _xy(k=2)
    assert load_npz(_npz(x=x, y=y[:, None])).num_classes == 2


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.zeros((6, 64), np.uint8), r"\(N, H, W\) or \(N, C, H, W\).*\(6, 64\)"),
        (np.zeros((6, 2, 8, 8), np.uint8), "1 \\(grayscale\\) or 3 \\(RGB\\) channels, got 2"),
        (np.zeros((6, 8, 8, 3), np.uint8), "channels-last"),
        (np.zeros((6, 300, 8), np.uint8), "300 x 8"),
        (np.zeros((6, 4, 4), np.uint8), "4 x 4"),
        (np.zeros((6, 8, 8), np.complex64), "dtype complex64"),
    ],
)
def test_wrong_image_shapes_and_types(x: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        load_npz(_npz(x=x, y=np.array([0, 0, 0, 1, 1, 1])))


def test_image_and_label_counts_must_match() -> None:
    x, y = _xy(k=2)
    with pytest.raises(InvalidInputError, match="10 images but y holds 9 labels"):
        load_npz(_npz(x=x, y=y[:9]))


def test_floats_out_of_range_name_the_range() -> None:
    x, y = _xy(k=2)
    with pytest.raises(InvalidInputError, match=r"from 0 to 255.*divide by 255"):
        load_npz(_npz(x=x.astype(np.float32), y=y))
    with pytest.raises(InvalidInputError, match=r"from -0.5 to 1"):
        load_npz(_npz(x=np.concatenate([[np.full((12, 10), -0.5)], x[1:] / 255]), y=y))
    xi = x.astype(np.int16)
    xi[0, 0, 0], xi[1, 0, 0] = -3, 300
    with pytest.raises(InvalidInputError, match=r"0\.\.255.*from -3 to 300"):
        load_npz(_npz(x=xi, y=y))


def test_nan_and_inf_are_refused() -> None:
    x, y = _xy(k=2)
    xf = x.astype(np.float64) / 255
    xf[3, 0, 0], xf[7, 1, 1] = np.nan, np.inf
    with pytest.raises(
        InvalidInputError, match=r"2 NaN or infinite values, in 2 images \(the first is image 3\)"
    ):
        load_npz(_npz(x=xf, y=y))


def test_object_arrays_are_refused_and_never_unpickled(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "marker"
    x, y = _xy(k=2)
    evil = np.array([_Marker(marker)] * len(y), dtype=object)
    # sanity: the payload really would run if someone unpickled it
    np.load(io.BytesIO(_npz(x=x, y=evil)), allow_pickle=True)["y"]
    assert marker.exists()
    marker.unlink()

    for arrays in ({"x": x, "y": evil}, {"x": evil, "y": y}, {"x": x, "y": y, "class_names": evil[:2]}):
        with pytest.raises(UnsafeFileError, match="pickle"):
            load_npz(_npz(**arrays))
        assert not marker.exists()


def test_a_bare_pickle_or_npy_is_refused_with_advice(tmp_path: pathlib.Path) -> None:
    import pickle

    marker = tmp_path / "marker"
    with pytest.raises(UnsafeFileError, match="pickle"):
        load_npz(pickle.dumps({"x": _Marker(marker)}))
    assert not marker.exists()
    buf = io.BytesIO()
    np.save(buf, np.zeros((3, 8, 8)))
    with pytest.raises(InvalidInputError, match="single .npy array"):
        load_npz(buf.getvalue())


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (np.array([0, 0, 2, 2, 5, 5]), r"up to 5 and 1, 3, 4 are missing"),
        (np.array([1, 1, 2, 2, 3, 3]), r"up to 3 and 0 is missing"),
        (np.array([0, 0, -1, 1, 1, 1]), "contains -1"),
        (np.array([0.0, 0, 1, 1, 1, 1]), r"dtype float64.*y.astype\(int\)"),
        (np.array([0.5, 0, 1, 1, 1, 1]), "dtype float64\\.$"),
        (np.array([3, 3, 3, 3, 3, 3]) * 0, "Every image has label 0; at least 2 classes"),
        (np.array([0, 1, 1, 1, 1, 1]), r"'0' \(1\) has fewer"),
        (np.zeros((6, 2), np.int64), r"shaped \(N,\), got shape \(6, 2\)"),
    ],
)
def test_bad_labels_name_the_problem(y: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        load_npz(_npz(x=np.zeros((6, 8, 8), np.uint8), y=y))


def test_class_names_are_checked() -> None:
    x, y = _xy(k=2)
    with pytest.raises(InvalidInputError, match="3 names but y has 2 classes"):
        load_npz(_npz(x=x, y=y, class_names=np.array(["a", "b", "c"])))
    with pytest.raises(InvalidInputError, match="repeats 'a'"):
        load_npz(_npz(x=x, y=y, class_names=np.array(["a", "a"])))
    with pytest.raises(InvalidInputError, match="strings"):
        load_npz(_npz(x=x, y=y, class_names=np.array([1, 2])))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"x,y\n1,2\n", "not an .npz file \\(it looks like a text file\\)"),
        (b"%PDF-1.4\n", "a PDF document"),
        (b"PK\x03\x04" + bytes(60), "cannot be read as an .npz file \\(the zip archive may be truncated"),
    ],
)
def test_not_an_npz(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        load_npz(data)


def test_npz_missing_keys_and_truncated() -> None:
    x, y = _xy(k=2)
    with pytest.raises(InvalidInputError, match="named 'x'.*'y'.*holds 'images', 'labels'"):
        load_npz(_npz(images=x, labels=y))
    data = _npz(x=x, y=y)
    with pytest.raises(InvalidInputError, match="truncated or corrupt"):
        load_npz(data[: len(data) - 30])


def _zeros_zip(names: list[str], size: int) -> bytes:
    """A zip whose members are `size` zero bytes each (deflate shrinks them about 1000x)."""
    return _zip(dict.fromkeys(names, bytes(size)))


def test_npz_zip_bomb_is_refused_before_decompressing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(user, "MAX_UNPACKED_BYTES", 2**20)  # 1 MiB stands in for 1 GiB, to stay fast
    data = _zeros_zip(["x.npy", "y.npy"], 2**20)
    assert len(data) < 10_000
    with pytest.raises(InvalidInputError, match=r"would unpack to 2\.0 MiB; at most 1\.0 MiB.*zip bombs"):
        load_npz(data)


def _lie_about_sizes(data: bytes, declared: int) -> bytes:
    """Rewrite every central-directory entry to declare `declared` bytes uncompressed."""
    out = bytearray(data)
    pos = out.find(b"PK\x01\x02")
    while pos != -1:
        out[pos + 24 : pos + 28] = declared.to_bytes(4, "little")  # "uncompressed size" field
        pos = out.find(b"PK\x01\x02", pos + 4)
    return bytes(out)


def test_declared_sizes_bound_what_is_decompressed() -> None:
    x, y = _xy(k=2)
    lying = _lie_about_sizes(_npz(x=x, y=y), 200)  # the real arrays are bigger than declared
    with pytest.raises(InvalidInputError, match="corrupt"):
        load_npz(lying)
    files = {f"cats/{i}.png": _png(10) for i in range(2)} | {f"dogs/{i}.png": _png(250) for i in range(2)}
    with pytest.raises(InvalidInputError, match="'cats/0.png'.*(corrupt|damaged)"):
        load_image_folder_zip(_lie_about_sizes(_zip(files), 50))


# ------------------------------------------------------------------------------------------ image folders


def _png(color: int | tuple[int, int, int], size: tuple[int, int] = (12, 10)) -> bytes:
    im = Image.new("L" if isinstance(color, int) else "RGB", size, color)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in files.items():
            zf.writestr(name, blob)
    return buf.getvalue()


def test_folder_zip_happy_path_with_wrapper_and_junk() -> None:
    files = {f"pets/cats/{i}.png": _png(40 + i) for i in range(3)}
    files |= {f"pets/dogs/{i}.PNG": _png(200 + i) for i in range(3)}
    files |= {
        "pets/dogs/odd.png": _png(210, size=(30, 30)),  # another size: fitted to the common one
        "__MACOSX/pets/cats/._0.png": b"\x00\x05\x16\x07 resource fork",
        "pets/.DS_Store": b"\x00\x00\x00\x01Bud1",
        "pets/README.txt": b"my pets",
        "pets/dogs/notes.csv": b"a,b",
    }
    ds = load_image_folder_zip(_zip(files), name="pets")
    assert ds.class_names == ("cats", "dogs")
    assert ds.input_shape == (1, 10, 12)  # all gray -> 1 channel; (H, W) of the most common 12x10
    assert len(ds.y_train) + len(ds.y_test) == 7
    assert "Skipped 2 non-image files" in ds.description and "README.txt" in ds.description
    xs, ys = _all_x(ds), torch.cat([ds.y_train, ds.y_test])
    assert float(xs[ys == 0].max()) < 0.2 and float(xs[ys == 1].min()) > 0.75


def test_folder_zip_colour_size_and_channel_choice() -> None:
    files = {f"red/{i}.png": _png((200, 20, 20), size=(100, 80)) for i in range(2)}
    files |= {f"blue/{i}.jpg": _jpeg((20, 20, 200), size=(100, 80)) for i in range(2)}
    ds = load_image_folder_zip(_zip(files))
    assert ds.class_names == ("blue", "red")
    assert ds.input_shape == (3, 51, 64)  # 100x80 shrunk to fit 64x64
    gray = load_image_folder_zip(_zip(files), image_size=(16, 16), channels=1)
    assert gray.input_shape == (1, 16, 16)


def _jpeg(color: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("evil", ["../escape.png", "cats/../../escape.png", "/etc/passwd.png", "C:\\win.png"])
def test_path_traversal_names_are_refused(evil: str) -> None:
    files = {f"cats/{i}.png": _png(10) for i in range(2)} | {f"dogs/{i}.png": _png(250) for i in range(2)}
    files[evil] = _png(0)
    with pytest.raises(InvalidInputError, match="unsafe paths") as err:
        load_image_folder_zip(_zip(files))
    assert evil in str(err.value) or evil.replace("\\", "\\\\") in str(err.value)


def test_undecodable_image_is_named() -> None:
    files = {f"cats/{i}.png": _png(10) for i in range(2)} | {f"dogs/{i}.png": _png(250) for i in range(2)}
    good = _png(250)
    files["dogs/broken.png"] = good[: len(good) // 2]
    files["dogs/fake.jpg"] = b"just text"
    with pytest.raises(InvalidInputError, match="'dogs/(broken.png|fake.jpg)'"):
        load_image_folder_zip(_zip(files))
    del files["dogs/fake.jpg"]
    with pytest.raises(InvalidInputError, match="'dogs/broken.png' is not a readable image"):
        load_image_folder_zip(_zip(files))
    with pytest.raises(InvalidInputError, match="'dogs/broken.png' is not a readable image"):
        load_image_folder_zip(_zip(files), image_size=(8, 8))  # no header pass: the decoder catches it


def test_too_few_images_or_classes() -> None:
    files = {f"cats/{i}.png": _png(10) for i in range(3)} | {"dogs/0.png": _png(250)}
    with pytest.raises(InvalidInputError, match=r"at least 2 images.*'dogs' \(1\) has fewer"):
        load_image_folder_zip(_zip(files))
    with pytest.raises(InvalidInputError, match="only one class folder \\('cats'\\)"):
        load_image_folder_zip(_zip({f"cats/{i}.png": _png(10) for i in range(3)}))
    with pytest.raises(InvalidInputError, match="not inside a class folder"):
        load_image_folder_zip(_zip({"a.png": _png(1), "cats/b.png": _png(2), "dogs/c.png": _png(3)}))
    with pytest.raises(InvalidInputError, match="no images"):
        load_image_folder_zip(_zip({"cats/a.txt": b"meow"}))


def test_folder_zip_not_a_zip_and_bad_arguments() -> None:
    with pytest.raises(InvalidInputError, match="not a zip archive \\(it looks like a PDF document\\)"):
        load_image_folder_zip(b"%PDF-1.4\n")
    with pytest.raises(InvalidInputError, match="channels"):
        load_image_folder_zip(_zip({}), channels=2)
    with pytest.raises(InvalidInputError, match="image_size"):
        load_image_folder_zip(_zip({}), image_size=(4, 1000))


def test_folder_zip_bomb_and_entry_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(user, "MAX_UNPACKED_BYTES", 2**20)
    with pytest.raises(InvalidInputError, match="zip bombs"):
        load_image_folder_zip(_zeros_zip(["cats/a.png", "dogs/b.png"], 2**20))
    monkeypatch.setattr(user, "MAX_ZIP_ENTRIES", 10)
    many = _zip({f"cats/{i}.png": b"" for i in range(11)})
    with pytest.raises(InvalidInputError, match="11 entries; at most 10"):
        load_image_folder_zip(many)


def test_oversized_member_is_refused_before_reading() -> None:
    files = {f"cats/{i}.png": _png(10) for i in range(2)} | {f"dogs/{i}.png": _png(250) for i in range(2)}
    files["dogs/huge.png"] = bytes(MAX_FILE_BYTES + 1)
    with pytest.raises(InvalidInputError, match="'dogs/huge.png' is larger than 20 MiB"):
        load_image_folder_zip(_zip(files))
