"""Token saliency as a TFLite file of builtins only (GATHER, BATCH_MATMUL, SOFTMAX, ...): the map
and attention outputs equal the ONNX export's to 1e-4, run by LiteRT."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from edgesal.export import ExportOptions
from edgesal.tokens.export import TokenOptions, export_token_saliency
from tests.tokens.conftest import SEQ, feeds

pytest.importorskip("ai_edge_litert")


@pytest.mark.parametrize("reduce", ["l2", "dot"])
def test_tflite_equals_onnx(small_bert_onnx, tmp_path, reduce):
    from edgesal.converters import to_tflite
    from edgesal.runtimes.backends import load_backend
    from tests.converters.tflite_harness import operator_names

    options = ExportOptions(input="input_ids", input_shape=(1, SEQ), reduce=reduce)
    model = export_token_saliency(small_bert_onnx, options, TokenOptions(attention=True))
    path = tmp_path / "m.tflite"
    path.write_bytes(to_tflite(model))
    ops = set(operator_names(path.read_bytes()))
    assert {"GATHER", "BATCH_MATMUL", "SOFTMAX"} <= ops and not ops & {"CUSTOM", "DELEGATE"}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    expected = dict(zip(names, session.run(None, feeds()), strict=True))
    backend = load_backend(path)
    lite_feeds = {k: v.astype(backend.inputs[k][1]) for k, v in feeds().items()}
    got = dict(zip(names, backend.run(names, lite_feeds), strict=True))
    for name in names:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-4, err_msg=name)


def test_text_explainer_on_litert(small_bert_onnx, tmp_path):
    """The device class reads the same metadata from the .tflite and gives the ONNX maps."""
    from edgesal.converters import to_tflite
    from edgesal.export import save
    from edgesal.runtimes.text import TextExplainer
    from tests.tokens.test_text import _tokenizer

    options = ExportOptions(input="input_ids", input_shape=(1, SEQ), labels=["a", "b", "c"])
    model = export_token_saliency(small_bert_onnx, options, TokenOptions(attention=True))
    save(model, tmp_path / "m.onnx")
    (tmp_path / "m.tflite").write_bytes(to_tflite(model))
    tokenizer = _tokenizer(tmp_path / "tokenizer.json")
    lite = TextExplainer(tmp_path / "m.tflite", tokenizer).explain("w1 w2 w3")
    ref = TextExplainer(tmp_path / "m.onnx", tokenizer).explain("w1 w2 w3")
    assert lite.label == ref.label and set(lite.maps) == set(ref.maps)
    for name in ref.maps:
        np.testing.assert_allclose(lite.maps[name], ref.maps[name], atol=1e-4, err_msg=name)
