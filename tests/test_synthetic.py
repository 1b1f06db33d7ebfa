"""Synthetic rooms: determinism, the scene contract, layout sanity, visibility, and that the
labels need geometry (a colour-only classifier fails) but are learnable (geometry works)."""
from __future__ import annotations

import numpy as np
import pytest

from pcseg.data.contract import validate_scene
from pcseg.data.meta import load_dataset_meta
from pcseg.data.synthetic import SyntheticRoomSource, generate_room, room_layout, room_seed
from pcseg.data.synthetic._geometry import Box, Quad, box_faces, boxes_overlap, wall_frames
from pcseg.data.synthetic._furniture import turn
from pcseg.data.synthetic._layout import LABEL, RoomLayout, _Opening, _wall_gaps
from pcseg.data.synthetic._materials import shade
from pcseg.data.synthetic._sampling import _inside_solids, _occluded, scan

META = load_dataset_meta("synthetic_rooms")
K = META.num_classes
FURNITURE = [META.class_names.index(n) for n in ("table", "chair", "sofa", "bookcase", "board")]


@pytest.fixture(scope="module")
def rooms() -> list[dict]:
    source = SyntheticRoomSource(num_rooms=20, seed=0, num_points=20000)
    return [source.load(name) for name in source.names()]


def _confusion(target: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return np.bincount(target * K + pred, minlength=K * K).reshape(K, K)


def _miou(cm: np.ndarray) -> float:
    """Mean IoU over classes present in ground truth or prediction (rows = truth)."""
    tp = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - tp
    return float(np.mean(tp[union > 0] / union[union > 0]))


def test_same_seed_same_room_other_seed_other_room():
    a, b, c = generate_room(5, 20000), generate_room(5, 20000), generate_room(6, 20000)
    for key in ("coord", "color", "normal", "label", "instance"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["coord"].shape == c["coord"].shape and not np.allclose(a["coord"], c["coord"])


@pytest.mark.parametrize("num_points", [20000, 23457])
def test_exact_count_and_contract(num_points):
    scene = generate_room(3, num_points)
    validate_scene(scene, num_classes=K, source="synthetic")
    assert scene["coord"].shape == (num_points, 3) and scene["coord"].dtype == np.float32
    assert scene["color"].shape == (num_points, 3) and scene["color"].dtype == np.float32
    assert scene["normal"].shape == (num_points, 3) and scene["normal"].dtype == np.float32
    assert scene["label"].dtype == np.int64 and scene["instance"].dtype == np.int64
    assert scene["color"].min() >= 0.0 and scene["color"].max() <= 1.0
    np.testing.assert_allclose(np.linalg.norm(scene["normal"], axis=1), 1.0, atol=1e-6)
    assert scene["label"].min() >= 0 and scene["label"].max() < K and scene["instance"].min() >= 0
    size = room_layout(np.random.default_rng(3)).size
    # windows are set up to 0.15 m into the walls; noise is 5 mm
    assert np.all(scene["coord"] > -0.2) and np.all(scene["coord"] < size + 0.2)


def test_num_points_out_of_range_is_a_clear_error():
    with pytest.raises(ValueError, match="num_points"):
        generate_room(0, 0)


def test_all_classes_across_twenty_rooms(rooms):
    present = np.unique(np.concatenate([r["label"] for r in rooms]))
    assert present.tolist() == list(range(K))


def test_instances_have_one_label(rooms):
    for room in rooms:
        inst, lab = room["instance"], room["label"]
        for i in np.unique(inst):
            assert len(np.unique(lab[inst == i])) == 1, (room["name"], i)
        per_class = {k: len(np.unique(inst[lab == k])) for k in range(K)}
        assert per_class[LABEL["floor"]] == 1 and per_class[LABEL["ceiling"]] == 1
        assert per_class[LABEL["wall"]] == 4


def test_layout_has_no_overlapping_objects():
    for seed in range(25):
        layout = room_layout(np.random.default_rng(seed))
        lo = np.stack([b.lo for b in layout.boxes])
        hi = np.stack([b.hi for b in layout.boxes])
        instance = np.array([b.instance for b in layout.boxes])
        assert np.all(lo >= -1e-9) and np.all(hi <= layout.size + 1e-9)
        shared = np.minimum(hi[:, None], hi[None]) - np.maximum(lo[:, None], lo[None])  # [B, B, 3]
        interpenetrate = np.all(shared > 1e-6, axis=2) & (instance[:, None] != instance[None])
        assert not interpenetrate.any(), seed


def test_furniture_points_do_not_overlap(rooms):
    """Independent of the layout code: bounding boxes of furniture instances, taken from the
    points and shrunk by the noise, are pairwise disjoint."""
    for room in rooms:
        bounds = []
        for i in np.unique(room["instance"][np.isin(room["label"], FURNITURE)]):
            pts = room["coord"][room["instance"] == i]
            bounds.append((pts.min(0) + 0.02, pts.max(0) - 0.02))
        for j, (lo_a, hi_a) in enumerate(bounds):
            for lo_b, hi_b in bounds[j + 1:]:
                assert not np.all(np.minimum(hi_a, hi_b) > np.maximum(lo_a, lo_b)), room["name"]


def test_no_points_inside_solids():
    seed = 11
    scene = generate_room(seed, 20000)
    layout = room_layout(np.random.default_rng(seed))
    for box in layout.boxes:
        if np.min(box.hi - box.lo) < 0.06:
            continue  # thinner than the noise margin
        inside = np.all((scene["coord"] > box.lo + 0.025) & (scene["coord"] < box.hi - 0.025), axis=1)
        assert not inside.any()


def test_no_object_faces_pressed_against_the_shell():
    """Without noise, no point of an object lies on the room's floor, walls or ceiling planes
    (bottoms of furniture, backs of bookcases and boards, tops of columns are hidden)."""
    layout = room_layout(np.random.default_rng(8))
    out = scan(layout, 20000, np.random.default_rng(0), noise=0.0)
    shell = np.isin(out["label"], [LABEL[n] for n in ("floor", "ceiling", "wall", "window", "door")])
    coord = out["coord"][~shell].astype(np.float64)
    assert len(coord) > 1000
    assert np.all(coord > 1e-3) and np.all(coord < layout.size - 1e-3)
    # and the shell itself is sampled on its planes: floor at z = 0, ceiling at z = H
    floor, ceiling = out["label"] == LABEL["floor"], out["label"] == LABEL["ceiling"]
    assert np.all(out["coord"][floor, 2] == 0.0)
    assert np.allclose(out["coord"][ceiling, 2], layout.size[2], atol=0.02)  # light panels hang 15 mm


def test_turn_quarter():
    lo, hi = turn(np.array([1.0, 2.0, 0.0]), np.array([3.0, 3.0, 1.0]), 1)  # (x, y) -> (-y, x)
    assert lo.tolist() == [-3.0, 1.0, 0.0] and hi.tolist() == [-2.0, 3.0, 1.0]


def test_wall_gaps_cover_wall_minus_openings():
    color = np.zeros(3)
    door = _Opening((1.0, 2.0), (0.0, 2.0), 0.03, LABEL["door"], 0, color, color)
    window = _Opening((3.0, 4.0), (1.0, 2.0), 0.1, LABEL["window"], 1, color, color)
    assert _wall_gaps([window, door], 5.0, 3.0) == [
        (0.0, 1.0, 0.0, 3.0), (1.0, 2.0, 2.0, 3.0), (2.0, 3.0, 0.0, 3.0),
        (3.0, 4.0, 0.0, 1.0), (3.0, 4.0, 2.0, 3.0), (4.0, 5.0, 0.0, 3.0)]


def test_box_faces_cover_the_box_and_face_outwards():
    box = Box(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 3.5]), 0, 0, np.zeros(3))
    faces = box_faces(box, owner=7)
    areas = [np.linalg.norm(f.edge_u) * np.linalg.norm(f.edge_v) for f in faces]
    assert sorted(areas) == [0.5, 0.5, 1.0, 1.0, 2.0, 2.0] and all(f.owner == 7 for f in faces)
    for f in faces:
        centre = f.origin + (f.edge_u + f.edge_v) / 2
        assert np.all(centre >= box.lo) and np.all(centre <= box.hi)  # on the surface
        outside = centre + 0.01 * f.normal
        assert np.any(outside < box.lo) or np.any(outside > box.hi)


def test_shading_lights_faces_turned_to_the_light():
    rng = np.random.default_rng(0)
    base = np.full((2000, 3), 0.6)
    up, down = np.tile([0.0, 0.0, 1.0], (1000, 1)), np.tile([0.0, 0.0, -1.0], (1000, 1))
    color = shade(base, np.concatenate([up, down]), np.array([0.0, 0.0, 1.0]), np.ones(3), rng)
    assert color.dtype == np.float32 and color.min() >= 0 and color.max() <= 1
    # half-Lambert: brightness 1.0 facing the light, 0.55 facing away
    np.testing.assert_allclose(color[:1000].mean(0), 0.6, atol=0.01)
    np.testing.assert_allclose(color[1000:].mean(0), 0.6 * 0.55, atol=0.01)


def test_boxes_overlap_touching_is_not_overlap():
    lo, hi = np.zeros(3), np.ones(3)
    assert not boxes_overlap(lo, hi, np.array([1.0, 0, 0]), np.array([2.0, 1, 1]))
    assert boxes_overlap(lo, hi, np.array([0.9, 0, 0]), np.array([2.0, 1, 1]))
    assert boxes_overlap(lo, hi, np.array([1.05, 0, 0]), np.array([2.0, 1, 1]), margin=0.05)


def test_inside_solids_skips_own_box():
    lo, hi = np.array([[0.0, 0, 0], [1.0, 0, 0]]), np.array([[1.0, 1, 1], [2.0, 1, 1]])
    points = np.array([[0.5, 0.5, 1.0],   # top face of box 0: its own face, kept
                       [1.0, 0.5, 0.5],   # the face shared by boxes 0 and 1: hidden
                       [0.5, 0.5, 0.5],   # inside box 0, owned by box 1
                       [3.0, 0.5, 0.5]])  # outside both
    owner = np.array([0, 0, 1, -1])
    assert _inside_solids(points, owner, lo, hi).tolist() == [False, True, True, False]


def test_occluded_hand_built():
    scanner = np.array([0.0, 0.0, 1.0])
    lo, hi = np.array([[2.0, -0.5, 0.0]]), np.array([[2.5, 0.5, 2.0]])
    points = np.array([[4.0, 0.0, 1.0],    # straight behind the box
                       [4.0, 3.0, 1.0],    # beside it
                       [2.0, 0.0, 1.0],    # on its front face
                       [2.5, 0.0, 1.0],    # on its back face
                       [-4.0, 0.0, 1.0],   # behind the scanner: azimuth +-pi
                       [4.0, 0.0, 3.5]])   # above the box's shadow
    assert _occluded(points, scanner, lo, hi).tolist() == [True, False, False, True, False, False]


def test_occluded_matches_brute_force_on_a_room():
    """The azimuth/elevation culling changes nothing: same answer as slab-testing every box."""
    layout = room_layout(np.random.default_rng(4))
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.1, 1.0, (3000, 3)) * layout.size
    lo = np.stack([b.lo for b in layout.boxes]) + 1e-4
    hi = np.stack([b.hi for b in layout.boxes]) - 1e-4
    for scanner in layout.scanners:
        d = points - scanner
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (lo[None] - scanner) / d[:, None]  # [P, B, 3]
            t2 = (hi[None] - scanner) / d[:, None]
        t_enter = np.minimum(t1, t2).max(axis=2)
        t_exit = np.maximum(t1, t2).min(axis=2)
        expected = ((t_enter < t_exit) & (t_enter > 0) & (t_enter < 1)).any(axis=1)
        got = _occluded(points, scanner, np.stack([b.lo for b in layout.boxes]), np.stack([b.hi for b in layout.boxes]))
        assert 0 < expected.sum() < len(points)
        np.testing.assert_array_equal(got, expected)


def _segment_hits_box(scanner: np.ndarray, point: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> bool:
    """Slow reference: march along the segment and look for a sample inside the box."""
    t = np.linspace(0.0, 1.0, 400)[1:-1, None]
    samples = scanner + t * (point - scanner)
    return bool(np.any(np.all((samples > lo + 0.01) & (samples < hi - 0.01), axis=1)))


def test_scan_drops_points_the_scanner_cannot_see():
    size = np.array([4.0, 4.0, 3.0])
    box = Box(np.array([1.5, 1.5, 0.0]), np.array([2.5, 2.5, 1.2]), LABEL["table"], 1, np.full(3, 0.5))
    wall = wall_frames(size)[1]  # the x = 4 wall, behind the box as seen from the scanner
    quads = [Quad(np.zeros(3), np.array([4.0, 0, 0]), np.array([0, 4.0, 0]), np.array([0, 0, 1.0]), LABEL["floor"], 0,
                  np.full(3, 0.5), shell=True),
             Quad(wall.origin, 4.0 * wall.tangent, np.array([0, 0, 3.0]), wall.inward, LABEL["wall"], 2,
                  np.full(3, 0.5), shell=True)]
    scanner = np.array([[0.5, 2.0, 1.0]])
    out = scan(RoomLayout(size, [box], quads, scanner), 3000, np.random.default_rng(0), noise=0.0)
    coord = out["coord"].astype(np.float64)
    for p in coord[:: 10]:
        assert not _segment_hits_box(scanner[0], p, box.lo, box.hi)
    # the box's shadow on the wall (straight behind it, low) is empty; the wall above is not
    on_wall = out["label"] == LABEL["wall"]
    shadow = on_wall & (np.abs(coord[:, 1] - 2.0) < 0.3) & (coord[:, 2] < 0.8)
    assert shadow.sum() == 0 and (on_wall & (coord[:, 2] > 2.0)).sum() > 50
    # only the face turned to the scanner is seen: the top is above the scanner's height, the
    # sides are edge-on, the back faces away and the bottom lies on the floor
    on_box = out["label"] == LABEL["table"]
    assert on_box.sum() > 50
    assert set(map(tuple, out["normal"][on_box].round().astype(int).tolist())) == {(-1, 0, 0)}


def test_colour_alone_cannot_segment(rooms):
    """Nearest class-mean colour, fitted on 10 rooms and scored on 10 others, stays < 50% mIoU."""
    train, test = rooms[:10], rooms[10:]
    color = np.concatenate([r["color"] for r in train])
    label = np.concatenate([r["label"] for r in train])
    centroids = np.stack([color[label == k].mean(0) for k in range(K)])
    test_color = np.concatenate([r["color"] for r in test])
    test_label = np.concatenate([r["label"] for r in test])
    pred = np.argmin(((test_color[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    miou = _miou(_confusion(test_label, pred))
    print(f"colour-only nearest-centroid mIoU: {miou:.3f}")
    assert miou < 0.5


def test_height_alone_finds_floor_and_ceiling(rooms):
    """A geometric cue is learnable: floor points are the lowest, ceiling points the highest."""
    floor, ceiling = LABEL["floor"], LABEL["ceiling"]
    for room in rooms:
        z, lab = room["coord"][:, 2], room["label"]
        pred = np.full(len(z), LABEL["clutter"])
        pred[z < z.min() + 0.05] = floor
        pred[z > z.max() - 0.05] = ceiling
        cm = _confusion(lab, pred)
        for k in (floor, ceiling):
            iou = cm[k, k] / (cm[k].sum() + cm[:, k].sum() - cm[k, k])
            assert iou > 0.9, (room["name"], k, iou)


def test_source_names_lazy_and_disjoint():
    big = SyntheticRoomSource(num_rooms=10**5, seed=0)  # constructing generates nothing
    assert big.names()[:2] == ["room_0000", "room_0001"] and len(big.names()) == 10**5
    a, b = SyntheticRoomSource(3, seed=0, num_points=20000), SyntheticRoomSource(3, seed=1, num_points=20000)
    scene = a.load("room_0002")
    assert scene["name"] == "room_0002" and len(scene["coord"]) == 20000
    np.testing.assert_array_equal(scene["coord"], generate_room(room_seed(0, 2), 20000)["coord"])
    assert len({room_seed(s, i) for s in range(5) for i in range(100)}) == 500
    assert not np.array_equal(a.load("room_0000")["coord"], b.load("room_0000")["coord"])
    with pytest.raises(KeyError, match="room_0000..room_0002"):
        a.load("room_0003")
