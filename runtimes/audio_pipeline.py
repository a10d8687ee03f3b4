"""The per-window pipeline for audio models: samples -> features -> prediction and a time x
frequency map, drawn over the spectrogram.

:class:`AudioPipeline` is a :class:`edgesal.runtimes.pipeline.Pipeline` whose frames are windows
of samples (:mod:`edgesal.runtimes.audio_sources`): the governor, the method chain, the order of
work and every sink stay those of the image pipeline; what changes is the tensor (the front end of
:mod:`edgesal.runtimes.audio`, parameters from the model's ``edgesal.audio`` metadata), the map's
axes (time x frequency), the self-check (the most salient feature cells are replaced by the mean
of the others) and the picture: the spectrogram, frequency upwards, with the map blended over it.
Windows of a stream cover different times, so maps are not averaged over windows, and the
governor's ``resolution`` step has no meaning for audio and is dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from pathlib import Path

import cv2
import numpy as np

from edgesal.runtimes.audio import (
    META_KEY,
    FeatureExtractor,
    FrontEnd,
    input_layout,
    map_from_output,
    to_input,
)
from edgesal.runtimes.audio_sources import Windowing
from edgesal.runtimes.contract import Region
from edgesal.runtimes.errors import ModelError
from edgesal.runtimes.model import MethodChain, Variant
from edgesal.runtimes.overlay import draw, top_fraction_mask
from edgesal.runtimes.pipeline import FrameResult, Job, Pipeline, PipelineConfig
from edgesal.runtimes.selfcheck import CheckConfig, CheckResult
from edgesal.runtimes.sinks import RecordsSink
from edgesal.runtimes.smoothing import MapSmoother

log = logging.getLogger("edgesal.runtimes.audio_pipeline")
VIEW_SIZE = (640, 320)  # (W, H) of the drawn spectrogram


def is_audio(chain: MethodChain) -> bool:
    """Whether the chain's models carry an audio front end (``edgesal.audio``)."""
    return META_KEY in chain[0].contract.extra


@dataclass
class AudioInput:
    """How one model's input is made from samples: front end, axes, frames per window."""

    front: FrontEnd
    extractor: FeatureExtractor
    layout: str
    frames: int

    @classmethod
    def of(cls, variant: Variant, stride: float | None = None) -> AudioInput:
        where = variant.path
        front = FrontEnd.from_meta(variant.contract.extra.get(META_KEY), where)
        if stride is not None:
            front = replace(front, stride=stride)
        shape, _ = variant.backend.inputs[variant.contract.input]
        layout = input_layout(front, len(shape), str(variant.contract.extra.get("axes", "")))
        dims = dict(zip(layout, shape, strict=True))
        frames, features = dims["T"], dims["F"]
        if not (isinstance(frames, int) and frames > 0):
            raise ModelError(f"{where}: audio input {list(shape)} needs a fixed time axis")
        if features != front.features:
            raise ModelError(
                f"{where}: audio input {list(shape)} ({layout}) has {features} features per "
                f"frame but edgesal.audio makes {front.features}"
            )
        extractor = FeatureExtractor(front, Path(variant.path).parent)
        return cls(front, extractor, layout, frames)

    def windowing(self) -> Windowing:
        f = self.front
        return Windowing(
            f.sample_rate, f.window_samples(self.frames), f.stride_samples(self.frames)
        )

    def features(self, samples: np.ndarray) -> np.ndarray:
        """[T, F] for one window (trimmed or edge-padded to the model's T, which LFR rounding
        can miss by one frame)."""
        x = self.extractor(samples)
        if x.shape[0] >= self.frames:
            return x[: self.frames]
        return np.pad(x, ((0, self.frames - x.shape[0]), (0, 0)), mode="edge")


@dataclass
class AudioResult(FrameResult):
    """A window's result: ``frame`` holds its samples, ``features`` the [T, F] input."""

    features: np.ndarray | None = None
    start: float = 0.0  # seconds from the start of the source

    @classmethod
    def of(cls, result: FrameResult, start: float) -> AudioResult:
        return cls(**{f.name: getattr(result, f.name) for f in fields(FrameResult)}, start=start)

    def map_meta(self, audio: AudioInput) -> dict:
        """The ``map`` entry of the window's record (docs/salrec.md, version 2)."""
        f = audio.front
        return {
            "kind": "time_frequency",
            "axes": ["time", "frequency"],
            "start": self.start,
            "frame_seconds": f.hop_length * f.lfr_n / f.sample_rate,
            "window_seconds": audio.windowing().window / f.sample_rate,
        }


class _NoCuts(MapSmoother):
    """Windows never start a 'scene' and maps are never averaged across windows."""

    def __init__(self):
        super().__init__(0.0)

    def scene_cut(self, frame: np.ndarray) -> bool:
        return False


class AudioPipeline(Pipeline):
    """Per-window audio saliency; same governor, order and sinks as the image pipeline."""

    def __init__(
        self, chain: MethodChain, config: PipelineConfig | None = None, stride: float | None = None
    ):
        config = config or PipelineConfig()
        policies = tuple(p for p in config.budget.policies if p != "resolution")
        config = replace(config, budget=replace(config.budget, policies=policies))
        super().__init__(chain, config)
        self.smoother = _NoCuts()
        self.inputs = {id(v): AudioInput.of(v, stride) for v in chain.variants}
        windowings = {a.windowing() for a in self.inputs.values()}
        if len(windowings) > 1:
            raise ModelError(f"the chain's audio models read different windows: {windowings}")
        self.windowing = windowings.pop()

    @property
    def audio(self) -> AudioInput:
        return self.inputs[id(self.variant)]

    def prepare(self, frame: np.ndarray, index: int = 0, captured: float | None = None) -> Job:
        job = super().prepare(frame, index, captured)
        w = self.windowing
        job.result = AudioResult.of(job.result, index * w.stride / w.rate)
        return job

    def run(self, job: Job) -> Job:
        """Features of the window, the model call, and the feature-space self-check when due."""
        result = job.result
        if result.state.paused:
            return job
        audio = self.inputs[id(job.variant)]
        result.features = features = audio.features(result.frame)
        job.inference = inf = job.variant.run(
            to_input(features, audio.layout), job.target, job.want_map
        )
        if inf.saliency is not None:
            inf.saliency = map_from_output(inf.saliency, audio.layout)
            if inf.saliency.shape != features.shape:
                raise ModelError(
                    f"{job.variant.path}: map {inf.saliency.shape} does not match the features "
                    f"{features.shape}; export without --reduce over the time or frequency axis"
                )
            if job.check_seed is not None:
                prob = float(inf.probs[inf.target])
                rng = np.random.default_rng(job.check_seed)
                job.check = feature_counterfactual(
                    job.variant, audio, features, inf.saliency, inf.target, prob,
                    self.config.selfcheck, rng,
                )  # fmt: skip
        return job

    def render(self, result: FrameResult) -> np.ndarray:
        """The spectrogram with the map blended over it, caption and window time."""
        caption, warning = self.caption(result)
        features = getattr(result, "features", None)
        if features is None:  # paused: nothing was computed for this window
            features = np.zeros((self.audio.frames, self.audio.front.features), np.float32)
        image = spectrogram_image(features, VIEW_SIZE, self.audio.front.log == "none")
        saliency = None if result.saliency is None else np.flipud(result.saliency.T)
        start = getattr(result, "start", 0.0)
        seconds = self.windowing.window / self.windowing.rate
        caption = f"{caption} | {start:.2f}-{start + seconds:.2f} s"
        region = Region(0, 0, VIEW_SIZE[0], VIEW_SIZE[1])
        result.overlay = draw(image, saliency, region, caption, self.config.overlay, warning)
        return result.overlay


def spectrogram_image(features: np.ndarray, size: tuple[int, int], linear: bool) -> np.ndarray:
    """[T, F] features as a BGR picture of ``size`` (W, H): time to the right, frequency up,
    grey levels spanning the window's 1st..99th percentile (of ``log(1e-6 + x)`` for ``linear``
    features, which would otherwise show only their loudest cells)."""
    if linear:
        features = np.log(np.maximum(features, 0) + 1e-6)
    low, high = np.percentile(features, [1, 99]) if features.size else (0.0, 1.0)
    scale = 255.0 / (high - low) if high > low else 0.0
    grey = np.clip((features.T[::-1] - low) * scale, 0, 255).astype(np.uint8)
    grey = cv2.resize(grey, size, interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def feature_counterfactual(
    variant: Variant,
    audio: AudioInput,
    features: np.ndarray,
    saliency: np.ndarray,
    target: int,
    prob: float,
    config: CheckConfig,
    rng: np.random.Generator,
) -> CheckResult:
    """The self-check in feature space: the top ``fraction`` cells of the map, and a random set
    of as many cells, each replaced by the mean of the other cells; relative score drops."""
    top = top_fraction_mask(saliency, config.fraction)
    control = np.zeros(saliency.size, bool)
    control[rng.choice(saliency.size, int(top.sum()), replace=False)] = True
    drops = []
    for mask in (top, control.reshape(saliency.shape)):
        masked = features.copy()
        masked[mask] = features[~mask].mean() if (~mask).any() else features.mean()
        after = variant.run(to_input(masked, audio.layout), target, want_map=False).probs[target]
        drops.append(float((prob - after) / max(prob, 1e-12)))
    faithful = drops[0] >= config.min_drop and drops[0] > drops[1]
    return CheckResult(drops[0], drops[1], faithful, config.fraction)


class AudioRecordsSink(RecordsSink):
    """Records of audio windows: the map is ``time_frequency`` [T, F] (format version 2)."""

    def __init__(self, pipeline: AudioPipeline, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pipeline = pipeline

    def write(self, result: FrameResult) -> None:
        meta = result.summary()
        saliency = None
        if result.fresh_map and result.saliency is not None:
            meta["map"] = result.map_meta(self.pipeline.audio)
            saliency = result.saliency
        self.writer.frame(meta, saliency)


def stream_header(pipeline: AudioPipeline) -> dict:
    """Records-header entries of an audio stream: modality, front end, window."""
    audio, w = pipeline.audio, pipeline.windowing
    return {
        "modality": "audio",
        "audio": {**audio.front.__dict__, "window_samples": w.window, "stride_samples": w.stride},
        "input_size": [audio.frames, audio.front.features],
    }
