"""The package as users get it: --help without torch, shipped configs found from any folder, a real
(non-editable) install built as a wheel."""

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from detection.config import CONFIG_DIR, find_config, load_config
from detection.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
TOOLS = sorted((REPO / "tools").glob("*.py"))
HEAVY = ("torch", "torchvision", "matplotlib", "pycocotools", "albumentations")
SHIPPED = sorted(path.relative_to(REPO / "configs").as_posix() for path in (REPO / "configs").rglob("*.yaml"))


def imported_modules(stderr: str) -> set[str]:
    """The modules ``python -X importtime`` reports."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def run_python(*arguments: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, *arguments], cwd=cwd, env=environment, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("tool", TOOLS, ids=[tool.stem for tool in TOOLS])
def test_help_and_argument_errors_import_no_torch(tool):
    start = time.perf_counter()
    result = run_python("-X", "importtime", str(tool), "--help")
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout and "options:" in result.stdout
    heavy = sorted(m for m in imported_modules(result.stderr) if m.split(".")[0] in HEAVY)
    assert not heavy, f"{tool.name} --help imported {heavy[:5]}"
    assert elapsed < 2.0, f"{tool.name} --help took {elapsed:.2f} s"  # typically 0.1-0.3 s

    result = run_python("-X", "importtime", str(tool), "--no-such-option")
    assert result.returncode == 2 and ": error: " in result.stderr
    assert not any(m.split(".")[0] in HEAVY for m in imported_modules(result.stderr))


def test_help_shows_the_defaults():
    text = " ".join(run_python(str(REPO / "tools" / "infer.py"), "--help").stdout.split())
    assert "at least this (default: 0.5)" in text and "(default: output/infer)" in text
    assert "(default: None)" not in text and "(default: False)" not in text


def test_shipped_configs_are_found_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_config("configs/coco/resnet101.yaml") == CONFIG_DIR / "coco" / "resnet101.yaml"
    assert find_config("voc/vgg16.yaml") == CONFIG_DIR / "voc" / "vgg16.yaml"
    assert load_config("configs/coco/resnet101.yaml").model.backbone == "resnet101"
    (tmp_path / "mine.yaml").write_text("_base_: custom/base.yaml\ndata:\n  dataset: widgets\n")
    config = load_config("mine.yaml")
    assert config.data.dataset == "widgets" and config.model.weights == "imagenet"
    with pytest.raises(ConfigError, match="config file not found: nope.yaml .*shipped as .*configs/nope.yaml"):
        load_config("nope.yaml")


@pytest.mark.slow
def test_wheel_ships_the_configs_and_the_installed_package_runs_the_tools(shapes_root, tmp_path):
    pytest.importorskip("setuptools")
    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the checkout
    ignored = shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", "build", "datasets", "output", "runs"
    )
    shutil.copytree(REPO, source, symlinks=True, ignore=ignored)
    wheels = tmp_path / "wheels"
    build = run_python("-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(wheels), "-q")
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("resnet_c4_detection-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"detection/configs/{config}" for config in SHIPPED} <= names
    assert {"detection/data/catalog.py", "detection/modeling/zoo.py", "backbones/registry.py"} <= names

    site = tmp_path / "site"
    install = run_python("-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel), "-q")
    assert install.returncode == 0, install.stderr
    assert not (site / "detection" / "configs").is_symlink() and (site / "detection" / "configs" / "coco").is_dir()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(site)}
    check = run_python(
        "-c",
        "import detection, backbones; from detection.config import load_config; "
        "print(detection.__file__, backbones.__file__, load_config('configs/coco/resnet101.yaml').model.backbone)",
        cwd=elsewhere,
        env=env,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == [
        str(site / "detection" / "__init__.py"),
        str(site / "backbones" / "__init__.py"),
        "resnet101",
    ]
    # A tool of the checkout, run from another folder, picks its default config from the installed package.
    out = tmp_path / "pictures"
    tool = [str(REPO / "tools" / "visualize_dataset.py"), "--dataset", "shapes", "--backbone", "resnet18"]
    result = run_python(
        *tool, "--data-root", str(shapes_root), "--num-images", "2", "--output-dir", str(out), cwd=elsewhere, env=env
    )
    assert result.returncode == 0, result.stderr
    assert len(list(out.glob("*.jpg"))) == 2
