"""ResNet / ResNeXt backbones returning C2..C5, with torchvision's parameter names.

PyTorch style by default: the stride of a bottleneck sits on its 3x3 conv; ``style="caffe"`` puts it on the
1x1 conv instead, as detectron2's MSRA ResNets (``STRIDE_IN_1X1``) that AdelaiDet's SOLOv2 is trained from.
Because the names are torchvision's
(``conv1``, ``bn1``, ``layer1.0.conv1``, ...), an ImageNet checkpoint saved by torchvision loads with no key
mapping (its ``fc.*`` keys are ignored).

ImageNet weights are named as in the official SOLO configs, ``pretrained='torchvision://resnet50'``, or by a
local path. Building a model never reads them (a detector checkpoint is loaded over it anyway for inference,
evaluation and export); :meth:`ResNet.load_pretrained` does, called by the Trainer when training starts
without a detector checkpoint. A ``torchvision://`` name is read from the torch hub cache
(``torch.hub.get_dir()/checkpoints``, i.e. ``$TORCH_HOME/hub/checkpoints``) and downloaded there once when it
is missing; offline, the error names the file and the folder to put it in.
"""
from __future__ import annotations

import os
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from solov2.models.dcn import build_conv, is_deform_conv
from solov2.models.layers import BatchNorm2d


def _bn(channels: int) -> BatchNorm2d:
    return BatchNorm2d(channels)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, style: str = "pytorch", dcn: dict | None = None):
        super().__init__()
        if dcn is not None:  # the official BasicBlock asserts the same
            raise ValueError("ResNet: dcn is not supported in BasicBlock (depth 18/34); use depth >= 50 or "
                             "stage_with_dcn=(False, False, False, False)")
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
                 groups: int = 1, base_width: int = 64, style: str = "pytorch", dcn: dict | None = None):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        stride_1x1, stride_3x3 = (stride, 1) if style == "caffe" else (1, stride)
        self.conv1 = nn.Conv2d(inplanes, width, 1, stride=stride_1x1, bias=False)
        self.bn1 = _bn(width)
        # With ``dcn`` the 3x3 conv is deformable (``conv2.weight`` plus ``conv2.conv_offset.*``), stride included
        # (``fallback_on_stride=False`` in every official config).
        self.conv2 = build_conv(dcn, width, width, 3, stride=stride_3x3, padding=1, groups=groups, bias=False)
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
        pretrained: ``'torchvision://resnet50'`` (see :data:`TORCHVISION_ARCHS`), a local path of a
            torchvision-style checkpoint, or None. Only remembered here: :meth:`load_pretrained` reads it.
        groups, base_width: ResNeXt cardinality and width per group (1 and 64 for ResNet).
        style: ``"pytorch"`` (stride on a bottleneck's 3x3 conv: torchvision, mmdet, the official SOLO) or
            ``"caffe"`` (stride on its first 1x1 conv: detectron2's MSRA weights, AdelaiDet). Same parameters.
        dcn: the official ``dict(type='DCNv2' | 'DCN', deformable_groups=1, fallback_on_stride=False)``: the 3x3
            conv of every bottleneck in the stages ``stage_with_dcn`` marks becomes deformable (v2: modulated).
            ``fallback_on_stride=True`` keeps the stride-2 blocks' conv2 plain.
        stage_with_dcn: per stage (layer1..layer4) whether it gets ``dcn``; official DCN models use
            ``(False, True, True, True)``.
        zero_init_residual: start each residual block's last BatchNorm at weight 0, so a block starts as the
            identity (MMDetection's ResNet does; torchvision's does not). Matters only from scratch: ImageNet
            weights overwrite it. Off by default: from scratch it halved the demo's mask AP (0.105 vs 0.208)
            and did not help the light R50 at batch 2 (docs/history.md).
        base_channels: the stem's and the first stage's width (MMDetection's name); the stages have 1, 2, 4 and
            8 times it. 64 is every ImageNet ResNet; a narrower one is for training from scratch on a CPU.

    Input ``(B, 3, H, W)`` float; output 4 maps of strides 4, 8, 16, 32 with (1, 2, 4, 8) x ``base_channels`` x
    expansion channels (64/128/256/512 x expansion by default).
    """

    def __init__(self, depth: int = 50, frozen_stages: int = 1, norm_eval: bool = True,
                 pretrained: str | None = None, groups: int = 1, base_width: int = 64, style: str = "pytorch",
                 zero_init_residual: bool = False, dcn: dict | None = None,
                 stage_with_dcn=(False, False, False, False), base_channels: int = 64):
        super().__init__()
        if depth not in ARCH_SETTINGS:
            raise ValueError(f"ResNet: depth must be one of {sorted(ARCH_SETTINGS)}, got {depth}")
        if style not in ("pytorch", "caffe"):
            raise ValueError(f"ResNet: style must be 'pytorch' or 'caffe', got {style!r}")
        block, layers = ARCH_SETTINGS[depth]
        self.depth, self.frozen_stages, self.norm_eval = depth, frozen_stages, norm_eval
        self.pretrained = pretrained or None
        self._groups, self._base_width, self._style = groups, base_width, style
        dcn = dict(dcn) if dcn is not None else None
        fallback_on_stride = bool(dcn.pop("fallback_on_stride", False)) if dcn is not None else False
        if len(stage_with_dcn) != 4:
            raise ValueError(f"ResNet: stage_with_dcn needs one entry per stage (4), got {tuple(stage_with_dcn)}")
        self.dcn, self.stage_with_dcn = dcn, tuple(bool(v) for v in stage_with_dcn)
        self._fallback_on_stride = fallback_on_stride
        if base_channels < 1:
            raise ValueError(f"ResNet: base_channels must be a positive number of channels, got {base_channels}")
        self.base_channels = base_channels
        widths = [base_channels * k for k in (1, 2, 4, 8)]
        self.inplanes = base_channels
        self.conv1 = nn.Conv2d(3, base_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = _bn(base_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            self._make_layer(block, width, n, stride=1 if i == 0 else 2, dcn=dcn if with_dcn else None)
            for i, (width, n, with_dcn) in enumerate(zip(widths, layers, self.stage_with_dcn)))
        self.out_channels = [c * block.expansion for c in widths]
        self._init_weights(zero_init_residual)
        self._freeze_stages()

    def load_pretrained(self, spec: str | None = None) -> str:
        """Load ImageNet weights (``spec``, default ``self.pretrained``); returns the file read.

        A ``torchvision://`` name is downloaded into the torch hub cache if it is not there yet. Raises
        ``ValueError`` (unknown name, other architecture, unreadable file) or ``FileNotFoundError`` (missing
        file; offline and not cached), each with a one-line message naming the file.
        """
        spec = spec or self.pretrained
        if not spec:
            raise ValueError("ResNet.load_pretrained: no weights given (pretrained=None)")
        if spec.startswith(TORCHVISION_PREFIX):
            self._check_torchvision_arch(spec)
        return load_pretrained_backbone(self, spec)

    def train_every_layer(self) -> None:
        """Unfreeze every stage and let BatchNorm update its statistics (``frozen_stages=-1``,
        ``norm_eval=False``): for training from random weights, where frozen layers would stay random."""
        self.frozen_stages, self.norm_eval = -1, False
        for p in self.parameters():
            p.requires_grad_(True)
        self.train(self.training)

    def _check_torchvision_arch(self, spec: str) -> None:
        """Refuse weights of another architecture before anything is downloaded."""
        depth, groups, base_width = TORCHVISION_ARCHS[_torchvision_name(spec)]
        if (depth, groups, base_width, 64) != (self.depth, self._groups, self._base_width, self.base_channels):
            raise ValueError(f"{spec}: weights of depth {depth}, groups {groups}, base_width {base_width}, but "
                             f"the backbone has depth {self.depth}, groups {self._groups}, base_width "
                             f"{self._base_width}, base_channels {self.base_channels}; set model.pretrained "
                             f"to the matching torchvision:// name")
        if self._style != "pytorch":
            raise ValueError(f"{spec}: torchvision weights are pytorch-style (stride on the 3x3 conv), the "
                             f"backbone is style={self._style!r}; use detectron2's MSRA weights or pretrained=None")

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1, dcn: dict | None = None
                    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                _bn(planes * block.expansion),
            )
        kwargs = dict(groups=self._groups, base_width=self._base_width, style=self._style)
        first_dcn = None if stride != 1 and self._fallback_on_stride else dcn
        layers = [block(self.inplanes, planes, stride, downsample, dcn=first_dcn, **kwargs)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, dcn=dcn, **kwargs) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():  # a deformable conv2 starts as the plain conv it replaces: zero offsets
            if is_deform_conv(m):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                m.init_offset()
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (Bottleneck, BasicBlock)):
                    nn.init.zeros_((m.bn3 if isinstance(m, Bottleneck) else m.bn2).weight)

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


class ResNeXt(ResNet):
    """The official config type ``'ResNeXt'``: :class:`ResNet` with ``groups`` and ``base_width`` (per group).

    As the official ResNeXt, ``groups=1`` is a plain ResNet whatever ``base_width`` says; the official X101
    is ``groups=64, base_width=4`` (``torchvision://resnext101_64x4d`` holds ImageNet weights of that shape).
    """

    def __init__(self, depth: int = 101, groups: int = 1, base_width: int = 4, **kwargs):
        super().__init__(depth=depth, groups=groups, base_width=64 if groups == 1 else base_width, **kwargs)


TORCHVISION_PREFIX = "torchvision://"
# torchvision's ImageNet classifiers that this ResNet can hold: name -> (depth, groups, base_width).
TORCHVISION_ARCHS = {
    "resnet18": (18, 1, 64), "resnet34": (34, 1, 64), "resnet50": (50, 1, 64), "resnet101": (101, 1, 64),
    "resnext50_32x4d": (50, 32, 4), "resnext101_32x8d": (101, 32, 8), "resnext101_64x4d": (101, 64, 4),
    "wide_resnet50_2": (50, 1, 128), "wide_resnet101_2": (101, 1, 128),
}


def _torchvision_name(spec: str) -> str:
    name = spec[len(TORCHVISION_PREFIX):]
    if name not in TORCHVISION_ARCHS:
        raise ValueError(f"{spec}: unknown torchvision ImageNet model; known: "
                         + ", ".join(TORCHVISION_PREFIX + n for n in TORCHVISION_ARCHS))
    return name


def torchvision_weights_file(spec: str) -> tuple[str, str]:
    """``'torchvision://resnet50'`` -> (download URL, path in the torch hub cache); no I/O.

    The weights are torchvision's ``IMAGENET1K_V1`` (``ResNet50_Weights.IMAGENET1K_V1``: the checkpoint that
    ``torchvision://resnet50`` meant in MMDetection 1.x and the official SOLO code). The cache folder is
    ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``), where torchvision keeps them too.
    """
    from torchvision.models import get_model_weights
    url = get_model_weights(_torchvision_name(spec)).IMAGENET1K_V1.url
    return url, os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))


def fetch_pretrained(spec: str) -> str:
    """The local file of ``spec`` (a path, or a ``torchvision://`` name, downloaded into the cache if missing).

    Raises ``FileNotFoundError`` with one line naming the file (and, offline, the folder to put it in).
    """
    if not spec.startswith(TORCHVISION_PREFIX):
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"{spec}: pretrained backbone checkpoint not found (model.pretrained takes a "
                                    f"local file or a torchvision:// name; model.pretrained=None trains from scratch)")
        return spec
    url, path = torchvision_weights_file(spec)
    if os.path.isfile(path):
        return path
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        # The file name carries the first digits of its SHA-256 (resnet50-0676ba61.pth), checked as torchvision
        # does; the file is written to a temporary name first, so an interrupted download leaves nothing.
        hash_prefix = os.path.basename(path).rsplit("-", 1)[-1].split(".")[0]
        torch.hub.download_url_to_file(url, path, hash_prefix=hash_prefix, progress=True)
    except Exception as exc:  # URLError, timeouts, HTTP errors, a full disk, a wrong hash: all end the same way
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise FileNotFoundError(
            f"{spec}: not in the torch hub cache and cannot be downloaded ({reason}); put "
            f"{os.path.basename(path)} from {url} into {folder}/ (or train from scratch with "
            f"--cfg-options model.pretrained=None)") from None
    return path


def load_pretrained_backbone(backbone: nn.Module, spec: str) -> str:
    """Load a torchvision (or ``backbone.``-prefixed) ImageNet checkpoint: a local file or ``torchvision://``.

    Returns the file read. Raises ``FileNotFoundError`` / ``ValueError`` with the path and the mismatched keys.
    """
    path = fetch_pretrained(spec)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        hint = " (delete it to download it again)" if spec.startswith(TORCHVISION_PREFIX) else ""
        raise ValueError(f"{path}: cannot read checkpoint{hint}: {' '.join(str(exc).split())}") from None
    state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = backbone.state_dict()
    # ImageNet classifiers have no deformable offsets: a DCN backbone keeps its zero-initialised conv_offset
    # (the official code loads them with strict=False for the same reason).
    offsets = {k for k in own if ".conv_offset." in k and k not in state}
    missing = sorted(set(own) - set(state) - offsets)
    unexpected = sorted(set(state) - set(own))
    bad_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or bad_shape:
        raise ValueError(f"{path}: does not match ResNet-{getattr(backbone, 'depth', '?')}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {bad_shape[:5]}")
    backbone.load_state_dict(state, strict=not offsets)
    return path
