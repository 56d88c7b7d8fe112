"""Trained detectors and backbone weights by name (detectron2's C4 models, the MSRA ImageNet weights), as
torchvision's weights are: metadata, torch hub's cache (download once, convert once, integrity), the
builders, the tools and hubconf.py.

No test uses the network: the model-zoo files are random detectron2-format files put in a temporary
``$TORCH_HOME`` under the zoo's names, with their URLs pointed at a closed local port (so that any download
fails at once, network or not), and a local HTTP server stands in for the downloads.
"""

import hashlib
import http.server
import json
import os
import re
import shutil
import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from detectron2_helpers import round_trip_image
from inference_helpers import TINY_MODEL, load_tool, randomize_batchnorm
from PIL import Image
from training_helpers import REPO, run_tool, tiny_config

import detection
from detection import hub
from detection.checkpoint import load_checkpoint, save_checkpoint
from detection.cli import run_cli
from detection.config import config_from_dict, config_to_dict, load_config
from detection.data.shapes import SHAPES_CLASSES
from detection.data.voc import VOC_CLASSES
from detection.engine import RunOptions, run_training
from detection.errors import ConfigError, DownloadError, WeightsError
from detection.modeling import weights as named
from detection.modeling.detectron2 import detectron2_c4_config
from detection.modeling.factory import architecture_differences, detector_from_config, resolve_model_config
from detection.modeling.msra import ResNet50_MSRA_Weights, ResNet101_MSRA_Weights
from detection.modeling.weights import (
    FasterRCNN_ResNet50_C4_Weights,
    FasterRCNN_ResNet101_C4_Weights,
    find_weights,
    get_weight,
    weights_checkpoint,
)

R101_3X = FasterRCNN_ResNet101_C4_Weights.COCO_DETECTRON2_3X
ZOO_FILE = "model_final_298dad.pkl"  # R101_3X's file name in the model zoo
DETECTOR_WEIGHTS = [*FasterRCNN_ResNet50_C4_Weights, *FasterRCNN_ResNet101_C4_Weights]


def closed_port_url(path: str) -> str:
    """A URL on 127.0.0.1 where nothing listens: a download fails at once, whatever the machine's network."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/{path}"


def point_at(monkeypatch: pytest.MonkeyPatch, weights, base_url: str) -> None:
    """``weights`` downloaded from ``base_url`` (the same file name, so the same place in the cache)."""
    monkeypatch.setattr(weights.value, "url", f"{base_url.rstrip('/')}/{os.path.basename(weights.url)}")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty ``$TORCH_HOME``; returns its ``hub/checkpoints`` folder (where torchvision's weights go too)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(hub, "RETRY_DELAY_S", 0.0)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


# --- the weights and their metadata ------------------------------------------------------------------


def test_weights_have_torchvisions_metadata_and_match_the_models_they_build():
    assert torchvision.models.get_model_weights(detection.fasterrcnn_resnet101_c4) is FasterRCNN_ResNet101_C4_Weights
    assert torchvision.models.get_model_weights(detection.fasterrcnn_resnet50_c4) is FasterRCNN_ResNet50_C4_Weights
    assert FasterRCNN_ResNet101_C4_Weights.DEFAULT is R101_3X
    assert FasterRCNN_ResNet50_C4_Weights.DEFAULT is FasterRCNN_ResNet50_C4_Weights.COCO_DETECTRON2_3X
    assert get_weight("FasterRCNN_ResNet101_C4_Weights.COCO_DETECTRON2_3X") is R101_3X
    assert get_weight("ResNet101_MSRA_Weights.MSRA") is ResNet101_MSRA_Weights.MSRA
    assert get_weight("ResNet50_Weights.IMAGENET1K_V1") is torchvision.models.ResNet50_Weights.IMAGENET1K_V1
    assert {w.meta["_metrics"]["COCO-val2017"]["box_map"] for w in DETECTOR_WEIGHTS if "COCO" in w.name} == {
        35.7,
        38.4,
        41.1,
    }
    assert len({os.path.basename(w.url) for w in DETECTOR_WEIGHTS}) == len(DETECTOR_WEIGHTS)  # one cache name each
    built = {}
    for weights in DETECTOR_WEIGHTS:
        categories = weights.meta["categories"]
        assert categories[0] == "__background__"
        assert categories[1:] == list(VOC_CLASSES if "VOC" in weights.name else named.COCO_CLASSES)
        config = detectron2_c4_config(weights.value.depth, named.CONFIG_DIR / weights.value.recipe_config).model
        assert (weights.meta["min_size"], weights.meta["max_size"]) == (config.min_size[-1], config.max_size)
        detectron2_name = re.search(r"detectron2/(.+)/\d+/model_final_\w+\.pkl$", weights.url).group(1)
        assert weights.meta["recipe"].endswith(f"configs/{detectron2_name}.yaml")
        key = (weights.value.depth, len(categories))
        if key not in built:
            model = detector_from_config(config, len(categories), backbone_weights=False)
            built[key] = sum(parameter.numel() for parameter in model.parameters())
        assert weights.meta["num_params"] == built[key]
        assert isinstance(weights.transforms()(Image.new("RGB", (4, 3))), torch.Tensor)  # RGB [0, 1], as torchvision


def test_names_resolve_to_their_weights_and_unknown_ones_are_listed():
    assert find_weights("COCO_DETECTRON2_3X") is R101_3X  # the paper's detector first
    assert find_weights("DEFAULT") is R101_3X
    assert find_weights("VOC_DETECTRON2") is FasterRCNN_ResNet50_C4_Weights.VOC_DETECTRON2
    assert find_weights("FasterRCNN_ResNet50_C4_Weights.COCO_DETECTRON2_3X").value.depth == 50
    assert find_weights("output/model_final.pth") is None and find_weights("model.pth") is None  # paths
    with pytest.raises(WeightsError) as error:
        find_weights("COCO_DETECTRON_3X")
    message = str(error.value)
    assert "did you mean COCO_DETECTRON2_3X?" in message and "FasterRCNN_ResNet50_C4_Weights.VOC_DETECTRON2" in message
    with pytest.raises(ValueError, match="are fasterrcnn_resnet101_c4's; fasterrcnn_resnet18_c4 takes a checkpoint"):
        detection.fasterrcnn_resnet18_c4(weights="DEFAULT")
    with pytest.raises(ValueError, match="fasterrcnn_resnet50_c4 takes FasterRCNN_ResNet50_C4_Weights"):
        detection.fasterrcnn_resnet50_c4(weights=R101_3X)
    with pytest.raises(ValueError, match="not detector weights"):
        detection.fasterrcnn_resnet50_c4(weights=torchvision.models.ResNet50_Weights.IMAGENET1K_V1)


def test_a_builder_takes_its_own_weights_by_name(monkeypatch):
    asked = []
    monkeypatch.setattr("detection.modeling.zoo.weights_checkpoint", lambda w, progress: asked.append(w) or {})
    monkeypatch.setattr("detection.modeling.zoo._trained_detector", lambda *args: None)
    detection.fasterrcnn_resnet50_c4(weights="COCO_DETECTRON2_3X")
    detection.fasterrcnn_resnet50_c4(weights="DEFAULT")
    detection.fasterrcnn_resnet101_c4(weights="FasterRCNN_ResNet101_C4_Weights.COCO_DETECTRON2_3X")
    assert asked == [FasterRCNN_ResNet50_C4_Weights.COCO_DETECTRON2_3X] * 2 + [R101_3X]


def test_the_shipped_configs_build_the_networks_the_weights_were_trained_as():
    detectron2 = detectron2_c4_config(101).model
    own_data = load_config("configs/custom/resnet101_c4_detectron2.yaml", ["data.dataset=widgets", "data.voc_folder=x"])
    assert architecture_differences(detectron2, own_data.model) == [] and own_data.model.weights is None
    assert (
        own_data.metric == "voc" and own_data.solver.max_iter == load_config("configs/custom/base.yaml").solver.max_iter
    )
    voc = load_config("configs/voc/resnet50_c4_detectron2.yaml", ["model.backbone=resnet101", "model.weights=null"])
    assert architecture_differences(detectron2, voc.model) == []


# --- torch hub's cache: downloads ------------------------------------------------------------------


class FileServer:
    """Serves ``files`` (name -> bytes) on 127.0.0.1 in a thread. ``cuts[name]``: how many bytes the first
    ``len(cuts[name])`` answers for that file send before closing the connection; HTTP ranges are honoured
    unless ``ranges`` is false. ``requests`` lists (name, Range header)."""

    def __init__(self, files: dict[str, bytes], cuts: dict[str, list[int]] | None = None, ranges: bool = True):
        self.files, self.cuts, self.ranges, self.requests = files, cuts or {}, ranges, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name, asked = self.path.lstrip("/"), self.headers.get("Range")
                server.requests.append((name, asked))
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name]
                start = int(asked.removeprefix("bytes=").rstrip("-")) if asked and server.ranges else 0
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                cuts = server.cuts.get(name) or []
                self.wfile.write(data[start : cuts.pop(0)] if cuts else data[start:])
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(*args, **kwargs) -> FileServer:
        servers.append(FileServer(*args, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


DATA = np.random.default_rng(0).integers(0, 256, 3 * 2**20 + 12345, dtype=np.uint8).tobytes()


def test_a_download_cut_short_is_resumed_with_a_progress_bar(cache, serve, capsys, caplog):
    server = serve({"R-50.pkl": DATA}, cuts={"R-50.pkl": [2**20]})
    caplog.set_level("INFO", logger="detection.hub")
    cached = hub.cached_file(f"{server.url}/R-50.pkl")
    assert cached.path == cache / "R-50.pkl" and cached.path.read_bytes() == DATA
    assert cached.sha256 == hashlib.sha256(DATA).hexdigest()
    assert server.requests == [("R-50.pkl", None), ("R-50.pkl", f"bytes={2**20}-")]  # resumed where it stopped
    assert f"the download stopped after {2**20:,} bytes" in caplog.text and "resuming (attempt 2 of 3)" in caplog.text
    err = capsys.readouterr().err
    assert "R-50.pkl: 100%" in err and "3.01M/3.01M" in err  # tqdm's bar, as torch.hub's
    record = json.loads((cache / "R-50.pkl.json").read_text())
    assert (record["sha256"], record["size"], record["origin"]) == (cached.sha256, len(DATA), "downloaded")
    assert sorted(p.name for p in cache.iterdir()) == ["R-50.pkl", "R-50.pkl.json"]
    server.files.clear()  # used from the cache from now on, without the network
    assert hub.cached_file(f"{server.url}/R-50.pkl", progress=False) == cached and len(server.requests) == 2


def test_a_server_that_ignores_ranges_sends_the_file_again(cache, serve):
    server = serve({"R-50.pkl": DATA}, cuts={"R-50.pkl": [2**20, 2**21]}, ranges=False)
    cached = hub.cached_file(f"{server.url}/R-50.pkl", progress=False)
    assert cached.path.read_bytes() == DATA and len(server.requests) == 3


def test_a_download_that_fails_leaves_nothing_half_written(cache, serve, monkeypatch):
    server = serve({"R-50.pkl": DATA}, cuts={"R-50.pkl": [100, 200, 300]})
    url = f"{server.url}/R-50.pkl"
    with pytest.raises(DownloadError) as error:
        hub.cached_file(url, progress=False)
    assert str(error.value) == (
        f"could not download {url} (the connection closed after 300 of {len(DATA):,} bytes); without network, "
        f"download it elsewhere and put it at {cache / 'R-50.pkl'}"
    )
    assert list(cache.iterdir()) == []  # the partial file is gone
    with pytest.raises(DownloadError, match="HTTP 404"):
        hub.cached_file(f"{server.url}/missing.pkl", progress=False)

    def interrupt(self, chunk):  # Ctrl+C in the middle of a download
        raise KeyboardInterrupt

    monkeypatch.setattr(hub._Partial, "append", interrupt)
    with pytest.raises(KeyboardInterrupt):
        hub.cached_file(url, progress=False)
    assert list(cache.iterdir()) == []


def test_a_cached_file_that_changed_is_refused(cache, serve):
    server = serve({"R-50.pkl": DATA})
    url = f"{server.url}/R-50.pkl"
    path = hub.cached_file(url, progress=False).path
    os.utime(path, ns=(0, 0))  # touched (copied back from a backup): the same content, accepted
    assert hub.cached_file(url, progress=False).sha256 == hashlib.sha256(DATA).hexdigest()
    assert json.loads((cache / "R-50.pkl.json").read_text())["mtime_ns"] == 0
    changed = bytearray(DATA)
    changed[1000] ^= 1
    path.write_bytes(bytes(changed))
    with pytest.raises(WeightsError) as error:
        hub.cached_file(url, progress=False)
    assert str(error.value).startswith(f"{path}: not the file first used under this name (sha256 ")
    assert str(error.value).endswith(f"delete R-50.pkl and R-50.pkl.json from {cache} to download it again")
    path.write_bytes(DATA[:-1])
    with pytest.raises(WeightsError, match=f"{len(DATA) - 1:,} bytes, recorded {len(DATA):,}"):
        hub.cached_file(url, progress=False)
    path.unlink()  # downloaded again, but the server now has another file under that name
    server.files["R-50.pkl"] = bytes(changed)
    with pytest.raises(WeightsError, match="the download differs from the file first used under this name"):
        hub.cached_file(url, progress=False)
    assert sorted(p.name for p in cache.iterdir()) == ["R-50.pkl.json"]


def test_a_cache_shared_read_only_is_used_unchecked(cache, caplog, monkeypatch):
    cache.mkdir(parents=True)
    (cache / "R-50.pkl").write_bytes(DATA)

    def read_only(path, suffix):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(hub, "replacing", read_only)
    cached = hub.cached_file(closed_port_url("R-50.pkl"), progress=False)
    assert cached.sha256 == hashlib.sha256(DATA).hexdigest() and list(cache.iterdir()) == [cache / "R-50.pkl"]
    assert "R-50.pkl.json: not written (Permission denied); a later change of R-50.pkl goes unnoticed" in caplog.text


def test_without_network_and_file_the_error_says_where_to_put_it(cache, monkeypatch, tmp_path, capsys):
    url = closed_port_url(f"detectron2/{ZOO_FILE}")
    point_at(monkeypatch, R101_3X, url.rpartition("/")[0])
    with pytest.raises(DownloadError) as error:
        detection.fasterrcnn_resnet101_c4(weights="DEFAULT")
    assert re.fullmatch(
        rf"could not download {re.escape(url)} \(.*\); without network, download it elsewhere and put it at "
        + re.escape(str(cache / ZOO_FILE)),
        str(error.value),
    )
    Image.new("RGB", (32, 24)).save(tmp_path / "photo.jpg")
    argv = ["--weights", "COCO_DETECTRON2_3X", str(tmp_path / "photo.jpg"), "--output-dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(load_tool("infer").main, argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and err.startswith(f"error: could not download {url}")
    assert list(cache.iterdir()) == []


# --- detectron2's models through the cache -----------------------------------------------------------


@pytest.fixture(scope="module")
def zoo_home(detectron2_r101, tmp_path_factory):
    """A ``$TORCH_HOME`` whose cache holds a random R101-C4 under R101_3X's zoo name, loaded once there (the
    conversion done), with the weights' URL on a closed port. Returns the home and the converter tool's own
    conversion of the file."""
    _, folder = detectron2_r101
    home = tmp_path_factory.mktemp("zoo_home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    os.link(folder / "model_final.pkl", home / "hub" / "checkpoints" / ZOO_FILE)  # never written to
    converted_by_tool = home / "converted_by_tool.pth"
    assert load_tool("convert_detectron2").main([str(folder / "model_final.pkl"), str(converted_by_tool)]) == 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(home))
        point_at(patch, R101_3X, closed_port_url("zoo"))
        weights_checkpoint(R101_3X, progress=False)  # the first load: converted and cached
    return home, converted_by_tool


@pytest.fixture
def in_zoo_home(zoo_home, monkeypatch):
    home, converted_by_tool = zoo_home
    monkeypatch.setenv("TORCH_HOME", str(home))
    point_at(monkeypatch, R101_3X, closed_port_url("zoo"))
    return home / "hub" / "checkpoints", converted_by_tool


# A quarter of the round-trip image and 20 RoIs: a forward pass in a fraction of a second.
CHEAP = {"min_size": 160, "max_size": 250, "rpn_post_nms_top_n_test": 20}


def test_named_weights_give_the_converter_tools_model_and_detections(in_zoo_home):
    cache, converted_by_tool = in_zoo_home
    model = detection.fasterrcnn_resnet101_c4(weights="COCO_DETECTRON2_3X", **CHEAP).eval()
    reference = detection.fasterrcnn_resnet101_c4(weights=converted_by_tool, **CHEAP).eval()
    expected = reference.state_dict()
    assert model.state_dict().keys() == expected.keys()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
    assert repr(model.transform) == repr(reference.transform)  # MSRA pixels, detectron2's sizes
    tool_config = load_checkpoint(converted_by_tool)["config"]["model"]
    assert weights_checkpoint(R101_3X, progress=False)["config"]["model"] == tool_config
    image = round_trip_image()[:, :160, :250]
    with torch.no_grad():
        ours, theirs = model([image])[0], reference([image])[0]
    assert len(theirs["boxes"]) > 10
    for key in ("boxes", "scores", "labels"):
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0)
    record = json.loads((cache / f"{ZOO_FILE}.json").read_text())
    assert record["sha256"] == hub.file_sha256(cache / ZOO_FILE) and record["origin"] == "found in the cache"
    converted = torch.load(cache / "model_final_298dad.converted.pth", weights_only=True)
    assert converted["source_sha256"] == record["sha256"] and converted["class_names"] == list(named.COCO_CLASSES)


def test_a_second_load_neither_downloads_nor_converts(in_zoo_home, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("converted or downloaded again")

    monkeypatch.setattr(named, "converted_checkpoint", refuse)
    monkeypatch.setattr(hub, "_download", refuse)
    model = detection.fasterrcnn_resnet101_c4(weights=FasterRCNN_ResNet101_C4_Weights.DEFAULT, progress=False)
    state = R101_3X.get_state_dict(progress=False)
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())
    from_hub = torch.hub.load(str(REPO), "fasterrcnn_resnet101_c4", source="local", weights="DEFAULT")
    assert all(torch.equal(value, state[key]) for key, value in from_hub.state_dict().items())


def test_a_changed_model_file_is_refused_before_it_is_read(in_zoo_home, tmp_path, monkeypatch):
    cache, _ = in_zoo_home
    copy = tmp_path / "hub" / "checkpoints"
    copy.mkdir(parents=True)
    for name in (ZOO_FILE, f"{ZOO_FILE}.json"):
        shutil.copy2(cache / name, copy / name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with open(copy / ZOO_FILE, "ab") as file:
        file.write(b"\0")
    with pytest.raises(WeightsError, match=f"{ZOO_FILE}: not the file first used under this name"):
        detection.fasterrcnn_resnet101_c4(weights="DEFAULT")


@pytest.mark.slow
def test_infer_with_named_weights_detects_as_with_the_converted_checkpoint(in_zoo_home, tmp_path):
    cache, converted_by_tool = in_zoo_home
    # 80 x 500 px: the detector's resize to 800/1333 px makes it 213 x 1333, a quarter of the usual work.
    image = (round_trip_image()[:, :80].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    Image.fromarray(image).save(tmp_path / "photo.png")
    results = {}
    for option, value in (("--weights", "COCO_DETECTRON2_3X"), ("--checkpoint", str(converted_by_tool))):
        out = tmp_path / option.strip("-")
        command = [sys.executable, str(REPO / "tools" / "infer.py"), option, value, str(tmp_path / "photo.png")]
        tool = run_tool([*command, "--output-dir", str(out), "--precision", "fp32", "--score-thresh", "0.05"],
                        env={"TORCH_HOME": str(cache.parents[1])})  # fmt: skip
        assert tool.returncode == 0, tool.stderr
        results[option] = json.loads((out / "detections.json").read_text())
    assert results["--weights"]["weights"] == "COCO_DETECTRON2_3X"
    assert results["--weights"]["images"] == results["--checkpoint"]["images"]
    assert len(results["--weights"]["images"][0]["boxes"]) > 0


# --- the MSRA ImageNet weights by name --------------------------------------------------------------


@pytest.fixture
def msra_cache(cache, msra_resnet50, monkeypatch) -> Path:
    """The cache with the random MSRA ResNet-50 as R-50.pkl; the weights' URL on a closed port."""
    cache.mkdir(parents=True)
    shutil.copy(msra_resnet50[1], cache / "R-50.pkl")
    point_at(monkeypatch, ResNet50_MSRA_Weights.MSRA, closed_port_url("msra"))
    return cache / "R-50.pkl"


def test_msra_weights_by_name_are_the_msra_file(msra_cache, monkeypatch):
    expected = detection.build_detector("resnet50", 3, backbone_kwargs={"weights": msra_cache})
    model = detection.fasterrcnn_resnet50_c4(num_classes=3, weights_backbone="MSRA")
    assert model.backbone.layer2[0].conv1.stride == (2, 2)  # stride in the 1x1, as the MSRA weights need
    assert repr(model.transform) == repr(expected.transform)  # BGR 0..255 minus the MSRA mean
    for key, value in expected.backbone.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[key], value, rtol=0, atol=0)
    asked = []
    monkeypatch.setattr(
        "detection.modeling.zoo.build_detector", lambda *args, backbone_kwargs, **o: asked.append(backbone_kwargs)
    )
    for weights_backbone in ("msra", ResNet50_MSRA_Weights.MSRA, ResNet50_MSRA_Weights.DEFAULT):
        detection.fasterrcnn_resnet50_c4(weights_backbone=weights_backbone)
    assert [kwargs["weights"] for kwargs in asked] == [str(msra_cache)] * 3
    state = ResNet50_MSRA_Weights.MSRA.get_state_dict(progress=False)
    torch.testing.assert_close(state["layer3.5.conv3.weight"], expected.backbone.layer3[5].conv3.weight)
    config = resolve_model_config(load_config(None, ["model.backbone=resnet50", "model.weights=msra"]).model)
    assert config.weights == "msra" and config.backbone_kwargs["stride_in_1x1"] and config.channel_order == "BGR"
    from_config = detector_from_config(config, 3)
    for key, value in expected.backbone.state_dict().items():
        torch.testing.assert_close(from_config.backbone.state_dict()[key], value, rtol=0, atol=0)


def test_msra_weights_for_a_backbone_without_them_are_one_line():
    with pytest.raises(ConfigError) as error:
        resolve_model_config(load_config(None, ["model.backbone=resnet18", "model.weights=msra"]).model)
    assert str(error.value) == (
        "model.weights: msra: no MSRA ImageNet weights for resnet18: detectron2's ImageNetPretrained/MSRA has "
        "ResNet-50 and ResNet-101 (R-50.pkl, R-101.pkl); use imagenet"
    )
    with pytest.raises(ValueError, match="weights_backbone: no MSRA ImageNet weights for vgg16"):
        detection.fasterrcnn_vgg16(weights_backbone="MSRA")
    with pytest.raises(ValueError, match="resnet50 loads ResNet50_MSRA_Weights.MSRA, got ResNet101_MSRA_Weights.MSRA"):
        detection.fasterrcnn_resnet50_c4(weights_backbone=ResNet101_MSRA_Weights.MSRA)


# --- the tools take weights by name ------------------------------------------------------------------


def stand_in_weights(monkeypatch, path: Path, model_config, class_names) -> list:
    """Weights by name stood in by a small random detector for ``class_names`` (the tools' plumbing is under
    test here, the R101-C4 above); returns the list of weights asked for."""
    torch.manual_seed(0)
    config = config_from_dict({"model": dict(model_config)})
    model = randomize_batchnorm(detector_from_config(config.model, len(class_names) + 1))
    checkpoint = {"model": model.state_dict(), "config": config_to_dict(config), "class_names": list(class_names)}
    save_checkpoint(path, checkpoint)
    asked = []
    monkeypatch.setattr(named, "weights_checkpoint", lambda w, progress: asked.append(w) or load_checkpoint(path))
    return asked


def test_infer_eval_and_export_take_weights_by_name(monkeypatch, shapes_root, tmp_path):
    asked = stand_in_weights(monkeypatch, tmp_path / "stand_in.pth", TINY_MODEL, SHAPES_CLASSES)
    image = shapes_root / "coco" / "val" / sorted(os.listdir(shapes_root / "coco" / "val"))[0]
    assert load_tool("infer").main(["--weights", "DEFAULT", str(image), "--output-dir", str(tmp_path / "i")]) == 0
    assert json.loads((tmp_path / "i" / "detections.json").read_text())["weights"] == "DEFAULT"
    argv = ["--weights", "COCO_DETECTRON2_3X", "--dataset", "shapes", "--data-root", str(shapes_root), "--split", "val"]
    assert load_tool("eval_det").main([*argv, "--output-dir", str(tmp_path / "e"), "--no-figures"]) == 0
    evaluation = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert evaluation["checkpoint"] == "FasterRCNN_ResNet101_C4_Weights.COCO_DETECTRON2_3X"
    argv = ["--weights", "VOC_DETECTRON2", "--format", "torchscript", "--output", str(tmp_path / "m.pt")]
    assert load_tool("export").main(argv) == 0
    assert asked == [R101_3X, R101_3X, FasterRCNN_ResNet50_C4_Weights.VOC_DETECTRON2]


@pytest.mark.slow
def test_train_fine_tunes_weights_by_name_on_its_classes(monkeypatch, shapes_root, tmp_path):
    config = tiny_config(shapes_root, tmp_path / "run", "solver.max_iter=1", "solver.steps=[]")
    asked = stand_in_weights(monkeypatch, tmp_path / "stand_in.pth", config_to_dict(config)["model"], ["a", "b"])
    assert run_training(config, RunOptions(weights="COCO_DETECTRON2_3X")) == 0
    assert asked == [R101_3X]
    message = "initialised the model from FasterRCNN_ResNet101_C4_Weights.COCO_DETECTRON2_3X; skipped the box predictor"
    assert f"{message} (2 classes there, 3 here)" in (tmp_path / "run" / "log.txt").read_text()


@pytest.mark.slow
def test_the_load_benchmark_times_a_first_and_a_cached_load_without_changing_the_cache(in_zoo_home, capsys):
    cache, _ = in_zoo_home
    before = {path.name: path.stat().st_mtime_ns for path in cache.iterdir()}
    assert load_tool("benchmark_weights").main(["--weights", "DEFAULT"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"first load [\d.]+ s \(hash, conversion, cache, detector\), second load [\d.]+ s \(cache\)", out)
    assert {path.name: path.stat().st_mtime_ns for path in cache.iterdir()} == before
    assert [path.name for path in cache.parent.iterdir()] == ["checkpoints"]  # the temporary cache is gone
