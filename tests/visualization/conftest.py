"""One headless Chromium for every browser test of the explorer pages."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .browser import FLAGS, skip_without_chromium


@pytest.fixture(scope="session")
def driver(tmp_path_factory: Any) -> Iterator[Any]:
    browser, chromedriver = skip_without_chromium()
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="selenium (the dev extra) is not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield chrome
    finally:
        chrome.quit()
