"""The per-window pipeline for audio, series and tabular models: a window of the source ->
the model's input -> prediction and a map on the input's own axes, drawn and recorded.

:class:`SignalPipeline` is a :class:`edgesal.runtimes.pipeline.Pipeline` whose frames are windows
(of samples from :mod:`edgesal.runtimes.audio_sources`, of table rows from
:mod:`edgesal.runtimes.table_sources`): the governor, the method chain, the order of work and
every sink stay those of the image pipeline; what changes comes from the input's adapter
(:mod:`edgesal.runtimes.signal_inputs`): the tensor, the map's axes, the self-check (the most
salient cells replaced by the mean of the others) and the picture (a spectrogram, a series with
its map as a band, a row of bars). Windows of a stream cover different times, so maps are not
averaged over windows, and the governor's ``resolution`` step has no meaning here and is dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace

import numpy as np

from edgesal.runtimes.contract import Region
from edgesal.runtimes.errors import ModelError
from edgesal.runtimes.model import MethodChain, Variant
from edgesal.runtimes.overlay import draw, top_fraction_mask
from edgesal.runtimes.pipeline import FrameResult, Job, Pipeline, PipelineConfig
from edgesal.runtimes.selfcheck import CheckConfig, CheckResult
from edgesal.runtimes.signal_inputs import SIGNALS, input_for, modality
from edgesal.runtimes.sinks import RecordsSink
from edgesal.runtimes.smoothing import MapSmoother

log = logging.getLogger("edgesal.runtimes.signal_pipeline")
VIEW_SIZE = (640, 320)  # (W, H) of the drawn window


def signal_kind(chain: MethodChain) -> str | None:
    """``audio``, ``series`` or ``tabular`` for a chain of such models; None for images."""
    kinds = {modality(v) for v in chain.variants}
    if len(kinds) > 1:
        raise ModelError(f"the chain mixes input kinds {sorted(kinds)}")
    kind = kinds.pop()
    return kind if kind in SIGNALS else None


@dataclass
class SignalResult(FrameResult):
    """A window's result: ``frame`` holds the raw window, ``values`` the model's input."""

    values: np.ndarray | None = None

    @classmethod
    def of(cls, result: FrameResult) -> SignalResult:
        return cls(**{f.name: getattr(result, f.name) for f in fields(FrameResult)})


class _NoCuts(MapSmoother):
    """Windows never start a 'scene' and maps are never averaged across windows."""

    def __init__(self):
        super().__init__(0.0)

    def scene_cut(self, frame: np.ndarray) -> bool:
        return False


class SignalPipeline(Pipeline):
    """Per-window saliency for non-image inputs; same governor, order and sinks as images.
    ``stride``: seconds (audio) or rows (series) between window starts."""

    def __init__(
        self, chain: MethodChain, config: PipelineConfig | None = None, stride: float | None = None
    ):
        config = config or PipelineConfig()
        policies = tuple(p for p in config.budget.policies if p != "resolution")
        config = replace(config, budget=replace(config.budget, policies=policies))
        super().__init__(chain, config)
        self.smoother = _NoCuts()
        self.kind = signal_kind(chain)
        self.inputs = {id(v): input_for(v, stride) for v in chain.variants}
        windowings = {a.windowing() for a in self.inputs.values()}
        if len(windowings) > 1:
            raise ModelError(f"the chain's models read different windows: {windowings}")
        self.windowing = windowings.pop()

    @property
    def input(self):
        """The adapter of the current method's model."""
        return self.inputs[id(self.variant)]

    def prepare(self, frame: np.ndarray, index: int = 0, captured: float | None = None) -> Job:
        job = super().prepare(frame, index, captured)
        job.result = SignalResult.of(job.result)
        return job

    def run(self, job: Job) -> Job:
        """The model's input from the window, the model call, the self-check when due."""
        result = job.result
        if result.state.paused:
            return job
        adapter = self.inputs[id(job.variant)]
        result.values = values = adapter.values(result.frame)
        inf = job.variant.run(adapter.tensor(values), job.target, job.want_map)
        job.inference = inf
        if inf.saliency is not None:
            inf.saliency = adapter.to_map(inf.saliency, job.variant.path)
            if job.check_seed is not None:
                rng = np.random.default_rng(job.check_seed)
                job.check = masked_check(
                    job.variant, adapter, values, inf.saliency, inf.target,
                    float(inf.probs[inf.target]), self.config.selfcheck, rng,
                )  # fmt: skip
        return job

    def finish(self, job: Job) -> FrameResult:
        """As for images, except that a window without a fresh map shows none: the last map
        belongs to another stretch of time (or of the table)."""
        result = super().finish(job)
        if not result.fresh_map:
            result.saliency = None
        return result

    def render(self, result: FrameResult) -> np.ndarray:
        """The window's picture with the map, caption and the window's span."""
        caption, warning = self.caption(result)
        adapter = self.input
        values = getattr(result, "values", None)
        values = adapter.empty() if values is None else values
        image, on_image = adapter.picture(values, result.saliency, VIEW_SIZE)
        caption = f"{caption} | {adapter.span(result.index)}"
        region = Region(0, 0, VIEW_SIZE[0], VIEW_SIZE[1])
        result.overlay = draw(image, on_image, region, caption, self.config.overlay, warning)
        adapter.annotate(result.overlay)
        return result.overlay


def masked_check(
    variant: Variant,
    adapter,
    values: np.ndarray,
    saliency: np.ndarray,
    target: int,
    prob: float,
    config: CheckConfig,
    rng: np.random.Generator,
) -> CheckResult:
    """The self-check on the model's input: the top ``fraction`` cells of the map, and a random
    set of as many cells, masked by the adapter (mean of the others); relative score drops."""
    top = top_fraction_mask(saliency, config.fraction)
    control = np.zeros(saliency.size, bool)
    control[rng.choice(saliency.size, int(top.sum()), replace=False)] = True
    drops = []
    for mask in (top, control.reshape(saliency.shape)):
        tensor = adapter.tensor(adapter.masked(values, mask))
        after = variant.run(tensor, target, want_map=False).probs[target]
        drops.append(float((prob - after) / max(prob, 1e-12)))
    faithful = drops[0] >= config.min_drop and drops[0] > drops[1]
    return CheckResult(drops[0], drops[1], faithful, config.fraction)


class SignalRecordsSink(RecordsSink):
    """Records of windows: maps of kind ``time_frequency``, ``series`` or ``tabular``."""

    def __init__(self, pipeline: SignalPipeline, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pipeline = pipeline

    def write(self, result: FrameResult) -> None:
        meta = result.summary()
        saliency = None
        if result.fresh_map and result.saliency is not None:
            meta["map"] = self.pipeline.input.map_meta(result.index)
            saliency = result.saliency
        self.writer.frame(meta, saliency)


def stream_header(pipeline: SignalPipeline) -> dict:
    """Records-header entries of the stream: modality, input size, front end or axes."""
    return pipeline.input.header()
