"""solov2.checkpoint.model_config: the data decides the classes, a checkpoint carries its config, and the ways a
config and a checkpoint are combined (checkpoint alone, both, older checkpoints, bare state_dicts)."""
import logging

import pytest
import torch
from helpers import DEMO_CONFIG

from solov2 import Predictor, build_model, load_config
from solov2.checkpoint.io import read_checkpoint, save_checkpoint
from solov2.checkpoint.model_config import (
    check_eval_classes,
    checkpoint_meta,
    resolve_classes,
    resolve_model,
    split_sources,
)
from solov2.data import SyntheticShapes
from solov2.errors import CheckpointError, DataError

SMALL = {"model.transform.train_scales": [(64, 64)], "model.transform.test_scale": (64, 64)}
NAMES = ["apple", "pear", "plum"]


class ThreeClasses(torch.utils.data.Dataset):
    """Stands in for a user's 3-category COCO set: only CLASSES and cat_ids are read."""
    CLASSES = tuple(NAMES)
    cat_ids = [3, 7, 11]


def _cfg(**extra):
    return load_config(DEMO_CONFIG, {**SMALL, **extra})


def _trained_like_checkpoint(tmp_path, name="new.pth", meta_fn=None):
    """A checkpoint as `solov2 train` writes it for 3-class data with the 5-class demo config."""
    cfg = _cfg()
    resolve_classes(cfg, ThreeClasses(), log=lambda s: None,
                    build_dataset=lambda c: ThreeClasses())  # val/test: the same categories
    torch.manual_seed(0)
    model = build_model(cfg)
    meta = checkpoint_meta(cfg, NAMES, ThreeClasses.cat_ids)
    path = tmp_path / name
    save_checkpoint(str(path), model, meta=meta_fn(meta) if meta_fn else meta)
    return str(path), model


def test_the_training_data_decides_the_class_count():
    cfg, logged = _cfg(), []
    classes, cat_ids = resolve_classes(cfg, ThreeClasses(), log=logged.append,
                                       build_dataset=lambda c: ThreeClasses())
    assert (classes, cat_ids) == (NAMES, [3, 7, 11])
    assert cfg.model.bbox_head.num_classes == 3 and build_model(cfg).num_classes == 3
    assert len(logged) == 1 and "apple, pear, plum" in logged[0] and "num_classes=5" in logged[0]
    assert "\n" not in logged[0]
    logged.clear()  # already 3: nothing to say
    resolve_classes(cfg, ThreeClasses(), log=logged.append, build_dataset=lambda c: ThreeClasses())
    assert logged == []


def test_val_categories_must_be_the_training_sets():
    cfg = _cfg()
    with pytest.raises(DataError) as err:
        resolve_classes(cfg, ThreeClasses(), log=lambda s: None, build_dataset=lambda c: SyntheticShapes(1))
    message = str(err.value)
    assert message.startswith("data.val has 5 categories ['disc'")
    assert "data.train has 3 ['apple', 'pear', 'plum']" in message
    assert "\n" not in message
    # Without evaluation during training the val set is not read; an unreadable test set is not training's business.
    cfg = _cfg(**{"evaluation.interval": -1})
    calls = []

    def missing(c):
        calls.append(c)
        raise FileNotFoundError("x.json: annotation file not found")

    assert resolve_classes(cfg, ThreeClasses(), log=lambda s: None, build_dataset=missing)[0] == NAMES
    assert calls == []  # the demo's test set is its val set: not read twice



def test_a_test_set_with_other_categories_is_a_warning_not_a_stop():
    # e.g. the demo config's data.test still points at the demo's shapes after `make demo`, while the user's
    # train/val sets have other classes: training does not read data.test, so it warns and goes on.
    cfg = _cfg(**{"evaluation.interval": -1, "data.test.ann_file": "elsewhere.json"})
    said = []
    classes, _ = resolve_classes(cfg, ThreeClasses(), log=said.append, build_dataset=lambda c: SyntheticShapes(1))
    assert classes == NAMES
    warnings = [s for s in said if s.startswith("WARNING: data.test has 5 categories ['disc'")]
    assert len(warnings) == 1 and "training does not read data.test" in warnings[0]

def test_checkpoint_meta_is_read_back_with_weights_only(tmp_path):
    path, _ = _trained_like_checkpoint(tmp_path)
    meta = read_checkpoint(path)["meta"]  # torch.load(weights_only=True)
    assert meta["classes"] == NAMES and meta["cat_ids"] == [3, 7, 11]
    assert isinstance(meta["config"], dict) and meta["config"]["model"]["bbox_head"]["num_classes"] == 3
    assert meta["config"]["model"]["transform"]["test_scale"] == (64, 64)


def test_checkpoint_alone_and_with_a_config(tmp_path):
    path, model = _trained_like_checkpoint(tmp_path)
    alone = resolve_model(path)
    assert alone.classes == NAMES and alone.cat_ids == [3, 7, 11]
    assert alone.cfg.model.bbox_head.num_classes == 3
    # With the (5-class) demo config: architecture and classes from the checkpoint, test-time settings
    # from the config, and a one-line note about the class count.
    notes = []
    both = resolve_model(str(DEMO_CONFIG), path, log=notes.append)
    assert both.cfg.model.bbox_head.num_classes == 3 and both.classes == NAMES
    assert both.cfg.model.transform.test_scale == (160, 160)  # the demo config's, not the checkpoint's 64
    assert len(notes) == 1 and "num_classes=5" in notes[0] and "apple, pear, plum" in notes[0]
    predictor = Predictor(path, optimize=False)
    assert predictor.class_names == NAMES and predictor.cat_ids == [3, 7, 11]
    assert predictor.model.num_classes == 3
    torch.testing.assert_close(predictor.model.state_dict(), model.state_dict())
    cfg = _cfg(**{"model.test_cfg.score_thr": 0.42})
    assert Predictor(cfg, path, optimize=False).model.test_cfg.score_thr == 0.42


def test_checkpoint_without_an_embedded_config(tmp_path):
    # Written by the code before this format: the unresolved config text, which needs the config file.
    def old(meta):
        return {"epoch": 1, "iter": 3, "classes": meta["classes"], "config": _cfg().pretty_text}

    path, _ = _trained_like_checkpoint(tmp_path, "old.pth", old)
    with pytest.raises(CheckpointError, match="holds no config .*give the config file before it: CONFIG.py"):
        resolve_model(path)
    predictor = Predictor(_cfg(**{"model.bbox_head.num_classes": 3}), path, optimize=False)
    assert predictor.class_names == NAMES and predictor.cat_ids is None
    # An official SOLO checkpoint: a bare state_dict, no meta at all.
    bare = tmp_path / "bare.pth"
    torch.save(build_model(_cfg()).state_dict(), bare)
    predictor = Predictor(str(DEMO_CONFIG), str(bare), optimize=False)
    assert predictor.class_names == [f"class_{i}" for i in range(5)]
    with pytest.raises(CheckpointError, match="holds no config"):
        Predictor(str(bare))


def test_old_checkpoint_naming_fewer_classes_than_its_head(tmp_path):
    """The reported case: an 80-class config trained on 5-class data gave a head for 80 classes and 5 names."""
    path = tmp_path / "old.pth"
    save_checkpoint(str(path), build_model(_cfg()), meta={"classes": NAMES, "config": "text"})
    notes = []
    resolved = resolve_model(str(DEMO_CONFIG), str(path), log=notes.append)
    assert resolved.classes == NAMES + ["class_3", "class_4"]
    assert len(notes) == 1 and "names 3 classes but its model predicts 5" in notes[0]
    with pytest.raises(ValueError, match=r"predicts 5 classes .* but data.test has 3 categories \['apple'"):
        check_eval_classes(resolved, ThreeClasses(), "data.test")


def test_eval_classes_must_match(tmp_path):
    path, _ = _trained_like_checkpoint(tmp_path)
    resolved = resolve_model(path)
    check_eval_classes(resolved, ThreeClasses(), "data.test")  # the same: fine
    with pytest.raises(ValueError, match="predicts 3 classes .* data.val has 5 categories"):
        check_eval_classes(resolved, SyntheticShapes(1), "data.val")

    class Renamed(ThreeClasses):
        CLASSES = ("apple", "pear", "fig")

    differ = r"classes \['apple', 'pear', 'plum'\] differ from .* \['apple', 'pear', 'fig'\]"
    with pytest.raises(ValueError, match=differ):
        check_eval_classes(resolved, Renamed(), "data.test")


def test_split_sources():
    assert split_sources(["m.pth", "a.png", "b"], "predict") == (None, "m.pth", ["a.png", "b"])
    assert split_sources(["c.py", "m.pth", "a.png"], "predict") == ("c.py", "m.pth", ["a.png"])
    assert split_sources(["m.pt"], "eval") == (None, "m.pt", [])
    with pytest.raises(ValueError, match="a checkpoint must follow the config c.py"):
        split_sources(["c.py"], "eval")
    with pytest.raises(ValueError, match="expected a .py config file before the checkpoint"):
        resolve_model("a.pth", "b.pth")


def test_pretrained_path_of_the_training_machine_is_not_needed(tmp_path):
    path, _ = _trained_like_checkpoint(
        tmp_path, meta_fn=lambda m: {**m, "config": {**m["config"], "model": {**m["config"]["model"],
                                                                              "pretrained": "/gone/resnet18.pth"}}})
    assert Predictor(path, optimize=False).model.num_classes == 3  # no FileNotFoundError for the ImageNet file


def test_note_goes_to_the_solov2_logger(tmp_path, caplog):
    path, _ = _trained_like_checkpoint(tmp_path)
    with caplog.at_level(logging.WARNING, logger="solov2"):
        Predictor(str(DEMO_CONFIG), path, optimize=False)
    assert [r.getMessage() for r in caplog.records if "num_classes=5" in r.getMessage()]
