"""Input-transform defenses, and how to attack them honestly.

An input transform t is applied before the classifier f: the defended classifier is f(t(x)). Each transform is
a small frozen config (hyperparameters only, with UI metadata, like the attacks) that builds an `nn.Module`
layer, so `nn.Sequential(transform.layer(), model)` *is* the defended model and every attack attacks the whole
pipeline.

- Bit-depth reduction and median smoothing: feature squeezing, Xu, Evans, Qi, "Feature Squeezing: Detecting
  Adversarial Examples in Deep Neural Networks", NDSS 2018.
- JPEG compression: Dziugaite, Ghahramani, Roy 2016, "A study of the effect of JPG compression on adversarial
  images"; Das et al. 2017, "Keeping the Bad Guys Out".
- Gaussian noise: a randomized transform (the idea behind randomized smoothing, Cohen, Rosenfeld, Kolter 2019,
  used here as a plain pre-processing defense).

How gradients pass is the heart of an honest evaluation (Athalye, Carlini, Wagner, "Obfuscated Gradients Give a
False Sense of Security", ICML 2018):

- A non-differentiable transform (rounding, JPEG) has a zero or missing gradient. Attacking through it as torch
  differentiates it ("naive") makes gradient attacks step nowhere: the defense *looks* robust (gradient
  masking). BPDA (Backward Pass Differentiable Approximation) applies the transform on the forward pass and the
  identity on the backward pass (straight-through), because t(x) ~ x.
- A randomized transform gives a different answer on every call. Attacking one random draw follows a gradient
  that the next draw does not share. EOT (Expectation over Transformation) attacks the average over many draws.

`defend(model, "bit-depth", mode=Mode.ADAPTIVE)` returns a `DefendedModel`: its `forward` is the deployed classifier,
its `attack_view()` is what the attacker should differentiate, and `robust_accuracy_under` measures the attack
made on the attack view against the deployed classifier.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch import nn

from dlsec_core.attacks.base import Attack, check_inputs
from dlsec_core.config import Config, param
from dlsec_core.errors import InvalidInputError
from dlsec_core.models.modes import device_of, eval_mode
from dlsec_core.registry import Registry


class Mode(StrEnum):
    """How an attack treats an input defense (stored and shown as its value: "adaptive", "naive").

    ADAPTIVE: BPDA through non-differentiable transforms and EOT over randomized ones, the honest evaluation.
    NAIVE: torch's own gradient through the transform and one random draw, the evaluation gradient masking fools.
    """

    ADAPTIVE = "adaptive"
    NAIVE = "naive"


MAX_EOT_SAMPLES = 256


@dataclass(frozen=True, kw_only=True)
class InputTransform(Config):
    """Base class: a transform's hyperparameters (declared with `param`, validated by `Config`) and its
    pixel-to-pixel map.

    Subclasses set the class variables, declare hyperparameters, and implement `apply` and `describe`.
    `apply` takes and returns (N, C, H, W) pixels in [0, 1]; it need not be differentiable (the class variable
    `differentiable` says whether torch's gradient of it is meaningful).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    #: MITRE ATLAS technique and mitigation ids (or `DLSEC.` local tags) this defense demonstrates: see
    #: dlsec_core/atlas.py.
    atlas_ids: ClassVar[tuple[str, ...]] = ()
    #: a fresh random draw on every call (then attacks need EOT)
    randomized: ClassVar[bool] = False
    #: torch's gradient of `apply` is useful for an attacker (False: zero or missing, so attacks need BPDA)
    differentiable: ClassVar[bool] = True
    #: one sentence on what torch's own gradient of this transform is (shown next to the naive/adaptive choice)
    gradient_note: ClassVar[str] = ""

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The transform itself: (N, C, H, W) in [0, 1] -> same shape, in [0, 1]."""
        raise NotImplementedError

    def describe(self) -> str:
        """The transform and its strength, e.g. "bit-depth reduction (3 bits)"."""
        raise NotImplementedError

    def layer(self, *, bpda: bool = True, generator: torch.Generator | None = None) -> TransformLayer:
        """This transform as an `nn.Module` (see `TransformLayer` for `bpda` and `generator`)."""
        return TransformLayer(self, bpda=bpda, generator=generator)

    def with_params(self, **changes: Any) -> InputTransform:
        """A copy with some hyperparameters changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the registry name and the hyperparameters (for model cards and run records)."""
        return {"transform": self.name, "params": self.to_json()}


TRANSFORMS: Registry[InputTransform] = Registry("input transform")
register_transform = TRANSFORMS.register  # class decorator: add a transform to `TRANSFORMS` under its `name`


def get_transform(name: str, **params: Any) -> InputTransform:
    """Build a registered transform by name, e.g. `get_transform("bit-depth", bits=3)`."""
    return TRANSFORMS.build(name, **params)


def _check_int(value: Any, what: str, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidInputError(f"{what} must be an integer from {low} to {high}, got {value!r}.")


# -- the transforms ----------------------------------------------------------------------------------------


@register_transform
@dataclass(frozen=True, kw_only=True)
class BitDepth(InputTransform):
    """Round every pixel to one of 2^bits levels: round(x * (2^b - 1)) / (2^b - 1)."""

    name = "bit-depth"
    title = "Bit-depth reduction"
    atlas_ids = ("AML.M0010",)  # ATLAS mitigation: Input Restoration
    paper = "Xu, Evans, Qi 2018, Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks"
    differentiable = False
    gradient_note = "Rounding is flat almost everywhere: torch's gradient through it is exactly zero."

    bits: int = param(
        3,
        "Bits per pixel",
        help="1 bit = black or white; 8 bits = unchanged 8-bit images.",
        min=1,
        max=8,
        step=1,
    )

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        levels = 2**self.bits - 1
        return torch.round(x * levels) / levels

    def describe(self) -> str:
        return f"bit-depth reduction ({self.bits} bit{'s' if self.bits > 1 else ''})"


@register_transform
@dataclass(frozen=True, kw_only=True)
class MedianSmoothing(InputTransform):
    """Replace every pixel by the median of its k x k neighbourhood, per channel.

    Matches `scipy.ndimage.median_filter(size=k, mode="reflect")`, as Xu et al. used it: the window covers offsets
    -(k//2) .. k-1-k//2 (a 2x2 window reaches up and left), borders are mirrored including the edge pixel, and
    an even window takes the upper of its two middle values.
    """

    name = "median"
    title = "Median smoothing"
    atlas_ids = ("AML.M0010",)  # ATLAS mitigation: Input Restoration
    paper = "Xu, Evans, Qi 2018, Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks"
    differentiable = True
    gradient_note = (
        "A median selects one input pixel, so its gradient exists: one 1 per output pixel, at the pixel chosen. "
        "It is an honest but jumpy gradient (the chosen pixel changes as the input moves)."
    )

    kernel: int = param(
        2, "Window size k (k x k pixels)", help="Xu et al. use 2 for MNIST.", min=2, max=5, step=1
    )

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, c, h, w = x.shape
        k = self.kernel
        before, after = k // 2, k - 1 - k // 2
        if min(h, w) < max(before, after):
            raise InvalidInputError(
                f"A {k}x{k} median needs images of at least {max(before, after)} pixels a side."
            )
        rows = _mirror_index(h, before, after, x.device)
        cols = _mirror_index(w, before, after, x.device)
        padded = x[:, :, rows][:, :, :, cols]  # (N, C, H, W) -> (N, C, H+k-1, W+k-1)
        windows = nn.functional.unfold(padded, kernel_size=k)  # -> (N, C*k*k, H*W)
        windows = windows.view(n, c, k * k, h * w)
        # kthvalue is 1-based: rank k*k//2 (0-based) is the middle of an odd window, the upper middle of an even one.
        median = windows.kthvalue(k * k // 2 + 1, dim=2).values  # (N, C, H*W)
        return median.view(n, c, h, w)

    def describe(self) -> str:
        return f"median smoothing ({self.kernel}x{self.kernel})"


def _mirror_index(size: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Indices that pad an axis by mirroring including the edge (d c b a | a b c d | d c b a)."""
    idx = torch.arange(-before, size + after, device=device)
    idx = torch.where(idx < 0, -idx - 1, idx)
    return torch.where(idx >= size, 2 * size - 1 - idx, idx)


@register_transform
@dataclass(frozen=True, kw_only=True)
class JPEG(InputTransform):
    """Encode every image as a JPEG of the given quality and decode it again (Pillow, 8-bit)."""

    name = "jpeg"
    title = "JPEG compression"
    atlas_ids = ("AML.M0010",)  # ATLAS mitigation: Input Restoration
    paper = (
        "Dziugaite, Ghahramani, Roy 2016, A study of the effect of JPG compression on adversarial images; "
        "Das et al. 2017, Keeping the Bad Guys Out"
    )
    differentiable = False
    gradient_note = (
        "The image leaves torch for a JPEG encoder and comes back: there is no gradient through it."
    )

    quality: int = param(
        75,
        "JPEG quality",
        help="Lower quality removes more fine detail (and more of the image).",
        min=1,
        max=100,
        step=1,
    )

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        pixels = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()  # (N, C, H, W) uint8
        out = np.empty_like(pixels)
        for i in range(pixels.shape[0]):
            if pixels.shape[1] == 3:
                rgb = self._roundtrip(pixels[i].transpose(1, 2, 0), "RGB")  # (C, H, W) -> (H, W, C)
                out[i] = rgb.transpose(2, 0, 1)
            else:  # grey, or channels JPEG has no mode for: one grey image per channel
                for ch in range(pixels.shape[1]):
                    out[i, ch] = self._roundtrip(pixels[i, ch], "L")
        return torch.from_numpy(out).to(device=x.device, dtype=x.dtype) / 255

    def _roundtrip(self, image: np.ndarray, mode: str) -> np.ndarray:
        buffer = io.BytesIO()
        Image.fromarray(image, mode=mode).save(buffer, format="JPEG", quality=self.quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return np.asarray(decoded.convert(mode))

    def describe(self) -> str:
        return f"JPEG compression (quality {self.quality})"


@register_transform
@dataclass(frozen=True, kw_only=True)
class GaussianNoise(InputTransform):
    """Add fresh Gaussian noise of standard deviation sigma to every pixel, then clip to [0, 1]."""

    name = "gaussian"
    title = "Gaussian noise"
    atlas_ids = ("AML.M0010",)  # ATLAS mitigation: Input Restoration
    paper = (
        "Cohen, Rosenfeld, Kolter 2019, Certified Adversarial Robustness via Randomized Smoothing (the noise)"
    )
    randomized = True
    differentiable = True
    gradient_note = "The gradient exists but belongs to one random draw: the next draw points elsewhere."

    sigma: float = param(0.1, "Noise σ (pixel units)", min=0.0, min_open=True, max=1.0, step=0.01)

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if generator is None:
            noise = torch.randn_like(x)
        else:  # drawn on CPU so a seed gives the same noise on any device
            noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        return (x + self.sigma * noise).clamp(0.0, 1.0)

    def describe(self) -> str:
        return f"Gaussian noise (σ={self.sigma:g})"


# -- modules -----------------------------------------------------------------------------------------------


class TransformLayer(nn.Module):
    """An input transform as a layer, with an explicit rule for its gradient.

    Args:
        transform: the transform config.
        bpda: for a non-differentiable transform, True passes the gradient straight through (identity backward,
            BPDA); False keeps torch's own gradient, which is zero (the naive, gradient-masked attack). Ignored for
            differentiable transforms, whose own gradient is used.
        generator: CPU generator for a randomized transform's draws; None uses torch's global generator.
    """

    def __init__(
        self, transform: InputTransform, *, bpda: bool = True, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.config = transform
        self.bpda = bool(bpda)
        self.generator = generator

    @property
    def straight_through(self) -> bool:
        """True when the backward pass is the identity (BPDA)."""
        return self.bpda and not self.config.differentiable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.differentiable:
            return self.config.apply(x, self.generator)
        if self.bpda:
            with torch.no_grad():
                out = self.config.apply(x, self.generator)
            # Straight-through: the value is exactly t(x) (x - x is exactly 0), the gradient is the identity.
            return out + (x - x.detach())
        out = self.config.apply(x, self.generator)
        if x.requires_grad and not out.requires_grad:
            # No graph at all (JPEG): give a zero gradient instead of an autograd error, as torch does for round.
            out = out + 0.0 * x
        return out

    def extra_repr(self) -> str:
        gradient = "BPDA (straight-through)" if self.straight_through else "own gradient"
        return f"{self.config.describe()}, backward: {gradient}"


class ExpectationOverTransformation(nn.Module):
    """Average a randomized model over `samples` independent draws (EOT, Athalye, Carlini, Wagner 2018).

    The output is log(mean_k softmax(f_k(x))): the log of the averaged probabilities. It works as logits (the
    argmax is the averaged decision; cross-entropy on it is the cross-entropy of the averaged probabilities,
    since log_softmax leaves log-probabilities unchanged), so any attack that differentiates it follows the
    expected gradient instead of one draw's.
    """

    def __init__(self, model: nn.Module, samples: int = 8) -> None:
        super().__init__()
        _check_int(samples, "The number of EOT samples", 1, MAX_EOT_SAMPLES)
        self.model = model
        self.samples = samples
        self.train(model.training)  # adopt the wrapped model's mode (see DefendedModel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        repeated = x.repeat(self.samples, *([1] * (x.ndim - 1)))  # (N, ...) -> (k*N, ...), k draws per input
        log_probs = self.model(repeated).log_softmax(dim=1).view(self.samples, n, -1)  # (k, N, K)
        return torch.logsumexp(log_probs, dim=0) - math.log(self.samples)  # (N, K)

    def extra_repr(self) -> str:
        return f"samples={self.samples}"


def attack_mode(value: Mode | str) -> Mode:
    """`value` as a `Mode` (a stored or typed string is accepted).

    Raises:
        InvalidInputError: a value that names no mode.
    """
    try:
        return Mode(value)
    except ValueError:
        choices = ", ".join(m.value for m in Mode)
        raise InvalidInputError(f"The attack mode must be one of {choices}, got {value!r}.") from None


class DefendedModel(nn.Module):
    """A classifier behind an input transform, with the attack that evaluates it.

    `forward` is the deployed classifier: model(t(x)), one random draw for a randomized transform.
    `attack_view()` is what an attacker should differentiate:

    - mode "adaptive" (the honest default): BPDA through non-differentiable transforms, EOT over
      `eot_samples` draws for randomized ones;
    - mode "naive": torch's own gradient through the transform and a single random draw, i.e. the evaluation
      that gradient masking fools. Useful to show the difference, never to report robustness.
    """

    def __init__(
        self, transform: InputTransform, model: nn.Module, *, mode: Mode = Mode.ADAPTIVE, eot_samples: int = 8
    ) -> None:
        super().__init__()
        self.mode = attack_mode(mode)
        _check_int(eot_samples, "The number of EOT samples", 1, MAX_EOT_SAMPLES)
        self.transform = transform.layer(bpda=self.mode == Mode.ADAPTIVE)
        self.model = model
        self.eot_samples = eot_samples
        # A new module starts in training mode; adopt the model's, or an attack restoring "our" mode would
        # switch the wrapped model to training mode.
        self.train(model.training)

    @property
    def config(self) -> InputTransform:
        return self.transform.config

    @property
    def uses_eot(self) -> bool:
        return self.mode == Mode.ADAPTIVE and self.config.randomized and self.eot_samples > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.transform(x))

    def attack_view(self) -> nn.Module:
        """The module an attack should differentiate (it shares this model's layers; nothing is copied)."""
        return ExpectationOverTransformation(self, self.eot_samples) if self.uses_eot else self

    def describe(self) -> str:
        """E.g. "bit-depth reduction (3 bits), adaptive attack (BPDA)"."""
        if self.mode == Mode.ADAPTIVE:
            tools = []
            if not self.config.differentiable:
                tools.append("BPDA")
            if self.uses_eot:
                tools.append(f"EOT, {self.eot_samples} samples")
            how = f"adaptive attack ({' + '.join(tools)})" if tools else "adaptive attack (exact gradient)"
        else:
            notes = []
            if not self.config.differentiable:
                notes.append("zero gradient through the transform")
            if self.config.randomized:
                notes.append("one random draw")
            how = f"naive attack ({', '.join(notes)})" if notes else "naive attack (exact gradient)"
        return f"{self.config.describe()}, {how}"

    @contextlib.contextmanager
    def drawing_from(self, generator: torch.Generator | None) -> Iterator[None]:
        """Within this block, a randomized transform draws from `generator` (reproducible evaluations)."""
        previous = self.transform.generator
        self.transform.generator = generator
        try:
            yield
        finally:
            self.transform.generator = previous


def defend(
    model: nn.Module,
    transform: str | InputTransform,
    *,
    mode: Mode = Mode.ADAPTIVE,
    eot_samples: int = 8,
    **params: Any,
) -> DefendedModel:
    """Put `model` behind an input transform, e.g. `defend(model, "bit-depth", bits=3)`.

    Args:
        model: a classifier of pixels in [0, 1] returning logits (it is wrapped, not copied or modified).
        transform: a registered transform name (with its hyperparameters in `params`) or a transform config.
        mode: `Mode.ADAPTIVE` (BPDA and EOT, the honest evaluation) or `Mode.NAIVE` (torch's own gradient, one
            draw); a stored string ("adaptive", "naive") is converted with `attack_mode`.
        eot_samples: random draws averaged by the adaptive attack on a randomized transform.
    """
    if isinstance(transform, InputTransform):
        if params:
            raise InvalidInputError(
                "Give hyperparameters either in the transform config or as keywords, not both."
            )
        config = transform
    else:
        config = get_transform(transform, **params)
    return DefendedModel(config, model, mode=mode, eot_samples=eot_samples)


@dataclass(frozen=True, eq=False)
class DefenseEvaluation:
    """Accuracy of a deployed defended classifier on clean inputs and on inputs attacked through its attack view.

    `attacker_accuracy` is the accuracy the attacker saw on its own view (for EOT, the averaged classifier);
    `robust_accuracy` is what counts: the deployed classifier on the adversarial inputs.
    """

    defense: str  # DefendedModel.describe()
    attack: str  # Attack.describe()
    n: int
    clean_accuracy: float
    robust_accuracy: float
    attacker_accuracy: float
    x_adv: torch.Tensor  # (N, C, H, W), CPU

    def to_record(self) -> dict[str, Any]:
        return {
            "defense": self.defense,
            "attack": self.attack,
            "n": self.n,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "attacker_accuracy": self.attacker_accuracy,
        }


def robust_accuracy_under(
    defended: DefendedModel,
    attack: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    batch_size: int = 500,
) -> DefenseEvaluation:
    """Attack `defended.attack_view()`, then classify the adversarial inputs with the deployed `defended`.

    Gradients come from the attack view, accuracy from the deployed pipeline: an attack that only fools its own
    view (or one random draw) does not count. With a `generator`, the attack's random start and the transform's
    random draws all come from it, so a seed reproduces the evaluation.
    """
    x, y, _ = check_inputs(x, y, None)
    if batch_size < 1:
        raise InvalidInputError(f"The batch size must be at least 1, got {batch_size}.")
    device = device_of(defended)
    view = defended.attack_view()
    clean = robust = seen = 0
    adversarial = []
    with eval_mode(defended), defended.drawing_from(generator):
        for i in range(0, x.shape[0], batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            result = attack(view, xb, yb, generator=generator)
            seen += int((~result.success).sum())
            with torch.no_grad():
                logits = defended(torch.cat([xb, result.x_adv]).to(device)).cpu()
            pred = logits.argmax(dim=1)
            clean += int((pred[: len(yb)] == yb).sum())
            robust += int((pred[len(yb) :] == yb).sum())
            adversarial.append(result.x_adv)
    n = x.shape[0]
    return DefenseEvaluation(
        defense=defended.describe(),
        attack=attack.describe(),
        n=n,
        clean_accuracy=clean / n,
        robust_accuracy=robust / n,
        attacker_accuracy=seen / n,
        x_adv=torch.cat(adversarial),
    )
