"""Roots, names, samplers and loaders: determinism, resume, grouping, sharding, skipped images."""

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import detection.data.build
import detection.data.dataset
from detection.data import (
    DatasetError,
    DatasetWarning,
    GroupedBatchSampler,
    ImageReadError,
    InferenceSampler,
    TrainingSampler,
    aspect_ratio_group_ids,
    build_dataset,
    build_test_loader,
    build_train_loader,
    collate_detection,
    resolve_dataset_root,
)


def batch_keys(loader, count):
    """``(index, image checksum, boxes)`` of every image of the first ``count`` batches."""
    return [
        [(t["index"], round(float(im.sum()), 3), t["boxes"].tolist()) for im, t in zip(images, targets)]
        for images, targets in itertools.islice(loader, count)
    ]


def test_root_resolution_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DETECTION_DATASETS", raising=False)
    assert resolve_dataset_root("voc") == Path("datasets") / "VOCdevkit"
    monkeypatch.setenv("DETECTION_DATASETS", "/data")
    assert resolve_dataset_root("coco") == Path("/data/coco")
    assert resolve_dataset_root("shapes") == Path("/data/shapes")
    assert resolve_dataset_root("coco", "/mine/coco2017") == Path("/mine/coco2017")


def test_missing_root_and_unknown_name_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DETECTION_DATASETS", raising=False)
    with pytest.raises(DatasetError) as info:
        build_dataset("coco", "val2017", train=False)
    message = str(info.value)
    assert message.startswith("datasets/coco: coco dataset folder not found (from the default ./datasets")
    assert "ROOT/annotations/instances_{split}.json" in message and "--dataset shapes" in message
    assert "\n" not in message
    monkeypatch.setenv("DETECTION_DATASETS", str(tmp_path / "elsewhere"))
    with pytest.raises(DatasetError, match=r"elsewhere/coco: .*from \$DETECTION_DATASETS"):
        build_dataset("coco", "val2017", train=False)
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'; known datasets: coco, shapes, voc "):
        build_dataset("imagenet", "train", train=True)


def test_train_loader_batches_are_deterministic_across_worker_counts(shapes_root):
    dataset = build_dataset("shapes", "train", root=shapes_root, train=True)
    reference = batch_keys(build_train_loader(dataset, 2, num_workers=0, seed=5), 6)
    assert reference == batch_keys(build_train_loader(dataset, 2, num_workers=2, seed=5), 6)
    assert reference != batch_keys(build_train_loader(dataset, 2, num_workers=0, seed=6), 6)
    images, targets = next(iter(build_train_loader(dataset, 3, num_workers=0, seed=5)))
    assert len(images) == len(targets) == 3 and all(im.dtype == torch.float32 for im in images)


def test_start_iter_resumes_exactly_without_decoding_skipped_images(shapes_root, monkeypatch):
    dataset = build_dataset("shapes", "train", root=shapes_root, train=True)
    full = batch_keys(build_train_loader(dataset, 2, num_workers=0, seed=3), 9)
    decoded = []
    read_image = detection.data.dataset.read_image
    monkeypatch.setattr(detection.data.dataset, "read_image", lambda path: decoded.append(path) or read_image(path))
    resumed = batch_keys(build_train_loader(dataset, 2, num_workers=0, seed=3, start_iter=6), 3)
    assert resumed == full[6:]
    assert len(decoded) == 6


class FakeSizes:
    def __init__(self, sizes):
        self.sizes = sizes

    def __len__(self):
        return len(self.sizes)

    def get_image_size(self, index):
        return self.sizes[index]


def test_aspect_ratio_groups_as_torchvision():
    sizes = FakeSizes([(100, 100), (100, 300), (300, 100), (100, 150), (100, 99)])
    assert aspect_ratio_group_ids(sizes, group_factor=0) == [1, 1, 0, 1, 0]  # width / height < 1: group 0
    # edges 2 ** linspace(-1, 1, 7): 0.5, 0.63, 0.79, 1, 1.26, 1.59, 2
    assert aspect_ratio_group_ids(sizes) == [4, 7, 0, 5, 3]


def test_grouped_batches_hold_one_group():
    group_ids = [i % 3 for i in range(30)]
    sampler = GroupedBatchSampler(TrainingSampler(30, seed=0), group_ids, batch_size=4)
    batches = list(itertools.islice(sampler, 50))
    assert all(len(batch) == 4 and len({group_ids[i] for i in batch}) == 1 for batch in batches)
    assert {group_ids[batch[0]] for batch in batches} == {0, 1, 2}


def test_train_loader_groups_portrait_and_landscape_images(tmp_path):
    (tmp_path / "val").mkdir()
    (tmp_path / "annotations").mkdir()
    images, annotations = [], []
    for i in range(8):
        height, width = (20, 30) if i % 2 else (30, 20)
        cv2.imwrite(str(tmp_path / "val" / f"{i}.png"), np.zeros((height, width, 3), np.uint8))
        images.append({"id": i, "file_name": f"{i}.png", "height": height, "width": width})
        annotations.append({"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0})
    data = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps(data))
    dataset = build_dataset("coco", "val", root=tmp_path, train=True)
    for batch, _ in itertools.islice(build_train_loader(dataset, 2, num_workers=0, seed=0), 12):
        assert len({tuple(image.shape) for image in batch}) == 1
    mixed = build_train_loader(dataset, 2, num_workers=0, seed=0, aspect_ratio_grouping=False)
    assert any(len({tuple(im.shape) for im in batch}) == 2 for batch, _ in itertools.islice(mixed, 12))


def test_training_shards_are_disjoint_within_a_pass():
    shards = [list(itertools.islice(TrainingSampler(10, seed=4, rank=r, world_size=2), 10)) for r in range(2)]
    assert sorted(shards[0][:5] + shards[1][:5]) == list(range(10))
    assert sorted(shards[0][5:] + shards[1][5:]) == list(range(10))
    assert shards[0] != shards[1]


def test_inference_shards_cover_every_image_once_in_order():
    shards = [list(InferenceSampler(10, rank=r, world_size=3)) for r in range(3)]
    assert shards == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    with pytest.raises(ValueError, match="rank"):
        InferenceSampler(10, rank=3, world_size=3)


def test_loaders_shard_under_distributed(shapes_root, monkeypatch):
    dataset = build_dataset("shapes", "val", root=shapes_root, train=False)
    whole = [t["index"] for _, targets in build_test_loader(dataset, 1, num_workers=0) for t in targets]
    assert whole == [0, 1, 2, 3]
    monkeypatch.setattr(detection.data.build, "get_rank", lambda: 1)
    monkeypatch.setattr(detection.data.build, "get_world_size", lambda: 2)
    loader = build_test_loader(dataset, 2, num_workers=0)
    assert len(loader) == 1
    assert [t["index"] for _, targets in loader for t in targets] == [2, 3]
    train = build_dataset("shapes", "val", root=shapes_root, train=True, keep_empty=True)
    rank1 = batch_keys(build_train_loader(train, 2, num_workers=0, seed=0, aspect_ratio_grouping=False), 2)
    monkeypatch.setattr(detection.data.build, "get_rank", lambda: 0)
    rank0 = batch_keys(build_train_loader(train, 2, num_workers=0, seed=0, aspect_ratio_grouping=False), 2)
    assert sorted(k[0] for batch in rank0 + rank1 for k in batch) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_collate_keeps_lists_and_drops_skipped_samples():
    a = (torch.zeros(3, 4, 5), {"index": 0})
    b = (torch.zeros(3, 6, 5), {"index": 2})
    images, targets = collate_detection([a, None, b])
    assert [im.shape[1] for im in images] == [4, 6] and [t["index"] for t in targets] == [0, 2]


def _copy_of_shapes(shapes_root: Path, root: Path) -> Path:
    """A private copy of the tiny shapes dataset (COCO format), for tests that damage its images."""
    for path in shapes_root.glob("coco/**/*"):
        target = root / path.relative_to(shapes_root)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.write_bytes(path.read_bytes())
    (root / "shapes.json").write_text((shapes_root / "shapes.json").read_text())
    return root


def test_unreadable_images_raise_or_are_skipped_and_counted(shapes_root, tmp_path):
    root = _copy_of_shapes(shapes_root, tmp_path / "shapes")
    bad = root / "coco" / "val" / "val_000001.jpg"
    bad.write_bytes(b"corrupt")
    strict = build_dataset("shapes", "val", root=root, train=False)
    with pytest.raises(ImageReadError, match="val_000001.jpg"):
        list(build_test_loader(strict, 1, num_workers=0))

    lenient = build_dataset("shapes", "val", root=root, train=False, on_bad_image="skip")
    loader = build_test_loader(lenient, 1, num_workers=0)
    with pytest.warns(DatasetWarning) as records:
        indices = [t["index"] for _, targets in loader for t in targets]
    assert indices == [0, 2, 3]
    assert loader.num_skipped == 1
    messages = [str(r.message) for r in records]
    assert any("val_000001.jpg" in m and "not a decodable image" in m for m in messages)
    assert messages[-1] == "1 unreadable images were skipped"


def test_train_loader_needs_images(tmp_path):
    (tmp_path / "val").mkdir()
    (tmp_path / "annotations").mkdir()
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 5, "width": 5}],
        "annotations": [],
        "categories": [{"id": 1, "name": "x"}],
    }
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps(data))
    dataset = build_dataset("coco", "val", root=tmp_path, train=True)
    with pytest.raises(DatasetError, match="no images.*keep_empty=True"):
        build_train_loader(dataset, 2, num_workers=0, seed=0)


def test_missing_and_empty_images_are_found_when_the_dataset_is_built(shapes_root, tmp_path):
    root = _copy_of_shapes(shapes_root, tmp_path / "shapes")
    images = root / "coco" / "train"
    (images / "train_000001.jpg").unlink()
    (images / "train_000004.jpg").write_bytes(b"")
    (images / "train_000006.jpg").unlink()
    (images / "train_000007.jpg").unlink()
    for train in (True, False):
        with pytest.raises(ImageReadError) as info:
            build_dataset("shapes", "train", root=root, train=train, keep_empty=True if train else None)
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(f"{images / 'train_000001.jpg'}: image file not found (4 of the 8 image files")
        assert f"{images / 'train_000004.jpg'} (is empty)" in message and "and 1 more" in message
    with pytest.warns(DatasetWarning, match=r"train_000001.jpg: image file not found \(4 of the 8"):
        dataset = build_dataset("shapes", "train", root=root, train=False, on_bad_image="skip")
    assert len(dataset) == 8  # read-time skipping reports them again, as any unreadable image


@pytest.mark.parametrize("num_workers", [0, 2])
def test_an_image_that_fails_to_decode_is_the_datasets_one_line_error_with_any_workers(
    shapes_root, tmp_path, num_workers
):
    root = _copy_of_shapes(shapes_root, tmp_path / "shapes")
    bad = root / "coco" / "val" / "val_000002.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")  # exists, not empty: passes the up-front check
    loader = build_test_loader(build_dataset("shapes", "val", root=root, train=False), 1, num_workers=num_workers)
    with pytest.raises(ImageReadError) as info:
        list(loader)
    assert str(info.value) == f"{bad}: not a decodable image (corrupt, truncated or unsupported format)"
    assert info.value.path == str(bad)
    train = build_dataset("shapes", "val", root=root, train=True, keep_empty=True)
    with pytest.raises(ImageReadError, match=r"^\S+val_000002.jpg: not a decodable image \(corrupt[^\n]*$"):
        list(itertools.islice(build_train_loader(train, 2, num_workers=num_workers, seed=0), 8))
