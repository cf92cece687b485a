"""solov2.benchmark: a tiny CPU run returns every figure, all positive, and counts what the model detects."""
import json

import pytest

from solov2.benchmark import main, run_benchmark, summarize, time_interleaved

CONFIG = "configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py"
# ResNet-18 and a 128x160 test scale keep the run to a few seconds.
TINY = {"model.backbone.depth": 18, "model.neck.in_channels": [64, 128, 256, 512],
        "model.transform.test_scale": (160, 128)}
STAT_KEYS = {"median_ms", "p90_ms", "mean_ms", "images_per_s", "peak_memory_mb"}


def test_run_benchmark_cpu_tiny():
    report = run_benchmark(CONFIG, input_size=(128, 160), batch=2, iters=2, warmup=1, overrides=TINY,
                           num_threads=1, verbose=False)
    assert {"config", "device", "input_size", "network_input", "batch", "iters", "results"} <= set(report)
    assert report["network_input"] == [2, 3, 128, 160]
    assert set(report["results"]) == {"network_fp32", "end_to_end_fp32"}
    for mode, stats in report["results"].items():
        assert STAT_KEYS <= set(stats), mode
        assert all(stats[k] > 0 for k in STAT_KEYS), (mode, stats)
        assert stats["p90_ms"] >= stats["median_ms"]
    # random weights: the category prior (0.01) is below score_thr, so nothing is detected
    assert report["results"]["end_to_end_fp32"]["detections_per_image"] == 0


@pytest.fixture(scope="module")
def detecting_checkpoint(tmp_path_factory):
    """TINY with every cell scoring sigmoid(2) for every class: many detections; carries its config."""
    import torch
    from solov2 import build_model, load_config
    from solov2.checkpoint_config import checkpoint_meta
    from solov2.engine.checkpoint import save_checkpoint
    cfg = load_config(CONFIG, TINY)
    torch.manual_seed(0)
    model = build_model(cfg)
    torch.nn.init.constant_(model.bbox_head.solo_cate.bias, 2.0)
    path = tmp_path_factory.mktemp("bench") / "model.pth"
    save_checkpoint(str(path), model, meta=checkpoint_meta(cfg, [f"c{i}" for i in range(8)], list(range(8))))
    return str(path)


def _detections(checkpoint, batch, seed=0):
    """Detections per image of the checkpoint's model on the images run_benchmark draws (same seed, same order)."""
    import torch
    from solov2.checkpoint_config import resolve_model
    from solov2.predictor import load_model
    torch.manual_seed(seed)
    resolved = resolve_model(checkpoint, None, None)
    model, _ = load_model(resolved.cfg, resolved.ckpt)
    images = [torch.randint(0, 256, (3, 128, 160), dtype=torch.uint8) for _ in range(batch)]
    with torch.inference_mode():
        return sum(len(r["scores"]) for r in model(images)) / batch


def test_detections_per_image_are_the_models_also_optimized(detecting_checkpoint, monkeypatch):
    import solov2.predictor
    expected = _detections(detecting_checkpoint, batch=2)
    assert expected > 0
    plain = run_benchmark(detecting_checkpoint, input_size=(128, 160), batch=2, iters=1, warmup=0, verbose=False)
    assert plain["results"]["end_to_end_fp32"]["detections_per_image"] == expected
    optimized, original = [], solov2.predictor.optimize_for_inference
    monkeypatch.setattr(solov2.predictor, "optimize_for_inference", lambda m: optimized.append(m) or original(m))
    report = run_benchmark(detecting_checkpoint, input_size=(128, 160), batch=2, iters=1, warmup=0, optimize=True,
                           verbose=False)
    assert len(optimized) == 1 and report["optimize"] is True  # the optimized model is the one timed
    assert report["results"]["network_fp32"]["median_ms"] > 0
    # and it finds what the model as built finds (results equal up to float rounding)
    assert report["results"]["end_to_end_fp32"]["detections_per_image"] == expected


def test_fp16_needs_cuda():
    with pytest.raises(ValueError, match="CUDA"):
        run_benchmark(CONFIG, fp16=True, overrides=TINY, verbose=False)


def test_main_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main([CONFIG, "--input-size", "128", "160", "--iters", "1", "--warmup", "0", "--json", str(out),
               "--cfg-options", "model.backbone.depth=18", "model.neck.in_channels=[64,128,256,512]",
               "model.transform.test_scale=(160,128)"])
    assert rc == 0
    assert "end_to_end_fp32" in capsys.readouterr().out
    assert json.loads(out.read_text())["results"]["network_fp32"]["images_per_s"] > 0


def test_main_reports_bad_config(capsys):
    assert main(["does/not/exist.py"]) == 2
    assert "not found" in capsys.readouterr().err


def test_time_interleaved_and_summarize():
    calls = []
    times = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, iters=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then rotating order
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    stats = summarize([0.1, 0.2, 0.3, 0.4, 1.0], images_per_call=2)
    assert stats["median_ms"] == pytest.approx(300)
    assert stats["p90_ms"] == pytest.approx(1000)
    assert stats["images_per_s"] == pytest.approx(2 / 0.3)


def test_benchmark_from_a_checkpoint_alone(tmp_path):
    """A checkpoint of `solov2 train` carries its config: no config file is needed."""
    from solov2 import build_model, load_config
    from solov2.checkpoint_config import checkpoint_meta
    from solov2.engine.checkpoint import save_checkpoint
    cfg = load_config(CONFIG, TINY)
    path = tmp_path / "model.pth"
    save_checkpoint(str(path), build_model(cfg), meta=checkpoint_meta(cfg, [f"c{i}" for i in range(8)], list(range(8))))
    report = run_benchmark(str(path), input_size=(128, 160), iters=1, warmup=0, verbose=False)
    assert report["network_input"] == [1, 3, 128, 160] and report["checkpoint"] == str(path)
    assert report["results"]["end_to_end_fp32"]["median_ms"] > 0
