"""Opt-in timing of script runs, for the load benchmark (benchmarks/bench_load.py): with `DLSEC_RERUN_LOG=<file>` in
the server's environment, every full script run that reaches the end of app.py, and every run of a page fragment
(`sharing.page_fragment`: the Attack Lab's ε steps), appends one JSON line: the `bench` query parameter the
benchmark gives each browser session (in a workshop room: the participant's name), and the wall-clock start and end
of the run. The benchmark matches them to its key presses to split a slider move's latency into the wait before the
server runs the script, the run itself, and the transfer and rendering after it. Without the variable nothing is
timed."""

from __future__ import annotations

import json
import os
import time

import streamlit as st

from dlsec_ui import state

_LOG = os.environ.get("DLSEC_RERUN_LOG")


def start() -> tuple[float, float] | None:
    """The run's wall-clock start and its thread's CPU time so far, or None when timing is off."""
    return (time.time(), time.thread_time()) if _LOG else None


def finish(started: tuple[float, float] | None) -> None:
    """Append the run's line (a no-op when timing is off): its session, wall-clock start and end, and the CPU
    seconds its thread spent (a run much longer than its CPU waited: for a core, the GIL or a lock)."""
    if started is None or _LOG is None:
        return
    # a session is named by the benchmark's ?bench= parameter, or in a workshop room by its participant's name
    who = st.query_params.get("bench") or str(st.session_state.get(state.OWNER, ""))
    wall, cpu = started
    line = json.dumps({"session": who, "start": wall, "end": time.time(), "cpu": time.thread_time() - cpu})
    with open(
        _LOG, "a", encoding="utf-8"
    ) as f:  # one short write per run: lines from threads do not interleave
        f.write(line + "\n")
