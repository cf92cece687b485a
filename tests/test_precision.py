"""Training's default precision: bf16 autocast only where the CPU computes bf16 natively."""
import pytest
import torch

import solov2.precision as precision
from solov2.precision import amp_dtype, autocast_dtype, precision_autocast


@pytest.mark.parametrize("native, device, expected", [(True, "cpu", True), (False, "cpu", False),
                                                      (True, "cuda", False)])
def test_default_amp_is_bf16_only_on_cpus_with_native_bf16(monkeypatch, native, device, expected):
    monkeypatch.delenv("SOLOV2_AMP")  # conftest sets it to 0 for every test
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert precision.default_amp(device) is expected


def test_the_environment_sets_the_default(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setenv("SOLOV2_AMP", "0")
    assert precision.default_amp("cpu") is False
    monkeypatch.setenv("SOLOV2_AMP", "1")
    assert precision.default_amp("cuda") is True


def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch, tmp_path):
    import builtins
    real_open = builtins.open
    for flags, expected in (("fpu sse avx512f avx512_bf16 amx_tile", True), ("fpu sse avx2", False)):
        info = tmp_path / "cpuinfo"
        info.write_text(f"flags\t\t: {flags}\n")
        monkeypatch.setattr(builtins, "open",
                            lambda p, *a, **k: real_open(info if p == "/proc/cpuinfo" else p, *a, **k))
        assert precision.cpu_has_native_bf16() is expected


def test_train_main_resolves_the_default_before_starting(monkeypatch, tmp_path):
    from solov2.engine import launch
    seen = {}
    monkeypatch.setattr(launch, "_train_worker", lambda rank, world, opts: seen.update(opts) or {})
    monkeypatch.setattr(precision, "default_amp", lambda device: device == "cpu")
    launch.train_main("configs/demo/solov2_light_r18_shapes.py", work_dir=str(tmp_path), device="cpu")
    assert seen["amp"] is True
    launch.train_main("configs/demo/solov2_light_r18_shapes.py", work_dir=str(tmp_path), device="cpu", amp=False)
    assert seen["amp"] is False


def test_autocast_dtypes():
    assert amp_dtype("cpu") is torch.bfloat16 and amp_dtype("cuda") is torch.float16
    assert autocast_dtype("fp32", "cpu") is None
    with pytest.raises(ValueError, match="needs a CUDA device"):
        autocast_dtype("fp16", "cpu")
    with precision_autocast(torch.bfloat16, "cpu"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.bfloat16


@pytest.mark.parametrize("native, device, backend, expected", [
    (True, "cpu", "torch", "bf16"), (False, "cpu", "torch", "fp32"), (True, "cuda", "torch", "fp32"),
    (True, "cpu", "onnxruntime", "fp32")])
def test_auto_inference_precision_is_bf16_only_where_native(monkeypatch, native, device, backend, expected):
    monkeypatch.delenv("SOLOV2_PRECISION")  # conftest sets it to fp32 for every test
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert precision.resolve_precision("auto", device, backend) == expected
    assert precision.resolve_precision("fp32", device, backend) == "fp32"  # the one switch away
    assert autocast_dtype("auto", device) is (torch.bfloat16 if expected == "bf16" or
                                              (native and device == "cpu") else None)


def test_the_environment_sets_what_auto_means(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setenv("SOLOV2_PRECISION", "fp32")
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setenv("SOLOV2_PRECISION", "bf16")
    assert precision.resolve_precision("auto", "cpu", "onnxruntime") == "bf16"  # the Predictor then refuses it
    assert precision.resolve_precision("fp32", "cpu") == "fp32"


def test_predictor_and_commands_default_to_auto(monkeypatch):
    import inspect

    from solov2 import Predictor
    from solov2.apps.evaluate import eval_main
    from solov2.apps.predict import predict_main
    from solov2.cli import build_parser
    for fn in (Predictor.__init__, predict_main):
        assert inspect.signature(fn).parameters["precision"].default == "auto", fn
    # eval evaluates what training evaluated (fp32) unless asked for another precision
    assert inspect.signature(eval_main).parameters["precision"].default == "fp32"
    parser = build_parser()
    assert parser.parse_args(["eval", "x.pth"]).precision == "fp32"
    assert parser.parse_args(["eval", "x.pth", "--precision", "auto"]).precision == "auto"
    assert parser.parse_args(["predict", "x.pth", "a.png"]).precision == "auto"
    assert parser.parse_args(["eval", "x.pth", "--precision", "fp32"]).precision == "fp32"


def test_a_precision_emulated_on_this_cpu_is_said_in_one_line_once(monkeypatch, caplog):
    monkeypatch.setattr(precision, "_warned", set(), raising=False)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    line = "warning: bf16 is emulated on this CPU (no AVX512-BF16/AMX): slower than fp32"
    assert precision.resolve_precision("bf16", "cpu") == "bf16"
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16  # the Predictor resolves twice: still one line
    assert [r.getMessage() for r in caplog.records] == [line]
    monkeypatch.setenv("SOLOV2_PRECISION", "bf16")  # "auto" made bf16 by the environment: emulated all the same
    monkeypatch.setattr(precision, "_warned", set(), raising=False)
    assert precision.resolve_precision("auto", "cpu") == "bf16"
    assert [r.getMessage() for r in caplog.records] == [line, line]
    caplog.clear()
    monkeypatch.setattr(precision, "_warned", set(), raising=False)
    for name, backend in (("fp32", "torch"), ("bf16", "openvino")):
        precision.resolve_precision(name, "cpu", backend)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    precision.resolve_precision("bf16", "cpu")
    assert caplog.records == []


def test_predictor_and_eval_say_that_bf16_is_emulated(monkeypatch, caplog, tmp_path):
    from solov2 import Predictor, build_model, load_config
    from solov2.checkpoint.io import save_checkpoint
    from solov2.cli import main
    tiny = "tests/data/tiny_shapes.py"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    line = "warning: bf16 is emulated on this CPU (no AVX512-BF16/AMX): slower than fp32"
    monkeypatch.setattr(precision, "_warned", set(), raising=False)
    Predictor(tiny, precision="bf16")
    assert [r.getMessage() for r in caplog.records] == [line]
    caplog.clear()
    monkeypatch.setattr(precision, "_warned", set(), raising=False)
    checkpoint = str(tmp_path / "model.pth")
    save_checkpoint(checkpoint, build_model(load_config(tiny)), meta={})
    assert main(["eval", tiny, checkpoint, "--precision", "bf16", "--cfg-options", "data.test.num_images=1"]) == 0
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [line]


def test_train_amp_on_a_cpu_without_native_bf16_says_so(monkeypatch, caplog, tmp_path):
    from solov2.engine import launch
    monkeypatch.setattr(launch, "_train_worker", lambda rank, world, opts: {})
    monkeypatch.setattr(precision, "_warned", set(), raising=False)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    launch.train_main("configs/demo/solov2_light_r18_shapes.py", work_dir=str(tmp_path), device="cpu", amp=False)
    assert caplog.records == []
    launch.train_main("configs/demo/solov2_light_r18_shapes.py", work_dir=str(tmp_path), device="cpu", amp=True)
    assert [r.getMessage() for r in caplog.records] == [
        "warning: bf16 is emulated on this CPU (no AVX512-BF16/AMX): slower than fp32"]
