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
