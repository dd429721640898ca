"""Work items: rows cut into chunks, split rows' merge slots."""
from __future__ import annotations

import pytest
import torch

from pyg_attn.ops import prepare
from pyg_attn.ops.triton.work import split_rows, triton_graph

from .graphs import mixed_graph


@pytest.mark.parametrize("chunk", [1, 3, 16, 1000])
def test_items_cover_every_edge_once_in_bounded_chunks(chunk):
    ptr = torch.tensor([0, 0, 5, 6, 6, 40])
    work = split_rows(ptr, chunk)
    row, start, end, slot = work.items.long()
    covered = torch.cat([torch.arange(s, e) for s, e in zip(start.tolist(), end.tolist())])
    assert torch.equal(covered, torch.arange(40))
    assert torch.all(end - start <= chunk)
    assert torch.all((ptr[row] <= start) & (end <= ptr[row + 1]))
    assert torch.equal(row.unique(), torch.arange(5))  # empty rows get an item too
    pieces = torch.bincount(row, minlength=5)
    assert torch.equal(slot >= 0, pieces[row] > 1)
    assert torch.equal(work.slot_row.long(), row[slot >= 0])
    assert work.merge_ptr[-1] == work.slot_row.numel()
    starts = work.merge_ptr[:-1].long()
    assert torch.equal(work.slot_row.long()[starts], torch.nonzero(pieces > 1).flatten())


def test_bad_chunk_is_refused():
    with pytest.raises(ValueError, match="'chunk'"):
        split_rows(torch.tensor([0, 1]), 0)


def test_test_graph_splits_destination_and_source_hubs():
    num_src, num_dst, edge_index = mixed_graph()
    prepared = prepare(edge_index, (num_src, num_dst))
    graph = triton_graph(prepared, 16)
    assert graph.dst_work.slot_row.numel() > 0 and graph.src_work.slot_row.numel() > 0
    assert graph.col.dtype == torch.int32
    assert triton_graph(prepared, 16) is graph  # cached on the prepared graph
