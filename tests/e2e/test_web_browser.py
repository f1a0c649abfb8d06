"""The web form in headless Chromium: sign in, submit, see the job listed, watch it, read the report.

The job runs on a real Celery worker with the fake quantizer (slow enough to watch) and pushes
to a local Hub. Chromium and chromedriver come from Debian's packages; no browser is downloaded.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localhub.pytest_plugin import LocalHubFixture
from localhub.testing import ALICE_WRITE
from tests.e2e.stack import Stack, running_stack
from tests.worker.hub_repos import LLAMA_CONFIG, publish_source
from tests.worker.processes import FAKE_WORKER

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
# Flags for a root user in a container, with every background connection to Google switched off.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
LAYERS = 40


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A headless Chromium driven through the system chromedriver, with a fresh profile."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "chromium or chromedriver is not installed: apt-get install chromium chromium-driver"
        )
    # Selenium Manager would otherwise look for drivers online.
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    service = webdriver.ChromeService(
        executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log")
    )
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def stack(tmp_path: Path, localhub: LocalHubFixture) -> Iterator[Stack]:
    """The API and a worker with the fake quantizer (0.2 s per layer), on a local Hub."""
    publish_source(localhub.endpoint, ALICE_WRITE, "alice/tiny-llama", config=LLAMA_CONFIG)
    slow = {"FAKE_LAYERS": str(LAYERS), "FAKE_LAYER_S": "0.2"}
    with running_stack(tmp_path, localhub, worker_module=FAKE_WORKER, worker_env=slow) as running:
        yield running


def _wait(driver: Any, condition: Any, description: str, timeout: float = 30) -> Any:
    waiter = WebDriverWait(driver, timeout, poll_frequency=0.05)
    return waiter.until(condition, message=f"timed out waiting for {description}")


def test_sign_in_submit_watch_and_read_report(browser: Any, stack: Stack) -> None:
    browser.get(f"{stack.url}/")
    browser.find_element(By.NAME, "api_key").send_keys(stack.key.secret)
    browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
    _wait(browser, lambda d: "Signed in with key" in d.page_source, "the signed-in page")

    browser.find_element(By.NAME, "model_id").send_keys("alice/tiny-llama")
    Select(browser.find_element(By.NAME, "preset")).select_by_visible_text("W4A4")
    browser.find_element(By.NAME, "hub_token").send_keys(ALICE_WRITE)
    browser.find_element(By.CSS_SELECTOR, "form[action='/submit'] button").click()
    _wait(browser, lambda d: "/jobs/" in d.current_url, "the job page")
    job_id = browser.current_url.rsplit("/", 1)[1]
    assert ALICE_WRITE not in browser.page_source

    # A marker that a page reload would drop: progress must arrive over the event stream.
    browser.execute_script("window.sameDocument = true;")
    seen: set[float] = set()

    def progress_moved(driver: Any) -> bool:
        value = float(driver.find_element(By.ID, "bar").get_attribute("value") or 0)
        if 0 < value < 100 and driver.execute_script("return window.sameDocument === true"):
            seen.add(value)
        return len(seen) >= 3

    _wait(browser, progress_moved, "three progress updates without a reload")
    detail = browser.find_element(By.ID, "detail").text
    assert re.match(rf"calibrating \d+/{LAYERS}", detail), detail
    assert browser.find_element(By.ID, "state").text == "calibrating"

    browser.get(f"{stack.url}/")
    listed = browser.find_element(By.CSS_SELECTOR, f"a[href='/jobs/{job_id}']")
    assert listed.text == job_id[:12]
    listed.click()
    _wait(browser, lambda d: d.current_url.endswith(f"/jobs/{job_id}"), "the job page")

    _wait(browser, lambda d: d.find_elements(By.ID, "report"), "the report after success", 60)
    assert browser.find_element(By.ID, "state").text == "succeeded"
    summary = browser.find_element(By.ID, "summary").text
    assert "Quantized perplexity 21.5" in summary
    assert "Float perplexity 20" in summary
    assert browser.find_elements(By.CSS_SELECTOR, "#figure svg rect")
    image = browser.find_element(By.CSS_SELECTOR, ".report-figure img")
    assert browser.execute_script("return arguments[0].naturalWidth", image) == 1
    assert (
        "Pushed to alice/tiny-llama-RUQuant-W4A4" in browser.find_element(By.TAG_NAME, "body").text
    )
