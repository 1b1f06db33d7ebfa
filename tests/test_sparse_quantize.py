"""quantize(): hand-built cases with exact outputs, and the round trip on a real ScanNet scan."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pcseg.data.contract import IGNORE
from pcseg.sparse import SparseTensor, quantize


def test_quantize_tiny_exact():
    # Voxel size 1: points 0,1 share voxel (0,0,0); 2 is in (-1,0,0) (floor, not truncation);
    # 3,4,5 share (0,0,2); point 6 is the same place as 0 but batch 1.
    coord = torch.tensor([[0.2, 0.1, 0.9], [0.7, 0.0, 0.0], [-0.1, 0.5, 0.5],
                          [0.0, 0.0, 2.5], [0.5, 0.5, 2.0], [0.9, 0.9, 2.9], [0.2, 0.1, 0.9]])
    batch = torch.tensor([0, 0, 0, 0, 0, 0, 1])
    feats = torch.tensor([[1.0], [3.0], [5.0], [0.0], [3.0], [6.0], [7.0]])
    labels = torch.tensor([IGNORE, 4, IGNORE, 2, 1, 1, IGNORE])
    coords, inverse, vfeats, vlabels = quantize(coord, 1.0, batch, feats, labels)
    assert coords.dtype == torch.int32
    assert coords.tolist() == [[0, -1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 2], [1, 0, 0, 0]]
    assert inverse.tolist() == [1, 1, 0, 2, 2, 2, 3]
    assert vfeats.tolist() == [[5.0], [2.0], [3.0], [7.0]]
    # voxel 1: IGNORE never beats a labelled point; voxel 2: 1 wins 2-to-1; all-IGNORE stays IGNORE
    assert vlabels.tolist() == [IGNORE, 4, 1, IGNORE]


def test_quantize_vote_tie_goes_to_smaller_label_and_numpy_input():
    coord = np.zeros((4, 3), dtype=np.float32)
    coords, inverse, vfeats, vlabels = quantize(coord, 0.05, labels=np.array([3, 3, 1, 1]))
    assert coords.tolist() == [[0, 0, 0, 0]] and inverse.tolist() == [0, 0, 0, 0]
    assert vfeats is None and vlabels.tolist() == [1]


def test_quantize_errors_name_the_problem():
    with pytest.raises(ValueError, match="voxel_size"):
        quantize(torch.zeros(2, 3), 0.0)
    with pytest.raises(ValueError, match="labels has 1 rows"):
        quantize(torch.zeros(2, 3), 0.1, labels=torch.tensor([0]))
    with pytest.raises(ValueError, match="outside the supported"):
        quantize(torch.tensor([[1e6, 0.0, 0.0]]), 0.01)


def test_quantize_scannet_round_trip(shared_data):
    data = np.load(shared_data / "scannet" / "scene0000_00_vert_all.npy")
    coord, color = data[:, :3], data[:, 3:6] / 255.0
    assert len(coord) == 81369
    independent = np.unique(np.floor(coord.astype(np.float64) / 0.02).astype(np.int64), axis=0)
    coords, inverse, vfeats, _ = quantize(coord, 0.02, feats=color)
    assert len(coords) == len(independent) == 80080
    assert np.array_equal(coords[:, 1:].numpy(), independent)  # same voxels, same (x, y, z) order
    # Every point lies in its voxel, and the voxel colour is the mean of its points.
    grid = np.floor(coord / np.float32(0.02)).astype(np.int64)
    assert np.array_equal(coords[inverse, 1:].numpy(), grid)
    sums = np.zeros((len(coords), 3))
    np.add.at(sums, inverse.numpy(), color)
    counts = np.bincount(inverse.numpy(), minlength=len(coords))[:, None]
    np.testing.assert_allclose(vfeats.numpy(), sums / counts, atol=1e-5)
    x = SparseTensor(vfeats, coords)
    np.testing.assert_allclose(x.slice(inverse).numpy(), (sums / counts)[inverse.numpy()], atol=1e-5)
