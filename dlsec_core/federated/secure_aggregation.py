"""Secure aggregation, simulated with pairwise masks (Bonawitz et al. 2017, "Practical Secure Aggregation for
Privacy-Preserving Machine Learning", the masking core without key agreement, secret sharing or dropouts).

Each pair of clients i < j shares a seed (in the protocol: a Diffie-Hellman key agreement; here derived from the
round's seed and the pair) and expands it with a PRG into a mask m_ij of the update's length. Client i sends
x_i + Σ_{j>i} m_ij − Σ_{j<i} m_ji; every mask appears once with + and once with −, so the masks cancel in the sum
and the server learns Σ x_i and nothing else about any x_i.

The arithmetic is that of the protocol: updates are encoded in fixed point (`FRACTION_BITS` fractional bits) in the
ring Z_{2^32}, and masks are uniform in the ring, so each masked update is uniformly distributed whatever the update
(uncorrelated with it), and the sum is exact in the ring: the decoded sum differs from the float sum only by the
encoding's rounding (at most n · 2^-(FRACTION_BITS+1) per coordinate for n clients). Values whose sum leaves the
encodable range are refused rather than wrapped. Dropped clients (whose masks would have to be recovered from
secret shares) are not simulated.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dlsec_core.errors import InvalidInputError

RING_BITS = 32
RING = 2**RING_BITS
FRACTION_BITS = 20  # resolution 2^-20 ≈ 9.5e-7
SCALE = 2**FRACTION_BITS
LIMIT = 2 ** (RING_BITS - 1) / SCALE  # |sum| must stay below this (2048) to decode


def pair_seed(seed: int, i: int, j: int) -> int:
    """The PRG seed clients i and j agree on (symmetric in i and j)."""
    lo, hi = min(i, j), max(i, j)
    return int(np.random.SeedSequence([seed, lo, hi, 0x5EC]).generate_state(1, dtype=np.uint64)[0] >> 1)


def pair_mask(seed: int, i: int, j: int, size: int) -> torch.Tensor:
    """The mask m_ij: `size` uniform ring elements (int64 in [0, 2^32)) from the pair's PRG."""
    generator = torch.Generator().manual_seed(pair_seed(seed, i, j))
    return torch.randint(0, RING, (size,), generator=generator, dtype=torch.int64)


def encode(x: torch.Tensor) -> torch.Tensor:
    """Fixed-point encoding of a float vector in Z_{2^32} (int64 in [0, 2^32))."""
    return torch.round(x.detach().to(torch.float64) * SCALE).to(torch.int64) % RING


def decode(z: torch.Tensor) -> torch.Tensor:
    """The inverse of `encode` for a ring element that stands for a value in [-LIMIT, LIMIT)."""
    z = z % RING
    signed = torch.where(z >= RING // 2, z - RING, z)
    return signed.to(torch.float64) / SCALE


def mask_updates(
    updates: Sequence[torch.Tensor], seed: int, ids: Sequence[int] | None = None
) -> list[torch.Tensor]:
    """What the server receives: each client's update (a flat float vector) encoded and masked.

    Args:
        updates: one flat vector per participating client, all of one length.
        seed: this round's seed (pair seeds derive from it; a new round gets new masks).
        ids: the clients' ids (default 0..n-1); masks pair the participants only.

    Raises:
        InvalidInputError: no updates, vectors of different lengths or shapes, or values whose sum cannot be encoded.
    """
    if not updates:
        raise InvalidInputError("Secure aggregation needs at least one update.")
    ids = list(range(len(updates))) if ids is None else list(ids)
    if len(ids) != len(updates) or len(set(ids)) != len(ids):
        raise InvalidInputError(
            f"Give one distinct client id per update, got {ids!r} for {len(updates)} updates."
        )
    size = updates[0].numel()
    if any(u.ndim != 1 or u.numel() != size for u in updates):
        raise InvalidInputError("Secure aggregation takes flat update vectors, all of one length.")
    bound = float(sum(u.detach().abs().max() for u in updates))
    if not bound < LIMIT:
        raise InvalidInputError(
            f"The updates are too large for the fixed-point encoding (their sum may reach {bound:.3g}; the limit is "
            f"{LIMIT:g}): clip them or lower the learning rate."
        )
    masked = [encode(u) for u in updates]
    for a in range(len(ids)):
        for b in range(a + 1, len(ids)):
            mask = pair_mask(seed, ids[a], ids[b], size)
            masked[a] = (masked[a] + mask) % RING
            masked[b] = (masked[b] - mask) % RING
    return masked


def unmask_sum(masked: Sequence[torch.Tensor]) -> torch.Tensor:
    """The server's aggregate: the ring sum of the masked updates, decoded (float64): the masks cancel."""
    if not masked:
        raise InvalidInputError("Nothing to aggregate.")
    total = torch.zeros_like(masked[0])
    for z in masked:
        total = (total + z) % RING
    return decode(total)


def secure_sum(updates: Sequence[torch.Tensor], seed: int, ids: Sequence[int] | None = None) -> torch.Tensor:
    """Σ updates as the server computes it under secure aggregation (float32, like the updates)."""
    return unmask_sum(mask_updates(updates, seed, ids)).to(updates[0].dtype)
