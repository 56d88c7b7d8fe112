"""Loading a trained detector by name: the first load (hash, conversion, cache) and a later one (the cache).

    python tools/benchmark_weights.py --weights COCO_DETECTRON2_3X

The weights' file must be in torch hub's cache, or is downloaded there first (not timed). The first load is
timed in a temporary cache beside it that holds the file only (a link to it: nothing of the real cache is
changed): the file is hashed, converted, the conversion saved, and the detector built and loaded. The
second load is the same call again, from the conversion cached by the first. Each is the builder call,
``fasterrcnn_*_c4(weights=NAME)``, in this process (imports not counted).
"""

import os
import shutil
import tempfile
import time
from collections.abc import Sequence

from detection.cli import run_cli, tool_parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument("--weights", default="COCO_DETECTRON2_3X", help="named detector weights (docs/detectron2.md)")
    args = parser.parse_args(argv)
    import torch

    from detection.hub import cache_dir, cached_file
    from detection.modeling import zoo
    from detection.modeling.weights import detector_backbone, find_weights

    weights = find_weights(args.weights)
    if weights is None:
        parser.error(f"--weights {args.weights}: not a weights name")
    builder = getattr(zoo, f"fasterrcnn_{detector_backbone(weights)}_c4")
    source = cached_file(weights.url).path
    with tempfile.TemporaryDirectory(dir=cache_dir().parent, prefix=".benchmark-") as home:
        copy = os.path.join(home, "hub", "checkpoints", source.name)
        os.makedirs(os.path.dirname(copy))
        try:
            os.link(source, copy)
        except OSError:  # another file system
            shutil.copyfile(source, copy)
        previous = os.environ.get("TORCH_HOME")
        os.environ["TORCH_HOME"] = home
        try:
            times = []
            for _ in range(2):
                start = time.perf_counter()
                builder(weights=weights, progress=False)
                times.append(time.perf_counter() - start)
        finally:
            if previous is None:
                del os.environ["TORCH_HOME"]
            else:
                os.environ["TORCH_HOME"] = previous
    print(
        f"{weights!r} ({source.stat().st_size / 2**20:.0f} MiB file), {torch.get_num_threads()} thread(s): "
        f"first load {times[0]:.2f} s (hash, conversion, cache, detector), second load {times[1]:.2f} s (cache)"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
