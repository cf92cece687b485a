"""Shared pytest fixtures."""
import os
from pathlib import Path

import pytest
from filelock import FileLock
from cityscapes_fixture import make_tiny_cityscapes
from helpers import TINY_SHAPES, TRAINED_DATA, TRAINED_WIDTH


def pytest_configure(config):
    """Under pytest-xdist, each worker (and every process it starts) gets its share of the cores as torch threads.
    Two workers at torch's default of one thread per core ran 2 x 2 OpenMP threads on 2 cores: the spinning
    threads of one worker took the cores from the other's, and ``make test`` took 10.6 min instead of 7.5."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        import torch

        from solov2.distributed import usable_cpu_cores

        threads = max(1, usable_cpu_cores() // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # the subprocesses that tests start
        torch.set_num_threads(threads)


@pytest.fixture
def tiny_cityscapes(tmp_path: Path) -> Path:
    """Root of a fresh tiny Cityscapes tree (see tests/cityscapes_fixture.py); tests may modify it."""
    return make_tiny_cityscapes(tmp_path / "cityscapes")


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """No test downloads anything: fetching ImageNet weights fails as it would offline."""
    import urllib.error

    import torch

    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError(f"tests never download ({url})")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture(autouse=True)
def fp32_training_by_default(monkeypatch):
    """Training in tests is fp32 unless a test asks for --amp: the default precision depends on the CPU
    (bf16 where it is native, solov2.precision.default_amp), and a test's figures must not. The environment
    variable reaches the training processes that tests start too."""
    monkeypatch.setenv("SOLOV2_AMP", "0")


@pytest.fixture(autouse=True, scope="session")
def fp32_inference_by_default():
    """Inference in tests (Predictor, predict, eval, benchmark) resolves precision "auto" to fp32, for the same
    reason: "auto" is bf16 on CPUs with native bf16 (solov2.precision.resolve_precision). Session-wide, so that
    module-scoped fixtures see it too; tests of "auto" itself delete it with their own monkeypatch."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOLOV2_PRECISION", "fp32")
        yield


@pytest.fixture(autouse=True, scope="session")
def no_tuning_by_default(tmp_path_factory):
    """The optimized model's Winograd choices are measured per machine (solov2.inference.tuning): timing-dependent, so
    tests use the fixed rule (SOLOV2_TUNE=0), and the cache lives in a temporary folder, never ~/.cache. Tests
    of tuning delete SOLOV2_TUNE and point SOLOV2_CACHE_DIR at their own tmp_path."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOLOV2_TUNE", "0")
        patch.setenv("SOLOV2_CACHE_DIR", str(tmp_path_factory.mktemp("solov2_cache")))
        yield


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory) -> Path:
    """``latest.pth`` of tests/data/tiny_shapes.py at the demo's fp32 CPU width (ResNet-18 at half width,
    channels_last) trained for 70 iterations (AdamW, batch 8) on the 8 synthetic 128x128 images of
    ``TRAINED_DATA``, which are also its val and test sets: a model that finds the shapes of its training images
    (mask AP 0.449 there; 0.444 at full width, in twice the time). Trained once per test session and shared
    (tests/test_cli.py, test_serve.py, test_serve_browser.py, test_quantize.py); tests read it and write
    elsewhere. fp32 (SOLOV2_AMP=0) as every test's training: the function-scoped fixture that sets it is not
    active yet when a session fixture runs."""
    # Under pytest-xdist (make test runs two workers) the workers share the parent of their temp folders: the first
    # to take the lock trains, the other waits and reuses the checkpoint.
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return _train_tiny(tmp_path_factory.mktemp("trained_tiny"))
    work = tmp_path_factory.getbasetemp().parent / "trained_tiny"
    with FileLock(str(work) + ".lock"):
        if not (work / "latest.pth").exists():
            _train_tiny(work)
    return work / "latest.pth"


def _train_tiny(work: Path) -> Path:
    from solov2.cli import main
    data = repr(TRAINED_DATA)
    size = TRAINED_DATA["image_size"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOLOV2_AMP", "0")
        assert main(["train", str(TINY_SHAPES), "--work-dir", str(work), "--device", "cpu", "--cfg-options",
                     f"data.train={data}", f"data.val={data}", f"data.test={data}", "data.imgs_per_gpu=8",
                     f"model.transform.train_scales=[({size}, {size})]", f"model.transform.test_scale=({size}, {size})",
                     "evaluation.interval=-1",
                     "checkpoint_config.interval=1000",  # 1 iteration per epoch: no checkpoint per epoch
                     *(f"{k}={v}" for k, v in TRAINED_WIDTH.items()), "channels_last=True",
                     "max_iters=70", "optimizer={'type': 'AdamW', 'lr': 0.002, 'weight_decay': 0.0001}",
                     "lr_config.step=[1000]", "total_epochs=1000", "lr_config.warmup_iters=10"]) == 0
    return work / "latest.pth"
