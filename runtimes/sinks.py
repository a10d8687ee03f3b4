"""Where processed frames go: a window, a video file, the records file, the HTTP board."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Protocol

import cv2

from edgesal.runtimes.errors import OutputError
from edgesal.runtimes.frameboard import FrameBoard
from edgesal.runtimes.pipeline import FrameResult
from edgesal.runtimes.records import RecordWriter

log = logging.getLogger("edgesal.runtimes.sinks")
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".avi": "MJPG", ".mkv": "XVID", ".mov": "mp4v"}
DISK_RESERVE = 16 << 20  # a video stops while this much is still free (OpenCV fails silently)
DISK_CHECK_EVERY = 30  # frames between free-space checks


class Sink(Protocol):
    def write(self, result: FrameResult) -> None: ...

    def close(self) -> None: ...


def display_available() -> bool:
    """A display server is reachable and this OpenCV build has a GUI (headless builds do not)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow("edgesal-probe", cv2.WINDOW_NORMAL)
        cv2.destroyWindow("edgesal-probe")
    except cv2.error:
        return False
    return True


class WindowSink:
    """An OpenCV window; pressing q or Esc asks the run to stop."""

    def __init__(self, stop, title: str = "edgesal"):
        self.stop, self.title = stop, title

    def write(self, result: FrameResult) -> None:
        cv2.imshow(self.title, result.overlay)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.stop()

    def close(self) -> None:
        cv2.destroyAllWindows()


class VideoSink:
    """Overlay frames to a video file at the source's frame rate; size fixed by the first frame
    (frames shrunk by the governor are scaled back up). OpenCV's writer drops frames silently on
    a full disk, so the free space of the folder is checked every ``DISK_CHECK_EVERY`` frames and
    the run stops with :class:`OutputError` when less than ``DISK_RESERVE`` is left."""

    def __init__(self, path: str | Path, fps: float):
        self.path = Path(path)
        self.fps = fps if fps and fps > 0 else 30.0
        fourcc = FOURCC.get(self.path.suffix.lower())
        if fourcc is None:
            raise OutputError(f"--record {path}: unknown video suffix (use {', '.join(FOURCC)})")
        self.fourcc = cv2.VideoWriter.fourcc(*fourcc)
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"--record {path}: {exc}") from exc

    def write(self, result: FrameResult) -> None:
        image = result.overlay
        if self.writer is None:
            self.size = (image.shape[1], image.shape[0])
            self.writer = cv2.VideoWriter(str(self.path), self.fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                raise OutputError(f"--record {self.path}: OpenCV cannot write this video format")
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_LINEAR)
        if self.frames % DISK_CHECK_EVERY == 0:
            self._check_space()
        self.writer.write(image)
        self.frames += 1

    def _check_space(self) -> None:
        try:
            stat = os.statvfs(self.path.parent)
        except OSError:
            return  # not a local file system that reports its space
        free = stat.f_bavail * stat.f_frsize
        if free < DISK_RESERVE:
            raise OutputError(
                f"--record {self.path}: disk nearly full ({free >> 20} MiB free) after "
                f"{self.frames} frames; the video is closed with those frames and the run stops"
            )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class RecordsSink:
    """Each frame's prediction, governor state and self-check, with its quantized map when one
    was computed for that frame; governor decisions as events."""

    def __init__(self, path: str | Path, header: dict, bits: int = 8, fsync_every: int = 0):
        self.writer = RecordWriter(path, header, bits, fsync_every)
        self._last_decision = float("-inf")

    def write(self, result: FrameResult) -> None:
        meta = result.summary()
        saliency = None
        if result.fresh_map and result.saliency is not None:
            r = result.region
            meta["map"] = {
                "region": [r.x, r.y, r.w, r.h],
                "frame_size": [result.frame.shape[1], result.frame.shape[0]],
            }
            saliency = result.saliency
        self.writer.frame(meta, saliency)

    def decisions(self, decisions: list[dict]) -> None:
        """Write the governor decisions newer than the last one written."""
        for decision in decisions:
            if decision["time"] > self._last_decision:
                self.writer.event({"type": "governor", **decision})
                self._last_decision = decision["time"]

    def close(self) -> None:
        self.writer.close()


class BoardSink:
    """Publishes overlays to the HTTP server's board (JPEG-encoded while someone watches)."""

    def __init__(self, board: FrameBoard, always_encode: bool = False):
        self.board, self.always = board, always_encode

    def write(self, result: FrameResult) -> None:
        self.board.publish(result.overlay, force=self.always)

    def close(self) -> None:
        pass
