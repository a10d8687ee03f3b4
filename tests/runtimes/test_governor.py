"""Budget governor: ladder order, hysteresis, dwell; a run that heats, throttles and recovers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from edgesal.runtimes.governor import Budget, Governor, Sensors, ladder
from edgesal.runtimes.model import MethodChain
from edgesal.runtimes.pipeline import Pipeline, PipelineConfig
from edgesal.runtimes.records import RecordReader
from edgesal.runtimes.runner import Runner
from edgesal.runtimes.sinks import RecordsSink
from edgesal.runtimes.sources import open_source
from tests.runtimes import synthetic
from tests.runtimes.conftest import set_temp

METHODS = ["integrated", "vanilla", "gradcam"]


def test_ladder_is_ordered_rate_method_resolution_pause():
    actions = [s.action for s in ladder(Budget(), METHODS)]
    assert actions == [
        "saliency every 2 frames",
        "saliency every 4 frames",
        "switch to method vanilla",
        "switch to method gradcam",
        "resolution x0.5",
        "pause inference",
    ]
    assert [s.policy for s in ladder(Budget(policies=("method", "pause")), METHODS)] == [
        "method",
        "method",
        "pause",
    ]
    with pytest.raises(ValueError, match="unknown policy 'sleep'"):
        ladder(Budget(policies=("sleep",)), METHODS)


def test_hysteresis_and_dwell(thermal):
    gov = Governor(
        Budget(temp_limit=70, temp_hysteresis=5, dwell=1.0), Sensors(str(thermal)), METHODS
    )
    assert gov.update(0.0, 0) is None and gov.state.level == 0  # 45 C
    set_temp(thermal, 71)
    first = gov.update(10.0, 1)
    assert first.to_level == 1 and "temperature 71.0 C >= limit 70 C" in first.reason
    assert gov.update(10.5, 2) is None  # dwell: no second step within 1 s
    assert gov.update(11.0, 3).to_level == 2
    assert gov.state.saliency_every == 4
    set_temp(thermal, 67)  # below the limit but inside the hysteresis band: hold
    assert gov.update(20.0, 4) is None and gov.state.level == 2
    set_temp(thermal, 64)
    back = gov.update(21.0, 5)
    assert back.to_level == 1 and back.action == "undo saliency every 4 frames"
    assert "64.0 C <= 65 C" in back.reason
    assert [d.to_level for d in gov.decisions] == [1, 2, 1]


def test_rss_limit_and_cgroup_limit(tmp_path, thermal):
    gov = Governor(Budget(mem_limit=1, dwell=0), Sensors(str(thermal)), METHODS)
    assert "RSS" in gov.update(0.0, 0).reason
    cgroup = tmp_path / "cg"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text(str(1000 * 2**20))
    (cgroup / "memory.current").write_text(str(950 * 2**20))
    sensors = Sensors(str(thermal), str(cgroup))
    assert sensors.cgroup() == (950 * 2**20, 1000 * 2**20)
    gov = Governor(Budget(dwell=0), sensors, METHODS)
    assert "cgroup memory 950 MB >= 90% of 1000 MB" in gov.update(0.0, 0).reason
    (cgroup / "memory.current").write_text(str(100 * 2**20))
    assert gov.update(1.0, 1).to_level == 0
    (cgroup / "memory.max").write_text("max")
    assert sensors.cgroup() == (100 * 2**20, None)


def test_temperature_unit_and_hottest_zone(tmp_path):
    for i, value in enumerate(["41000", "55500", "garbage"]):
        zone = tmp_path / f"thermal_zone{i}"
        zone.mkdir()
        (zone / "temp").write_text(value)
    assert Sensors(str(tmp_path)).temperature() == 55.5
    assert Sensors(str(tmp_path / "none")).temperature() is None


class SlowSink:
    """Paces the output stage (~100 fps) so the governor has time to act during the run."""

    def write(self, result) -> None:
        time.sleep(0.01)

    def close(self) -> None:
        pass


def heat_then_cool(runner: Runner, on, off, timeout: float = 20.0) -> threading.Thread:
    """After 5 frames call ``on`` (over budget); once the governor pauses, call ``off``."""

    def drive() -> None:
        end = time.time() + timeout
        while runner.stats.counters["frames"] < 5 and time.time() < end:
            time.sleep(0.01)
        on()
        while not runner.pipeline.governor.state.paused and time.time() < end:
            time.sleep(0.01)
        off()

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    return thread


def governed_run(models, tmp_path, budget: Budget, thermal: Path, cgroup: Path | None, on, off):
    clip = synthetic.write_video(tmp_path / "long.avi", synthetic.colour_frames(240, (96, 128)))
    config = PipelineConfig(
        budget=budget,
        thermal_dir=str(thermal),
        cgroup_root=str(cgroup) if cgroup else None,
        governor_interval=0.0,
    )
    pipeline = Pipeline(MethodChain.load([str(models["multi"])]), config)
    records = RecordsSink(tmp_path / "run.salrec", {"test": "governor"})
    runner = Runner(pipeline, open_source(str(clip)), [records, SlowSink()])
    driver = heat_then_cool(runner, on, off)
    summary = runner.run(handle_signals=False)
    driver.join()
    return summary, RecordReader(tmp_path / "run.salrec")


def check_throttle_and_recovery(summary, reader: RecordReader) -> None:
    frames = [f.meta for f in reader.frames(decode=False)]
    assert [f["frame"] for f in frames] == list(range(240)), "a file must lose no frame"
    assert summary.frames == 240 and summary.dropped == 0
    levels = [e["to_level"] for e in reader.events()]
    assert levels[:6] == [1, 2, 3, 4, 5, 6] and levels[-1] == 0
    assert all("undo" in e["action"] for e in reader.events()[6:])
    every = [f["governor"]["saliency_every"] for f in frames]
    # saliency rate dropped: at k = 4 only every 4th frame has a map
    rate4 = [
        f
        for f in frames
        if f["governor"]["saliency_every"] == 4 and f["governor"]["method_index"] == 0
    ]
    bad = [f["frame"] for f in rate4 if ("map" in f) != (f["frame"] % 4 == 0)]
    assert rate4 and not bad, bad
    methods = [f["method"] for f in frames]
    assert {"integrated", "vanilla", "gradcam"} <= set(methods)
    assert any(f["governor"]["scale"] == 0.5 for f in frames)
    # recovered: the last frames are back on the preferred method with a map every frame
    assert methods[-1] == "integrated" and every[-1] == 1 and "map" in frames[-1]


def test_heating_run_throttles_switches_method_and_recovers(models, tmp_path, thermal):
    budget = Budget(temp_limit=70, temp_hysteresis=5, dwell=0.03)
    summary, reader = governed_run(
        models,
        tmp_path,
        budget,
        thermal,
        None,
        lambda: set_temp(thermal, 80),
        lambda: set_temp(thermal, 50),
    )
    check_throttle_and_recovery(summary, reader)
    assert "temperature 80.0 C" in reader.events()[0]["reason"]


def test_memory_pressure_run_throttles_and_recovers(models, tmp_path, thermal):
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text(str(512 * 2**20))
    (cgroup / "memory.current").write_text(str(100 * 2**20))
    budget = Budget(dwell=0.03)
    current = cgroup / "memory.current"
    summary, reader = governed_run(
        models,
        tmp_path,
        budget,
        thermal,
        cgroup,
        lambda: current.write_text(str(500 * 2**20)),
        lambda: current.write_text(str(100 * 2**20)),
    )
    check_throttle_and_recovery(summary, reader)
    assert "cgroup memory 500 MB" in reader.events()[0]["reason"]
