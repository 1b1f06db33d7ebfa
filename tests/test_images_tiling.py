"""Tiling large images, reassembling tile logits, and iSAID polygon rasterisation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pcseg.data.images.isaid import ISAIDSource, TiledSource, rasterise_polygons
from pcseg.data.images.tiling import cut_tiles, predict_tiled, reassemble_logits, tile_boxes


def test_tile_boxes_hand_computed():
    # 10 wide, patch 4, stride 3: starts 0, 3, 6 and a last tile flush with the border at 6 -> [0, 3, 6].
    assert tile_boxes(4, 10, 4, 3) == [(0, 0, 4, 4), (0, 3, 4, 7), (0, 6, 4, 10)]
    # 11 wide: starts 0, 3, 6 end at 10 < 11, so one more tile at 7.
    assert [b[1] for b in tile_boxes(4, 11, 4, 3)] == [0, 3, 6, 7]
    # Smaller than the patch: one tile of the image's own size.
    assert tile_boxes(3, 2, 8, 4) == [(0, 0, 3, 2)]
    with pytest.raises(ValueError, match="uncovered"):
        tile_boxes(10, 10, 4, 5)


@pytest.mark.parametrize("height,width,patch,stride", [(37, 53, 16, 10), (32, 32, 16, 16), (20, 45, 16, 5),
                                                        (7, 9, 16, 8), (50, 17, 12, 12)])
def test_tile_then_reassemble_is_exact(height, width, patch, stride):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, height, width)).astype(np.float32)
    boxes = tile_boxes(height, width, patch, stride)
    # Every pixel covered, every tile inside the image and at most patch x patch.
    cover = np.zeros((height, width), dtype=int)
    for y0, x0, y1, x1 in boxes:
        assert 0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width
        assert y1 - y0 <= patch and x1 - x0 <= patch
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1
    hw_first = np.moveaxis(logits, 0, -1)
    tiles = [torch.from_numpy(np.ascontiguousarray(np.moveaxis(t, -1, 0))) for t in cut_tiles(hw_first, boxes)]
    full = reassemble_logits(tiles, boxes, height, width)
    assert full.dtype == torch.float32
    assert torch.equal(full, torch.from_numpy(logits))


def test_reassemble_averages_overlaps():
    boxes = [(0, 0, 1, 3), (0, 2, 1, 5)]
    tiles = [torch.tensor([[[1.0, 2.0, 3.0]]]), torch.tensor([[[5.0, 6.0, 7.0]]])]
    assert reassemble_logits(tiles, boxes, 1, 5).tolist() == [[[1.0, 2.0, 4.0, 6.0, 7.0]]]
    with pytest.raises(ValueError, match="uncovered"):
        reassemble_logits(tiles[:1], boxes[:1], 1, 5)


def test_predict_tiled_with_a_pixelwise_model_equals_full_prediction():
    # A per-pixel linear "network" gives the same logits whether run on tiles or the whole image.
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 3, generator=g)
    image = torch.rand(3, 23, 41, generator=g)
    model = lambda x: torch.einsum("kc,bchw->bkhw", weight, x)  # noqa: E731
    tiled = predict_tiled(model, image, patch=16, stride=9)
    assert torch.allclose(tiled, model(image[None])[0], atol=1e-6)


def test_rasterise_rectangle_and_overlap_order():
    # A big harbour rectangle and a small ship inside it: the smaller one stays on top.
    polys = [(1, [2, 1, 8, 1, 8, 6, 2, 6]), (15, [4, 2, 5, 2, 5, 3, 4, 3])]
    label, inst = rasterise_polygons(8, 10, polys)
    expected = np.zeros((8, 10), dtype=np.int64)
    expected[1:7, 2:9] = 1  # PIL fills boundary pixels: rows 1..6, cols 2..8
    expected[2:4, 4:6] = 15
    np.testing.assert_array_equal(label, expected)
    assert inst[5, 7] == 0 and inst[2, 4] == 1 and inst[0, 0] == -1


def test_rasterise_triangle_interior_matches_point_in_polygon():
    from matplotlib.path import Path as MplPath

    tri = [3.0, 2.0, 28.0, 6.0, 10.0, 25.0]
    label, _ = rasterise_polygons(30, 32, [(2, tri)])
    yy, xx = np.mgrid[0:30, 0:32]
    path = MplPath(np.array(tri).reshape(-1, 2))
    inside = path.contains_points(np.stack([xx.ravel(), yy.ravel()], 1), radius=-1.0).reshape(30, 32)
    outside = ~path.contains_points(np.stack([xx.ravel(), yy.ravel()], 1), radius=1.0).reshape(30, 32)
    # Pixels a clear pixel inside / outside the edges must agree; the edge band is PIL's choice.
    assert (label[inside] == 2).all() and inside.sum() > 100
    assert (label[outside] == 0).all()


def _write_isaid(tmp_path, height=40, width=70):
    rng = np.random.default_rng(1)
    (tmp_path / "images").mkdir()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(tmp_path / "images" / "P0001.png")
    coco = {"images": [{"id": 7, "file_name": "P0001.png", "height": height, "width": width}],
            "categories": [{"id": 1, "name": "storage_tank"}, {"id": 4, "name": "plane"},
                           {"id": 9, "name": "Ground_Track_Field"}, {"id": 3, "name": "store_tank"}],
            "annotations": [{"image_id": 7, "category_id": 4, "segmentation": [[10, 5, 30, 5, 30, 20, 10, 20]]},
                            {"image_id": 7, "category_id": 9, "segmentation": [[40, 10, 60, 10, 60, 35, 40, 35]]}]}
    (tmp_path / "iSAID_val.json").write_text(json.dumps(coco))


def test_isaid_source_and_tiled_round_trip(tmp_path):
    _write_isaid(tmp_path)
    source = ISAIDSource(tmp_path / "images", tmp_path / "iSAID_val.json")
    meta = source.meta
    assert source.names() == ["P0001"] and source.image_size("P0001") == (40, 70)
    sample = source.load("P0001")
    label = sample["label"]
    assert (label[5:21, 10:31] == meta.class_names.index("plane")).all()
    assert (label[10:36, 40:61] == meta.class_names.index("ground_track_field")).all()
    assert (label == 0).sum() == 40 * 70 - 16 * 21 - 26 * 21
    tiled = TiledSource(source, patch=32, stride=20)
    boxes = [b for _, b in tiled.boxes("P0001")]
    assert boxes == tile_boxes(40, 70, 32, 20)
    # Labels of the tiles put back where they came from give the full mask again.
    rebuilt = np.full((40, 70), -99, dtype=np.int64)
    for name in tiled.names():
        tile = tiled.load(name)
        y0, x0, y1, x1 = tile["box"]
        assert tile["parent"] == "P0001" and tile["image"].shape == (y1 - y0, x1 - x0, 3)
        rebuilt[y0:y1, x0:x1] = tile["label"]
    np.testing.assert_array_equal(rebuilt, label)


def test_isaid_unknown_category_is_named(tmp_path):
    _write_isaid(tmp_path)
    coco = json.loads((tmp_path / "iSAID_val.json").read_text())
    coco["categories"].append({"id": 20, "name": "spaceship"})
    (tmp_path / "bad.json").write_text(json.dumps(coco))
    with pytest.raises(ValueError, match="bad.json: category 'spaceship'"):
        ISAIDSource(tmp_path / "images", tmp_path / "bad.json")
