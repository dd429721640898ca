"""Driving explorer pages in headless Chromium: find the browser, open a page, read it.

The ``driver`` fixture (``conftest.py``) skips when no Chromium (and its chromedriver)
is installed, e.g. Debian's ``chromium`` and ``chromium-driver`` packages.
"""
from __future__ import annotations

import shutil
from typing import Any

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1300,850")
#: Weights are shown with 4 decimals (and embedded with 6, or to 4 for tokens).
WEIGHT_TOL = 5.1e-5
#: Seconds a page may take to become ready (its data read and first drawn).
READY_TIMEOUT_S = 20


def find_chromium() -> tuple[str | None, str | None]:
    """``(browser, chromedriver)`` paths, ``None`` where not installed."""
    browser = next(filter(None, map(shutil.which, BROWSERS)), None)
    return browser, shutil.which("chromedriver")


def open_page(driver: Any, url: str) -> None:
    """Loads ``url`` and waits until the page has drawn its first view."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    ready = "return document.body.getAttribute('data-ready')"
    WebDriverWait(driver, READY_TIMEOUT_S).until(lambda d: d.execute_script(ready) == "1")


def select(driver: Any, control: str, text: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", control)).select_by_visible_text(text)


def options(driver: Any, control: str) -> list[str]:
    return [o.text for o in driver.find_elements("css selector", f"#{control} option")]


def drawn_edges(driver: Any) -> list[Any]:
    return driver.find_elements("css selector", "#edges g.edge")


def hover_text(driver: Any, edge: Any) -> list[str]:
    """The tooltip's lines after the pointer moves onto ``edge``'s arrowhead (the edge is
    first drawn on top, as dense pages cross many edges there)."""
    from selenium.webdriver.common.action_chains import ActionChains

    driver.execute_script("arguments[0].parentNode.appendChild(arguments[0]);", edge)
    ActionChains(driver).move_to_element(driver.find_element("id", "title")).perform()
    ActionChains(driver).move_to_element(edge.find_element("css selector", "path.head")).perform()
    tooltip = driver.find_element("id", "tooltip")
    assert tooltip.is_displayed()
    return [line.text for line in tooltip.find_elements("css selector", "div")]


def shown_weight(line: str) -> float:
    """The number of a tooltip line ``"weight: 0.1234"``."""
    name, value = line.split(": ")
    assert name == "weight"
    return float(value)


def set_slider(driver: Any, value: float) -> None:
    """Moves the weak-edge filter's slider to ``value``."""
    driver.execute_script("arguments[0].value = arguments[1];"
                          "arguments[0].dispatchEvent(new Event('input'));",
                          driver.find_element("id", "filter"), value)


def skip_without_chromium() -> tuple[str, str]:
    browser, chromedriver = find_chromium()
    if browser is None or chromedriver is None:
        pytest.skip("no headless Chromium found: install chromium and chromedriver (Debian: "
                    "apt-get install chromium chromium-driver)")
    return browser, chromedriver
