"""Evasion attacks. Each attack is one short file registered in `ATTACKS`; `base.py` owns the contract."""

# Registration order is the order pages list the attacks in: the classics first.
from dlsec_core.attacks import fgsm, pgd  # noqa: F401  (registers the attacks)

# isort: split
from dlsec_core.attacks import cw, deepfool, square, transfer  # noqa: F401
from dlsec_core.attacks.base import ATTACKS, Attack, AttackResult, get_attack, register_attack
from dlsec_core.attacks.cw import CW
from dlsec_core.attacks.deepfool import DeepFool
from dlsec_core.attacks.fgsm import FGSM
from dlsec_core.attacks.pgd import PGD
from dlsec_core.attacks.square import Square
from dlsec_core.attacks.transfer import Transfer

__all__ = [
    "ATTACKS",
    "CW",
    "FGSM",
    "PGD",
    "Attack",
    "AttackResult",
    "DeepFool",
    "Square",
    "Transfer",
    "get_attack",
    "register_attack",
]
