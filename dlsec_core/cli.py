"""Command-line interface: `python -m dlsec_core {datasets,add-dataset,train,list,sweep,detect,certify,import,export,delete}`.

The same core functions the app uses; progress goes to stderr, results to stdout (`--json` for machines).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlsec_core.attacks import ATTACKS, get_attack
from dlsec_core.data.builtin import DATASETS
from dlsec_core.defense_studies import certification_study, detection_study
from dlsec_core.defenses.detection import FeatureSqueezingDetector, Squeezer
from dlsec_core.defenses.smoothing import CertifyEvent
from dlsec_core.defenses.transforms import TRANSFORMS, get_transform
from dlsec_core.errors import DlsecError, InvalidInputError
from dlsec_core.models.architectures import ARCHITECTURES
from dlsec_core.safe_load import spec_from_upload
from dlsec_core.store import Store
from dlsec_core.training.loop import TrainConfig
from dlsec_core.training.recipes import RECIPES, get_recipe
from dlsec_core.workflows import (
    CurveFindings,
    import_and_evaluate,
    store_uploaded_dataset,
    sweep_models,
    train_and_store,
)


def _eps_list(args: argparse.Namespace) -> list[float]:
    if args.eps:
        return [float(e) for e in args.eps.split(",") if e.strip()]
    return [round(float(e), 6) for e in np.linspace(0.0, args.eps_max, args.points)]


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


def cmd_train(args: argparse.Namespace, store: Store) -> None:
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    gen = train_and_store(
        store,
        dataset=args.dataset,
        arch=args.arch,
        name=args.name,
        config=config,
        recipe=get_recipe(args.recipe, **_kv(args.recipe_param)),
    )
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            card = stop.value
            break
        if event.kind == "epoch" and not args.quiet:
            robust = event.metrics.get("robust_accuracy")
            extra = (
                f"  robust {robust:.3f} ({event.metrics.get('robust_attack')})" if robust is not None else ""
            )
            print(
                f"epoch {event.epoch}/{event.epochs}  loss {event.loss:.4f}  train {event.train_accuracy:.3f}  "
                f"test {event.test_accuracy:.3f}  {event.elapsed:.1f}s{extra}",
                file=sys.stderr,
            )
    _print(card.to_record(), args.json)


def cmd_list(args: argparse.Namespace, store: Store) -> None:
    _print([c.to_record() for c in store.list_models(dataset=args.dataset)], args.json)


def cmd_sweep(args: argparse.Namespace, store: Store) -> None:
    attack = get_attack(args.attack, **_attack_params(args))
    defense = get_transform(args.defense, **_kv(args.defense_param)) if args.defense else None
    records: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    for item in sweep_models(
        store, args.model, attack, _eps_list(args), n_images=args.n, seed=args.seed, defense=defense,
        sanity_checks=not args.no_checks,
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


def _attack_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {"norm": args.norm}
    if args.attack == "pgd":
        params.update(steps=args.steps, random_start=not args.no_random_start)
        if args.alpha is not None:
            params["alpha"] = args.alpha
    return {**params, **_kv(args.attack_param)}


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
    squeezers = (Squeezer("bit_depth", args.bits),) + (
        (Squeezer("median", args.median),) if args.median >= 2 else ()
    )
    detector = FeatureSqueezingDetector(squeezers=squeezers, fpr=args.fpr)
    attack = get_attack(args.attack, **_attack_params(args))
    gen = detection_study(
        store, args.model, detector=detector, attack=attack, eps_values=_eps_list(args), n_images=args.n
    )
    while True:
        try:
            point = next(gen)
        except StopIteration as stop:
            report = stop.value
            break
        if not args.quiet:
            print(
                f"eps {point.eps:.4g}  success {point.success_rate:.3f}  detected {point.detection_rate:.3f}  "
                f"evaded {point.evaded_rate:.3f}  auc {point.auc:.3f}",
                file=sys.stderr,
            )
    _print(dataclasses.asdict(report) if args.json else {
        "detector": report.detector, "roc_auc": report.roc_auc, "roc_attack": report.roc_attack,
        "plain_evaded": report.plain["evaded_rate"], "adaptive_evaded": report.adaptive["evaded_rate"],
        "adaptive_attack": report.adaptive["attack"],
    }, args.json)  # fmt: skip


def cmd_certify(args: argparse.Namespace, store: Store) -> None:
    gen = certification_study(
        store, args.model, sigma=args.sigma, n_images=args.n, n=args.samples, seed=args.seed
    )
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            report = stop.value
            break
        if isinstance(event, CertifyEvent) and not args.quiet:
            print(
                f"certified {event.done}/{event.total}  correct {event.correct}  abstained {event.abstained}",
                file=sys.stderr,
            )
    if args.json:
        _print(dataclasses.asdict(report), True)
    else:
        print(f"# {report.certify}")
        _print(report.certified, False)


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
    t.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    t.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    t.add_argument("--lr", type=float, default=TrainConfig.lr)
    t.add_argument(
        "--recipe-param", action="append", help="recipe parameter name=value, e.g. eps=0.1 (repeatable)"
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--name")
    t.set_defaults(func=cmd_train)
    ls = add("list", "list stored models")
    ls.add_argument("--dataset")
    ls.set_defaults(func=cmd_list)
    s = add("sweep", "accuracy vs. epsilon for one or more stored models")
    s.add_argument("--model", action="append", required=True, help="model id (repeat for several)")
    s.add_argument("--attack", default="fgsm", choices=list(ATTACKS))
    s.add_argument("--norm", default="linf", choices=["linf", "l2"])
    s.add_argument("--eps", help="comma-separated epsilons, e.g. 0,0.05,0.1 (overrides --eps-max/--points)")
    s.add_argument("--eps-max", type=float, default=0.3)
    s.add_argument("--points", type=int, default=11)
    s.add_argument("--n", type=int, default=1000, help="number of test images")
    s.add_argument("--steps", type=int, default=40, help="PGD steps")
    s.add_argument("--alpha", type=float, help="PGD step size (default 2.5*eps/steps)")
    s.add_argument("--no-random-start", action="store_true")
    s.add_argument("--attack-param", action="append", help="extra attack parameter name=value (repeatable)")
    s.add_argument("--defense", choices=list(TRANSFORMS), help="put the models behind an input transform")
    s.add_argument("--defense-param", action="append", help="defense parameter name=value, e.g. bits=3")
    s.add_argument("--no-checks", action="store_true", help="skip the extra sanity attacks (faster)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_sweep)
    dt = add("detect", "feature-squeezing detector: detection rate vs eps, ROC, detector-aware attack")
    dt.add_argument("--model", required=True)
    dt.add_argument("--attack", default="fgsm", choices=list(ATTACKS))
    dt.add_argument("--norm", default="linf", choices=["linf", "l2"])
    dt.add_argument("--eps", help="comma-separated epsilons")
    dt.add_argument("--eps-max", type=float, default=0.3)
    dt.add_argument("--points", type=int, default=6)
    dt.add_argument("--n", type=int, default=500, help="held-out test images")
    dt.add_argument("--steps", type=int, default=40)
    dt.add_argument("--alpha", type=float)
    dt.add_argument("--no-random-start", action="store_true")
    dt.add_argument("--attack-param", action="append")
    dt.add_argument("--fpr", type=float, default=0.05, help="false-positive rate the threshold is set for")
    dt.add_argument("--bits", type=int, default=1, help="bit-depth squeezer")
    dt.add_argument("--median", type=int, default=2, help="median squeezer window (0 = off)")
    dt.set_defaults(func=cmd_detect)
    ce = add("certify", "randomized smoothing: certified accuracy vs L2 radius, beside L2 PGD+EOT")
    ce.add_argument("--model", required=True)
    ce.add_argument("--sigma", type=float, default=0.25)
    ce.add_argument("--n", type=int, default=50, help="test images")
    ce.add_argument("--samples", type=int, default=500, help="noise samples per image")
    ce.add_argument("--seed", type=int, default=0)
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
