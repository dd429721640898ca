"""The heterogeneous explorer page in headless Chromium: typed nodes, relation filter, hover.

A ``to_hetero`` GAT on a small ``HeteroData``; every expected value comes from the
records and the graph in Python.
"""
from __future__ import annotations

from typing import Any

import pytest
import torch

from pyg_attn.analysis import attention_rollout
from pyg_attn.convert import hetero_attention
from pyg_attn.visualization import explorer

from .browser import WEIGHT_TOL, drawn_edges, hover_text, open_page, options, select, shown_weight
from .hetero_graphs import hetero_graph, to_hetero_records

pytestmark = pytest.mark.browser

CENTRE = ("paper", 0)


@pytest.fixture(scope="module")
def page(tmp_path_factory: Any) -> dict[str, Any]:
    data = hetero_graph()
    records, _ = to_hetero_records(data)
    path = tmp_path_factory.mktemp("hetero") / "hetero.html"
    explorer(records, data, node=CENTRE, hops=2, path=path)
    return {"data": data, "records": records, "url": path.as_uri()}


def neighbourhood(data: Any, hops: int) -> set[tuple[str, int]]:
    """The typed ``hops``-hop in-neighbourhood of :data:`CENTRE` in ``data``'s edges."""
    found, frontier = {CENTRE}, {CENTRE}
    for _ in range(hops):
        reached = set()
        for (src, _, dst), edge_index in data.edge_index_dict.items():
            for j, i in edge_index.t().tolist():
                if (dst, i) in frontier and (src, j) not in found:
                    reached.add((src, j))
        found |= reached
        frontier = reached
    return found


def name(node: tuple[str, int]) -> str:
    return f"({node[0]}, {node[1]})"


def test_typed_nodes_and_legend(driver, page):
    open_page(driver, page["url"])
    shown = neighbourhood(page["data"], 2)
    for node_type in ("paper", "author", "topic"):
        count = sum(t == node_type for t, _ in shown)
        drawn = driver.find_elements("css selector", f'#nodes .node[data-type="{node_type}"]')
        assert len(drawn) == count
        assert {int(e.get_attribute("data-id")) for e in drawn} == \
            {v for t, v in shown if t == node_type}
        item = driver.find_element("css selector", f'#legend .type-item[data-type="{node_type}"]')
        assert item.text == f"{node_type} ({count})"
    fills = {e.get_attribute("data-type"): e.get_attribute("fill")
             for e in driver.find_elements("css selector", "#nodes .node")}
    assert len(set(fills.values())) == 3  # one colour per type
    tags = {e.get_attribute("data-type"): e.tag_name
            for e in driver.find_elements("css selector", "#nodes .node")}
    assert tags["paper"] == "circle" and tags["author"] == "polygon"
    assert driver.find_element("id", "info-title").text == "(paper, 0), label 0"


def test_hover_shows_the_relation_of_a_known_edge(driver, page):
    open_page(driver, page["url"])
    record = page["records"]["conv1.author__writes__paper"]
    into_centre = (record.edge_index[1] == 0).nonzero().view(-1)
    strongest = int(into_centre[record.alpha[into_centre].mean(1).argmax()])
    author, edge_id = int(record.edge_index[0, strongest]), int(record.edge_id[strongest])
    edge = driver.find_element(
        "css selector", f'#edges g.edge[data-relation="(author, writes, paper)"]'
                        f'[data-edge-id="{edge_id}"]')
    lines = hover_text(driver, edge)
    assert lines[:-1] == [f"source: (author, {author})", "target: (paper, 0)",
                          "relation: (author, writes, paper)", f"edge id: {edge_id}",
                          "layer: conv1", "head: mean of heads"]
    weight = float(record.alpha[strongest].mean())
    assert shown_weight(lines[-1]) == pytest.approx(weight, abs=WEIGHT_TOL)


def test_relation_filter(driver, page):
    open_page(driver, page["url"])
    shown = neighbourhood(page["data"], 2)
    assert options(driver, "relation") == [
        "all relations", "(author, writes, paper)", "(paper, rev_writes, author)",
        "(paper, cites, paper)", "(topic, about, paper)", "(paper, rev_about, topic)"]
    total = 0
    for (src, rel, dst), edge_index in page["data"].edge_index_dict.items():
        among = sum((src, j) in shown and (dst, i) in shown for j, i in edge_index.t().tolist())
        select(driver, "relation", f"({src}, {rel}, {dst})")
        edges = drawn_edges(driver)
        assert len(edges) == among
        assert {e.get_attribute("data-relation") for e in edges} <= {f"({src}, {rel}, {dst})"}
        total += among
    select(driver, "relation", "all relations")
    assert len(drawn_edges(driver)) == total
    select(driver, "view", "attention rollout")
    assert not driver.find_element("id", "relation").is_enabled()


def test_typed_rollout_view(driver, page):
    open_page(driver, page["url"])
    select(driver, "view", "attention rollout")
    typed = hetero_attention(page["records"], page["data"])
    row = attention_rollout(typed, targets=[typed.node_id(*CENTRE)],
                            num_nodes=typed.num_nodes).to_dense()[0]
    kinds, ids = typed.typed_nodes(torch.arange(typed.num_nodes))
    shown = neighbourhood(page["data"], 2)
    want = {name((typed.node_types[k], v)): float(row[g])
            for g, (k, v) in enumerate(zip(kinds.tolist(), ids.tolist()))
            if row[g] > 0 and (typed.node_types[k], v) in shown}
    got = {e.get_attribute("data-source"): float(e.get_attribute("data-weight"))
           for e in drawn_edges(driver)}
    assert got == pytest.approx(want, abs=1e-6)
