"""Series and tabular models on the device: ``edgesal run MODEL --source log.csv|rows.npy`` cuts
the table into the model's windows, draws the map as a band under the series (or as coloured
bars) and records ``series`` / ``tabular`` maps (.salrec version 2)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgesal.runtimes.errors import ModelError, SourceError
from edgesal.runtimes.model import MethodChain
from edgesal.runtimes.pipeline import PipelineConfig
from edgesal.runtimes.records import RecordReader
from edgesal.runtimes.selfcheck import CheckConfig
from edgesal.runtimes.signal_pipeline import SignalPipeline
from edgesal.runtimes.table_sources import open_table_source
from tests.audio.test_cli import run
from tests.eval import series_models as sm

BUMP_ROW = 150


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tables")
    for kind in ("series", "series_nct", "tabular"):
        onnx.save(sm.exported(kind), folder / f"{kind}.onnx")
    log = 0.1 * np.random.default_rng(0).standard_normal((256, sm.C))
    log[BUMP_ROW - 2 : BUMP_ROW + 3, 0] += 2 * np.array([0.3, 0.8, 1.0, 0.8, 0.3])
    np.savetxt(folder / "log.csv", log, delimiter=",", header="acc_x,acc_y", comments="")
    np.save(folder / "rows.npy", np.random.default_rng(1).standard_normal((4, sm.F)))
    return folder


def test_series_log_windows_bands_and_records(folder, tmp_path):
    records, video = tmp_path / "s.salrec", tmp_path / "s.avi"
    done = run(str(folder / "series.onnx"), "--source", str(folder / "log.csv"),
               "--window-stride", "64", "--records", str(records), "--record", str(video),
               "--selfcheck-every", "1", "--selfcheck-fraction", "0.1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    reader = RecordReader(records)
    header = reader.headers()[0]
    assert header["modality"] == "series" and header["input_size"] == [sm.T, sm.C]
    frames = list(reader.frames())
    assert len(frames) == 4  # rows 0, 64, 128, 192 (+64 each) of 256
    assert [f.meta["class"] for f in frames] == [0, 0, 1, 0]
    bump = frames[2]
    assert bump.kind == "series" and bump.meta["map"]["start_row"] == 128
    assert bump.saliency.shape == (sm.T,)
    assert abs(int(np.argmax(bump.saliency)) - (BUMP_ROW - 128)) <= 2
    assert bump.meta["faithful"] is True
    assert video.stat().st_size > 0


def test_per_channel_map_of_an_nct_model(folder):
    pipe = SignalPipeline(MethodChain.load([str(folder / "series_nct.onnx")]))
    assert pipe.input.axes == ("C", "T") and pipe.input.rows == sm.T
    window = sm.bump_samples(1, seed=4)[0]  # [T, C]: the table's rows
    result = pipe.process(window)
    assert result.label == "class 1" and result.saliency.shape == (sm.T, sm.C)
    # channel 1 carries no bump detector weight: its map is zero
    assert np.abs(result.saliency[:, 1]).max() == 0 and result.saliency[:, 0].max() > 0
    assert result.overlay.shape == (320, 640, 3)


def test_tabular_rows(folder, tmp_path):
    pipe = SignalPipeline(
        MethodChain.load([str(folder / "tabular.onnx")]),
        PipelineConfig(selfcheck=CheckConfig(every=1, fraction=0.2)),
    )
    source = open_table_source(str(folder / "rows.npy"), pipe.windowing, pipe.input.columns)
    results = [pipe.process(frame.image, frame.index) for frame in source]
    assert len(results) == 4
    for result in results:
        assert result.saliency.shape == (sm.F,)
        assert set(np.argsort(-result.saliency)[:2]) == {2, 7}  # the only features used
    with pytest.raises(SourceError, match="2 columns, the model reads 12 per row"):
        open_table_source(str(folder / "log.csv"), pipe.windowing, pipe.input.columns)
    (tmp_path / "bad.csv").write_text("1,2,3\n4,x,6\n")
    with pytest.raises(SourceError, match="not a table of numbers"):
        open_table_source(str(tmp_path / "bad.csv"), pipe.windowing, 3)


def test_fractional_row_stride_is_refused(folder):
    with pytest.raises(ModelError, match="--window-stride 2.5: a table's stride is a whole number"):
        SignalPipeline(MethodChain.load([str(folder / "series.onnx")]), stride=2.5)


def test_series_masking_keeps_each_channel_in_its_units(folder):
    pipe = SignalPipeline(MethodChain.load([str(folder / "series.onnx")]))
    values = np.stack([np.arange(6.0), 100 + np.arange(6.0)], axis=1)  # [T=6, C=2]
    steps = np.array([True, False, False, False, False, True])
    masked = pipe.input.masked(values, steps)  # a map without the channel axis: whole steps
    np.testing.assert_allclose(masked[[0, 5]], [[2.5, 102.5], [2.5, 102.5]])
    np.testing.assert_array_equal(masked[1:5], values[1:5])
    cells = np.zeros((6, 2), bool)
    cells[0, 1] = True
    np.testing.assert_allclose(pipe.input.masked(values, cells)[0], [0.0, 103.0])
