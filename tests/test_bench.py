"""``edgesal bench``: interleaved medians, the device runtime's form, and the time profile."""

from __future__ import annotations

import itertools
import platform

import onnx
import pytest

from edgesal.cli import main
from edgesal.tools.bench import _breakdown, bench_model, interleaved_medians
from tests.models import nchw_cnn

X86 = platform.machine().lower() in ("x86_64", "amd64")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "cnn.onnx"
    onnx.save(nchw_cnn(), str(path))
    return str(path)


def test_interleaved_medians_alternates_blocks_after_an_untimed_call():
    calls = []
    ticks = itertools.count()
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    medians = interleaved_medians(
        fns, runs=3, warmup=1, clock=lambda: next(ticks) / 1e3, block=2, settle=0
    )
    # warm-up, then per block: one untimed call and up to `block` timed ones, alternating
    assert "".join(calls) == "ab" + "aaa" + "bbb" + "aa" + "bb"
    assert medians == {"a": 1.0, "b": 1.0}  # each timed call spans one clock tick


def test_bench_times_forward_file_and_the_form_edgesal_run_loads(model_file):
    rows = {r["variant"]: r for r in bench_model(model_file, ["vanilla"], threads=1, runs=3)}
    assert rows["forward"]["ratio_to_forward"] == 1.0
    assert rows["vanilla"]["median_ms"] > 0
    # on x86 the device runtime loads the masks in another form, so that form is timed too
    assert ("vanilla (edgesal run)" in rows) == X86


def test_breakdown_groups_kernel_time_by_part_and_operator():
    def event(name: str, op: str, us: float) -> dict:
        return {"cat": "Node", "name": f"{name}_kernel_time", "dur": us, "args": {"op_name": op}}

    events = [
        event("conv1", "Conv", 300),
        event("edgesal/conv1/Conv", "Conv", 200),
        event("edgesal/relu/mask", "HardSigmoid", 100),
        event("reorder_7", "ReorderInput", 100),
        {"cat": "Session", "name": "model_run", "dur": 999},
        {"cat": "Node", "name": "conv1_fence_before", "dur": 5, "args": {"op_name": "Conv"}},
    ] * 2  # two calls
    rows = _breakdown(events, runs=2)
    got = [
        (r["part"], r["op"], r["nodes"], round(r["ms"], 9), round(7 * r["share"], 9)) for r in rows
    ]
    assert got == [
        ("forward", "Conv", 1, 0.3, 3),
        ("gradient", "Conv", 1, 0.2, 2),
        ("gradient", "HardSigmoid", 1, 0.1, 1),
        ("layout", "ReorderInput", 1, 0.1, 1),
    ]


def test_profile_of_a_real_export_covers_forward_and_gradient(model_file):
    (row,) = [r for r in bench_model(model_file, ["vanilla"], 1, 3, profile=True) if "profile" in r]
    rows = row["profile"]
    parts = {(r["part"], r["op"]) for r in rows}
    assert ("forward", "Conv") in parts and ("gradient", "Conv") in parts
    assert abs(sum(r["share"] for r in rows) - 1) < 1e-9


def test_cli_bench_with_profile(model_file, capsys):
    assert main(["bench", model_file, "--runs", "2", "--profile"]) == 0
    out = capsys.readouterr().out
    assert "| cnn | vanilla | 2 |" in out
    assert "vanilla, as `edgesal run` loads it: kernel time per call" in out
    assert "| all | | |" in out
