"""tools/infer.py and tools/visualize_dataset.py: pictures, detections JSON, unreadable files, errors."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from inference_helpers import CLASS_NAMES, load_tool, write_tiny_checkpoint

from detection import precision
from detection.checkpoint import load_detector
from detection.cli import run_cli
from detection.data import read_image
from detection.errors import UserError
from detection.inference.drawing import draw_annotation, draw_detections, label_colour
from detection.inference.predictor import Predictor, find_images

infer = load_tool("infer")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("checkpoint") / "model.pth")


def write_image(path: Path, height: int, width: int, seed: int) -> np.ndarray:
    """A random RGB picture saved losslessly; returns its pixels."""
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return image


def test_folder_with_a_corrupt_image(tmp_path, checkpoint, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    sizes = {"a.png": (120, 200), "b.png": (90, 70), "c.png": (64, 64)}
    for seed, (name, size) in enumerate(sizes.items()):
        write_image(folder / name, *size, seed)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("not an image, not an input")
    out = tmp_path / "out"

    code = infer.main(
        [
            "--checkpoint",
            str(checkpoint),
            str(folder),
            "--output-dir",
            str(out),
            "--score-thresh",
            "0",
            "--batch-size",
            "2",
            "--precision",
            "fp32",  # compared with the float32 model below
        ]
    )

    assert code == 1
    captured = capsys.readouterr()
    assert "3 of 4 images processed, 1 unreadable" in captured.out
    assert "broken.jpg" in captured.err
    report = json.loads((out / "detections.json").read_text())
    assert report["class_names"] == CLASS_NAMES and report["precision"] == "fp32"
    assert [Path(f["file"]).name for f in report["failed"]] == ["broken.jpg"]
    assert [Path(image["file"]).name for image in report["images"]] == list(sizes)
    model = load_detector(checkpoint).model
    tensors = [torch.from_numpy(read_image(entry["file"])).permute(2, 0, 1).float() / 255 for entry in report["images"]]
    with torch.inference_mode():  # one image per batch: the three sizes differ
        expected_outputs = [model([tensor])[0] for tensor in tensors]
    for entry, expected in zip(report["images"], expected_outputs):
        height, width = sizes[Path(entry["file"]).name]
        assert (entry["height"], entry["width"]) == (height, width)
        boxes = np.array(entry["boxes"]).reshape(-1, 4)
        assert len(boxes) == len(expected["boxes"]) > 0
        np.testing.assert_allclose(boxes, expected["boxes"].numpy(), atol=0.02)  # original pixels, 2 decimals
        assert boxes[:, [0, 2]].max() <= width and boxes[:, [1, 3]].max() <= height
        assert entry["classes"] == [CLASS_NAMES[label - 1] for label in entry["labels"]]
        assert entry["scores"] == sorted(entry["scores"], reverse=True)
        picture = read_image(out / entry["picture"])
        assert picture.shape == (height, width, 3)


def test_the_tool_says_which_precision_runs(tmp_path, checkpoint, capsys, monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ("avx512_bf16",))
    write_image(tmp_path / "a.png", 64, 80, 0)
    argv = ["--checkpoint", str(checkpoint), str(tmp_path / "a.png"), "--output-dir", str(tmp_path / "out")]
    assert infer.main(argv) == 0
    assert "inference in bf16 on cpu (auto: the CPU has avx512_bf16), BatchNorm folded\n" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "detections.json").read_text())["precision"] == "bf16"


def test_score_threshold_and_glob_input(tmp_path, checkpoint):
    for seed, name in enumerate(["x.png", "y.png"]):
        write_image(tmp_path / name, 80, 100, seed)
    out = tmp_path / "out"
    assert (
        infer.main(
            [
                "--checkpoint",
                str(checkpoint),
                str(tmp_path / "*.png"),
                "--output-dir",
                str(out),
                "--score-thresh",
                "0.34",
            ]
        )
        == 0
    )
    report = json.loads((out / "detections.json").read_text())
    assert len(report["images"]) == 2 and report["failed"] == []
    assert all(score >= 0.34 for image in report["images"] for score in image["scores"])
    assert sorted(p.name for p in out.glob("*.jpg")) == ["x.jpg", "y.jpg"]


def test_only_images_of_one_size_share_a_batch(tmp_path, checkpoint):
    """A batch pads its images to the largest: an image's detections would depend on its neighbours."""
    sizes = [(80, 120), (80, 120), (100, 70), (80, 120), (80, 120), (80, 120)]
    paths = [tmp_path / f"{i}.png" for i in range(len(sizes))]
    for seed, (path, size) in enumerate(zip(paths, sizes)):
        write_image(path, *size, seed)
    model = load_detector(checkpoint).model
    batches = []
    model.register_forward_pre_hook(lambda module, args: batches.append([tuple(t.shape[-2:]) for t in args[0]]))
    results = list(Predictor(model, batch_size=2, score_thresh=0.0).predict_files(paths))
    assert batches == [[(80, 120)] * 2, [(100, 70)], [(80, 120)] * 2, [(80, 120)]]
    alone = list(Predictor(model, batch_size=1, score_thresh=0.0).predict_files(paths))
    for batched, single in zip(results, alone, strict=True):  # oneDNN sums a batch of 2 in another order
        np.testing.assert_array_equal(batched.labels, single.labels)
        np.testing.assert_allclose(batched.boxes, single.boxes, rtol=0, atol=1e-3)


def test_predictor_leaves_the_model_as_it_was(checkpoint):
    model = load_detector(checkpoint).model.train()
    default_threshold = model.roi_heads.score_thresh
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    everything = Predictor(model).predict_arrays([image])[0]["scores"]
    kept = Predictor(model, score_thresh=0.34).predict_arrays([image])[0]["scores"]
    assert all(module.training for module in model.modules())
    assert model.roi_heads.score_thresh == default_threshold == 0.0
    assert kept.tolist() == everything[everything >= 0.34].tolist() and 0 < len(kept) < len(everything)


@pytest.mark.parametrize(
    "argv_tail, message",
    [
        (["--checkpoint", "missing.pth", "INPUT"], "checkpoint not found: missing.pth"),
        (["--checkpoint", "CHECKPOINT", "no/such/*.png"], "no/such/*.png: no such image file or folder"),
        (["--checkpoint", "CHECKPOINT", "EMPTY"], "empty: folder without image files (looked for .bmp, "),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, checkpoint, capsys, argv_tail, message):
    write_image(tmp_path / "a.png", 32, 32, 0)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    replacements = {"INPUT": str(tmp_path / "a.png"), "CHECKPOINT": str(checkpoint), "EMPTY": str(tmp_path / "empty")}
    argv = [replacements.get(arg, arg) for arg in argv_tail]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(infer.main, argv + ["--output-dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_find_images_expands_folders_and_globs_once_each(tmp_path):
    for name in ["b.jpg", "a.PNG", "c.txt"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.jpg").write_bytes(b"")
    found = find_images([tmp_path / "c.txt", tmp_path, str(tmp_path / "**" / "*.jpg")])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["c.txt", "a.PNG", "b.jpg", "sub/d.jpg"]
    with pytest.raises(UserError, match="no such image file"):
        find_images([tmp_path / "missing.jpg"])


def test_draw_detections_draws_on_a_copy_in_the_class_colour():
    image = np.full((100, 120, 3), 255, np.uint8)
    drawn = draw_detections(image, np.array([[10.0, 30.0, 90.0, 80.0]]), np.array([2]), CLASS_NAMES, np.array([0.9]))
    assert (image == 255).all()
    assert tuple(drawn[55, 10]) == label_colour(2)  # left edge, below the caption
    assert (drawn[55, 50] == 255).all()  # inside the box stays as it was
    np.testing.assert_array_equal(draw_detections(image, np.zeros((0, 4)), np.zeros(0), CLASS_NAMES), image)
    with pytest.raises(ValueError, match="same length"):
        draw_detections(image, np.zeros((2, 4)), np.ones(1), CLASS_NAMES)


@pytest.mark.parametrize("background", ["white", "black", "the class colour"])
def test_a_box_stands_out_on_any_background(background):
    colour = label_colour(1)
    fill = {"white": (255, 255, 255), "black": (0, 0, 0), "the class colour": colour}[background]
    image = np.full((200, 300, 3), fill, np.uint8)
    drawn = draw_detections(image, np.array([[50.0, 60.0, 250.0, 180.0]]), np.array([1]), CLASS_NAMES)
    left_side = drawn[100:150, 44:57].astype(int)  # across the left edge of the box, below the caption
    contrast = np.abs(left_side - np.array(fill)).sum(axis=2).max(axis=1)
    assert (contrast >= 300).all()  # every row of the outline has a pixel far from the background
    assert (drawn[100:150, 47:53] == colour).all(axis=2).any(axis=1).all()  # in the class colour, >= 2 px wide


def test_draw_annotation_names_difficult_boxes():
    image = np.zeros((60, 60, 3), np.uint8)
    annotation = {"boxes": np.array([[5.0, 20, 30, 50]]), "labels": np.array([1]), "difficult": np.array([True])}
    plain = draw_annotation(image, {**annotation, "difficult": np.array([False])}, CLASS_NAMES)
    assert not np.array_equal(draw_annotation(image, annotation, CLASS_NAMES), plain)  # longer caption


def test_visualize_dataset_draws_ground_truth(tmp_path, shapes_root, capsys):
    tool = load_tool("visualize_dataset")
    out = tmp_path / "gt"
    argv = [
        "--dataset",
        "shapes",
        "--data-root",
        str(shapes_root),
        "--split",
        "val",
        "--output-dir",
        str(out),
        "--num-images",
        "2",
    ]
    assert tool.main(argv) == 0
    pictures = sorted(out.glob("*.jpg"))
    assert [p.name[:7] for p in pictures] == ["000000_", "000001_"]
    assert read_image(pictures[0]).shape == (128, 160, 3)
    assert "2 of 2 images drawn" in capsys.readouterr().out
