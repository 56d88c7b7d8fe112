"""What the detector's resize costs per image: detectron2's (``model.resize: detectron2``, PIL's bilinear filter on
the 8-bit image, written in torch) against torchvision's (``interpolate`` on the float image), from each
--from size to the test scale (short side MIN, long side at most MAX), with the normalisation and batching
of the model's transform around both.

    OMP_NUM_THREADS=1 python tools/benchmark_resize.py --from 480x640 600x1000 1000x1500 --to 800x1333

Prints a markdown table (median milliseconds, quartiles, detectron2 / torchvision). Time on an idle machine.
"""

import argparse
from collections.abc import Sequence

from detection.cli import add_device_argument, resolve_device, run_cli, tool_parser


def parse_size(text: str) -> tuple[int, int]:
    """``"480x640"`` -> ``(480, 640)``."""
    try:
        first, second = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected AxB such as 480x640, got {text!r}") from None
    if first < 1 or second < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes, got {text!r}")
    return first, second


def main(argv: Sequence[str] | None = None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument(
        "--from",
        dest="sources",
        type=parse_size,
        nargs="+",
        default=[(480, 640), (600, 1000), (1000, 1500)],
        metavar="HxW",
        help="input image sizes (COCO's typical 480x640 is enlarged, 1000x1500 reduced)",
    )
    parser.add_argument("--to", type=parse_size, default=(800, 1333), metavar="MINxMAX", help="the test scale")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    add_device_argument(parser)
    args = parser.parse_args(argv)
    import torch

    from detection.benchmark.runner import benchmark_resize

    device = torch.device(resolve_device(args.device))
    results = benchmark_resize(args.sources, args.to[0], args.to[1], device, args.warmup, args.repeats)
    threads = torch.get_num_threads()
    print(f"Resize + normalise + batch of one image, {device.type}, {threads} thread(s), {args.repeats} runs")
    print("| input | output (torchvision / detectron2) | torchvision ms | detectron2 ms | detectron2 / torchvision |")
    print("|---|---|---|---|---|")
    for entry in results:
        tv, d2 = entry["torchvision"], entry["detectron2"]
        cells = [
            "x".join(map(str, entry["source"])),
            f"{'x'.join(map(str, tv['size']))} / {'x'.join(map(str, d2['size']))}",
            *(_milliseconds(style["seconds"]) for style in (tv, d2)),
            f"{entry['ratio']:.2f}",
        ]
        print("| " + " | ".join(cells) + " |")
    return 0


def _milliseconds(summary: dict[str, float]) -> str:
    return f"{summary['median'] * 1e3:.1f} ({summary['q1'] * 1e3:.1f}-{summary['q3'] * 1e3:.1f})"


if __name__ == "__main__":
    run_cli(main)
