"""Scanning a layout: area-proportional samples on visible surfaces, scanner occlusion, noise.

Candidates are drawn uniformly by area over all surfaces; those inside a solid (faces pressed
against another part, floor under a bookcase, wall behind a column) or, for object faces,
against the room shell are rejected; then those no scanner position can see are dropped
(exact segment-box tests, culled by azimuth so each box only tests the points behind it).
"""
from __future__ import annotations

import numpy as np

from pcseg.data.synthetic._geometry import Quad, box_faces
from pcseg.data.synthetic._layout import RoomLayout

# A face point lies exactly on its neighbours' boundaries: solids are grown by _EPS so that
# touching faces count as hidden, and shrunk by _SHRINK as occluders so that a face does not
# shadow itself through rounding (small, or faces would leak light around their edges).
_EPS = 2e-3
_SHRINK = 1e-4


def _quad_arrays(quads: list[Quad]) -> dict[str, np.ndarray]:
    return {
        "origin": np.stack([q.origin for q in quads]),
        "edge_u": np.stack([q.edge_u for q in quads]),
        "edge_v": np.stack([q.edge_v for q in quads]),
        "normal": np.stack([q.normal for q in quads]),
        "label": np.array([q.label for q in quads], dtype=np.int64),
        "instance": np.array([q.instance for q in quads], dtype=np.int64),
        "color": np.stack([q.color for q in quads]),
        "owner": np.array([q.owner for q in quads], dtype=np.int64),
        "shell": np.array([q.shell for q in quads], dtype=bool),
    }


def _draw(quads: dict[str, np.ndarray], count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` points uniform by area over the quads: (points float64 [count, 3], quad index [count])."""
    area = np.linalg.norm(quads["edge_u"], axis=1) * np.linalg.norm(quads["edge_v"], axis=1)
    per_quad = rng.multinomial(count, area / area.sum())
    which = np.repeat(np.arange(len(area)), per_quad)
    ab = rng.random((count, 2))
    points = quads["origin"][which] + ab[:, :1] * quads["edge_u"][which] + ab[:, 1:] * quads["edge_v"][which]
    return points, which


def _inside_solids(points: np.ndarray, owner: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """bool [P]: the point lies in a solid (grown by _EPS) other than the one it is a face of."""
    # sorted by x, each box only looks at the contiguous run of points within its x extent
    order = np.argsort(points[:, 0], kind="stable")
    xs, ys, zs = (np.ascontiguousarray(points[order, a]) for a in range(3))
    own = owner[order]
    starts = np.searchsorted(xs, lo[:, 0] - _EPS)
    stops = np.searchsorted(xs, hi[:, 0] + _EPS)
    hidden = np.zeros(len(points), dtype=bool)
    for b in range(len(lo)):
        i, j = starts[b], stops[b]
        if i == j:
            continue
        y, z = ys[i:j], zs[i:j]
        inside = (y > lo[b, 1] - _EPS) & (y < hi[b, 1] + _EPS) & (z > lo[b, 2] - _EPS) & (z < hi[b, 2] + _EPS)
        hidden[i:j] |= inside & (own[i:j] != b)
    out = np.empty_like(hidden)
    out[order] = hidden
    return out


def _wrap(angle: np.ndarray | float) -> np.ndarray:
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def _azimuth_run(sorted_az: np.ndarray, corners_xy: np.ndarray) -> list[slice]:
    """Slices of `sorted_az` (ascending, in [-pi, pi]) covering the azimuths of a box's corners
    seen from the origin; the range may cross +-pi and then needs two slices."""
    ang = np.arctan2(corners_xy[:, 1], corners_xy[:, 0])
    mid = float(np.arctan2(corners_xy[:, 1].mean(), corners_xy[:, 0].mean()))
    offs = _wrap(ang - mid)
    a0, a1 = float(_wrap(mid + offs.min())), float(_wrap(mid + offs.max()))
    i0 = int(np.searchsorted(sorted_az, a0))
    i1 = int(np.searchsorted(sorted_az, a1, side="right"))
    return [slice(i0, i1)] if a0 <= a1 else [slice(i0, len(sorted_az)), slice(0, i1)]


def _occluded(points: np.ndarray, scanner: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """bool [P]: the segment scanner -> point passes through a solid box (shrunk by _SHRINK).

    Each box tests only the points in its azimuth range (and, for boxes wholly above or below
    the scanner, beyond its elevation bound) with the exact slab test.
    """
    rel = points - scanner
    horizontal = np.hypot(rel[:, 0], rel[:, 1])
    azimuth = np.arctan2(rel[:, 1], rel[:, 0])
    order = np.argsort(azimuth, kind="stable")
    sorted_az = azimuth[order]
    dx, dy, dz = (np.ascontiguousarray(rel[order, a]) for a in range(3))
    elevation = np.arctan2(dz, horizontal[order])
    blocked = np.zeros(len(points), dtype=bool)
    for b in range(len(lo)):
        blo, bhi = lo[b] + _SHRINK - scanner, hi[b] - _SHRINK - scanner
        corners = np.array([[blo[0], blo[1]], [bhi[0], blo[1]], [blo[0], bhi[1]], [bhi[0], bhi[1]]])
        if np.all((blo[:2] <= 0.0) & (bhi[:2] >= 0.0)):
            runs = [slice(0, len(points))]  # straight above or below the scanner (a beam)
        else:
            runs = _azimuth_run(sorted_az, corners)
        far = float(np.max(np.hypot(corners[:, 0], corners[:, 1])))
        for run in runs:
            x, y, z = dx[run], dy[run], dz[run]
            if blo[2] > 0.0:  # every ray into the box climbs at least this steeply
                near = elevation[run] >= np.arctan2(blo[2], far)
            elif bhi[2] < 0.0:
                near = elevation[run] <= np.arctan2(bhi[2], far)
            else:
                near = np.ones(len(x), dtype=bool)
            with np.errstate(divide="ignore", invalid="ignore"):
                t_enter = np.full(len(x), -np.inf)
                t_exit = np.full(len(x), np.inf)
                for d, low, high in ((x, blo[0], bhi[0]), (y, blo[1], bhi[1]), (z, blo[2], bhi[2])):
                    t1, t2 = low / d, high / d
                    t_enter = np.maximum(t_enter, np.minimum(t1, t2))
                    t_exit = np.minimum(t_exit, np.maximum(t1, t2))
            hit = near & (t_enter < t_exit) & (t_enter > 0.0) & (t_enter < 1.0)
            blocked[order[run][hit]] = True
    return blocked


def scan(layout: RoomLayout, num_points: int, rng: np.random.Generator, noise: float = 0.005) -> dict[str, np.ndarray]:
    """Exactly `num_points` visible surface points of `layout`.

    Returns coord float32 [N, 3] metres (with isotropic Gaussian noise of std `noise`), normal
    float32 [N, 3], and per point the quad attributes label / instance int64 [N] and base colour
    float64 [N, 3].
    """
    lo = np.stack([b.lo for b in layout.boxes]) if layout.boxes else np.zeros((0, 3))
    hi = np.stack([b.hi for b in layout.boxes]) if layout.boxes else np.zeros((0, 3))
    quads = list(layout.quads)
    for i, box in enumerate(layout.boxes):
        quads.extend(box_faces(box, i))
    q = _quad_arrays(quads)
    kept_points, kept_which = [], []
    have, accept_rate = 0, 0.6
    while have < num_points:
        # draw enough for the shortfall at the acceptance rate seen so far, plus slack
        count = int((num_points - have) / max(accept_rate, 0.05) * 1.1) + 1000
        points, which = _draw(q, count, rng)
        off_shell = ~q["shell"][which] & np.any((points < _EPS) | (points > layout.size - _EPS), axis=1)
        keep = ~off_shell
        keep[keep] = ~_inside_solids(points[keep], q["owner"][which[keep]], lo, hi)
        seen = np.zeros(len(points), dtype=bool)
        for scanner in layout.scanners:
            candidates = keep & ~seen
            seen[candidates] = ~_occluded(points[candidates], scanner, lo, hi)
        accept_rate = max(seen.mean(), 1e-3)
        kept_points.append(points[seen])
        kept_which.append(which[seen])
        have += int(seen.sum())
    points, which = np.concatenate(kept_points), np.concatenate(kept_which)
    chosen = rng.choice(len(points), num_points, replace=False)
    points, which = points[chosen], which[chosen]
    coord = points + rng.normal(0.0, noise, points.shape)
    return {
        "coord": coord.astype(np.float32),
        "normal": q["normal"][which].astype(np.float32),
        "label": q["label"][which],
        "instance": q["instance"][which],
        "base_color": q["color"][which],
    }
