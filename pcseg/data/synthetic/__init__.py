"""Synthetic indoor rooms in S3DIS's 13 classes: pcseg's embedded default dataset.

Each room is a box (4-10 m x 3-8 m x 2.6-3.5 m) with doors and windows set into its walls,
beams and columns in some rooms, light panels on the ceiling, tables with chairs around them,
desks, sofas, bookcases and boards against walls, and clutter on tables, shelves, walls and the
floor. It is "scanned" from two or three positions: points lie on surfaces some position can
see (area-proportional density, nothing inside solids or on faces pressed against the room),
with ~5 mm noise; colours come from overlapping material palettes with Lambert shading, so
geometry matters.

    scene = generate_room(seed=0, num_points=60000)
    source = SyntheticRoomSource(num_rooms=100, seed=0); source.load("room_0007")

Class names and order come from `datasets/synthetic_rooms.yaml`.
"""
from __future__ import annotations

import numpy as np

from pcseg.data.contract import Scene
from pcseg.data.synthetic._layout import RoomLayout, room_layout
from pcseg.data.synthetic._materials import shade
from pcseg.data.synthetic._sampling import scan

__all__ = ["SyntheticRoomSource", "generate_room", "room_seed", "room_layout", "RoomLayout", "MIN_POINTS", "MAX_POINTS"]

MIN_POINTS, MAX_POINTS = 1, 2_000_000


def generate_room(seed: int, num_points: int = 60000) -> Scene:
    """One synthetic room, a function of `seed` alone.

    Returns the scene dict: coord float32 [N, 3] metres (room corner at the origin, z up),
    color float32 [N, 3] 0..1, normal float32 [N, 3] unit, label int64 [N] in 0..12,
    instance int64 [N] (one id per object; floor, ceiling and each wall their own), and
    `name` ("seed_<seed>"); N == num_points exactly.
    """
    if not MIN_POINTS <= num_points <= MAX_POINTS:
        raise ValueError(f"num_points must be in {MIN_POINTS}..{MAX_POINTS}, got {num_points}")
    rng = np.random.default_rng(seed)
    layout = room_layout(rng)
    points = scan(layout, num_points, rng)
    light = np.array([rng.normal(), rng.normal(), rng.uniform(0.5, 2.0)])
    light /= np.linalg.norm(light)
    exposure = rng.uniform(0.85, 1.1) * rng.normal(1.0, 0.04, 3)
    color = shade(points["base_color"], points["normal"].astype(np.float64), light, exposure, rng)
    return {
        "coord": points["coord"],
        "color": color,
        "normal": points["normal"],
        "label": points["label"],
        "instance": points["instance"],
        "name": f"seed_{seed}",
    }


def room_seed(seed: int, index: int) -> int:
    """The seed of room `index` of a source seeded `seed`: distinct (seed, index) pairs give
    independent 64-bit seeds, so sources with different seeds share no rooms."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0])


class SyntheticRoomSource:
    """A scene source of `num_rooms` rooms named room_0000, room_0001, ...; rooms are generated
    on `load` (nothing is held), so construction is free."""

    def __init__(self, num_rooms: int, seed: int, num_points: int = 60000):
        if num_rooms < 1:
            raise ValueError(f"num_rooms must be >= 1, got {num_rooms}")
        if not MIN_POINTS <= num_points <= MAX_POINTS:
            raise ValueError(f"num_points must be in {MIN_POINTS}..{MAX_POINTS}, got {num_points}")
        self.num_rooms, self.seed, self.num_points = num_rooms, seed, num_points

    def names(self) -> list[str]:
        return [f"room_{i:04d}" for i in range(self.num_rooms)]

    def load(self, name: str) -> Scene:
        index = self._index(name)
        scene = generate_room(room_seed(self.seed, index), self.num_points)
        scene["name"] = name
        return scene

    def _index(self, name: str) -> int:
        prefix, _, digits = name.partition("_")
        if prefix != "room" or not digits.isdigit() or int(digits) >= self.num_rooms:
            raise KeyError(f"unknown synthetic room {name!r}: expected room_0000..room_{self.num_rooms - 1:04d}")
        return int(digits)

    def __repr__(self) -> str:
        return f"SyntheticRoomSource(num_rooms={self.num_rooms}, seed={self.seed}, num_points={self.num_points})"
