"""Welcome: what the lab is, the map of threats, a three-click quick start."""

import streamlit as st

from dlsec_ui.widgets import DEFAULT_TRAINING_TIME

st.title("dlsec: the Deep Learning Security Lab")
st.markdown(
    "A model that is 98 % accurate can be fooled by noise nobody can see. This lab lets you **train a model, "
    "attack it, and measure** how it breaks, live, in your browser, on data that ships with the app "
    "(no internet needed)."
)

st.subheader("Map of threats")
threats = [
    (
        "Evasion",
        "available",
        "Tiny input changes flip the prediction: FGSM, PGD, C&W, DeepFool, Square, transfer.",
    ),
    (
        "Defenses",
        "available",
        "Adversarial training, input transforms, detection, certification, adaptive attacks.",
    ),
    (
        "Privacy",
        "available",
        "DP-SGD with Opacus and a live ε budget, membership inference (LiRA), model inversion, a one-run audit.",
    ),
    (
        "Model theft",
        "available",
        "Stealing a model through its prediction API: equation solving, Copycat, Knockoff, Jacobian augmentation, "
        "against rounded, noisy or poisoned answers.",
    ),
]
for col, (name, status, text) in zip(st.columns(len(threats)), threats, strict=True):
    with col.container(border=True):
        badge = ":green-badge[available]" if status == "available" else ":gray-badge[coming]"
        st.markdown(f"**{name}** {badge}")
        st.caption(text)

st.subheader("Quick start")
c1, c2, c3 = st.columns(3)
with c1:
    st.markdown(
        "**1. Train** a small CNN on 4,000 MNIST digits (1,000 more are held out to test it); "
        f"{DEFAULT_TRAINING_TIME}."
    )
    st.page_link("app_pages/models.py", label="Models", icon=":material/model_training:")
with c2:
    st.markdown("**2. Attack** one digit: move ε and watch the prediction flip.")
    st.page_link("app_pages/attack_lab.py", label="Attack Lab", icon=":material/bolt:")
with c3:
    st.markdown("**3. Measure** accuracy as ε grows, for several models on one chart.")
    st.page_link("app_pages/robustness.py", label="Robustness", icon=":material/show_chart:")

st.markdown(
    "**Privacy in three clicks:** train a model with the recipe *DP-SGD* and one without on **Models**, then "
    "attack both on **Membership inference**. Expect little from the default loss attack: the default CNN barely "
    "overfits, and on 1,000 members and 1,000 non-members it scored AUC 0.499 and a 1.3 % true-positive rate at 1 % "
    "false positives, about chance. Pick **LiRA** (shadow models, a background job of a few minutes) and read "
    "the low false-positive end of the ROC curve: with 4 shadows it found 1.0 % of the members at 0.1 % false "
    "positives (ten times chance, in one run) and 2.4 % at 1 %, while its AUC stayed 0.50. DP-SGD bounds what any "
    "such attack can find. **Privacy budget** shows what ε the noise buys before you train."
)
c4, c5, c6 = st.columns(3)
c4.page_link("app_pages/privacy_budget.py", label="Privacy budget", icon=":material/lock:")
c5.page_link("app_pages/membership.py", label="Membership inference", icon=":material/person_search:")
c6.page_link("app_pages/audit.py", label="Privacy audit", icon=":material/fact_check:")

st.markdown(
    "**Model theft:** on **Model theft**, serve the current model behind a prediction API and steal it with "
    "Knockoff Nets: the curve shows how often the stolen copy agrees with the victim as the queries grow."
)
st.page_link("app_pages/theft.py", label="Model theft", icon=":material/key_off:")

st.markdown(
    "**MITRE ATLAS:** every attack, defense and study here names the ATLAS techniques and mitigations it "
    "demonstrates; the map lays them out as ATLAS does, tactics as columns, and links each to its page."
)
st.page_link("app_pages/atlas.py", label="MITRE ATLAS map", icon=":material/grid_view:")

st.caption(
    "Anchors: Goodfellow et al. 2015 (FGSM: a softmax regression misclassifies 99.9 % of MNIST at ε = 0.25); "
    "Madry et al. 2018 (PGD, and PGD adversarial training)."
)
