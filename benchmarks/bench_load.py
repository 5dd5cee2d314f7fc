"""A room on one server: slider latency, server CPU and memory with 1 or many sessions, with and without
background work, measured with real browsers (Playwright + Debian's Chromium) against a real `streamlit run`.

What it measures (the quality bar of issue "Runs that last"):
- slider latency: key press on the Attack Lab's ε slider -> the new L∞ size on screen, p50/p95, per scenario;
- server CPU seconds per slider rerun and per new session (from /proc/<pid>/stat, no background work);
- time until every session has rendered the lab; failed moves (no answer within the timeout); pages showing an
  error; RSS of the server and of every worker process.

Scenarios: sessions in {1, N} x background in {none, busy}, where busy = two trainings (30 epochs of the default
cnn on mnist5k) and one robustness sweep, all started through the UI's own buttons, so the same script measures
any version of the app (jobs in the web process before, runs on worker processes after). With `--room` (issue
"Workshop mode"), the server has a room passcode and every session logs in as its own participant, opens lesson 1
from the sidebar and follows its first link to the Attack Lab before moving the slider.

Each answered move's latency is also split (`latency_split`) by the server's per-run timing log (dlsec_ui/
timing.py): before the script run, the run, after it (transfer and rendering in the browser).

    python benchmarks/bench_load.py [--app-dir DIR] [--sessions 1,30] [--moves 20] [--background none,busy]
        [--label after] [--room] [--floor]

The browsers run on the same machine as the server: on 2 cores they compete with it, as the issue's figures did.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _common import cpu_model, load_average, percentile, write_report  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
MOVE_TIMEOUT_S = 60.0
CLK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def worker_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "dlsec_core .*worker"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


ROOM_PASSCODE = "bench-room"
LESSON_LINK = "Open the Attack Lab on this digit"  # lesson 1's first step (lessons/01-fool-a-model.md)


class Server:
    def __init__(self, app_dir: Path, home: Path, python: str, room: bool = False) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(home.parent / "server.log", "w")  # noqa: SIM115
        self.rerun_log = (
            home.parent / f"reruns_{self.port}.jsonl"
        )  # dlsec_ui/timing.py: one line per script run
        env = {
            **os.environ,
            "DLSEC_HOME": str(home),
            "PYTHONUNBUFFERED": "1",
            "DLSEC_RERUN_LOG": str(self.rerun_log),
        }
        if room:  # a workshop room: every session logs in with a name and the room passcode
            env["DLSEC_ROOM_PASSCODE"] = ROOM_PASSCODE
        self.proc = subprocess.Popen(
            [python, "-m", "streamlit", "run", "app.py", "--server.headless=true", f"--server.port={self.port}",
             "--server.address=127.0.0.1", "--server.fileWatcherType=none", "--browser.gatherUsageStats=false"],
            cwd=app_dir, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read().decode().strip() == "ok":
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("the server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


async def open_lab(context: Any, url: str, model_id: str, label: str = "warm") -> tuple[Any, float]:
    """A session on the Attack Lab; `label` names it in the server's per-run timing log (`?bench=`)."""
    page = await context.new_page()
    t = time.perf_counter()
    await page.goto(f"{url}/attack_lab?model={model_id}&bench={label}", timeout=600_000)
    await page.locator('[data-testid="stMetricValue"]').first.wait_for(timeout=600_000)
    await page.wait_for_selector(IDLE, timeout=600_000)
    return page, time.perf_counter() - t


async def open_lesson_lab(context: Any, url: str, model_id: str, label: str) -> tuple[Any, float]:
    """A participant of a room: log in as `label`, open lesson 1 from the sidebar and follow its first "do this"
    link to the Attack Lab (in-app navigation: a reload would end the login). `model_id` is unused: the lesson
    finds its model by its alias."""
    page = await context.new_page()
    t = time.perf_counter()
    await log_in(page, url, label)
    await go(page, url, "lessons", "Lessons", room=True)
    await page.get_by_text(LESSON_LINK).first.click(timeout=600_000)
    await page.locator('[data-testid="stMetricValue"]').first.wait_for(timeout=600_000)
    await page.wait_for_selector(IDLE, timeout=600_000)
    return page, time.perf_counter() - t


# One call into the page before each key press: read the L∞ value, focus the ε slider's input, and start waiting
# inside the page (a MutationObserver) for the value to change. Then the key press (the browser's own key events)
# and one call that awaits the wait. Runs 1-3 polled the value from Python every 10 ms (thousands of CDP calls a
# second with 30 sessions waiting); run 4 still spent about 12 CDP round trips per move on locators (reading the
# value, focusing, pressing): the driver (Node) and Chromium's browser process cost 0.035 s of CPU per move on the
# same 2 cores, a sixth of a move's whole browser-side cost, work no participant's browser does.
WATCH_LINF = """([timeoutMs]) => {
  const read = () => {
    const metric = [...document.querySelectorAll('[data-testid="stMetric"]')].find(m => m.innerText.includes('L∞'));
    const value = metric && metric.querySelector('[data-testid="stMetricValue"]');
    return value ? value.innerText : null;
  };
  const before = read();
  document.querySelector('.st-key-eps_linf input[type=range]').focus();
  window.__dlsecLinf = new Promise(resolve => {
    const observer = new MutationObserver(() => {
      if (read() !== before) { observer.disconnect(); resolve(true); }
    });
    observer.observe(document.body, {subtree: true, childList: true, characterData: true});
    setTimeout(() => { observer.disconnect(); resolve(read() !== before); }, timeoutMs);
  });
}"""


async def move(page: Any, key: str) -> tuple[float, float | None]:
    """Press an arrow key on the ε slider: (wall-clock time of the press, seconds until the L∞ value on screen
    changes; None: no answer)."""
    await page.evaluate(WATCH_LINF, [MOVE_TIMEOUT_S * 1000])
    pressed, t = time.time(), time.perf_counter()
    await page.keyboard.press(key)
    changed = await page.evaluate("window.__dlsecLinf")
    return pressed, (time.perf_counter() - t if changed else None)


def split_latency(
    moves: dict[str, list[tuple[float, float | None]]], log: Path
) -> dict[str, float | int | None]:
    """Where each answered move's time went, from the server's per-run log (dlsec_ui/timing.py): before the script
    ran (the press reaching the server, the server's queue), the script run, and after it (the deltas reaching the
    browser and its rendering). A move is matched to the first run of its session that starts after the press and
    ends before the new value is on screen. Logs of builds before the CPU column give NaN there."""
    runs: dict[str, list[tuple[float, float, float]]] = {}
    if log.exists():
        for line in log.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            runs.setdefault(r["session"], []).append((r["start"], r["end"], r.get("cpu", math.nan)))
    before, run, cpu, after = [], [], [], []
    for label, session in moves.items():
        for pressed, latency in session:
            if latency is None:
                continue
            shown = pressed + latency
            match = next(
                (
                    (a, b, c)
                    for a, b, c in sorted(runs.get(label, []))
                    if a >= pressed - 0.01 and b <= shown + 0.01
                ),
                None,
            )
            if match is not None:
                before.append(match[0] - pressed)
                run.append(match[1] - match[0])
                cpu.append(match[2])
                after.append(shown - match[1])
    out: dict[str, float | int | None] = {"matched_moves": len(run)}
    # script_run_cpu: the CPU seconds of the run's thread (the rest of script_run waited for a core or the GIL)
    for name, values in (
        ("before_run", before),
        ("script_run", run),
        ("script_run_cpu", cpu),
        ("after_run", after),
    ):
        out[f"{name}_p50_s"] = percentile(values, 0.5)
        out[f"{name}_p95_s"] = percentile(values, 0.95)
    return out


async def session_moves(
    page: Any, moves: int, think: tuple[float, float], rng: random.Random
) -> list[tuple[float, float | None]]:
    out = []
    for i in range(moves):
        await asyncio.sleep(rng.uniform(*think))
        out.append(await move(page, "ArrowRight" if (i // 10) % 2 == 0 else "ArrowLeft"))
    return out


async def log_in(page: Any, url: str, name: str) -> None:
    await page.goto(f"{url}/", timeout=600_000)
    await page.locator(".st-key-room_login button").wait_for(timeout=600_000)
    await page.locator(".st-key-room_name input").fill(name)
    await page.locator(".st-key-room_passcode input").fill(ROOM_PASSCODE)
    await page.locator(".st-key-room_login button").click()
    await page.locator('[data-testid="stSidebarNav"]').wait_for(timeout=600_000)


async def go(page: Any, url: str, path: str, title: str, room: bool) -> None:
    """Open a page: by its URL, or in a room from the sidebar (a new URL would be a new, logged-out session)."""
    if room:
        await (
            page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click(timeout=600_000)
        )
        await page.wait_for_timeout(500)
    else:
        await page.goto(f"{url}/{path}", timeout=600_000)
    await page.wait_for_selector(IDLE, timeout=600_000)


async def start_background(browser: Any, url: str, model_id: str, room: bool = False) -> None:
    """Two 30-epoch trainings and one robustness sweep, started through the app's own buttons (in a room, by one
    more participant)."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    if room:
        await log_in(page, url, "background")
    await go(page, url, f"models?model={model_id}", "Models", room)
    epochs = page.locator(".st-key-train_epochs input[type=range]")
    await epochs.focus()
    await epochs.press("End")
    await page.wait_for_timeout(500)
    await page.wait_for_selector(IDLE)
    for _ in range(2):
        await page.locator(".st-key-train_button button").click()
        await page.wait_for_timeout(1500)
        await page.wait_for_selector(IDLE)
    await go(page, url, f"robustness?model={model_id}", "Robustness", room)
    await page.locator(".st-key-sweep_button button").click()
    await page.wait_for_timeout(1500)
    await context.close()


async def scenario(
    browser: Any,
    server: Server,
    model_id: str,
    sessions: int,
    moves: int,
    busy: bool,
    seed: int,
    room: bool = False,
) -> dict[str, Any]:
    if busy:
        await start_background(browser, server.url, model_id, room)
        await asyncio.sleep(5)  # let the work get going
    load_before = load_average()
    contexts = [await browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(sessions)]
    for c in contexts:
        c.set_default_timeout(MOVE_TIMEOUT_S * 1000)
    cpu0 = cpu_seconds(server.proc.pid)
    t0 = time.perf_counter()
    open_one = open_lesson_lab if room else open_lab
    opened = await asyncio.gather(
        *(open_one(c, server.url, model_id, f"s{i}") for i, c in enumerate(contexts))
    )
    all_rendered = time.perf_counter() - t0
    cpu_open = cpu_seconds(server.proc.pid) - cpu0
    pages = [p for p, _ in opened]
    rng = random.Random(seed)
    think = (0.2, 0.6) if sessions == 1 else (1.0, 3.0)
    cpu1 = cpu_seconds(server.proc.pid)
    results = await asyncio.gather(
        *(session_moves(p, moves, think, random.Random(rng.random())) for p in pages)
    )
    cpu_moves = cpu_seconds(server.proc.pid) - cpu1
    latencies = [x for r in results for _, x in r if x is not None]
    failed = sum(1 for r in results for _, x in r if x is None)
    split = split_latency({f"s{i}": r for i, r in enumerate(results)}, server.rerun_log)
    errors = 0
    for p in pages:
        errors += await p.locator(
            '[data-testid="stException"], :text("This app has encountered an error")'
        ).count()
    rss = {
        "server_mb": round(rss_mb(server.proc.pid)),
        "workers_mb": [round(rss_mb(w)) for w in worker_pids()],
    }
    for c in contexts:
        await c.close()
    return {
        "sessions": sessions,
        "background": "2 trainings + 1 sweep" if busy else "none",
        "room": f"{sessions} participants logged in, following lesson 1" if room else None,
        "moves": len(latencies) + failed,
        "failed_moves": failed,
        "error_pages": errors,
        "slider_p50_s": percentile(latencies, 0.5),
        "slider_p95_s": percentile(latencies, 0.95),
        "slider_mean_s": statistics.fmean(latencies) if latencies else None,
        # the k-th move of every session: the first moves start together (everyone starts after the last page
        # has rendered), the later ones spread out over the think times
        "slider_p50_p95_by_move_s": [
            [percentile(xs, 0.5), percentile(xs, 0.95)]
            for xs in (
                [x for x in (r[k][1] for r in results if k < len(r)) if x is not None] for k in range(moves)
            )
        ],
        "latency_split": split,
        "first_render_p50_s": percentile([t for _, t in opened], 0.5),
        "all_sessions_rendered_s": round(all_rendered, 2),
        "server_cpu_s_per_new_session": round(cpu_open / sessions, 3),
        "server_cpu_s_per_slider_rerun": round(cpu_moves / max(1, len(latencies) + failed), 3),
        "rss": rss,
        "rss_total_mb": rss["server_mb"] + sum(rss["workers_mb"]),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }


def prepare_home(python: str, app_dir: Path) -> tuple[Path, str]:
    home = Path(tempfile.mkdtemp(prefix="dlsec-bench-load-")) / "home"
    env = {**os.environ, "DLSEC_HOME": str(home), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [python, "-m", "dlsec_core", "train", "--dataset", "mnist5k", "--arch", "cnn", "--epochs", "3",
         "--name", "bench-load", "--json", "--quiet"],
        cwd=app_dir, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    import json

    return home, str(json.loads(out)["id"])


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    app_dir = Path(args.app_dir).resolve()
    if args.floor:  # a copy of the checkout whose Attack Lab is floor_page.py
        floor = Path(tempfile.mkdtemp(prefix="dlsec-bench-floor-")) / "app"
        shutil.copytree(
            app_dir, floor, ignore=shutil.ignore_patterns(".venv", ".git", "artifacts", "__pycache__")
        )
        shutil.copyfile(ROOT / "benchmarks" / "floor_page.py", floor / "app_pages" / "attack_lab.py")
        app_dir = floor
    home, model_id = prepare_home(args.python, app_dir)
    report: dict[str, Any] = {
        "label": args.label, "app_dir": str(app_dir), "floor": args.floor, "cpu": cpu_model(), "cores": os.cpu_count(),
        "load_average_start": load_average(), "scenarios": [],
    }  # fmt: skip
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for busy in args.background:
            for sessions in args.sessions:
                server = Server(app_dir, home, args.python, args.room)  # a fresh server per scenario
                try:
                    warm = await browser.new_context()
                    opener = open_lesson_lab if args.room else open_lab
                    await opener(
                        warm, server.url, model_id, "warm"
                    )  # imports and caches warm, as on a running server
                    await warm.close()
                    result = await scenario(
                        browser, server, model_id, sessions, args.moves, busy, args.seed, args.room
                    )
                finally:
                    server.stop()
                    subprocess.run(["pkill", "-f", "dlsec_core .*worker"], check=False)
                print(result, flush=True)
                report["scenarios"].append(result)
        await browser.close()
    shutil.rmtree(home.parent, ignore_errors=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--app-dir", default=str(ROOT), help="the checkout whose app.py is measured")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--sessions", default="1,30", help="comma-separated session counts")
    parser.add_argument("--moves", type=int, default=20, help="slider moves per session")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--background", default="none,busy", choices=["none,busy", "none", "busy"],
        help="scenarios: without background work, with two trainings and a sweep executing, or both",
    )  # fmt: skip
    parser.add_argument("--label", default="run")
    parser.add_argument(
        "--room", action="store_true",
        help="a workshop room (issue 'Workshop mode'): every session logs in and follows lesson 1 to the Attack Lab",
    )  # fmt: skip
    parser.add_argument(
        "--floor", action="store_true",
        help="measure the floor: the Attack Lab replaced by benchmarks/floor_page.py (the ε slider, four numbers)",
    )  # fmt: skip
    args = parser.parse_args()
    args.sessions = [int(s) for s in args.sessions.split(",")]
    args.background = [b == "busy" for b in args.background.split(",")]
    report = asyncio.run(main_async(args))
    write_report(ROOT / "benchmarks" / "results" / f"load_{args.label}.json", report)


if __name__ == "__main__":
    main()
