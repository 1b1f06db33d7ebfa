"""Primitives of a synthetic room: solid axis-aligned boxes, flat rectangles, wall frames.

Everything is axis-aligned (objects turn by multiples of 90 degrees), which keeps overlap,
containment and ray tests exact and vectorisable.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Two boxes "overlap" when they share more than this much along every axis: touching faces
# (a cup on a table, a leg under a seat) are allowed, interpenetration is not.
TOUCH_TOL = 1e-6


@dataclass(frozen=True)
class Box:
    """A solid part of an object: float64 lo/hi [3] metres, semantic class, instance, colour.

    `color` is the part's base RGB in 0..1 before shading and per-point variation.
    """

    lo: np.ndarray
    hi: np.ndarray
    label: int
    instance: int
    color: np.ndarray


@dataclass(frozen=True)
class Quad:
    """A visible rectangle: corner `origin`, edges `edge_u`/`edge_v`, unit `normal` (all [3]).

    `owner` is the index of the solid box it is a face of (-1 for room-shell surfaces), so the
    inside-solid test does not reject a face against its own box. `shell` marks surfaces that lie
    on or behind the room's inner faces (floor, walls, window glass, door leaves): they are not
    tested against the room shell, which rejects object faces pressed against a wall or floor.
    """

    origin: np.ndarray
    edge_u: np.ndarray
    edge_v: np.ndarray
    normal: np.ndarray
    label: int
    instance: int
    color: np.ndarray
    owner: int = -1
    shell: bool = False


@dataclass(frozen=True)
class WallFrame:
    """A wall as a frame: p(u, d, v) = origin + u * tangent + d * inward + v * up.

    u runs along the wall (0..length), d is the distance into the room (negative: into the wall),
    v the height above the floor. Walls go counter-clockwise seen from above.
    """

    origin: np.ndarray
    tangent: np.ndarray
    inward: np.ndarray
    length: float

    def point(self, u: float, d: float, v: float) -> np.ndarray:
        return self.origin + u * self.tangent + d * self.inward + np.array([0.0, 0.0, v])

    def box_bounds(self, u: tuple[float, float], d: tuple[float, float], v: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        """World lo/hi of the wall-aligned block u x d x v."""
        a, b = self.point(u[0], d[0], v[0]), self.point(u[1], d[1], v[1])
        return np.minimum(a, b), np.maximum(a, b)


def wall_frames(size: np.ndarray) -> list[WallFrame]:
    """The four walls of a room [0, Lx] x [0, Ly]: y=0, x=Lx, y=Ly, x=0."""
    lx, ly = float(size[0]), float(size[1])
    return [
        WallFrame(np.array([0.0, 0.0, 0.0]), np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), lx),
        WallFrame(np.array([lx, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([-1.0, 0.0, 0.0]), ly),
        WallFrame(np.array([lx, ly, 0.0]), np.array([-1.0, 0.0, 0.0]), np.array([0.0, -1.0, 0.0]), lx),
        WallFrame(np.array([0.0, ly, 0.0]), np.array([0.0, -1.0, 0.0]), np.array([1.0, 0.0, 0.0]), ly),
    ]


def boxes_overlap(lo_a: np.ndarray, hi_a: np.ndarray, lo_b: np.ndarray, hi_b: np.ndarray, margin: float = 0.0) -> bool:
    """True when the boxes (each grown by `margin`) share a volume, not just a face."""
    return bool(np.all(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b) > TOUCH_TOL - 2.0 * margin))


def box_faces(box: Box, owner: int) -> list[Quad]:
    """The six outward faces of `box`; hidden ones are rejected later by the solid tests."""
    lo, hi = box.lo, box.hi
    ext = hi - lo
    faces = []
    for axis in range(3):
        u_axis, v_axis = (axis + 1) % 3, (axis + 2) % 3
        edge_u = np.zeros(3)
        edge_u[u_axis] = ext[u_axis]
        edge_v = np.zeros(3)
        edge_v[v_axis] = ext[v_axis]
        for side, corner in ((-1.0, lo), (1.0, hi)):
            origin = lo.copy()
            origin[axis] = corner[axis]
            normal = np.zeros(3)
            normal[axis] = side
            faces.append(Quad(origin, edge_u, edge_v, normal, box.label, box.instance, box.color, owner, False))
    return faces
