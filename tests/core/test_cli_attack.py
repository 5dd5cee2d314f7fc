"""`attack` on the command line: your own image, with or without its class, and the reference named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dlsec_core.attacks import PGD
from dlsec_core.cli import main
from dlsec_core.data.builtin import load_dataset
from dlsec_core.data.images import image_to_input, tensor_to_png
from dlsec_core.store import ModelCard, Store


def attack(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["attack", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def digit(tmp_path: Path) -> Path:
    path = tmp_path / "digit.png"
    path.write_bytes(tensor_to_png(load_dataset("digits").x_test[3], scale=4))
    return path


def test_without_a_label_the_models_prediction_is_the_reference(
    capsys: pytest.CaptureFixture[str], stored_model: ModelCard, tmp_home: Path, digit: Path
) -> None:
    out = attack(capsys, "--model", stored_model.id, str(digit), "--eps", "0.2", "--steps", "10")
    assert out["reference"] == "the model's own prediction (no class given)"
    assert out["label"] == out["pred_clean"] and out["already_wrong"] is False
    assert out["success"] == (out["pred_adv"] != out["pred_clean"]) == out["fooled"]
    # The same as the core on the same converted image (the CLI adds no rules of its own).
    model, card = Store(tmp_home).load_model(stored_model.id)
    x = image_to_input(digit.read_bytes(), card.spec.input_shape, filename=digit.name)
    core = PGD(eps=0.2, steps=10)(model, x, generator=torch.Generator().manual_seed(0))
    assert (out["pred_clean"], out["pred_adv"]) == (int(core.pred_clean[0]), int(core.pred_adv[0]))
    assert out["l2"] == pytest.approx(float(core.l2[0]), abs=1e-5)

    still = attack(capsys, "--model", stored_model.id, str(digit), "--eps", "0")
    assert still["success"] is False and still["l0"] == 0  # nothing changed: the prediction did not change


def test_a_given_label_is_the_reference_and_a_wrong_one_is_said_so(
    capsys: pytest.CaptureFixture[str], stored_model: ModelCard, digit: Path
) -> None:
    free = attack(capsys, "--model", stored_model.id, str(digit), "--eps", "0")
    wrong = (free["pred_clean"] + 1) % 10
    out = attack(capsys, "--model", stored_model.id, str(digit), "--eps", "0", "--label", str(wrong))
    assert out["reference"] == "the true class" and out["label"] == wrong
    assert out["already_wrong"] is True and out["fooled"] is False


def test_a_target_equal_to_the_prediction_and_a_defense(
    capsys: pytest.CaptureFixture[str], stored_model: ModelCard, digit: Path, tmp_path: Path
) -> None:
    free = attack(capsys, "--model", stored_model.id, str(digit), "--eps", "0")
    same = attack(capsys, "--model", stored_model.id, str(digit), "--target", str(free["pred_clean"]))
    assert same["target_is_reference"] is True and same["success"] is False and same["l0"] == 0
    png = tmp_path / "adv.png"
    out = attack(
        capsys, "--model", stored_model.id, str(digit), "--defense", "bit-depth", "--defense-param", "bits=2",
        "--attack", "fgsm", "--out", str(png),
    )  # fmt: skip
    assert out["defense"].startswith("bit-depth reduction (2 bits), adaptive attack (BPDA)")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    deepfool = attack(capsys, "--model", stored_model.id, str(digit), "--attack", "deepfool")
    assert "no budget" in deepfool["attack"] and deepfool["success"] is True


def test_the_defense_mode_flag_takes_the_modes_words(
    capsys: pytest.CaptureFixture[str], stored_model: ModelCard, digit: Path
) -> None:
    """`--defense-mode` is parsed into `Mode` (its choices are the enum's values); a wrong word is refused."""
    out = attack(
        capsys, "--model", stored_model.id, str(digit), "--defense", "bit-depth", "--attack", "fgsm",
        "--defense-mode", "naive",
    )  # fmt: skip
    assert "naive attack (zero gradient through the transform)" in out["defense"]
    with pytest.raises(SystemExit):
        main(
            [
                "attack",
                "--model",
                stored_model.id,
                str(digit),
                "--defense",
                "bit-depth",
                "--defense-mode",
                "smart",
            ]
        )
    assert "invalid Mode value: 'smart'" in capsys.readouterr().err
