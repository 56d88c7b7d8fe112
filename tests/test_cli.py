"""What every tool shares: output folders checked before any work, --device, Ctrl+C while starting."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from inference_helpers import load_tool, write_tiny_checkpoint
from training_helpers import REPO

from detection.cli import prepare_output_dir, prepare_output_file
from detection.errors import UserError


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("checkpoint") / "model.pth")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((40, 60, 3), np.uint8))
    return folder


@pytest.fixture
def read_only_folder(tmp_path: Path):
    """A folder nobody can create files in, root included.

    Tests run as root here, which ignores permission bits, so for root the folder is made immutable
    (``chattr +i``: not even root may add an entry until the flag is removed); other users get mode 0555.
    """
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root without chattr +i support: cannot make a folder read-only for root")
    try:
        yield folder
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


# tool, its arguments before the output, the output option (or the positional's name), whether it names a file
TOOLS = [
    ("train_det", ["--dataset", "shapes"], "--output-dir", False),
    ("eval_det", ["--checkpoint", "{checkpoint}"], "--output-dir", False),
    ("infer", ["--checkpoint", "{checkpoint}", "{images}"], "--output-dir", False),
    ("export", ["--checkpoint", "{checkpoint}", "--format", "torchscript"], "--output", True),
    ("benchmark", ["--backbones", "resnet18", "--no-reference"], "--output", True),
    ("make_shapes_dataset", ["--train", "2", "--val", "1"], "--out", False),
    ("visualize_dataset", ["--dataset", "shapes"], "--output-dir", False),
    ("convert_detectron2", ["{checkpoint}"], "OUTPUT", True),
    ("compare", ["{checkpoint}", "{checkpoint}"], "--output-dir", False),
]


@pytest.mark.parametrize("tool, arguments, option, is_file", TOOLS, ids=[tool[0] for tool in TOOLS])
def test_every_tool_refuses_an_output_under_a_regular_file_before_any_work(
    tmp_path, checkpoint, images, capsys, tool, arguments, option, is_file
):
    regular_file = tmp_path / "notes.txt"
    regular_file.write_text("a file, not a folder")
    output = regular_file / "out"
    argv = [arg.format(checkpoint=checkpoint, images=images) for arg in arguments]
    if is_file:
        output = output / "result.json"
    with pytest.raises(UserError) as info:
        load_tool(tool).main(argv + ([option] if option.startswith("--") else []) + [str(output)])
    assert str(info.value) == f"{option} {output}: cannot write there ({regular_file} is a file, not a folder)"
    assert capsys.readouterr().out == ""  # nothing measured, generated or loaded first


def test_an_unwritable_folder_is_one_line_and_exit_2(read_only_folder, checkpoint, images):
    with pytest.raises(UserError, match=rf"^--output-dir {read_only_folder / 'out'}: cannot write there \(\w"):
        prepare_output_dir(read_only_folder / "out", "--output-dir")
    with pytest.raises(UserError, match=rf"^--output {read_only_folder / 'model.pt'}: cannot write there"):
        prepare_output_file(read_only_folder / "model.pt", "--output")
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "infer.py"), "--checkpoint", str(checkpoint), str(images)]
        + ["--output-dir", str(read_only_folder)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --output-dir {read_only_folder}: cannot write there ({os.strerror(result_errno(read_only_folder))})"
    ]


def result_errno(folder: Path) -> int:
    """The error number creating a file in ``folder`` gives (EPERM for an immutable folder, EACCES by mode)."""
    try:
        (folder / "probe").touch()
    except OSError as error:
        return error.errno
    raise AssertionError(f"{folder} is writable")


def test_output_file_must_not_be_a_folder(tmp_path):
    with pytest.raises(UserError, match=rf"^--output {tmp_path}: is a folder; expected a file name$"):
        prepare_output_file(tmp_path, "--output")
    assert prepare_output_dir(tmp_path / "a" / "b", "--output-dir").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the write test leaves nothing behind


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("tool", ["infer", "eval_det"])
def test_device_cuda_without_a_gpu_is_one_line(tmp_path, checkpoint, images, tool):
    argv = ["--checkpoint", str(checkpoint), "--device", "cuda", "--output-dir", str(tmp_path / "out")]
    if tool == "infer":
        argv.append(str(images))
    with pytest.raises(UserError, match=r"^--device cuda: CUDA is not available .*; use --device cpu$"):
        load_tool(tool).main(argv)


def test_the_tools_shared_module_loads_no_torch():
    code = "import sys, detection.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def tool_command(tool: str, arguments: list[str], option: str, is_file: bool, tmp_path: Path, **values) -> list[str]:
    output = tmp_path / ("out/result.json" if is_file else "out")
    argv = [arg.format(**values) for arg in arguments] + ([option] if option.startswith("--") else []) + [str(output)]
    return [sys.executable, str(REPO / "tools" / f"{tool}.py"), *argv]


def start_tool(command: list[str], tmp_path: Path) -> subprocess.Popen:
    """Starts a tool with SIGINT at its default action: a test suite started as a shell's background job
    (``bash .ci/run &``) ignores SIGINT, and a child would inherit that and never see Ctrl+C."""
    return subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, "DETECTION_DATASETS": str(tmp_path / "datasets")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def assert_interrupted(process: subprocess.Popen) -> None:
    try:
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()  # a tool that went on must not outlive the test
    assert stderr.strip() == "interrupted", stderr[-3000:]
    assert process.returncode in (130, -signal.SIGINT)


TOOLS_WITH_TORCH = [tool for tool in TOOLS if tool[0] != "make_shapes_dataset"]


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="watches /proc/<pid>/maps")
@pytest.mark.parametrize("tool, arguments, option, is_file", TOOLS_WITH_TORCH, ids=[t[0] for t in TOOLS_WITH_TORCH])
def test_ctrl_c_while_a_tool_imports_torch_is_one_line(tmp_path, checkpoint, images, tool, arguments, option, is_file):
    process = start_tool(
        tool_command(tool, arguments, option, is_file, tmp_path, checkpoint=checkpoint, images=images), tmp_path
    )
    maps = Path(f"/proc/{process.pid}/maps")
    deadline = time.monotonic() + 60
    while "libtorch" not in maps.read_text():  # interrupt while `import torch` runs
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    assert_interrupted(process)


# Runs a tool with SIGINT raised the moment anything first looks for NumPy: inside torch's import, which
# swallows a failed NumPy import ("NumPy support disabled") and would let the tool go on.
INTERRUPT_WHILE_IMPORTING_NUMPY = """
import importlib.abc, runpy, signal, sys

class InterruptAtNumpy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "numpy":
            sys.meta_path.remove(self)
            signal.raise_signal(signal.SIGINT)
        return None

sys.meta_path.insert(0, InterruptAtNumpy())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("tool, arguments, option, is_file", TOOLS, ids=[tool[0] for tool in TOOLS])
def test_ctrl_c_inside_a_library_import_is_one_line(tmp_path, checkpoint, images, tool, arguments, option, is_file):
    launcher = tmp_path / "launcher.py"
    launcher.write_text(INTERRUPT_WHILE_IMPORTING_NUMPY)
    command = tool_command(tool, arguments, option, is_file, tmp_path, checkpoint=checkpoint, images=images)
    process = start_tool([command[0], str(launcher), *command[1:]], tmp_path)
    assert_interrupted(process)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # stopped before any work
