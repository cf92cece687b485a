"""Shared pytest fixtures."""
from pathlib import Path

import pytest

from cityscapes_fixture import make_tiny_cityscapes


@pytest.fixture
def tiny_cityscapes(tmp_path: Path) -> Path:
    """Root of a fresh tiny Cityscapes tree (see tests/cityscapes_fixture.py); tests may modify it."""
    return make_tiny_cityscapes(tmp_path / "cityscapes")
