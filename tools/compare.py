"""Compare two or more evaluations of the same dataset split side by side.

    python tools/compare.py output/vgg16/eval_voc_2007_test output/resnet101/eval_voc_2007_test
    python tools/compare.py output/shapes_r18 output/shapes_r34 --labels R-18 R-34 --output-dir output/compare

Each RUN_OR_METRICS is an evaluation folder written by tools/eval_det.py (or its metrics.json), or a
training run's output folder (its last evaluation). Prints the summary metrics and the per-class AP with the
difference of each evaluation to the first and the winner of each class, as Markdown, and writes it to
compare.md with a grouped bar chart, compare.png, in --output-dir. Evaluations of different datasets,
splits or metrics are refused.
"""

import argparse
from collections.abc import Sequence

from detection.cli import prepare_output_dir, run_cli, tool_parser
from detection.errors import UserError

MARKDOWN_FILE = "compare.md"
CHART_FILE = "compare.png"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    parser.add_argument("evaluations", nargs="+", metavar="RUN_OR_METRICS", help="two or more evaluations")
    parser.add_argument("--labels", nargs="+", help="a name per evaluation (default: its backbone)")
    parser.add_argument("--output-dir", default="output/compare", help=f"where {MARKDOWN_FILE} and {CHART_FILE} go")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    output_dir = prepare_output_dir(args.output_dir, "--output-dir")
    from detection.evaluation.comparison import check_comparable, comparison_labels, comparison_markdown
    from detection.evaluation.plots import ap_bars_figure, save_figure
    from detection.evaluation.records import load_evaluation

    records = [load_evaluation(path) for path in args.evaluations]
    check_comparable(records)
    if args.labels is not None and len(args.labels) != len(records):
        raise UserError(f"--labels: give one per evaluation ({len(records)}), got {len(args.labels)}")
    labels = args.labels or comparison_labels(records)
    markdown = comparison_markdown(records, labels)
    (output_dir / MARKDOWN_FILE).write_text(markdown, encoding="utf-8")
    first = records[0]
    title = f"Per-class AP, {first.dataset} {first.split}"
    series = {label: record.per_class_ap() for label, record in zip(labels, records)}
    save_figure(ap_bars_figure(series, title), output_dir / CHART_FILE)
    print(markdown)
    print(f"wrote {output_dir / MARKDOWN_FILE} and {output_dir / CHART_FILE}")
    return 0


if __name__ == "__main__":
    run_cli(main)
