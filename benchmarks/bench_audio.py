"""Audio on the device: time per 1 s window, front end + model + map, as a share of real time.

The real model is Silero VAD's (silero-vad wheel, re-assembled to read the magnitude spectrogram
as tests/audio/silero.py describes); the tone detector of tests/audio/tone.py is the small log-mel
model. Each is timed through the device pipeline (``SignalPipeline.process``: front end, model
call with the map, drawing of the spectrogram view) and, for reference, the front end alone and
the plain forward pass; interleaved medians, one run, fixed intra-op thread count. The issue's
target: a map per 1 s window in under 30% of real time on 2 cores.
Usage: python benchmarks/bench_audio.py [--runs 30] [--threads 2] [--write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine_info, write_section  # noqa: E402
from edgesal.runtimes.backends import BackendOptions  # noqa: E402
from edgesal.runtimes.model import MethodChain  # noqa: E402
from edgesal.runtimes.signal_pipeline import SignalPipeline  # noqa: E402
from edgesal.tools.bench import interleaved_medians  # noqa: E402
from tests.audio import silero, tone  # noqa: E402


def cases(folder: Path) -> dict[str, tuple[Path, Path, np.ndarray]]:
    """name -> (saliency model, plain model, one window of samples)."""
    plain_vad = folder / "vad.onnx"
    plain_vad.write_bytes(silero.reassembled(silero.original()).SerializeToString())
    plain_tone = folder / "tone.onnx"
    plain_tone.write_bytes(tone.classifier(tone.fitted_offset()).SerializeToString())
    vad_clip = silero.half_voiced(0).astype(np.float32)
    tone_clip = tone.clip(1, 1000.0)[: tone.FRONT.window_samples(tone.FRAMES)].astype(np.float32)
    return {
        "silero VAD vanilla": (silero.build(folder / "v.onnx"), plain_vad, vad_clip),
        "silero VAD gradxinput": (
            silero.build(folder / "g.onnx", "gradxinput"),
            plain_vad,
            vad_clip,
        ),
        "tone detector (log-mel 98x40) vanilla": (
            tone.build(folder / "t.onnx"),
            plain_tone,
            tone_clip,
        ),
    }


def measure(runs: int, threads: int) -> list[tuple]:
    """(case, window s, pipeline ms, front end ms, model call ms, forward ms) per case."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, plain, window) in cases(Path(tmp)).items():
            chain = MethodChain.load([str(model)], BackendOptions(threads=threads, device="cpu"))
            pipe = SignalPipeline(chain)
            audio = pipe.input
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(plain), options, ["CPUExecutionProvider"])
            feed = {session.get_inputs()[0].name: audio_input(pipe, window)}
            variant, tensor = pipe.variant, feed[session.get_inputs()[0].name]
            medians = interleaved_medians(
                {
                    "pipeline": lambda p=pipe, w=window: p.process(w),
                    "front": lambda a=audio, w=window: a.values(w),
                    "model": lambda v=variant, t=tensor: v.run(t, None, want_map=True),
                    "forward": lambda s=session, f=feed: s.run(None, f),
                },
                runs,
            )
            seconds = pipe.windowing.window / pipe.windowing.rate
            rows.append((name, seconds, *(medians[k] for k in ("pipeline", "front", "model",
                                                                 "forward"))))  # fmt: skip
    return rows


def audio_input(pipe: SignalPipeline, window: np.ndarray) -> np.ndarray:
    return pipe.input.tensor(pipe.input.values(window))


def table(rows, threads: int) -> str:
    lines = [
        f"Audio, 1 s windows, {threads} threads, interleaved medians; {machine_info()}; "
        "machine shared with other jobs.",
        "",
        "| model | window | map per window (front end + model + map + drawing) | share of real "
        "time | front end | model call with map | forward only |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, seconds, total, front, model, forward in rows:
        lines.append(
            f"| {name} | {seconds:.2f} s | {total:.1f} ms | {total / 10 / seconds:.1f}% "
            f"| {front:.2f} ms | {model:.1f} ms | {forward:.1f} ms |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    text = table(measure(args.runs, args.threads), args.threads)
    print(text)
    if args.write:
        write_section("audio", text)


if __name__ == "__main__":
    main()
