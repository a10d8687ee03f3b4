"""Calibration sources: folders, videos, built-in photos; the split; bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgesal.errors import InputError
from edgesal.quant.images import (
    BUILTIN_CALIBRATION,
    BUILTIN_VALIDATION,
    CalibrationWarning,
    Sample,
    augmented,
    builtin_split,
    load_split,
    model_inputs,
    split_samples,
)
from edgesal.runtimes.contract import Preprocess


def test_folder_split_is_explicit_and_disjoint(photo_folder):
    split = load_split(photo_folder, validation=0.25, augment=2)
    summary = split.summary()
    assert len(summary["validation"]) == 2 and len(summary["calibration"]) == 6
    assert not set(summary["validation"]) & set(summary["calibration"])
    assert summary["calibration_augmented"] == 12
    assert all(s.origin is None for s in split.validation)  # held-out images are never augmented
    augmented_origins = {s.origin for s in split.calibration if s.origin}
    assert augmented_origins == set(summary["calibration"])
    assert "augmented" in " ".join(summary["notes"])


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(InputError, match="--calib .*: no image files in this folder"):
        load_split(tmp_path)


def test_unreadable_folder_is_an_error(tmp_path):
    for name in ("a.png", "b.jpg"):
        (tmp_path / name).write_bytes(b"not an image")
    with pytest.raises(InputError, match="none of its 2 image files could be read"):
        load_split(tmp_path)


def test_unreadable_files_are_skipped_with_a_warning(photo_folder, tmp_path):
    for path in sorted(photo_folder.iterdir())[:3]:
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "broken.png").write_bytes(b"\x89PNG truncated")
    with pytest.warns(CalibrationWarning, match="broken.png"):
        split = load_split(tmp_path, augment=0)
    assert len(split.calibration) + len(split.validation) == 3


def test_missing_path_and_non_video_file(tmp_path):
    with pytest.raises(InputError, match="no such folder or file"):
        load_split(tmp_path / "nowhere")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(InputError, match="not a folder or a video"):
        load_split(text)


def test_video_frames(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for k in range(20):
        writer.write(np.full((24, 32, 3), k * 10, np.uint8))
    writer.release()
    split = load_split(path, validation=0.25, augment=0, max_frames=8)
    names = [s.name for s in split.calibration + split.validation]
    assert len(names) == 8 and all(n.startswith("clip.avi#") for n in names)
    assert len(split.validation) == 2


def test_undecodable_video_is_an_error(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="broken.mp4"):
        load_split(path)


def test_split_needs_two_images_and_a_fraction():
    one = [Sample("a", np.zeros((4, 4, 3), np.uint8))]
    with pytest.raises(InputError, match="need at least 2"):
        split_samples(one, 0.3, "src")
    with pytest.raises(InputError, match="--validation 1.5"):
        split_samples(one * 2, 1.5, "src")


def test_augmented_copies_point_at_their_origin():
    base = [Sample("a", np.arange(48, dtype=np.uint8).reshape(4, 4, 3))]
    result = augmented(base, 3)
    assert [s.origin for s in result] == [None, "a", "a", "a"]
    assert np.array_equal(result[1].rgb, base[0].rgb[:, ::-1])


def test_wrong_size_images_are_resized_with_a_warning():
    pre = Preprocess(size=[16, 16])
    samples = [
        Sample("big", np.zeros((40, 30, 3), np.uint8)),
        Sample("ok", np.zeros((16, 16, 3), np.uint8)),
    ]
    with pytest.warns(CalibrationWarning, match=r"1 image\(s\) are not 16x16.*big \(30x40\)"):
        inputs = model_inputs(samples, pre)
    assert [x.shape for x in inputs] == [(1, 3, 16, 16)] * 2


def test_builtin_split_is_fixed_and_disjoint():
    split = builtin_split()
    assert [s.name for s in split.validation] == list(BUILTIN_VALIDATION)
    assert [s.name for s in split.calibration] == list(BUILTIN_CALIBRATION)
    assert all(s.rgb.ndim == 3 and s.rgb.shape[2] == 3 for s in split.calibration)
