"""dlsec_core: the Deep Learning Security Lab's engine, pure PyTorch (no UI).

Typical use from a notebook::

    from dlsec_core import Store, load_dataset, train_and_store, run_to_end, get_attack, sweep

    store = Store()                                   # $DLSEC_HOME or ~/.dlsec
    card = run_to_end(train_and_store(store, dataset="mnist5k", arch="cnn"))
    model, card = store.load_model(card.id)
    data = load_dataset("mnist5k")
    result = get_attack("fgsm", eps=0.1)(model, data.x_test[:8], data.y_test[:8])
    for point in sweep(model, data.x_test, data.y_test, get_attack("pgd", steps=40), [0, 0.05, 0.1]):
        print(point.eps, point.accuracy)
"""

from dlsec_core.attacks import ATTACKS, FGSM, PGD, Attack, AttackResult, get_attack
from dlsec_core.catalog import RECIPES, get_recipe
from dlsec_core.data import DATASETS, Dataset, load_dataset
from dlsec_core.device import get_device
from dlsec_core.errors import DlsecError, InvalidInputError, NotFoundError, UnsafeFileError
from dlsec_core.evaluation import SweepPoint, accuracy, predict_proba, sweep
from dlsec_core.models import ARCHITECTURES, ModelSpec, build_model
from dlsec_core.store import ModelCard, Store
from dlsec_core.training import TrainConfig, TrainEvent, TrainResult, train
from dlsec_core.training.loop import run_to_end
from dlsec_core.workflows import import_and_evaluate, spec_for, sweep_models, train_and_store

__all__ = [
    "ARCHITECTURES",
    "ATTACKS",
    "DATASETS",
    "FGSM",
    "PGD",
    "RECIPES",
    "Attack",
    "AttackResult",
    "Dataset",
    "DlsecError",
    "InvalidInputError",
    "ModelCard",
    "ModelSpec",
    "NotFoundError",
    "Store",
    "SweepPoint",
    "TrainConfig",
    "TrainEvent",
    "TrainResult",
    "UnsafeFileError",
    "accuracy",
    "build_model",
    "get_attack",
    "get_device",
    "get_recipe",
    "import_and_evaluate",
    "load_dataset",
    "predict_proba",
    "run_to_end",
    "spec_for",
    "sweep",
    "sweep_models",
    "train",
    "train_and_store",
]
