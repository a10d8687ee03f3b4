#!/usr/bin/env python3
"""Robot: the frame-by-frame Python API inside a fixed-rate control loop.

Each tick grabs the newest camera frame, calls ``Pipeline.process`` (prediction + saliency map +
governor + self-check), and turns the map into a steering command: head towards the centroid of
the most salient region, but only while the map passes its counterfactual self-check and the
class is the one being tracked. The loop never waits for the model longer than one tick.

Real robot:   python3 control_loop.py model.sal.onnx --source 0 --track 0
Simulation:   python3 control_loop.py model.sal.onnx --simulate clip.mp4 --ticks 40
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from edgesal.runtimes.pipeline import FrameResult, Pipeline, PipelineConfig
from edgesal.runtimes.selfcheck import CheckConfig
from edgesal.runtimes.sources import open_source


def steering(result: FrameResult, track: int) -> float | None:
    """Steer in [-1, 1] (left..right) towards the saliency centroid; None = hold course."""
    if result.saliency is None or result.prediction != track:
        return None
    if result.check is not None and not result.check.faithful:
        return None  # the map did not explain the decision on this frame: do not act on it
    weights = np.clip(result.saliency, 0, None)
    weights = np.where(weights >= np.quantile(weights, 0.9), weights, 0)
    total = weights.sum()
    if total <= 0:
        return None
    cx = float((weights.sum(axis=0) * np.arange(weights.shape[1])).sum() / total)
    region = result.region
    x_frame = region.x + (cx + 0.5) * region.w / weights.shape[1]
    return float(np.clip(2 * x_frame / result.frame.shape[1] - 1, -1, 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="saliency model")
    parser.add_argument("--source", default="0", help="camera")
    parser.add_argument("--track", type=int, default=0, help="class id to steer towards")
    parser.add_argument("--hz", type=float, default=15.0, help="control loop rate")
    parser.add_argument("--ticks", type=int, help="stop after this many ticks")
    parser.add_argument("--simulate", metavar="VIDEO", help="use VIDEO frames as the camera")
    args = parser.parse_args(argv)
    pipe = Pipeline([args.model], PipelineConfig(selfcheck=CheckConfig(every=5), smooth=0.3))
    source = open_source(args.simulate or args.source, live=not args.simulate)
    period = 1.0 / args.hz
    frames = iter(source)
    tick = 0
    try:
        while args.ticks is None or tick < args.ticks:
            start = time.monotonic()
            frame = next(frames, None)
            if frame is None:
                break
            result = pipe.process(frame.image, frame.index)
            command = steering(result, args.track)
            print(
                json.dumps(
                    {
                        "tick": tick,
                        "frame": frame.index,
                        "label": result.label,
                        "score": round(result.score or 0, 3),
                        "steer": command,
                        "governor_level": result.state.level,
                    }
                ),
                flush=True,
            )
            tick += 1
            if not args.simulate:
                time.sleep(max(0.0, period - (time.monotonic() - start)))
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
