"""Model theft: steal the current model through a prediction API, and watch fidelity grow with the queries."""

import streamlit as st

from dlsec_core.attacks.base import get_attack
from dlsec_core.errors import DlsecError
from dlsec_core.runs import RunRecord
from dlsec_core.studies.ownership import OwnershipStudyConfig, OwnershipStudyResult
from dlsec_core.studies.theft import ExtractionStudyConfig, ExtractionStudyResult
from dlsec_core.theft.api import OUTPUT_POLICIES
from dlsec_core.theft.extraction import EXTRACTION_ATTACKS, PoolKind
from dlsec_core.theft.prada import PradaResult
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
from dlsec_ui.widgets import IN_URL, config_form, current_model_card, model_label, show_error

BUDGETS = [65, 100, 250, 500, 1000, 2000, 4000]

st.title("Model theft")
st.caption(
    "The model you picked in the sidebar is served behind a prediction API: the attacker is a client with an "
    "identity and a query budget, and reaches the model only through its answers. Every query is logged."
)
card = current_model_card()
if card is None:
    st.stop()

steal, defend, own, transfer = st.tabs(["Steal", "Defend", "Own", "Transfer"])
with steal, st.container(border=True):
    c1, c2 = st.columns(2)
    with c1:
        policy = st.selectbox("What the API answers", list(OUTPUT_POLICIES), key=state.THEFT_POLICY, **IN_URL,
                              format_func=lambda n: OUTPUT_POLICIES[n].title)  # fmt: skip
        policy_params = config_form(OUTPUT_POLICIES[policy], prefix=state.THEFT_FORM)
        if OUTPUT_POLICIES[policy].paper:
            st.caption(f"After {OUTPUT_POLICIES[policy].paper}.")
    with c2:
        attack = st.selectbox("Attack", list(EXTRACTION_ATTACKS), index=2, key=state.THEFT_ATTACK, **IN_URL,
                              format_func=lambda n: EXTRACTION_ATTACKS[n].title)  # fmt: skip
        chosen = EXTRACTION_ATTACKS[attack]
        st.caption(f"{chosen.paper}. The attacker knows {chosen.knowledge}.")
        pool = st.radio("Query pool", [p.value for p in PoolKind], horizontal=True, key=state.THEFT_POOL, **IN_URL,
                        disabled=not chosen.uses_pool, help="; ".join(p.describe() for p in PoolKind))  # fmt: skip
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
                attack_params=attack_params, pool=PoolKind(pool), budgets=sorted(budgets),
                seed=int(st.session_state.get(state.SEED, 0)), store_surrogate=keep,
            )  # fmt: skip
            st.session_state[state.THEFT_JOB] = submit_run("extraction", config).id
        except DlsecError as err:
            show_error(err)

with own:
    st.caption(
        "Adi et al. 2018: the owner trains with a trigger set of secret keys (noise images with random labels); a "
        "suspect model that answers the keys far above chance was derived from the owner's. Null models trained "
        "without the watermark show what chance looks like; the p-value is a binomial tail at their agreement rate."
    )
    owners = {c.id: c for c in get_store().list_models() if c.recipe == "watermark"}
    if not owners:
        st.info(
            "No watermarked model yet: train one on the Models page with the recipe 'Watermark (trigger set, Adi et al.)'."
        )
    else:
        with st.container(border=True):
            owner = st.selectbox("Owner (trained with the watermark)", list(owners), key=state.OWN_OWNER,
                                 format_func=lambda i: model_label(owners[i]))  # fmt: skip
            st.caption(f"Suspect: the current model, **{card.name}** (change it in the sidebar).")
            own_params = config_form(OwnershipStudyConfig, prefix=state.OWN_FORM, skip=("seed",))
            prune = st.multiselect("Also verify the suspect pruned by", [0.5, 0.7, 0.9], key=state.OWN_PRUNE,
                                   format_func=lambda f: f"{f:.0%} of its weights")  # fmt: skip
            if st.button("Verify ownership", type="primary", key=state.OWN_BUTTON):
                try:
                    own_config = OwnershipStudyConfig(
                        owner_id=owner, suspect_id=card.id, prune=sorted(prune),
                        seed=int(st.session_state.get(state.SEED, 0)), **own_params,
                    )  # fmt: skip
                    st.session_state[state.OWN_JOB] = submit_run("ownership", own_config).id
                except DlsecError as err:
                    show_error(err)

shown = attach(state.THEFT_JOB, study="extraction") or get_runs().latest("extraction", model_id=card.id)


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
    if report.surrogate_model_id:
        st.caption(f"Stored as model {report.surrogate_model_id} (see Models).")


with steal:
    show_run(shown, key=state.THEFT_JOB, draw=render_theft)


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


def render_defense(run: RunRecord | None) -> None:
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


with defend:
    render_defense(refresh(shown))

owned = attach(state.OWN_JOB, study="ownership") or get_runs().latest("ownership", model_id=card.id)


def render_ownership(run: RunRecord) -> None:
    if run.result is None:
        st.caption(f"{len(event_records(run, 'null'))} null models trained so far.")
        return
    report = OwnershipStudyResult.from_json(run.result)
    st.plotly_chart(figures.watermark_key_accuracy(report), key=state.OWN_CHART)
    verdict = report.suspect
    found = "carries" if verdict.verified else "does not carry"
    st.caption(
        f"**{report.suspect_name} {found} the watermark of {report.owner_name}**: {verdict.hits} of "
        f"{report.keys} keys answered with the owner's labels (chance {verdict.chance:.0%}), binomial p = "
        f"{verdict.p_value:.2g} against {len(report.null_models)} null models; the owner itself, the positive "
        f"control, answers {report.owner.hits} of {report.keys}. Extraction usually loses the watermark "
        "(Lukas et al. 2022): try a stolen copy as the suspect."
    )


with own:
    show_run(owned, key=state.OWN_JOB, draw=render_ownership)


TRANSFER_EPS = [0.0, 0.02, 0.05, 0.1, 0.2, 0.3]
stolen = {c.id: c for c in get_store().list_models()
          if c.recipe == "extraction" and c.recipe_params.get("victim") == card.id}  # fmt: skip
with transfer:
    st.caption(
        "Papernot et al. 2017: adversarial images crafted with PGD on the attacker's own copy, the model stolen "
        "through the API, fed to the victim (the attacker never sees its gradients), beside white-box PGD on the "
        "victim itself (the attacker who has the weights). Same test images, same ε."
    )
    if not stolen:
        st.info(
            "No stolen copy of this model yet: steal it on the Steal tab with 'Store the stolen model' ticked."
        )
    else:
        with st.container(border=True):
            source = st.selectbox("Stolen model (the transfer source)", list(stolen), key=state.TRANSFER_SURROGATE,
                                  format_func=lambda i: model_label(stolen[i]))  # fmt: skip
            eps = st.multiselect("ε values (L∞, pixel units)", TRANSFER_EPS, default=[0.0, 0.05, 0.1, 0.2],
                                 key=state.TRANSFER_EPS)  # fmt: skip
            n_images = st.slider("Test images", 50, 1000, 200, 50, key=state.TRANSFER_IMAGES)
            if st.button(
                "Attack the victim with the stolen model", type="primary", key=state.TRANSFER_BUTTON
            ):
                try:
                    seed = int(st.session_state.get(state.SEED, 0))
                    st.session_state[state.TRANSFER_JOB] = submit_sweep(
                        [card.id],
                        get_attack("transfer", surrogate=get_model(source)[0]),
                        sorted(eps),
                        n_images,
                        seed=seed,
                        surrogate_id=source,
                    )
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
    runs = get_runs()
    done = runs.list_runs(study="sweep", status="done", model_id=victim, limit=100)
    moved = next((r for r in done if r.config["attack"] == "transfer" and r.config.get("surrogate_id") == source
                  and r.config["model_ids"] == [victim]), None)  # fmt: skip
    if moved is None:
        return None, None
    same = ("eps", "n_images", "model_ids")
    white = next((r for r in done if r.config["attack"] == "pgd"
                  and all(r.config[k] == moved.config[k] for k in same)), None)  # fmt: skip
    return moved, white


def sweep_points(run: RunRecord) -> list[dict]:
    return run.result["records"] if run.result is not None else event_records(run, "point")


pair = latest_pair(card.id, st.session_state.get(state.TRANSFER_SURROGATE))
TRANSFER_POLL = 1.0 if any(r is not None and r.is_active for r in pair) else None


@st.fragment(run_every=TRANSFER_POLL)
def transfer_progress() -> None:
    transferred, whitebox = (refresh(r) for r in pair)
    if transferred is None or whitebox is None:
        return
    if not (transferred.is_active or whitebox.is_active):
        redraw_if_ended(transferred, TRANSFER_POLL)  # once both have ended
    render_run(transferred, key=state.TRANSFER_JOB)
    render_run(whitebox, key=state.TRANSFER_WHITEBOX_JOB)
    source = stolen.get(transferred.config.get("surrogate_id") or "")
    label = f"transfer from {source.name if source else 'the stolen model'}"
    curves = {"white-box PGD on the victim": sweep_points(whitebox), label: sweep_points(transferred)}
    st.plotly_chart(figures.transfer_vs_whitebox(curves), key=state.TRANSFER_CHART)
    if transferred.result is None or whitebox.result is None:
        return
    white, moved = (max(rows, key=lambda r: r["eps"]) for rows in curves.values())
    st.caption(
        f"At ε = {white['eps']:g} on {white['n']} test images: white-box PGD leaves the victim right on "
        f"{white['accuracy']:.1%}; PGD crafted on the stolen copy and transferred, on {moved['accuracy']:.1%}. "
        f"White-box: {white['attack']}. Transfer: {moved['attack']}."
    )


with transfer:
    transfer_progress()
