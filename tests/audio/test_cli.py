"""``edgesal run MODEL --source clip.wav``: records, overlay video, resampling log, named errors."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request

import cv2
import numpy as np

from edgesal.runtimes.records import RecordReader
from tests.audio import tone
from tests.runtimes.clihelp import ROOT, runtime_cmd, start_server, stop


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        runtime_cmd("run", *args, "--display", "no"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_on_a_wav_writes_records_and_video(tone_model, tone_wav, tmp_path):
    records, video = tmp_path / "a.salrec", tmp_path / "a.avi"
    done = run(str(tone_model), "--source", str(tone_wav), "--records", str(records),
               "--record", str(video), "--window-stride", "0.5")  # fmt: skip
    assert done.returncode == 0, done.stderr
    frames = list(RecordReader(records).frames())
    assert len(frames) == 5  # windows of 15920 samples every 8000 in 48000
    assert [f.meta["label"] for f in frames][2] == "tone"  # 1.0-2.0 s
    assert {f.kind for f in frames} == {"time_frequency"}
    inspect = subprocess.run(
        runtime_cmd("records", "inspect", str(records), "--json"),
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert json.loads(inspect.stdout)["map_kinds"] == {"time_frequency": 5}
    capture = cv2.VideoCapture(str(video))
    ok, image = capture.read()
    assert ok and image.shape[:2] == (320, 640)
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5


def test_another_rate_is_resampled_and_said(tone_model, tmp_path):
    wav = tone.write_wav(tmp_path / "22k.wav", tone.clip(1.2, 1000.0, rate=22050), 22050)
    records = tmp_path / "b.salrec"
    done = run(str(tone_model), "--source", str(wav), "--records", str(records))
    assert done.returncode == 0, done.stderr
    assert "resampled from 22050 Hz to the model's 16000 Hz" in done.stderr
    (frame,) = RecordReader(records).frames()
    assert frame.meta["label"] == "tone"
    band = np.argmax(frame.saliency.sum(axis=0))
    assert abs(int(band) - tone.tone_band(1000.0)) <= 1
    refused = run(str(tone_model), "--source", str(wav), "--no-resample")
    assert refused.returncode == 2
    assert "sampled at 22050 Hz but the model expects 16000 Hz" in refused.stderr


def test_audio_and_image_sources_do_not_mix(tone_model, tone_wav, models):
    video = run(str(tone_model), "--source", "0")
    assert video.returncode == 2 and "an audio model reads a .wav file or mic" in video.stderr
    image = run(str(models["vanilla"]), "--source", str(tone_wav))
    assert image.returncode == 2 and "explains images; wav files and tables go" in image.stderr


def test_web_view_shows_the_spectrogram(tone_model, tone_wav):
    proc, url = start_server(str(tone_model), "--source", str(tone_wav), "--loop", "--realtime")
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                jpeg = urllib.request.urlopen(url + "frame.jpg", timeout=5).read()
                break
            except urllib.error.HTTPError:  # no frame published yet
                time.sleep(0.2)
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[:2] == (320, 640)
        status = json.loads(urllib.request.urlopen(url + "status.json", timeout=5).read())
        assert status["source"] == str(tone_wav) and status["frames"] >= 1
    finally:
        stop(proc)
