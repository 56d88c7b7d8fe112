"""The module map of docs/design.md as a test: which part of the package may import which, and what a
light import (the config, a checkpoint) must not load."""

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("modeling", "data", "evaluation", "inference", "benchmark", "engine")
TOP = "detection"  # the modules directly in detection/: config, cli, checkpoint, errors, ...

# part -> the parts it may import (itself always).
MAY_IMPORT = {
    "backbones": set(),
    TOP: {"backbones", "detection.modeling"},
    "detection.modeling": {"backbones", TOP},
    "detection.data": {TOP},
    "detection.evaluation": {TOP, "detection.data", "detection.modeling"},
    "detection.inference": {TOP, "detection.data", "detection.modeling"},
    "detection.benchmark": {"backbones", TOP, "detection.modeling"},
    "detection.engine": {"backbones", TOP, *(f"detection.{name}" for name in SUBPACKAGES)},
    "tools": {"backbones", TOP, *(f"detection.{name}" for name in SUBPACKAGES)},
}
# Single modules allowed beyond their part's rule, each with its reason.
EXCEPTIONS = {
    ("detection.cli", "detection.data.errors"),  # run_cli shows a dataset error as one line
    # The dataset registry (no torch): the --dataset choices, and the config's check of data.dataset.
    ("detection.cli", "detection.data.catalog"),
    ("detection.config", "detection.data.catalog"),
}


def part_of(module: str) -> str | None:
    """``backbones``, ``detection`` (top-level modules), ``detection.<subpackage>``, ``tools``; None: outside."""
    names = module.split(".")
    if names[0] in ("backbones", "tools"):
        return names[0]
    if names[0] != "detection":
        return None
    return f"detection.{names[1]}" if len(names) > 1 and names[1] in SUBPACKAGES else TOP


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in the file, relative imports resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from . import x` names modules
    return found


def test_every_import_follows_the_module_map():
    violations = []
    for path in sorted([*REPO.glob("backbones/**/*.py"), *REPO.glob("detection/**/*.py"), *REPO.glob("tools/*.py")]):
        source = module_name(path)
        allowed = MAY_IMPORT[part_of(source)] | {part_of(source)}
        for target in sorted(imported_modules(path)):
            part = part_of(target)
            if part is not None and part not in allowed and not _excepted(source, target):
                violations.append(f"{source} imports {target}")
    assert violations == []


def _excepted(source: str, target: str) -> bool:
    return any(source == s and (target == t or target.startswith(t + ".")) for s, t in EXCEPTIONS)


LIGHT_IMPORTS = """
import json, sys
import detection, detection.config
config_loads = sorted(m for m in ("torch", "numpy") if m in sys.modules)
import detection.checkpoint
heavy = ("pycocotools", "albumentations", "cv2", "detection.evaluation", "detection.engine")
# detection.data itself (lazy) and its registry (no torch) are light; its readers and loaders are not.
heavy += ("detection.data.build", "detection.data.dataset", "detection.data.coco", "detection.data.voc")
print(json.dumps({"config": config_loads, "checkpoint": sorted(m for m in heavy if m in sys.modules)}))
"""


def test_the_config_loads_no_torch_and_a_checkpoint_no_data_or_evaluation_code():
    result = subprocess.run([sys.executable, "-c", LIGHT_IMPORTS], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == {"config": [], "checkpoint": []}
