"""The explorer page in a real headless Chromium: its controls change the DOM as they should.

Every expected number comes from the records in Python.  Skipped only when no
Chromium (and its chromedriver) is installed (see ``browser.py``).
"""
from __future__ import annotations

from typing import Any

import pytest
import torch
from torch_geometric.data import Data

from pyg_attn.analysis import attention_flow, attention_rollout
from pyg_attn.nn import GATConv
from pyg_attn.visualization import explorer

from ..graphs import random_graph
from .browser import (
    WEIGHT_TOL,
    drawn_edges,
    hover_text,
    open_page,
    select,
    set_slider,
    shown_weight,
)
from .test_explorer import TwoLayers, capture, cora_page

pytestmark = pytest.mark.browser

#: Bound on opening a Cora 2-hop page (navigation start to first render).
MAX_LOAD_MS = 1000.0


@pytest.fixture(scope="module")
def known(tmp_path_factory: Any) -> dict[str, Any]:
    """A 14-node graph, our GATConv with 2 then 3 heads, labels and predictions, as a page."""
    edge_index = random_graph(14, 14, 40, seed=81)
    data = Data(x=torch.randn(14, 6), edge_index=edge_index, y=torch.arange(14) % 3)
    torch.manual_seed(3)
    model = TwoLayers(GATConv, 6, heads=2)
    model.conv2 = GATConv(8, 3, heads=3)
    records, logits = capture(model, data.x, edge_index)
    path = tmp_path_factory.mktemp("explorer") / "known.html"
    page = explorer(records, data, node=0, hops=3, path=path, predictions=logits)
    return {"records": records, "data": data, "page": page, "url": path.as_uri(),
            "logits": logits}


def table_rows(driver: Any, table: str) -> list[tuple[int, str, float]]:
    """``(node, edge id text, weight)`` of the side panel's ``table``, in its order."""
    rows = driver.find_elements("css selector", f"#{table} tr[data-node]")
    return [(int(row.find_element("css selector", "td.node").text),
             row.find_element("css selector", "td.edge-id").text,
             float(row.find_element("css selector", "td.weight").text)) for row in rows]


def layer_edges(known: dict[str, Any], layer: int,
                head: int | None) -> list[tuple[int, int, int, float]]:
    """``(source, target, edge id, weight)`` of a layer's shown edges from the Python records
    (``head=None``: mean of heads)."""
    nodes = set(known["page"].data["nodes"])
    record = list(known["records"].values())[layer]
    weights = record.alpha.mean(-1) if head is None else record.alpha[:, head]
    return [(s, d, e, float(w)) for (s, d), e, w in zip(record.edge_index.t().tolist(),
                                                        record.edge_id.tolist(), weights)
            if s in nodes and d in nodes]


def expected_rows(edges: list[tuple[int, int, int, float]], node: int, incoming: bool
                  ) -> list[tuple[int, str, float]]:
    """The strongest (up to 10) incoming or outgoing edges of ``node``, as table rows."""
    rows = [(s if incoming else d, str(e), w) for s, d, e, w in edges
            if (d if incoming else s) == node]
    return sorted(rows, key=lambda r: -r[2])[:10]


def assert_same_rows(got: list[tuple[int, str, float]], want: list[tuple[int, str, float]]
                     ) -> None:
    """Same rows, weights equal to the 4 decimals shown, strongest first."""
    assert sorted(r[:2] for r in got) == sorted(r[:2] for r in want)
    weight = {r[:2]: r[2] for r in want}
    assert all(w == pytest.approx(weight[(n, e)], abs=WEIGHT_TOL) for n, e, w in got)
    assert [w for *_, w in got] == sorted((w for *_, w in got), reverse=True)


# ----------------------------------------------------------------------------- tests
def test_default_view_layer_and_head_switch(driver, known):
    page, conv1 = known["page"], known["records"]["conv1"]
    open_page(driver, known["url"])
    edges = layer_edges(known, 0, None)
    assert len(drawn_edges(driver)) == len(edges) > 0
    assert driver.find_element("id", "edge-count").text == \
        f"{len(edges)} of {len(edges)} edges drawn"
    assert len(driver.find_elements("css selector", "circle.node")) == len(page.data["nodes"])

    source, target, edge_id, weight = max((e for e in edges if e[2] >= 0), key=lambda e: e[3])
    edge = driver.find_element("css selector", f'#edges g.edge[data-edge-id="{edge_id}"]')
    lines = hover_text(driver, edge)
    assert lines[:-1] == [f"source: {source}", f"target: {target}", f"edge id: {edge_id}",
                          "layer: conv1", "head: mean of heads"]
    assert shown_weight(lines[-1]) == pytest.approx(weight, abs=WEIGHT_TOL)

    select(driver, "head", "head 1")
    edge = driver.find_element("css selector", f'#edges g.edge[data-edge-id="{edge_id}"]')
    head1 = float(conv1.alpha[conv1.edge_id.tolist().index(edge_id), 1])
    lines = hover_text(driver, edge)
    assert lines[-2] == "head: head 1"
    assert shown_weight(lines[-1]) == pytest.approx(head1, abs=WEIGHT_TOL)

    select(driver, "layer", "conv2")
    heads = driver.find_elements("css selector", "#head option")
    assert [h.text for h in heads] == ["mean of heads", "head 0", "head 1", "head 2"]
    assert len(drawn_edges(driver)) == len(layer_edges(known, 1, None))
    loop = driver.find_element("css selector", '#edges g.edge[data-edge-id="-1"]')
    assert hover_text(driver, loop)[2] == "edge id: -1 (self-loop added by the layer)"


def test_click_lists_the_python_weights_and_recentres(driver, known):
    open_page(driver, known["url"])
    node = known["page"].data["nodes"][1]
    driver.find_element("css selector", f'circle.node[data-node="{node}"]').click()
    assert driver.find_element("id", "info-title").text.startswith(f"node {node}, label ")
    assert "focus" in driver.find_element(
        "css selector", f'circle.node[data-node="{node}"]').get_attribute("class")
    edges = layer_edges(known, 0, None)
    for table, incoming in (("incoming", True), ("outgoing", False)):
        got, want = table_rows(driver, table), expected_rows(edges, node, incoming)
        assert_same_rows(got, want)
    view_box = driver.find_element("id", "graph").get_dom_attribute("viewBox")
    box = [float(v) for v in view_box.split()]
    circle = driver.find_element("css selector", f'circle.node[data-node="{node}"]')
    centre = (float(circle.get_attribute("cx")), float(circle.get_attribute("cy")))
    assert (box[0] + box[2] / 2, box[1] + box[3] / 2) == pytest.approx(centre, abs=1e-6)

    select(driver, "head", "head 0")
    want = expected_rows(layer_edges(known, 0, 0), node, True)
    assert_same_rows(table_rows(driver, "incoming"), want)


@pytest.mark.parametrize("view", ["rollout", "flow"])
def test_rollout_and_flow_views(driver, known, view):
    page, records = known["page"], known["records"]
    open_page(driver, known["url"])
    select(driver, "view", f"attention {view}")
    assert not driver.find_element("id", "layer").is_enabled()
    assert not driver.find_element("id", "head").is_enabled()
    nodes = page.data["nodes"]
    compute = attention_rollout if view == "rollout" else attention_flow
    row = compute(records, targets=[0], num_nodes=14)
    row = (row.to_dense() if row.is_sparse else row)[0]
    shares = [(v, float(row[v])) for v in nodes if row[v] > 0]
    assert len(drawn_edges(driver)) == len(shares)
    got = table_rows(driver, "incoming")
    want = sorted(((v, "\u2014", w) for v, w in shares), key=lambda r: -r[2])[:10]
    assert_same_rows(got, want)
    edge = drawn_edges(driver)[-1]  # the strongest is drawn last
    lines = hover_text(driver, edge)
    assert lines[1] == "target: 0"
    assert shown_weight(lines[-1]) == pytest.approx(max(w for _, w in shares), abs=WEIGHT_TOL)


def test_threshold_topk_and_colours(driver, known):
    open_page(driver, known["url"])
    edges = layer_edges(known, 0, None)
    weights = sorted(w for *_, w in edges)
    threshold = round((weights[len(weights) // 2] + weights[len(weights) // 2 + 1]) / 2, 2)
    set_slider(driver, threshold)
    assert len(drawn_edges(driver)) == sum(w >= threshold for w in weights)

    select(driver, "filter-mode", "top-k per target")
    set_slider(driver, 1)
    assert len(drawn_edges(driver)) == len({d for _, d, _, _ in edges})
    assert driver.find_element("id", "filter-value").text == "k = 1"

    select(driver, "colour", "prediction")
    legend = driver.find_element("id", "legend").text
    assert legend.startswith("node colour = prediction:")
    predicted = known["logits"].argmax(-1)
    fills = {int(c.get_attribute("data-node")): c.get_attribute("fill")
             for c in driver.find_elements("css selector", "circle.node")}
    colour_of = {}
    for node, fill in fills.items():  # one colour per predicted class, distinct classes differ
        assert colour_of.setdefault(int(predicted[node]), fill) == fill
    assert len(set(colour_of.values())) == len(colour_of)


def test_cora_two_hop_page_opens_in_under_a_second(driver, tmp_path_factory, tmp_path):
    for node in (0, 1358):  # node 0 (the demo's) and the hub with the largest neighbourhood
        page, _, _ = cora_page(tmp_path_factory, node=node)
        path = page.save(tmp_path / f"cora{node}.html")
        open_page(driver, path.as_uri())
        ready = driver.execute_script("return window.explorerReadyMs")
        assert ready < MAX_LOAD_MS, (node, ready)
        assert len(drawn_edges(driver)) == len(page.data["layers"][0]["src"])


def test_jupyter_frame_renders_the_page(driver, known, tmp_path):
    notebook = tmp_path / "notebook.html"  # what Jupyter does with _repr_html_: insert it
    notebook.write_text(f"<!DOCTYPE html><html><body>{known['page']._repr_html_()}</body></html>",
                        encoding="utf-8")
    driver.get(notebook.as_uri())
    driver.switch_to.frame(driver.find_element("css selector", "iframe"))
    try:
        assert driver.execute_script("return document.body.getAttribute('data-ready')") == "1"
        assert len(drawn_edges(driver)) == len(layer_edges(known, 0, None))
    finally:
        driver.switch_to.default_content()
