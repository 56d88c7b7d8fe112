"""CocoDetection: class mapping, box conversion and clean-up, empty images, malformed files."""

import json

import cv2
import numpy as np
import pytest
import torch

from detection.data import CocoDetection, DatasetError, DatasetWarning, ImageReadError, build_dataset

HEIGHT, WIDTH = 20, 30


def write_coco(root, images, annotations, categories, split="val"):
    """A COCO tree under ``root``; ``images`` are ``(id, file_name)``, drawn as real 20x30 JPEGs."""
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    for _, file_name in images:
        cv2.imwrite(str(root / split / file_name), np.full((HEIGHT, WIDTH, 3), 128, dtype=np.uint8))
    data = {
        "images": [{"id": i, "file_name": f, "height": HEIGHT, "width": WIDTH} for i, f in images],
        "annotations": [{"id": k + 1, "iscrowd": 0, **ann} for k, ann in enumerate(annotations)],
        "categories": [{"id": i, "name": n} for i, n in categories],
    }
    path = root / "annotations" / f"instances_{split}.json"
    path.write_text(json.dumps(data))
    return path


def coco_dataset(root, **kwargs):
    return CocoDetection(root / "val", root / "annotations" / "instances_val.json", **kwargs)


# Category ids with gaps and out of order, as in real COCO-format files.
CATEGORIES = [(90, "toothbrush"), (3, "car"), (17, "cat")]


def test_category_ids_with_gaps_round_trip(tmp_path):
    write_coco(
        tmp_path,
        [(7, "a.jpg")],
        [
            {"image_id": 7, "category_id": 90, "bbox": [1, 1, 5, 5]},
            {"image_id": 7, "category_id": 3, "bbox": [2, 2, 5, 5]},
            {"image_id": 7, "category_id": 17, "bbox": [3, 3, 5, 5]},
        ],
        CATEGORIES,
    )
    dataset = coco_dataset(tmp_path)
    assert dataset.class_names == ("car", "cat", "toothbrush")  # labels follow increasing id
    assert dataset.category_id_to_label == {3: 1, 17: 2, 90: 3}
    assert dataset.label_to_category_id == {1: 3, 2: 17, 3: 90}
    labels = dataset.get_annotation(0)["labels"]
    assert labels.tolist() == [3, 1, 2]
    original = [ann["category_id"] for ann in dataset.coco.dataset["annotations"]]
    assert [dataset.label_to_category_id[int(k)] for k in labels] == original
    for label, name in enumerate(dataset.class_names, start=1):
        assert dataset.coco.cats[dataset.label_to_category_id[label]]["name"] == name


def test_classes_choose_the_label_order(tmp_path):
    write_coco(tmp_path, [(1, "a.jpg")], [{"image_id": 1, "category_id": 90, "bbox": [1, 1, 5, 5]}], CATEGORIES)
    dataset = coco_dataset(tmp_path, classes=("toothbrush", "cat", "car"))
    assert dataset.class_names == ("toothbrush", "cat", "car")
    assert dataset.label_to_category_id == {1: 90, 2: 17, 3: 3}
    assert dataset.get_annotation(0)["labels"].tolist() == [1]
    with pytest.raises(DatasetError, match=r"classes \['dog'\] are not categories"):
        coco_dataset(tmp_path, classes=("car", "dog"))


def test_annotation_of_a_category_outside_classes_is_an_error(tmp_path):
    path = write_coco(tmp_path, [(1, "a.jpg")], [{"image_id": 1, "category_id": 90, "bbox": [1, 1, 5, 5]}], CATEGORIES)
    with pytest.raises(DatasetError, match="'toothbrush' .* is not one of the classes") as info:
        coco_dataset(tmp_path, classes=("car", "cat"))
    assert info.value.path == str(path) and info.value.field == "annotations[0].category_id"


def test_boxes_xywh_to_xyxy_clipped_and_degenerate_dropped(tmp_path):
    write_coco(
        tmp_path,
        [(1, "a.jpg"), (2, "b.jpg")],
        [
            {"image_id": 1, "category_id": 3, "bbox": [2.5, 3, 10, 4]},  # kept as is
            {"image_id": 1, "category_id": 3, "bbox": [-5, 15, 50, 10]},  # clipped to the image
            {"image_id": 1, "category_id": 3, "bbox": [4, 4, 0, 5]},  # zero width
            {"image_id": 1, "category_id": 3, "bbox": [4, 4, -3, 5]},  # negative width
            {"image_id": 2, "category_id": 3, "bbox": [40, 5, 10, 5]},  # right of the image
            {"image_id": 2, "category_id": 3, "bbox": [1, 1, 2, 2]},
        ],
        CATEGORIES,
    )
    with pytest.warns(DatasetWarning, match=r"instances_val.json: dropped 3 boxes .* in 2 images: a.jpg, b.jpg"):
        dataset = coco_dataset(tmp_path)
    np.testing.assert_array_equal(dataset.get_annotation(0)["boxes"], [[2.5, 3, 12.5, 7], [0, 15, 30, 20]])
    np.testing.assert_array_equal(dataset.get_annotation(1)["boxes"], [[1, 1, 3, 3]])
    _, target = dataset[0]
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    torch.testing.assert_close(target["boxes"], torch.tensor([[2.5, 3, 12.5, 7], [0, 15, 30, 20]]))


def test_crowd_boxes_are_kept_for_evaluation_but_are_not_targets(tmp_path):
    write_coco(
        tmp_path,
        [(1, "a.jpg"), (2, "crowd_only.jpg")],
        [
            {"image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5]},
            {"image_id": 1, "category_id": 17, "bbox": [2, 2, 8, 8], "iscrowd": 1},
            {"image_id": 2, "category_id": 17, "bbox": [2, 2, 8, 8], "iscrowd": 1},
        ],
        CATEGORIES,
    )
    dataset = coco_dataset(tmp_path)
    annotation = dataset.get_annotation(0)
    assert annotation["iscrowd"].tolist() == [False, True]
    assert annotation["labels"].tolist() == [1, 2]
    _, target = dataset[0]
    assert target["labels"].tolist() == [1]
    assert dataset[1][1]["boxes"].shape == (0, 4)
    # An image with only crowd boxes has no training target: dropped for training.
    train = build_dataset("coco", "val", root=tmp_path, train=True)
    assert len(train) == 1 and train.get_annotation(0)["image_id"] == 1


def test_images_without_boxes(tmp_path):
    write_coco(
        tmp_path,
        [(1, "a.jpg"), (2, "empty.jpg"), (3, "c.jpg")],
        [
            {"image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5]},
            {"image_id": 3, "category_id": 3, "bbox": [1, 1, 5, 5]},
        ],
        CATEGORIES,
    )
    train = build_dataset("coco", "val", root=tmp_path, train=True)
    assert [train[i][1]["image_id"] for i in range(len(train))] == [1, 3]
    assert [train[i][1]["index"] for i in range(len(train))] == [0, 1]
    negatives = build_dataset("coco", "val", root=tmp_path, train=True, keep_empty=True)
    assert len(negatives) == 3
    image, target = negatives[1]
    assert image.shape == (3, HEIGHT, WIDTH)
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,) and target["image_id"] == 2
    evaluation = build_dataset("coco", "val", root=tmp_path, train=False, keep_empty=False)
    assert len(evaluation) == 3


def test_getitem_returns_the_image_contract(tmp_path):
    write_coco(tmp_path, [(5, "a.jpg")], [{"image_id": 5, "category_id": 3, "bbox": [1, 1, 5, 5]}], CATEGORIES)
    image, target = coco_dataset(tmp_path)[0]
    assert image.dtype == torch.float32 and image.shape == (3, HEIGHT, WIDTH) and image.is_contiguous()
    torch.testing.assert_close(image, torch.full_like(image, 128 / 255), atol=2 / 255, rtol=0)
    assert target["index"] == 0 and target["image_id"] == 5


def test_building_reads_no_image(tmp_path, monkeypatch):
    write_coco(
        tmp_path, [(1, "a.jpg"), (2, "b.jpg")], [{"image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5]}], CATEGORIES
    )
    for image in (tmp_path / "val").iterdir():
        image.write_bytes(b"not an image")  # any attempt to decode one would fail; the files exist (checked)

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded")

    monkeypatch.setattr(cv2, "imdecodeWithMetadata", no_decoding)
    monkeypatch.setattr(cv2, "imread", no_decoding)
    dataset = build_dataset("coco", "val", root=tmp_path, train=True, keep_empty=True)
    assert len(dataset) == 2
    assert dataset.get_image_size(1) == (HEIGHT, WIDTH)
    assert dataset.get_annotation(0)["file_name"] == str(tmp_path / "val" / "a.jpg")
    assert len(dataset.coco.imgs) == 2


def test_image_size_differing_from_the_annotation(tmp_path):
    write_coco(tmp_path, [(1, "a.jpg")], [{"image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5]}], CATEGORIES)
    cv2.imwrite(str(tmp_path / "val" / "a.jpg"), np.zeros((WIDTH, HEIGHT, 3), dtype=np.uint8))
    with pytest.raises(ImageReadError, match=r"a.jpg: decoded image is 30x20 .* annotation says 20x30"):
        coco_dataset(tmp_path)[0]


def test_missing_annotation_file_is_one_helpful_line(tmp_path):
    (tmp_path / "annotations").mkdir()
    with pytest.raises(DatasetError) as info:
        build_dataset("coco", "train2017", root=tmp_path, train=True)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "annotations" / "instances_train2017.json") in message
    assert "ROOT/annotations/instances_{split}.json" in message and "--dataset shapes" in message


@pytest.mark.parametrize(
    "mutate, field, message",
    [
        (lambda d: d.pop("images"), "images", "missing"),
        (lambda d: d.pop("annotations"), "annotations", "missing"),
        (lambda d: d.pop("categories"), "categories", "missing"),
        (lambda d: d["annotations"][1].update(bbox=[1, 2, 3]), "annotations[1].bbox", "4 numbers"),
        (lambda d: d["annotations"][1].update(bbox=[1, 2, "3", 4]), "annotations[1].bbox", "4 numbers"),
        (lambda d: d["annotations"][0].pop("bbox"), "annotations[0].bbox", "missing"),
        (lambda d: d["annotations"][1].pop("image_id"), "annotations[1].image_id", "missing"),
        (lambda d: d["annotations"][1].pop("id"), "annotations[1].id", "missing"),
        (lambda d: d["annotations"][1].update(image_id=99), "annotations[1].image_id", "image id 99"),
        (lambda d: d["annotations"][0].update(category_id=4), "annotations[0].category_id", "category id 4"),
        (lambda d: d["images"][0].pop("height"), "images[0].height", "positive integer"),
        (lambda d: d["images"][0].update(file_name=None), "images[0].file_name", "a string"),
        (lambda d: d["categories"][0].pop("name"), "categories[0].name", "a string"),
    ],
)
def test_malformed_json_names_the_file_and_field(tmp_path, mutate, field, message):
    path = write_coco(
        tmp_path,
        [(1, "a.jpg")],
        [
            {"image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5]},
            {"image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5]},
        ],
        CATEGORIES,
    )
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=message) as info:
        coco_dataset(tmp_path)
    assert info.value.path == str(path) and info.value.field == field
    assert str(info.value).startswith(f"{path}: field '{field}': ")


def test_invalid_json_syntax(tmp_path):
    path = write_coco(tmp_path, [(1, "a.jpg")], [], CATEGORIES)
    path.write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"instances_val.json: malformed JSON: .*line 1"):
        coco_dataset(tmp_path)
