import os

import pytest
import torch
from helpers import tiny_model

from solov2.checkpoint.io import load_weights, read_checkpoint, save_checkpoint
from solov2.errors import CheckpointError


def test_roundtrip_and_meta(tmp_path):
    model = tiny_model()
    path = str(tmp_path / "a.pth")
    save_checkpoint(path, model, meta={"epoch": 3, "iter": 30, "classes": ["a", "b", "c"]})
    other = tiny_model()
    ckpt = load_weights(other, path)
    assert ckpt["meta"]["epoch"] == 3
    for k, v in model.state_dict().items():
        assert torch.equal(v, other.state_dict()[k])
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp")] == []  # no temporary left behind


def test_mismatched_checkpoint_names_keys(tmp_path):
    path = str(tmp_path / "five.pth")
    save_checkpoint(path, tiny_model(num_classes=5))
    with pytest.raises(CheckpointError, match=r"wrong shape: bbox_head.solo_cate.bias \(5,\) vs \(3,\)"):
        load_weights(tiny_model(num_classes=3), path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(str(tmp_path / "none.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pth: cannot read"):
        read_checkpoint(str(bad))


def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = str(tmp_path / "latest.pth")
    model = tiny_model()
    save_checkpoint(path, model, meta={"iter": 1})

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, meta={"iter": 2})
    monkeypatch.undo()
    assert read_checkpoint(path)["meta"]["iter"] == 1
    assert sorted(os.listdir(tmp_path)) == ["latest.pth"]


def test_rng_states_load_with_weights_only_and_restore_the_sequences(tmp_path):
    import random

    import numpy as np

    from solov2.engine.rng import rng_state, set_rng_state
    path = str(tmp_path / "a.pth")
    save_checkpoint(path, tiny_model(), meta={"iter": 1}, rng=[rng_state()])
    expected = (random.random(), float(np.random.rand()), torch.rand(3))
    set_rng_state(read_checkpoint(path)["rng"][0])  # read_checkpoint loads with weights_only=True
    again = (random.random(), float(np.random.rand()), torch.rand(3))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])


def test_linked_checkpoint_outlives_the_epoch_file_and_is_replaced_alone(tmp_path):
    from solov2.checkpoint.io import link_checkpoint
    epoch, latest = str(tmp_path / "epoch_1.pth"), str(tmp_path / "latest.pth")
    save_checkpoint(epoch, tiny_model(), meta={"iter": 4})
    save_checkpoint(latest, tiny_model(), meta={"iter": 2})
    link_checkpoint(epoch, latest)
    assert open(latest, "rb").read() == open(epoch, "rb").read()
    save_checkpoint(latest, tiny_model(), meta={"iter": 6})  # a later latest.pth leaves epoch_1.pth as it was
    assert read_checkpoint(epoch)["meta"]["iter"] == 4
    link_checkpoint(epoch, latest)
    os.remove(epoch)  # max_keep_ckpts retention
    assert read_checkpoint(latest)["meta"]["iter"] == 4
    assert sorted(os.listdir(tmp_path)) == ["latest.pth"]
