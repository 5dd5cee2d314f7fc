"""The Models page's forms: training (with a recipe), a model's card, uploads of models and datasets."""

from __future__ import annotations

import streamlit as st

from dlsec_core.catalog import RECIPES
from dlsec_core.data.builtin import DATASETS
from dlsec_core.errors import DlsecError
from dlsec_core.models.architectures import ARCHITECTURES
from dlsec_core.privacy.dp_sgd import DPSGDRecipe, dp_fixed_spec, dp_problems, privacy_plan
from dlsec_core.safe_load import spec_from_upload
from dlsec_core.store import ModelCard
from dlsec_core.text import duration, plural, timestamp
from dlsec_core.training.loop import TrainConfig
from dlsec_core.workflows import dataset_names, import_and_evaluate, spec_for, store_uploaded_dataset
from dlsec_ui import figures, room, state
from dlsec_ui.atlas import atlas_caption
from dlsec_ui.resources import get_dataset, get_store
from dlsec_ui.runs import model_runs, submit_training
from dlsec_ui.widgets import IN_URL, config_form, model_label, show_error


def train_form() -> None:
    """Dataset, architecture, recipe (standard or a training-time defense), epochs, batch; a background job."""
    c1, c2, c3 = st.columns(3)
    dataset = c1.selectbox(
        "Dataset", dataset_names(get_store()), key=state.TRAIN_DATASET, **IN_URL,
        help="Built-in: " + "; ".join(f"{n}: {d}" for n, (d, _) in DATASETS.items()) + ". Upload your own below.",
    )  # fmt: skip
    arch = c2.selectbox(
        "Architecture", list(ARCHITECTURES), index=list(ARCHITECTURES).index("cnn"), key=state.TRAIN_ARCH, **IN_URL,
        format_func=lambda a: f"{a}: {ARCHITECTURES[a].description}",
    )  # fmt: skip
    recipe_name = c1.selectbox(
        "Recipe", list(RECIPES), key=state.TRAIN_RECIPE, **IN_URL, format_func=lambda r: RECIPES[r].title,
        help="; ".join(f"{cls.title}: {cls.paper}" for cls in RECIPES.values() if cls.paper),
        on_change=_apply_suggested,
    )  # fmt: skip
    cls = RECIPES[recipe_name]
    st.session_state.setdefault(state.TRAIN_EPOCHS, DEFAULT_EPOCHS)
    st.session_state.setdefault(state.TRAIN_BATCH, DEFAULT_BATCH)
    epochs = c3.slider("Epochs", 1, 30, key=state.TRAIN_EPOCHS)
    batch_size = c3.select_slider(
        "Batch size" + (" (expected: Poisson sampling)" if recipe_name == "dp-sgd" else ""), BATCH_SIZES,
        key=state.TRAIN_BATCH,
    )  # fmt: skip
    with c2:
        params = config_form(cls, prefix="train_")
    if cls.paper:
        c3.caption(cls.paper)
    with c3:
        atlas_caption(cls.atlas_ids)
    name = st.text_input("Name (optional)", key=state.TRAIN_NAME, max_chars=80)
    blocked = False
    try:
        config = TrainConfig.suggested(  # the recipe's suggested learning rate (DP-SGD: higher)
            cls, epochs=epochs, batch_size=batch_size, seed=int(st.session_state.get(state.SEED, 0))
        )
        recipe = cls(**params)
        if isinstance(recipe, DPSGDRecipe):
            blocked = not _dp_preview(recipe, dataset, arch, config)
    except DlsecError as err:
        show_error(err)
        return
    if st.button("Train", type="primary", key=state.TRAIN_BUTTON, disabled=blocked):
        try:
            st.session_state[state.TRAIN_JOB] = submit_training(
                dataset=dataset, arch=arch, name=name.strip() or None, config=config, recipe=recipe
            )
        except DlsecError as err:
            show_error(err)


BATCH_SIZES = [16, 32, 64, 128, 256, 512, 1024]
DEFAULT_EPOCHS, DEFAULT_BATCH = 10, 64


def _apply_suggested() -> None:
    """A newly chosen recipe brings the epochs and batch size it works best with (DP-SGD: larger batches)."""
    suggested = RECIPES[st.session_state[state.TRAIN_RECIPE]].suggested
    st.session_state[state.TRAIN_EPOCHS] = int(suggested.get("epochs", DEFAULT_EPOCHS))
    st.session_state[state.TRAIN_BATCH] = int(suggested.get("batch_size", DEFAULT_BATCH))


def _use_arch(arch: str) -> None:
    st.session_state[state.TRAIN_ARCH] = arch


def _dp_preview(recipe: DPSGDRecipe, dataset: str, arch: str, config: TrainConfig) -> bool:
    """What Opacus would refuse (with the one-click fix), and the ε the planned run will spend. False = blocked."""
    data = get_dataset(dataset)
    spec = spec_for(data, arch)
    problems = dp_problems(spec)
    if problems:
        fixed = dp_fixed_spec(spec).arch if ARCHITECTURES[arch].dp_fix else None
        st.warning(
            "Opacus cannot train this architecture with differential privacy:\n\n"
            + "\n".join(f"- {p}" for p in problems)
        )
        if fixed:
            st.button(
                f"Fix: use {fixed} ({ARCHITECTURES[fixed].description})", key=state.TRAIN_DP_FIX,
                on_click=_use_arch, args=(fixed,),
            )  # fmt: skip
        return False
    n = len(data.y_train)
    st.info(privacy_plan(recipe, n, config))
    return True


def card_picker(cards: list[ModelCard]) -> ModelCard:
    """The "Model card" select box. It shows the current model (the sidebar's, or the one a `?model=` link names),
    and picking a card makes that model the current one, so the card, its downloads and every page agree."""
    by_id = {c.id: c for c in cards}
    current = st.session_state.get(state.MODEL)
    if current in by_id:
        st.session_state[state.CARD_MODEL] = current
    chosen = st.selectbox(
        "Model card", list(by_id), format_func=lambda i: model_label(by_id[i]), key=state.CARD_MODEL,
        on_change=_make_current, help="Picking a card here also makes it the current model in the sidebar.",
    )  # fmt: skip
    return by_id[chosen]


def _make_current() -> None:
    st.session_state[state.MODEL] = st.session_state[state.CARD_MODEL]


def model_card(card: ModelCard) -> None:
    """Everything known about one stored model as a card (with the runs that read or made it), its curves,
    downloads and a delete button."""
    c1, c2 = st.columns([1, 1])
    with c1.container(border=True, key=state.CARD_VIEW):
        st.markdown(f"#### {card.name}")
        st.caption(f"id `{card.id}` · {card.source} · created {timestamp(card.created_at)}")
        m1, m2, m3 = st.columns(3)
        m1.metric(
            "Clean accuracy", "—" if card.clean_accuracy is None else f"{100 * card.clean_accuracy:.1f} %",
            help=f"On the test split of {card.dataset}, without any attack.",
        )  # fmt: skip
        m2.metric("Parameters", f"{card.num_parameters:,}")
        m3.metric("Training time", "—" if card.train_seconds is None else duration(card.train_seconds))
        st.markdown("\n".join(f"- **{k}**: {v}" for k, v in card_facts(card).items()))
        with st.expander("Spec (JSON)"):
            st.json(card.spec.to_dict())
    if card.history:
        records = [{"epoch_float": h["epoch"], **h} for h in card.history]
        c2.plotly_chart(figures.training_curves(records), key=state.CARD_CURVES)
    with c2.container(border=True, key=state.CARD_RUNS):
        model_runs(card.id)
    d1, d2, d3 = st.columns(3)
    try:
        weights = get_store().weights_bytes(card.id)
    except DlsecError as err:
        show_error(err)
    else:
        d1.download_button(
            "Download weights (.safetensors)", weights, f"{card.name}.safetensors", key=state.DOWNLOAD_WEIGHTS
        )
    d2.download_button(
        "Download spec (.json)", card.spec.to_json(), f"{card.name}.spec.json", key=state.DOWNLOAD_SPEC
    )
    mine = room.may_change(card.owner)
    # Keyed by model: after a delete, the next card's question starts closed (one click must not delete two).
    with d3.popover("Delete this model…", icon=":material/delete:", key=f"{state.DELETE_POPOVER}_{card.id}"):
        st.markdown(f"Delete **{card.name}** (`{card.id}`) and its weights file? This cannot be undone.")
        if not mine:
            st.caption(f"{room.not_yours(card.owner)} Only its owner or the instructor can delete it.")
        elif card.id == st.session_state.get(state.MODEL):
            st.caption("It is the current model: the sidebar will switch to another one and say so.")
        st.button(
            "Yes, delete it",
            type="primary",
            key=state.DELETE_BUTTON,
            on_click=_delete,
            args=(card.id, card.name),
            disabled=not mine,  # a hint only: the store refuses another participant's delete itself
        )


def card_facts(card: ModelCard) -> dict[str, str]:
    """The card's lines: data, architecture, recipe and its settings, training settings."""
    spec = card.spec
    shape = "×".join(str(d) for d in spec.input_shape)
    arch = (
        f"{spec.arch} ({ARCHITECTURES[spec.arch].description})" if spec.arch in ARCHITECTURES else spec.arch
    )
    hparams = ", ".join(f"{k} {v}" for k, v in spec.hparams.items())
    recipe = RECIPES[card.recipe].title if card.recipe in RECIPES else card.recipe
    params = ", ".join(f"{k} = {v}" for k, v in card.recipe_params.items() if v is not None)
    facts = {
        "Data": f"{card.dataset}: input {shape}, {plural(spec.num_classes, 'class', 'classes')}",
        "Architecture": arch + (f"; {hparams}" if hparams else ""),
        "Recipe": recipe + (f" ({params})" if params else ""),
    }
    tc = card.train_config
    if tc:
        parts = [plural(int(tc["epochs"]), "epoch")] if "epochs" in tc else []
        parts += [f"batch {tc['batch_size']}"] if "batch_size" in tc else []
        parts += (
            [f"{tc['optimizer']}, learning rate {tc['lr']:g}"] if "optimizer" in tc and "lr" in tc else []
        )
        facts["Training"] = ", ".join(parts)
    if card.seed is not None:
        facts["Seed"] = str(card.seed)
    if room.enabled():
        facts["Owner"] = card.owner or "made before the room opened"
    return facts


def model_rows(cards: list[ModelCard]) -> list[dict[str, str]]:
    """The stored models as table rows, with their owners in a workshop room."""
    if not room.enabled():
        return [c.to_display_record() for c in cards]
    return [{**c.to_display_record(), "owner": c.owner or "—"} for c in cards]


def _delete(model_id: str, name: str) -> None:
    """Runs before the next script run, so the table, the card picker and the sidebar are drawn without it."""
    try:
        get_store().delete_model(model_id, actor=room.actor())
    except DlsecError as err:
        st.session_state[state.CARD_FLASH] = err
        return
    st.session_state[state.CARD_FLASH] = f"Deleted **{name}** (`{model_id}`) and its weights file."


def show_flash(flash_key: str) -> None:
    """Show, once, what the last callback of a form did (a success sentence or a DlsecError)."""
    what = st.session_state.pop(flash_key, None)
    if what is None:
        return
    if isinstance(what, DlsecError):
        show_error(what)
    else:
        st.success(what)


def upload_model_form() -> None:
    st.caption(
        "A state dict saved with safetensors for one of the architectures above, plus its spec JSON (or a file "
        "exported here, which carries its spec). Pickle files (.pt, .pth, .pkl) are refused: loading them can run "
        "code on the server."
    )
    weights_file = st.file_uploader("Weights", type=None, key=state.UPLOAD_WEIGHTS)
    st.file_uploader(
        "Spec JSON (optional for files exported from dlsec)", type=["json"], key=state.UPLOAD_SPEC
    )
    u1, u2 = st.columns(2)
    u1.text_input("Name", "uploaded-model", key=state.UPLOAD_NAME, max_chars=80)
    u2.selectbox("Trained for dataset", dataset_names(get_store()), key=state.UPLOAD_DATASET)
    st.button("Import", key=state.UPLOAD_BUTTON, disabled=weights_file is None, on_click=_import)
    show_flash(state.UPLOAD_FLASH)


def _import() -> None:
    """Import the uploaded weights before the next script run, so every list on the page (and the sidebar, where
    the imported model becomes the current one) already has it."""
    weights_file, spec_file = (
        st.session_state.get(state.UPLOAD_WEIGHTS),
        st.session_state.get(state.UPLOAD_SPEC),
    )
    if weights_file is None:
        return
    dataset = st.session_state[state.UPLOAD_DATASET]
    try:
        spec = spec_from_upload(spec_file.getvalue()) if spec_file is not None else None
        imported = import_and_evaluate(
            get_store(), weights_file.getvalue(), spec, name=st.session_state[state.UPLOAD_NAME], dataset=dataset,
            filename=weights_file.name, owner=room.current_owner() if room.enabled() else None,
        )  # fmt: skip
    except DlsecError as err:
        st.session_state[state.UPLOAD_FLASH] = err
        return
    st.session_state[state.MODEL] = imported.id
    st.session_state[state.UPLOAD_FLASH] = (
        f"Imported {imported.name} ({imported.num_parameters:,} parameters, "
        f"{100 * (imported.clean_accuracy or 0):.1f} % clean test accuracy on {dataset}); it is now the current "
        "model."
    )


def upload_dataset_form() -> None:
    st.caption(
        "An .npz with `x` (N,H,W or N,C,H,W; uint8 or floats in [0, 1]) and `y` (labels 0..K-1), or a .zip with one "
        "folder of PNG/JPEG images per class. It gets a fixed, seeded 80/20 train/test split."
    )
    data_file = st.file_uploader("Dataset file", type=["npz", "zip"], key=state.DATA_UPLOAD)
    st.text_input("Dataset name (letters, digits, - and _)", "my-data", key=state.DATA_NAME, max_chars=40)
    st.button("Add dataset", key=state.DATA_BUTTON, disabled=data_file is None, on_click=_add_dataset)
    show_flash(state.DATA_FLASH)


def _add_dataset() -> None:
    """Store the uploaded dataset before the next script run, and select it in the training form."""
    data_file = st.session_state.get(state.DATA_UPLOAD)
    if data_file is None:
        return
    try:
        added = store_uploaded_dataset(
            get_store(), data_file.getvalue(), data_file.name, st.session_state[state.DATA_NAME]
        )
    except DlsecError as err:
        st.session_state[state.DATA_FLASH] = err
        return
    st.session_state[state.TRAIN_DATASET] = added.name
    st.session_state[state.DATA_FLASH] = (
        f"Added {added.name}: {len(added.y_train):,} train / {len(added.y_test):,} test images of shape "
        f"{added.input_shape}, {plural(added.num_classes, 'class', 'classes')}. It is selected under Train a model."
    )
