"""The shared methods on images: every method trains two steps on tiny synthetic images with
the very class it is for 3D; unlabelled images reach the unlabelled terms; CutMix, the
mean-teacher view and S4L's rotations on tiny hand-made inputs."""
from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch

from pcseg.config import load_config
from pcseg.data.collate import feature_channels
from pcseg.data.contract import IGNORE
from pcseg.data.images.flat_batch import collate_flat
from pcseg.data.images.synthetic import SyntheticSceneSource
from pcseg.methods import MethodContext, build_method
from pcseg.methods.cps import CPS
from pcseg.methods.image_views import CUTMIX_AREA, augment_images, box_mask, cutmix_images, unlabelled_images
from pcseg.methods.mean_teacher import MeanTeacher
from pcseg.methods.s4l import S4LRotation, rotated_copies
from pcseg.methods.self_training import SelfTraining
from pcseg.methods.supervised import Supervised
from pcseg.models.image.segmentor import ImageSegmentor
from pcseg.models.segmentor import Segmentor
from pcseg.weak.losses import cps_cross
from method_steps import two_steps

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE, K = 32, 6
# name -> (method.name, extra overrides, the class the 3D builder returns for method.name)
IMAGE_METHODS = {
    "supervised": ("supervised", [], Supervised),
    "cps": ("cps", [], CPS),
    "cps_cutmix": ("cps", ["method.cps.cutmix=true"], CPS),
    "self_training": ("self_training", [], SelfTraining),
    "mean_teacher": ("mean_teacher", [], MeanTeacher),
    "s4l": ("s4l", [], S4LRotation),
}
TUNING = ["method.self_training.warmup_epochs=1", "method.pseudo.bins=50", "method.pseudo.ratio=0.5",
          "method.mean_teacher.rampup_steps=2", "method.mean_teacher.ema=0.5"]


@pytest.fixture(scope="module")
def tiny_batch() -> dict:
    """4 synthetic 32x32 images: 0 and 1 fully labelled, 2 and 3 without any label (a fraction protocol)."""
    source = SyntheticSceneSource(4, seed=0, height=SIZE, width=SIZE)
    samples = []
    for i, name in enumerate(source.names()):
        sample = source.load(name)
        sample["weak_label"] = sample["label"] if i < 2 else np.full_like(sample["label"], IGNORE)
        samples.append(sample)
    return collate_flat(samples)


def image_context(name: str, extra: list[str] = ()) -> MethodContext:
    cfg = load_config(None, ["data.modality=images", "data.dataset=synthetic_scenes", "model.name=deeplabv3plus_r18",
                             f"method.name={name}", *TUNING, *extra])
    mt = cfg.method.mean_teacher
    torch.manual_seed(0)
    return MethodContext(cfg=cfg, make_model=lambda: ImageSegmentor("deeplabv3plus_r18", K), num_classes=K,
                         class_counts=np.arange(1, K + 1) * 100,
                         augment=partial(augment_images, flip=mt.flip, color_jitter=mt.color_jitter), mix=cutmix_images)


@pytest.mark.parametrize("key", list(IMAGE_METHODS))
def test_two_steps_with_the_3d_method_class(key, tiny_batch):
    name, extra, expected = IMAGE_METHODS[key]
    method = build_method(image_context(name, extra))
    assert type(method) is expected
    if name != "s4l":  # the same builder gives the same class on 3D scenes
        cfg3d = load_config(None, [f"method.name={name}", "model.name=minkunet14a"])
        points = build_method(MethodContext(cfg=cfg3d, make_model=lambda: Segmentor("minkunet14a", feature_channels(
            ["color"]), 13, 0.2), num_classes=13, class_counts=np.ones(13, dtype=np.int64)))
        assert type(points) is type(method)

    def check(out: dict) -> None:
        assert out["logits"].shape == (4 * SIZE * SIZE, K)
        assert all(math.isfinite(float(v.detach())) for k, v in out.items() if k != "logits")
    out = two_steps(method, tiny_batch, 0.01, check)
    if name == "self_training":  # epoch 1 pseudo-labels the unlabelled images with epoch 0's thresholds
        assert float(out["pseudo"]) > 0
    if name in ("cps", "mean_teacher"):
        assert float(out["cps" if name == "cps" else "consistency"]) > 0
    method.eval()
    assert method.predict(tiny_batch).shape == (4 * SIZE * SIZE, K)


def test_cps_cross_terms_cover_the_unlabelled_images(tiny_batch):
    method = build_method(image_context("cps")).eval()  # no dropout: the two passes agree
    out = method(tiny_batch)
    with torch.no_grad():
        l1, l2 = method.model(tiny_batch)["logits"], method.model2(tiny_batch)["logits"]
    rows = slice(2 * SIZE * SIZE, None)  # images 2 and 3: every pixel unlabelled
    by_hand = cps_cross(l1[rows], l2[rows], torch.full((2 * SIZE * SIZE,), IGNORE))
    # images 0 and 1 are labelled everywhere, so the cross term is exactly that of images 2 and 3
    assert float(out["cps"]) == pytest.approx(float(by_hand), rel=1e-4)


def test_cps_cross_reads_pseudo_labels_from_the_targets():
    student1 = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    student2 = torch.tensor([[0.0, 2.0], [1.0, 0.0], [0.0, 3.0]])
    targets1 = torch.tensor([[0.0, 5.0], [5.0, 0.0], [0.0, 0.0]])  # argmax 1, 0, 0
    targets2 = torch.tensor([[5.0, 0.0], [0.0, 5.0], [0.0, 0.0]])  # argmax 0, 1, 0
    labels = torch.tensor([IGNORE, IGNORE, 1])  # the last row is labelled: not a cross-term row

    def ce(row, cls):
        return -math.log(math.exp(row[cls]) / sum(math.exp(v) for v in row))

    expected = (ce([2, 0], 0) + ce([0, 1], 1)) / 2 + (ce([0, 2], 1) + ce([1, 0], 0)) / 2
    assert float(cps_cross(student1, student2, labels, targets1, targets2)) == pytest.approx(expected, rel=1e-6)


def test_box_mask_is_one_box_of_the_cutmix_area():
    generator = torch.Generator().manual_seed(3)
    for _ in range(20):
        mask = box_mask(40, 30, generator)
        rows, cols = torch.nonzero(mask.any(1)).flatten(), torch.nonzero(mask.any(0)).flatten()
        h, w = len(rows), len(cols)
        assert int(mask.sum()) == h * w  # a full rectangle
        assert rows.tolist() == list(range(int(rows[0]), int(rows[0]) + h))
        assert CUTMIX_AREA[0] - 0.05 <= h * w / (40 * 30) <= CUTMIX_AREA[1] + 0.05


def test_cutmix_pastes_a_box_of_the_next_unlabelled_image():
    # image 0 labelled, images 1..3 unlabelled; pixel values encode (image, row, column)
    h, w = 4, 6
    grid = torch.arange(4 * h * w, dtype=torch.float32).reshape(4, 1, h, w)
    weak = torch.full((4 * h * w,), IGNORE)
    weak[: h * w] = 1
    batch = {"image": grid.expand(4, 3, h, w).clone(), "weak_label": weak,
             "batch": torch.arange(4).repeat_interleave(h * w), "offset": torch.arange(1, 5) * h * w,
             "names": ["a", "b", "c", "d"]}
    assert unlabelled_images(batch).tolist() == [1, 2, 3]
    masks = [box_mask(h, w, g) for g in [torch.Generator().manual_seed(5)] for _ in range(3)]
    mixed, src = cutmix_images(batch, torch.Generator().manual_seed(5))
    for i, (own, partner) in enumerate([(1, 2), (2, 3), (3, 1)]):
        expected = torch.where(masks[i], grid[partner, 0], grid[own, 0])
        assert torch.equal(mixed["image"][i, 0], expected) and torch.equal(mixed["image"][i, 2], expected)
    # every mixed pixel names the batch row it came from (the values are the rows themselves)
    assert torch.equal(src.float(), mixed["image"][:, 0].reshape(-1))
    assert torch.equal(mixed["weak_label"], weak[src]) and bool((mixed["weak_label"] == IGNORE).all())
    assert mixed["offset"].tolist() == [24, 48, 72] and mixed["names"] == ["b+c", "c+d", "d+b"]
    assert cutmix_images({**batch, "weak_label": torch.ones_like(weak)}, torch.Generator()) is None


def test_mean_teacher_view_keeps_pixel_rows():
    torch.manual_seed(0)
    image = torch.rand(3, 3, 4, 5)
    batch = collate_flat([{"image": image[i].permute(1, 2, 0).numpy(), "label": np.zeros((4, 5), np.int64),
                           "name": str(i)} for i in range(3)])
    view = augment_images(batch, torch.Generator().manual_seed(1), flip=True, color_jitter=0.0)
    flipped = view["hflip"]
    assert flipped.any() and not flipped.all()  # seed chosen so both cases occur
    assert torch.allclose(view["image"][flipped], image[flipped].flip(-1))
    assert torch.allclose(view["image"][~flipped], image[~flipped])
    # a pixel-wise network commutes with the flip, so the student's rows match the teacher's
    grid_view = view["image"] * 2.0
    assert torch.allclose(ImageSegmentor.flatten(grid_view, view), ImageSegmentor.flatten(image * 2.0, batch))
    jittered = augment_images(batch, torch.Generator().manual_seed(1), flip=False, color_jitter=0.5)["image"]
    assert not torch.allclose(jittered, image) and float(jittered.min()) >= 0 and float(jittered.max()) <= 1


def test_s4l_rotations_and_labels():
    image = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).expand(2, 3, 2, 2)
    copies, labels = rotated_copies(image)
    # counter-clockwise quarter turns of [[1, 2], [3, 4]]
    assert copies[0][0, 0].tolist() == [[2.0, 4.0], [1.0, 3.0]]
    assert copies[1][0, 0].tolist() == [[4.0, 3.0], [2.0, 1.0]]
    assert copies[2][0, 0].tolist() == [[3.0, 1.0], [4.0, 2.0]]
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_s4l_rotation_loss_covers_every_image(tiny_batch):
    method = build_method(image_context("s4l"))
    method.eval()  # fixed batch statistics, so the loss can be recomputed
    out = method(tiny_batch)
    with torch.no_grad():
        copies, labels = rotated_copies(tiny_batch["image"])
        views = [tiny_batch["image"]] + copies
        logits = torch.cat([method.rotation_logits(method.model.encode({"image": v})) for v in views])
    assert logits.shape == (16, 4)  # 4 images (labelled and unlabelled) x 4 rotations
    assert float(out["rotation"]) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)), rel=1e-4)
    assert float(out["loss"].detach()) == pytest.approx(float(out["ce"]) + float(out["rotation"]), rel=1e-5)


def test_image_only_and_points_only_methods_say_so():
    cfg = load_config(None, ["method.name=s4l"])
    ctx = MethodContext(cfg=cfg, make_model=lambda: Segmentor("minkunet14a", 3, 13, 0.2), num_classes=13,
                        class_counts=np.ones(13, dtype=np.int64))
    with pytest.raises(ValueError, match="data.modality=images"):
        build_method(ctx)
    cfg = load_config(None, ["method.name=cps", "method.cps.cutmix=true"])
    with pytest.raises(ValueError, match="method.cps.cutmix"):
        build_method(MethodContext(cfg=cfg, make_model=ctx.make_model, num_classes=13, class_counts=ctx.class_counts))
