"""Where a CPU training step's time goes: convolutions (forward, backward) against everything else, and whether
NNPACK's Winograd could make the step's 3x3 convolutions cheaper.

    python benchmarks/train_step_profile.py --model seed     # light R50, 2 images of 448x768, stem + layer1 frozen
    python benchmarks/train_step_profile.py --model demo     # the demo's network, 8 images of 128x128, channels_last
    python benchmarks/train_step_profile.py --model seed --winograd

The step is ``solov2 train``'s: ``model(images, targets)``, backward, gradient clipping (max norm 35) and the SGD
that :func:`solov2.engine.trainer.build_optimizer` builds, on built-in shapes images (the batches of
``benchmarks/mmdet_compare/train_step.py``, so its figures and these describe the same step). It prints the
median step time and torch.profiler's CPU time per group of operators over one step.

``--winograd`` also times, for every 3x3 stride-1 convolution the step runs with autograd (shapes recorded from
the network at the step's batch), the three convolutions that training does per layer, forward, gradient of the
input and gradient of the weights, with oneDNN and the first two with NNPACK's Winograd F(6x6, 3x3) (the input's
gradient of a 3x3 stride-1 convolution is a 3x3 convolution of the output's gradient with the flipped,
transposed weights). The total says what the step would save if every such convolution took the faster of the two.
"""
from __future__ import annotations

import argparse
from collections import Counter, defaultdict

import torch
from torch import nn

from solov2 import build_model, load_config

MODELS = {
    "seed": dict(config="solov2_light_448_r50_fpn_2gpu_3x", size=(448, 768), batch=2, channels_last=False,
                 opts=[]),
    "demo": dict(config="solov2_light_r18_shapes", size=(128, 128), batch=8, channels_last=True,
                 opts=["model.backbone.frozen_stages=-1", "model.backbone.norm_eval=False"]),
}
GROUPS = {"aten::convolution_backward": "convolution backward", "aten::mkldnn_convolution": "convolution forward",
          "aten::_nnpack_spatial_convolution": "convolution forward"}


def build(name: str):
    from solov2.data.synthetic import SyntheticShapes
    spec = MODELS[name]
    h, w = spec["size"]
    cfg = load_config(spec["config"], [f"model.transform.train_scales=[({max(h, w)}, {min(h, w)})]",
                                       "model.pretrained=None", *spec["opts"]])
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    if spec["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    data = SyntheticShapes(spec["batch"], seed=0, image_size=(h, w))
    images, targets = [], []
    for i in range(spec["batch"]):
        image, t = data[i]
        images.append(image)
        targets.append({"masks": t["masks"], "labels": t["labels"] % cfg.model.bbox_head.num_classes})
    return model, images, targets


def make_step(model: nn.Module, images, targets):
    from solov2.engine.trainer import build_optimizer
    optimizer = build_optimizer(model, dict(type="SGD", lr=1e-4, momentum=0.9, weight_decay=1e-4))

    def step():
        losses = model(images, targets)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], max_norm=35)
        optimizer.step()
    return step


def time_split(step) -> None:
    from torch.profiler import ProfilerActivity, profile
    median = median_ms(step, runs=5, warmup=2)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    groups: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        groups[GROUPS.get(event.key, "everything else")] += event.self_cpu_time_total / 1e3
    total = sum(groups.values())
    print(f"step: {median:.0f} ms median of 5; profiled step {total:.0f} ms of CPU time:")
    for name, ms in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<22}{ms:8.0f} ms  {100 * ms / total:5.1f} %")


def conv_shapes(model: nn.Module, step) -> Counter:
    """(in, out, H, W, batch) -> how many 3x3 stride-1 convolutions of that shape one step runs with autograd."""
    from solov2.inference.winograd import winograd_eligible
    shapes: Counter = Counter()

    def record(conv, inputs, _output):
        x = inputs[0]
        if torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad):
            shapes[(conv.in_channels, conv.out_channels, x.shape[-2], x.shape[-1], x.shape[0])] += 1
    hooks = [m.register_forward_hook(record) for m in model.modules() if winograd_eligible(m)]
    step()
    for hook in hooks:
        hook.remove()
    return shapes


def median_ms(fn, runs: int = 5, warmup: int = 1) -> float:
    from solov2.apps.benchmark import summarize, time_interleaved
    return summarize(time_interleaved({"fn": fn}, runs, warmup)["fn"])["median_ms"]


def winograd_table(shapes: Counter) -> None:
    from solov2.inference.winograd import nnpack_available
    if not nnpack_available():
        print("NNPACK is not available in this PyTorch build")
        return
    print("3x3 stride-1 convolutions of one step, ms (oneDNN / NNPACK Winograd):")
    direct_total = best_total = 0.0
    for (cin, cout, h, w, b), count in sorted(shapes.items(), key=lambda kv: -kv[0][2] * kv[0][3]):
        x, grad = torch.randn(b, cin, h, w), torch.randn(b, cout, h, w)
        weight = torch.randn(cout, cin, 3, 3) * 0.05
        flipped = weight.flip(2, 3).transpose(0, 1).contiguous()

        def backward(mask):
            return torch.ops.aten.convolution_backward(grad, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0],
                                                       1, mask)
        fwd = median_ms(lambda: torch.nn.functional.conv2d(x, weight, padding=1))
        bwd_in = median_ms(lambda: backward([True, False, False]))
        bwd_w = median_ms(lambda: backward([False, True, False]))
        win_fwd = median_ms(lambda: torch._nnpack_spatial_convolution(x, weight, None, [1, 1], [1, 1]))
        win_in = median_ms(lambda: torch._nnpack_spatial_convolution(grad, flipped, None, [1, 1], [1, 1]))
        direct_total += count * (fwd + bwd_in + bwd_w)
        best_total += count * (min(fwd, win_fwd) + min(bwd_in, win_in) + bwd_w)
        print(f"  {cin:4d}->{cout:<4d} {h:4d}x{w:<4d} batch {b} x{count}: forward {fwd:6.1f} / {win_fwd:6.1f}   "
              f"input grad {bwd_in:6.1f} / {win_in:6.1f}   weight grad {bwd_w:6.1f}")
    print(f"  all of them: {direct_total:.0f} ms with oneDNN, {best_total:.0f} ms taking the faster of the two "
          f"for each forward and input gradient ({direct_total - best_total:.0f} ms saved)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=list(MODELS), default="seed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--winograd", action="store_true", help="also time each 3x3 convolution with Winograd")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, images, targets = build(args.model)
    step = make_step(model, images, targets)
    spec = MODELS[args.model]
    print(f"{args.model}: {spec['batch']} images of {spec['size'][0]}x{spec['size'][1]}, fp32, {args.threads} threads, "
          f"torch {torch.__version__}")
    time_split(step)
    if args.winograd:
        winograd_table(conv_shapes(model, step))


if __name__ == "__main__":
    main()
