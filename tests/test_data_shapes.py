"""The generated shapes dataset: both formats agree, determinism, content, the cache and the tool."""

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest
from inference_helpers import load_tool

import detection.data.shapes
from detection.data import (
    SHAPES_CLASSES,
    DatasetError,
    ShapesOptions,
    build_dataset,
    ensure_shapes_dataset,
    generate_shapes_dataset,
)

SMALL = ShapesOptions(num_train=3, num_val=2, seed=1, image_size=(64, 80))


@pytest.mark.parametrize("split", ["train", "val"])
def test_coco_and_voc_formats_load_to_identical_targets(shapes_root, split):
    coco = build_dataset("shapes", split, root=shapes_root, train=False)
    voc = build_dataset("voc", f"shapes_{split}", root=shapes_root / "VOCdevkit", train=False, classes=SHAPES_CLASSES)
    assert coco.class_names == voc.class_names == SHAPES_CLASSES
    assert len(coco) == len(voc) > 0
    num_boxes = 0
    for i in range(len(coco)):
        a, b = coco.get_annotation(i), voc.get_annotation(i)
        assert Path(a["file_name"]).name == f"{voc.image_name(i)}.jpg"
        np.testing.assert_array_equal(a["boxes"], b["boxes"])  # VOC's 1-based inclusive, converted
        np.testing.assert_array_equal(a["labels"], b["labels"])
        assert (a["height"], a["width"]) == (b["height"], b["width"]) == (128, 160)
        num_boxes += len(a["boxes"])
        image_a, target_a = coco[i]
        image_b, target_b = voc[i]
        assert image_a.equal(image_b)
        assert target_a["boxes"].equal(target_b["boxes"]) and target_a["labels"].equal(target_b["labels"])
    assert num_boxes > 0


def test_boxes_are_tight_around_the_drawn_shapes(shapes_root):
    dataset = build_dataset("shapes", "train", root=shapes_root, train=False)
    for i in range(len(dataset)):
        image, target = dataset[i]
        background = image[:, 0, 0]
        for x1, y1, x2, y2 in target["boxes"].long().tolist():
            assert 0.1 * 128 <= x2 - x1 <= 0.5 * 128 and 0.1 * 128 <= y2 - y1 <= 0.5 * 128
            # the box's edges touch the shape: each border row/column differs from the background somewhere
            for edge in (image[:, y1, x1:x2], image[:, y2 - 1, x1:x2], image[:, y1:y2, x1], image[:, y1:y2, x2 - 1]):
                assert (edge - background[:, None]).abs().max() > 0.15


def test_generation_is_deterministic(tmp_path):
    first = generate_shapes_dataset(tmp_path / "a", SMALL)
    second = generate_shapes_dataset(tmp_path / "b", SMALL)
    other = generate_shapes_dataset(tmp_path / "c", ShapesOptions(**{**SMALL.__dict__, "seed": 2}))
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) == 1 + 2 + 5 + 5 + 5 + 3  # marker, 2 jsons, 5 coco jpgs, 5 xmls, 5 voc jpgs, 3 lists
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    json_name = Path("coco/annotations/instances_train.json")
    assert (first / json_name).read_bytes() != (other / json_name).read_bytes()


def test_content_has_every_class_and_empty_images(tmp_path):
    root = generate_shapes_dataset(
        tmp_path, ShapesOptions(num_train=30, num_val=0, image_size=(64, 80), formats=("coco",))
    )
    data = json.loads((root / "coco" / "annotations" / "instances_train.json").read_text())
    assert [c["name"] for c in data["categories"]] == list(SHAPES_CLASSES)
    assert {a["category_id"] for a in data["annotations"]} == {1, 2, 3}
    with_objects = {a["image_id"] for a in data["annotations"]}
    assert 0 < len(with_objects) < 30  # some images have no object
    assert not (root / "VOCdevkit").exists()


def test_defaults_suit_the_quickstart():
    options = ShapesOptions()
    assert (options.num_train, options.num_val, options.image_size) == (600, 100, (256, 320))
    assert SHAPES_CLASSES == ("rectangle", "ellipse", "triangle")


def test_ensure_generates_once_then_reuses(tmp_path):
    root = ensure_shapes_dataset(tmp_path / "cache" / "shapes", SMALL)
    marker = root / "shapes.json"
    stamp = marker.stat().st_mtime_ns
    assert ensure_shapes_dataset(root) == root and marker.stat().st_mtime_ns == stamp
    assert [p.name for p in root.parent.iterdir()] == ["shapes"]  # no temporary folder left behind
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("not a dataset")
    with pytest.raises(DatasetError, match="not a generated shapes dataset"):
        ensure_shapes_dataset(tmp_path / "other")


def test_shapes_by_name_generates_into_the_env_var_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTION_DATASETS", str(tmp_path))
    monkeypatch.setattr(
        detection.data.shapes, "ensure_shapes_dataset", functools.partial(ensure_shapes_dataset, options=SMALL)
    )
    dataset = build_dataset("shapes", "val", train=False)
    assert (tmp_path / "shapes" / "shapes.json").is_file()
    assert len(dataset) == 2 and dataset.class_names == SHAPES_CLASSES
    with pytest.raises(DatasetError, match="unknown shapes split 'test'"):
        build_dataset("shapes", "test", train=False)


def test_make_shapes_dataset_tool(tmp_path, capsys):
    tool = load_tool("make_shapes_dataset")
    argv = [
        "--out",
        str(tmp_path),
        "--format",
        "voc",
        "--train",
        "2",
        "--val",
        "1",
        "--seed",
        "3",
        "--height",
        "64",
        "--width",
        "80",
    ]
    assert tool.main(argv) == 0
    assert "wrote 2 train + 1 val images" in capsys.readouterr().out
    main = tmp_path / "VOCdevkit" / "VOCshapes" / "ImageSets" / "Main"
    assert (main / "train.txt").read_text().split() == ["train_000000", "train_000001"]
    assert (main / "trainval.txt").read_text().split() == ["train_000000", "train_000001", "val_000000"]
    assert not (tmp_path / "coco").exists()
    voc = build_dataset("voc", "shapes_trainval", root=tmp_path / "VOCdevkit", train=False, classes=SHAPES_CLASSES)
    assert len(voc) == 3 and voc.get_image_size(0) == (64, 80)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_a_generated_dataset_is_as_readable_as_the_umask_allows(tmp_path, umask):
    previous = os.umask(umask)
    try:
        root = ensure_shapes_dataset(tmp_path / "shared" / "shapes", SMALL)
    finally:
        os.umask(previous)
    folders = [root, *(p for p in root.rglob("*") if p.is_dir())]
    files = [p for p in root.rglob("*") if p.is_file()]
    assert {p.stat().st_mode & 0o777 for p in folders} == {0o777 & ~umask}
    assert {p.stat().st_mode & 0o777 for p in files} == {0o666 & ~umask}


def test_make_shapes_dataset_replaces_a_shapes_dataset_whole_and_refuses_other_folders(tmp_path, capsys):
    tool = load_tool("make_shapes_dataset")
    out = tmp_path / "shapes"
    small = ["--format", "coco", "--height", "64", "--width", "80", "--val", "1"]
    assert tool.main(["--out", str(out), "--train", "4", *small]) == 0
    assert tool.main(["--out", str(out), "--train", "2", *small]) == 0
    assert sorted(p.name for p in (out / "coco" / "train").iterdir()) == ["train_000000.jpg", "train_000001.jpg"]
    assert json.loads((out / "shapes.json").read_text())["num_train"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes"]  # nothing left beside it

    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(DatasetError, match="photos: not a generated shapes dataset"):
        tool.main(["--out", str(other), "--train", "2", *small])
    assert [p.name for p in other.iterdir()] == ["holiday.jpg"]
