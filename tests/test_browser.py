"""A real browser uses the page: headless Chromium (Debian's package) driven by Playwright.

The set-up installs Chromium with apt-get where it is missing and this is possible (root,
Debian); the test skips, saying why, only where no browser can be had.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mishon.config import ServeSettings
from mishon.serve.app import create_app
from mishon.serve.service import HashtagService

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_or_install_chromium() -> str:
    for name in CANDIDATES:
        if found := shutil.which(name):
            return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("no Chromium, and apt-get is not available as root to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0 and command[1] == "install":
            pytest.skip(f"could not install Chromium: {done.stderr.strip()[-300:]}")
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("apt-get installed chromium but it is not on PATH")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Iterator[str]:
    import uvicorn

    run = tmp_path_factory.mktemp("browser") / "run"
    shutil.copytree(tiny_run, run)
    port = free_port()
    service = HashtagService(run, ServeSettings(port=port))
    config = uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    for _ in range(200):
        if running.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(timeout=10)
    service.close()


def test_the_page_uploads_a_video_and_shows_hashtags(server: str, tiny_extracted: Path) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    chromium = find_or_install_chromium()
    clip = sorted((tiny_extracted / "media").iterdir())[0]
    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page()
        page.goto(server + "/")
        page.set_input_files("#video", str(clip))
        page.fill("#caption", "a sunny day at the beach")
        page.fill("#user_id", "someone-new")
        page.fill("#k", "5")
        page.click("#submit")
        page.wait_for_selector("#hashtags tbody tr", timeout=60_000)
        rows = page.locator("#hashtags tbody tr")
        assert rows.count() == 5
        assert rows.first.locator(".tag").inner_text().startswith("#")
        assert "New user (cold start)" in page.inner_text("#status")
        assert "visual" in page.inner_text("#status")
        browser.close()


def test_the_report_is_one_readable_page_in_a_browser(tmp_path: Path, tiny_run: Path) -> None:
    """The report opened from disk with nothing beside it: every plot drawn, tables there."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    chromium = find_or_install_chromium()
    from mishon.evaluate.evaluation import evaluate_run
    from mishon.report import write_report

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    evaluate_run(run, baselines="popularity,history")
    alone = tmp_path / "elsewhere" / "report.html"  # moved away from the run: still whole
    alone.parent.mkdir()
    shutil.move(write_report(run), alone)
    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(alone.as_uri())
        widths = page.eval_on_selector_all("img", "images => images.map(i => i.naturalWidth)")
        assert len(widths) >= 3 and all(width > 100 for width in widths)
        assert page.locator("h1").inner_text().startswith("MISHON report: run run on ")
        assert page.locator("table").first.locator("tbody tr").count() == 4  # 2 ours, 2 others
        shot = page.screenshot(full_page=True)
        assert shot[:4] == b"\x89PNG" and len(shot) > 20_000
        browser.close()
