"""Furniture and clutter models, each built in its own frame from axis-aligned boxes.

A model is a list of parts (lo, hi, colour): float64 [3] bounds in metres and an RGB base colour.
Frames: centred on x/y, standing on z = 0, facing +y (a chair's front, a bookcase's open side).
"""
from __future__ import annotations

import numpy as np

from pcseg.data.synthetic._geometry import boxes_overlap
from pcseg.data.synthetic._materials import pick

Local = list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (lo, hi, colour) in an object's frame


def turn(lo: np.ndarray, hi: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of the box lo/hi turned by k * 90 degrees about the z axis through the origin."""
    c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][k % 4]
    xs = np.array([lo[0], hi[0], lo[0], hi[0]])
    ys = np.array([lo[1], lo[1], hi[1], hi[1]])
    rx, ry = c * xs - s * ys, s * xs + c * ys
    return (np.array([rx.min(), ry.min(), lo[2]]), np.array([rx.max(), ry.max(), hi[2]]))


def bounds(parts: Local) -> tuple[np.ndarray, np.ndarray]:
    return np.min([p[0] for p in parts], axis=0), np.max([p[1] for p in parts], axis=0)


def on_floor(parts: Local, x: float, y: float, k: int) -> Local:
    """Object parts turned by k * 90 degrees and moved to floor position (x, y)."""
    out = []
    for lo, hi, color in parts:
        tlo, thi = turn(lo, hi, k)
        shift = np.array([x, y, 0.0])
        out.append((tlo + shift, thi + shift, color))
    return out


def box_part(lo: list[float], hi: list[float], color: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One part (lo, hi, colour) from plain coordinate lists."""
    return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64), color


def chair_model(rng: np.random.Generator) -> Local:
    """A four-legged chair, or (half the time) an office chair on a column and a cross base."""
    w, d = rng.uniform(0.42, 0.52), rng.uniform(0.42, 0.50)
    seat_z, seat_t, leg = rng.uniform(0.43, 0.50), 0.05, rng.uniform(0.025, 0.04)
    back_h, back_t = rng.uniform(0.35, 0.55), 0.04
    frame, cushion = pick(rng, "metal", "wood"), pick(rng, "fabric", "wood", "laminate")
    parts = [box_part([-w / 2, -d / 2, seat_z - seat_t], [w / 2, d / 2, seat_z], cushion),
             box_part([-w / 2, -d / 2, seat_z], [w / 2, -d / 2 + back_t, seat_z + back_h], cushion)]
    if rng.random() < 0.5:
        base_z, arm = 0.06, 0.05
        parts += [box_part([-0.03, -0.03, base_z], [0.03, 0.03, seat_z - seat_t], frame),
                  box_part([-w / 2, -0.025, 0.0], [w / 2, 0.025, base_z], frame),
                  box_part([-0.025, -d / 2, 0.0], [0.025, -0.025, base_z], frame),
                  box_part([-0.025, 0.025, 0.0], [0.025, d / 2, base_z], frame)]
        if rng.random() < 0.5:  # armrests
            for x0 in (-w / 2, w / 2 - arm):
                parts.append(box_part([x0, -d / 2 + back_t, seat_z + 0.18], [x0 + arm, d / 4, seat_z + 0.22], frame))
        return parts
    for sx in (-1, 1):
        for sy in (-1, 1):
            x0 = w / 2 - leg if sx > 0 else -w / 2
            y0 = d / 2 - leg if sy > 0 else -d / 2
            parts.append(box_part([x0, y0, 0.0], [x0 + leg, y0 + leg, seat_z - seat_t], frame))
    return parts


def table_model(rng: np.random.Generator, lx: float, ly: float) -> Local:
    """A table top lx x ly (the first part) on four legs set in from its corners."""
    h, top_t, leg = rng.uniform(0.72, 0.78), rng.uniform(0.025, 0.05), rng.uniform(0.04, 0.07)
    top, legs = pick(rng, "wood", "laminate"), pick(rng, "metal", "wood")
    parts = [box_part([-lx / 2, -ly / 2, h - top_t], [lx / 2, ly / 2, h], top)]
    inset = 0.05
    for sx in (-1, 1):
        for sy in (-1, 1):
            x0 = lx / 2 - inset - leg if sx > 0 else -lx / 2 + inset
            y0 = ly / 2 - inset - leg if sy > 0 else -ly / 2 + inset
            parts.append(box_part([x0, y0, 0.0], [x0 + leg, y0 + leg, h - top_t], legs))
    return parts


def sofa_model(rng: np.random.Generator, width: float, depth: float) -> Local:
    """Two armrests, a back and a seat block, one fabric."""
    arm_w, back_d = rng.uniform(0.12, 0.22), rng.uniform(0.15, 0.25)
    seat_h, back_h, arm_h = rng.uniform(0.38, 0.46), rng.uniform(0.75, 0.90), rng.uniform(0.55, 0.65)
    color = pick(rng, "fabric")
    x0, x1, y0, y1 = -width / 2, width / 2, -depth / 2, depth / 2
    return [box_part([x0, y0, 0], [x0 + arm_w, y1, arm_h], color),
            box_part([x1 - arm_w, y0, 0], [x1, y1, arm_h], color),
            box_part([x0 + arm_w, y0, 0], [x1 - arm_w, y0 + back_d, back_h], color),
            box_part([x0 + arm_w, y0 + back_d, 0], [x1 - arm_w, y1, seat_h], color)]


def bookcase_model(rng: np.random.Generator, width: float, depth: float, height: float) -> tuple[Local, list[tuple]]:
    """Carcass parts, and the free shelf compartments (x0, x1, y0, y1, z, clearance) in the frame."""
    t, plinth = 0.02, 0.08
    color = pick(rng, "wood", "metal", "laminate")
    x0, x1, y0, y1 = -width / 2, width / 2, -depth / 2, depth / 2
    parts = [box_part([x0, y0, 0], [x1, y0 + t, height], color),
             box_part([x0, y0 + t, 0], [x0 + t, y1, height], color),
             box_part([x1 - t, y0 + t, 0], [x1, y1, height], color),
             box_part([x0 + t, y0 + t, height - t], [x1 - t, y1, height], color),
             box_part([x0 + t, y0 + t, 0], [x1 - t, y1, plinth], color)]
    num_shelves = max(1, int(round((height - plinth) / rng.uniform(0.32, 0.42))) - 1)
    levels = plinth + (height - t - plinth) * np.arange(1, num_shelves + 1) / (num_shelves + 1)
    for z in levels:
        parts.append(box_part([x0 + t, y0 + t, z], [x1 - t, y1, z + t], color))
    floors = np.concatenate([[plinth], levels + t])
    ceilings = np.concatenate([levels, [height - t]])
    compartments = [(x0 + t, x1 - t, y0 + t, y1, float(zf), float(zc - zf)) for zf, zc in zip(floors, ceilings)]
    return parts, compartments


def books(rng: np.random.Generator, x0: float, x1: float, y0: float, y1: float, z: float, clearance: float) -> list[Local]:
    """Runs of upright books along a shelf, each run one clutter object."""
    runs: list[Local] = []
    x = x0 + rng.uniform(0.0, 0.15)
    while x < x1 - 0.05 and clearance > 0.12:
        count = int(rng.integers(1, 6))
        run: Local = []
        for _ in range(count):
            bw = rng.uniform(0.02, 0.06)
            if x + bw > x1:
                break
            bh = rng.uniform(0.10, min(0.32, clearance - 0.02))
            bd = rng.uniform(0.6, 1.0) * (y1 - y0 - 0.01)
            run.append(box_part([x, y0, z], [x + bw, y0 + bd, z + bh], pick(rng, "object", "fabric")))
            x += bw
        if run:
            runs.append(run)
        x += rng.uniform(0.05, 0.4)
    return runs


SMALL_ITEMS = {  # (width, depth, height) ranges of things found on tables and on the floor
    "laptop": ((0.30, 0.36), (0.22, 0.25), (0.02, 0.03)),
    "paper": ((0.21, 0.30), (0.21, 0.30), (0.005, 0.02)),
    "cup": ((0.07, 0.09), (0.07, 0.09), (0.09, 0.12)),
    "box": ((0.10, 0.40), (0.10, 0.30), (0.05, 0.30)),
    "books": ((0.15, 0.25), (0.20, 0.30), (0.04, 0.15)),
}
FLOOR_ITEMS = {
    "bin": ((0.25, 0.35), (0.25, 0.35), (0.30, 0.50)),
    "carton": ((0.30, 0.60), (0.30, 0.60), (0.20, 0.60)),
    "case": ((0.35, 0.50), (0.20, 0.30), (0.50, 0.75)),
}


def item_model(rng: np.random.Generator, kinds: dict, z: float) -> Local:
    """One box-shaped thing of a kind drawn from `kinds` (name -> size ranges), standing at z."""
    name = list(kinds)[int(rng.integers(len(kinds)))]
    (w0, w1), (d0, d1), (h0, h1) = kinds[name]
    w, d, h = rng.uniform(w0, w1), rng.uniform(d0, d1), rng.uniform(h0, h1)
    return [box_part([-w / 2, -d / 2, z], [w / 2, d / 2, z + h], pick(rng, "object", "metal", "laminate"))]


def monitor_model(rng: np.random.Generator, z: float) -> Local:
    """A screen on a neck and foot, standing at z."""
    color = pick(rng, "metal", "laminate")
    w, sh = rng.uniform(0.45, 0.60), rng.uniform(0.28, 0.36)
    return [box_part([-0.10, -0.08, z], [0.10, 0.08, z + 0.02], color),
            box_part([-0.02, -0.02, z + 0.02], [0.02, 0.02, z + 0.12], color),
            box_part([-w / 2, 0.02, z + 0.08], [w / 2, 0.05, z + 0.08 + sh], color)]


def table_group(rng: np.random.Generator) -> tuple[Local, list[Local], tuple[float, float, float, float, float]]:
    """A table with chairs around it, in the group frame (table centred, long side along x).

    Returns the table parts, each chair's parts, and the table top (x0, x1, y0, y1, z).
    """
    lx, ly = rng.uniform(1.0, 2.4), rng.uniform(0.7, 1.2)
    table = table_model(rng, lx, ly)
    chairs: list[Local] = []
    model = chair_model(rng)  # chairs around one table match
    depth = model[0][1][1] - model[0][0][1]
    per_side = max(1, int((lx - 0.1) // 0.6))
    for side, k in ((-1, 0), (1, 2)):  # chairs on the -y side face +y (k=0), on the +y side face -y
        count = int(rng.integers(1, per_side + 1)) if rng.random() < 0.85 else 0
        gap = rng.uniform(0.05, 0.25)
        for x in (np.arange(count) + 0.5) * lx / max(count, 1) - lx / 2:
            chairs.append(on_floor(model, float(x), side * (ly / 2 + gap + depth / 2), k))
    for side, k in ((-1, 3), (1, 1)):  # table ends: facing +x is a turn of 270 degrees
        if rng.random() < 0.35:
            gap = rng.uniform(0.05, 0.25)
            chairs.append(on_floor(model, side * (lx / 2 + gap + depth / 2), 0.0, k))
    top = table[0]
    return table, chairs, (top[0][0], top[1][0], top[0][1], top[1][1], top[1][2])


def desk(rng: np.random.Generator) -> tuple[list[Local], list[str], tuple[float, float]]:
    """A desk with its back to the wall, a chair before it and items on it, in a wall frame.

    Returns ([desk, chair, *items], their class names, (width, depth)); the frame is centred
    on the group, which faces +y with its back at y = -depth / 2.
    """
    lx, ly = rng.uniform(1.0, 1.8), rng.uniform(0.6, 0.8)
    table = table_model(rng, lx, ly)
    chair = chair_model(rng)
    chair_depth = chair[0][1][1] - chair[0][0][1]
    chair = on_floor(chair, rng.uniform(-lx / 4, lx / 4), ly / 2 + rng.uniform(0.05, 0.3) + chair_depth / 2, 2)
    top = table[0]
    items = free_items(rng, top[0][0], top[1][0], top[0][1], top[1][1], top[1][2], int(rng.integers(1, 4)))
    objects = [table, chair, *items]
    lo, hi = bounds([p for obj in objects for p in obj])
    shift = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, 0.0])
    objects = [[(a - shift, c - shift, col) for a, c, col in obj] for obj in objects]
    return objects, ["table", "chair", *["clutter"] * len(items)], (float(hi[0] - lo[0]), float(hi[1] - lo[1]))


def free_items(rng: np.random.Generator, x0: float, x1: float, y0: float, y1: float, z: float, count: int) -> list[Local]:
    """Up to `count` small items on the surface [x0, x1] x [y0, y1] at height z, not overlapping."""
    items: list[Local] = []
    for _ in range(count * 4):
        if len(items) == count:
            break
        model = monitor_model(rng, z) if rng.random() < 0.2 else item_model(rng, SMALL_ITEMS, z)
        lo, hi = bounds(model)
        half = max(-lo[0], hi[0], -lo[1], hi[1])
        if x1 - x0 < 2 * half + 0.04 or y1 - y0 < 2 * half + 0.04:
            continue
        x = rng.uniform(x0 + half + 0.02, x1 - half - 0.02)
        y = rng.uniform(y0 + half + 0.02, y1 - half - 0.02)
        placed = on_floor(model, x, y, int(rng.integers(4)))
        plo, phi = bounds(placed)
        if not any(boxes_overlap(plo, phi, *bounds(other), 0.01) for other in items):
            items.append(placed)
    return items


