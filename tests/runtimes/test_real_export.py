"""The runtime reads what ``edgesal export`` really writes (integration with the exporter)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgesal.export import ExportOptions, export_saliency
from edgesal.runtimes.errors import ModelError
from edgesal.runtimes.model import MethodChain
from edgesal.runtimes.pipeline import Pipeline
from tests.runtimes import synthetic


def exported(models, tmp_path, **options) -> str:
    model = export_saliency(onnx.load(str(models["nosaliency"])), ExportOptions(**options))
    path = tmp_path / "exported.onnx"
    onnx.save(model, str(path))
    return str(path)


def test_single_method_export(models, tmp_path):
    chain = MethodChain.load([exported(models, tmp_path, method="gradxinput")])
    assert [v.method for v in chain.variants] == ["gradxinput"]
    result = Pipeline(chain).process(synthetic.colour_frames(4)[0])
    assert result.label == "red thing" and result.saliency.shape == (64, 64)
    assert 0.0 <= result.saliency.min() and result.saliency.max() <= 1.0 + 1e-6


def test_multi_method_export_gives_the_method_chain(models, tmp_path):
    path = exported(models, tmp_path, methods=["gradxinput", "vanilla"])
    chain = MethodChain.load([path])
    assert [(v.method, v.output) for v in chain.variants] == [
        ("gradxinput", "saliency_gradxinput"),
        ("vanilla", "saliency_vanilla"),
    ]
    frame = synthetic.colour_frames(4)[0]
    maps = [v.run(v.preprocessor(frame)[0], None).saliency for v in chain.variants]
    assert not np.allclose(maps[0], maps[1])


def test_target_input_export(models, tmp_path):
    chain = MethodChain.load([exported(models, tmp_path, target="input")])
    variant = chain[0]
    assert variant.contract.target_input == "target"
    tensor = variant.preprocessor(synthetic.colour_frames(4)[0])[0]
    red, green = variant.run(tensor, 0), variant.run(tensor, 1)
    assert red.target == 0 and green.target == 1
    assert not np.allclose(red.saliency, green.saliency)


@pytest.mark.parametrize("target", [-1, 4, 1000])
def test_target_input_out_of_range_is_refused(models, tmp_path, target):
    """The graph would give an all-zero map (or, for -1, the last class's) without complaint."""
    variant = MethodChain.load([exported(models, tmp_path, target="input")])[0]
    tensor = variant.preprocessor(synthetic.colour_frames(4)[0])[0]
    classes = variant.run(tensor, 0).probs.size
    assert target < 0 or target >= classes
    with pytest.raises(
        ModelError, match=rf"target class {target} is out of range.*{classes} classes"
    ):
        variant.run(tensor, target)
