"""The Models page's forms: training (with a recipe), a model's card, uploads of models and datasets."""

from __future__ import annotations

import streamlit as st

from dlsec_core.data.builtin import DATASETS
from dlsec_core.errors import DlsecError
from dlsec_core.models.architectures import ARCHITECTURES
from dlsec_core.privacy.dp_sgd import DPSGDRecipe, dp_fixed_spec, dp_problems, privacy_plan
from dlsec_core.safe_load import spec_from_upload
from dlsec_core.store import ModelCard
from dlsec_core.training.loop import TrainConfig
from dlsec_core.training.recipes import RECIPES
from dlsec_core.workflows import dataset_names, import_and_evaluate, spec_for, store_uploaded_dataset
from dlsec_ui import figures, state
from dlsec_ui.jobs import submit_training
from dlsec_ui.resources import get_dataset, get_store
from dlsec_ui.widgets import config_form, show_error


def train_form() -> None:
    """Dataset, architecture, recipe (standard or a training-time defense), epochs, batch; a background job."""
    c1, c2, c3 = st.columns(3)
    dataset = c1.selectbox(
        "Dataset", dataset_names(get_store()), key=state.TRAIN_DATASET,
        help="Built-in: " + "; ".join(f"{n}: {d}" for n, (d, _) in DATASETS.items()) + ". Upload your own below.",
    )  # fmt: skip
    arch = c2.selectbox(
        "Architecture", list(ARCHITECTURES), index=list(ARCHITECTURES).index("cnn"), key=state.TRAIN_ARCH,
        format_func=lambda a: f"{a}: {ARCHITECTURES[a].description}",
    )  # fmt: skip
    recipe_name = c1.selectbox(
        "Recipe", list(RECIPES), key=state.TRAIN_RECIPE, format_func=lambda r: RECIPES[r].title,
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


def model_card(card: ModelCard) -> None:
    """Everything known about one stored model, its curves, downloads and a delete button."""
    c1, c2 = st.columns([2, 3])
    c1.json(
        {"id": card.id, "dataset": card.dataset, "spec": card.spec.to_dict(), "recipe": card.recipe,
         "recipe_params": card.recipe_params, "train_config": card.train_config, "seed": card.seed,
         "clean_test_accuracy": card.clean_accuracy, "created_at": card.created_at,
         "train_seconds": card.train_seconds, "parameters": card.num_parameters, "source": card.source},
        expanded=False,
    )  # fmt: skip
    if card.history:
        records = [{"epoch_float": h["epoch"], **h} for h in card.history]
        c2.plotly_chart(figures.training_curves(records), key=state.CARD_CURVES)
    d1, d2, d3 = st.columns(3)
    d1.download_button(
        "Download weights (.safetensors)", get_store().weights_bytes(card.id), f"{card.name}.safetensors",
        key=state.DOWNLOAD_WEIGHTS,
    )  # fmt: skip
    d2.download_button(
        "Download spec (.json)", card.spec.to_json(), f"{card.name}.spec.json", key=state.DOWNLOAD_SPEC
    )
    if d3.button("Delete this model", key=state.DELETE_BUTTON):
        get_store().delete_model(card.id)
        st.rerun()


def upload_model_form() -> None:
    st.caption(
        "A state dict saved with safetensors for one of the architectures above, plus its spec JSON (or a file "
        "exported here, which carries its spec). Pickle files (.pt, .pth, .pkl) are refused: loading them can run "
        "code on the server."
    )
    weights_file = st.file_uploader("Weights", type=None, key=state.UPLOAD_WEIGHTS)
    spec_file = st.file_uploader(
        "Spec JSON (optional for files exported from dlsec)", type=["json"], key=state.UPLOAD_SPEC
    )
    u1, u2 = st.columns(2)
    up_name = u1.text_input("Name", "uploaded-model", key=state.UPLOAD_NAME, max_chars=80)
    up_data = u2.selectbox("Trained for dataset", dataset_names(get_store()), key=state.UPLOAD_DATASET)
    if (
        st.button("Import", key=state.UPLOAD_BUTTON, disabled=weights_file is None)
        and weights_file is not None
    ):
        try:
            spec = spec_from_upload(spec_file.getvalue()) if spec_file is not None else None
            imported = import_and_evaluate(
                get_store(),
                weights_file.getvalue(),
                spec,
                name=up_name,
                dataset=up_data,
                filename=weights_file.name,
            )
            st.success(
                f"Imported {imported.name} ({imported.num_parameters:,} parameters, "
                f"{imported.clean_accuracy:.1%} clean test accuracy on {up_data})."
            )
        except DlsecError as err:
            show_error(err)


def upload_dataset_form() -> None:
    st.caption(
        "An .npz with `x` (N,H,W or N,C,H,W; uint8 or floats in [0, 1]) and `y` (labels 0..K-1), or a .zip with one "
        "folder of PNG/JPEG images per class. It gets a fixed, seeded 80/20 train/test split."
    )
    data_file = st.file_uploader("Dataset file", type=["npz", "zip"], key=state.DATA_UPLOAD)
    data_name = st.text_input(
        "Dataset name (letters, digits, - and _)", "my-data", key=state.DATA_NAME, max_chars=40
    )
    if st.button("Add dataset", key=state.DATA_BUTTON, disabled=data_file is None) and data_file is not None:
        try:
            added = store_uploaded_dataset(get_store(), data_file.getvalue(), data_file.name, data_name)
            st.success(
                f"Added {added.name}: {len(added.y_train)} train / {len(added.y_test)} test images of shape "
                f"{added.input_shape}, {added.num_classes} classes. Pick it under Train a model."
            )
        except DlsecError as err:
            show_error(err)
