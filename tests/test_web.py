"""The web page served by `ser-serve`, in a real browser: Debian's Chromium driven by Playwright
(`executable_path`: nothing downloads a browser), its fake microphone fed from a WAV of RAVDESS
clips. The page's results equal `ser-live --input same.wav --json`'s; permission refused and a
wrong token are said on the page; a file dropped on the page gives the same results; through
HAProxy, a replica killed mid-stream is survived."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import soundfile as sf

from .broker import free_port, wait_port
from .conftest import REPO
from .live import parse_results, run_live
from .serve import ServeProcess, env_with, haproxy_env, make_secrets, speech
from .test_serve import _serve_config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CLIPS = ["03-01-05-02-01-01-05", "03-01-03-02-02-01-05", "03-01-04-01-01-02-05"]
ARTIFACTS = Path(os.environ.get("SER_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def playwright():
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed (scripts/bootstrap installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def wav(ravdess, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("web") / "three.wav"
    sf.write(path, speech(ravdess, CLIPS), 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def expected(wav) -> list[str]:
    proc = run_live("--input", str(wav), "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    return [r["emotion"] for r in parse_results(proc.stdout)]


def _browser(playwright, audio: Path | None, *, allow_microphone: bool = True):
    args = [
        "--no-sandbox",
        "--use-fake-device-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
    ]
    if allow_microphone:
        args.append("--use-fake-ui-for-media-stream")
    else:
        args.append("--deny-permission-prompts")
    if audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={audio}%noloop")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=args)


def _wait_status(page, predicate, timeout_s: float = 60) -> str:
    """Poll the status line from here (the page's CSP forbids Playwright's string eval)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # the kind first: the page sets text and kind together, so text read after a kind is
        # never older than it (read the other way round, a stale text could pass with a new kind)
        kind = page.get_attribute("#status", "data-kind") or ""
        status = page.inner_text("#status")
        if predicate(status, kind):
            return status
        page.wait_for_timeout(100)
    raise AssertionError(f"status: {page.inner_text('#status')}")


def _click_until_status_changes(page, selector: str) -> None:
    """Click, and again if the page did not react (a click landing before its script is ready
    on a loaded machine)."""
    before = page.inner_text("#status")
    for _ in range(3):
        page.click(selector)
        for _ in range(20):
            if page.inner_text("#status") != before:
                return
            page.wait_for_timeout(100)
    raise AssertionError(f"the page did not react: {before}")


def _results(page) -> list[dict]:
    return page.evaluate("() => window.serResults()")


def _wait_results(page, n: int, timeout_s: float = 90) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = _results(page)
        if len(got) >= n:
            return got
        page.wait_for_timeout(200)
    raise AssertionError(f"{len(_results(page))} results; status: {page.inner_text('#status')}")


def test_microphone_page_gives_ser_live_results(playwright, wav, expected):
    with ServeProcess("--no-mqtt", "--workers", "1") as server:
        browser = _browser(playwright, wav)
        try:
            page = browser.new_page(viewport={"width": 412, "height": 915})  # a phone
            page.goto(f"http://127.0.0.1:{server.port}/")
            assert page.title() == "ser: speech emotion"
            page.click("#mic")
            results = _wait_results(page, len(expected))
            page.wait_for_timeout(500)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "web-page.png"), full_page=True)
            assert [r["emotion"] for r in results[: len(expected)]] == expected
            # the page shows them: the current emotion, one timeline letter and row each
            assert page.inner_text("#current").startswith(results[-1]["emotion"])
            letters = page.inner_text("#timeline")
            assert letters.replace("·", "") == "".join(
                {
                    "angry": "A",
                    "sad": "S",
                    "happy": "H",
                    "neutral": "N",
                    "calm": "C",
                    "fearful": "F",
                    "disgust": "D",
                    "surprised": "U",
                }[e]
                for e in expected
            )
            assert len(page.query_selector_all("#history tr")) == len(expected)
            assert "model default" in page.inner_text("#model")
            page.click("#mic")  # stop: the stream ends cleanly
        finally:
            browser.close()
    assert any("stream web-mic-" in line and "closed" in line for line in server.stderr)


def test_permission_refused_and_wrong_token_are_said_on_the_page(playwright, wav):
    config = _serve_config('token_env = "SER_TEST_TOKEN"\n')
    with ServeProcess(
        "--no-mqtt", "--workers", "1", "--config", config, env=env_with(SER_TEST_TOKEN="right")
    ) as server:
        url = f"http://127.0.0.1:{server.port}/"
        browser = _browser(playwright, wav)
        try:
            page = browser.new_page()
            page.goto(url)
            _click_until_status_changes(page, "#mic")  # no token entered
            status = _wait_status(page, lambda text, kind: kind == "error")
            assert "refused the token (missing token" in status
            page.fill("#token", "wrong")
            page.click("#mic")
            _wait_status(page, lambda text, kind: "wrong token" in text)
            assert page.evaluate("() => location.href") == url  # never in the URL
            assert page.evaluate("() => JSON.stringify(localStorage)") == "{}"
        finally:
            browser.close()
        denied = _browser(playwright, wav, allow_microphone=False)
        try:
            page = denied.new_page()
            page.goto(url)
            page.click("#auth summary")  # the token, entered once
            page.fill("#token", "right")
            _click_until_status_changes(page, "#mic")
            status = _wait_status(page, lambda text, kind: kind == "error")
            assert "permission was refused" in status
        finally:
            denied.close()


def test_a_file_on_the_page_gives_ser_live_results_and_downloads_them(
    playwright, wav, expected, tmp_path
):
    with ServeProcess("--no-mqtt", "--workers", "1") as server:
        browser = _browser(playwright, None)
        try:
            page = browser.new_page(accept_downloads=True)
            page.goto(f"http://127.0.0.1:{server.port}/")
            page.set_input_files("#file", str(wav))
            _wait_status(page, lambda text, kind: text.startswith("Done"), timeout_s=90)
            results = _results(page)
            with page.expect_download() as info:
                page.click("#download")
            lines = Path(info.value.path()).read_text().splitlines()
        finally:
            browser.close()
    assert [r["emotion"] for r in results] == expected
    assert [json.loads(line)["emotion"] for line in lines] == expected
    assert all("type" not in json.loads(line) for line in lines)  # the --json schema


def test_through_haproxy_the_page_survives_a_replica_kill(playwright, ravdess, tmp_path):
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy not installed (scripts/bootstrap installs it)")
    long_wav = tmp_path / "long.wav"
    sf.write(long_wav, speech(ravdess, CLIPS * 4), 16000, subtype="PCM_16")
    replicas = [ServeProcess("--no-mqtt", "--workers", "1") for _ in range(2)]
    secrets = make_secrets(tmp_path / "secrets")
    lb_port, tls_port = free_port(), free_port()
    haproxy = None
    browser = None
    try:
        for r in replicas:
            r.wait_ready()
        env = haproxy_env(lb_port, tls_port, secrets, replicas)
        haproxy = subprocess.Popen(
            ["haproxy", "-db", "-f", str(REPO / "deploy" / "haproxy.cfg")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(lb_port)
        time.sleep(1.5)  # both replicas pass their health checks
        browser = _browser(playwright, long_wav)
        page = browser.new_page(ignore_https_errors=True)
        page.goto(f"https://localhost:{tls_port}/")  # TLS at the load balancer: wss://
        page.click("#mic")
        first = _wait_results(page, 2)
        serving = next(
            r for r in replicas if any("stream web-mic-" in x and "opened" in x for x in r.stderr)
        )
        serving.kill()
        _wait_status(page, lambda text, kind: "reconnecting" in text, timeout_s=30)
        later = _wait_results(page, len(first) + 2, timeout_s=120)
        survivor = next(r for r in replicas if r is not serving)
        assert any("stream web-mic-" in x and "opened" in x for x in survivor.stderr)
        assert [r["source"] for r in later[len(first) :]] == [first[0]["source"]] * (
            len(later) - len(first)
        )  # the same stream name, on the other replica
    finally:
        if browser is not None:
            browser.close()
        if haproxy is not None:
            haproxy.send_signal(signal.SIGTERM)
            haproxy.wait(timeout=10)
        for r in replicas:
            r.kill()
