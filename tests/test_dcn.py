"""Deformable convolutions: the official offset / mask layout, checked against sampling written out by hand."""
import math

import pytest
import torch

from solov2.models.dcn import DeformConvPack, ModulatedDeformConvPack, build_conv


def bilinear(img, y: float, x: float):
    """``img`` (C, H, W) at real position (y, x); zero outside, as mmdet's ``dmcn_im2col_bilinear``:
    a point counts if -1 < y < H and -1 < x < W, each of its four neighbours only if it is inside."""
    c, h, w = img.shape
    if not (-1 < y < h and -1 < x < w):
        return img.new_zeros(c)
    y0, x0 = math.floor(y), math.floor(x)
    ly, lx = y - y0, x - x0
    out = img.new_zeros(c)
    for yy, xx, wgt in ((y0, x0, (1 - ly) * (1 - lx)), (y0, x0 + 1, (1 - ly) * lx),
                        (y0 + 1, x0, ly * (1 - lx)), (y0 + 1, x0 + 1, ly * lx)):
        if 0 <= yy < h and 0 <= xx < w:
            out = out + wgt * img[:, yy, xx]
    return out


def reference_dcn(x, offset, mask, weight, bias, stride, padding, dilation=1):
    """Direct modulated deformable convolution (one deformable group, groups=1), loops over every output pixel.

    Offset channel ``2p`` is dy and ``2p + 1`` dx of kernel point ``p = i*kw + j``; mask channel ``p``."""
    b, cin, h, w = x.shape
    cout, _, kh, kw = weight.shape
    ho = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    out = x.new_zeros(b, cout, ho, wo)
    for n in range(b):
        for oy in range(ho):
            for ox in range(wo):
                acc = x.new_zeros(cout)
                for i in range(kh):
                    for j in range(kw):
                        p = i * kw + j
                        y = oy * stride - padding + i * dilation + float(offset[n, 2 * p, oy, ox].detach())
                        xx = ox * stride - padding + j * dilation + float(offset[n, 2 * p + 1, oy, ox].detach())
                        m = 1.0 if mask is None else mask[n, p, oy, ox]
                        acc = acc + weight[:, :, i, j] @ (bilinear(x[n], y, xx) * m)
                out[n, :, oy, ox] = acc + (0 if bias is None else bias)
    return out


def test_hand_made_offset_moves_the_sample_the_expected_way():
    # A 1x1 DCNv1 over a ramp image: dy = +1 must read the row below, dx = +1 the column to the right.
    x = torch.arange(25.0).reshape(1, 1, 5, 5)  # value = 5 * row + col
    conv = DeformConvPack(1, 1, 1)
    torch.nn.init.ones_(conv.weight)
    torch.nn.init.constant_(conv.conv_offset.bias, 0.0)
    assert torch.equal(conv(x), x)  # zero offsets: the plain convolution
    conv.conv_offset.bias.data = torch.tensor([1.0, 0.0])  # channel 0 = dy
    assert torch.equal(conv(x)[0, 0, :4], x[0, 0, 1:])
    conv.conv_offset.bias.data = torch.tensor([0.0, 1.0])  # channel 1 = dx
    assert torch.equal(conv(x)[0, 0, :, :4], x[0, 0, :, 1:])
    conv.conv_offset.bias.data = torch.tensor([0.5, 0.25])  # bilinear in between
    assert torch.allclose(conv(x)[0, 0, 1, 1], torch.tensor(6.0 + 2.5 + 0.25))


@pytest.mark.parametrize("stride", [1, 2])
def test_modulated_pack_matches_the_direct_computation(stride):
    g = torch.Generator().manual_seed(0)
    conv = ModulatedDeformConvPack(3, 4, 3, stride=stride, padding=1).double()
    for p in (conv.weight, conv.bias, conv.conv_offset.weight, conv.conv_offset.bias):
        p.data = torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.7
    x = torch.randn(2, 3, 6, 5, generator=g, dtype=torch.float64)
    out = conv(x)
    # The official split, written out: o1, o2, mask = chunk(conv_offset(x), 3); offset = cat(o1, o2).
    o1, o2, m = torch.chunk(conv.conv_offset(x), 3, dim=1)
    ref = reference_dcn(x, torch.cat((o1, o2), 1), m.sigmoid(), conv.weight, conv.bias, stride, 1)
    assert out.shape == ref.shape == (2, 4, (6 - 1) // stride + 1, (5 - 1) // stride + 1)
    assert torch.allclose(out, ref, atol=1e-10)
    # offsets large enough to leave the image on some points: the zero padding is the official one too
    assert conv.conv_offset(x)[:, :18].abs().max() > 3


def test_dcnv1_matches_the_direct_computation_and_has_the_official_shapes():
    g = torch.Generator().manual_seed(1)
    conv = DeformConvPack(4, 2, 3, padding=1).double()
    assert dict((k, tuple(v.shape)) for k, v in conv.state_dict().items()) == {
        "weight": (2, 4, 3, 3), "conv_offset.weight": (18, 4, 3, 3), "conv_offset.bias": (18,)}
    for p in (conv.weight, conv.conv_offset.weight, conv.conv_offset.bias):
        p.data = torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5
    x = torch.randn(1, 4, 4, 4, generator=g, dtype=torch.float64)
    assert torch.allclose(conv(x), reference_dcn(x, conv.conv_offset(x), None, conv.weight, None, 1, 1), atol=1e-10)


def test_official_parameter_shapes_grouped_and_without_bias():
    # ResNeXt's conv2: groups=64, no bias; conv_offset is not grouped (3 * 9 outputs from all inputs).
    conv = build_conv(dict(type="DCNv2", deformable_groups=1), 256, 256, 3, stride=2, padding=1, groups=64,
                      bias=False)
    shapes = {k: tuple(v.shape) for k, v in conv.state_dict().items()}
    assert shapes == {"weight": (256, 4, 3, 3), "conv_offset.weight": (27, 256, 3, 3), "conv_offset.bias": (27,)}
    assert conv(torch.randn(1, 256, 8, 8)).shape == (1, 256, 4, 4)
    one = build_conv(dict(type="DCNv2"), 128, 256, 1, bias=False)  # the 1x1 conv_pred of the DCN mask head
    assert {k: tuple(v.shape) for k, v in one.state_dict().items()} == {
        "weight": (256, 128, 1, 1), "conv_offset.weight": (3, 128, 1, 1), "conv_offset.bias": (3,)}


def test_fresh_packs_are_plain_convolutions():
    x = torch.randn(1, 8, 7, 7)
    for cfg, scale in ((dict(type="DCN"), 1.0), (dict(type="DCNv2"), 0.5)):
        conv = build_conv(cfg, 8, 4, 3, padding=1, bias=False)
        plain = torch.nn.functional.conv2d(x, conv.weight, padding=1)
        assert torch.allclose(conv(x), scale * plain, atol=1e-5)


def test_gradcheck_double():
    # Analytical gradients of the whole pack (input, weight, bias, and through the offset branch: sample
    # positions and mask) against finite differences.
    g = torch.Generator().manual_seed(2)
    conv = ModulatedDeformConvPack(2, 2, 3, padding=1).double()
    names = [n for n, _ in conv.named_parameters()]
    leaves = [torch.randn(p.shape, generator=g, dtype=torch.float64).mul(0.3).requires_grad_(True)
              for p in conv.parameters()]
    x = torch.randn(1, 2, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)

    def f(x, *params):
        return torch.func.functional_call(conv, dict(zip(names, params)), (x,))

    assert torch.autograd.gradcheck(f, (x, *leaves), eps=1e-6, atol=1e-5)


def test_backward_matches_the_reference():
    # Gradients for input, mask, weight and bias against the hand-written computation (which treats the
    # sample positions as numbers; their gradient is covered by the gradcheck above).
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    offset = torch.randn(1, 18, 4, 5, generator=g, dtype=torch.float64) * 1.5
    mask = torch.rand(1, 9, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    up = torch.randn(1, 3, 4, 5, generator=g, dtype=torch.float64)
    from torchvision.ops import deform_conv2d
    ours = torch.autograd.grad((deform_conv2d(x, offset, weight, bias, padding=1, mask=mask) * up).sum(),
                               (x, mask, weight, bias))
    ref = torch.autograd.grad((reference_dcn(x, offset, mask, weight, bias, 1, 1) * up).sum(), (x, mask, weight, bias))
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, atol=1e-9)


def test_bad_conv_cfg_is_one_line_error():
    with pytest.raises(ValueError, match="unknown; known"):
        build_conv(dict(type="DCNv3"), 4, 4, 3)
    with pytest.raises(ValueError, match="unknown option"):
        build_conv(dict(type="DCNv2", fallback_on_stride=False), 4, 4, 3)
    with pytest.raises(ValueError, match="no bias"):
        build_conv(dict(type="DCN"), 4, 4, 3, bias=True)


def test_resnet_dcn_stages_forward_backward_and_imagenet_weights_without_offsets(tmp_path):
    from solov2.models.backbone import ResNet, ResNeXt, load_pretrained_backbone
    dcn = dict(type="DCNv2", deformable_groups=1, fallback_on_stride=False)
    net = ResNet(50, frozen_stages=-1, norm_eval=False, dcn=dcn, stage_with_dcn=(False, True, True, True))
    assert isinstance(net.layer2[0].conv2, ModulatedDeformConvPack) and net.layer2[0].conv2.stride == (2, 2)
    assert isinstance(net.layer1[0].conv2, torch.nn.Conv2d)
    assert all(not m.conv_offset.weight.any() for m in net.modules() if isinstance(m, ModulatedDeformConvPack))
    outs = net(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape[1:]) for o in outs] == [(256, 16, 16), (512, 8, 8), (1024, 4, 4), (2048, 2, 2)]
    sum(o.mean() for o in outs).backward()
    assert net.layer3[0].conv2.conv_offset.weight.grad.abs().sum() > 0  # offsets learn
    # An ImageNet classifier's checkpoint has no conv_offset: it loads, offsets stay zero; other gaps still fail.
    plain = ResNet(50).state_dict()
    torch.save(plain, tmp_path / "r50.pth")
    fresh = ResNet(50, dcn=dcn, stage_with_dcn=(False, True, True, True))
    load_pretrained_backbone(fresh, str(tmp_path / "r50.pth"))
    assert torch.equal(fresh.layer3[1].conv2.weight, plain["layer3.1.conv2.weight"])
    del plain["layer3.1.conv2.weight"]
    torch.save(plain, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="missing"):
        load_pretrained_backbone(fresh, str(tmp_path / "broken.pth"))
    # DCN in a BasicBlock (R18/34) is refused, as in the official code; ResNeXt groups=1 is a plain ResNet.
    with pytest.raises(ValueError, match="BasicBlock"):
        ResNet(18, dcn=dcn, stage_with_dcn=(False, True, True, True))
    assert ResNeXt(50, groups=1).layer1[0].conv2.weight.shape == (64, 64, 3, 3)
    assert ResNeXt(50, groups=32, base_width=4).layer1[0].conv2.weight.shape == (128, 4, 3, 3)
