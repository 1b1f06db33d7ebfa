"""Procedural room layout: the shell with openings, structure, furniture and clutter.

The layout is pure geometry (solid boxes and shell rectangles with labels, instances and base
colours); `_sampling` turns it into points. Placement is rejection sampling against a list of
reserved volumes, so objects never interpenetrate and doors keep a clear swing zone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pcseg.data.meta import load_dataset_meta
from pcseg.data.synthetic._geometry import Box, Quad, WallFrame, boxes_overlap, wall_frames
from pcseg.data.synthetic._furniture import (FLOOR_ITEMS, Local, bookcase_model, books, bounds, box_part, chair_model,
                                              desk, free_items, item_model, on_floor, sofa_model, table_group)
from pcseg.data.synthetic._materials import pick

LABEL = {name: i for i, name in enumerate(load_dataset_meta("synthetic_rooms").class_names)}

_UP = np.array([0.0, 0.0, 1.0])
_TRIES = 30
# Tall furniture stays below _FURNITURE_TOP and beams above _BEAM_MIN_Z (above door heads too),
# so a beam never has to give way to a bookcase.
_FURNITURE_TOP = 2.15
_BEAM_MIN_Z = 2.25


@dataclass(frozen=True)
class RoomLayout:
    """A room: size float64 [3] (Lx, Ly, H) metres, solid `boxes`, shell `quads` (floor,
    ceiling, wall pieces, window and door surfaces) and scanner positions float64 [S, 3]."""

    size: np.ndarray
    boxes: list[Box]
    quads: list[Quad]
    scanners: np.ndarray


@dataclass(frozen=True)
class _Opening:
    u: tuple[float, float]
    v: tuple[float, float]
    recess: float
    label: int
    instance: int
    face_color: np.ndarray
    frame_color: np.ndarray


class _RoomBuilder:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.size = np.array([rng.uniform(4.0, 10.0), rng.uniform(3.0, 8.0), rng.uniform(2.6, 3.5)])
        self.walls = wall_frames(self.size)
        self.boxes: list[Box] = []
        self.quads: list[Quad] = []
        self.reserved: list[tuple[np.ndarray, np.ndarray]] = []
        self.openings: list[list[_Opening]] = [[] for _ in self.walls]
        self.instances = 0
        self.wall_paint = pick(rng, "paint")

    # -- bookkeeping -------------------------------------------------------------------------
    def new_instance(self) -> int:
        self.instances += 1
        return self.instances - 1

    def inside_room(self, lo: np.ndarray, hi: np.ndarray) -> bool:
        return bool(np.all(lo >= -1e-9) and np.all(hi <= self.size + 1e-9))

    def fits(self, lo: np.ndarray, hi: np.ndarray, margin: float) -> bool:
        return self.inside_room(lo, hi) and not any(boxes_overlap(lo, hi, a, b, margin) for a, b in self.reserved)

    def add_parts(self, parts: Local, label: int, instance: int | None = None) -> int:
        instance = self.new_instance() if instance is None else instance
        for lo, hi, color in parts:
            self.boxes.append(Box(lo, hi, label, instance, color))
        return instance

    def try_place(self, sample_pose, build, margin: float = 0.05) -> tuple | None:
        """Draw poses from `sample_pose()` until `build(pose)`'s parts fit; reserve them and
        return (pose, parts), or None when no pose fits."""
        for _ in range(_TRIES):
            pose = sample_pose()
            if pose is None:
                continue
            parts = build(pose)
            lo, hi = bounds(parts)
            if self.fits(lo, hi, margin):
                self.reserved.append((lo, hi))
                return pose, parts
        return None

    # -- placing local objects ---------------------------------------------------------------
    @staticmethod
    def on_wall(parts: Local, wall: WallFrame, u: float, depth: float) -> Local:
        """Object parts (facing +y, back at y = -depth/2) set against `wall` centred at u."""
        out = []
        for lo, hi, color in parts:
            wlo, whi = wall.box_bounds((u + lo[0], u + hi[0]), (depth / 2 + lo[1], depth / 2 + hi[1]), (lo[2], hi[2]))
            out.append((wlo, whi, color))
        return out

    def wall_pose(self, width: float):
        """A sampler of (wall index, centre u) poses for an object `width` wide along a wall;
        None when the drawn wall is too short."""
        def sample():
            w = int(self.rng.integers(4))
            length = self.walls[w].length
            if length < width + 0.1:
                return None
            return w, float(self.rng.uniform(width / 2 + 0.05, length - width / 2 - 0.05))
        return sample

    def floor_pose(self, half_extent: float, k_choices: tuple[int, ...] = (0, 1, 2, 3)):
        """A sampler of (x, y, quarter turns) floor poses at least `half_extent` from the walls."""
        def sample():
            lx, ly = self.size[0], self.size[1]
            if min(lx, ly) < 2 * half_extent + 0.1:
                return None
            x = float(self.rng.uniform(half_extent, lx - half_extent))
            y = float(self.rng.uniform(half_extent, ly - half_extent))
            return x, y, int(k_choices[int(self.rng.integers(len(k_choices)))])
        return sample


# -- room assembly -------------------------------------------------------------------------

def _structure(b: _RoomBuilder) -> None:
    """Columns at corners or along walls, then beams across the ceiling between them."""
    rng, size = b.rng, b.size
    if rng.random() < 0.45:
        for _ in range(int(rng.integers(1, 5))):
            w, dp = rng.uniform(0.3, 0.6), rng.uniform(0.25, 0.6)
            wall_i = int(rng.integers(4))
            wall = b.walls[wall_i]
            u0 = 0.0 if rng.random() < 0.5 else float(rng.uniform(0.5, wall.length - w - 0.5))
            lo, hi = wall.box_bounds((u0, u0 + w), (0.0, dp), (0.0, float(size[2])))
            if b.fits(lo, hi, 0.15):
                b.reserved.append((lo, hi))
                b.add_parts([(lo, hi, b.wall_paint)], LABEL["column"])
    if rng.random() < 0.45:
        axis = int(rng.integers(2))  # beams run along this axis, spanning the room
        across = 1 - axis
        for _ in range(int(rng.integers(1, 4))):
            w = rng.uniform(0.2, 0.45)
            depth = rng.uniform(0.25, min(0.6, size[2] - _BEAM_MIN_Z))
            pos = rng.uniform(0.3, size[across] - w - 0.3)
            lo, hi = np.zeros(3), size.copy()
            lo[across], hi[across] = pos, pos + w
            lo[2] = size[2] - depth
            if b.fits(lo, hi, 0.2):
                b.reserved.append((lo, hi))
                b.add_parts([(lo, hi, b.wall_paint)], LABEL["beam"])


def _openings(b: _RoomBuilder) -> None:
    """Doors (at least one) and windows, each reserving the wall area it cuts (and a swing zone)."""
    rng, height = b.rng, float(b.size[2])
    kinds = ["door"] * int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
    kinds += ["window"] * int(rng.choice([0, 1, 2, 3, 4], p=[0.1, 0.3, 0.3, 0.2, 0.1]))
    for kind in kinds:
        for _ in range(_TRIES):
            wall_i = int(rng.integers(4))
            wall = b.walls[wall_i]
            if kind == "door":
                width = rng.uniform(1.5, 1.8) if rng.random() < 0.2 else rng.uniform(0.85, 1.0)
                v = (0.0, float(rng.uniform(2.0, 2.2)))
                swing = 1.0
            else:
                width = rng.uniform(0.8, min(3.0, 0.6 * wall.length))
                sill = float(rng.uniform(0.7, 1.1))
                v = (sill, float(min(sill + rng.uniform(1.0, 1.6), height - 0.3)))
                swing = 0.05
            if wall.length < width + 0.4:
                continue
            u0 = float(rng.uniform(0.2, wall.length - width - 0.2))
            lo, hi = wall.box_bounds((u0, u0 + width), (-0.3, swing), v)
            if not any(boxes_overlap(lo, hi, a, c, 0.1) for a, c in b.reserved):
                b.reserved.append((lo, hi))
                if kind == "door":
                    face, frame = pick(rng, "wood", "paint", "metal"), pick(rng, "paint", "metal", "wood")
                    recess = float(rng.uniform(0.02, 0.06))
                else:
                    face, frame = pick(rng, "glass"), pick(rng, "paint", "metal")
                    recess = float(rng.uniform(0.05, 0.15))
                b.openings[wall_i].append(_Opening((u0, u0 + width), v, recess, LABEL[kind], b.new_instance(), face, frame))
                break


def _ceiling_lights(b: _RoomBuilder, ceiling: int) -> None:
    """Light panels under the ceiling: part of the ceiling (as in S3DIS), brighter than it."""
    rng, size = b.rng, b.size
    w, d = (0.6, 0.6) if rng.random() < 0.5 else (1.2, 0.3)
    for _ in range(int(size[0] * size[1] // 6)):
        x, y = rng.uniform(0.3, size[0] - 0.3 - w), rng.uniform(0.3, size[1] - 0.3 - d)
        lo, hi = np.array([x, y, size[2] - 0.015]), np.array([x + w, y + d, size[2]])
        if b.fits(lo, hi, 0.1):
            b.reserved.append((lo, hi))
            b.add_parts([(lo, hi, np.clip(np.full(3, 0.97) + rng.normal(0, 0.01, 3), 0, 1))], LABEL["ceiling"], ceiling)


def _wall_gaps(openings: list[_Opening], length: float, height: float) -> list[tuple[float, float, float, float]]:
    """Rectangles (u0, u1, v0, v1) covering the wall minus its (non-overlapping) openings."""
    pieces, u = [], 0.0
    for op in sorted(openings, key=lambda o: o.u[0]):
        if op.u[0] > u:
            pieces.append((u, op.u[0], 0.0, height))
        if op.v[0] > 0.0:
            pieces.append((op.u[0], op.u[1], 0.0, op.v[0]))
        if op.v[1] < height:
            pieces.append((op.u[0], op.u[1], op.v[1], height))
        u = op.u[1]
    if u < length:
        pieces.append((u, length, 0.0, height))
    return pieces


def _shell(b: _RoomBuilder) -> None:
    """Floor, ceiling, wall pieces around openings, window glass / door leaves and their reveals."""
    lx, ly, h = (float(s) for s in b.size)
    rng = b.rng
    b.quads.append(Quad(np.zeros(3), np.array([lx, 0, 0.0]), np.array([0, ly, 0.0]), _UP.copy(),
                        LABEL["floor"], b.new_instance(), pick(rng, "floor"), shell=True))
    ceiling = b.new_instance()
    b.quads.append(Quad(np.array([0, 0, h]), np.array([0, ly, 0.0]), np.array([lx, 0, 0.0]), -_UP,
                        LABEL["ceiling"], ceiling, pick(rng, "paint"), shell=True))
    _ceiling_lights(b, ceiling)
    for wall, openings in zip(b.walls, b.openings):
        instance = b.new_instance()
        for u0, u1, v0, v1 in _wall_gaps(openings, wall.length, h):
            b.quads.append(Quad(wall.point(u0, 0.0, v0), (u1 - u0) * wall.tangent, (v1 - v0) * _UP, wall.inward.copy(),
                                LABEL["wall"], instance, b.wall_paint, shell=True))
        for op in openings:
            (u0, u1), (v0, v1), r = op.u, op.v, op.recess
            width, tall = u1 - u0, v1 - v0
            lab, inst = op.label, op.instance
            b.quads.append(Quad(wall.point(u0, -r, v0), width * wall.tangent, tall * _UP, wall.inward.copy(),
                                lab, inst, op.face_color, shell=True))
            reveals = [(wall.point(u0, -r, v0), r * wall.inward, tall * _UP, wall.tangent),
                       (wall.point(u1, -r, v0), r * wall.inward, tall * _UP, -wall.tangent),
                       (wall.point(u0, -r, v1), width * wall.tangent, r * wall.inward, -_UP)]
            if v0 > 0.0:
                reveals.append((wall.point(u0, -r, v0), width * wall.tangent, r * wall.inward, _UP))
            for origin, eu, ev, normal in reveals:
                b.quads.append(Quad(origin, eu, ev, normal.copy(), lab, inst, op.frame_color, shell=True))


def _wall_furniture(b: _RoomBuilder) -> None:
    """Against the walls: bookcases (runs of books on their shelves are clutter), boards, desks
    with a chair, sofas, and wall clutter (pictures, radiators)."""
    rng = b.rng
    for _ in range(int(rng.choice([0, 1, 2, 3, 4, 5], p=[0.15, 0.2, 0.25, 0.2, 0.1, 0.1]))):
        width, depth = rng.uniform(0.8, 2.0), rng.uniform(0.3, 0.45)
        height = rng.uniform(1.6, _FURNITURE_TOP - 0.05)
        carcass, compartments = bookcase_model(rng, width, depth, height)
        placed = b.try_place(b.wall_pose(width), lambda p: b.on_wall(carcass, b.walls[p[0]], p[1], depth))
        if placed is None:
            continue
        (wall_i, u), parts = placed
        b.add_parts(parts, LABEL["bookcase"])
        for x0, x1, y0, y1, z, clearance in compartments:
            for run in books(rng, x0, x1, y0, y1, z, clearance):
                b.add_parts(b.on_wall(run, b.walls[wall_i], u, depth), LABEL["clutter"])
    for _ in range(int(rng.choice([0, 1, 2], p=[0.3, 0.5, 0.2]))):
        width, thick = rng.uniform(1.2, 3.5), rng.uniform(0.015, 0.04)
        z0 = rng.uniform(0.8, 1.0)
        model = [box_part([-width / 2, -thick / 2, z0], [width / 2, thick / 2, z0 + rng.uniform(1.0, 1.2)], pick(rng, "board"))]
        placed = b.try_place(b.wall_pose(width), lambda p: b.on_wall(model, b.walls[p[0]], p[1], thick))
        if placed is not None:
            b.add_parts(placed[1], LABEL["board"])
    for _ in range(int(rng.integers(0, 4))):
        objects, labels, (width, depth) = desk(rng)
        union = [p for obj in objects for p in obj]
        placed = b.try_place(b.wall_pose(width), lambda p: b.on_wall(union, b.walls[p[0]], p[1], depth))
        if placed is not None:
            (wall_i, u), _ = placed
            for obj, label in zip(objects, labels):
                b.add_parts(b.on_wall(obj, b.walls[wall_i], u, depth), LABEL[label])
    for _ in range(int(rng.choice([0, 1, 2], p=[0.5, 0.35, 0.15]))):
        width, depth = rng.uniform(1.5, 2.4), rng.uniform(0.8, 0.95)
        model = sofa_model(rng, width, depth)
        placed = b.try_place(b.wall_pose(width), lambda p: b.on_wall(model, b.walls[p[0]], p[1], depth))
        if placed is not None:
            b.add_parts(placed[1], LABEL["sofa"])
    # clutter hung on or standing at walls: pictures, and radiators low enough to sit under windows
    for _ in range(int(rng.integers(0, 5))):
        if rng.random() < 0.6:
            width, thick, z0, tall = rng.uniform(0.3, 1.0), rng.uniform(0.02, 0.04), rng.uniform(1.2, 1.5), rng.uniform(0.3, 0.7)
        else:
            width, thick, z0, tall = rng.uniform(0.6, 1.5), rng.uniform(0.08, 0.12), rng.uniform(0.1, 0.15), rng.uniform(0.4, 0.5)
        model = [box_part([-width / 2, -thick / 2, z0], [width / 2, thick / 2, z0 + tall], pick(rng, "object", "paint", "metal"))]
        placed = b.try_place(b.wall_pose(width), lambda p: b.on_wall(model, b.walls[p[0]], p[1], thick))
        if placed is not None:
            b.add_parts(placed[1], LABEL["clutter"])


def _floor_furniture(b: _RoomBuilder) -> None:
    """Table groups (with items on the tables), a few loose chairs, and clutter on the floor."""
    rng = b.rng
    area = float(b.size[0] * b.size[1])
    for _ in range(int(rng.integers(1, 2 + int(area // 12)))):
        table, chairs, (x0, x1, y0, y1, z) = table_group(rng)
        items = free_items(rng, x0, x1, y0, y1, z, int(rng.integers(0, 6)))
        objects = [table, *chairs, *items]
        labels = ["table"] + ["chair"] * len(chairs) + ["clutter"] * len(items)
        lo, hi = bounds([p for obj in objects for p in obj])
        # centre the group's footprint (chairs may sit on one side of the table only)
        shift = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, 0.0])
        objects = [[(a - shift, c - shift, col) for a, c, col in obj] for obj in objects]
        union = [p for obj in objects for p in obj]
        half = float(np.min(hi[:2] - lo[:2]) / 2)
        placed = b.try_place(b.floor_pose(half, (0, 1)), lambda p: on_floor(union, *p), margin=0.1)
        if placed is None:
            continue
        (x, y, k), _ = placed
        for obj, label in zip(objects, labels):
            b.add_parts(on_floor(obj, x, y, k), LABEL[label])
    for _ in range(int(rng.integers(0, 4))):
        model = chair_model(rng)
        placed = b.try_place(b.floor_pose(0.4), lambda p: on_floor(model, *p), margin=0.1)
        if placed is not None:
            b.add_parts(placed[1], LABEL["chair"])
    for _ in range(int(rng.integers(0, 7))):
        model = item_model(rng, FLOOR_ITEMS, 0.0)
        placed = b.try_place(b.floor_pose(0.4), lambda p: on_floor(model, *p), margin=0.05)
        if placed is not None:
            b.add_parts(placed[1], LABEL["clutter"])


def _scanners(b: _RoomBuilder) -> np.ndarray:
    """Scanner positions float64 [S, 3] at tripod height in free space: two (three in large
    rooms), one in each slice of the room along its long axis so the scans complement each other."""
    rng, size = b.rng, b.size
    wanted = 3 if size[0] * size[1] > 45 else 2
    long_axis = int(np.argmax(size[:2]))
    found: list[np.ndarray] = []
    for part in range(wanted):
        for _ in range(100):
            p = np.array([rng.uniform(0.4, size[0] - 0.4), rng.uniform(0.4, size[1] - 0.4), rng.uniform(1.3, 1.7)])
            p[long_axis] = rng.uniform(part, part + 1) * size[long_axis] / wanted
            if all(not np.all((p > lo - 0.2) & (p < hi + 0.2)) for lo, hi in b.reserved):
                found.append(p)
                break
    if not found:  # a crowded room: look from above the furniture
        found.append(np.array([size[0] / 2, size[1] / 2, _FURNITURE_TOP + 0.05]))
    return np.stack(found)


def room_layout(rng: np.random.Generator) -> RoomLayout:
    """A random furnished room drawn from `rng` (the only source of randomness)."""
    b = _RoomBuilder(rng)
    _structure(b)
    _openings(b)
    _shell(b)
    _wall_furniture(b)
    _floor_furniture(b)
    return RoomLayout(b.size.copy(), b.boxes, b.quads, _scanners(b))
