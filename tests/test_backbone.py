"""ImageNet weights: torchvision:// names through the torch hub cache, loaded only when training starts from
scratch of the detector; without them every backbone layer trains. Nothing here touches the network: the
download function is replaced in every test (see also conftest.py)."""
import logging
import os
import urllib.error

import pytest
import torch
import torchvision
from helpers import ROOT, SEED_CONFIG

from solov2 import build_model, load_config
from solov2.models import init_backbone_for_training
from solov2.models.backbone import TORCHVISION_ARCHS, ResNet, torchvision_weights_file

R18 = {"model.backbone.depth": 18, "model.neck.in_channels": [64, 128, 256, 512]}


def _offline(*args, **kwargs):
    raise urllib.error.URLError("[Errno -2] Name or service not known")


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache under tmp_path (TORCH_HOME) and no network; returns its checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _offline)
    return tmp_path / "torch/hub/checkpoints"


def _imagenet_like_resnet18(path):
    """A torchvision ResNet-18 state_dict (random, with recognizable values) saved at ``path``."""
    tv = torchvision.models.resnet18(weights=None)
    torch.nn.init.constant_(tv.layer2[0].conv1.weight, 0.5)
    torch.nn.init.constant_(tv.bn1.running_mean, 0.25)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tv.state_dict(), path)
    return tv.state_dict()


def test_cache_file_is_named_by_torchvisions_weights_api(hub):
    url, path = torchvision_weights_file("torchvision://resnet50")
    assert url == torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url
    assert path == str(hub / "resnet50-0676ba61.pth")
    assert torchvision_weights_file("torchvision://resnext50_32x4d")[1].endswith(
        os.path.basename(torchvision.models.ResNeXt50_32X4D_Weights.IMAGENET1K_V1.url))


def test_torchvision_name_loads_from_the_cache_without_downloading(hub):
    name = os.path.basename(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url)
    assert name == "resnet18-f37072fd.pth"
    expected = _imagenet_like_resnet18(hub / name)
    net = ResNet(depth=18, pretrained="torchvision://resnet18")
    assert not torch.equal(net.layer2[0].conv1.weight, expected["layer2.0.conv1.weight"])  # not read when built
    assert net.load_pretrained() == str(hub / name)
    own = net.state_dict()
    for key, value in expected.items():
        if not key.startswith("fc."):
            assert torch.equal(own[key], value), key


def test_missing_file_is_downloaded_once_into_the_cache(hub, monkeypatch):
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix))
        _imagenet_like_resnet18(__import__("pathlib").Path(dst))

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    for _ in range(2):
        net = ResNet(depth=18, pretrained="torchvision://resnet18")
        net.load_pretrained()
        assert torch.all(net.layer2[0].conv1.weight == 0.5)
    assert calls == [(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url, str(hub / "resnet18-f37072fd.pth"),
                      "f37072fd")]


def test_offline_and_not_cached_is_one_line_naming_file_and_folder(hub):
    with pytest.raises(FileNotFoundError) as info:
        ResNet(depth=50, pretrained="torchvision://resnet50").load_pretrained()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("torchvision://resnet50: not in the torch hub cache and cannot be downloaded")
    assert "Name or service not known" in message
    assert f"put resnet50-0676ba61.pth from https://download.pytorch.org/models/resnet50-0676ba61.pth into {hub}/" \
        in message
    assert "model.pretrained=None" in message
    assert not hub.exists() or not any(hub.iterdir())  # nothing half-written left behind


def test_cli_prints_the_offline_error_as_one_line(hub, tmp_path, capsys):
    from solov2.cli import main
    config = tmp_path / "tiny_imagenet.py"
    config.write_text(f"_base_ = [{str(ROOT / 'tests/data/tiny_shapes.py')!r}]\n"
                      "model = dict(pretrained='torchvision://resnet18')\n")
    assert main(["train", str(config), "--work-dir", str(tmp_path / "work"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: torchvision://resnet18: not in the torch hub cache")
    assert f"into {hub}/" in err[-1]


def test_wrong_architecture_or_name_fails_before_any_download(hub):
    with pytest.raises(ValueError, match="weights of depth 50.*backbone has depth 18"):
        ResNet(depth=18, pretrained="torchvision://resnet50").load_pretrained()
    with pytest.raises(ValueError, match="groups 32"):
        ResNet(depth=50, pretrained="torchvision://resnext50_32x4d").load_pretrained()
    with pytest.raises(ValueError, match="unknown torchvision ImageNet model; known: torchvision://resnet18"):
        ResNet(depth=50, pretrained="torchvision://resnet05").load_pretrained()
    with pytest.raises(ValueError, match="pytorch-style"):
        ResNet(depth=50, style="caffe", pretrained="torchvision://resnet50").load_pretrained()
    with pytest.raises(ValueError, match="base_channels 32"):
        ResNet(depth=18, base_channels=32, pretrained="torchvision://resnet18").load_pretrained()
    assert not hub.exists()


def test_base_channels_scales_every_stage_and_64_is_torchvisions_resnet():
    narrow = ResNet(depth=18, base_channels=32, frozen_stages=-1)
    assert narrow.out_channels == [32, 64, 128, 256]
    outs = narrow(torch.zeros(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 32, 16, 24), (1, 64, 8, 12), (1, 128, 4, 6), (1, 256, 2, 3)]
    shapes = {k: v.shape for k, v in ResNet(depth=18).state_dict().items()}
    tv = {k: v.shape for k, v in torchvision.models.resnet18(weights=None).state_dict().items() if "fc." not in k}
    assert shapes == tv
    with pytest.raises(ValueError, match="base_channels must be a positive"):
        ResNet(depth=18, base_channels=0)


def test_resnext_weights_load_with_groups(hub):
    tv = torchvision.models.resnext50_32x4d(weights=None)
    hub.mkdir(parents=True)
    torch.save(tv.state_dict(), hub / "resnext50_32x4d-7cdf4587.pth")
    net = ResNet(depth=50, groups=32, base_width=4, pretrained="torchvision://resnext50_32x4d")
    net.load_pretrained()
    assert torch.equal(net.layer3[1].conv2.weight, tv.layer3[1].conv2.weight)


def test_local_corrupt_file_is_named(tmp_path):
    bad = tmp_path / "resnet18.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=f"{bad}: cannot read checkpoint"):
        ResNet(depth=18, pretrained=str(bad)).load_pretrained()


def test_building_models_reads_and_downloads_nothing(hub, monkeypatch):
    def no_io(*args, **kwargs):
        raise AssertionError("build_model must not read or download weights")

    monkeypatch.setattr(torch, "load", no_io)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_io)
    for path in [SEED_CONFIG, ROOT / "configs/solov2/coco/solov2_light_448_r18_fpn_3x.py"]:
        model = build_model(load_config(path))
        assert model.backbone.pretrained == f"torchvision://resnet{model.backbone.depth}"
    assert not hub.exists()


SHIPPED = sorted((ROOT / "configs/solov2").rglob("*.py"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_configs_name_the_imagenet_weights_of_their_depth(path):
    model = load_config(path).model
    if "adelaidet" in path.stem:  # caffe-style backbone: torchvision's weights would not fit
        assert model.pretrained is None and model.backbone.style == "caffe"
        return
    name = model.pretrained[len("torchvision://"):]
    assert model.pretrained.startswith("torchvision://") and TORCHVISION_ARCHS[name][0] == model.backbone.depth


def test_demo_config_trains_from_scratch():
    assert load_config(ROOT / "configs/demo/solov2_light_r18_shapes.py").model.pretrained is None


def _bn_layers(backbone):
    return [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_from_scratch_every_backbone_layer_trains(caplog):
    model = build_model(load_config(SEED_CONFIG, {**R18, "model.pretrained": None}))
    assert not model.backbone.conv1.weight.requires_grad  # the config's frozen_stages=1 as built
    with caplog.at_level(logging.INFO, logger="solov2"):
        init_backbone_for_training(model)
    model.train()
    assert all(p.requires_grad for p in model.backbone.parameters())
    assert all(m.training for m in _bn_layers(model.backbone))
    lines = [r.getMessage() for r in caplog.records if r.name == "solov2"]
    assert lines == ["no ImageNet weights (model.pretrained=None): training every backbone layer, BatchNorm "
                     "statistics updated (frozen_stages=1 and norm_eval=True of the config not applied)"]


def test_from_scratch_choice_is_the_same_on_resume():
    model = build_model(load_config(SEED_CONFIG, {**R18, "model.pretrained": None}))
    init_backbone_for_training(model, resume="work_dirs/x/latest.pth")
    assert all(p.requires_grad for p in model.train().backbone.parameters())


def test_load_from_keeps_the_configs_freezing():
    model = build_model(load_config(SEED_CONFIG, {**R18, "model.pretrained": None}))
    init_backbone_for_training(model, load_from="detector.pth")
    model.train()
    assert not model.backbone.layer1[0].conv1.weight.requires_grad
    assert not any(m.training for m in _bn_layers(model.backbone))


def test_with_imagenet_weights_frozen_stages_and_norm_eval_are_honoured(hub, caplog):
    expected = _imagenet_like_resnet18(hub / "resnet18-f37072fd.pth")
    model = build_model(load_config(SEED_CONFIG, {**R18, "model.pretrained": "torchvision://resnet18"}))
    with caplog.at_level(logging.INFO, logger="solov2"):
        init_backbone_for_training(model)
    model.train()
    assert torch.equal(model.backbone.bn1.running_mean, expected["bn1.running_mean"])
    assert not any(p.requires_grad for p in model.backbone.conv1.parameters())
    assert not any(p.requires_grad for p in model.backbone.layer1.parameters())
    assert all(p.requires_grad for p in model.backbone.layer2.parameters())
    assert not any(m.training for m in _bn_layers(model.backbone))  # norm_eval
    assert any("ImageNet weights torchvision://resnet18" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("kind", ["resume", "load_from"])
def test_a_detector_checkpoint_means_no_imagenet_weights_are_read(hub, kind, monkeypatch):
    monkeypatch.setattr(ResNet, "load_pretrained", lambda self, spec=None: pytest.fail("ImageNet weights read"))
    model = build_model(load_config(SEED_CONFIG, {**R18, "model.pretrained": "torchvision://resnet18"}))
    init_backbone_for_training(model, **{kind: "checkpoint.pth"})
    assert not model.train().backbone.conv1.weight.requires_grad


@pytest.mark.slow  # a training run
def test_trainer_optimizes_every_backbone_parameter_from_scratch(tmp_path):
    from solov2.engine.trainer import Trainer
    cfg = load_config(ROOT / "tests/data/tiny_shapes.py",
                      {"model.backbone.frozen_stages": 1, "model.backbone.norm_eval": True})
    trainer = Trainer(cfg, str(tmp_path), device="cpu")
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in optimized for p in trainer.model.backbone.parameters())
    if trainer.writer:
        trainer.writer.close()
