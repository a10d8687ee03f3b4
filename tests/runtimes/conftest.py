"""Fixtures: synthetic models, a short video, fake thermal and cgroup folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runtimes import synthetic


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "vanilla": synthetic.build(folder / "vanilla.onnx"),
        "multi": synthetic.build(
            folder / "multi.onnx", methods=("integrated", "vanilla", "gradcam")
        ),
        "target": synthetic.build(folder / "target.onnx", target_input=True),
        "uint8": synthetic.build(folder / "uint8.onnx", in_graph=True),
        "unfaithful": synthetic.build(folder / "unfaithful.onnx", unfaithful=True),
        "nosaliency": synthetic.build(folder / "nosal.onnx", saliency=False),
    }


@pytest.fixture(scope="session")
def video(tmp_path_factory) -> Path:
    return synthetic.write_video(
        tmp_path_factory.mktemp("video") / "clip.avi", synthetic.colour_frames(40)
    )


@pytest.fixture()
def thermal(tmp_path) -> Path:
    """A fake /sys/class/thermal with one zone at 45 C; write ``zone/temp`` to heat it."""
    zone = tmp_path / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text("45000\n")
    return zone.parent


def set_temp(thermal: Path, celsius: float) -> None:
    path = thermal / "thermal_zone0" / "temp"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{int(celsius * 1000)}\n")
    tmp.replace(path)
