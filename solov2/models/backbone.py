"""ResNet / ResNeXt backbones returning C2..C5, with torchvision's parameter names.

PyTorch style by default: the stride of a bottleneck sits on its 3x3 conv; ``style="caffe"`` puts it on the
1x1 conv instead, as detectron2's MSRA ResNets (``STRIDE_IN_1X1``) that AdelaiDet's SOLOv2 is trained from.
Because the names are torchvision's
(``conv1``, ``bn1``, ``layer1.0.conv1``, ...), an ImageNet checkpoint saved by torchvision loads from a
local file with no key mapping (its ``fc.*`` keys are ignored). Nothing is ever downloaded.
"""
from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from .layers import BatchNorm2d


def _bn(channels: int) -> BatchNorm2d:
    return BatchNorm2d(channels)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, style: str = "pytorch"):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = _bn(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, style: str = "pytorch"):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        stride_1x1, stride_3x3 = (stride, 1) if style == "caffe" else (1, stride)
        self.conv1 = nn.Conv2d(inplanes, width, 1, stride=stride_1x1, bias=False)
        self.bn1 = _bn(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride_3x3, padding=1, groups=groups, bias=False)
        self.bn2 = _bn(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = _bn(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


ARCH_SETTINGS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


class ResNet(nn.Module):
    """ResNet-18/34/50/101 (ResNeXt with ``groups``/``base_width``), output (C2, C3, C4, C5).

    Args:
        depth: 18, 34, 50 or 101.
        frozen_stages: stages whose weights are frozen: -1 none, 0 the stem, k the stem and layer1..k.
        norm_eval: keep every BatchNorm in eval mode (running statistics frozen) while training.
        pretrained: local path of a torchvision-style checkpoint, or None.
        groups, base_width: ResNeXt cardinality and width per group (1 and 64 for ResNet).
        style: ``"pytorch"`` (stride on a bottleneck's 3x3 conv: torchvision, mmdet, the official SOLO) or
            ``"caffe"`` (stride on its first 1x1 conv: detectron2's MSRA weights, AdelaiDet). Same parameters.

    Input ``(B, 3, H, W)`` float; output 4 maps of strides 4, 8, 16, 32 with 64/128/256/512 x expansion channels.
    """

    def __init__(self, depth: int = 50, frozen_stages: int = 1, norm_eval: bool = True,
                 pretrained: str | None = None, groups: int = 1, base_width: int = 64, style: str = "pytorch"):
        super().__init__()
        if depth not in ARCH_SETTINGS:
            raise ValueError(f"ResNet: depth must be one of {sorted(ARCH_SETTINGS)}, got {depth}")
        if style not in ("pytorch", "caffe"):
            raise ValueError(f"ResNet: style must be 'pytorch' or 'caffe', got {style!r}")
        block, layers = ARCH_SETTINGS[depth]
        self.depth, self.frozen_stages, self.norm_eval = depth, frozen_stages, norm_eval
        self._groups, self._base_width, self._style = groups, base_width, style
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = _bn(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.out_channels = [c * block.expansion for c in (64, 128, 256, 512)]
        self._init_weights()
        if pretrained:
            load_pretrained_backbone(self, pretrained)
        self._freeze_stages()

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                _bn(planes * block.expansion),
            )
        kwargs = dict(groups=self._groups, base_width=self._base_width, style=self._style)
        layers = [block(self.inplanes, planes, stride, downsample, **kwargs)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, **kwargs) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _stages(self) -> list[list[nn.Module]]:
        return [[self.conv1, self.bn1], [self.layer1], [self.layer2], [self.layer3], [self.layer4]]

    def _freeze_stages(self) -> None:
        for stage in self._stages()[: self.frozen_stages + 1]:
            for module in stage:
                module.eval()
                for p in module.parameters():
                    p.requires_grad_(False)

    def train(self, mode: bool = True) -> "ResNet":
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs


def load_pretrained_backbone(backbone: nn.Module, path: str) -> None:
    """Load a torchvision (or ``backbone.``-prefixed) ImageNet checkpoint from a local file.

    Raises ``FileNotFoundError`` / ``ValueError`` with the path and the mismatched keys.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: pretrained backbone checkpoint not found (weights are never downloaded)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read checkpoint: {exc}") from None
    state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or bad_shape:
        raise ValueError(f"{path}: does not match ResNet-{getattr(backbone, 'depth', '?')}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {bad_shape[:5]}")
    backbone.load_state_dict(state, strict=True)
