"""VOCDetection: devkit layout, the 1-based pixel convention, difficult flags, parts, errors."""

import shutil

import cv2
import numpy as np
import pytest

from detection.data import VOC_CLASSES, DatasetError, DatasetWarning, VOCDetection, build_dataset, parse_voc_split
from detection.evaluation import evaluate_predictions
from detection.modeling.outputs import Detections

HEIGHT, WIDTH = 20, 30


def voc_object(name, box, difficult=None, extra=""):
    tags = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    flag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    return f"<object><name>{name}</name><truncated>1</truncated>{flag}<bndbox>{tags}</bndbox>{extra}</object>"


def write_voc(devkit, year, split, images, filenames=None):
    """``images``: ``{image_name: [object xml, ...]}``; writes XMLs, 20x30 JPEGs and the split file.

    ``filenames``: ``{image_name: <filename> of its XML}`` where it is not ``<image_name>.jpg``."""
    folder = devkit / f"VOC{year}"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for name, objects in images.items():
        xml = (
            f"<annotation><filename>{(filenames or {}).get(name, f'{name}.jpg')}</filename>"
            f"<size><width>{WIDTH}</width><height>{HEIGHT}</height><depth>3</depth></size>"
            f"{''.join(objects)}</annotation>"
        )
        (folder / "Annotations" / f"{name}.xml").write_text(xml)
        cv2.imwrite(str(folder / "JPEGImages" / f"{name}.jpg"), np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8))
    (folder / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{n}\n" for n in images))
    return folder


def test_one_based_inclusive_boxes_become_zero_based_continuous(tmp_path):
    write_voc(
        tmp_path, "2007", "test", {"000001": [voc_object("dog", (1, 1, 10, 5)), voc_object("cat", (5, 6, 30, 20))]}
    )
    dataset = VOCDetection(tmp_path, "2007_test")
    # Pixel columns 1..10 (1-based, inclusive) are 0..9 (0-based): x1 = 0, x2 = 10.
    np.testing.assert_array_equal(dataset.get_annotation(0)["boxes"], [[0, 0, 10, 5], [4, 5, 30, 20]])
    assert dataset.get_annotation(0)["labels"].tolist() == [VOC_CLASSES.index("dog") + 1, VOC_CLASSES.index("cat") + 1]


def test_zero_and_out_of_image_coordinates_do_not_underflow(tmp_path):
    write_voc(
        tmp_path,
        "2007",
        "test",
        {
            "000001": [
                voc_object("dog", (0, 0, 10, 5)),  # invalid 0: clipped, not wrapped around
                voc_object("cat", (3.5, 2, 40, 25)),  # past the image: clipped
                voc_object("cat", (12, 3, 12, 3)),  # xmin == xmax: one pixel, kept
                voc_object("cat", (13, 3, 12, 9)),  # reversed: dropped
            ]
        },
    )
    with pytest.warns(DatasetWarning, match=r"000001.xml: dropped 1 boxes"):
        dataset = VOCDetection(tmp_path, "2007_test")
    boxes = dataset.get_annotation(0)["boxes"]
    np.testing.assert_array_equal(boxes, [[0, 0, 10, 5], [2.5, 1, 30, 20], [11, 2, 12, 3]])


def test_parts_are_not_objects(tmp_path):
    part = "<part><name>head</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>4</xmax><ymax>4</ymax></bndbox></part>"
    write_voc(tmp_path, "2012", "val", {"2008_000001": [voc_object("person", (1, 1, 10, 10), extra=part)]})
    annotation = VOCDetection(tmp_path, "2012_val").get_annotation(0)
    assert annotation["labels"].tolist() == [VOC_CLASSES.index("person") + 1]
    np.testing.assert_array_equal(annotation["boxes"], [[0, 0, 10, 10]])


def test_difficult_flags(tmp_path):
    write_voc(
        tmp_path,
        "2007",
        "test",
        {
            "000001": [voc_object("dog", (1, 1, 10, 10), difficult=1), voc_object("cat", (2, 2, 8, 8))],
            "000002": [voc_object("dog", (1, 1, 10, 10), difficult=1)],
        },
    )
    dataset = VOCDetection(tmp_path, "2007_test")
    assert dataset.get_annotation(0)["difficult"].tolist() == [True, False]  # missing tag: 0
    assert dataset.get_annotation(0)["iscrowd"].tolist() == [False, False]
    assert dataset[0][1]["labels"].tolist() == [VOC_CLASSES.index("cat") + 1]  # difficult: not a target
    assert dataset[1][1]["boxes"].shape == (0, 4)
    with_difficult = VOCDetection(tmp_path, "2007_test", use_difficult=True)
    assert len(with_difficult[0][1]["labels"]) == 2
    # An image with only difficult objects has no training target.
    train = build_dataset("voc", "2007_test", root=tmp_path, train=True)
    assert [train.image_name(i) for i in range(len(train))] == ["000001"]


def test_unknown_class_name_names_the_xml(tmp_path):
    folder = write_voc(
        tmp_path, "2007", "test", {"000001": [voc_object("dog", (1, 1, 5, 5)), voc_object("unicorn", (1, 1, 5, 5))]}
    )
    with pytest.raises(DatasetError, match="unknown class name 'unicorn'") as info:
        VOCDetection(tmp_path, "2007_test")
    assert info.value.path == str(folder / "Annotations" / "000001.xml")
    assert info.value.field == "object[1]/name"


def test_custom_classes(tmp_path):
    write_voc(
        tmp_path, "2007", "test", {"000001": [voc_object("unicorn", (1, 1, 5, 5)), voc_object("dog", (1, 1, 5, 5))]}
    )
    dataset = build_dataset("voc", "2007_test", root=tmp_path, train=False, classes=("unicorn", "dog"))
    assert dataset.class_names == ("unicorn", "dog")
    assert dataset.get_annotation(0)["labels"].tolist() == [1, 2]


def test_years_and_splits_concatenate(tmp_path):
    write_voc(
        tmp_path,
        "2007",
        "trainval",
        {"000005": [voc_object("dog", (1, 1, 5, 5))], "000007": [voc_object("cat", (1, 1, 5, 5))]},
    )
    write_voc(tmp_path, "2012", "trainval", {"2008_000002": [voc_object("bus", (1, 1, 5, 5))]})
    dataset = build_dataset("voc", "2007_trainval+2012_trainval", root=tmp_path, train=True)
    assert len(dataset) == 3
    assert [dataset.image_name(i) for i in range(3)] == ["000005", "000007", "2008_000002"]
    assert [dataset[i][1]["image_id"] for i in range(3)] == [0, 1, 2]
    assert dataset.get_annotation(2)["file_name"] == str(tmp_path / "VOC2012" / "JPEGImages" / "2008_000002.jpg")
    assert dataset.get_image_size(2) == (HEIGHT, WIDTH)


def test_split_strings():
    assert parse_voc_split("2007_trainval+2012_trainval") == [("2007", "trainval"), ("2012", "trainval")]
    assert parse_voc_split("2007_test") == [("2007", "test")]
    with pytest.raises(DatasetError, match="expected YEAR_SPLIT"):
        parse_voc_split("trainval")


@pytest.mark.parametrize(
    "xml, field, message",
    [
        ("<annotation><size><width>30", None, "malformed XML"),
        ("<annotation><size><height>20</height></size></annotation>", "size/width", "missing"),
        (
            "<annotation><size><width>30</width><height>20</height></size>"
            "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax></bndbox></object></annotation>",
            "object[0]/bndbox/ymax",
            "missing",
        ),
        (
            "<annotation><size><width>30</width><height>20</height></size>"
            "<object><name>dog</name><bndbox><xmin>a</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>",
            "object[0]/bndbox/xmin",
            "expected a number, got 'a'",
        ),
    ],
)
def test_malformed_xml_names_the_file_and_field(tmp_path, xml, field, message):
    folder = write_voc(tmp_path, "2007", "test", {"000001": []})
    (folder / "Annotations" / "000001.xml").write_text(xml)
    with pytest.raises(DatasetError, match=message) as info:
        VOCDetection(tmp_path, "2007_test")
    assert info.value.path == str(folder / "Annotations" / "000001.xml") and info.value.field == field


def test_missing_devkit_is_one_helpful_line(tmp_path):
    with pytest.raises(DatasetError) as info:
        build_dataset("voc", "2007_test", root=tmp_path / "VOCdevkit", train=False)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "VOCdevkit") in message
    assert "ROOT/VOC{year}/Annotations/*.xml" in message and "--dataset shapes" in message
    (tmp_path / "VOCdevkit").mkdir()
    with pytest.raises(
        DatasetError, match=r"VOC2007/ImageSets/Main/test.txt: VOC split file not found.*--dataset shapes"
    ):
        build_dataset("voc", "2007_test", root=tmp_path / "VOCdevkit", train=False)


def test_the_image_is_the_devkit_id_s_whatever_the_xml_filename_says(tmp_path):
    filenames = {"000001": "renamed_by_a_tool.jpg", "000002": "IMG_0007.jpg", "000003": "000003.jpg"}
    folder = write_voc(
        tmp_path, "2007", "test", {name: [voc_object("dog", (1, 1, 5, 5))] for name in filenames}, filenames
    )
    images = folder / "JPEGImages"
    (images / "000002.jpg").rename(images / "IMG_0007.jpg")  # only <filename> finds it
    (images / "000003.jpg").rename(images / "000003.png")  # the id with another extension
    dataset = build_dataset("voc", "2007_test", root=tmp_path, train=False)  # checks that every image exists
    files = [dataset.get_annotation(i)["file_name"] for i in range(3)]
    assert files == [str(images / "000001.jpg"), str(images / "IMG_0007.jpg"), str(images / "000003.png")]
    assert [dataset.image_name(i) for i in range(3)] == ["000001", "000002", "000003"]

    box = np.array([[0.0, 0.0, 5.0, 5.0]], dtype=np.float32)
    dog = np.array([VOC_CLASSES.index("dog") + 1])
    predictions = {i: Detections(boxes=box, scores=np.array([0.9], dtype=np.float32), labels=dog) for i in range(3)}
    evaluate_predictions(dataset, predictions, "voc", output_dir=tmp_path / "results")
    lines = (tmp_path / "results" / "comp4_det_test_dog.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["000001", "000002", "000003"]  # the devkit's ids


def test_a_folder_without_image_sets_takes_the_xml_stem_as_the_id(tmp_path):
    write_voc(tmp_path, "2007", "test", {"a": [voc_object("dog", (1, 1, 5, 5))]}, {"a": "photo_of_a.jpg"})
    folder = tmp_path / "VOC2007"
    shutil.rmtree(folder / "ImageSets")
    with pytest.warns(DatasetWarning, match="no ImageSets/Main"):
        dataset = VOCDetection(folder, "test", layout="folder")
    assert dataset.get_annotation(0)["file_name"] == str(folder / "JPEGImages" / "a.jpg")
    assert dataset.image_name(0) == "a"
