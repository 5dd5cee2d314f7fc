"""Evasion attacks. Each attack is one short file registered in `ATTACKS`; `base.py` owns the contract."""

from dlsec_core.attacks import fgsm, pgd  # noqa: F401  (registers the attacks)
from dlsec_core.attacks.base import ATTACKS, Attack, AttackResult, get_attack, register_attack
from dlsec_core.attacks.fgsm import FGSM
from dlsec_core.attacks.pgd import PGD

__all__ = ["ATTACKS", "FGSM", "PGD", "Attack", "AttackResult", "get_attack", "register_attack"]
