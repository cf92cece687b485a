"""The package as a user installs it: a wheel (configs inside), installed into a folder of its own and used from an
empty folder outside the repository, finds its packaged configs by name and runs the demo."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from solov2.config import CONFIG_DIR, packaged_configs

ROOT = Path(__file__).resolve().parents[1]


def test_the_repositorys_configs_are_the_packaged_ones():
    """One source of truth: the repository's configs/ is a link to the package's configs."""
    assert (ROOT / "configs").resolve() == CONFIG_DIR
    names = packaged_configs()
    assert "solov2_light_448_r50_fpn_2gpu_3x" in names and "solov2_light_r18_shapes" in names
    assert not any("_base_" in str(p) for p in names.values())


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel of this checkout, installed with `pip install --target` (no dependencies: the test's own
    environment has them)."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(work / "dist")], check=True, cwd=work)
    wheel = next((work / "dist").glob("solov2-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(work / "site"),
                    str(wheel)], check=True, cwd=work)
    empty = work / "elsewhere"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(work / "site")}
    return wheel, empty, env


def _run(args, cwd, env, timeout=600):
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_the_wheel_carries_every_config(installed):
    wheel, _, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n for n in archive.namelist() if n.startswith("solov2/configs/")}
    expected = {"solov2/" + p.relative_to(CONFIG_DIR.parent).as_posix() for p in CONFIG_DIR.rglob("*.py")}
    assert expected and expected <= shipped


@pytest.mark.slow
def test_installed_package_works_from_an_empty_folder(installed):
    _, empty, env = installed
    where = _run(["-c", "import solov2; print(solov2.__file__)"], empty, env)
    assert where.returncode == 0 and str(empty.parent / "site") in where.stdout, where
    listed = _run(["-m", "solov2.cli", "configs"], empty, env)
    assert listed.returncode == 0 and "solov2_light_448_r50_fpn_2gpu_3x" in listed.stdout, listed.stderr
    demo = _run(["-m", "solov2.cli", "demo", "--train-images", "16", "--val-images", "4", "--cfg-options",
                 "total_epochs=1"], empty, {**env, "SOLOV2_AMP": "0"})
    assert demo.returncode == 0, demo.stderr[-2000:]
    metrics = json.loads((empty / "runs/demo/metrics.json").read_text())
    assert "mask_AP" in metrics and "demo: mask AP" in demo.stdout
    assert "demo: fp32 on this CPU (no native bf16): ResNet-18 at half width" in demo.stdout
    data = empty / "shapes"
    assert _run(["-m", "solov2.cli", "make-shapes", str(data), "--num-images", "4", "--image-size", "64"],
                empty, env).returncode == 0
    report = _run(["-m", "solov2.cli", "check-data", "solov2_light_448_r18_fpn_3x", "--out", "report",
                   "--cfg-options", "data.train.ann_file=shapes/annotations.json",
                   "data.train.img_prefix=shapes/images"], empty, env)
    assert report.returncode == 0, report.stderr
    assert "instances" in report.stdout and (empty / "report/data_report.png").is_file()
