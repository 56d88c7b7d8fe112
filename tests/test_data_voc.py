"""VOCDetection: devkit layout, the 1-based pixel convention, difficult flags, parts, errors."""

import cv2
import numpy as np
import pytest

from detection.data import VOC_CLASSES, DatasetError, DatasetWarning, VOCDetection, build_dataset, parse_voc_split

HEIGHT, WIDTH = 20, 30


def voc_object(name, box, difficult=None, extra=""):
    tags = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    flag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    return f"<object><name>{name}</name><truncated>1</truncated>{flag}<bndbox>{tags}</bndbox>{extra}</object>"


def write_voc(devkit, year, split, images):
    """``images``: ``{image_name: [object xml, ...]}``; writes XMLs, 20x30 JPEGs and the split file."""
    folder = devkit / f"VOC{year}"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for name, objects in images.items():
        xml = (
            f"<annotation><filename>{name}.jpg</filename>"
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
