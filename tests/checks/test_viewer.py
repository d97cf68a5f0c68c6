"""The counterexample viewer: the page beside every trace, replay --html, view, and the
page itself in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pagingcheck.checks import traces, viewer
from pagingcheck.checks.cli import cli
from pagingcheck.checks.runner import resolve_factory
from tests.checks.test_console import PRINTER

MUTANT = "pagingcheck.impl.mutants:putc_prints_r0"


@pytest.fixture(scope="module")
def failed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trace (and, beside it, the page) of a kernel that prints the wrong register."""
    folder = tmp_path_factory.mktemp("viewer")
    config = folder / "printer.yaml"
    config.write_text(PRINTER)
    args = ["validate", "--impl", MUTANT, "--config", str(config), "--traces", str(folder)]
    result = CliRunner().invoke(cli, [*args, "--json", "-x"])
    assert result.exit_code == 1, result.output
    return Path(json.loads(result.stdout)["violation"]["trace"])


def payload(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    assert found, "no data in the page"
    data: dict[str, Any] = json.loads(found[1])
    return data


def test_every_trace_written_on_failure_has_its_page_beside_it(failed: Path) -> None:
    page = failed.with_suffix(".html").read_text()
    data = payload(page)
    trace = traces.load(failed.read_text(), str(failed))
    assert data["violation"]["property"] == "refinement"
    assert "console: spec 'h', system '\\x00'" in data["violation"]["why"]
    assert data["failing"] == len(trace.choices) == len(data["steps"])
    assert len(data["states"]) == len(data["steps"]) + 1  # the boot state, then each step
    assert data["states"][-1]["console"] == "'\\x00'"  # what the kernel printed
    assert data["steps"][-1]["choice"] == "run 1"


def test_the_page_is_self_contained(failed: Path) -> None:
    page = failed.with_suffix(".html").read_text()
    assert not re.search(r"\b(src|href)\s*=", page)  # nothing loaded from anywhere
    assert "http://" not in page and "https://" not in page
    assert page.count("<script") == 2  # the data and the drawing


def test_nothing_from_a_trace_reaches_the_page_as_markup(failed: Path) -> None:
    trace = traces.load(failed.read_text(), str(failed))
    text, result = viewer.render(trace, resolve_factory(MUTANT), "</script><b>x")
    assert "<title>&lt;/script&gt;&lt;b&gt;x</title>" in text
    # In the data the name stays a string: no "</" inside a script element can end it.
    assert text.count("</script>") == 2 and "</script><b>" not in text
    assert payload(text)["name"] == "</script><b>x"
    assert result.violation is not None


def test_replay_writes_the_page_on_request(failed: Path, tmp_path: Path) -> None:
    out = tmp_path / "page.html"
    result = CliRunner().invoke(cli, ["replay", str(failed), "--html", str(out)])
    assert result.exit_code == 1 and "violated at step" in result.stdout
    assert (
        payload(out.read_text())["failing"]
        == payload(failed.with_suffix(".html").read_text())["failing"]
    )


def test_view_writes_beside_the_trace_or_where_told(failed: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.yaml"
    shutil.copy(failed, copy)
    result = CliRunner().invoke(cli, ["view", str(copy)])
    assert result.exit_code == 1 and result.stdout.strip() == str(tmp_path / "copy.html")
    assert payload((tmp_path / "copy.html").read_text())["violation"] is not None
    result = CliRunner().invoke(cli, ["view", str(copy), "--out", str(tmp_path / "no" / "x.html")])
    assert result.exit_code == 2 and "cannot write the page" in result.stderr


# -- in a browser -------------------------------------------------------------------------------


def browser() -> Any:
    """Headless Chromium under its driver, or a skip saying what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("no chromium and chromedriver on PATH (Debian: chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_the_page_steps_through_the_run_in_chromium(failed: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    data = payload(failed.with_suffix(".html").read_text())
    failing = data["failing"]
    chrome = browser()
    try:
        chrome.get(failed.with_suffix(".html").resolve().as_uri())

        def heading() -> str:
            return str(chrome.find_element(By.ID, "heading").text)

        assert heading() == f"step {failing}: run 1"  # it opens at the failing step
        assert "violated at step" in chrome.find_element(By.ID, "verdict").text
        assert "violated here" in chrome.find_element(By.ID, "what").text
        page = chrome.find_element(By.TAG_NAME, "body")
        page.send_keys(Keys.HOME)
        assert heading() == "step 0: booted"
        assert chrome.find_element(By.ID, "console").text == "console: (nothing printed)"
        page.send_keys(Keys.ARROW_RIGHT)
        assert heading() == f"step 1: {data['steps'][0]['choice']}"
        assert chrome.find_elements(By.CSS_SELECTOR, ".changed"), "nothing marked as changed"
        page.send_keys("f")
        assert heading() == f"step {failing}: run 1"
        assert chrome.find_element(By.ID, "console").text == "console: '\\x00'"
        assert "#step=" in chrome.current_url
        shot = tmp_path / "failing-step.png"
        chrome.save_screenshot(str(shot))
        print(f"screenshot of the failing step: {shot}")
        assert shot.stat().st_size > 0
    finally:
        chrome.quit()
