"""Pipeline behaviour: maps, smoothing, self-check, overlay, live vs file pacing, robot API."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from edgesal.runtimes.contract import Preprocess, Preprocessor, Region, model_region
from edgesal.runtimes.model import MethodChain
from edgesal.runtimes.overlay import OverlayStyle, draw, top_fraction_mask, top_region_outlines
from edgesal.runtimes.pipeline import Pipeline, PipelineConfig
from edgesal.runtimes.runner import Runner, TurnGate
from edgesal.runtimes.selfcheck import CheckConfig
from edgesal.runtimes.smoothing import MapSmoother
from edgesal.runtimes.sources import Source, open_source
from tests.runtimes import synthetic


def test_robot_api_frame_by_frame(models):
    pipe = Pipeline(str(models["vanilla"]))
    frames = synthetic.colour_frames(10)
    results = [pipe.process(f) for f in frames]
    assert [r.label for r in results[:5]] == ["red thing"] * 5
    assert results[-1].label == "green thing"
    first = results[0]
    assert first.fresh_map and first.saliency.shape == (64, 64)
    assert first.overlay.shape == frames[0].shape and not np.array_equal(first.overlay, frames[0])
    assert first.summary()["top"][0][1] == "red thing"


def test_smoothing_averages_and_resets_on_scene_cut():
    smoother = MapSmoother(alpha=0.5, cut_threshold=30)
    a, b = np.zeros((4, 4), np.float32), np.ones((4, 4), np.float32)
    dark, bright = np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 200, np.uint8)
    assert not smoother.scene_cut(dark)
    smoother.update(a, (0, "m"), False)
    assert not smoother.scene_cut(dark)
    np.testing.assert_allclose(smoother.update(b, (0, "m"), False), 0.5)
    assert smoother.scene_cut(bright)
    np.testing.assert_allclose(smoother.update(a, (0, "m"), True), 0.0)
    np.testing.assert_allclose(smoother.update(b, (1, "m"), False), 1.0)  # class changed


def test_pipeline_map_is_smoothed_across_frames(models):
    pipe = Pipeline(str(models["vanilla"]), PipelineConfig(smooth=0.8))
    frames = synthetic.colour_frames(10)
    r0, r1 = pipe.infer(frames[0], 0), pipe.infer(frames[1], 1)
    raw = r1.inference.saliency
    np.testing.assert_allclose(r1.saliency, 0.8 * r0.saliency + 0.2 * raw, atol=1e-6)
    cut = pipe.infer(frames[6], 6)  # the green scene starts: average restarts
    assert cut.scene_cut
    np.testing.assert_allclose(cut.saliency, cut.inference.saliency)


def test_selfcheck_passes_a_faithful_map_and_flags_an_unfaithful_one(models):
    config = PipelineConfig(selfcheck=CheckConfig(every=1, fraction=0.1, min_drop=0.05), smooth=0)
    frames = [corner_square(i) for i in range(8)]
    good = [
        Pipeline(str(models["vanilla"]), config).infer(f, i).check for i, f in enumerate(frames)
    ]
    bad = [
        Pipeline(str(models["unfaithful"]), config).infer(f, i).check for i, f in enumerate(frames)
    ]
    assert all(c.faithful for c in good), [c.drop for c in good]
    assert min(c.drop for c in good) > 0.05
    assert sum(not c.faithful for c in bad) >= 8, [c.drop for c in bad]


def corner_square(i: int) -> np.ndarray:
    """A red square in one of the four corners (away from the unfaithful model's centre blob)."""
    frame = np.full((96, 128, 3), 20, np.uint8)
    y, x = (4 + i, 70 - i) if i % 2 else (60 - i, 4 + i)
    x = x if i % 4 < 2 else 128 - 30 - x
    frame[y : y + 28, x : x + 28] = (0, 0, 230)
    return frame


def test_target_input_explains_previous_top1_or_fixed_class(models):
    pipe = Pipeline(str(models["target"]))
    frames = synthetic.colour_frames(10)
    first, second = pipe.infer(frames[0], 0), pipe.infer(frames[1], 1)
    assert first.inference.target == 0 and second.inference.target == 0
    green = pipe.infer(frames[7], 7)  # green scene: still explains the previous top-1 (red)
    assert green.inference.top1 == 1 and green.inference.target == 0
    assert pipe.infer(frames[8], 8).inference.target == 1
    fixed = Pipeline(str(models["target"]), PipelineConfig(target_class=2))
    assert fixed.infer(frames[0], 0).inference.target == 2


def test_region_and_preprocessing_centre_crop():
    pre = Preprocess(size=(64, 64), resize_shorter=80)
    region = model_region((480, 640), pre)
    # 64 * 480 / 80 = 384: the shorter side scaled to 80 keeps a 64/80 centre crop of 480 rows
    assert (region.w, region.h) == (384, 384) and region.x == 128 and region.y == 48
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[240, 320] = (0, 0, 255)
    tensor, crop, _ = Preprocessor(pre)(frame)
    assert tensor.shape == (1, 3, 64, 64) and crop[..., 0].max() > 0  # RGB: red in channel 0


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize(
    "stats", [((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), ((0.5,), (0.25,))]
)
def test_preprocessing_equals_the_formula(layout, stats):
    mean, std = stats
    pre = Preprocess(size=(64, 48), mean=mean, std=std, color="RGB", layout=layout)
    frame = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    tensor, crop, _ = Preprocessor(pre)(frame)
    expected = (crop / np.float32(pre.pixel_scale) - np.float32(mean)) / np.float32(std)
    expected = expected.transpose(2, 0, 1) if layout == "NCHW" else expected
    assert tensor.dtype == np.float32 and tensor.flags.c_contiguous
    np.testing.assert_allclose(tensor[0], expected, rtol=1e-6, atol=1e-6)


def test_overlay_contour_and_text():
    saliency = np.zeros((32, 32), np.float32)
    saliency[8:16, 8:16] = 1.0
    mask = top_fraction_mask(saliency, 0.0625)
    assert mask.sum() == 64
    frame = np.zeros((64, 64, 3), np.uint8)
    out = draw(frame, saliency, Region(0, 0, 64, 64), "label 0.9", OverlayStyle(contour=0.0625))
    assert (out == 255).all(axis=-1).sum() > 20  # white contour and text pixels
    plain = draw(frame, None, None, "", OverlayStyle(text=False))
    assert np.array_equal(plain, frame)


def test_outline_encloses_the_salient_block_scaled_to_the_region():
    saliency = np.zeros((32, 32), np.float32)
    saliency[8:16, 8:16] = 1.0
    (outline,) = top_region_outlines(saliency, 0.0625, (128, 64))
    x, y, w, h = cv2.boundingRect(outline)
    # the block spans x 32..64, y 16..32 in a 128x64 image (x4, x2); the outline hugs it
    assert 28 <= x <= 38 and 58 <= x + w <= 68 and 14 <= y <= 20 and 28 <= y + h <= 34


def test_outline_of_a_speckled_map_is_a_few_regions_not_every_pixel():
    rng = np.random.default_rng(0)
    speckle = rng.random((224, 224)).astype(np.float32) ** 8
    speckle[60:120, 60:120] += 0.5 * rng.random((60, 60)).astype(np.float32)
    raw = cv2.findContours(
        top_fraction_mask(speckle, 0.1).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )[0]
    outlines = top_region_outlines(speckle, 0.1, (224, 224))
    largest = max(outlines, key=cv2.contourArea)
    assert len(raw) > 1000 and len(outlines) <= 20
    assert cv2.pointPolygonTest(largest, (90.0, 90.0), False) > 0


def test_file_source_loses_no_frame_live_source_drops_old_ones(models, video):
    runner = Runner(Pipeline(str(models["vanilla"])), open_source(str(video)), [SlowOutput(0.005)])
    summary = runner.run(handle_signals=False)
    assert summary.frames == 40 and summary.dropped == 0

    class FastCamera:
        def __init__(self):
            self.n = 0

        def read(self):
            self.n += 1
            time.sleep(0.002)  # a 500 fps camera
            return True, np.full((48, 64, 3), self.n % 255, np.uint8)

        def release(self):
            pass

    source = Source("fast-camera", FastCamera, live=True)
    runner = Runner(Pipeline(str(models["vanilla"])), source, [SlowOutput(0.02)], max_frames=200)
    summary = runner.run(handle_signals=False)
    assert summary.dropped > 0 and 0 < summary.frames < 200
    assert summary.latency_ms_p95 < 200  # latency stays bounded: no backlog


def test_realtime_file_paces_and_drops(models, video):
    runner = Runner(
        Pipeline(str(models["vanilla"])), open_source(str(video)), [SlowOutput(0.0)], realtime=True
    )
    summary = runner.run(handle_signals=False)
    assert summary.seconds >= 40 / 15 * 0.9  # paced at the file's 15 fps


class SlowOutput:
    def __init__(self, seconds: float):
        self.seconds = seconds

    def write(self, result) -> None:
        time.sleep(self.seconds)

    def close(self) -> None:
        pass


def test_method_chain_is_reused(models):
    chain = MethodChain.load([str(models["multi"])])
    pipe = Pipeline(chain)
    assert pipe.variant.method == "integrated"


class Collect:
    def __init__(self):
        self.results = []

    def write(self, result) -> None:
        self.results.append(result)

    def close(self) -> None:
        pass


def _run_file(model, video, workers: int) -> list:
    config = PipelineConfig(selfcheck=CheckConfig(every=3))
    sink = Collect()
    Runner(Pipeline(str(model), config), open_source(str(video)), [sink], workers=workers).run(
        handle_signals=False
    )
    return sink.results


def test_workers_keep_file_order_and_give_the_same_answers(models, video):
    """Frames in flight on several workers leave in order, and smoothing, self-checks and the
    explained class are the same as with one worker (for a model with a fixed target)."""
    one, three = _run_file(models["vanilla"], video, 1), _run_file(models["vanilla"], video, 3)
    assert [r.index for r in three] == list(range(40)) == [r.index for r in one]
    for a, b in zip(one, three, strict=True):
        assert a.label == b.label and a.fresh_map and b.fresh_map
        np.testing.assert_allclose(a.saliency, b.saliency, atol=1e-6)  # the same EMA chain
        assert (a.check is None) == (b.check is None)
        if a.check is not None:
            assert a.check.drop == b.check.drop and a.check.random_drop == b.check.random_drop
        assert b.overlay is not None


def test_turn_gate_lets_threads_pass_in_ticket_order():
    gate, passed = TurnGate(), []

    def worker(ticket: int) -> None:
        gate.wait(ticket, None)
        passed.append(ticket)
        gate.done(ticket)

    threads = [threading.Thread(target=worker, args=(t,)) for t in (3, 2, 1, 0)]
    for thread in threads:  # the last ticket arrives first
        thread.start()
        time.sleep(0.01)
    for thread in threads:
        thread.join(timeout=5)
    assert passed == [0, 1, 2, 3]


def test_workers_must_be_positive(models, video):
    with pytest.raises(ValueError, match="--workers 0"):
        Runner(Pipeline(str(models["vanilla"])), open_source(str(video)), [], workers=0)
