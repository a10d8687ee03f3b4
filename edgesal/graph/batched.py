"""A second copy of the forward graph that runs on a batch of samples (IG points, noisy copies).

Multi-sample methods feed ``N * m`` inputs through batched forward passes inside the graph; a
copy shares every initializer with the original, so the file grows only by the node list. A copy
is appended as one batch of ``m`` samples per item, or as chunks of ``k`` run one after another
(``--max-batch``; chunks of 1 are the sequential fallback of a graph that cannot be rebatched,
edgesal/graph/rebatch.py).
"""

from __future__ import annotations

import onnx

from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo
from edgesal.graph.rebatch import Copy, NotRebatchable


def forward_copy(
    graph: onnx.GraphProto, source: str, replacement: str, wanted: set[str], prefix: str
) -> dict[str, str]:
    """Append copies of the nodes between ``source`` and ``wanted``, fed by ``replacement``.

    Returns the mapping from original tensor names to their copies. Nodes that do not depend on
    ``source`` (constants, weight preprocessing) are shared, not copied.
    """
    copy = copied_nodes(graph, source, replacement, wanted, prefix)
    graph.node.extend(copy.copies)
    return copy.mapping


def copied_nodes(
    graph: onnx.GraphProto, source: str, replacement: str, wanted: set[str], prefix: str
) -> Copy:
    """The copies :func:`forward_copy` appends, not appended yet (so they can be rebatched)."""
    needed = _needed_nodes(graph, wanted)
    mapping = {source: replacement}
    originals, copies = [], []
    for index, node in enumerate(list(graph.node)):
        if index not in needed or not any(name in mapping for name in node.input):
            continue
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = f"{prefix}/{node.name or node.output[0]}"
        del copy.input[:]
        copy.input.extend(mapping.get(name, name) for name in node.input)
        del copy.output[:]
        for out in node.output:
            mapping[out] = f"{prefix}/{out}" if out else ""
            copy.output.append(mapping[out])
        originals.append(node)
        copies.append(copy)
    return Copy(originals, copies, mapping)


def take_items(b: Builder, x: str, shape: tuple[int, ...], copies: int, start: int, k: int) -> str:
    """[N * copies, ...] -> [N * k, ...]: samples ``start .. start + k`` of every item."""
    if k == copies:
        return x
    n, rest = shape[0] // copies, list(shape[1:])
    if n == 1:
        return b.Slice(x, b.ints([start]), b.ints([start + k]), b.ints([0]))
    grouped = b.Reshape(x, b.ints([n, copies, *rest]))
    part = b.Slice(grouped, b.ints([start]), b.ints([start + k]), b.ints([1]))
    return b.Reshape(part, b.ints([n * k, *rest]))


def join_items(b: Builder, parts: list[str], sizes: list[int], shape: tuple[int, ...]) -> str:
    """Inverse of :func:`take_items` over all chunks: [N * k_i, ...] parts -> [N * sum k_i, ...]."""
    if len(parts) == 1:
        return parts[0]
    total = sum(sizes)
    n, rest = shape[0] // total, list(shape[1:])
    if n == 1:
        return b.Concat(*parts, axis=0)
    grouped = [b.Reshape(p, b.ints([n, k, *rest])) for p, k in zip(parts, sizes, strict=True)]
    return b.Reshape(b.Concat(*grouped, axis=1), b.ints([n * total, *rest]))


def chunk_sizes(copies: int, limit: int) -> list[int]:
    """``copies`` in the fewest chunks of at most ``limit`` (0: no limit), sizes balanced."""
    if limit <= 0 or limit >= copies:
        return [copies]
    count = -(-copies // limit)
    return [copies // count + (1 if i < copies % count else 0) for i in range(count)]


def batched_info(model: onnx.ModelProto, what: str) -> TensorInfo:
    """Re-infer shapes after adding a batched copy; a fixed-batch reshape gets a clear error."""
    try:
        return TensorInfo(model, strict=True)
    except onnx.shape_inference.InferenceError as exc:
        first = str(exc).strip().splitlines()[0]
        raise NotRebatchable(
            f"{what} runs its samples as one batch, but the model does not accept another batch "
            f"size (a Reshape or similar fixes the batch): {first}"
        ) from exc


def _needed_nodes(graph: onnx.GraphProto, wanted: set[str]) -> set[int]:
    needed_tensors = set(wanted)
    needed: set[int] = set()
    for index in reversed(range(len(graph.node))):
        node = graph.node[index]
        if any(out in needed_tensors for out in node.output):
            needed.add(index)
            needed_tensors.update(node.input)
    return needed
