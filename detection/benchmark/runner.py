"""Speed, size and cost of the detectors: parameters, FLOPs, latency, one training step, memory.

Every model is measured in one process run, against torchvision's ``fasterrcnn_resnet50_fpn`` as a
reference, and against the machine's own matrix-multiply rate (float32, and each lower precision measured)
in the same run. Lower precisions (bf16, fp16) run the same models under ``torch.autocast``.

With random weights the RPN returns a varying number of proposals (often few), which would make the
per-RoI head's cost disappear from the figures. :class:`FixedProposalRPN` therefore runs the real RPN
(its cost, and its losses in training) and then hands the RoI heads exactly ``N`` proposals.
"""

import copy
import json
import logging
import math
import pickle
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torchvision
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.detection import FasterRCNN, fasterrcnn_resnet50_fpn
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.image_list import ImageList

from backbones import list_backbones
from backbones.detectron2_names import MSRA_PIXELS
from backbones.freezing import freeze_batchnorm

from ..errors import UserError
from ..memory import peak_memory_mib
from ..modeling.detector import build_detector
from ..modeling.fusion import fold_detector_batchnorm, optimize_for_inference
from ..modeling.transform import PixelTransform
from ..precision import DTYPES, InferencePrecision, autocast_for, native_bf16, resolve_precision

logger = logging.getLogger(__name__)

REFERENCE_MODEL = "fasterrcnn_resnet50_fpn"
# float32 inference variants; each lower precision P adds "P" (the plain model under autocast) and "all_P"
# (all three optimisations under autocast).
VARIANTS = ("plain", "inference_mode", "folded_bn", "channels_last", "all")


@dataclass(frozen=True)
class Setting:
    """A test-time scale: short side ``min_size``, long side cap ``max_size``, ``num_rois`` proposals."""

    min_size: int
    max_size: int
    num_rois: int

    @property
    def name(self) -> str:
        return f"{self.min_size}/{self.max_size}, {self.num_rois} RoIs"


PAPER_SETTING = Setting(600, 1000, 300)  # He et al. 2016 / py-faster-rcnn test setting
DETECTRON2_SETTING = Setting(800, 1333, 1000)  # detectron2's C4 test setting


@dataclass(frozen=True)
class BenchmarkOptions:
    """What to measure, and how often.

    Args:
        backbones: registered backbone names.
        reference: also measure torchvision's ``fasterrcnn_resnet50_fpn``, last.
        settings: test scales; the input image is ``min_size x max_size`` pixels (H x W), so the
            model runs at exactly that size. The first setting is also used for the speed-up
            variants and the training step.
        warmup: untimed runs before timing (after one more run that counts FLOPs).
        repeats: timed inference runs per setting and variant.
        train_steps: timed training steps (after one untimed step).
        train_batch_size: images per training step.
        train_rois_per_image: RoIs the head samples per training image; None: the model's own
            ``box_batch_size_per_image`` (128 for the paper's detectors, 512 for the reference).
        num_classes: classes including the background (21: PASCAL VOC).
        matmul_size: side of the square matrices that measure the matrix-multiply rate; None: 2048 on
            CPU, 8192 on CUDA (big enough to reach the peak rate).
        precisions: lower precisions measured beside float32 (inference and training step), as
            ``--precision`` takes them: ``auto`` (bf16 where the hardware has it natively, else none),
            ``bf16``, ``fp16`` (CUDA); ``fp32`` adds nothing.
        pretrained_layout: build the models as ImageNet weights would (see :func:`build_benchmark_model`).
    """

    backbones: tuple[str, ...] = ("resnet101", "vgg16")
    reference: bool = True
    settings: tuple[Setting, ...] = (PAPER_SETTING, DETECTRON2_SETTING)
    device: str = "cpu"
    warmup: int = 1
    repeats: int = 5
    train_steps: int = 2
    train_batch_size: int = 2
    train_rois_per_image: int | None = None
    num_classes: int = 21
    matmul_size: int | None = None
    precisions: tuple[str, ...] = ("auto",)
    pretrained_layout: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.settings:
            raise UserError("benchmark: give at least one setting (--size)")
        if self.repeats < 1 or self.train_steps < 1 or self.train_batch_size < 1 or self.warmup < 0:
            raise UserError("benchmark: --repeats, --train-steps and --train-batch-size must be >= 1, --warmup >= 0")
        unknown = sorted(set(self.backbones) - set(list_backbones()))
        if unknown:
            raise UserError(
                f"unknown backbone(s) {', '.join(unknown)}; registered backbones: {', '.join(list_backbones())}"
            )
        if self.device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda: CUDA is not available on this machine")
        for name in self.precisions:
            resolve_precision(name, self.device)  # an unknown name or fp16 on CPU is an error now, not after hours

    def lower_precisions(self) -> list[InferencePrecision]:
        """The resolved :attr:`precisions` other than float32, each once, in the order given."""
        resolved = {}
        for name in self.precisions:
            precision = resolve_precision(name, self.device)
            if precision.name != "fp32":
                resolved.setdefault(precision.name, precision)
        return list(resolved.values())


class FixedProposalRPN(nn.Module):
    """Runs ``rpn`` and replaces its proposals by ``num_proposals`` fixed boxes per image.

    The RPN's cost (head, decoding, NMS) and, in training, its losses stay real; the RoI heads always
    see exactly ``num_proposals`` boxes of many scales and shapes, the same at every call (seeded).
    """

    def __init__(self, rpn: nn.Module, num_proposals: int, seed: int = 0) -> None:
        super().__init__()
        self.rpn = rpn
        self.num_proposals = num_proposals
        self.seed = seed

    def forward(
        self, images: ImageList, features: dict[str, Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        _, losses = self.rpn(images, features, targets)
        device = images.tensors.device
        proposals = [fixed_proposals(size, self.num_proposals, self.seed).to(device) for size in images.image_sizes]
        return proposals, losses


def fixed_proposals(image_size: tuple[int, int], num: int, seed: int = 0) -> Tensor:
    """``[num, 4]`` xyxy boxes inside an ``(H, W)`` image: log-uniform sides from 16 px to the short side,
    aspect ratios 1:2..2:1, uniform centres (clipped to the image)."""
    height, width = image_size
    generator = torch.Generator().manual_seed(seed)
    uniform = torch.rand(num, 4, generator=generator)
    side = torch.exp(math.log(16) + uniform[:, 0] * (math.log(max(min(height, width), 17)) - math.log(16)))
    aspect = torch.exp((uniform[:, 1] - 0.5) * 2 * math.log(2))
    half_w, half_h = side * aspect.sqrt() / 2, side / aspect.sqrt() / 2
    cx, cy = uniform[:, 2] * width, uniform[:, 3] * height
    boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height - 1)
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    return boxes


def build_benchmark_model(name: str, num_classes: int, pretrained_layout: bool = False) -> nn.Module:
    """A registered backbone's detector, or the reference, with random weights (training mode).

    By default every layer trains and BatchNorm is ``nn.BatchNorm2d``, as torchvision builds its own
    reference without weights. With ``pretrained_layout``, the layout that ImageNet weights give and the
    recipes train (detectron2's ``FREEZE_AT=2``, torchvision's ``trainable_backbone_layers=3``): the stem
    and the first stage frozen, ``FrozenBatchNorm2d`` everywhere, with the statistics of a forward pass on
    random input (so that activations keep their scale through the unnormalised blocks). No download.
    """
    if name == REFERENCE_MODEL:
        scratch = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes)
    else:
        scratch = build_detector(name, num_classes)
    if not pretrained_layout:
        return scratch
    _calibrate_batchnorm(scratch, num_classes)
    if name == REFERENCE_MODEL:
        # What fasterrcnn_resnet50_fpn builds with weights_backbone (without, it makes every layer trainable).
        backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=3)
        model = FasterRCNN(backbone, num_classes=num_classes)
    else:
        model = build_detector(name, num_classes, backbone_kwargs={"trainable_layers": 3})
    missing, unexpected = freeze_batchnorm(model).load_state_dict(scratch.state_dict(), strict=False)
    if missing or any(not key.endswith("num_batches_tracked") for key in unexpected):
        raise RuntimeError(f"{name}: pretrained layout differs from the model ({missing}, {unexpected})")
    return model


def _calibrate_batchnorm(model: nn.Module, num_classes: int, size: tuple[int, int] = (224, 320)) -> None:
    """Sets every BatchNorm's statistics to those of one training-mode forward pass on a random image of
    ``size`` (the model's test scale is set again by :func:`configure`)."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # the plain average: this batch's statistics
    model.transform.min_size, model.transform.max_size = (size[0],), size[1]
    image = torch.rand(3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.train()([image], [random_targets(size, num_classes, torch.device("cpu"), seed=0)])


def configure(model: nn.Module, setting: Setting, num_proposals: int, seed: int) -> nn.Module:
    """Sets the test scale and wraps the RPN so that exactly ``num_proposals`` boxes reach the head."""
    model.transform.min_size = (setting.min_size,)
    model.transform.max_size = setting.max_size
    rpn = model.rpn.rpn if isinstance(model.rpn, FixedProposalRPN) else model.rpn
    model.rpn = FixedProposalRPN(rpn, num_proposals, seed)
    return model


def count_parameters(model: nn.Module) -> dict[str, int]:
    return {
        "total": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


def count_flops(model: nn.Module, image: Tensor) -> dict[str, int]:
    """FLOPs of one inference on ``image`` ``[3, H, W]`` (multiply-adds count 2), by part.

    Returns:
        ``trunk`` (backbone, shared), ``rpn`` (RPN head, per image), ``head`` (RoI heads: pooling,
        per-RoI head and predictor, for all RoIs) and ``total`` (the whole model).
    """
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model([image])
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    root = type(model).__name__
    return {
        "trunk": counts.get(f"{root}.backbone", 0),
        "rpn": counts.get(f"{root}.rpn", 0),
        "head": counts.get(f"{root}.roi_heads", 0),
        "total": counter.get_total_flops(),
    }


class PartTimer:
    """Wall time of the backbone and of the RoI heads in every forward pass, via module hooks."""

    PARTS = {"trunk": "backbone", "head": "roi_heads"}

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.device = device
        self.times: dict[str, list[float]] = {part: [] for part in self.PARTS}
        self._start: dict[str, float] = {}
        self._handles = []
        for part, attribute in self.PARTS.items():
            module = getattr(model, attribute)
            self._handles.append(module.register_forward_pre_hook(self._pre_hook(part)))
            self._handles.append(module.register_forward_hook(self._post_hook(part)))

    def _pre_hook(self, part: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            synchronize(self.device)
            self._start[part] = time.perf_counter()

        return hook

    def _post_hook(self, part: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            synchronize(self.device)
            self.times[part].append(time.perf_counter() - self._start[part])

        return hook

    def clear(self) -> None:
        for values in self.times.values():
            values.clear()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summarize(times: Sequence[float]) -> dict[str, float]:
    """Median, quartiles, min and max of a list of values (durations, ratios) and their count."""
    values = sorted(times)
    if len(values) > 1:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1 = q3 = values[0]
    return {
        "median": statistics.median(values),
        "q1": q1,
        "q3": q3,
        "min": values[0],
        "max": values[-1],
        "n": len(values),
    }


def time_interleaved(
    runners: dict[str, Callable[[], None]], warmup: int, repeats: int, after_warmup: Callable[[], None] = lambda: None
) -> dict[str, list[float]]:
    """Durations of each runner, run round-robin so that a change of machine load hits all alike."""
    for _ in range(warmup):
        for run in runners.values():
            run()
    after_warmup()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def inference_runner(
    model: nn.Module,
    image: Tensor,
    grad_mode: Callable[[], AbstractContextManager],
    precision: InferencePrecision | None = None,
) -> Callable[[], None]:
    def run() -> None:
        with grad_mode(), autocast_for(precision):
            model([image])
        synchronize(image.device)

    return run


def measure_matmul_rate(device: torch.device, size: int, dtype: torch.dtype = torch.float32, repeats: int = 5) -> float:
    """Achieved FLOP/s of a ``size x size`` matrix multiply in ``dtype`` on ``device`` (median of ``repeats``)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    times = time_interleaved({"mm": lambda: (torch.mm(a, b), synchronize(device))}, warmup=1, repeats=repeats)["mm"]
    return 2 * size**3 / statistics.median(times)


def random_image(setting: Setting, device: torch.device, seed: int) -> Tensor:
    """``[3, min_size, max_size]`` in [0, 1]: the model resizes it by a factor of exactly 1."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(3, setting.min_size, setting.max_size, generator=generator).to(device)


def benchmark_inference(
    model: nn.Module,
    setting: Setting,
    options: BenchmarkOptions,
    matmul_rates: dict[str, float],
    variants: bool,
) -> dict[str, Any]:
    """FLOPs and latency of ``model`` (eval mode) at ``setting``, in float32 and in each lower precision
    (the plain model under autocast); with ``variants``, also the speed-up of each inference optimisation
    against the plain model, timed round-robin in the same loop.

    Args:
        matmul_rates: the matrix-multiply FLOP/s of each precision (``"fp32"``, ``"bf16"``, ...).
    """
    device = torch.device(options.device)
    lower = options.lower_precisions()
    model = configure(model, setting, setting.num_rois, options.seed).eval()
    image = random_image(setting, device, options.seed)
    flops = count_flops(model, image)
    # One copy of the plain model per precision, so that each one's part timer sees its own runs only.
    plain = {"fp32": model, **{precision.name: copy.deepcopy(model) for precision in lower}}
    runners = {"plain": inference_runner(model, image, torch.no_grad)}
    runners.update({p.name: inference_runner(plain[p.name], image, torch.no_grad, p) for p in lower})
    folded_layers = 0
    if variants:
        folded = copy.deepcopy(model)
        folded_layers = fold_detector_batchnorm(folded)
        optimized = optimize_for_inference(model, fold_bn=True, channels_last=True)
        runners["inference_mode"] = inference_runner(copy.deepcopy(model), image, torch.inference_mode)
        runners["folded_bn"] = inference_runner(folded, image, torch.no_grad)
        runners["channels_last"] = inference_runner(
            optimize_for_inference(model, fold_bn=False, channels_last=True), image, torch.no_grad
        )
        runners["all"] = inference_runner(optimized, image, torch.inference_mode)
        runners.update({f"all_{p.name}": inference_runner(optimized, image, torch.inference_mode, p) for p in lower})
    timers = {name: PartTimer(copy_, device) for name, copy_ in plain.items()}
    try:
        times = time_interleaved(
            runners, options.warmup, options.repeats, after_warmup=lambda: [t.clear() for t in timers.values()]
        )
    finally:
        for timer in timers.values():
            timer.remove()
    result: dict[str, Any] = {
        "setting": asdict(setting),
        "flops": {**flops, "head_per_roi": flops["head"] / setting.num_rois},
        "precisions": {
            name: _latency(times["plain" if name == "fp32" else name], timers[name], flops, matmul_rates[name])
            for name in plain
        },
    }
    if variants:
        result["variants"] = _variants(times, [p.name for p in lower], folded_layers)
    return result


def _latency(times: list[float], timer: PartTimer, flops: dict[str, int], matmul_rate: float) -> dict[str, Any]:
    """Latency, images/s, trunk and head times and the fraction of the matmul rate they reach."""
    latency = summarize(times)
    trunk_s, head_s = statistics.median(timer.times["trunk"]), statistics.median(timer.times["head"])
    return {
        "latency_s": latency,
        "images_per_s": 1.0 / latency["median"],
        "trunk_s": trunk_s,
        "head_s": head_s,
        "matmul_fraction": {
            "total": flops["total"] / latency["median"] / matmul_rate,
            "trunk": flops["trunk"] / trunk_s / matmul_rate,
            "head": flops["head"] / head_s / matmul_rate,
        },
    }


def _variants(times: dict[str, list[float]], lower: list[str], folded_layers: int) -> dict[str, Any]:
    """Speed-ups against the plain model, and of each lower precision's ``all_P`` over the fastest float32
    variant (by median latency); ratios are taken within each round-robin round, whose runs are adjacent in
    time and share the machine's load."""
    best_fp32 = min(VARIANTS, key=lambda name: statistics.median(times[name]))
    return {
        "latency_s": {name: summarize(values) for name, values in times.items()},
        "speedup": {
            name: summarize([p / v for p, v in zip(times["plain"], values)])
            for name, values in times.items()
            if name != "plain"
        },
        "folded_bn_layers": folded_layers,
        "best_fp32": best_fp32,
        "over_best_fp32": {
            name: summarize([b / v for b, v in zip(times[best_fp32], times[f"all_{name}"])]) for name in lower
        },
    }


@dataclass(frozen=True)
class TrainTask:
    """One model's training-step measurement in one precision, run in a fresh process (peak RSS is per
    process)."""

    model: str
    setting: Setting
    options: BenchmarkOptions = field(default_factory=BenchmarkOptions)
    precision: str = "fp32"


def benchmark_train_step(task: TrainTask) -> dict[str, Any]:
    """Time of forward + backward + SGD step on a batch, and the peak memory.

    The RPN's proposals are replaced by its training top-N fixed boxes, from which the RoI heads
    sample their usual ``box_batch_size_per_image`` RoIs per image. In bf16 or fp16 the forward pass
    runs under autocast, as training's ``solver.amp`` does (fp16 with a gradient scaler).
    """
    options, setting = task.options, task.setting
    device = torch.device(options.device)
    precision = resolve_precision(task.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.name == "fp16")
    torch.manual_seed(options.seed)
    model = build_benchmark_model(task.model, options.num_classes, options.pretrained_layout).train()
    configure(model, setting, model.rpn.post_nms_top_n(), options.seed).to(device)  # the training top-N
    if options.train_rois_per_image is not None:
        model.roi_heads.fg_bg_sampler.batch_size_per_image = options.train_rois_per_image
    images = [random_image(setting, device, options.seed + i) for i in range(options.train_batch_size)]
    targets = [
        random_targets((setting.min_size, setting.max_size), options.num_classes, device, options.seed + i)
        for i in range(options.train_batch_size)
    ]
    optimizer = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9, weight_decay=1e-4
    )
    baseline_mib = peak_memory_mib(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> None:
        with precision.autocast():
            losses = model(images, targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(sum(losses.values())).backward()
        scaler.step(optimizer)
        scaler.update()
        synchronize(device)

    times = time_interleaved({"step": step}, warmup=1, repeats=options.train_steps)["step"]
    return {
        "setting": asdict(setting),
        "precision": precision.name,
        "batch_size": options.train_batch_size,
        "rois_per_image": model.roi_heads.fg_bg_sampler.batch_size_per_image,
        "step_s": summarize(times),
        "peak_memory_mib": peak_memory_mib(device),
        "baseline_memory_mib": baseline_mib,
        "memory_kind": "CUDA max_memory_allocated" if device.type == "cuda" else "process peak RSS",
    }


def random_targets(
    image_size: tuple[int, int], num_classes: int, device: torch.device, seed: int, num_boxes: int = 3
) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    boxes = fixed_proposals(image_size, num_boxes, seed)
    labels = torch.randint(1, num_classes, (num_boxes,), generator=generator)
    return {"boxes": boxes.to(device), "labels": labels.to(device)}


def run_in_fresh_process(task: TrainTask) -> dict[str, Any]:
    """:func:`benchmark_train_step` in a new interpreter, so that its peak memory is its own.

    A plain subprocess rather than ``multiprocessing``, whose spawn start method re-imports the
    caller's main module. The task goes in pickled on stdin; the result comes back as JSON on stdout.
    """
    command = [sys.executable, "-c", "from detection.benchmark.runner import train_step_main; train_step_main()"]
    child = subprocess.run(command, input=pickle.dumps(task), capture_output=True, check=False)
    if child.returncode != 0:
        raise RuntimeError(
            f"training-step benchmark of {task.model} failed:\n{child.stderr.decode(errors='replace')[-4000:]}"
        )
    return json.loads(child.stdout.decode().strip().splitlines()[-1])


def train_step_main() -> None:
    """Entry point of the child process started by :func:`run_in_fresh_process`."""
    task = pickle.load(sys.stdin.buffer)
    print(json.dumps(benchmark_train_step(task)))


def cpu_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device, matmul_rates: dict[str, float], matmul_size: int) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {
        "device": device.type,
        "device_name": name,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "native_bf16": native_bf16(device),
        "matmul_size": matmul_size,
        "matmul_flops_per_s": matmul_rates,
    }


def run_benchmark(options: BenchmarkOptions, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measures every requested backbone's detector (and the reference); returns the JSON-ready result.

    Args:
        log: called with a line of progress before each measurement; default: this module's logger.
    """
    log = log or logger.info
    device = torch.device(options.device)
    lower = options.lower_precisions()
    log("precisions: fp32 and " + (", ".join(p.describe() for p in lower) if lower else "no other"))
    matmul_size = options.matmul_size or (8192 if device.type == "cuda" else 2048)
    matmul_rates = {}
    for name in ("fp32", *(p.name for p in lower)):
        log(f"measuring the {matmul_size}x{matmul_size} {name} matrix-multiply rate on {device}")
        matmul_rates[name] = measure_matmul_rate(device, matmul_size, DTYPES[name])
    models = []
    for name in (*options.backbones, *((REFERENCE_MODEL,) if options.reference else ())):
        torch.manual_seed(options.seed)
        model = build_benchmark_model(name, options.num_classes, options.pretrained_layout).to(device)
        entry: dict[str, Any] = {"name": name, "parameters": count_parameters(model), "inference": []}
        for index, setting in enumerate(options.settings):
            log(f"{name}: inference at {setting.name}")
            entry["inference"].append(benchmark_inference(model, setting, options, matmul_rates, variants=index == 0))
        del model
        entry["train"] = {}
        for precision in matmul_rates:
            log(f"{name}: {precision} training step in a fresh process")
            entry["train"][precision] = run_in_fresh_process(TrainTask(name, options.settings[0], options, precision))
        models.append(entry)
    return {
        "machine": machine_info(device, matmul_rates, matmul_size),
        "options": asdict(options),
        "reference_model": REFERENCE_MODEL if options.reference else None,
        "models": models,
    }


def benchmark_resize(
    source_sizes: Sequence[tuple[int, int]],
    min_size: int,
    max_size: int,
    device: torch.device,
    warmup: int = 2,
    repeats: int = 20,
) -> list[dict[str, Any]]:
    """The detector's input transform (resize, normalise, batch) on one image of each ``(H, W)`` in
    ``source_sizes``, with torchvision's resize and with detectron2's (``model.resize``), timed interleaved.

    Returns one entry per size: ``source``, each style's output ``size`` and times (``summarize``), and the
    ``ratio`` detectron2 / torchvision of the medians.
    """
    transforms = {
        style: PixelTransform(min_size, max_size, MSRA_PIXELS, size_divisible=1, resize=style).eval().to(device)
        for style in ("torchvision", "detectron2")
    }
    results = []
    for height, width in source_sizes:
        generator = torch.Generator().manual_seed(height * width)
        image = (torch.randint(0, 256, (3, height, width), generator=generator).float() / 255.0).to(device)

        runners = {style: _transform_runner(transform, image) for style, transform in transforms.items()}
        times = time_interleaved(runners, warmup, repeats)
        entry: dict[str, Any] = {"source": [height, width]}
        for style, transform in transforms.items():
            with torch.inference_mode():
                size = transform([image])[0].image_sizes[0]
            entry[style] = {"size": list(size), "seconds": summarize(times[style])}
        entry["ratio"] = entry["detectron2"]["seconds"]["median"] / entry["torchvision"]["seconds"]["median"]
        results.append(entry)
    return results


def _transform_runner(transform: nn.Module, image: Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode():
            transform([image])
        synchronize(image.device)

    return run
