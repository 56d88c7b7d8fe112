"""Faster R-CNN with ResNet C4 and VGG-16 backbones (He et al., CVPR 2016), built on torchvision."""

from setuptools import find_packages, setup

setup(
    name="resnet-c4-detection",
    version="0.1.0",
    description=__doc__,
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["backbones", "detection", "detection.*"]),
    # The shipped configs (the defaults of --backbone/--dataset, and bases of your own) are package data:
    # detection/configs links to the top-level configs/ in the checkout, and is a real folder once installed.
    package_data={"detection": ["configs/**/*.yaml"]},
    python_requires=">=3.10",
    install_requires=[
        # The registry's torchvision is a CUDA build and needs the registry's CUDA torch (it runs
        # on CPU too); a local `+cpu` torch 2.13 wheel breaks `import torchvision`.
        "torch>=2.14",
        "torchvision>=0.29",
        "pycocotools>=2.0.7",
        "albumentations>=2.0",
        "opencv-python-headless>=4.12",
        "tensorboard>=2.14",
        "PyYAML>=6.0",
        "pydantic>=2.0",
        "tqdm>=4.66",
        "matplotlib>=3.7",
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "faster-coco-eval>=1.6",
            "onnx>=1.16",
            "onnxruntime>=1.18",
            "onnxscript>=0.1",
            "ruff>=0.6",
            "setuptools>=70.1",  # tests/test_install.py builds the wheel without build isolation
        ],
    },
)
