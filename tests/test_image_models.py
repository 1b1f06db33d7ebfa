"""2D networks: torchvision key compatibility, pretrained loading, dilation, the OCR
formulas against explicit loops, flattening, and forward + backward of every builder."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pcseg.data.contract import IGNORE
from pcseg.models.image import IMAGE_MODELS, build_image_model, flatten_logits, load_pretrained, segmentation_loss
from pcseg.models.image.ocr import AUX_WEIGHT, ObjectAttention, SpatialGather
from pcseg.models.image.resnet import resnet18, resnet50

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix: str) -> list[str]:
    return [f"{prefix}.{s}" for s in _BN]


# torchvision.models.resnet18().state_dict().keys(), in order (torchvision/models/resnet.py:
# BasicBlock = conv1 bn1 conv2 bn2 [+ downsample = Sequential(conv1x1, BatchNorm2d)]).
TORCHVISION_RESNET18_KEYS = (
    ["conv1.weight"] + _bn("bn1")
    + ["layer1.0.conv1.weight"] + _bn("layer1.0.bn1") + ["layer1.0.conv2.weight"] + _bn("layer1.0.bn2")
    + ["layer1.1.conv1.weight"] + _bn("layer1.1.bn1") + ["layer1.1.conv2.weight"] + _bn("layer1.1.bn2")
    + ["layer2.0.conv1.weight"] + _bn("layer2.0.bn1") + ["layer2.0.conv2.weight"] + _bn("layer2.0.bn2")
    + ["layer2.0.downsample.0.weight"] + _bn("layer2.0.downsample.1")
    + ["layer2.1.conv1.weight"] + _bn("layer2.1.bn1") + ["layer2.1.conv2.weight"] + _bn("layer2.1.bn2")
    + ["layer3.0.conv1.weight"] + _bn("layer3.0.bn1") + ["layer3.0.conv2.weight"] + _bn("layer3.0.bn2")
    + ["layer3.0.downsample.0.weight"] + _bn("layer3.0.downsample.1")
    + ["layer3.1.conv1.weight"] + _bn("layer3.1.bn1") + ["layer3.1.conv2.weight"] + _bn("layer3.1.bn2")
    + ["layer4.0.conv1.weight"] + _bn("layer4.0.bn1") + ["layer4.0.conv2.weight"] + _bn("layer4.0.bn2")
    + ["layer4.0.downsample.0.weight"] + _bn("layer4.0.downsample.1")
    + ["layer4.1.conv1.weight"] + _bn("layer4.1.bn1") + ["layer4.1.conv2.weight"] + _bn("layer4.1.bn2")
    + ["fc.weight", "fc.bias"]
)


def test_resnet18_keys_match_torchvision():
    assert len(TORCHVISION_RESNET18_KEYS) == 122
    state = resnet18(num_classes=1000).state_dict()
    assert list(state) == TORCHVISION_RESNET18_KEYS
    assert tuple(state["conv1.weight"].shape) == (64, 3, 7, 7)
    assert tuple(state["layer3.0.downsample.0.weight"].shape) == (256, 128, 1, 1)
    assert tuple(state["fc.weight"].shape) == (1000, 512)
    # Dilation changes no key: the segmentation trunk is the same list without fc.
    assert list(resnet18(output_stride=8).state_dict()) == TORCHVISION_RESNET18_KEYS[:-2]


def test_resnet50_bottleneck_keys_and_dilation():
    net = resnet50(output_stride=8)
    keys = list(net.state_dict())
    # torchvision resnet50: 161 parameters (53 convs, 53 BNs x 2, fc x 2) + 53 x 3 BN buffers
    # = 320 entries; without fc, 318.
    assert len(keys) == 318
    assert "layer1.0.conv3.weight" in keys and "layer4.2.bn3.running_var" in keys
    assert tuple(net.state_dict()["layer4.0.downsample.0.weight"].shape) == (2048, 1024, 1, 1)
    # torchvision's replace_stride_with_dilation=[False, True, True]: the first block of a
    # dilated stage keeps the previous dilation.
    assert [b.conv2.dilation[0] for b in net.layer3] == [1] + [2] * 5
    assert [b.conv2.dilation[0] for b in net.layer4] == [2, 4, 4]
    assert net.layer3[0].conv2.stride == (1, 1) and net.layer3[0].downsample[0].stride == (1, 1)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_resnet18_output_stride(output_stride):
    net = resnet18(output_stride=output_stride).eval()
    with torch.no_grad():
        feats = net(torch.zeros(1, 3, 64, 64))
    assert feats["layer1"].shape == (1, 64, 16, 16)
    assert feats["layer4"].shape == (1, 512, 64 // output_stride, 64 // output_stride)


def test_load_pretrained_round_trip_and_errors(tmp_path):
    torch.manual_seed(0)
    imagenet = resnet18(num_classes=1000)
    with torch.no_grad():
        for p in imagenet.parameters():
            p.normal_()
    torch.save(imagenet.state_dict(), tmp_path / "r18.pth")
    model = build_image_model("deeplabv3plus_r18", 21)
    load_pretrained(model.backbone, tmp_path / "r18.pth")  # fc is dropped, everything else loads
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, imagenet.state_dict()[key]), key
    state = imagenet.state_dict()
    del state["layer2.0.bn1.running_mean"]
    state["head.extra"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"1 missing key\(s\), e.g. \['layer2.0.bn1.running_mean'\]; "
                                         r"1 unexpected key\(s\), e.g. \['head.extra'\]"):
        load_pretrained(model.backbone, tmp_path / "bad.pth")
    torch.save(resnet50().state_dict(), tmp_path / "r50.pth")
    with pytest.raises(ValueError, match="shape mismatch"):
        load_pretrained(resnet18(), tmp_path / "r50.pth")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_pretrained(model.backbone, tmp_path / "absent.pth")


def test_aspp_rates():
    os16 = build_image_model("deeplabv3plus_r18", 3)
    os8 = IMAGE_MODELS["deeplabv3plus_r18"](3, output_stride=8)
    assert [b[0].dilation[0] for b in os16.aspp.branches] == [1, 6, 12, 18]
    assert [b[0].dilation[0] for b in os8.aspp.branches] == [1, 12, 24, 36]


def test_ocr_region_features_equal_loops():
    g = torch.Generator().manual_seed(0)
    b, c, k, h, w = 2, 3, 4, 2, 3
    x = torch.randn(b, c, h, w, generator=g, dtype=torch.float64)
    m = torch.randn(b, k, h, w, generator=g, dtype=torch.float64)
    out = SpatialGather()(x, m)
    assert out.shape == (b, c, k)
    for n in range(b):
        for kk in range(k):
            denom = sum(math.exp(m[n, kk, i, j]) for i in range(h) for j in range(w))
            for ch in range(c):
                f = sum(math.exp(m[n, kk, i, j]) / denom * x[n, ch, i, j] for i in range(h) for j in range(w))
                assert abs(out[n, ch, kk].item() - f) < 1e-12


def test_ocr_object_context_equals_loops():
    torch.manual_seed(0)
    c, d, k, h, w = 6, 4, 3, 2, 2
    att = ObjectAttention(c, d).double().eval()
    x = torch.randn(1, c, h, w, dtype=torch.float64)
    regions = torch.randn(1, c, k, dtype=torch.float64)
    with torch.no_grad():
        phi = att.f_pixel(x)[0]                              # [d, h, w]
        psi = att.f_object(regions.unsqueeze(-1))[0, :, :, 0]  # [d, k]
        delta = att.f_down(regions.unsqueeze(-1))[0, :, :, 0]  # [d, k]
        expected = torch.zeros(1, d, h, w, dtype=torch.float64)
        for i in range(h):
            for j in range(w):
                s = [sum(phi[e, i, j] * psi[e, kk] for e in range(d)) / math.sqrt(d) for kk in range(k)]
                z = sum(math.exp(v) for v in s)
                for kk in range(k):
                    expected[0, :, i, j] += math.exp(s[kk]) / z * delta[:, kk]
        assert torch.allclose(att(x, regions), att.f_up(expected), atol=1e-12)
        rel = att.relation(x, regions)
        assert rel.shape == (1, h * w, k) and torch.allclose(rel.sum(-1), torch.ones(1, h * w, dtype=torch.float64))


def test_flatten_logits_order_and_groups():
    logits = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    label = torch.tensor([[[0, 1], [2, -1]], [[1, 1], [0, 2]]])
    flat, lab, group = flatten_logits(logits, label)
    assert flat.shape == (8, 3) and group.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert lab.tolist() == [0, 1, 2, -1, 1, 1, 0, 2]
    m = 0
    for bb in range(2):
        for y in range(2):
            for x in range(2):
                assert flat[m].tolist() == logits[bb, :, y, x].tolist()
                m += 1
    with pytest.raises(ValueError, match="does not match"):
        flatten_logits(logits, label[:, :1])


def test_segmentation_loss_aux_weight():
    g = torch.Generator().manual_seed(1)
    out = {"logits": torch.randn(1, 3, 2, 2, generator=g), "aux_logits": torch.randn(1, 3, 2, 2, generator=g)}
    label = torch.tensor([[[0, 2], [IGNORE, 1]]])
    terms = segmentation_loss(out, label)
    keep = label != IGNORE
    ce = F.cross_entropy(out["logits"].permute(0, 2, 3, 1)[keep], label[keep])
    aux = F.cross_entropy(out["aux_logits"].permute(0, 2, 3, 1)[keep], label[keep])
    assert torch.allclose(terms["loss"], ce + AUX_WEIGHT * aux) and AUX_WEIGHT == 0.4
    empty = segmentation_loss({"logits": out["logits"].requires_grad_()}, torch.full((1, 2, 2), IGNORE))
    assert empty["loss"].item() == 0.0 and empty["loss"].requires_grad


def test_unknown_model_lists_valid():
    with pytest.raises(ValueError, match="deeplabv3plus_r18, deeplabv3plus_r50"):
        build_image_model("unet", 3)


# ResNet-50/101 are big for a shared CPU: train-mode forward + backward for the ResNet-18
# networks at 64x64 (their heads and decoders are the same code for every trunk), the
# deeper trunks forward only at 32x32.
_SIZES = {"r18": (64, True), "r50": (32, False), "r101": (32, False)}


@pytest.mark.parametrize("name", list(IMAGE_MODELS))
def test_forward_backward(name):
    torch.manual_seed(0)
    size, backward = _SIZES[name.rsplit("_", 1)[1]]
    model = IMAGE_MODELS[name](5)
    batch = {"image": torch.rand(2, 3, size, size), "label": torch.randint(0, 5, (2, size, size))}
    if not backward:
        model.eval()
        with torch.no_grad():
            out = model(batch)
    else:
        out = model(batch)
        loss = segmentation_loss(out, batch["label"])["loss"]
        loss.backward()
        grads = [p.grad for p in model.parameters()]
        assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
        assert model.backbone.conv1.weight.grad.abs().sum() > 0
    assert out["logits"].shape == (2, 5, size, size)
    assert ("aux_logits" in out) == name.startswith("ocr")
    if "aux_logits" in out:
        assert out["aux_logits"].shape == (2, 5, size, size)
