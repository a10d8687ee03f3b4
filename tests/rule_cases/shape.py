"""Cases for edgesal/autodiff/rules/shape.py."""

import numpy as np

from tests.gradcheck import Case, cases

BIG = np.iinfo(np.int64).max


def ints(*values) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def dims(rng: np.random.Generator, rank: int, low: int = 1, high: int = 5) -> tuple[int, ...]:
    return tuple(int(v) for v in rng.integers(low, high + 1, size=rank))


@cases("Reshape")
def reshape(rng: np.random.Generator):
    x = rng.standard_normal((2, 3, 4))
    yield Case("Reshape", {"x": x, "shape": ints(0, -1)}, id="zero-copies")
    yield Case("Reshape", {"x": x, "shape": ints(4, 3, 2)}, id="plain")
    yield Case("Reshape", {"x": x, "shape": ints(-1)}, opset=14, id="flat")
    yield Case(
        "Reshape",
        {"x": x, "shape": ints(6, 4)},
        attrs={"allowzero": 1},
        opset=14,
        id="allowzero",
    )


@cases("Flatten")
def flatten(rng: np.random.Generator):
    for axis in (0, 1, 2, -1):
        yield Case("Flatten", {"x": rng.standard_normal(dims(rng, 4))}, attrs={"axis": axis})


@cases("Squeeze", "Unsqueeze")
def squeeze(rng: np.random.Generator):
    x = rng.standard_normal((2, 1, 3, 1))
    yield Case("Squeeze", {"x": x, "axes": ints(1, -1)}, id="axes")
    yield Case("Squeeze", {"x": x}, id="all")
    yield Case("Unsqueeze", {"x": rng.standard_normal((2, 3)), "axes": ints(0, -1)})
    yield Case("Unsqueeze", {"x": rng.standard_normal((2, 3)), "axes": ints(1)}, opset=21)


@cases("Transpose")
def transpose(rng: np.random.Generator):
    shape = dims(rng, 4, 2)
    yield Case("Transpose", {"x": rng.standard_normal(shape)}, attrs={"perm": [0, 2, 3, 1]})
    yield Case("Transpose", {"x": rng.standard_normal(shape)}, attrs={"perm": [3, 1, 0, 2]})
    yield Case("Transpose", {"x": rng.standard_normal(shape)}, id="default")


@cases("Expand")
def expand(rng: np.random.Generator):
    yield Case("Expand", {"x": rng.standard_normal((3, 1)), "shape": ints(2, 3, 4)}, id="rank")
    yield Case("Expand", {"x": rng.standard_normal((1, 4)), "shape": ints(3, 1)}, id="both")


@cases("Tile")
def tile(rng: np.random.Generator):
    yield Case("Tile", {"x": rng.standard_normal((2, 3, 2)), "repeats": ints(2, 1, 3)})
    yield Case("Tile", {"x": rng.standard_normal((1, 3)), "repeats": ints(4, 2)}, opset=13)


@cases("Concat")
def concat(rng: np.random.Generator):
    for axis in (0, 1, -1):
        a, b_, c = (rng.standard_normal((2, 3, 4)) for _ in range(3))
        shape = list(a.shape)
        shape[axis] = 5
        b_ = rng.standard_normal(shape)
        yield Case("Concat", {"x": a, "z": b_, "w": c}, attrs={"axis": axis}, wrt=("x", "z", "w"))
    yield Case(
        "Concat",
        {"x": rng.standard_normal((1, 2, 3)), "k": rng.standard_normal((1, 4, 3))},
        attrs={"axis": 1},
        constants=("k",),
        id="constant-part",
    )


@cases("Split")
def split(rng: np.random.Generator):
    x = rng.standard_normal((2, 9, 4))
    yield Case("Split", {"x": x}, attrs={"axis": 1}, n_outputs=3, opset=13, id="equal")
    yield Case(
        "Split", {"x": x, "split": ints(2, 3, 4)}, attrs={"axis": 1}, n_outputs=3, id="input"
    )
    yield Case(
        "Split",
        {"x": x},
        attrs={"axis": -2, "num_outputs": 2},
        n_outputs=2,
        opset=18,
        id="num_outputs",
    )
    yield Case("Split", {"x": x, "split": ints(1, 3)}, attrs={"axis": 2}, n_outputs=2, id="last")


@cases("Slice")
def slice_cases(rng: np.random.Generator):
    x = rng.standard_normal((5, 7, 6))
    specs = [
        ((1, 0), (4, 7), None, None),
        ((0,), (BIG,), (1,), (2,)),
        ((-1,), (-BIG,), (2,), (-1,)),
        ((5, 6), (0, -10), (1, 2), (-2, -2)),
        ((-3, 1, 0), (100, 6, 6), (0, 1, 2), (1, 3, 4)),
        ((2,), (2,), (0,), (1,)),
        ((4, -2), (-20, 10), (0, -1), (-3, 1)),
    ]
    for i, (starts, ends, axes, steps) in enumerate(specs):
        opset = (13, 17, 21)[i % 3]
        inputs = {"x": x, "starts": ints(*starts), "ends": ints(*ends)}
        inputs["axes"] = ints(*axes) if axes is not None else None
        inputs["steps"] = ints(*steps) if steps is not None else None
        if steps is None:
            del inputs["steps"]
            if axes is None:
                del inputs["axes"]
        yield Case("Slice", inputs, opset=opset, id=f"s{i}-o{opset}")


@cases("Gather")
def gather(rng: np.random.Generator):
    x = rng.standard_normal((4, 5, 3))
    yield Case("Gather", {"x": x, "i": ints(3, 0, -1)}, attrs={"axis": 1}, id="distinct")
    yield Case("Gather", {"x": x, "i": np.asarray(2, np.int64)}, attrs={"axis": 0}, id="scalar")
    yield Case(
        "Gather", {"x": x, "i": np.asarray(-1, np.int64)}, attrs={"axis": -1}, id="scalar-neg"
    )
    yield Case(
        "Gather",
        {"x": x, "i": np.asarray([[1, 1], [4, -4]], np.int64)},
        attrs={"axis": 1},
        id="repeats-2d",
    )
    yield Case("Gather", {"x": x, "i": ints(2, 0, 2, 2)}, opset=13, id="repeats-axis0")


@cases("Pad")
def pad(rng: np.random.Generator):
    x = rng.standard_normal((2, 3, 4, 5))
    both = ints(0, 1, 2, 3, 0, 2, 1, 3)
    value = np.asarray(1.5)
    for opset in (13, 21):
        yield Case(
            "Pad",
            {"x": x, "pads": both, "v": value},
            constants=("v",),
            opset=opset,
            id=f"constant-o{opset}",
        )
    # Negative pads (crops) are checked against torch in tests/test_rule_edges.py: onnx.reference's
    # Pad rejects them.
    for mode in ("reflect", "edge"):
        yield Case("Pad", {"x": x, "pads": both}, attrs={"mode": mode}, id=mode)
    yield Case("Pad", {"x": x, "pads": both}, attrs={"mode": "wrap"}, opset=19, id="wrap")
    yield Case(
        "Pad",
        {"x": x, "pads": ints(3, 1, 0, 2), "v": None, "axes": ints(-1, 2)},
        attrs={"mode": "reflect"},
        opset=18,
        id="axes",
    )
