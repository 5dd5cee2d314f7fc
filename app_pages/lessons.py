"""Lessons: a workshop's path through the lab, step by step, each step checked from what the learner did."""

import streamlit as st

from dlsec_core.lessons.schema import LessonError
from dlsec_ui import state
from dlsec_ui.lessons import lessons, participant, render_lesson
from dlsec_ui.sharing import stop
from dlsec_ui.widgets import IN_URL

st.title("Lessons")
try:
    available = lessons()
except LessonError as err:
    st.error(f"A lesson file has problems; fix it and reload:\n\n{err}")
    stop()
if not available:
    st.info("No lesson files in lessons/ yet (see lessons/README.md for the format).")
    stop()
by_title = {lesson.title: lesson for lesson in available}
title = st.selectbox("Lesson", list(by_title), key=state.LESSON, **IN_URL)
lesson = by_title[title]
owner = participant()
st.caption(f"{lesson.summary} Your progress is saved as **{owner}**.")
render_lesson(lesson, owner)
