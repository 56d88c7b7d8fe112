"""torch.hub entry points: the toolkit's detectors, trained weights included, from a checkout or from GitHub.

    model = torch.hub.load("<owner>/<repo>", "fasterrcnn_resnet101_c4", weights="DEFAULT")  # detectron2's R101-C4
    model = torch.hub.load("path/to/checkout", "fasterrcnn_resnet101_c4", source="local", weights="DEFAULT")

The builders and their arguments are :mod:`detection.modeling.zoo`'s.
"""

dependencies = ["torch", "torchvision", "numpy", "yaml", "pydantic", "tqdm"]

from detection.modeling.zoo import (  # noqa: E402, F401
    fasterrcnn_resnet18_c4,
    fasterrcnn_resnet34_c4,
    fasterrcnn_resnet50_c4,
    fasterrcnn_resnet101_c4,
    fasterrcnn_resnet152_c4,
    fasterrcnn_vgg16,
)
