"""Privacy: differential-privacy accounting (DP-SGD training, membership inference and inversion come next)."""

from dlsec_core.privacy.accounting import (
    ACCOUNTANTS,
    PrivacySpend,
    epsilon_after,
    epsilon_curve,
    noise_for_target,
)

__all__ = ["ACCOUNTANTS", "PrivacySpend", "epsilon_after", "epsilon_curve", "noise_for_target"]
