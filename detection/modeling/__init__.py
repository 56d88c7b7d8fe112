"""The detector: options, assembly of torchvision's FasterRCNN from a backbone, RoI poolers, the
config-to-model factory and inference-time BatchNorm folding. Import the submodules directly."""
