"""``make demo`` end to end on the real model and photos: panels, summary, output naming."""

from __future__ import annotations

import json

import cv2
import pytest

from edgesal.tools.demo import run_demo

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("methods", [["vanilla"], ["vanilla", "gradcam"]])
def test_demo_writes_one_panel_per_photo_and_a_summary(tmp_path, methods):
    """One method names its output ``saliency``, several ``saliency_<method>``: both work."""
    summary = run_demo(tmp_path, ["mobilenet_v2"], methods, threads=1)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == summary
    result = summary["models"]["mobilenet_v2"]
    assert (tmp_path / "mobilenet_v2.sal.onnx").is_file()
    assert sorted(result["photos"]) == summary["photos"]
    for photo in result["photos"].values():
        panel = cv2.imread(photo["panel"])
        crop_width = panel.shape[0]  # square crops: one tile per column block
        assert panel.shape[1] == crop_width * (1 + len(methods))
        assert len(photo["top5"]) == 5
    assert result["photos"]["chelsea"]["top5"][0]["class"] in {281, 282, 283, 285}  # a cat
