"""Weights files downloaded once into torch hub's cache, and checked each time they are used.

torchvision keeps its weights in ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``,
``~/.cache/torch/hub/checkpoints`` by default) and checks the hash its file names carry. detectron2
publishes no hashes, so :func:`cached_file` checks what can be checked:

- a download is whole: it is written under a temporary name and renamed only once its length is the
  server's ``Content-Length``; a connection cut short is resumed where it stopped (an HTTP range request,
  or the whole file again where the server ignores ranges), :data:`ATTEMPTS` times in all;
- the file is the one first used: its size, modification time and sha256 are recorded beside it
  (``<file>.json``) at the first download, or at the first use of a file put there by hand. A file whose
  size or modification time changed is hashed again and refused if its content changed, and so is a new
  download that differs from the recorded one (trust on first use, as ssh's ``known_hosts``): a model file
  never changes in the model zoo, so a change is a damaged or replaced file, and silently accepting it
  would give other detections under the same name;
- what the file holds is checked by its reader (the detectron2 conversion's complete key and shape check).

A file in the cache is used without the network. Without network and without the file, the error says
where to put it.
"""

import datetime
import hashlib
import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch.hub
from tqdm import tqdm

from .errors import DownloadError, WeightsError
from .files import json_text, remove_stale_temporaries, replacing

logger = logging.getLogger(__name__)

ATTEMPTS = 3  # a download cut short is resumed this many times in all, then given up
RETRY_DELAY_S = 2.0  # between attempts
TIMEOUT_S = 60.0  # a connection that sends nothing for this long counts as cut
CHUNK_BYTES = 1 << 20
PARTIAL_SUFFIX = ".partial"  # of a download in progress (detection.files.replacing's temporary)
RECORD_SUFFIX = ".json"
USER_AGENT = "resnet-c4-detection"
_BYTES = {"unit": "B", "unit_scale": True, "unit_divisor": 1024}  # the progress bar counts bytes, as torch.hub's


@dataclass(frozen=True)
class CachedFile:
    """A file of the cache, checked: its path and its sha256 (the one recorded at its first use)."""

    path: Path
    sha256: str


def cache_dir() -> Path:
    """torch hub's folder for weights files: ``$TORCH_HOME/hub/checkpoints`` (``torch.hub.set_dir`` too)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cache_path(url: str) -> Path:
    """Where :func:`cached_file` keeps the file at ``url``: the cache folder, the URL's file name."""
    return cache_dir() / os.path.basename(urllib.parse.urlparse(url).path)


def record_path(path: Path) -> Path:
    """The record of a cached file's first use: ``<file>.json``."""
    return path.with_name(path.name + RECORD_SUFFIX)


def cached_file(url: str, *, progress: bool = True) -> CachedFile:
    """The file at ``url`` from the cache, downloaded there first if it is not there (see the module's notes).

    Args:
        progress: show a progress bar on stderr while downloading.

    Raises:
        DownloadError: the file is not in the cache and cannot be downloaded: one line with the URL and
            the path to put the file at.
        WeightsError: the cached file (or a new download) is not the one recorded at its first use.
    """
    path = cache_path(url)
    record = _read_record(path)
    if path.is_file():
        return _checked(path, url, record)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"cannot create torch hub's cache folder {path.parent} ({_reason(error)})") from None
    sha256 = _download(url, path, progress, expected=record["sha256"] if record else None)
    _write_record(path, url, sha256, "downloaded")
    return CachedFile(path, sha256)


def _checked(path: Path, url: str, record: dict[str, Any] | None) -> CachedFile:
    """``path`` if it is the file recorded at its first use (hashed again only if its size or time changed)."""
    if record is None:
        sha256 = file_sha256(path)
        _write_record(path, url, sha256, "found in the cache")
        return CachedFile(path, sha256)
    size = path.stat().st_size
    if size != record["size"]:
        raise _changed(path, f"{size:,} bytes, recorded {record['size']:,}")
    if path.stat().st_mtime_ns == record["mtime_ns"]:
        return CachedFile(path, record["sha256"])
    sha256 = file_sha256(path)
    if sha256 != record["sha256"]:
        raise _changed(path, f"sha256 {sha256[:16]}..., recorded {record['sha256'][:16]}...")
    _write_record(path, url, sha256, record["origin"], record["recorded"])  # the same content, touched or copied
    return CachedFile(path, sha256)


def _changed(path: Path, difference: str) -> WeightsError:
    return WeightsError(
        f"{path}: not the file first used under this name ({difference}; see {record_path(path).name}), so it is "
        f"refused; delete {path.name} and {record_path(path).name} from {path.parent} to download it again"
    )


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(record_path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        logger.warning(f"{record_path(path)}: unreadable ({_reason(error)}); the file's sha256 is recorded again")
        return None
    keys = ("size", "mtime_ns", "sha256", "origin", "recorded")
    return record if isinstance(record, dict) and all(key in record for key in keys) else None


def _write_record(path: Path, url: str, sha256: str, origin: str, recorded: str | None = None) -> None:
    stat = path.stat()
    record = {
        "url": url,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": sha256,
        "origin": origin,  # "downloaded" or "found in the cache" (put there by hand)
        "recorded": recorded or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        with replacing(record_path(path), RECORD_SUFFIX) as file:
            file.write((json_text(record, indent=2) + "\n").encode("utf-8"))
    except OSError as error:  # a cache shared read-only: the file is used, unchecked from now on
        logger.warning(
            f"{record_path(path)}: not written ({_reason(error)}); a later change of {path.name} goes unnoticed"
        )


class _Partial:
    """A download in progress: the temporary file and the sha256 of what it holds."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.digest = hashlib.sha256()

    @property
    def size(self) -> int:
        return self.file.tell()

    def restart(self) -> None:
        self.file.seek(0)
        self.file.truncate()
        self.digest = hashlib.sha256()

    def append(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.digest.update(chunk)


def _download(url: str, path: Path, progress: bool, expected: str | None) -> str:
    """Downloads ``url`` to ``path`` (whole or not at all); returns its sha256, which must be ``expected``."""
    remove_stale_temporaries(path.parent, PARTIAL_SUFFIX)
    logger.info(f"downloading {url} to {path}")
    with replacing(path, PARTIAL_SUFFIX) as file:
        partial = _Partial(file)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                _fetch(url, partial, path.name, progress)
                break
            except (OSError, http.client.HTTPException) as error:
                # Nothing received: no network, no server, or a refusal; retrying would not help.
                if partial.size == 0 or attempt == ATTEMPTS or _refused(error):
                    raise DownloadError(
                        f"could not download {url} ({_reason(error)}); without network, download it elsewhere "
                        f"and put it at {path}"
                    ) from None
                logger.warning(
                    f"{path.name}: the download stopped after {partial.size:,} bytes ({_reason(error)}); "
                    f"resuming (attempt {attempt + 1} of {ATTEMPTS})"
                )
                time.sleep(RETRY_DELAY_S)
        sha256 = partial.digest.hexdigest()
        if expected is not None and sha256 != expected:
            raise WeightsError(
                f"{url}: the download differs from the file first used under this name (sha256 {sha256[:16]}..., "
                f"recorded {expected[:16]}... in {record_path(path)}), so it is refused; if the file was replaced "
                "on purpose, delete that record and try again"
            )
    return sha256


def _fetch(url: str, partial: _Partial, name: str, progress: bool) -> None:
    """One request: the rest of the file from ``partial.size`` on (all of it if the server ignores the range)."""
    headers = {"User-Agent": USER_AGENT}
    if partial.size:
        headers["Range"] = f"bytes={partial.size}-"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S) as response:
        if partial.size and response.status != http.HTTPStatus.PARTIAL_CONTENT:
            partial.restart()
        total = _total_size(response, partial.size)
        with tqdm(total=total, initial=partial.size, desc=name, disable=not progress, **_BYTES) as bar:
            while chunk := response.read(CHUNK_BYTES):
                partial.append(chunk)
                bar.update(len(chunk))
    if total is not None and partial.size != total:
        # http.client ends a body cut short as if it were whole: only its length tells.
        raise ConnectionError(f"the connection closed after {partial.size:,} of {total:,} bytes")


def _total_size(response: http.client.HTTPResponse, offset: int) -> int | None:
    """The whole file's length: ``Content-Range``'s total for a range, else ``Content-Length`` (None: unknown)."""
    if response.status == http.HTTPStatus.PARTIAL_CONTENT:
        given, _, total = (response.headers.get("Content-Range") or "").removeprefix("bytes ").partition("/")
        if given.partition("-")[0] != str(offset):
            raise ConnectionError(f"asked for the bytes from {offset:,} on, the server sent {given or 'no range'}")
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _refused(error: BaseException) -> bool:
    """The server answered with a client error (the file is not there, or not for us): final."""
    return isinstance(error, urllib.error.HTTPError) and 400 <= error.code < 500


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        text = f"HTTP {error.code} {error.reason}"
    elif isinstance(error, urllib.error.URLError):
        text = str(error.reason)
    elif isinstance(error, OSError) and error.strerror:
        text = error.strerror
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())
