"""ResNet-18/50/101 with output stride 8, 16 or 32, state_dict-compatible with torchvision.

Parameter names follow torchvision's `resnet.py` exactly (conv1, bn1, layer1..4 of
BasicBlock/Bottleneck with `downsample.0/1`, optional fc), so an ImageNet `.pth` saved from
torchvision loads with `load_pretrained` - nothing is ever downloaded. Output stride 16
dilates layer4, stride 8 layer3 and layer4 (DeepLab's "atrous" ResNet); the first block of a
dilated stage keeps the previous dilation, as torchvision does.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 dilation: int = 1, previous_dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride, previous_dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck: the stride sits on the 3x3 conv."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 dilation: int = 1, previous_dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, previous_dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


_DILATE = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}


class ResNet(nn.Module):
    """ResNet trunk. `forward(x [B,3,H,W])` returns the four stage outputs
    {"layer1": stride 4, "layer2": 8, "layer3": 8|16, "layer4": output_stride}; with
    `num_classes` set it also holds torchvision's `fc` (unused by forward, kept for keys)."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, int, int, int],
                 output_stride: int = 32, num_classes: int | None = None) -> None:
        super().__init__()
        if output_stride not in _DILATE:
            raise ValueError(f"ResNet output_stride {output_stride}; expected one of {sorted(_DILATE)}")
        self.inplanes, self.dilation = 64, 1
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        dilate = _DILATE[output_stride]
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2, dilate[0])
        self.layer3 = self._make_layer(block, 256, layers[2], 2, dilate[1])
        self.layer4 = self._make_layer(block, 512, layers[3], 2, dilate[2])
        self.channels = {f"layer{i}": c * block.expansion for i, c in enumerate((64, 128, 256, 512), 1)}
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int,
                    stride: int = 1, dilate: bool = False) -> nn.Sequential:
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.dilation, previous_dilation)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, dilation=self.dilation, previous_dilation=self.dilation)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # stride 4
        out = {}
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            out[name] = x
        return out


def resnet18(output_stride: int = 32, num_classes: int | None = None) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), output_stride, num_classes)


def resnet50(output_stride: int = 32, num_classes: int | None = None) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), output_stride, num_classes)


def resnet101(output_stride: int = 32, num_classes: int | None = None) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 23, 3), output_stride, num_classes)


RESNETS = {"resnet18": resnet18, "resnet50": resnet50, "resnet101": resnet101}


def load_pretrained(model: nn.Module, path: str | os.PathLike, skip_prefixes: tuple[str, ...] = ("fc.",)) -> None:
    """Load a torchvision-style state_dict file (a plain state_dict, or {"state_dict": ...} /
    {"model": ...}) into `model`. Keys starting with `skip_prefixes` that the model lacks
    (the ImageNet classifier) are dropped; any other missing or unexpected key, or a shape
    mismatch, raises one ValueError listing them. Never downloads."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights {path} do not exist (pcseg never downloads weights; "
                                "save torchvision's state_dict there yourself)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict (a dict of tensors), got {type(state).__name__}")
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(skip_prefixes)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[:5]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:5]}")
        if wrong:
            parts.append("shape mismatch: " + ", ".join(f"{k} file {tuple(state[k].shape)} model {tuple(own[k].shape)}"
                                                         for k in wrong[:5]))
        raise ValueError(f"{path} does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state)
