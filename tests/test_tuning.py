"""solov2.inference.tuning: Winograd choices measured once per machine, cached under a machine key, reset on demand, and
the optimized model's results the same as with the fixed rule."""
import json
import os

import pytest
import torch
from torch import nn

import solov2.inference.tuning as tuning
from solov2 import build_model, load_config
from solov2.cli import main
from solov2.inference.optimize import optimize_for_inference
from solov2.inference.winograd import WinogradConv2d, nnpack_available

CONFIG = "configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py"
# ResNet-18 at a 128x160 test scale: a few conv shapes, a quick shape pass.
TINY = {"model.backbone.depth": 18, "model.neck.in_channels": [64, 128, 256, 512],
        "model.transform.test_scale": (160, 128)}

pytestmark = pytest.mark.skipif(not nnpack_available(), reason="this PyTorch has no NNPACK on this CPU")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """Tuning on, into tmp_path, with a fake measurement: Winograd 'wins' for 128 input channels or more. Returns
    the list of measured shapes (one entry per measurement)."""
    monkeypatch.delenv("SOLOV2_TUNE")
    monkeypatch.setenv("SOLOV2_CACHE_DIR", str(tmp_path))
    measured = []

    def fake(cin, cout, h, w):
        measured.append((cin, cout, h, w))
        return {"direct": 1.0, "winograd": 0.5 if cin >= 128 else 2.0}

    monkeypatch.setattr(tuning, "measure_shape", fake)
    monkeypatch.setattr(tuning, "others_busy_cores", lambda: 0.0)  # an idle machine, whatever else runs
    return measured


def _model():
    torch.manual_seed(0)
    return build_model(load_config(CONFIG, TINY)).eval()


def _winograd_convs(model):
    return {name for name, m in model.named_modules() if isinstance(m, WinogradConv2d)}


def test_choices_are_measured_once_cached_and_keyed(cache, tmp_path, caplog):
    model = _model()
    with caplog.at_level("WARNING", logger="solov2.inference.tuning"):
        fast = optimize_for_inference(model)
    assert len(caplog.records) == 1 and "measured Winograd" in caplog.records[0].getMessage()  # one line
    shapes = set(cache)
    assert len(shapes) == len(cache) > 3  # each distinct shape once
    data = json.loads((tmp_path / "tuning.json").read_text())
    key = tuning.machine_key()
    entry = data["machines"][key["id"]]
    assert entry["cpu"] == key["cpu"] and entry["torch"] == torch.__version__
    assert entry["threads"] == torch.get_num_threads() and entry["flags_sha1"] == key["flags_sha1"]
    assert {k: v for k, v in entry["winograd"].items()} == {f"{a}x{b}@{h}x{w}": a >= 128 for a, b, h, w in shapes}
    # the choices are applied: exactly the eligible convs with >= 128 inputs run Winograd, at any map size
    chosen = _winograd_convs(fast)
    assert chosen and all(fast.get_submodule(n).in_channels >= 128 and fast.get_submodule(n).min_pixels == 0
                          for n in chosen)
    assert any(type(m) is nn.Conv2d and m.kernel_size == (3, 3) and m.stride == (1, 1) and m.in_channels < 128
               for m in fast.modules())  # and those with fewer stay direct
    # a second model, in this process or another: read from the cache, nothing measured, nothing logged
    cache.clear()
    caplog.clear()
    with caplog.at_level("WARNING", logger="solov2.inference.tuning"):
        again = optimize_for_inference(_model())
    assert cache == [] and caplog.records == [] and _winograd_convs(again) == chosen
    # another thread count is another machine key: measured anew
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        optimize_for_inference(_model())
        assert len(cache) == len(shapes)
    finally:
        torch.set_num_threads(threads)
    assert len(json.loads((tmp_path / "tuning.json").read_text())["machines"]) == 2


def test_a_busy_machine_measures_nothing_and_caches_nothing(cache, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(tuning, "others_busy_cores", lambda: 1.6)
    model = _model()
    with caplog.at_level("WARNING", logger="solov2.inference.tuning"):
        fast = optimize_for_inference(model)
    assert cache == [] and not (tmp_path / "tuning.json").exists()
    assert len(caplog.records) == 1 and "1.6 of" in caplog.records[0].getMessage()
    # the fixed rule this time: Winograd for the eligible convs with >= 256 inputs only
    assert _winograd_convs(fast) == _winograd_convs(optimize_for_inference(model, tune=False))
    monkeypatch.setattr(tuning, "others_busy_cores", lambda: 0.0)
    optimize_for_inference(model)  # idle again: measured and cached
    assert cache and (tmp_path / "tuning.json").exists()


def test_busy_cores_are_read_from_the_kernel():
    busy = tuning.others_busy_cores(0.05)
    assert 0.0 <= busy <= (os.cpu_count() or 1) + 1e-6


def test_reset_forgets_this_machine(cache, tmp_path, capsys):
    optimize_for_inference(_model())
    n = len(cache)
    assert main(["tune", "--reset"]) == 0
    assert "removed 1 cached tuning entry" in capsys.readouterr().out
    assert json.loads((tmp_path / "tuning.json").read_text())["machines"] == {}
    optimize_for_inference(_model())
    assert len(cache) == 2 * n  # measured again


@pytest.mark.slow  # measures every convolution of a 448x768 network
def test_tune_command_measures_and_prints_the_choices(cache, capsys):
    assert main(["tune", CONFIG, "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "network input 448x768" in out and "Winograd" in out and "direct" in out
    assert len(cache) > 5


@pytest.mark.slow  # real measurements, then three models run
def test_results_equal_the_untuned_model(monkeypatch, tmp_path):
    """Real measurements (whatever they choose): outputs equal the fixed rule's and the plain model's (fp32)."""
    monkeypatch.delenv("SOLOV2_TUNE")
    monkeypatch.setenv("SOLOV2_CACHE_DIR", str(tmp_path))
    model = _model()
    x = torch.randn(1, 3, 128, 160)
    tuned, untuned = optimize_for_inference(model), optimize_for_inference(model, tune=False)
    with torch.inference_mode():
        outs = [m.forward_features(x) for m in (model, untuned, tuned)]
        results = [m([torch.randint(0, 256, (3, 128, 160), dtype=torch.uint8,
                                    generator=torch.Generator().manual_seed(1))]) for m in (untuned, tuned)]
    flat = [[*c, *k, f] for c, k, f in outs]
    for ref, got in ((flat[0], flat[2]), (flat[1], flat[2])):
        for e, a in zip(ref, got):
            torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4 * e.abs().max().item())
    assert torch.equal(results[0][0]["labels"], results[1][0]["labels"])


def test_off_switch_and_damaged_cache(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("SOLOV2_TUNE", "0")
    fixed = optimize_for_inference(_model())
    assert cache == [] and not (tmp_path / "tuning.json").exists()
    assert all(fixed.get_submodule(n).in_channels >= 256 for n in _winograd_convs(fixed))  # the fixed rule
    monkeypatch.delenv("SOLOV2_TUNE")
    (tmp_path / "tuning.json").write_text("{not json")
    optimize_for_inference(_model())  # a damaged cache is measured again, not trusted, and rewritten
    assert cache and json.loads((tmp_path / "tuning.json").read_text())["version"] == tuning.CACHE_VERSION


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("SOLOV2_CACHE_DIR", str(tmp_path / "x"))
    assert tuning.cache_path() == str(tmp_path / "x" / "tuning.json")
    monkeypatch.delenv("SOLOV2_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tuning.cache_path() == str(tmp_path / "xdg" / "solov2" / "tuning.json")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert tuning.cache_path() == str(tmp_path / "home" / ".cache" / "solov2" / "tuning.json")


def test_real_measurement_of_one_shape_is_quick():
    t = tuning.measure_shape(64, 64, 32, 32)
    assert set(t) == {"direct", "winograd"} and all(0 < v < 1 for v in t.values())
