"""Sources: camera loss and reopen, corrupt frames, folders, bad specs."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from edgesal.runtimes.errors import SourceError
from edgesal.runtimes.pipeline import Pipeline
from edgesal.runtimes.runner import Runner
from edgesal.runtimes.sources import Source, open_source
from tests.runtimes import synthetic


class FlakyCamera:
    """Delivers ``frames`` frames, then fails every read (an unplugged camera)."""

    def __init__(self, frames: int, start: int):
        self.left, self.value = frames, start

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        self.value += 1
        time.sleep(0.005)  # a camera delivers at its frame rate
        return True, np.full((48, 64, 3), self.value % 255, np.uint8)

    def release(self) -> None:
        pass


def flaky_opener(script: list):
    """Each call pops the next entry: a number of frames to deliver, or an exception to raise."""

    def open_next():
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        return FlakyCamera(step, 100 * len(script))

    return open_next


def test_camera_that_disappears_is_reopened_with_backoff():
    script = [5, SourceError("camera gone"), SourceError("still gone"), 7, 1000]
    source = Source("fake-camera", flaky_opener(script), live=True, max_backoff=0.05)
    seen = []
    for frame in source:
        seen.append(frame.index)
        if len(seen) == 20:
            source.close()
    assert seen == list(range(20))
    assert source.reopens == 2 and not script  # both reopens done, both failures retried


def test_run_continues_after_camera_loss(models):
    script = [6, SourceError("unplugged"), 6, 6, 1000]
    source = Source("fake-camera", flaky_opener(script), live=True, max_backoff=0.02)
    runner = Runner(Pipeline(str(models["vanilla"])), source, [], max_frames=30)
    summary = runner.run(handle_signals=False)
    assert summary.reopens >= 3 and summary.frames >= 10
    assert summary.stopped_by == "--max-frames 30"


def test_folder_skips_and_counts_corrupt_images(tmp_path):
    frames = synthetic.colour_frames(6)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"img{i:02d}.png"), frame)
    (tmp_path / "img02.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_source(str(tmp_path))
    assert source.total == 6 and not source.live
    images = [f.image for f in source]
    assert len(images) == 5 and source.corrupt == 1
    np.testing.assert_array_equal(images[2], frames[3])


def test_video_file_every_frame_in_order(video):
    source = open_source(str(video))
    assert not source.live and source.total == 40 and source.fps == pytest.approx(15, abs=0.1)
    assert [f.index for f in source] == list(range(40))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("/no/such/clip.mp4", "no such file"),
        ("rtsp://127.0.0.1:9/none", "cannot open stream URL"),
        ("/dev/video99", "cannot open camera"),
    ],
)
def test_unreadable_sources_are_clear_errors(spec, message):
    with pytest.raises(SourceError, match=message):
        open_source(spec)


def test_not_a_video_and_empty_folder(tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"this is not a video at all" * 100)
    with pytest.raises(SourceError, match="clip.mp4"):
        open_source(str(bad))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="holds no images"):
        open_source(str(tmp_path / "empty"))


def test_picamera2_absent_is_a_clear_error():
    pytest.importorskip("cv2")
    try:
        import picamera2  # noqa: F401
    except ImportError:
        with pytest.raises(SourceError, match="picamera2 package is not installed"):
            next(iter(open_source("picamera2")))
    else:  # on a Raspberry Pi the camera itself is opened
        assert open_source("picamera2").live
