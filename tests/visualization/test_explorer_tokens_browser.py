"""The token explorer page in headless Chromium: labels, a known weight, rollout and flow.

A synthetic 4-layer, 4-head, 16-token attention tuple (as Hugging Face returns it); the
expected values come from the tensors and :mod:`pyg_attn.analysis`.
"""
from __future__ import annotations

from typing import Any

import pytest
import torch

from pyg_attn.analysis import attention_flow, attention_rollout
from pyg_attn.visualization import explorer

from .browser import WEIGHT_TOL, drawn_edges, hover_text, open_page, options, select, shown_weight
from .token_attention import attention_tuple, token_words

pytestmark = pytest.mark.browser

#: Bound on opening a 12-layer, 12-head, 128-token page (navigation start to first render).
MAX_LOAD_MS = 1000.0
CENTRE = 5


@pytest.fixture(scope="module")
def page(tmp_path_factory: Any) -> dict[str, Any]:
    attentions, words = attention_tuple(batch=2), token_words(16)
    path = tmp_path_factory.mktemp("tokens") / "tokens.html"
    explorer(attentions, labels=words, batch=1, node=CENTRE, flow_targets=2, path=path)
    stack = torch.stack([a[1] for a in attentions]).double()  # [L, H, T, T]
    return {"stack": stack, "words": words, "url": path.as_uri()}


def name(page: dict[str, Any], k: int) -> str:
    return f"{page['words'][k]} ({k})"


def test_token_labels_and_a_known_weight(driver, page):
    open_page(driver, page["url"])
    labels = driver.find_elements("css selector", "#nodes text.token-label")
    assert [label.text for label in labels] == page["words"]
    xs = [float(label.get_attribute("x")) for label in labels]
    assert xs == sorted(xs)  # reading order, left to right
    assert options(driver, "layout") == ["sequence", "circle"]
    assert len(drawn_edges(driver)) == 16 * 16
    select(driver, "layer", "layer 2")
    select(driver, "head", "head 1")
    edge = driver.find_element(
        "css selector", f'#edges g.edge[data-source="{name(page, 3)}"]'
                        f'[data-target="{name(page, 9)}"]')
    lines = hover_text(driver, edge)
    assert lines[:-1] == [f"source: {name(page, 3)}", f"target: {name(page, 9)}",
                          "layer: layer 2", "head: head 1"]
    weight = float(page["stack"][2, 1, 9, 3])  # query 9 on key 3
    assert shown_weight(lines[-1]) == pytest.approx(weight, abs=WEIGHT_TOL)
    select(driver, "layout", "circle")
    labels = driver.find_elements("css selector", "#nodes text.token-label")
    assert [label.text for label in labels] == page["words"]
    assert len({round(float(label.get_attribute("y"))) for label in labels}) > 2


@pytest.mark.parametrize("view", ["rollout", "flow"])
def test_rollout_and_flow_rows_equal_the_analysis(driver, page, view):
    open_page(driver, page["url"])
    select(driver, "view", f"attention {view}")
    compute = attention_rollout if view == "rollout" else attention_flow
    row = compute(page["stack"], targets=[CENTRE])[0]
    embedded = 1e-6 if view == "flow" else 0.5e-4 + 1e-7  # rollout: to 4 decimals, as shown
    want = {name(page, j): float(row[j]) for j in range(16) if row[j] > embedded}
    edges = drawn_edges(driver)
    assert {e.get_attribute("data-target") for e in edges} == {name(page, CENTRE)}
    got = {e.get_attribute("data-source"): float(e.get_attribute("data-weight")) for e in edges}
    assert got.keys() == want.keys()
    assert got == pytest.approx(want, abs=embedded)
    cells = driver.find_elements("css selector", "#incoming tr[data-node] td.weight")
    top = sorted(want.values(), reverse=True)[:10]
    assert [float(c.text) for c in cells] == pytest.approx(top, abs=WEIGHT_TOL)


def test_twelve_layers_of_128_tokens_open_in_under_a_second(driver, tmp_path):
    attentions = attention_tuple(layers=12, heads=12, tokens=128, batch=1)
    path = explorer(attentions, labels=token_words(128), flow_targets=0,  # flow: minutes
                    path=tmp_path / "large.html").save(tmp_path / "large.html")
    open_page(driver, path.as_uri())
    ready = driver.execute_script("return window.explorerReadyMs")
    assert ready < MAX_LOAD_MS, ready
    assert len(drawn_edges(driver)) == 128 * 3  # each query's 3 strongest keys
