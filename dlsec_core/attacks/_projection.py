"""Shared geometry for attacks: norms, projection onto the epsilon ball, the [0, 1] box."""

from __future__ import annotations

import torch

from dlsec_core.attacks.norms import NORMS, Norm

__all__ = ["NORMS", "Norm", "flat_norm", "normalize_step", "project", "random_start"]


def flat_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norm of a (N, C, H, W) tensor -> (N,)."""
    flat = delta.flatten(1)  # (N, C, H, W) -> (N, C*H*W)
    if norm == "linf":
        return flat.abs().amax(dim=1)
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    if norm == "l0":
        return (flat != 0).sum(dim=1).to(delta.dtype)
    raise ValueError(f"unknown norm {norm!r}")


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project `x_adv` onto {x' : ||x' - x|| <= eps} intersected with the box [0, 1]^d.

    For L-inf the box and the ball are both coordinate-wise, so clipping to their intersection is the exact
    projection. For L2 we project onto the ball, then clip to the box: the result stays in both sets (clipping
    towards x can only shrink the L2 distance), which is what the contract needs.
    """
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    elif norm == "l2":
        n = flat_norm(delta, "l2").clamp_min(1e-12)
        factor = (eps / n).clamp(max=1.0).view(-1, *([1] * (delta.ndim - 1)))
        delta = delta * factor
    else:
        raise ValueError(f"unknown norm {norm!r}")
    return (x + delta).clamp(0.0, 1.0)


def normalize_step(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent direction of unit size for `norm`: sign(g) for L-inf, g / ||g||_2 for L2."""
    if norm == "linf":
        return grad.sign()
    if norm == "l2":
        n = flat_norm(grad, "l2").clamp_min(1e-12).view(-1, *([1] * (grad.ndim - 1)))
        return grad / n
    raise ValueError(f"unknown norm {norm!r}")


def random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """A uniform point in the eps-ball around x (drawn on CPU so a seed gives the same start on any device)."""
    shape = x.shape
    if norm == "linf":
        noise = torch.rand(shape, generator=generator) * 2 - 1
        delta = noise * eps
    elif norm == "l2":
        direction = torch.randn(shape, generator=generator)
        direction = direction / flat_norm(direction, "l2").clamp_min(1e-12).view(-1, 1, 1, 1)
        d = direction[0].numel()
        radius = torch.rand(shape[0], generator=generator) ** (1.0 / d) * eps
        delta = direction * radius.view(-1, 1, 1, 1)
    else:
        raise ValueError(f"unknown norm {norm!r}")
    return (x + delta.to(x.device, x.dtype)).clamp(0.0, 1.0)
