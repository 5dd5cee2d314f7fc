"""Command-line interface: `python -m dlsec_core COMMAND`.

Commands: datasets, add-dataset, train, list, attack (your own image; no --label = away from the model's own
prediction), sweep, detect, certify, import, export, delete, and for privacy
privacy-budget (the ε calculator and its inverse), membership (loss-threshold or LiRA membership inference),
invert (MI-Face model inversion to PNGs), audit (one-run privacy audit, Steinke et al. 2023) and frontier
(privacy-utility sweep over target ε); steal (model extraction through a prediction API, `cli_theft.py`);
scan (the security scan of one model, `cli_scan.py`); federate (federated learning, poisoning clients and robust
aggregation, `cli_federated.py`); gradleak (gradient inversion of a federated client's update, `cli_gradleak.py`);
watermark-verify (a suspect model against a watermarked owner's trigger set, Adi et al. 2018); workshop (prepare
every model a class needs, `cli_workshop.py`); runs (list, show, wait, cancel, retry, export, rm stored runs) and
worker (execute queued runs). `train`, `sweep`, `detect`, `certify`, `membership`, `invert`, `audit`, `steal`,
`scan`, `federate`, `gradleak`, `watermark-verify` and `frontier --targets` take `--detach`: queue a run and print
its id.

The same core functions the app uses; progress goes to stderr, results to stdout (`--json` for machines).
Every ε printed names its accountant.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlsec_core.attacks import ATTACKS, get_attack
from dlsec_core.attacks.norms import Norm
from dlsec_core.catalog import RECIPES, get_recipe
from dlsec_core.cli_federated import add_commands as add_federated_commands
from dlsec_core.cli_flags import ConfigFlags
from dlsec_core.cli_gradleak import add_commands as add_gradleak_commands
from dlsec_core.cli_runs import add_commands as add_run_commands
from dlsec_core.cli_runs import submit_detached
from dlsec_core.cli_scan import add_commands as add_scan_commands
from dlsec_core.cli_theft import add_commands as add_theft_commands
from dlsec_core.cli_workshop import add_commands as add_workshop_commands
from dlsec_core.config import spec_of
from dlsec_core.data.builtin import DATASETS
from dlsec_core.data.images import image_to_input
from dlsec_core.defenses.detection import SQUEEZER_SIZES
from dlsec_core.defenses.transforms import TRANSFORMS, Mode, defend, get_transform
from dlsec_core.errors import DlsecError, InvalidInputError
from dlsec_core.models.architectures import ARCHITECTURES
from dlsec_core.privacy.accounting import (
    ACCOUNTANTS,
    AccountingFailure,
    AccountingOutcome,
    epsilon_by_accountant,
    noise_by_accountant,
)
from dlsec_core.privacy.audit import AuditConfig
from dlsec_core.privacy.dp_sgd import TRAIN_ACCOUNTANTS, DPSGDRecipe, check_sampling, privacy_plan
from dlsec_core.privacy.inversion import InversionConfig
from dlsec_core.privacy.membership import LIRA_VARIANTS, MEMBERSHIP_ATTACKS, LiraConfig
from dlsec_core.privacy_spend import PrivacySpend
from dlsec_core.safe_load import spec_from_upload
from dlsec_core.store import Store
from dlsec_core.studies.audit import AuditStudy, AuditStudyConfig, AuditStudyResult
from dlsec_core.studies.base import StudyEvent, run_study
from dlsec_core.studies.catalog import get_study
from dlsec_core.studies.certification import CertificationStudyConfig, CertificationStudyResult
from dlsec_core.studies.detection import DetectionStudyConfig, DetectionStudyResult
from dlsec_core.studies.frontier import (
    FrontierPoint,
    FrontierStudy,
    FrontierStudyConfig,
    FrontierStudyResult,
    frontier_points,
)
from dlsec_core.studies.inversion import InversionStudy, InversionStudyConfig, InversionStudyResult
from dlsec_core.studies.membership import MembershipStudy, MembershipStudyConfig, MembershipStudyResult
from dlsec_core.studies.ownership import (
    OwnershipStudy,
    OwnershipStudyConfig,
    OwnershipStudyResult,
    SurvivalCheck,
)
from dlsec_core.studies.sweep import SweepStudyConfig
from dlsec_core.studies.train import TrainStudyConfig
from dlsec_core.text import plural
from dlsec_core.training.loop import TrainConfig, TrainEvent, run_to_end
from dlsec_core.training.recipes import Recipe
from dlsec_core.workflows import (
    CurveFindings,
    import_and_evaluate,
    resolve_dataset,
    store_uploaded_dataset,
    sweep_models,
    train_and_store,
)

MIN_PNG_SIDE = 112  # inversions of small images (8x8 digits) are upscaled to at least this, nearest-neighbour


def _eps_list(args: argparse.Namespace, points: int) -> list[float]:
    """The ε values: `--eps` as given, else `--points` (default `points`) evenly from 0 to `--eps-max` (0.3).
    `--eps` with `--eps-max` or `--points` is an error, not a flag silently dropped."""
    if args.eps:
        given = [
            flag
            for flag, value in (("--eps-max", args.eps_max), ("--points", args.points))
            if value is not None
        ]
        if given:
            raise InvalidInputError(
                f"--eps lists the ε values; {' and '.join(given)} would be ignored: drop them."
            )
        return _floats(args.eps, "ε values")
    eps_max = 0.3 if args.eps_max is None else args.eps_max
    return [
        round(float(e), 6) for e in np.linspace(0.0, eps_max, points if args.points is None else args.points)
    ]


def _setting_help(cls: type, name: str, note: str = "") -> str:
    """A hand-written flag's help from the setting's metadata (label, range), so the CLI states the range the
    validator checks; the value itself is checked by building the config, never by a second range in argparse."""
    spec = spec_of(cls, name)
    parts = (
        [spec.label]
        + ([spec.bounds.describe()] if spec.bounds is not None else [])
        + ([note] if note else [])
    )
    return "; ".join(parts).replace("%", "%%")


def _print(obj: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, indent=2, default=str))
    elif isinstance(obj, list):
        for row in obj:
            print("  ".join(f"{k}={v}" for k, v in row.items()))
    else:
        for k, v in obj.items():
            print(f"{k}: {v}")


def cmd_datasets(args: argparse.Namespace, store: Store) -> None:
    rows = [{"name": n, "source": "built-in", "description": d} for n, (d, _) in DATASETS.items()]
    rows += [{"name": n, "source": "uploaded", "description": ""} for n in store.list_datasets()]
    _print(rows, args.json)


def cmd_add_dataset(args: argparse.Namespace, store: Store) -> None:
    path = Path(args.file)
    data = store_uploaded_dataset(store, path.read_bytes(), path.name, args.name)
    info = {
        "name": data.name,
        "train": len(data.y_train),
        "test": len(data.y_test),
        "shape": data.input_shape,
    }
    _print({**info, "classes": data.num_classes}, args.json)


def _epoch_line(event: TrainEvent) -> str:
    """One epoch's progress line; ε names its accountant, e.g. "... test 0.850  ε=4.19 (rdp)"."""
    robust = event.metrics.get("robust_accuracy")
    extra = f"  robust {robust:.3f} ({event.metrics.get('robust_attack')})" if robust is not None else ""
    eps = event.metrics.get("epsilon")
    if eps is not None:
        extra += f"  ε={eps:.3g} ({event.metrics.get('accountant', 'accountant not named')})"
    keys = event.metrics.get("key_accuracy")
    if keys is not None:
        extra += f"  watermark keys {keys:.3f}"
    test = f"{event.test_accuracy:.3f}" if event.test_accuracy is not None else "-"
    return (
        f"epoch {event.epoch}/{event.epochs}  loss {event.loss:.4f}  train {event.train_accuracy:.3f}  "
        f"test {test}  {event.elapsed:.1f}s{extra}"
    )


def _train_config(args: argparse.Namespace, recipe: str) -> TrainConfig:
    """Epochs, batch size and learning rate as given, else the recipe's suggested ones, else the defaults."""
    return TrainConfig.suggested(
        RECIPES.get(recipe, Recipe), epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, seed=args.seed,
    )  # fmt: skip


def _given(**options: Any) -> dict[str, Any]:
    """The options the user gave on the command line (None = not given, so the config's own default applies)."""
    return {k: v for k, v in options.items() if v is not None}


def _show_epoch(event: TrainEvent) -> None:
    if event.kind == "epoch":
        print(_epoch_line(event), file=sys.stderr)


def cmd_train(args: argparse.Namespace, store: Store) -> None:
    if args.detach:
        study = TrainStudyConfig(
            dataset=args.dataset, arch=args.arch, name=args.name, recipe=args.recipe,
            recipe_params=_recipe_params(args),
            train=_given(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed),
        )  # fmt: skip
        submit_detached(store, "train", study, as_json=args.json)
        return
    config = _train_config(args, args.recipe)
    recipe = get_recipe(args.recipe, **_recipe_params(args))
    if isinstance(recipe, DPSGDRecipe) and not args.quiet:
        n = len(resolve_dataset(store, args.dataset).y_train)
        print(privacy_plan(recipe, n, config), file=sys.stderr)
    card = run_to_end(
        train_and_store(
            store, dataset=args.dataset, arch=args.arch, name=args.name, config=config, recipe=recipe
        ),
        None if args.quiet else _show_epoch,
    )
    _print(card.to_record(), args.json)


def cmd_list(args: argparse.Namespace, store: Store) -> None:
    _print([c.to_record() for c in store.list_models(dataset=args.dataset)], args.json)


def cmd_sweep(args: argparse.Namespace, store: Store) -> None:
    study = SweepStudyConfig(  # validated here either way: the same settings and ranges as a run
        model_ids=list(args.model), attack=args.attack, attack_params=_attack_params(args, norm=Norm.LINF),
        eps=_eps_list(args, 11), n_images=args.n, seed=args.seed, defense=args.defense,
        defense_params=_defense_params(args), sanity_checks=not args.no_checks,
    )  # fmt: skip
    if args.detach:
        submit_detached(store, "sweep", study, as_json=args.json)
        return
    attack, defense = study.build()
    records: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    for item in sweep_models(
        store, study.model_ids, attack, study.eps, n_images=study.n_images, seed=study.seed, defense=defense,
        sanity_checks=study.sanity_checks,
    ):  # fmt: skip
        if isinstance(item, CurveFindings):
            findings += item.to_records()
            for f in item.findings if not args.quiet else []:
                print(f"[{f.severity}] {item.model_name}: {f.title}. {f.sentence}", file=sys.stderr)
            continue
        rec = item.to_record()
        records.append(rec)
        if not args.quiet:
            print(f"{rec['model']}  eps {rec['eps']:.4g}  accuracy {rec['accuracy']:.3f}", file=sys.stderr)
    if args.json:
        print(json.dumps({"points": records, "findings": findings}, indent=2, default=str))
    else:
        print(f"# {records[-1]['attack'] if records else attack.describe()} (ε varies)")
        _print([{k: r[k] for k in ("model", "eps", "accuracy", "correct", "n")} for r in records], False)
        for rec in findings:
            print(f"# [{rec['severity']}] {rec['curve']}: {rec['title']}")


def cmd_attack(args: argparse.Namespace, store: Store) -> None:
    """Attack one image file. Without --label the attack moves away from the model's own prediction and
    "success" means the prediction changed; the output names the reference either way."""
    model, card = store.load_model(args.model)
    path = Path(args.image)
    x = image_to_input(path.read_bytes(), card.spec.input_shape, filename=path.name)
    attack = get_attack(args.attack, **_attack_params(args))
    if args.eps is not None:
        attack = attack.with_params(eps=float(args.eps))
    elif not attack.minimal:  # the app's default budgets; DeepFool and CW keep none
        attack = attack.with_params(eps=0.1 if attack.norm == Norm.LINF else 1.0)
    y = None if args.label is None else torch.tensor([args.label])
    target = None if args.target is None else torch.tensor([args.target])
    generator = torch.Generator().manual_seed(args.seed)
    record: dict[str, Any] = {"model": card.id, "attack": attack.describe()}
    if args.defense:
        defended = defend(model, get_transform(args.defense, **_defense_params(args)), mode=args.defense_mode)
        with defended.drawing_from(generator):
            found = attack(defended.attack_view(), x, y, target=target, generator=generator)
            result = attack.score(defended, x, found.x_adv, y, target=target)
        record["defense"] = defended.describe()
    else:
        result = attack(model, x, y, target=target, generator=generator)
    row = result.to_records()[0]
    record.update(row, reference=result.reference.describe(), already_wrong=bool(result.already_wrong[0]))
    record["target_is_reference"] = bool(result.target_is_reference[0])
    if args.out:
        width, height = _to_png(result.x_adv[0], Path(args.out))
        record["out"] = f"{args.out} ({width}x{height})"
    _print(record, args.json)


def _attack_params(args: argparse.Namespace, *, norm: str | None = None) -> dict[str, Any]:
    """The chosen attack's parameters from its generated flags (`--steps`, `--c`, ...; one it lacks is an error),
    then `--attack-param name=value`; `norm`: the command's default norm when `--norm` is not given."""
    params = args.attack_flags.given(args, args.attack)
    if norm is not None:
        params.setdefault("norm", norm)
    return {**params, **_kv(args.attack_param)}


def _defense_params(args: argparse.Namespace) -> dict[str, Any]:
    """The chosen input transform's parameters: `--defense-bits 3` etc., then `--defense-param name=value`."""
    return {**args.defense_flags.given(args, args.defense), **_kv(args.defense_param)}


def _recipe_params(args: argparse.Namespace) -> dict[str, Any]:
    """The chosen recipe's parameters: `--recipe-eps 0.1` etc., then `--recipe-param name=value`."""
    return {**args.recipe_flags.given(args, args.recipe), **_kv(args.recipe_param)}


def _kv(pairs: Sequence[str] | None) -> dict[str, Any]:
    """`["bits=3", "quality=50"]` -> {"bits": 3, "quality": 50} (numbers and true/false parsed)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise InvalidInputError(f"Parameters are given as name=value, got {pair!r}.")
        value: Any = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for cast in (int, float):
                try:
                    value = cast(raw)
                    break
                except ValueError:
                    pass
        out[key.strip()] = value
    return out


def cmd_detect(args: argparse.Namespace, store: Store) -> None:
    squeezers = [{"kind": "bit_depth", "size": args.bits}] + (
        [{"kind": "median", "size": args.median}] if args.median != 0 else []  # 1 is refused, not dropped
    )
    config = DetectionStudyConfig(
        model_id=args.model, squeezers=squeezers, fpr=args.fpr, attack=args.attack,
        attack_params=_attack_params(args, norm=Norm.LINF), eps=_eps_list(args, 6), n_images=args.n, seed=args.seed,
    )  # fmt: skip
    if args.detach:
        submit_detached(store, "detection", config, as_json=args.json)
        return

    def show(event: StudyEvent) -> None:
        p = event.payload
        if p is None or p.get("type") != "point":
            print(event.message, file=sys.stderr)
            return
        print(
            f"eps {p['eps']:.4g}  success {p['success_rate']:.3f}  detected {_rate(p['detection_rate'])}  "
            f"evaded {p['evaded_rate']:.3f}  auc {_rate(p['auc'])}",
            file=sys.stderr,
        )

    outcome = run_study(get_study("detection"), store, config, None if args.quiet else show)
    report = DetectionStudyResult.from_json(outcome.result)
    _print(outcome.result if args.json else {
        "detector": report.detector, "roc_auc": report.roc_auc, "roc_attack": report.roc_attack,
        "plain_evaded": report.plain.evaded_rate, "adaptive_evaded": report.adaptive.evaded_rate,
        "adaptive_attack": report.adaptive.attack,
        "findings": "; ".join(f"[{f.severity}] {f.title}" for f in report.findings) or "none",
    }, args.json)  # fmt: skip


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def cmd_certify(args: argparse.Namespace, store: Store) -> None:
    config = CertificationStudyConfig(
        model_id=args.model, sigma=args.sigma, n_images=args.n, n=args.samples, seed=args.seed
    )
    if args.detach:
        submit_detached(store, "certification", config, as_json=args.json)
        return

    def show(event: StudyEvent) -> None:
        p = event.payload or {}
        if p.get("type") == "certify":
            print(
                f"certified {p['done']}/{p['total']}  correct {p['correct']}  abstained {p['abstained']}",
                file=sys.stderr,
            )
        elif p.get("type") == "point":
            print(f"{p['attack']}  accuracy {p['accuracy']:.3f}", file=sys.stderr)

    outcome = run_study(get_study("certification"), store, config, None if args.quiet else show)
    if args.json:
        _print(outcome.result, True)
        return
    report = CertificationStudyResult.from_json(outcome.result)
    print(f"# {report.certify}")
    _print(report.certified, False)
    for f in report.findings:
        print(f"# [{f.severity}] {f.title}")


def cmd_import(args: argparse.Namespace, store: Store) -> None:
    data = Path(args.weights).read_bytes()
    spec = spec_from_upload(Path(args.spec).read_bytes()) if args.spec else None
    card = import_and_evaluate(
        store,
        data,
        spec,
        name=args.name or Path(args.weights).stem,
        dataset=args.dataset,
        filename=Path(args.weights).name,
    )
    _print(card.to_record(), args.json)


def cmd_export(args: argparse.Namespace, store: Store) -> None:
    weights, spec = store.export_model(args.model, Path(args.dest))
    _print({"weights": str(weights), "spec": str(spec)}, args.json)


def cmd_delete(args: argparse.Namespace, store: Store) -> None:
    store.delete_model(args.model)
    _print({"deleted": args.model}, args.json)


# -- privacy ---------------------------------------------------------------------------------------------------
def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(t) for t in text.replace(";", ",").split(",") if t.strip()]
    except ValueError:
        raise InvalidInputError(f"Give the {what} as numbers separated by commas, got {text!r}.") from None


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(t) for t in text.replace(";", ",").split(",") if t.strip()]
    except ValueError:
        raise InvalidInputError(
            f"Give the {what} as whole numbers separated by commas, got {text!r}."
        ) from None


def _accountants(values: Sequence[str] | None, default: Sequence[str]) -> list[str]:
    """`["rdp,prv", "gdp"]` -> ["rdp", "prv", "gdp"] (order kept, repeats dropped, names checked)."""
    names = [a.strip().lower() for v in values or default for a in v.split(",") if a.strip()]
    unknown = [a for a in names if a not in ACCOUNTANTS]
    if unknown or not names:
        raise InvalidInputError(
            f"Unknown accountant {', '.join(unknown) or '(none)'}; choose from {', '.join(ACCOUNTANTS)}."
        )
    return list(dict.fromkeys(names))


def cmd_privacy_budget(args: argparse.Namespace, store: Store) -> None:
    n = args.n if args.n is not None else len(resolve_dataset(store, args.dataset).y_train)
    batch, delta = args.batch_size, args.delta
    per_epoch = check_sampling(n, batch, delta)  # the refusals DP-SGD training makes
    if args.epochs < 1:
        raise InvalidInputError(f"Epochs must be at least 1, got {args.epochs}.")
    accountants = _accountants(args.accountant, ("rdp,prv",))
    q = batch / n
    steps = per_epoch * args.epochs
    sigma = args.sigma if args.sigma is not None or args.target_epsilon is not None else 1.0
    spends: dict[str, AccountingOutcome] = {}
    if sigma is not None:
        spends = epsilon_by_accountant(sigma, q, steps, delta, accountants)
        if not args.quiet:
            for acc, outcome in spends.items():
                eps = "no answer" if isinstance(outcome, AccountingFailure) else f"ε = {outcome.epsilon:.4g}"
                print(f"{acc}: {eps}", file=sys.stderr)
    needed: dict[str, AccountingOutcome] = {}
    if args.target_epsilon is not None:
        if "gdp" in accountants and not args.quiet:  # a CLT approximation, not an upper bound
            print("gdp: skipped for the target ε (an approximation, not an upper bound)", file=sys.stderr)
        needed = noise_by_accountant(
            args.target_epsilon, q, steps, delta, [a for a in accountants if a != "gdp"]
        )
    setting = {
        "n": n,
        "batch_size": batch,
        "epochs": args.epochs,
        "sample_rate": q,
        "steps": steps,
        "delta": delta,
    }
    if args.json:
        _print({
            **setting, "noise_multiplier": sigma, "epsilon": [o.to_record() for o in spends.values()],
            "target_epsilon": args.target_epsilon, "noise_for_target": [o.to_record() for o in needed.values()],
        }, True)  # fmt: skip
        return
    print(
        f"# q = {batch}/{n} = {q:.4g}, {plural(per_epoch, 'step')}/epoch × {plural(args.epochs, 'epoch')} = "
        f"{plural(steps, 'step')}, δ = {delta:g}"
    )
    for outcome in spends.values():
        if isinstance(outcome, AccountingFailure):
            print(f"σ = {sigma:g}: no ε from {outcome.describe()}")
        else:
            print(f"σ = {sigma:g}: {outcome.describe()}")
    for outcome in needed.values():
        if isinstance(outcome, AccountingFailure):
            print(f"no σ keeps ε ≤ {args.target_epsilon:g} by {outcome.describe()}")
        else:
            print(
                f"σ ≥ {outcome.noise_multiplier:.4g} keeps ε ≤ {args.target_epsilon:g} "
                f"({ACCOUNTANTS[outcome.accountant][1]}: reaches ε = {outcome.epsilon:.4g})"
            )


def _progress(quiet: bool) -> Callable[[StudyEvent], None] | None:
    """Print a study's progress to stderr, each distinct message once (steps within an epoch share one)."""
    if quiet:
        return None
    last = [""]

    def show(event: StudyEvent) -> None:
        if event.message != last[0]:
            last[0] = event.message
            print(event.message, file=sys.stderr)

    return show


def _privacy_row(spend: PrivacySpend | None) -> dict[str, Any]:
    if spend is None:
        return {"privacy": "no DP", "epsilon": None, "accountant": None, "delta": None}
    return {
        "privacy": spend.label(),
        "epsilon": spend.epsilon,
        "accountant": spend.accountant,
        "delta": spend.delta,
    }


def cmd_membership(args: argparse.Namespace, store: Store) -> None:
    lira = _given(shadows=args.shadows, variant=args.variant, epochs=args.shadow_epochs, seed=args.seed)
    if lira and args.attack != "lira":
        flags = {
            "shadows": "--shadows",
            "variant": "--variant",
            "epochs": "--shadow-epochs",
            "seed": "--seed",
        }
        given = ", ".join(flags[k] for k in lira)
        raise InvalidInputError(
            f"{given}: LiRA settings, which the {args.attack} attack does not use; add --attack lira."
        )
    config = MembershipStudyConfig(model_ids=list(args.models), attack=args.attack, n=args.n, lira=lira)
    if args.detach:
        submit_detached(store, "membership", config, as_json=args.json)
        return
    outcome = run_study(MembershipStudy(), store, config, _progress(args.quiet))
    rows = []
    for m in MembershipStudyResult.from_json(outcome.result).models:
        rows.append(
            {"model_id": m.model_id, "model": m.model_name, **_privacy_row(m.privacy), **m.to_record()}
        )
        if args.json:
            rows[-1] |= {"fpr": m.roc.fpr.tolist(), "tpr": m.roc.tpr.tolist()}
    if args.json:
        _print(rows, True)
        return
    keys = ("auc", "tpr_at_0_1pct", "tpr_at_1pct", "member_accuracy", "nonmember_accuracy")
    _print([
        {"model": r["model"], "privacy": r["privacy"],
         **{k: round(r[k], 4) if r[k] is not None else f"not measurable (needs {r[k + '_needs']} non-members)"
            for k in keys},
         "attack": r["description"]}
        for r in rows
    ], False)  # fmt: skip


def _to_png(image: Any, path: Path) -> tuple[int, int]:
    """Write one (C, H, W) float image in [0, 1] as a PNG, small ones upscaled (nearest-neighbour); its size."""
    from PIL import Image  # noqa: PLC0415 (only this command needs Pillow)

    arr = (image.clamp(0, 1).numpy() * 255).round().astype(np.uint8)  # (C, H, W) in 0..255
    channels = arr.shape[0]
    if channels == 3 or channels == 4:
        img = Image.fromarray(arr.transpose(1, 2, 0), "RGB" if channels == 3 else "RGBA")  # -> (H, W, C)
    else:  # one channel (or an unusual count, averaged): grayscale
        img = Image.fromarray(arr.mean(0).round().astype(np.uint8) if channels > 1 else arr[0], "L")
    factor = math.ceil(MIN_PNG_SIDE / min(img.size))
    if factor > 1:
        img = img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
    img.save(path, format="PNG")
    return img.size


def cmd_invert(args: argparse.Namespace, store: Store) -> None:
    config = InversionStudyConfig(
        model_ids=[args.model], classes=_ints(args.classes, "classes") if args.classes else None,
        inversion=args.inversion_flags.given(args, "inversion"),
    )  # fmt: skip
    if args.detach:
        submit_detached(store, "inversion", config, as_json=args.json)
        return
    if not args.out:
        raise InvalidInputError(
            "Give --out, the folder for the PNGs (or --detach to keep them with the run)."
        )
    outcome = run_study(InversionStudy(), store, config, _progress(args.quiet))
    result = InversionStudyResult.from_json(outcome.result)
    (inverted,) = result.models
    images = np.load(io.BytesIO(outcome.artifacts["images-0.npy"]), allow_pickle=False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    repeated = len(set(result.targets)) < len(result.targets)
    records = []
    for i, c in enumerate(inverted.classes):
        path = out / (f"{i:03d}_class_{c.target}.png" if repeated else f"class_{c.target}.png")
        width, height = _to_png(torch.from_numpy(images[i]), path)
        records.append({**vars(c), "file": str(path), "width": width, "height": height})
    if args.json:
        _print({"model_id": inverted.model_id, "model": inverted.model_name, "description": result.description,
                "seconds": inverted.seconds, "classes": records}, True)  # fmt: skip
        return
    print(f"# {result.description}")
    _print([
        {"class": r["target"], "p_target": round(r["p_target"], 4), "predicted": r["predicted"], "steps": r["steps"],
         "file": r["file"]}
        for r in records
    ], False)  # fmt: skip


def cmd_audit(args: argparse.Namespace, store: Store) -> None:
    config = AuditStudyConfig(
        dataset=args.dataset, arch=args.arch, recipe=args.recipe, recipe_params=_recipe_params(args),
        train=_given(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed),
        audit={**args.audit_flags.given(args, "audit"), "seed": args.seed},
        control=args.control,
    )  # fmt: skip
    if args.detach:
        submit_detached(store, "audit", config, as_json=args.json)
        return
    outcome = run_study(AuditStudy(), store, config, _progress(args.quiet))
    # the recipe under audit, then (--control) the positive control on the same canaries: no clipping, no noise
    labels = [args.recipe, "standard (control)"]
    runs = [(labels[i], r.bound) for i, r in enumerate(AuditStudyResult.from_json(outcome.result).runs)]
    if args.json:
        _print([{"run": label, **b.to_record(), "describe": b.describe()} for label, b in runs], True)
        return
    for label, b in runs:
        print(f"{label}: {b.describe()}; test accuracy {b.test_accuracy:.3f}")


def cmd_watermark_verify(args: argparse.Namespace, store: Store) -> None:
    config = OwnershipStudyConfig(
        owner_id=args.owner, suspect_id=args.suspect, prune=_floats(args.prune, "pruned fractions") if args.prune else [],
        steal=[a.strip() for a in args.steal.split(",") if a.strip()] if args.steal else [],
        **_given(null_models=args.nulls, null_epochs=args.null_epochs, alpha=args.alpha,
                 fine_tune_epochs=args.fine_tune_epochs, fine_tune_lr=args.fine_tune_lr, seed=args.seed,
                 fine_tune_data=args.fine_tune_data, steal_queries=args.steal_queries, steal_epochs=args.steal_epochs),
    )  # fmt: skip
    if args.detach:
        submit_detached(store, "ownership", config, as_json=args.json)
        return
    outcome = run_study(OwnershipStudy(), store, config, _progress(args.quiet))
    result = OwnershipStudyResult.from_json(outcome.result)
    rows = [
        {"model": f"{result.owner_name} (owner, positive control)", **result.owner.to_record()},
        {"model": f"{result.suspect_name} (suspect)", "test_accuracy": result.suspect_accuracy,
         **result.suspect.to_record()},
        *({"model": _survivor(s), "test_accuracy": s.test_accuracy, "fidelity": s.fidelity, **s.verdict.to_record()}
          for s in result.survival),
    ]  # fmt: skip
    if args.json:
        _print({**result.to_json(), "rows": rows}, True)
        return
    nulls = ", ".join(f"{n.key_accuracy:.2f}" for n in result.null_models)
    print(f"# {result.keys} {result.key_kind} keys; null models' key accuracy: {nulls}")
    print(f"owner {result.owner_name}: {result.owner.describe()}")
    print(
        f"suspect {result.suspect_name} (test accuracy {result.suspect_accuracy:.3f}): {result.suspect.describe()}"
    )
    for s in result.survival:
        print(f"{_survivor(s)} (test accuracy {s.test_accuracy:.3f}): {s.verdict.describe()}")


def _survivor(check: SurvivalCheck) -> str:
    """Which model a survival check verified: a modified suspect, or a copy stolen from the owner."""
    return (
        f"owner's copy {check.description}" if check.kind == "extraction" else f"suspect {check.description}"
    )


def _point_row(p: FrontierPoint) -> dict[str, Any]:
    privacy = f"ε={p.epsilon:.3g} ({p.accountant}, δ={p.delta:g})" if p.private else "no DP (ε=∞)"
    sigma = "-" if p.noise_multiplier is None else f"{p.noise_multiplier:.3g}"
    return {
        "model": p.name,
        "id": p.model_id,
        "privacy": privacy,
        "test_accuracy": round(p.accuracy, 4),
        "σ": sigma,
    }


def cmd_frontier(args: argparse.Namespace, store: Store) -> None:
    if not args.targets:
        unused = [
            flag for flag, given in (
                ("--epochs", args.epochs is not None), ("--batch-size", args.batch_size is not None),
                ("--lr", args.lr is not None), ("--seed", args.seed is not None),
                ("--accountant", args.accountant is not None), ("--max-grad-norm", args.max_grad_norm is not None),
                ("--delta", args.delta is not None), ("--no-baseline", args.no_baseline), ("--detach", args.detach),
            ) if given
        ]  # fmt: skip
        if unused:
            raise InvalidInputError(f"{', '.join(unused)} only apply with --targets (a sweep to run).")
        points = frontier_points(store, args.dataset, args.arch)
    else:
        config = FrontierStudyConfig(
            dataset=args.dataset, arch=args.arch, targets=_floats(args.targets, "target ε values"),
            train=_given(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed or 0),
            **_given(accountant=args.accountant, max_grad_norm=args.max_grad_norm, delta=args.delta),
            baseline=not args.no_baseline,
        )  # fmt: skip
        if args.detach:
            submit_detached(store, "frontier", config, as_json=args.json)
            return
        outcome = run_study(FrontierStudy(), store, config, _progress(args.quiet))
        points = FrontierStudyResult.from_json(outcome.result).points
    if args.json:
        _print([p.to_record() for p in points], True)
    elif not points:
        print(
            f"# no DP-SGD or standard {args.arch} models on {args.dataset} yet: give --targets to train some"
        )
    else:
        _print([_point_row(p) for p in points], False)


def _attack_flags(parser: argparse.ArgumentParser, *, norm: str | None = None) -> None:
    """One flag per attack hyperparameter, generated from the attacks' metadata (ε has the command's own flag)."""
    group = parser.add_argument_group(
        "attack parameters",
        "Generated from the attacks' settings; a flag the chosen --attack does not have is an error. "
        + (f"--norm defaults to {norm} here." if norm else "Defaults are the attack's own."),
    )
    flags = ConfigFlags(group, ATTACKS, skip=("eps",), what="attack")
    group.add_argument("--attack-param", action="append", help="attack parameter name=value (repeatable)")
    parser.set_defaults(attack_flags=flags)


def _defense_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("input-defense parameters", "Generated from the transforms' settings.")
    flags = ConfigFlags(group, TRANSFORMS, prefix="defense-", what="defense")
    group.add_argument("--defense-param", action="append", help="defense parameter name=value, e.g. bits=3")
    parser.set_defaults(defense_flags=flags)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dlsec_core", description="dlsec, the Deep Learning Security Lab."
    )
    p.add_argument("--home", help="store folder (default: $DLSEC_HOME or ~/.dlsec)")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.add_argument("--quiet", action="store_true", help="no progress on stderr")
        return sp

    add("datasets", "list the built-in and uploaded datasets").set_defaults(func=cmd_datasets)
    ad = add("add-dataset", "add your own .npz (x, y) or .zip of class folders")
    ad.add_argument("file")
    ad.add_argument("--name", required=True)
    ad.set_defaults(func=cmd_add_dataset)
    t = add("train", "train a model and store it")
    t.add_argument("--dataset", default="mnist5k", help="a built-in or added dataset (see `datasets`)")
    t.add_argument("--arch", default="cnn", choices=list(ARCHITECTURES))
    t.add_argument("--recipe", default="standard", choices=list(RECIPES))
    t.add_argument("--epochs", type=int, help=f"default: the recipe's suggested, else {TrainConfig.epochs}")
    t.add_argument(
        "--batch-size", type=int, help=f"default: the recipe's suggested, else {TrainConfig.batch_size}"
    )
    t.add_argument("--lr", type=float, help="default: the recipe's suggested, else 0.002")
    t.add_argument(
        "--recipe-param", action="append", help="recipe parameter name=value, e.g. eps=0.1 (repeatable)"
    )
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(recipe_flags=ConfigFlags(t, RECIPES, prefix="recipe-", what="recipe"))
    t.add_argument("--name")
    t.add_argument("--detach", action="store_true", help="queue as a run for the workers; print its id")
    t.set_defaults(func=cmd_train)
    ls = add("list", "list stored models")
    ls.add_argument("--dataset")
    ls.set_defaults(func=cmd_list)
    at = add("attack", "attack one image file (PNG/JPEG); without --label, away from the model's prediction")
    at.add_argument("--model", required=True)
    at.add_argument("image", help="a PNG or JPEG, converted like an upload in the app")
    at.add_argument(
        "--label", type=int, help="its true class (default: none, the model's prediction is used)"
    )
    at.add_argument("--target", type=int, help="a class to reach (targeted attack)")
    at.add_argument("--attack", default="pgd", choices=list(ATTACKS))
    at.add_argument("--eps", type=float, help="budget (default 0.1 L∞ / 1.0 L2; none for deepfool and cw)")
    _attack_flags(at)
    at.add_argument("--defense", choices=list(TRANSFORMS), help="attack the model behind an input transform")
    _defense_flags(at)
    at.add_argument("--defense-mode", type=Mode, default=Mode.ADAPTIVE, choices=list(Mode))
    at.add_argument("--out", help="write the adversarial image to this PNG")
    at.add_argument("--seed", type=int, default=0)
    at.set_defaults(func=cmd_attack)
    s = add("sweep", "accuracy vs. epsilon for one or more stored models")
    s.add_argument("--model", action="append", required=True, help="model id (repeat for several)")
    s.add_argument("--attack", default="fgsm", choices=list(ATTACKS))
    s.add_argument("--eps", help="comma-separated epsilons, e.g. 0,0.05,0.1 (not with --eps-max/--points)")
    s.add_argument("--eps-max", type=float, help="largest ε of an even grid from 0 (default 0.3)")
    s.add_argument("--points", type=int, help="ε values in the grid (default 11)")
    s.add_argument(
        "--n", type=int, default=1000, help=_setting_help(SweepStudyConfig, "n_images", "default 1000")
    )
    _attack_flags(s, norm="linf")
    s.add_argument("--defense", choices=list(TRANSFORMS), help="put the models behind an input transform")
    _defense_flags(s)
    s.add_argument("--no-checks", action="store_true", help="skip the extra sanity attacks (faster)")
    s.add_argument("--seed", type=int, default=0, help=_setting_help(SweepStudyConfig, "seed"))
    s.add_argument("--detach", action="store_true", help="queue as a run for the workers; print its id")
    s.set_defaults(func=cmd_sweep)
    dt = add("detect", "feature-squeezing detector: detection rate vs eps, ROC, detector-aware attack")
    dt.add_argument("--model", required=True)
    dt.add_argument("--attack", default="fgsm", choices=list(ATTACKS))
    dt.add_argument("--eps", help="comma-separated epsilons (not with --eps-max/--points)")
    dt.add_argument("--eps-max", type=float, help="largest ε of an even grid from 0 (default 0.3)")
    dt.add_argument("--points", type=int, help="ε values in the grid (default 6)")
    dt.add_argument(
        "--n", type=int, default=500, help=_setting_help(DetectionStudyConfig, "n_images", "default 500")
    )
    _attack_flags(dt, norm="linf")
    dt.add_argument(
        "--fpr", type=float, default=0.05, help=_setting_help(DetectionStudyConfig, "fpr", "default 0.05")
    )
    low, high = SQUEEZER_SIZES["bit_depth"]
    dt.add_argument("--bits", type=int, default=1, help=f"bit-depth squeezer: {low} to {high} bits per pixel")
    low, high = SQUEEZER_SIZES["median"]
    dt.add_argument(
        "--median", type=int, default=2, help=f"median squeezer window: {low} to {high}, or 0 = off"
    )
    dt.add_argument("--seed", type=int, default=0, help=_setting_help(DetectionStudyConfig, "seed"))
    dt.add_argument("--detach", action="store_true", help="queue as a run for the workers; print its id")
    dt.set_defaults(func=cmd_detect)
    ce = add("certify", "randomized smoothing: certified accuracy vs L2 radius, beside L2 PGD+EOT")
    ce.add_argument("--model", required=True)
    cert = CertificationStudyConfig
    ce.add_argument("--sigma", type=float, default=0.25, help=_setting_help(cert, "sigma", "default 0.25"))
    ce.add_argument("--n", type=int, default=50, help=_setting_help(cert, "n_images", "default 50"))
    ce.add_argument("--samples", type=int, default=500, help=_setting_help(cert, "n", "default 500"))
    ce.add_argument("--seed", type=int, default=0, help=_setting_help(cert, "seed"))
    ce.add_argument("--detach", action="store_true", help="queue as a run for the workers; print its id")
    ce.set_defaults(func=cmd_certify)
    im = add("import", "import a .safetensors model (pickle files are refused)")
    im.add_argument("weights")
    im.add_argument("--spec", help="spec JSON (not needed for files exported by dlsec)")
    im.add_argument("--name")
    im.add_argument("--dataset", default="mnist5k", help="the dataset it was trained for")
    im.set_defaults(func=cmd_import)
    ex = add("export", "write a model's .safetensors and spec JSON to a folder")
    ex.add_argument("model")
    ex.add_argument("dest")
    ex.set_defaults(func=cmd_export)
    de = add("delete", "delete a stored model")
    de.add_argument("model")
    de.set_defaults(func=cmd_delete)
    pb = add(
        "privacy-budget", "DP-SGD calculator: ε spent by σ, q = batch/N and epochs (or σ for a target ε)"
    )
    size = pb.add_mutually_exclusive_group()
    size.add_argument("--n", type=int, help="training set size N")
    size.add_argument("--dataset", default="mnist5k", help="take N from this dataset's train split")
    pb.add_argument("--batch-size", type=int, default=256, help="expected batch size")
    pb.add_argument("--epochs", type=int, default=8)
    pb.add_argument(
        "--sigma", type=float, help="noise multiplier σ (default 1, or none with --target-epsilon)"
    )
    pb.add_argument("--delta", type=float, default=1e-5, help="δ, well below 1/N")
    pb.add_argument(
        "--accountant",
        action="append",
        help=f"{', '.join(ACCOUNTANTS)} (repeatable or comma list; default rdp,prv)",
    )
    pb.add_argument("--target-epsilon", type=float, help="also print the σ needed to stay within this ε")
    pb.set_defaults(func=cmd_privacy_budget)
    mi = add("membership", "membership inference on stored models: ROC AUC, TPR at 0.1%% and 1%% FPR")
    mi.add_argument("models", nargs="+", metavar="MODEL_ID")
    mi.add_argument("--attack", default="loss", choices=list(MEMBERSHIP_ATTACKS))
    mi.add_argument(
        "--n", type=int, default=500, help=_setting_help(MembershipStudyConfig, "n", "default 500")
    )
    mi.add_argument("--shadows", type=int, help=_setting_help(LiraConfig, "shadows", "LiRA only; default 8"))
    mi.add_argument("--variant", choices=list(LIRA_VARIANTS), help="LiRA variant (LiRA only; default online)")
    mi.add_argument("--shadow-epochs", type=int, help=_setting_help(LiraConfig, "epochs", "LiRA only"))
    mi.add_argument("--seed", type=int, help=_setting_help(LiraConfig, "seed", "LiRA only; default 0"))
    mi.add_argument("--detach", action="store_true", help="queue as a run for the workers; print its id")
    mi.set_defaults(func=cmd_membership)
    iv = add("invert", "MI-Face model inversion: one PNG per class")
    iv.add_argument("model", metavar="MODEL_ID")
    iv.add_argument("--out", help="folder for the PNGs (not with --detach: they stay with the run)")
    iv.add_argument("--classes", help="comma-separated classes (default: all)")
    group = iv.add_argument_group("inversion settings", "Generated from the inversion's settings.")
    iv.set_defaults(inversion_flags=ConfigFlags(group, {"inversion": InversionConfig}, what="inversion"))
    iv.add_argument("--detach", action="store_true", help="queue as a run for the workers; print its id")
    iv.set_defaults(func=cmd_invert)
    au = add("audit", "one-run privacy audit (Steinke et al. 2023): measured lower bound on ε vs the claim")
    au.add_argument("--dataset", default="mnist5k")
    au.add_argument("--arch", default="cnn", choices=list(ARCHITECTURES))
    au.add_argument("--recipe", default="dp-sgd", choices=list(RECIPES))
    au.add_argument("--recipe-param", action="append", help="recipe parameter name=value (repeatable)")
    au.set_defaults(recipe_flags=ConfigFlags(au, RECIPES, prefix="recipe-", what="recipe"))
    au.add_argument("--epochs", type=int, help="default: the recipe's suggested")
    au.add_argument("--batch-size", type=int, help="default: the recipe's suggested")
    au.add_argument("--lr", type=float, help="default: the recipe's suggested")
    group = au.add_argument_group(
        "audit settings", "Generated from the audit's settings (--seed sets its seed too)."
    )
    au.set_defaults(audit_flags=ConfigFlags(group, {"audit": AuditConfig}, skip=("seed",), what="audit"))
    au.add_argument("--seed", type=int, default=0, help="training, canaries and coin flips")
    au.add_argument("--control", action="store_true", help="also audit standard training (positive control)")
    au.add_argument("--detach", action="store_true", help="queue as a run for the workers; print its id")
    au.set_defaults(func=cmd_audit)
    fr = add(
        "frontier", "privacy-utility frontier: train one DP model per target ε, or list the stored points"
    )
    fr.add_argument("--dataset", default="mnist5k")
    fr.add_argument("--arch", default="cnn", choices=list(ARCHITECTURES))
    fr.add_argument("--targets", help="comma-separated target ε values (none: list the stored frontier)")
    fr.add_argument("--epochs", type=int, help="default: DP-SGD's suggested")
    fr.add_argument("--batch-size", type=int, help="default: DP-SGD's suggested")
    fr.add_argument("--lr", type=float, help="default: DP-SGD's suggested")
    fr.add_argument("--seed", type=int, help="default 0")
    front = FrontierStudyConfig
    fr.add_argument("--accountant", choices=list(TRAIN_ACCOUNTANTS), help="default rdp")
    fr.add_argument("--max-grad-norm", type=float, help=_setting_help(front, "max_grad_norm", "default 1"))
    fr.add_argument("--delta", type=float, help=_setting_help(front, "delta", "default 1e-5"))
    fr.add_argument("--no-baseline", action="store_true", help="do not train the non-private baseline")
    fr.add_argument("--detach", action="store_true", help="queue as a run for the workers; print its id")
    fr.set_defaults(func=cmd_frontier)
    add_theft_commands(add)
    add_scan_commands(add)
    add_federated_commands(add)
    add_workshop_commands(add)
    add_gradleak_commands(add)
    wv = add(
        "watermark-verify",
        "does a suspect model carry a watermarked owner's trigger-set keys? (Adi et al. 2018; p-values against "
        "null models trained here)",
    )
    wv.add_argument("--owner", required=True, help="the owner's model id (trained with --recipe watermark)")
    wv.add_argument("--suspect", required=True, help="the suspect model's id")
    wv.add_argument("--nulls", type=int, help="null models to train, without the watermark (default 4)")
    wv.add_argument("--null-epochs", type=int, help="their epochs (default: the owner's)")
    wv.add_argument("--alpha", type=float, help="significance level (default 0.001)")
    wv.add_argument(
        "--fine-tune-epochs", type=int, help="also verify the suspect fine-tuned this long (0 = no)"
    )
    wv.add_argument("--fine-tune-lr", type=float, help="its learning rate (default 0.001)")
    wv.add_argument(
        "--fine-tune-data",
        choices=["held-out", "train"],
        help="held-out (half the test split, default) or train",
    )
    wv.add_argument("--prune", help="comma-separated fractions: also verify the suspect pruned this much")
    wv.add_argument(
        "--steal",
        help="comma-separated extraction attacks: also steal the owner's model and verify each copy",
    )
    wv.add_argument("--steal-queries", type=int, help="queries per stolen copy (default 1000)")
    wv.add_argument("--steal-epochs", type=int, help="the stolen copies' training epochs (default 10)")
    wv.add_argument("--seed", type=int, help="null models and fine-tuning (default 0)")
    wv.add_argument("--detach", action="store_true", help="queue as a run for the workers; print its id")
    wv.set_defaults(func=cmd_watermark_verify)
    add_run_commands(add)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        store = Store(args.home)
        args.func(args, store)
    except DlsecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err.strerror or err}: {getattr(err, 'filename', '')}", file=sys.stderr)
        return 2
    return 0
