"""Frame sources: camera index, V4L2 device, video file, RTSP/HTTP URL, GStreamer pipeline,
Picamera2, image folder.

:func:`open_source` parses the ``--source`` value. Every source iterates :class:`Frame` objects.
A live source that stops delivering (camera unplugged, stream dropped) is reopened with
exponential backoff and never ends the run by itself; a frame that cannot be decoded is skipped and
counted in ``corrupt``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeGuard

import cv2
import numpy as np

from edgesal.runtimes.errors import SourceError

log = logging.getLogger("edgesal.runtimes.source")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
URL = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp)://", re.I)
PICAMERA = {"picamera2", "picamera", "libcamera", "csi"}
MAX_BAD_READS = 25  # consecutive undecodable frames before a file is taken as ended
MAX_IMAGE_FILE = 256 << 20  # bytes of one encoded image file
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class Frame:
    """One captured frame (BGR uint8) with its position in the source and capture time."""

    index: int
    image: np.ndarray
    time: float


class Capture(Protocol):
    """What a source reads from: ``cv2.VideoCapture`` and the adapters below."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


def _valid(image: np.ndarray | None) -> TypeGuard[np.ndarray]:
    return image is not None and image.ndim in (2, 3) and image.size > 0 and image.dtype == np.uint8


def decode_image(path: str | Path) -> np.ndarray:
    """An image file as BGR uint8 [H, W, 3] (OpenCV ``IMREAD_COLOR``); :class:`SourceError` says
    why a file is refused: missing, empty, over ``MAX_IMAGE_FILE`` bytes, a PNG chunk longer
    than the file, more pixels than ``OPENCV_IO_MAX_IMAGE_PIXELS`` (set in edgesal/__init__.py),
    or not decodable."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    if path.stat().st_size > MAX_IMAGE_FILE:
        raise SourceError(f"{path}: larger than {MAX_IMAGE_FILE >> 20} MB; not read as an image")
    data = np.fromfile(str(path), dtype=np.uint8)
    overrun = png_overrun(data.tobytes()) if data[:8].tobytes() == PNG_MAGIC else None
    if overrun:
        raise SourceError(f"{path}: {overrun}")
    try:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error as exc:
        limit = os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", "?")
        why = f"declares more than {limit} pixels" if "MAX_IMAGE_PIXELS" in str(exc) else exc
        raise SourceError(f"{path}: not decoded as an image: {why}") from None
    if bgr is None:
        raise SourceError(f"{path}: not a readable image file")
    return bgr


def png_overrun(data: bytes) -> str | None:
    """Why a PNG's chunk framing runs past the end of the file, else None. OpenCV 5.1 sizes a
    buffer from each chunk's length before reading it: a 110-byte file whose IEND chunk claimed
    3.3 GB made it take 3.2 GB (found by tests/fuzz)."""
    pos = len(PNG_MAGIC)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        if length > len(data) - pos - 12:
            return f"PNG chunk at byte {pos} claims {length} bytes, past the end of the file"
        pos += 12 + length
    return None


class FolderCapture:
    """Images of a folder in name order; an unreadable file reads as a failed (corrupt) frame."""

    def __init__(self, folder: Path):
        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        self.position = 0

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.position >= len(self.paths):
            raise StopIteration
        path = self.paths[self.position]
        self.position += 1
        try:
            return True, decode_image(path)
        except SourceError as exc:
            log.warning("%s", exc)
            return False, None

    def release(self) -> None:
        self.position = len(self.paths)


class PicameraCapture:
    """Raspberry Pi camera through Picamera2 (libcamera); BGR frames of ``size`` (W, H)."""

    def __init__(self, size: tuple[int, int] = (640, 480)):
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise SourceError(
                "--source picamera2: the picamera2 package is not installed "
                "(on Raspberry Pi OS: sudo apt install python3-picamera2)"
            ) from exc
        self.camera = Picamera2()
        # "RGB888" in libcamera is B,G,R byte order: what OpenCV calls BGR.
        config = self.camera.create_video_configuration(main={"size": size, "format": "RGB888"})
        self.camera.configure(config)
        self.camera.start()

    def read(self) -> tuple[bool, np.ndarray | None]:
        image = self.camera.capture_array()
        return _valid(image), image

    def release(self) -> None:
        self.camera.stop()
        self.camera.close()


class VideoCapture:
    """``cv2.VideoCapture`` that raises :class:`SourceError` when it does not open."""

    def __init__(self, target: int | str, api: int = cv2.CAP_ANY, what: str = ""):
        self.cap = cv2.VideoCapture(target, api)
        if not self.cap.isOpened():
            self.cap.release()
            raise SourceError(f"--source {target}: cannot open {what or 'source'}")

    def read(self) -> tuple[bool, np.ndarray | None]:
        return self.cap.read()

    def release(self) -> None:
        self.cap.release()

    def count(self) -> int | None:
        total = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))
        return total if total > 0 else None

    def fps(self) -> float:
        return float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)


class Source:
    """Iterates frames of a capture; reopens live captures with backoff, skips corrupt frames.

    ``opener`` makes a fresh capture (it may raise :class:`SourceError`). ``live`` sources have no
    end: a failed read closes the capture and reopens it after 0.5 s, 1 s, 2 s ... (at most
    ``max_backoff``). Files and folders end at their last frame.
    """

    def __init__(
        self,
        name: str,
        opener: Callable[[], Capture],
        live: bool,
        total: int | None = None,
        fps: float = 0.0,
        max_backoff: float = 8.0,
        loop: bool = False,
    ):
        self.name, self.live, self.total, self.fps = name, live, total, fps
        self.loop = loop
        self._opener, self.max_backoff = opener, max_backoff
        self.corrupt = 0
        self.reopens = 0
        self.stop_event = threading.Event()
        self._capture: Capture | None = opener()

    def __iter__(self) -> Iterator[Frame]:
        index, bad = 0, 0
        while not self.stop_event.is_set():
            capture = self._capture
            if capture is None:
                capture = self._reopen()
                if capture is None:
                    return
                bad = 0
            try:
                ok, image = capture.read()
            except StopIteration:
                if self._restart():
                    continue
                return
            except cv2.error as exc:
                log.warning("%s: read failed: %s", self.name, exc)
                ok, image = False, None
            if ok and _valid(image):
                bad = 0
                yield Frame(
                    index,
                    image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR),
                    time.time(),
                )
                index += 1
                continue
            bad += 1
            if self.live:
                log.warning("%s: no frame; reopening", self.name)
                self._close()
            elif not self._skip_corrupt(bad):
                if self._restart():
                    bad = 0
                    continue
                return

    def _restart(self) -> bool:
        """With ``loop``, start a finished file or folder again (simulated cameras)."""
        if not self.loop or self.stop_event.is_set():
            return False
        self._close()
        self._capture = self._opener()
        return True

    def _skip_corrupt(self, bad: int) -> bool:
        """For a file: count a failed read as corrupt unless the file has ended."""
        position = getattr(getattr(self._capture, "cap", None), "get", None)
        at = int(position(cv2.CAP_PROP_POS_FRAMES)) if position else None
        ended = self.total is not None and at is not None and at >= self.total
        if isinstance(self._capture, FolderCapture):
            ended = False
        if ended or bad > MAX_BAD_READS:
            return False
        self.corrupt += 1
        log.warning("%s: corrupt frame skipped (%d so far)", self.name, self.corrupt)
        return True

    def _reopen(self) -> Capture | None:
        """The capture opened again (retried with backoff), or None once stopped."""
        delay = min(0.5, self.max_backoff)
        while not self.stop_event.is_set():
            if self.stop_event.wait(delay):
                return None
            try:
                self._capture = capture = self._opener()
            except SourceError as exc:
                delay = min(delay * 2, self.max_backoff)
                log.warning("%s: reopen failed (%s); next try in %.2f s", self.name, exc, delay)
                continue
            self.reopens += 1
            log.info("%s: reopened (%d reopens)", self.name, self.reopens)
            return capture
        return None

    def _close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def close(self) -> None:
        self.stop_event.set()
        self._close()


def open_source(
    spec: str, size: tuple[int, int] | None = None, live: bool | None = None, loop: bool = False
) -> Source:
    """Parse ``--source``: ``0`` (camera index), ``/dev/video0``, ``clip.mp4``, ``frames/``,
    ``rtsp://...``/``http://...``, a GStreamer pipeline (contains ``!``), ``picamera2``
    (alias ``libcamera``).

    ``size`` (W, H) asks cameras for a capture size; ``live`` overrides whether the source is
    treated as live (newest frame wins, reopen on failure); ``loop`` replays a file or folder
    endlessly (a simulated camera).
    """
    spec = spec.strip()
    if not spec:
        raise SourceError("--source is empty")
    path = Path(spec)
    if spec.isdigit() or spec.startswith("/dev/video"):
        target: int | str = int(spec) if spec.isdigit() else spec
        return Source(spec, lambda: _camera(target, size), True if live is None else live)
    if spec.lower() in PICAMERA:
        return Source(spec, lambda: PicameraCapture(size or (640, 480)), True)
    if "!" in spec:
        _require_gstreamer(spec)
        return Source(
            "gstreamer", lambda: VideoCapture(spec, cv2.CAP_GSTREAMER, "GStreamer pipeline"), True
        )
    if URL.match(spec):
        return Source(spec, lambda: VideoCapture(spec, cv2.CAP_FFMPEG, "stream URL"), True)
    if path.is_dir():
        folder = FolderCapture(path)
        if not folder.paths:
            raise SourceError(f"--source {spec}: folder holds no images ({sorted(IMAGE_SUFFIXES)})")
        total = None if loop else len(folder.paths)
        return Source(spec, lambda: FolderCapture(path), bool(live), total=total, loop=loop)
    if not path.exists():
        raise SourceError(f"--source {spec}: no such file, folder, camera or stream")
    probe = VideoCapture(spec, cv2.CAP_ANY, "video file (unknown or corrupt format)")
    ok, image = probe.read()
    total, fps = probe.count(), probe.fps()
    probe.release()
    if not ok or not _valid(image):
        raise SourceError(f"--source {spec}: no decodable frame in this file")
    opener = lambda: VideoCapture(spec, cv2.CAP_ANY, "video file")  # noqa: E731
    return Source(spec, opener, bool(live), total, fps, loop=loop)


def _camera(target: int | str, size: tuple[int, int] | None) -> VideoCapture:
    capture = VideoCapture(target, cv2.CAP_V4L2 if _has_v4l2() else cv2.CAP_ANY, "camera")
    if size:
        capture.cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
        capture.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
    capture.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return capture


def _build_info(name: str) -> str:
    match = re.search(rf"{name}:\s*(\S+)", cv2.getBuildInformation())
    return match.group(1) if match else "NO"


def _has_v4l2() -> bool:
    return _build_info("v4l/v4l2") != "NO" or _build_info("V4L/V4L2") != "NO"


def _require_gstreamer(spec: str) -> None:
    if _build_info("GStreamer") == "NO":
        raise SourceError(
            f"--source '{spec[:40]}...': this OpenCV build has no GStreamer support; on Jetson "
            "use the system OpenCV (python3-opencv from JetPack), which has it"
        )
