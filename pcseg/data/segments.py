"""Geometric over-segmentation of a point cloud: connected surface patches of similar colour
and orientation, the "super-points" weak-label methods spread labels over.

Two points are joined when one is among the other's `neighbours` nearest points, closer
than `max_distance` (metres), their colours differ by less than `max_color` (Euclidean, rgb
in 0..1) and their normals agree, |n_a . n_b| > `min_normal_cos` (orientation-free, so
unoriented normals work). A segment is a connected component of that graph. A k-NN graph
rather than a fixed voxel grid keeps sparse scans connected: at 20,000 points per room the
point spacing (~8 cm) is wider than any voxel that still separates objects.

Normals: the scene's own (`normal`) when given, else the least-variance direction of each
point's k-NN neighbourhood (ScanNet's and most PLY/LAS scans carry no normals).

Cost: one k-d tree query (N x k), a batched 3x3 eigh when normals are estimated, and a
sparse connected-components pass: O(N k) time and memory.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree


Neighbours = tuple[np.ndarray, np.ndarray]  # k-d tree query: distances, indices [N, k+1]


def nearest_neighbours(coord: np.ndarray, neighbours: int) -> Neighbours:
    """Distances and indices float64 / int64 [N, k+1] of each point's k + 1 nearest points
    (itself included), k = min(neighbours, N - 1). coord: float [N, 3] with N > 1."""
    return cKDTree(coord).query(coord, min(neighbours, len(coord) - 1) + 1)


def knn_graph(coord: np.ndarray, neighbours: int, max_distance: float,
              query: Optional[Neighbours] = None) -> tuple[np.ndarray, np.ndarray]:
    """int64 [E] edges (a, b): b is among a's `neighbours` nearest other points and closer than
    `max_distance`. coord: float [N, 3]; query: `nearest_neighbours(coord, neighbours)` if
    already computed."""
    if min(neighbours, len(coord) - 1) < 1:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    dist, index = query if query is not None else nearest_neighbours(coord, neighbours)
    # column 0 is the point itself, except among duplicates: drop self-pairs wherever they fall
    a = np.repeat(np.arange(len(coord), dtype=np.int64), index.shape[1])
    b, dist = index.reshape(-1).astype(np.int64), dist.reshape(-1)
    keep = (a != b) & (dist < max_distance)
    return a[keep], b[keep]


def estimated_normals(coord: np.ndarray, neighbours: int, query: Optional[Neighbours] = None) -> np.ndarray:
    """float64 [N, 3] unit normals: per point, the least-variance direction of itself and its
    `neighbours` nearest points. coord: float [N, 3] with N > 1; query as in `knn_graph`."""
    _, index = query if query is not None else nearest_neighbours(coord, neighbours)
    patch = coord[index]  # [N, k+1, 3]
    centred = patch - patch.mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", centred, centred)
    _, vectors = np.linalg.eigh(cov)  # eigenvalues ascending: column 0 is the normal
    return vectors[:, :, 0]


def surface_segments(coord: np.ndarray, color: np.ndarray, normal: Optional[np.ndarray] = None,
                     neighbours: int = 8, max_distance: float = 0.2, max_color: float = 0.1,
                     min_normal_cos: float = 0.8) -> np.ndarray:
    """int64 [N] segment id of every point, ids 0..S-1.

    coord: float [N, 3] metres; color: float [N, 3] in 0..1; normal: float [N, 3] or None
    (then estimated); the thresholds are documented in the module docstring.
    """
    coord = np.asarray(coord, dtype=np.float64)
    color = np.asarray(color, dtype=np.float64)
    if coord.ndim != 2 or coord.shape[1] != 3 or color.shape != coord.shape:
        raise ValueError(f"coord and color must both be [N, 3], got {coord.shape} and {color.shape}")
    if neighbours < 1 or max_distance <= 0 or max_color <= 0 or not -1.0 <= min_normal_cos <= 1.0:
        raise ValueError("need neighbours >= 1, max_distance > 0, max_color > 0 and -1 <= min_normal_cos <= 1, "
                         f"got {neighbours}, {max_distance}, {max_color}, {min_normal_cos}")
    if len(coord) < 2:
        return np.zeros(len(coord), dtype=np.int64)
    query = nearest_neighbours(coord, neighbours)  # one k-d tree serves the normals and the graph
    normal = estimated_normals(coord, neighbours, query) if normal is None else np.asarray(normal, dtype=np.float64)
    a, b = knn_graph(coord, neighbours, max_distance, query)
    similar = (np.linalg.norm(color[a] - color[b], axis=1) < max_color) & \
              (np.abs((normal[a] * normal[b]).sum(axis=1)) > min_normal_cos)
    graph = coo_matrix((np.ones(int(similar.sum()), dtype=np.int8), (a[similar], b[similar])),
                       shape=(len(coord), len(coord)))
    return connected_components(graph, directed=False)[1].astype(np.int64)
