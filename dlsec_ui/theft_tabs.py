"""The Model theft page's four tabs (Steal, Defend, Own, Transfer): their forms, runs and captions.

The page (app_pages/theft.py) only lays out the tabs and calls these; every number comes from a stored run's
result (`ExtractionStudyResult`, `OwnershipStudyResult`, sweep records), never recomputed here.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from dlsec_core.attacks.base import get_attack
from dlsec_core.errors import DlsecError
from dlsec_core.runs import RunRecord
from dlsec_core.store import ModelCard
from dlsec_core.studies.ownership import OwnershipStudyConfig, OwnershipStudyResult
from dlsec_core.studies.theft import ExtractionStudyConfig, ExtractionStudyResult
from dlsec_core.theft.api import OUTPUT_POLICIES
from dlsec_core.theft.extraction import EXTRACTION_ATTACKS, PoolKind
from dlsec_core.theft.prada import PradaResult
from dlsec_core.theft.watermark import WatermarkVerdict
from dlsec_ui import figures, state
from dlsec_ui.resources import get_model, get_store
from dlsec_ui.runs import (
    attach,
    event_records,
    get_runs,
    redraw_if_ended,
    refresh,
    render_run,
    show_run,
    submit_run,
    submit_sweep,
)
from dlsec_ui.widgets import IN_URL, config_form, id_selectbox, model_label, show_error

BUDGETS = [65, 100, 250, 500, 1000, 2000, 4000]
PRUNE = [0.3, 0.5, 0.7, 0.9]
TRANSFER_EPS = [0.0, 0.02, 0.05, 0.1, 0.2, 0.3]


# -- Steal -----------------------------------------------------------------------------------------------------
def _pool_inputs(uses_pool: bool) -> tuple[PoolKind, str]:
    """The pool radio and, for the uploaded pool, which of the user's datasets."""
    pool = PoolKind(
        st.radio(
            "Query pool",
            [p.value for p in PoolKind],
            horizontal=True,
            key=state.THEFT_POOL,
            **IN_URL,
            disabled=not uses_pool,
            help="; ".join(f"{p.value}: {p.describe()}" for p in PoolKind),
        )  # fmt: skip
    )
    if pool is not PoolKind.UPLOADED or not uses_pool:
        return pool, ""
    mine = get_store().list_datasets()
    if not mine:
        st.info("No uploaded dataset yet: upload one on the Models page ('Upload a dataset').")
        return pool, ""
    name = st.selectbox("Your dataset (labels withheld, resized to the victim's input)", mine,
                        key=state.THEFT_POOL_DATASET, **IN_URL)  # fmt: skip
    return pool, str(name)


def steal_form(card: ModelCard) -> None:
    """The Steal tab's form: policy, attack, pool, budgets, rate limit; queues an extraction run."""
    with st.container(border=True):
        c1, c2 = st.columns(2)
        with c1:
            policy = st.selectbox("What the API answers", list(OUTPUT_POLICIES), key=state.THEFT_POLICY, **IN_URL,
                                  format_func=lambda n: OUTPUT_POLICIES[n].title)  # fmt: skip
            policy_params = config_form(OUTPUT_POLICIES[policy], prefix=state.THEFT_FORM)
            if OUTPUT_POLICIES[policy].paper:
                st.caption(f"After {OUTPUT_POLICIES[policy].paper}.")
            r1, r2 = st.columns(2)
            rate = r1.number_input("Rate limit: answers per window (0 = none)", 0, 10**9, 0, 10,
                                   key=state.THEFT_RATE_LIMIT, **IN_URL)  # fmt: skip
            window = r2.number_input(
                "Window (seconds)", 1.0, 86_400.0, 60.0, 10.0, key=state.THEFT_RATE_WINDOW, **IN_URL
            )
        with c2:
            names = list(EXTRACTION_ATTACKS)
            attack = st.selectbox("Attack", names, index=names.index("knockoff"), key=state.THEFT_ATTACK, **IN_URL,
                                  format_func=lambda n: EXTRACTION_ATTACKS[n].title)  # fmt: skip
            chosen = EXTRACTION_ATTACKS[attack]
            st.caption(f"{chosen.paper}. The attacker knows {chosen.knowledge}.")
            pool, pool_dataset = _pool_inputs(chosen.uses_pool)
            with st.expander("Attack settings"):
                attack_params = config_form(chosen, prefix=state.THEFT_FORM)
        budgets = st.multiselect("Query budgets (one curve point each)", BUDGETS, default=[250, 500, 1000],
                                 key=state.THEFT_BUDGETS, **IN_URL)  # fmt: skip
        keep = st.checkbox(
            "Store the stolen model (a transfer-attack source later)", key=state.THEFT_STORE, **IN_URL
        )
        if st.button("Steal", type="primary", key=state.THEFT_BUTTON):
            try:
                config = ExtractionStudyConfig(
                    model_id=card.id, policy=policy, policy_params=policy_params, attack=attack,
                    attack_params=attack_params, pool=pool if chosen.uses_pool else PoolKind.SAME,
                    pool_dataset=pool_dataset if chosen.uses_pool else "", budgets=sorted(budgets),
                    seed=int(st.session_state.get(state.SEED, 0)), store_surrogate=keep, rate_limit=int(rate),
                    rate_window_s=float(window),
                )  # fmt: skip
                st.session_state[state.THEFT_JOB] = submit_run("extraction", config).id
            except DlsecError as err:
                show_error(err)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:,.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:,.1f} minutes"
    return f"{seconds / 3600:,.1f} hours"


def throttle_story(report: ExtractionStudyResult) -> str:
    """What the rate limit cost the attacker, in the run's numbers ('' without a limit)."""
    if not report.rate_limit:
        return ""
    return (
        f"Rate limit {report.rate_limit}: the attacker waited {_duration(report.throttled_s)} on the API's clock "
        f"(simulated: the run does not sleep); {report.throttled_queries:,} of its {report.answered:,} answers came "
        f"only after a wait, {report.rate_limit_refusals:,} batches were refused first."
    )


def render_theft(run: RunRecord) -> None:
    if run.result is None:
        points = event_records(run, "point")
        if points:
            st.plotly_chart(figures.extraction_curve(points), key=state.THEFT_CHART)
        st.caption(f"{len(points)} of {len(run.config['budgets'])} budget points so far.")
        return
    report = ExtractionStudyResult.from_json(run.result)
    st.plotly_chart(
        figures.extraction_curve([p.to_record() for p in report.points], report.victim_accuracy),
        key=state.THEFT_CHART,
    )
    last = report.points[-1]
    st.caption(
        f"{report.attack_description} Pool: {report.pool_description}. API: {report.policy_description}; honest "
        f"users' accuracy through it {report.api_accuracy:.1%} (the victim alone: {report.victim_accuracy:.1%}). "
        f"After {last.queries:,} answers the stolen model agrees with the victim on {last.fidelity:.1%} of the test "
        f"images and is right on {last.accuracy:.1%}; the API's log shows {report.answered:,} answers to the "
        "attacker, never more than its budget."
    )
    if report.rate_limit:
        st.caption(throttle_story(report))
    if report.surrogate_model_id:
        st.caption(f"Stored as model {report.surrogate_model_id} (see Models).")


def show_theft(run: RunRecord | None) -> None:
    """The followed extraction run: its state line and curve, polled while it runs."""
    show_run(run, key=state.THEFT_JOB, draw=render_theft)


# -- Defend ----------------------------------------------------------------------------------------------------
MISSED = (  # a synthetic-query run that PRADA did not catch
    "PRADA missed these synthetic queries: it needs the λ step to be small next to the distances between natural "
    "images of the dataset (on 8x8 digits it often is not; try a smaller λ or a larger image). "
)


def prada_story(trace: PradaResult, who: str) -> str:
    """One client's outcome in numbers: where the alarm fired and its W, or the lowest W when it never did."""
    tests = trace.tests
    if not tests:
        return f"{who}: {len(trace.steps):,} queries, too few for a test"
    if trace.first_alarm is not None:
        w = dict(tests)[trace.first_alarm]
        return f"{who}: alarm at query {trace.first_alarm + 1:,} of {len(trace.steps):,} (W = {w:.3f} < δ)"
    lowest = min(w for _, w in tests)
    return f"{who}: no alarm in {len(tests)} tests over {len(trace.steps):,} queries (lowest W = {lowest:.3f} ≥ δ)"


def defend_tab(run: RunRecord | None) -> None:
    """PRADA on the shown extraction run's attacker and benign client."""
    if run is None or run.result is None:
        st.info(
            "Steal the current model first (Steal tab): PRADA watches that run's query stream when it ends."
        )
        return
    report = ExtractionStudyResult.from_json(run.result)
    traces = report.prada_results()
    if traces is None:
        st.info("This extraction run was made before detection existed: steal again to see PRADA on it.")
        return
    attacker, benign = traces
    st.caption(
        f"PRADA (Juuti et al. 2019) on the API's log of run {run.id}: for each client, each query's smallest L2 "
        f"distance to earlier queries of the class the API answered; every 10 queries a Shapiro-Wilk test of "
        f"those distances, alarm when W < δ = {attacker.delta:g}. Synthetic queries (Jacobian-based augmentation, "
        "Papernot et al. 2017) step a little away from earlier ones, their distances are far from normal and get "
        "caught; natural images, as Knockoff sends, look like a benign client's and slip past (the paper's own "
        "caveat): steal with both attacks and compare."
    )
    c1, c2 = st.columns(2)
    with c1:
        st.plotly_chart(
            figures.prada_distances(attacker, f"attacker ({report.attack})"), key=state.DEFEND_CHART
        )
    with c2:
        st.plotly_chart(
            figures.prada_distances(benign, "benign client (test images)"), key=state.DEFEND_BENIGN_CHART
        )
    caught = "caught" if attacker.alarmed else "not caught"
    false_alarm = "a false alarm" if benign.alarmed else "no false alarm"
    st.caption(
        f"**The {report.attack} attacker was {caught}; the benign client raised {false_alarm}.** "
        f"{prada_story(attacker, 'Attacker')}. {prada_story(benign, 'Benign client sending ordinary test images')}. "
        f"{MISSED if report.attack == 'jacobian' and not attacker.alarmed else ''}"
        "One benign client is one sample, not a false-alarm rate."
    )
    if report.rate_limit:
        st.caption(throttle_story(report))


# -- Own -------------------------------------------------------------------------------------------------------
def own_form(card: ModelCard) -> None:
    """The Own tab's form: owner, null models, survival checks (fine-tuning, pruning, stolen copies)."""
    st.caption(OWN_CAPTION)
    owners = {c.id: c for c in get_store().list_models() if c.recipe == "watermark"}
    if not owners:
        st.info(
            "No watermarked model yet: train one on the Models page with the recipe 'Watermark (trigger set, Adi et al.)'."
        )
        return
    with st.container(border=True):
        owner = id_selectbox("Owner (trained with the watermark)", list(owners), key=state.OWN_OWNER,
                             format_func=lambda i: model_label(owners[i]))  # fmt: skip
        st.caption(f"Suspect: the current model, **{card.name}** (change it in the sidebar).")
        params = config_form(OwnershipStudyConfig, prefix=state.OWN_FORM, skip=("seed",))
        prune = st.multiselect("Also verify the suspect pruned by", PRUNE, key=state.OWN_PRUNE, **IN_URL,
                               format_func=lambda f: f"{f:.0%} of its weights")  # fmt: skip
        steal = st.multiselect(
            "Also steal the owner's model and verify each stolen copy", list(EXTRACTION_ATTACKS),
            key=state.OWN_STEAL, **IN_URL, format_func=lambda n: EXTRACTION_ATTACKS[n].title,
            help="Full-probability API, the owner's training images as the pool (labels withheld), the owner's "
            "architecture as the surrogate.",
        )  # fmt: skip
        if st.button("Verify ownership", type="primary", key=state.OWN_BUTTON):
            try:
                config = OwnershipStudyConfig(
                    owner_id=owner, suspect_id=card.id, prune=sorted(prune), steal=list(steal),
                    seed=int(st.session_state.get(state.SEED, 0)), **params,
                )  # fmt: skip
                st.session_state[state.OWN_JOB] = submit_run("ownership", config).id
            except DlsecError as err:
                show_error(err)


def copy_rows(report: OwnershipStudyResult) -> list[dict[str, Any]]:
    """One row per verified model: the owner (positive control), the suspect, and every survival check."""
    rows: list[tuple[str, WatermarkVerdict, float | None, float | None]] = [
        ("owner (positive control)", report.owner, None, None),
        (f"suspect: {report.suspect_name}", report.suspect, report.suspect_accuracy, None),
    ]
    rows += [(s.label or s.kind, s.verdict, s.test_accuracy, s.fidelity) for s in report.survival]
    return [
        {"model": name, "keys answered": f"{v.hits} / {report.keys}", "p-value": v.p_value,
         "watermark found": "yes" if v.verified else "no",
         "test accuracy": None if acc is None else round(acc, 4),
         "fidelity to owner": None if fid is None else round(fid, 4)}
        for name, v, acc, fid in rows
    ]  # fmt: skip


def render_ownership(run: RunRecord) -> None:
    if run.result is None:
        st.caption(
            f"{len(event_records(run, 'null'))} null models trained, "
            f"{len(event_records(run, 'survival'))} survival checks done so far."
        )
        return
    report = OwnershipStudyResult.from_json(run.result)
    st.plotly_chart(figures.watermark_key_accuracy(report), key=state.OWN_CHART)
    verdict = report.suspect
    found = "carries" if verdict.verified else "does not carry"
    st.caption(
        f"**{report.suspect_name} {found} the watermark of {report.owner_name}**: {verdict.hits} of "
        f"{report.keys} keys answered with the owner's labels (chance {verdict.chance:.0%}), binomial p = "
        f"{verdict.p_value:.2g} against {len(report.null_models)} null models; the owner itself, the positive "
        f"control, answers {report.owner.hits} of {report.keys}."
    )
    st.dataframe(copy_rows(report), key=state.OWN_TABLE, hide_index=True,
                 column_config={"p-value": st.column_config.NumberColumn(format="%.2e")})  # fmt: skip
    stolen = [s for s in report.survival if s.kind == "extraction"]
    lost = [s for s in stolen if not s.verdict.verified]
    if stolen:
        st.caption(
            f"{len(lost)} of {len(stolen)} stolen copies lost the watermark: a thief querying natural images never "
            "asks about the keys, so the copy learns the task but not the trigger set (Lukas et al. 2022 find the "
            "same). Fine-tuning and pruning start from the owner's weights instead; see their rows."
        )
    else:
        st.caption(
            "Extraction usually loses the watermark (Lukas et al. 2022): tick attacks under 'Also steal the "
            "owner's model' to measure it on stolen copies."
        )


OWN_CAPTION = (
    "Adi et al. 2018: the owner trains with a trigger set of secret keys (noise images with random labels); a "
    "suspect model that answers the keys far above chance was derived from the owner's. Null models trained "
    "without the watermark show what chance looks like; the p-value is a binomial tail at their agreement rate."
)


def show_ownership(run: RunRecord | None) -> None:
    """The followed ownership run: verdicts, chart and the table of copies, polled while it runs."""
    show_run(run, key=state.OWN_JOB, draw=render_ownership)


# -- Transfer --------------------------------------------------------------------------------------------------
def _transfer_form(card: ModelCard, stolen: dict[str, ModelCard]) -> None:
    with st.container(border=True):
        source = id_selectbox("Stolen model (the transfer source)", list(stolen), key=state.TRANSFER_SURROGATE,
                              format_func=lambda i: model_label(stolen[i]))  # fmt: skip
        eps = st.multiselect("ε values (L∞, pixel units)", TRANSFER_EPS, default=[0.0, 0.05, 0.1, 0.2],
                             key=state.TRANSFER_EPS, **IN_URL)  # fmt: skip
        n_images = st.slider("Test images", 50, 1000, 200, 50, key=state.TRANSFER_IMAGES, **IN_URL)
        if st.button("Attack the victim with the stolen model", type="primary", key=state.TRANSFER_BUTTON):
            try:
                seed = int(st.session_state.get(state.SEED, 0))
                st.session_state[state.TRANSFER_JOB] = submit_sweep(
                    [card.id], get_attack("transfer", surrogate=get_model(source)[0]), sorted(eps), n_images,
                    seed=seed, surrogate_id=source,
                )  # fmt: skip
                st.session_state[state.TRANSFER_WHITEBOX_JOB] = submit_sweep(
                    [card.id], get_attack("pgd"), sorted(eps), n_images, seed=seed
                )
            except DlsecError as err:
                show_error(err)


def latest_pair(victim: str, source: str | None) -> tuple[RunRecord | None, RunRecord | None]:
    """The sweeps this session queued; else the newest finished transfer sweep on `victim` from `source` and the
    newest finished white-box PGD sweep of the victim on the same ε values and images."""
    followed = (attach(state.TRANSFER_JOB, study="sweep", from_url=False),
                attach(state.TRANSFER_WHITEBOX_JOB, study="sweep", from_url=False))  # fmt: skip
    if all(followed) or source is None:
        return followed
    done = get_runs().list_runs(study="sweep", status="done", model_id=victim, limit=100)
    moved = next((r for r in done if r.config["attack"] == "transfer" and r.config.get("surrogate_id") == source
                  and r.config["model_ids"] == [victim]), None)  # fmt: skip
    if moved is None:
        return None, None
    same = ("eps", "n_images", "model_ids")
    white = next((r for r in done if r.config["attack"] == "pgd"
                  and all(r.config[k] == moved.config[k] for k in same)), None)  # fmt: skip
    return moved, white


def _sweep_points(run: RunRecord) -> list[dict[str, Any]]:
    return run.result["records"] if run.result is not None else event_records(run, "point")


def transfer_tab(card: ModelCard) -> None:
    st.caption(
        "Papernot et al. 2017: adversarial images crafted with PGD on the attacker's own copy, the model stolen "
        "through the API, fed to the victim (the attacker never sees its gradients), beside white-box PGD on the "
        "victim itself (the attacker who has the weights). Same test images, same ε."
    )
    stolen = {c.id: c for c in get_store().list_models()
              if c.recipe == "extraction" and c.recipe_params.get("victim") == card.id}  # fmt: skip
    if not stolen:
        st.info(
            "No stolen copy of this model yet: steal it on the Steal tab with 'Store the stolen model' ticked."
        )
    else:
        _transfer_form(card, stolen)
    pair = latest_pair(card.id, st.session_state.get(state.TRANSFER_SURROGATE))
    every = 1.0 if any(r is not None and r.is_active for r in pair) else None

    @st.fragment(run_every=every)
    def transfer_progress() -> None:
        transferred, whitebox = (refresh(r) for r in pair)
        if transferred is None or whitebox is None:
            return
        if not (transferred.is_active or whitebox.is_active):
            redraw_if_ended(transferred, every)  # once both have ended
        render_run(transferred, key=state.TRANSFER_JOB)
        render_run(whitebox, key=state.TRANSFER_WHITEBOX_JOB)
        source = stolen.get(transferred.config.get("surrogate_id") or "")
        label = f"transfer from {source.name if source else 'the stolen model'}"
        curves = {"white-box PGD on the victim": _sweep_points(whitebox), label: _sweep_points(transferred)}
        st.plotly_chart(figures.transfer_vs_whitebox(curves), key=state.TRANSFER_CHART)
        if transferred.result is None or whitebox.result is None:
            return
        white, moved = (max(rows, key=lambda r: r["eps"]) for rows in curves.values())
        st.caption(
            f"At ε = {white['eps']:g} on {white['n']} test images: white-box PGD leaves the victim right on "
            f"{white['accuracy']:.1%}; PGD crafted on the stolen copy and transferred, on {moved['accuracy']:.1%}. "
            f"White-box: {white['attack']}. Transfer: {moved['attack']}."
        )

    transfer_progress()
