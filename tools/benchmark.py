"""Parameters, FLOPs, inference latency and one training step of each backbone's detector.

    python tools/benchmark.py --backbones resnet101,vgg16 --device cpu --size 600x1000 800x1333 --rois 300 1000
    python tools/benchmark.py --device cuda --precision bf16 fp16 --size 600x1000 800x1333 --rois 300 1000

Prints markdown tables and writes the full result as JSON. torchvision's fasterrcnn_resnet50_fpn is
measured in the same run as a reference; every model in float32 and in each --precision (autocast).
See docs/benchmarks.md.
"""

import argparse
import shlex
import sys
from collections.abc import Sequence

from detection.cli import add_device_argument, prepare_output_file, resolve_device, run_cli, tool_parser
from detection.config import PRECISIONS
from detection.errors import UserError
from detection.files import write_json


def parse_size(text: str) -> tuple[int, int]:
    """``"600x1000"`` -> ``(600, 1000)``: short side, long-side cap."""
    try:
        min_size, max_size = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MINxMAX such as 600x1000, got {text!r}") from None
    if not 0 < min_size <= max_size:
        raise argparse.ArgumentTypeError(f"expected 0 < MIN <= MAX, got {text!r}")
    return min_size, max_size


def build_parser() -> argparse.ArgumentParser:
    parser = tool_parser(__doc__)
    parser.add_argument("--backbones", default="resnet101,vgg16", help="comma-separated registered backbones, or 'all'")
    parser.add_argument(
        "--reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure torchvision's fasterrcnn_resnet50_fpn too",
    )
    add_device_argument(parser)
    parser.add_argument(
        "--size",
        type=parse_size,
        nargs="+",
        default=[(600, 1000), (800, 1333)],
        metavar="MINxMAX",
        help="test scales (the input image is MIN x MAX pixels)",
    )
    parser.add_argument(
        "--rois", type=int, nargs="+", default=[300, 1000], help="RoIs per image for each --size (one value: for all)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    parser.add_argument("--repeats", type=int, default=5, help="timed inference runs")
    parser.add_argument("--train-steps", type=int, default=2, help="timed training steps (after one untimed step)")
    parser.add_argument("--train-batch-size", type=int, default=2)
    parser.add_argument("--train-rois", type=int, help="RoIs sampled per training image (default: each model's own)")
    parser.add_argument("--num-classes", type=int, default=21, help="classes including the background")
    parser.add_argument(
        "--matmul-size",
        type=int,
        help="side of the matrices that measure the matmul rate (default: 2048 CPU, 8192 CUDA)",
    )
    parser.add_argument(
        "--precision",
        nargs="+",
        choices=PRECISIONS,
        default=["auto"],
        help="lower precisions measured beside fp32 under autocast (inference and training step): auto is bf16 "
        "where the CPU (avx512_bf16, AMX) or the GPU computes bfloat16 natively, else none; fp16 needs CUDA",
    )
    parser.add_argument(
        "--pretrained-layout",
        action="store_true",
        help="build the models as ImageNet weights would and the recipes train them: stem and first stage "
        "frozen, FrozenBatchNorm2d (random values, no download); default: every layer trains, BatchNorm2d",
    )
    parser.add_argument("--output", default="output/benchmark.json", help="JSON file to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    rois = args.rois * len(args.size) if len(args.rois) == 1 else args.rois
    if len(rois) != len(args.size):
        raise UserError(f"--rois: give one value or one per --size ({len(args.size)}), got {len(args.rois)}")
    prepare_output_file(args.output, "--output")
    device = resolve_device(args.device)
    from backbones import list_backbones
    from detection.benchmark.report import markdown_report
    from detection.benchmark.runner import BenchmarkOptions, Setting, run_benchmark

    backbones = list_backbones() if args.backbones == "all" else [name for name in args.backbones.split(",") if name]
    options = BenchmarkOptions(
        backbones=tuple(backbones),
        reference=args.reference,
        settings=tuple(Setting(min_size, max_size, n) for (min_size, max_size), n in zip(args.size, rois)),
        device=device,
        warmup=args.warmup,
        repeats=args.repeats,
        train_steps=args.train_steps,
        train_batch_size=args.train_batch_size,
        train_rois_per_image=args.train_rois,
        num_classes=args.num_classes,
        matmul_size=args.matmul_size,
        precisions=tuple(args.precision),
        pretrained_layout=args.pretrained_layout,
    )
    result = {
        "command": shlex.join(["python", "tools/benchmark.py", *argv]),
        **run_benchmark(options, log=lambda line: print(line, file=sys.stderr)),
    }
    print(markdown_report(result))
    write_json(args.output, result)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
