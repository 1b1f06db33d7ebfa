"""2D networks: ResNet-18/50/101 (torchvision-compatible keys), DeepLabv3+ and OCR.

Every builder is `(num_classes) -> nn.Module` whose forward takes a batch dict (its
`image` float [B, 3, H, W] 0..1) or the image tensor and returns {"logits": [B, K, H, W]}
at input resolution (OCR adds "aux_logits").
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from pcseg.models.image.deeplab import DeepLabV3Plus
from pcseg.models.image.flatten import flatten_logits, segmentation_loss
from pcseg.models.image.ocr import OCRNet
from pcseg.models.image.resnet import load_pretrained, resnet18, resnet50, resnet101


def deeplabv3plus_r18(num_classes: int, output_stride: int = 16) -> DeepLabV3Plus:
    return DeepLabV3Plus(resnet18(output_stride), num_classes, output_stride)


def deeplabv3plus_r50(num_classes: int, output_stride: int = 16) -> DeepLabV3Plus:
    return DeepLabV3Plus(resnet50(output_stride), num_classes, output_stride)


def deeplabv3plus_r101(num_classes: int, output_stride: int = 16) -> DeepLabV3Plus:
    return DeepLabV3Plus(resnet101(output_stride), num_classes, output_stride)


def ocr_r18(num_classes: int) -> OCRNet:
    return OCRNet(resnet18(output_stride=8), num_classes)


def ocr_r50(num_classes: int) -> OCRNet:
    return OCRNet(resnet50(output_stride=8), num_classes)


def ocr_r101(num_classes: int) -> OCRNet:
    return OCRNet(resnet101(output_stride=8), num_classes)


IMAGE_MODELS: dict[str, Callable[[int], nn.Module]] = {
    "deeplabv3plus_r18": deeplabv3plus_r18,
    "deeplabv3plus_r50": deeplabv3plus_r50,
    "deeplabv3plus_r101": deeplabv3plus_r101,
    "ocr_r18": ocr_r18,
    "ocr_r50": ocr_r50,
    "ocr_r101": ocr_r101,
}


def build_image_model(name: str, num_classes: int) -> nn.Module:
    """IMAGE_MODELS[name](num_classes); an unknown name lists the valid ones."""
    if name not in IMAGE_MODELS:
        raise ValueError(f"unknown image model {name!r}; valid: {', '.join(IMAGE_MODELS)}")
    return IMAGE_MODELS[name](num_classes)


__all__ = ["IMAGE_MODELS", "build_image_model", "flatten_logits", "load_pretrained", "segmentation_loss"]
