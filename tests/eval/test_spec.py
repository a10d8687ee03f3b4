"""eval's model spec is the device's contract plus what evaluation needs (static shape, a class)."""

from __future__ import annotations

import json

import pytest

from edgesal.errors import InputError, ModelLoadError
from edgesal.eval.model import contract

OUTPUTS = {"logits": (1, 4), "saliency": (1, 8, 8)}


def props(**values) -> dict[str, str]:
    return {f"edgesal.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def test_spec_follows_the_device_contract():
    spec = contract(props(), {"image": ((1, 8, 8, 3), "float32")}, OUTPUTS, "m.onnx")
    assert (spec.layout, spec.size, spec.scores, spec.classes) == ("NHWC", (8, 8), "logits", 4)
    assert spec.saliency == {"unknown": "saliency"} and spec.preprocess.size == (8, 8)


def test_metadata_size_that_misses_the_input_is_refused_as_on_the_device():
    with pytest.raises(ModelLoadError, match=r"m.onnx: input 'image' .* preprocessing size"):
        contract(
            props(preprocess={"size": [4, 4]}),
            {"image": ((1, 3, 8, 8), "float32")},
            OUTPUTS,
            "m.onnx",
        )


def test_what_evaluation_cannot_score_is_refused():
    with pytest.raises(InputError, match="no static shape"):
        contract(props(), {"image": ((None, 3, 8, 8), "float32")}, OUTPUTS, "m.onnx")
    with pytest.raises(InputError, match="explains a tensor, not a class"):
        contract(
            props(target="output:logits:max"), {"image": ((1, 3, 8, 8), "float32")}, OUTPUTS, "m"
        )
    with pytest.raises(ModelLoadError, match="model has no saliency output"):
        contract(props(), {"image": ((1, 3, 8, 8), "float32")}, {"logits": (1, 4)}, "m.onnx")
