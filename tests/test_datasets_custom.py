"""Your own data: the dataset registry, COCO json files at any path, VOC-format folders, and training on them."""

import json
import shutil
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from inference_helpers import load_tool
from training_helpers import REPO, TRAIN_TOOL, run_tool, tiny_overrides

from detection.checkpoint import save_checkpoint
from detection.config import config_to_dict, load_config
from detection.data import (
    CocoDetection,
    DatasetError,
    DatasetWarning,
    build_dataset,
    catalog,
    dataset_from_config,
    list_datasets,
    register_coco_dataset,
    register_dataset,
    register_voc_dataset,
)
from detection.errors import ConfigError
from detection.modeling.factory import detector_from_config

EVAL_TOOL = REPO / "tools" / "eval_det.py"
SHAPES = ["rectangle", "ellipse", "triangle"]


@pytest.fixture
def isolated_datasets(monkeypatch):
    """A copy of the dataset registry that the test may add to; restored afterwards."""
    monkeypatch.setattr(catalog, "_DATASETS", dict(catalog._DATASETS))
    monkeypatch.setattr(catalog, "_entry_points_loaded", True)


def export_coco(shapes_root: Path, folder: Path) -> Path:
    """The tiny shapes dataset as a labelling tool exports COCO: ``folder/{train,val}.json`` and every
    image in ``folder/images``."""
    (folder / "images").mkdir(parents=True)
    for split in ("train", "val"):
        for image in (shapes_root / "coco" / split).iterdir():
            shutil.copy(image, folder / "images" / image.name)
        shutil.copy(shapes_root / "coco" / "annotations" / f"instances_{split}.json", folder / f"{split}.json")
    return folder


def write_voc_folder(folder: Path, images: dict[str, list[tuple[str, tuple[int, int, int, int]]]]) -> Path:
    """A labelImg-style folder: ``Annotations/<name>.xml`` naming ``JPEGImages/<name>.png``, no ImageSets."""
    (folder / "Annotations").mkdir(parents=True)
    (folder / "JPEGImages").mkdir()
    for name, objects in images.items():
        boxes = "".join(
            f"<object><name>{label}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
            f"<ymax>{y2}</ymax></bndbox></object>"
            for label, (x1, y1, x2, y2) in objects
        )
        (folder / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.png</filename><path>/home/me/{name}.png</path>"
            f"<size><width>40</width><height>30</height><depth>3</depth></size>{boxes}</annotation>"
        )
        cv2.imwrite(str(folder / "JPEGImages" / f"{name}.png"), np.zeros((30, 40, 3), dtype=np.uint8))
    return folder


FRUIT = {
    "a": [("pear", (1, 1, 10, 10)), ("apple", (5, 5, 20, 20))],
    "b": [("banana", (2, 3, 30, 25))],
    "c": [],
}


def test_voc_folder_without_image_sets_uses_every_xml_and_collects_its_classes(tmp_path, caplog):
    folder = write_voc_folder(tmp_path / "fruit", FRUIT)
    config = load_config(None, ["data.dataset=fruit", f"data.voc_folder={folder}"])
    assert config.metric == "voc"
    with pytest.warns(DatasetWarning, match="no ImageSets/Main, so split 'val' is every XML file .* \\(3 images\\)"):
        with caplog.at_level("INFO", logger="detection"):
            dataset = dataset_from_config(config.data, "val", train=False)
    assert dataset.class_names == ("apple", "banana", "pear")
    assert "classes collected from" in caplog.text and "apple, banana, pear" in caplog.text
    assert len(dataset) == 3
    first = dataset.get_annotation(0)
    assert first["file_name"] == str(folder / "JPEGImages" / "a.png")  # <id> with the extension it has
    assert first["labels"].tolist() == [3, 1] and first["boxes"].tolist() == [[0, 0, 10, 10], [4, 4, 20, 20]]
    image, target = dataset[1]
    assert tuple(image.shape) == (3, 30, 40) and target["labels"].tolist() == [2]


def test_voc_folder_splits_come_from_image_sets(tmp_path):
    folder = write_voc_folder(tmp_path / "fruit", FRUIT)
    (folder / "ImageSets" / "Main").mkdir(parents=True)
    (folder / "ImageSets" / "Main" / "train.txt").write_text("a\nc\n")
    (folder / "ImageSets" / "Main" / "val.txt").write_text("b\n")
    config = load_config(None, ["data.dataset=fruit", f"data.root={tmp_path}", "data.voc_folder=fruit"])
    train = dataset_from_config(config.data, "train", train=True)  # relative to data.root
    assert len(train) == 1 and train.class_names == ("apple", "banana", "pear")  # "c" has no object
    assert len(dataset_from_config(config.data, "val", train=False)) == 1
    with pytest.raises(DatasetError, match="split file not found; this folder's splits: train, val"):
        dataset_from_config(config.data, "test", train=False)
    ordered = load_config(None, ["data.dataset=fruit", f"data.voc_folder={folder}", "data.classes=[pear,apple,banana]"])
    assert dataset_from_config(ordered.data, "val", train=False).class_names == ("pear", "apple", "banana")


def test_coco_files_at_any_path(shapes_root, tmp_path):
    export = export_coco(shapes_root, tmp_path / "my export")
    config = load_config(
        str(REPO / "configs" / "custom" / "base.yaml"),
        [
            "data.dataset=widgets",
            f"data.root={export}",
            "data.train_json=train.json",
            "data.train_images=images",
            "data.test_json=val.json",
            "data.test_images=images",
        ],
    )
    assert config.metric == "coco"
    train = dataset_from_config(config.data, "train", train=True)
    val = dataset_from_config(config.data, "val", train=False)
    assert isinstance(val, CocoDetection) and val.class_names == tuple(SHAPES)
    assert len(val) == 4 and Path(val.get_annotation(0)["file_name"]).parent == export / "images"
    assert train.class_names == val.class_names
    with pytest.raises(DatasetError, match="unknown split 'test'; this dataset's splits: train, val"):
        dataset_from_config(config.data, "test", train=False)


def test_the_json_folder_is_the_default_image_folder(shapes_root, tmp_path):
    split_folder = tmp_path / "valid"  # Roboflow: images and _annotations.coco.json side by side
    shutil.copytree(shapes_root / "coco" / "val", split_folder)
    shutil.copy(shapes_root / "coco" / "annotations" / "instances_val.json", split_folder / "_annotations.coco.json")
    json_file = split_folder / "_annotations.coco.json"
    config = load_config(None, ["data.dataset=rf", f"data.train_json={json_file}", f"data.test_json={json_file}"])
    assert dataset_from_config(config.data, "val", train=False)[0][0].shape[0] == 3


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.train_json=a.json", "data.test_json=b.json"], "dataset 'shapes' is a registered dataset"),
        (["data.dataset=w", "data.train_json=a.json"], "test_json is missing"),
        (["data.dataset=w", "data.train_images=images"], "train_images is set without train_json"),
        (["data.dataset=w", "data.train_json=a.json", "data.test_json=a.json", "data.voc_folder=v"], "give one"),
        (["data.dataset=w", "data.train_json=a", "data.test_json=b", "data.test_split=train"], "different files"),
    ],
)
def test_inconsistent_file_settings_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_unknown_name_lists_the_registered_ones():
    with pytest.raises(DatasetError, match=r"unknown dataset 'widgets'; known datasets: coco, shapes, voc \(or give"):
        _ = load_config(None, ["data.dataset=widgets"]).metric


def test_datasets_registered_from_python(shapes_root, tmp_path, isolated_datasets):
    export = export_coco(shapes_root, tmp_path / "export")
    register_coco_dataset("widgets", export / "train.json", export / "images", split="train")
    register_coco_dataset("widgets", export / "val.json", export / "images", split="val")
    register_voc_dataset("fruit", write_voc_folder(tmp_path / "fruit", FRUIT), classes=["pear", "banana", "apple"])

    @register_dataset("shapes_again", metric="voc")
    def build_shapes_again(split, root, **options):
        return build_dataset("shapes", split, root=shapes_root, train=False)

    assert {"widgets", "fruit", "shapes_again"} <= set(list_datasets())
    assert list_datasets() == sorted(list_datasets())
    with_objects = build_dataset("shapes", "train", root=shapes_root, train=True)
    assert len(build_dataset("widgets", "train", train=True)) == len(with_objects)
    assert build_dataset("widgets", "val", train=False).class_names == tuple(SHAPES)
    with pytest.warns(DatasetWarning, match="every XML file"):
        assert build_dataset("fruit", "all", train=False).class_names == ("pear", "banana", "apple")
    assert load_config(None, ["data.dataset=fruit"]).metric == "voc"
    assert load_config(None, ["data.dataset=shapes_again"]).metric == "voc"
    with pytest.raises(ValueError, match="'widgets' already has the split 'val'"):
        register_coco_dataset("widgets", export / "val.json", split="val")
    with pytest.raises(ValueError, match="'coco' is already registered"):
        register_voc_dataset("coco", tmp_path)
    with pytest.raises(ConfigError, match="'widgets' is a registered dataset"):
        load_config(None, ["data.dataset=widgets", "data.voc_folder=x"])

    # The tools offer the registered names, and pick the custom recipe for a dataset without configs.
    tool = load_tool("visualize_dataset")
    out = tmp_path / "pictures"
    argv = ["--dataset", "widgets", "--backbone", "resnet18", "--split", "val", "--output-dir", str(out)]
    assert tool.main(argv) == 0
    assert len(list(out.glob("*.jpg"))) == 4


def test_entry_point_datasets_appear_in_the_tools(tmp_path, monkeypatch):
    (tmp_path / "thirdparty_data.py").write_text(
        textwrap.dedent("""
        def build(split, root, **options):
            raise NotImplementedError
    """)
    )
    dist_info = tmp_path / "thirdparty_data-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-data\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[{catalog.ENTRY_POINT_GROUP}]\nplugin_data = thirdparty_data:build\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(catalog, "_DATASETS", dict(catalog._DATASETS))
    monkeypatch.setattr(catalog, "_entry_points_loaded", False)
    assert "plugin_data" in list_datasets()
    parser = load_tool("eval_det").parse_args(["--checkpoint", "x.pth", "--dataset", "plugin_data"])
    assert parser.dataset == "plugin_data"


@pytest.mark.slow
def test_training_on_coco_files_at_any_path_then_evaluating(shapes_root, tmp_path):
    """Fine-tunes a 2-class checkpoint on an exported 3-class COCO set for two iterations, then evaluates it."""
    export = export_coco(shapes_root, tmp_path / "labelled" / "export")
    own_data = [
        "data.dataset=widgets",
        f"data.train_json={export / 'train.json'}",
        f"data.train_images={export / 'images'}",
        f"data.test_json={export / 'val.json'}",
        f"data.test_images={export / 'images'}",
    ]
    out = tmp_path / "run"
    overrides = tiny_overrides(shapes_root, out, "solver.max_iter=2", "solver.steps=[]", *own_data)
    overrides.remove(f"data.root={shapes_root}")
    pretrained = tmp_path / "pretrained.pth"
    config = load_config(str(REPO / "configs" / "custom" / "base.yaml"), overrides)
    torch.manual_seed(0)
    model = detector_from_config(config.model, 3)  # two classes and the background
    state = {"model": model.state_dict(), "config": config_to_dict(config), "class_names": ["a", "b"]}
    save_checkpoint(pretrained, state)

    command = [sys.executable, str(TRAIN_TOOL), "--config", "configs/custom/base.yaml", "--weights", str(pretrained)]
    result = run_tool([*command, "--opts", *overrides])
    assert result.returncode == 0, result.stderr
    assert "skipped the box predictor (2 classes there, 3 here)" in result.stdout
    assert "evaluation at iteration 2 on widgets val" in result.stdout
    for name in ("metrics.json", "evaluation.json", "pr_curves.png", "ap_per_class.png", "coco_error_analysis.png"):
        assert (out / "inference" / name).is_file(), name
    events = b"".join(path.read_bytes() for path in out.glob("events.out.tfevents.*"))
    assert b"figures/pr_curves" in events and b"figures/coco_error_analysis" in events

    evaluation = tmp_path / "evaluation"
    arguments = ["--checkpoint", str(out / "model_final.pth"), "--output-dir", str(evaluation)]
    result = run_tool([sys.executable, str(EVAL_TOOL), *arguments])
    assert result.returncode == 0, result.stderr
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert {"bbox/AP", "bbox/AP50", "bbox/AP_triangle"} <= set(metrics)
    assert json.loads((evaluation / "evaluation.json").read_text())["dataset"] == "widgets"
    assert (evaluation / "pr_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
