"""Calibration images: a folder, a video file or the built-in real photos, split explicitly.

Every source yields named RGB uint8 images. The split into calibration images (ranges and float
decisions are fitted on them) and validation images (held out, only measured) is part of the
report. Calibration images may be augmented with flips and crops; validation images never are.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgesal.errors import InputError
from edgesal.imaging import read_folder
from edgesal.runtimes.contract import Preprocess, image_tensor

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
BUILTIN = "builtin"
# Held out: the demo photos (edgesal.zoo.photos) with a clear ImageNet class, so top-1 agreement
# means something. Calibration: the other real photos in the scikit-image and scikit-learn wheels
# (the astronaut and the dahlia have no ImageNet class; 'camera' is grey, stacked to RGB).
BUILTIN_VALIDATION = ("chelsea", "coffee", "rocket", "china")
BUILTIN_CALIBRATION = (
    "astronaut", "flower", "stereo_motorcycle", "hubble_deep_field", "immunohistochemistry",
    "retina", "camera",
)  # fmt: skip


class CalibrationWarning(UserWarning):
    """Something about the calibration images was fixed up (resized, skipped); it is named."""


@dataclass(frozen=True)
class Sample:
    """One image; ``origin`` names the image an augmented copy was made from."""

    name: str
    rgb: np.ndarray
    origin: str | None = None


@dataclass
class ImageSplit:
    """Calibration and validation images and where they came from."""

    source: str
    calibration: list[Sample]
    validation: list[Sample]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        originals = [s.name for s in self.calibration if s.origin is None]
        return {
            "source": self.source,
            "calibration": originals,
            "calibration_augmented": len(self.calibration) - len(originals),
            "validation": [s.name for s in self.validation],
            "notes": list(self.notes),
        }


def load_split(
    source: str | Path,
    validation: float = 0.3,
    augment: int = 3,
    max_frames: int = 48,
    seed: int = 0,
) -> ImageSplit:
    """Images from ``source`` (a folder, a video file, or ``builtin``), split and augmented."""
    if str(source) == BUILTIN:
        split = builtin_split()
    else:
        path = Path(source)
        if path.is_dir():
            samples = folder_images(path)
        elif path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            samples = video_frames(path, max_frames)
        elif path.is_file():
            raise InputError(
                f"--calib {path}: not a folder or a video ({', '.join(VIDEO_SUFFIXES)})"
            )
        else:
            raise InputError(f"--calib {path}: no such folder or file")
        split = split_samples(samples, validation, str(path))
    if augment:
        split.calibration = augmented(split.calibration, augment, seed)
        split.notes.append(
            f"calibration images augmented with {augment} flipped/cropped copies each"
        )
    return split


def folder_images(path: Path) -> list[Sample]:
    """Every readable image in ``path`` (name order, :func:`edgesal.imaging.read_folder`);
    unreadable files are skipped with a warning naming them."""
    unreadable: list[str] = []
    images = read_folder(path, "--calib", unreadable=unreadable)
    if unreadable:
        warnings.warn(
            f"--calib {path}: skipped {len(unreadable)} unreadable file(s): "
            f"{', '.join(unreadable[:5])}{' ...' if len(unreadable) > 5 else ''}",
            CalibrationWarning,
            stacklevel=2,
        )
    return [Sample(name, rgb) for name, rgb in images.items()]


def video_frames(path: Path, max_frames: int) -> list[Sample]:
    """Up to ``max_frames`` frames spread evenly over the video."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise InputError(f"--calib {path}: the video cannot be opened")
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        wanted = set(np.linspace(0, max(total - 1, 0), max_frames).round().astype(int).tolist())
        samples, index = [], 0
        while len(samples) < max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            if total <= 0 or index in wanted:
                samples.append(Sample(f"{path.name}#{index}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
            index += 1
    finally:
        capture.release()
    if not samples:
        raise InputError(f"--calib {path}: no frame could be decoded")
    return samples


def builtin_photos(names: tuple[str, ...]) -> list[Sample]:
    """Real photos from the scikit-image and scikit-learn wheels (the ``demo`` extra)."""
    try:
        import skimage.data
        from sklearn.datasets import load_sample_image
    except ImportError as exc:
        raise InputError(
            f"--calib builtin needs scikit-image and scikit-learn ({exc.name} is missing); "
            "install them with: pip install 'edgesal[demo]'"
        ) from exc
    samples = []
    for name in names:
        if name in ("china", "flower"):
            image = load_sample_image(f"{name}.jpg")
        else:
            image = getattr(skimage.data, name)()
            image = image[0] if isinstance(image, tuple) else image  # stereo pair: left view
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        samples.append(Sample(name, np.ascontiguousarray(image[..., :3], dtype=np.uint8)))
    return samples


def builtin_split() -> ImageSplit:
    """The documented split of the built-in photos: demo photos held out for validation."""
    return ImageSplit(
        BUILTIN,
        builtin_photos(BUILTIN_CALIBRATION),
        builtin_photos(BUILTIN_VALIDATION),
        ["built-in photos from scikit-image and scikit-learn; grey photos stacked to RGB"],
    )


def split_samples(samples: list[Sample], validation: float, source: str) -> ImageSplit:
    """Every k-th image (in name order) held out so ``validation`` of them validate."""
    if not 0.0 < validation < 1.0:
        raise InputError(f"--validation {validation}: must be a fraction between 0 and 1")
    if len(samples) < 2:
        raise InputError(
            f"--calib {source}: {len(samples)} image(s); need at least 2 (calibration and "
            "validation)"
        )
    count = min(len(samples) - 1, max(1, round(len(samples) * validation)))
    held = set(np.linspace(0, len(samples) - 1, count + 2)[1:-1].round().astype(int).tolist())
    while len(held) < count:  # rounding collisions on tiny sets
        held.add(next(i for i in range(len(samples)) if i not in held))
    return ImageSplit(
        source,
        [s for i, s in enumerate(samples) if i not in held],
        [s for i, s in enumerate(samples) if i in held],
    )


def augmented(samples: list[Sample], copies: int, seed: int = 0) -> list[Sample]:
    """The samples plus ``copies`` variants each: a horizontal flip, then random crops (60-90%
    of each side) flipped at random."""
    rng = np.random.default_rng(seed)
    result = list(samples)
    for sample in samples:
        for k in range(copies):
            image = sample.rgb[:, ::-1] if k == 0 else _random_crop(sample.rgb, rng)
            result.append(Sample(f"{sample.name}+aug{k}", np.ascontiguousarray(image), sample.name))
    return result


def _random_crop(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = rgb.shape[:2]
    ch, cw = (min(d, max(1, int(d * rng.uniform(0.6, 0.9)))) for d in (h, w))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    crop = rgb[top : top + ch, left : left + cw]
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def model_inputs(samples: list[Sample], pre: Preprocess) -> list[np.ndarray]:
    """Each sample prepared as the model's input [1, ...] by the device's pixel path
    (:func:`edgesal.runtimes.contract.image_tensor`), so the ranges are fitted on the pixels the
    device feeds.

    Images whose size differs from the model input are resized as the model's preprocessing
    says; a warning names how many and which.
    """
    height, width = pre.size
    odd = [s for s in samples if s.origin is None and s.rgb.shape[:2] != (height, width)]
    if odd:
        names = ", ".join(f"{s.name} ({s.rgb.shape[1]}x{s.rgb.shape[0]})" for s in odd[:4])
        warnings.warn(
            f"{len(odd)} image(s) are not {width}x{height} and were resized and center-cropped "
            f"to the model input: {names}{' ...' if len(odd) > 4 else ''}",
            CalibrationWarning,
            stacklevel=2,
        )
    return [image_tensor(s.rgb, pre) for s in samples]
