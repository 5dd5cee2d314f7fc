"""Session-state and widget keys, in one place (pages never spell key strings themselves)."""

from __future__ import annotations

import uuid

import streamlit as st

# global sidebar
MODEL = "model"  # selected model id (bound to the URL's query string)
SEED = "seed"
OWNER = "owner"  # this browser session's id for its jobs
MODEL_LABEL = "model_label"  # the current model's label at the last run (to name it once it is deleted)
MODEL_NOTICE = "model_notice"  # (id shown instead, sentence): why the current model is not the one asked for

# models page
TRAIN_DATASET = "train_dataset"
TRAIN_ARCH = "train_arch"
TRAIN_EPOCHS = "train_epochs"
TRAIN_BATCH = "train_batch"
TRAIN_DP_FIX = "train_dp_fix"
TRAIN_NAME = "train_name"
TRAIN_BUTTON = "train_button"
TRAIN_JOB = "train_job"
TRAIN_RECIPE = "train_recipe"
TRAIN_CURVES = "train_curves"
CANCEL_TRAIN = "cancel_train"
CARD_MODEL = "card_model"
CARD_CURVES = "card_curves"
CARD_VIEW = "card_view"  # the card's bordered box
CARD_RUNS = "card_runs"  # the card's list of the runs that read or made the model
DOWNLOAD_WEIGHTS = "dl_weights"
DOWNLOAD_SPEC = "dl_spec"
UPLOAD_WEIGHTS = "upload_weights"
UPLOAD_SPEC = "upload_spec"
UPLOAD_NAME = "upload_name"
UPLOAD_DATASET = "upload_dataset"
UPLOAD_BUTTON = "upload_button"
DELETE_BUTTON = "delete_button"  # the confirming button inside DELETE_POPOVER
DELETE_POPOVER = "delete_popover"  # + "_<model id>"
CARD_FLASH = "card_flash"  # what the last delete did (a sentence or a DlsecError), shown once
UPLOAD_FLASH = "upload_flash"  # the same for the last import
DATA_FLASH = "data_flash"  # the same for the last dataset upload
DATA_UPLOAD = "data_upload"
DATA_NAME = "data_name"
DATA_BUTTON = "data_button"

# attack lab
IMAGE_SOURCE = "image_source"
GALLERY_CLASS = "gallery_class"
GALLERY_INDEX = "gallery_index"
IMAGE_UPLOAD = "image_upload"
CANVAS = "canvas"
ATTACK = "attack"
TARGETED = "targeted"
TARGET_CLASS = "target_class"
EPS = "eps"
EPS_CAP = "eps_cap"  # minimal-perturbation attacks: cap the change at ε (off: no budget)
TRUE_LABEL = "true_label"  # the class a user gives their own (drawn or uploaded) image, optional
PGD_STEPS = "pgd_steps"
BATCH_N = "batch_n"
DEFENSE = "defense"
ATTACK_MODE = "attack_mode"
LAB_DETECTOR = "lab_detector"
LAB_VIEW = "lab_view"
LAB_INTERACTIVE = "lab_interactive"

# robustness page
SWEEP_MODELS = "sweep_models"
SWEEP_ATTACK = "sweep_attack"
SWEEP_EPS_MAX = "sweep_eps_max"
SWEEP_POINTS = "sweep_points"
SWEEP_IMAGES = "sweep_images"
SWEEP_BUTTON = "sweep_button"
SWEEP_JOB = "sweep_job"
SWEEP_CHART = "sweep_chart"
SWEEP_CSV = "sweep_csv"
CANCEL_SWEEP = "cancel_sweep"


# workshop room (dlsec_ui/room.py) and the instructor page
# the dlsec_core.access.Actor this session logged in as (absent: not yet, or no room)
ROOM_ACTOR = "room_actor"
ROOM_NAME = "room_name"
# popped by the login callback: a passcode never stays in session state
ROOM_PASSCODE = "room_passcode"
ROOM_LOGIN = "room_login"
ROOM_LOGIN_FORM = "room_login_form"
ROOM_INSTRUCTOR_PASSCODE = "room_instructor_passcode"
ROOM_INSTRUCTOR_LOGIN = "room_instructor_login"
ROOM_INSTRUCTOR_FORM = "room_instructor_form"
ROOM_SIGN_OUT = "room_sign_out"
ROOM_FLASH = "room_flash"
INSTR_RUNS = "instr_runs"
INSTR_CANCEL = "instr_cancel"
INSTR_CLEAR_CONFIRM = "instr_clear_confirm"
INSTR_CLEAR = "instr_clear"
INSTR_FLASH = "instr_flash"


def owner_id() -> str:
    """A stable id for this browser session, used to find its background jobs again; in a workshop room, the
    participant's display name (set at login by `dlsec_ui.room`), so their runs are theirs in every tab."""
    if OWNER not in st.session_state:
        st.session_state[OWNER] = uuid.uuid4().hex[:12]
    return str(st.session_state[OWNER])


# detection page
DET_FPR = "det_fpr"
DET_BITS = "det_bits"
DET_MEDIAN = "det_median"
DET_EPS_MAX = "det_eps_max"
DET_IMAGES = "det_images"
DET_BUTTON = "det_button"
DET_JOB = "det_job"
DET_CHART = "det_chart"
DET_ROC = "det_roc"
DET_TABLE = "det_table"

# certification page
CERT_SIGMA = "cert_sigma"
CERT_IMAGES = "cert_images"
CERT_N = "cert_n"
CERT_BUTTON = "cert_button"
CERT_JOB = "cert_job"
CERT_CHART = "cert_chart"

# privacy budget page
PB_DATASET = "pb_dataset"
PB_N = "pb_n"
PB_BATCH = "pb_batch"
PB_EPOCHS = "pb_epochs"
PB_SIGMA = "pb_sigma"
PB_DELTA = "pb_delta"
PB_ACCOUNTANTS = "pb_accountants"
PB_TARGET = "pb_target"
PB_CHART = "pb_chart"
PB_TAB = "pb_tab"  # the open tab (Calculator, Privacy-utility frontier), in the URL
FR_DATASET = "fr_dataset"
FR_ARCH = "fr_arch"
FR_TARGETS = "fr_targets"
FR_EPOCHS = "fr_epochs"
FR_ACCOUNTANT = "fr_accountant"
FR_BUTTON = "fr_button"
FR_JOB = "fr_job"
FR_CHART = "fr_chart"

# membership inference page
MI_MODELS = "mi_models"
MI_ATTACK = "mi_attack"
MI_N = "mi_n"
MI_BUTTON = "mi_button"
MI_JOB = "mi_job"
MI_ROC = "mi_roc"

# privacy audit page
AU_DATASET = "au_dataset"
AU_ARCH = "au_arch"
AU_EPOCHS = "au_epochs"
AU_BATCH = "au_batch"
AU_CONTROL = "au_control"
AU_BUTTON = "au_button"
AU_JOB = "au_job"
AU_CHART = "au_chart"

# model inversion page
INV_MODELS = "inv_models"
INV_CLASSES = "inv_classes"
INV_BUTTON = "inv_button"
INV_JOB = "inv_job"
INV_RESULT = "inv_result"

# the privacy pages' twin training
TWIN_BUTTON = "twin_button"
TWIN_JOB = "twin_job"
TWIN_APPLIED = "twin_applied"
CANCEL_TWIN = "cancel_twin"

# lessons page
LESSON = "lesson"  # bound to the URL: ?lesson=<title> opens that lesson
LESSON_STEP = "lesson_step_"  # + step id: the step's bordered box
LESSON_ANSWER = "lesson_answer_"  # + lesson id + "_" + step id: the learner's answer (an ε, a choice)
LESSON_CHECK = "lesson_check_"  # + lesson id + "_" + step id: the Check button

# presenter mode (sidebar)
PRESENTER = "presenter"  # bound to the URL: ?presenter=true projects the view
COPY_LINK = "copy_link"  # the sidebar's "link to this view" box

# runs (stored runs of studies, see dlsec_ui.runs)
RUN_PARAM = "run"  # the URL's ?run=<id>: a link re-attaches to a run
RUNS_PARAM = "runs"  # the URL's ?runs=<id>&runs=<id>: the rows selected in a run table
RUNS_STUDY = "runs_study"
RUNS_STATUS = "runs_status"
RUNS_ONLY_MODEL = "runs_only_model"  # bound to the URL: ?model=<id>&runs_only_model=true lists a model's runs
RUNS_TABLE = "runs_table"
RUNS_OPEN = "runs_open"

# model theft page
THEFT_POLICY = "theft_policy"
THEFT_ATTACK = "theft_attack"
THEFT_POOL = "theft_pool"
THEFT_BUDGETS = "theft_budgets"
THEFT_STORE = "theft_store"
THEFT_BUTTON = "theft_button"
THEFT_JOB = "theft_job"
THEFT_CHART = "theft_chart"
THEFT_POOL_DATASET = "theft_pool_dataset"  # the uploaded dataset of the 'uploaded' pool
THEFT_RATE_LIMIT = "theft_rate_limit"  # the attacker's rate limit: answers per window (0 = none)
THEFT_RATE_WINDOW = "theft_rate_window"  # the window, seconds
THEFT_FORM = "theft_form_"  # prefix of the policy's and the attack's generated widgets
DEFEND_CHART = "defend_chart"  # PRADA on the attacker's stream
DEFEND_BENIGN_CHART = "defend_benign_chart"  # PRADA on the benign client's stream
TRANSFER_SURROGATE = "transfer_surrogate"
TRANSFER_EPS = "transfer_eps"
TRANSFER_IMAGES = "transfer_images"
TRANSFER_BUTTON = "transfer_button"
TRANSFER_JOB = "transfer_job"  # the sweep with the transfer attack from the stolen model
TRANSFER_WHITEBOX_JOB = "transfer_whitebox_job"  # the white-box PGD sweep on the victim beside it
TRANSFER_CHART = "transfer_chart"
OWN_OWNER = "own_owner"
OWN_PRUNE = "own_prune"
OWN_STEAL = "own_steal"  # extraction attacks whose stolen copies of the owner are verified
OWN_TABLE = "own_table"  # the p-value of every verified copy
OWN_BUTTON = "own_button"
OWN_JOB = "own_job"
OWN_CHART = "own_chart"
OWN_FORM = "own_form_"  # prefix of the ownership study's generated widgets
# Scorecard page (a scan run per model; tiles, comparison, report)
SCORECARD_MODEL = "scorecard_model"
THEFT_TAB = "theft_tab"  # the open tab of the Model theft page, in the URL
SCORECARD_TAB = "scorecard_tab"  # the open tab (One model, Compare models), in the URL
SCAN_BUTTON = "scan_button"
SCAN_PRESET = "scan_preset"
SCAN_TRANSFORM = "scan_transform"
SCAN_POLICY = "scan_policy"
SCAN_FORM = "scan_form_"  # prefix of the transform's and the output policy's generated widgets
SCAN_JOB = "scan_job"  # the scan run this session follows
SCORECARD_TILE = "scorecard_tile_"  # prefix: one bordered container per finding, by its index
SCORECARD_EVIDENCE = "scorecard_evidence_"  # prefix: a tile's evidence chart
SCORECARD_REPORT = "scorecard_report"  # download of the HTML report
SCORECARD_PDF_BUTTON = "scorecard_pdf_button"
SCORECARD_PDF = "scorecard_pdf"  # download of the PDF
SCORECARD_COMPARE = "scorecard_compare"  # the scanned models compared
SCORECARD_GRID = "scorecard_grid"
SCORECARD_TRADEOFF = "scorecard_tradeoff"
SCORECARD_OPEN = "scorecard_open"  # the finding whose evidence is open (its id)
SCORECARD_EVIDENCE_CHART = "scorecard_evidence_chart"

# federated learning page
FED_TAB = "fed_tab"
FED_DATASET = "fed_dataset"
FED_ARCH = "fed_arch"
FED_CLIENTS = "fed_clients"
FED_SPLIT = "fed_split"
FED_ALPHA = "fed_alpha"
FED_ROUNDS = "fed_rounds"
FED_FRACTION = "fed_fraction"
FED_EPOCHS = "fed_epochs"
FED_LR = "fed_lr"
FED_SECURE = "fed_secure"
FED_CLIENT_DP = "fed_client_dp"
FED_CLIP = "fed_clip"
FED_SIGMA = "fed_sigma"
FED_LOCAL_DP = "fed_local_dp"
FED_LOCAL_SIGMA = "fed_local_sigma"
FED_LOCAL_CLIP = "fed_local_clip"
FED_TRAIN_BUTTON = "fed_train_button"
FED_TRAIN_JOB = "fed_train_job"
FED_TRAIN_CHART = "fed_train_chart"
FED_HISTOGRAM = "fed_histogram"
FED_MALICIOUS = "fed_malicious"
FED_ATTACK = "fed_attack"
FED_TRIGGER = "fed_trigger"
FED_TARGET = "fed_target"
FED_AGGREGATORS = "fed_aggregators"
FED_POISON_BUTTON = "fed_poison_button"
FED_POISON_JOB = "fed_poison_job"
FED_POISON_CHART = "fed_poison_chart"
FED_LEAK_DATASET = "fed_leak_dataset"
FED_LEAK_ARCH = "fed_leak_arch"
FED_LEAK_ATTACK = "fed_leak_attack"
FED_LEAK_BATCH = "fed_leak_batch"
FED_LEAK_STEPS = "fed_leak_steps"
FED_LEAK_DEFENSE = "fed_leak_defense"
FED_LEAK_CLIP = "fed_leak_clip"
FED_LEAK_SIGMA = "fed_leak_sigma"
FED_LEAK_KEEP = "fed_leak_keep"
FED_LEAK_CLIENTS = "fed_leak_clients"
FED_LEAK_BUTTON = "fed_leak_button"
FED_LEAK_JOB = "fed_leak_job"
FED_LEAK_CHART = "fed_leak_chart"
