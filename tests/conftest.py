"""Shared pytest fixtures."""
from pathlib import Path

import pytest
from cityscapes_fixture import make_tiny_cityscapes


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
