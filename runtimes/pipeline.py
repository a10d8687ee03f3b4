"""The frame-by-frame pipeline: predict, explain, smooth, self-check, govern, draw.

:class:`Pipeline` is the API robot code calls per frame (``result = pipe.process(frame)``); the
threaded :class:`edgesal.runtimes.runner.Runner` calls its two halves, :meth:`Pipeline.infer` and
:meth:`Pipeline.render`, on separate threads so capture, inference and drawing overlap.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from edgesal.runtimes.backends import BackendOptions
from edgesal.runtimes.contract import Region
from edgesal.runtimes.detections import Detection, draw_boxes, top_elements
from edgesal.runtimes.governor import Budget, Governor, Sensors, State
from edgesal.runtimes.model import Inference, MethodChain, Variant, probabilities
from edgesal.runtimes.overlay import OverlayStyle, draw
from edgesal.runtimes.selfcheck import CheckConfig, CheckResult, counterfactual
from edgesal.runtimes.smoothing import MapSmoother

log = logging.getLogger("edgesal.runtimes.pipeline")


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the per-frame work depends on; the CLI flags map onto these fields."""

    smooth: float = 0.6
    cut_threshold: float = 30.0
    overlay: OverlayStyle = field(default_factory=OverlayStyle)
    selfcheck: CheckConfig = field(default_factory=CheckConfig)
    budget: Budget = field(default_factory=Budget)
    thermal_dir: str = "/sys/class/thermal"
    cgroup_root: str | None = None
    target_class: int | None = None  # class to explain for models with a 'target' input
    top_k: int = 3
    governor_interval: float = 0.25  # seconds between sensor reads


@dataclass
class FrameResult:
    """One processed frame; ``saliency`` is the smoothed map on the model's input grid."""

    index: int
    captured: float
    frame: np.ndarray
    state: State
    inference: Inference | None = None
    saliency: np.ndarray | None = None
    region: Region | None = None
    fresh_map: bool = False
    label: str = ""
    top: list[tuple[int, str, float]] = field(default_factory=list)
    check: CheckResult | None = None
    scene_cut: bool = False
    overlay: np.ndarray | None = None
    detections: list[Detection] = field(default_factory=list)  # detectors: top-k explained

    @property
    def prediction(self) -> int | None:
        return self.inference.top1 if self.inference else None

    @property
    def score(self) -> float | None:
        return float(self.inference.probs[self.inference.top1]) if self.inference else None

    def summary(self) -> dict:
        """JSON-able facts: the records' frame meta and the status page's last predictions."""
        inf = self.inference
        return {
            "frame": self.index,
            "time": self.captured,
            "label": self.label,
            "class": self.prediction,
            "score": self.score,
            "top": [[k, name, p] for k, name, p in self.top],
            "target": inf.target if inf else None,
            "method": inf.method if inf else None,
            "fresh_map": self.fresh_map,
            "model_ms": inf.seconds * 1000 if inf else None,
            "scene_cut": self.scene_cut,
            "governor": asdict(self.state),
            "selfcheck": self.check.as_dict() if self.check else None,
            "faithful": self.check.faithful if self.check else None,
            "detections": [[d.index, d.score, d.box] for d in self.detections],
        }


@dataclass
class Job:
    """A frame between :meth:`Pipeline.prepare` and :meth:`Pipeline.finish`: what to compute
    (decided in frame order) and, after :meth:`Pipeline.run`, the answer."""

    result: FrameResult
    variant: Variant
    want_map: bool = False
    target: int | None = None
    check_seed: int | None = None  # set when this map is due for the counterfactual self-check
    region: Region | None = None
    inference: Inference | None = None
    check: CheckResult | None = None
    detections: list[Detection] = field(default_factory=list)


class Pipeline:
    """Per-frame saliency with the budget governor; not thread-safe across concurrent ``infer``."""

    def __init__(
        self,
        models: MethodChain | list[str] | str,
        config: PipelineConfig | None = None,
        backend: BackendOptions | None = None,
    ):
        if isinstance(models, str):
            models = [models]
        self.chain = (
            models if isinstance(models, MethodChain) else MethodChain.load(models, backend)
        )
        self.config = config or PipelineConfig()
        sensors = Sensors(self.config.thermal_dir, self.config.cgroup_root)
        methods = [v.method for v in self.chain.variants]
        self.governor = Governor(self.config.budget, sensors, methods)
        self.smoother = MapSmoother(self.config.smooth, self.config.cut_threshold)
        self._rng = np.random.default_rng(0)
        self._last_top1: int | None = None
        self._last_map: tuple[np.ndarray, Region, tuple, list[Detection]] | None = None
        self._maps = 0
        self._frames = 0
        self._next_sensor_read = 0.0
        self.governor.update(time.time(), -1)

    @property
    def variant(self):
        return self.chain[self.governor.state.method_index]

    def govern(self, index: int) -> None:
        now = time.time()
        if now >= self._next_sensor_read:
            self._next_sensor_read = now + self.config.governor_interval
            self.governor.update(now, index)

    def infer(
        self, frame: np.ndarray, index: int = 0, captured: float | None = None
    ) -> FrameResult:
        """Prediction on every frame, a map when the governor's rate allows, the self-check when
        due. A paused governor returns the frame with no inference."""
        return self.finish(self.run(self.prepare(frame, index, captured)))

    def prepare(self, frame: np.ndarray, index: int = 0, captured: float | None = None) -> Job:
        """The ordered first step of :meth:`infer`: governor, scene cut, what to compute.
        Call it in frame order; :meth:`run` may then run on several jobs at once."""
        self._frames += 1
        self.govern(index)
        state = self.governor.state
        captured = time.time() if captured is None else captured
        if state.scale != 1.0:
            frame = cv2.resize(
                frame, None, fx=state.scale, fy=state.scale, interpolation=cv2.INTER_AREA
            )
        result = FrameResult(index, captured, frame, state)
        result.scene_cut = self.smoother.scene_cut(frame)
        job = Job(result, self.variant)
        if state.paused:
            return job
        job.want_map = self._maps_due(index, state)
        job.target = self._target()
        every = self.config.selfcheck.every
        if job.want_map:
            self._maps += 1
            if every > 0 and (self._maps - 1) % every == 0:
                job.check_seed = int(self._rng.integers(2**63))
        return job

    def run(self, job: Job) -> Job:
        """The model call (and self-check) of a prepared job; safe on several threads at once."""
        if job.result.state.paused:
            return job
        variant = job.variant
        tensor, crop, job.region = variant.preprocessor(job.result.frame)
        if variant.element_output is not None:
            return self._detect(job, variant, tensor)
        job.inference = inf = variant.run(tensor, job.target, job.want_map)
        if inf.saliency is not None and job.check_seed is not None:
            prob = float(inf.probs[inf.target])
            rng = np.random.default_rng(job.check_seed)
            job.check = counterfactual(
                variant, crop, inf.saliency, inf.target, prob, self.config.selfcheck, rng
            )
        return job

    def _detect(self, job: Job, variant: Variant, tensor: np.ndarray) -> Job:
        """A detector (``--target output:NAME:input``): when a map is due its top-k elements (or
        the one ``target_class`` names) are explained in one batch; the first one's map is the
        frame's map, all boxes are drawn."""
        start = time.perf_counter()
        scores = variant.element_scores(tensor)
        best, saliency = int(np.argmax(scores)), None
        if job.want_map:
            chosen = self.config.target_class
            top = top_elements(scores, self.config.top_k) if chosen is None else [chosen]
            job.detections = variant.explain_elements(tensor, top)
            best, saliency = job.detections[0].index, job.detections[0].saliency
        seconds = time.perf_counter() - start
        job.inference = Inference(probabilities(scores), best, saliency, variant.method, seconds)
        return job

    def finish(self, job: Job) -> FrameResult:
        """The ordered last step: labels, temporal smoothing, the map carried to frames without
        one. Call it in frame order."""
        result, inf = job.result, job.inference
        if inf is None:
            return result
        variant = job.variant
        result.inference, result.check, result.detections = inf, job.check, job.detections
        self._last_top1 = inf.top1
        result.label = variant.contract.label(inf.top1)
        result.top = [(k, variant.contract.label(k), p) for k, p in inf.top(self.config.top_k)]
        key = (inf.target, inf.method, result.frame.shape[:2])
        if inf.saliency is not None:
            result.saliency = self.smoother.update(inf.saliency, key, result.scene_cut)
            result.region, result.fresh_map = job.region, True
            self._last_map = (result.saliency, job.region, key, result.detections)
        elif self._last_map is not None and not result.scene_cut and self._last_map[2] == key:
            result.saliency, result.region, _, result.detections = self._last_map
        return result

    def _maps_due(self, index: int, state: State) -> bool:
        return state.saliency_every <= 1 or index % state.saliency_every == 0

    def _target(self) -> int | None:
        if self.config.target_class is not None:
            return self.config.target_class
        return self._last_top1 if self._last_top1 is not None else 0

    def render(self, result: FrameResult) -> np.ndarray:
        """Overlay of the map, the label/score caption and any warning; stored on ``result``."""
        caption, warning = self.caption(result)
        result.overlay = draw(
            result.frame, result.saliency, result.region, caption, self.config.overlay, warning
        )
        region = result.region
        if result.detections and region is not None:  # boxes on the model's grid, in its region
            window = result.overlay[region.y : region.y + region.h, region.x : region.x + region.w]
            draw_boxes(window, result.detections, self.variant.grid())
        return result.overlay

    def caption(self, result: FrameResult) -> tuple[str, str]:
        state = result.state
        if result.inference is None:
            return "paused", "governor: " + self._last_reason()
        inf = result.inference
        caption = f"{result.label} {result.score:.2f} | {inf.method}"
        if result.detections:  # a detector: raw scores of the explained elements, not softmax
            best = result.detections[0]
            caption = f"{len(result.detections)} explained | best #{best.index} score "
            caption += f"{best.score:.2f} | {inf.method}"
        elif self.chain[0].contract.target_input or inf.target != inf.top1:
            caption += f" | explains {self.variant.contract.label(inf.target)}"
        warning = ""
        if result.check is not None and not result.check.faithful:
            warning = f"map failed self-check (drop {result.check.drop:.2f})"
        elif state.level:
            warning = f"governor level {state.level}: {self._last_reason()}"
        return caption, warning

    def _last_reason(self) -> str:
        decisions = self.governor.decisions
        return decisions[-1].reason if decisions else ""

    def process(self, frame: np.ndarray, index: int | None = None) -> FrameResult:
        """``infer`` then ``render``: the one call per frame for robot control loops."""
        index = self._frames if index is None else index
        result = self.infer(frame, index)
        self.render(result)
        return result
