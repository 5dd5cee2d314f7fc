"""The quick scan ranks a standard, an adversarially trained and a DP model as the published shapes say.

- Adversarial training raises robust accuracy (Madry et al. 2018): the PGD-trained model keeps more test images
  under the scan's PGD at L∞ ε = 0.1 than its standard twin and than the DP twin.
- DP-SGD at ε <= 1 brings membership leakage down to chance (Carlini et al. 2022 judge it by TPR at 1 % FPR):
  the DP model's loss-attack TPR at 1 % FPR is at most twice chance (`info`), the standard model's is above it.

The setting is the smallest found where both shapes hold for seeds 0, 1 and 2 (checked; the test runs seed 0):
on the whole `digits` training split (1,438 images) a standard MLP leaks too little for the loss attack to
measure at 1 % FPR (1.4-1.7 %, chance is 1 %), so the models train on its first 200 images (a stored dataset),
long enough to overfit (100 epochs, constant learning rate): the standard MLP's TPR at 1 % FPR is then 3.5-5 %.
Members are those 200 images, non-members the first 200 test images (the scan's rule), enough to measure 1 %.

Measured (robust accuracy at ε = 0.1; loss-attack TPR at 1 % FPR) for seeds 0 / 1 / 2: standard 0.51 / 0.50 /
0.515 and 5.0 / 4.0 / 4.0 %; PGD-trained 0.73 / 0.725 / 0.72 and 7.5 / 4.0 / 3.5 %; DP-SGD (ε = 0.99, RDP)
0.08 / 0.085 / 0.11 and 0 / 0 / 0 %. The DP twin pays for its guarantee with accuracy (clean 14-16 % on 200
images at ε <= 1), which is also why its robust accuracy is lowest. 7 s on 2 quiet cores, 25-100 s loaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dlsec_core.assessment.severity import Severity
from dlsec_core.catalog import get_recipe
from dlsec_core.data.builtin import Dataset, load_dataset
from dlsec_core.store import Store
from dlsec_core.studies.base import run_study
from dlsec_core.studies.scan import ScanResult, ScanStudy, ScanStudyConfig
from dlsec_core.training.loop import TrainConfig, run_to_end
from dlsec_core.workflows import train_and_store

N_TRAIN = 200


def _subset(store: Store) -> str:
    full = load_dataset("digits")
    return store.save_dataset(Dataset(
        name="digits200", x_train=full.x_train[:N_TRAIN], y_train=full.y_train[:N_TRAIN], x_test=full.x_test,
        y_test=full.y_test, class_names=full.class_names, description="the first 200 digits training images",
    ))  # fmt: skip


def ranked_scans(home: Path, seed: int) -> dict[str, ScanResult]:
    """Quick scans of the three twins (same data, architecture and seed) trained on the digits subset."""
    store = Store(home)
    dataset = _subset(store)
    overfit = TrainConfig(epochs=100, lr=1e-3, batch_size=32, shift=0, one_cycle=False, seed=seed)
    twins = {
        "standard": (get_recipe("standard"), overfit),
        "adversarial": (get_recipe("pgd", eps=0.1, steps=5, robust_eval_images=0), overfit),
        "dp": (
            get_recipe("dp-sgd", target_epsilon=1.0),
            TrainConfig(epochs=10, lr=0.5, batch_size=64, shift=0, optimizer="sgd", seed=seed),
        ),
    }
    scans = {}
    for name, (recipe, config) in twins.items():
        card = run_to_end(
            train_and_store(store, dataset=dataset, arch="mlp", config=config, recipe=recipe, name=name)
        )
        outcome = run_study(ScanStudy(), store, ScanStudyConfig(model_id=card.id, seed=seed), None)
        scans[name] = ScanResult.from_json(outcome.result)
    return scans


@pytest.mark.parametrize("seed", [0])
def test_quick_scan_ranks_the_twins_as_published(tmp_home: Path, seed: int) -> None:
    scans = ranked_scans(tmp_home, seed)
    robust = {k: s.finding("evasion-pgd-linf-0.1").evidence["accuracy"] for k, s in scans.items()}
    leak = {k: s.finding("membership-loss") for k, s in scans.items()}
    tpr = {k: f.evidence["tpr_raw"] for k, f in leak.items()}
    claim = scans["dp"].finding("dp-claim")
    assert claim.evidence["epsilon"] <= 1.0 and claim.severity is Severity.INFO  # a tier-1 claim

    # adversarial training: robust accuracy up
    assert robust["adversarial"] > robust["standard"] + 0.05, robust
    assert robust["adversarial"] > robust["dp"] + 0.05, robust
    # DP at ε <= 1: membership TPR at 1 % FPR down to chance; the standard twin leaks measurably more
    assert leak["dp"].evidence["n_nonmembers"] >= 100  # 1 % FPR is measurable
    assert tpr["dp"] <= 0.02 and leak["dp"].severity is Severity.INFO, tpr
    assert tpr["standard"] > 0.02 and leak["standard"].severity.rank >= Severity.LOW.rank, tpr
    assert tpr["standard"] > tpr["dp"], tpr
