"""The command line's options: one spelling per idea, defaults shown, one-line errors (no training runs)."""
import argparse
import json
import logging

import pytest
import torch
from helpers import ROOT

from solov2.cli import build_parser, main
from solov2.errors import one_line

TINY = str(ROOT / "tests/data/tiny_shapes.py")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_subcommand_dispatches_through_its_parser():
    commands = _subcommands(build_parser())
    assert {"train", "eval", "predict", "demo", "make-shapes", "cityscapes-to-coco", "check-data",
            "labelme-to-coco", "export", "quantize", "convert", "benchmark", "tune", "configs",
            "serve"} == set(commands)
    assert all(callable(sub.get_default("func")) for sub in commands.values())


@pytest.mark.parametrize("name", sorted(_subcommands(build_parser())))
def test_every_argument_is_described_and_every_default_shown(name):
    sub = _subcommands(build_parser())[name]
    formatter = sub._get_formatter()
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        assert action.help, f"solov2 {name}: {action.option_strings or action.dest} has no description"
        flag = action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)
        if action.option_strings and action.default is not None and not flag:
            assert "default" in formatter._get_help_string(action), (name, action.option_strings)


def test_help_shows_the_default_values():
    commands = _subcommands(build_parser())
    predict = " ".join(commands["predict"].format_help().split())
    assert "(default: 0.3)" in predict and "(default: runs/predict)" in predict and "(default: auto)" in predict
    assert "(default: a square of the test scale" in " ".join(commands["export"].format_help().split())
    assert "(default: 200)" in " ".join(commands["make-shapes"].format_help().split())


def test_predict_save_json_can_be_turned_off():
    parser = build_parser()
    assert parser.parse_args(["predict", "ckpt.pth", "x.png"]).save_json is True
    assert parser.parse_args(["predict", "ckpt.pth", "x.png", "--no-save-json"]).save_json is False


@pytest.mark.parametrize("size, expected", [(["40"], (40, 40)), (["32", "48"], (32, 48))])
def test_image_size_takes_one_side_or_h_w(tmp_path, capsys, size, expected):
    # make-shapes and demo read --image-size the same way (demo: tested through the parser below)
    out = tmp_path / "shapes"
    assert main(["make-shapes", str(out), "--num-images", "1", "--image-size", *size]) == 0
    images = json.loads((out / "annotations.json").read_text())["images"]
    assert (images[0]["height"], images[0]["width"]) == expected
    demo = build_parser().parse_args(["demo", "--image-size", *size])
    assert demo.image_size == [int(s) for s in size]
    assert main(["make-shapes", str(out), "--image-size", "1", "2", "3"]) == 1
    assert capsys.readouterr().err.strip() == "error: --image-size: give one size (square) or H W, got 3 numbers"


def test_device_cuda_without_cuda_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", TINY, "--device", "cuda", "--cfg-options", "max_iters=1"]) == 1
    err = capsys.readouterr().err
    assert err == "error: --device cuda: CUDA is not available on this machine; use --device cpu\n"
    from solov2.engine.launch import resolve_device
    assert resolve_device(None) == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="--device cuda:1: CUDA is not available"):
        resolve_device("cuda:1")


@pytest.mark.parametrize("launcher", ["pytorch", "torchrun"])
def test_train_accepts_mmdetections_launcher_name(monkeypatch, launcher):
    import solov2.engine.launch as launch
    started = []
    monkeypatch.setattr(launch, "_train_worker", lambda rank, world, opts: started.append((rank, world)) or {})
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert main(["train", TINY, "--device", "cpu", "--launcher", launcher]) == 0
    assert started == [(1, 4)]  # one process of the torchrun job, with the job's rank and size


def test_benchmark_speaks_precision_like_predict(monkeypatch):
    import solov2.apps.benchmark as benchmark
    calls = []
    monkeypatch.setattr(benchmark, "run_benchmark", lambda *a, **kw: calls.append(kw) or {})
    for argv in (["--precision", "bf16"], ["--precision", "fp32", "bf16", "fp16"], []):
        assert main(["benchmark", TINY, *argv]) == 0
    assert [kw["precisions"] for kw in calls] == [["bf16"], ["fp32", "bf16", "fp16"], ["auto"]]
    with pytest.raises(SystemExit):  # the former hidden spelling is gone
        main(["benchmark", TINY, "--bf16"])


def test_convert_takes_strict_and_allow_pickle(tmp_path, capsys):
    from solov2 import build_model, load_config
    from solov2.checkpoint.convert import convert_to_source
    model = build_model(load_config(TINY))
    theirs, _ = convert_to_source(model.state_dict(), "mmdet")
    theirs["bbox_head.extra_layer.weight"] = torch.zeros(1)
    path, out = tmp_path / "mmdet.pth", tmp_path / "ours.pth"
    torch.save({"state_dict": theirs, "meta": {"cfg": argparse.Namespace(lr=0.01)}}, path)  # a pickled object
    assert main(["convert", "--from", "mmdet", str(path), str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: cannot read checkpoint (Weights only load failed.") and err.count("\n") == 1
    assert "retry with allow_pickle=True (--allow-pickle)" in err  # the flag that the message names exists:
    with pytest.warns(UserWarning, match="1 key"):
        assert main(["convert", "--from", "mmdet", str(path), str(out), "--allow-pickle"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out} (1 key(s) not mapped)"
    assert main(["convert", "--from", "mmdet", str(path), str(tmp_path / "strict.pth"), "--allow-pickle",
                 "--strict"]) == 1
    assert "bbox_head.extra_layer.weight" in capsys.readouterr().err and not (tmp_path / "strict.pth").exists()


def test_one_line_keeps_the_line_that_says_what_went_wrong():
    assert one_line(ValueError("x.json: invalid\n  details")) == "x.json: invalid"  # the reason comes first
    assert one_line(ValueError("\x1b[1mbold\x1b[0m  reason")) == "bold reason"  # torch.load's colour codes
    assert one_line(KeyError()) == "KeyError"
    worker = "\n\n-- Process 1 terminated:\nTraceback (most recent call last):\n  File ...\nmod.Err: bad input\n"
    assert one_line(RuntimeError(worker)) == "mod.Err: bad input"  # a spawned worker's traceback: its last line


def test_amp_says_which_precision_it_uses(caplog):
    from mmengine.config import Config

    from solov2.engine.trainer import Trainer
    trainer = Trainer.__new__(Trainer)  # only the set-up line, no data or model
    trainer.cfg = Config({"optimizer": {"lr": 0.01}, "data": {"imgs_per_gpu": 2}})
    trainer.world, trainer.accumulate, trainer.base_lr, trainer.max_iters = 1, 1, 0.01, 10
    with caplog.at_level(logging.INFO, logger="solov2"):
        for device, amp in (("cpu", True), ("cuda", True), ("cpu", False)):
            trainer.device, trainer.amp = device, amp
            trainer._log_setup(2)
    assert [("bf16 autocast" in r.message, "fp16 autocast" in r.message, ", fp32," in r.message)
            for r in caplog.records] == [(True, False, False), (False, True, False), (False, False, True)]


def test_every_command_takes_the_same_device_spellings(capsys):
    from solov2.cli import build_parser
    parser = build_parser()
    for command in (["train", "c.py"], ["eval", "x.pth"], ["predict", "x.pth", "in"], ["demo"],
                    ["benchmark", "c.py"]):
        for device in ("cpu", "cuda", "cuda:1"):
            assert parser.parse_args([*command, "--device", device]).device == device
        with pytest.raises(SystemExit):
            parser.parse_args([*command, "--device", "gpu1"])
        assert "expected cpu, cuda or cuda:N" in capsys.readouterr().err


def test_optimize_is_on_everywhere_and_spelled_one_way():
    from solov2.cli import build_parser
    parser = build_parser()
    for command in (["eval", "x.pth"], ["predict", "x.pth", "in"], ["benchmark", "c.py"]):
        assert parser.parse_args(command).optimize is True
        assert parser.parse_args([*command, "--no-optimize"]).optimize is False
    assert parser.parse_args(["eval", "x.pth"]).precision == "fp32"  # training evaluates in fp32


def test_several_processes_refuse_one_named_gpu(monkeypatch, capsys):
    import solov2.engine.launch as launch
    monkeypatch.setattr(launch, "resolve_device", lambda device: device)  # as if CUDA were there
    assert main(["train", TINY, "--device", "cuda:1", "--gpus", "2"]) == 1
    assert "CUDA_VISIBLE_DEVICES" in capsys.readouterr().err


@pytest.mark.parametrize("omp, expected", [(None, 1), ("2", 2)])
def test_the_command_caps_torch_threads_at_the_usable_cores(monkeypatch, capsys, omp, expected):
    """In a container whose CPU quota is below the cores torch sees, every command runs as many threads as the
    quota gives; a user's OMP_NUM_THREADS is left alone."""
    import solov2.distributed
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setattr(solov2.distributed, "usable_cpu_cores", lambda: 1)
        if omp is None:
            monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        else:
            monkeypatch.setenv("OMP_NUM_THREADS", omp)
        assert main(["configs"]) == 0
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)
