"""The workbook as a student meets it: JupyterLab in a real browser, and a report opened offline.

Run by `make test-browser` (not by `make test`; .ci/run calls both). What it needs it installs
itself: Chromium from Debian's `chromium` package (`apt-get install -y chromium`, where
/usr/bin/chromium is missing), driven by Playwright's Python package (dev extras, installed with
pip here if missing) with `executable_path`, so no browser download (`playwright install`) is needed.

1. JupyterLab starts on 127.0.0.1 with a token, on a copy of notebook 01 in a temporary folder
   (its parameters cell set to `smoke = True`), with the project's jupyter/jupyter_server_config.json.
2. The browser opens the notebook and runs all cells. It checks: every cell ran without an error;
   exactly one slider per `knobs` control (a cell ending in `widgets.knobs(...)` once showed a
   second, live copy); a right-arrow key press on the τ slider changes the printed sparsity and
   the figure, and the output area keeps its height meanwhile (no collapse to one line);
   no JupyterLab news pop-up; the browser console has no errors.
3. A report of the same notebook (`labkit run`'s runner, HTML included) opens in the browser with
   every request off 127.0.0.1 aborted: the formula is typeset (MathJax elements, no raw `$$`).

Every process it starts (JupyterLab and its kernels, the report's file server, the browser) is
stopped at the end, also on failure; each wait has a timeout, and a browser that cannot start
fails the test with the reason. `python tests/test_browser.py NOTEBOOK...` prints the slider
latencies of other notebooks (key press → text, → figure) without asserting anything.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOTEBOOK = "01_sparsity_and_threshold_pruning"
LOCAL = re.compile(r"^(https?://127\.0\.0\.1[:/]|data:|blob:|about:)")


# ------------------------------------------------------------------------- what it needs
def ensure_chromium() -> None:
    if CHROMIUM.exists():
        return
    for step in (["apt-get", "install", "-y", "chromium"],
                 ["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        if CHROMIUM.exists():
            return
        try:
            subprocess.run(step, capture_output=True, timeout=900,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        except (OSError, subprocess.TimeoutExpired) as e:
            pytest.fail(f"cannot install Chromium ({' '.join(step)}: {e}); install the Debian package 'chromium'")
    if not CHROMIUM.exists():
        pytest.fail("apt-get install -y chromium did not give /usr/bin/chromium: the browser test needs it")


def ensure_playwright() -> None:
    if importlib.util.find_spec("playwright") is None:
        pin = re.search(r'"(playwright==[^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", pin], check=True, timeout=600)
        importlib.invalidate_caches()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def started(argv, env=None, cwd=None, log=None):
    """A process in its own process group, stopped with everything it started (kernels) at exit."""
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log or subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)
                break


def wait_http(url: str, proc, seconds: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-2000:] if log else ""
            pytest.fail(f"{what} exited with status {proc.returncode} before answering:\n{tail}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2):
                return
        time.sleep(0.3)
    pytest.fail(f"{what} did not answer {url} within {seconds:.0f} s")


def working_copy(folder: Path, names: list[str]) -> None:
    """Copies of the notebooks in `folder`, outputs cleared (so a run is seen to finish), each with
    `smoke = True` in its parameters cell."""
    for name in names:
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        params.source = re.sub(r"^smoke = False", "smoke = True ", params.source, flags=re.M)
        assert "smoke = True" in params.source, f"{name}: no `smoke = False` in its parameters cell"
        nbformat.write(nb, folder / f"{name}.ipynb")


@contextlib.contextmanager
def jupyterlab(tmp: Path, names: list[str]):
    """(base URL, token) of a JupyterLab on a working copy of `names`, with the project's config."""
    root, home = tmp / "lab", tmp / "home"
    root.mkdir()
    (home / "config").mkdir(parents=True)
    (home / "app-settings").mkdir()
    shutil.copy(ROOT / "jupyter" / "jupyter_server_config.json", home / "config")
    shutil.copy(ROOT / "jupyter" / "overrides.json", home / "app-settings")
    working_copy(root, names)
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "IPYTHONDIR": str(home / "ipython"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "LABKIT_HEADLESS": "0", "OMP_NUM_THREADS": "1"}
    log = tmp / "jupyterlab.log"
    argv = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}", f"--LabApp.app_settings_dir={home / 'app-settings'}"] + (["--allow-root"] if os.geteuid() == 0 else [])
    with open(log, "w") as out, started(argv, env=env, log=out) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/api/status?token={token}", proc, 90, "JupyterLab", log)
        yield base, token, log


@contextlib.contextmanager
def chromium(tmp: Path):
    """A fresh Chromium (own profile) whose every request off 127.0.0.1 is aborted."""
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as p:
        try:
            context = p.chromium.launch_persistent_context(
                str(tmp / "profile"), executable_path=str(CHROMIUM), args=FLAGS, headless=True,
                timeout=60_000, viewport={"width": 1400, "height": 1000})
        except Error as e:
            pytest.fail(f"Chromium ({CHROMIUM}) could not start: {str(e).splitlines()[0]}")
        blocked = []

        def route(r):
            if LOCAL.match(r.request.url):
                r.continue_()
            else:
                blocked.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        try:
            yield context, blocked
        finally:
            context.close()


# ------------------------------------------------------------------------- in the notebook
def open_and_run(context, base: str, token: str, name: str, seconds: float = 150):
    """The page of notebook `name`, all its cells run; (page, console errors)."""
    page = context.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}/lab/tree/{name}.ipynb?token={token}", timeout=60_000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.get_by_text(re.compile(r"Python 3 \(ipykernel\) \| Idle")).wait_for(timeout=60_000)
    accept_kernel_dialog(page)
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
    accept_kernel_dialog(page)
    n = sum(c.cell_type == "code" for c in nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4).cells)
    done = f"""() => {{
        const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent);
        const failed = document.querySelector('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]');
        const busy = prompts.some(t => t.includes('*'));
        return (prompts.length === {n} && prompts.every(t => /\\[\\d+\\]/.test(t))) || (failed && !busy);
    }}"""
    page.wait_for_function(done, timeout=seconds * 1000, polling=250)
    return page, errors


def accept_kernel_dialog(page) -> None:
    """JupyterLab may ask which kernel to use although the notebook names one: take it."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    with contextlib.suppress(Exception):
        dialog.wait_for(timeout=2_000)
        dialog.locator(".jp-mod-accept").click()
        dialog.wait_for(state="detached", timeout=10_000)


def knob_controls(name: str) -> int:
    """How many controls the notebook's `knobs(...)` calls make (keyword specs after fn, defaults)."""
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    calls = re.findall(r"widgets\.knobs\((.*?)\)\s*$", source, flags=re.S | re.M)
    return sum(len(re.findall(r"(?:^|[,(]\s*)(\w+)=[(\[]", call)) for call in calls)


MOVE = """async () => {
    const out = document.querySelector('.widget-output');
    const text = () => out.querySelector('.jp-OutputArea-output pre')?.textContent ?? '';
    const img = () => out.querySelector('img')?.src ?? '';
    const before = {text: text(), img: img(), height: out.offsetHeight};
    const seen = {text: null, img: null, painted: null, frames: 0, low: 0, minHeight: before.height};
    const t0 = performance.now();
    const observer = new MutationObserver(() => {
        if (seen.text === null && text() && text() !== before.text) seen.text = performance.now() - t0;
        if (seen.img === null && img() && img() !== before.img) seen.img = performance.now() - t0;
    });
    observer.observe(out, {subtree: true, childList: true, characterData: true, attributes: true});
    // What is painted: the output area's height at each animation frame until the new figure shows.
    const frame = () => {
        const h = out.offsetHeight, image = out.querySelector('img');
        seen.frames += 1;
        seen.minHeight = Math.min(seen.minHeight, h);
        if (h < 0.9 * before.height) seen.low += 1;
        if (seen.img !== null && image && image.complete && image.naturalHeight > 0 && h >= 0.9 * before.height) {
            seen.painted = performance.now() - t0;
        } else if (performance.now() - t0 < 60000) requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
    window.__labkit_move = {before, seen, observer, t0};
}"""


def move_slider(page, index: int = 0, seconds: float = 30) -> dict:
    """Press → on slider `index`: ms from the key press to the new text, the new figure in the
    page and the figure painted; the output area's height before and its least painted height
    (sampled at each animation frame), and in how many frames it was under 90 % of before."""
    handle = page.locator(".widget-slider .noUi-handle").nth(index)
    handle.focus()
    page.evaluate(MOVE)
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => window.__labkit_move.seen.painted !== null", timeout=seconds * 1000, polling=100)
    got = page.evaluate("""() => { const m = window.__labkit_move; m.observer.disconnect();
        const out = document.querySelector('.widget-output');
        return {text_ms: m.seen.text, figure_ms: m.seen.img, painted_ms: m.seen.painted,
                min_height: m.seen.minHeight, low_frames: m.seen.low, frames: m.seen.frames,
                height: m.before.height, before: m.before.text,
                after: out.querySelector('.jp-OutputArea-output pre')?.textContent ?? '',
                img_changed: m.before.img !== (out.querySelector('img')?.src ?? '')}; }""")
    return got


# ------------------------------------------------------------------------- the test
@pytest.fixture(scope="module")
def browser_ready():
    ensure_chromium()
    ensure_playwright()


def test_a_student_moves_the_tau_slider_and_opens_a_report_offline(tmp_path, browser_ready):
    from labkit.workbook import runner

    start = time.monotonic()
    with jupyterlab(tmp_path, [NOTEBOOK]) as (base, token, log), chromium(tmp_path) as (context, blocked):
        lab = urllib.request.urlopen(f"{base}/lab?token={token}", timeout=10).read().decode()
        page_config = json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', lab, re.S).group(1))
        assert page_config["news"] == {"disabled": True}, "jupyter/jupyter_server_config.json: LabApp.news_url = null"
        page, errors = open_and_run(context, base, token, NOTEBOOK)
        failed = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        tracebacks = [t for t in failed.all_text_contents() if "Traceback" in t or "Error" in t]
        assert not tracebacks, f"a cell failed in JupyterLab: {tracebacks[0][-1500:]}"

        sliders = page.locator(".widget-slider")
        assert sliders.count() == knob_controls(NOTEBOOK) == 1, (
            f"{sliders.count()} sliders for {knob_controls(NOTEBOOK)} knobs control: one widget per call")
        readout = page.locator(".widget-slider .widget-readout").first
        assert float(readout.text_content()) == 0.05

        moved = move_slider(page)
        assert float(readout.text_content()) == 0.055, f"one → press moves tau by one step: {readout.text_content()}"
        assert moved["before"].startswith("tau = 0.050: sparsity") and moved["after"].startswith("tau = 0.055: sparsity")
        sparsity = [float(re.search(r"sparsity (\d\.\d+)", t).group(1)) for t in (moved["before"], moved["after"])]
        assert sparsity[1] > sparsity[0], f"a larger tau prunes more: {moved['before']!r} → {moved['after']!r}"
        assert moved["img_changed"], "the histograms are redrawn for the new tau"
        print(f"\n01 slider: text {moved['text_ms']:.0f} ms, figure {moved['figure_ms']:.0f} ms, painted "
              f"{moved['painted_ms']:.0f} ms after the key press; output area {moved['height']} px, at least "
              f"{moved['min_height']} px in {moved['low_frames']} of {moved['frames']} frames")
        assert moved["figure_ms"] - moved["text_ms"] < 100, "text and figure arrive together (one update)"
        assert moved["low_frames"] <= 2, (
            f"the output area collapsed from {moved['height']} to {moved['min_height']} px for "
            f"{moved['low_frames']} frames while redrawing")

        assert page.get_by_text("official Jupyter news").count() == 0, "JupyterLab asks about its news feed"
        assert not errors, f"the browser console has errors: {errors[:5]}"
        assert not blocked, f"JupyterLab tried to reach the network: {blocked[:5]}"
        lab_seconds = time.monotonic() - start
        page.close()

        # -- the report, offline
        reports = tmp_path / "reports"
        runner.run_notebook(tmp_path / "lab" / f"{NOTEBOOK}.ipynb", {"n_taus": 3}, reports, progress=False)
        port = free_port()
        server = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(reports)]
        with started(server) as proc:
            wait_http(f"http://127.0.0.1:{port}/", proc, 30, "the report's file server")
            page = context.new_page()
            report_errors = []
            page.on("pageerror", lambda e: report_errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{port}/{NOTEBOOK}.html", timeout=30_000)
            page.wait_for_function("() => document.querySelectorAll('.MathJax_Display').length >= 2",
                                   timeout=30_000, polling=250)
            body = page.inner_text("body")
            assert "$$" not in body and "\\frac" not in body, "raw LaTeX left in the report"
            assert page.locator(".MathJax_Display").count() >= 2 and page.locator("img").count() >= 3
            assert not report_errors, f"the report's scripts failed: {report_errors[:3]}"
        assert not [u for u in blocked if "127.0.0.1" not in u], f"the report reached for the network: {blocked[:5]}"
    print(f"browser test: JupyterLab part {lab_seconds:.0f} s, all {time.monotonic() - start:.0f} s")


# ------------------------------------------------------------------------- latencies
def main(names: list[str]) -> None:
    """Slider latency of each notebook's first slider, three presses each (prints only)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with jupyterlab(tmp, names) as (base, token, _), chromium(tmp) as (context, _):
            for name in names:
                t = time.monotonic()
                page, errors = open_and_run(context, base, token, name, seconds=400)
                print(f"{name}: ran in {time.monotonic() - t:.0f} s, {page.locator('.widget-slider').count()} sliders, "
                      f"{len(errors)} console errors")
                for _ in range(3):
                    m = move_slider(page)
                    print(f"  text {m['text_ms']:.0f} ms, figure {m['figure_ms']:.0f} ms, painted {m['painted_ms']:.0f} ms; "
                          f"height {m['height']} px, min {m['min_height']} px, {m['low_frames']} of {m['frames']} frames low")
                page.close()


if __name__ == "__main__":
    main(sys.argv[1:] or [NOTEBOOK])
