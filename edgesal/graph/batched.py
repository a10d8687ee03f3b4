"""A second copy of the forward graph that runs on a batch of samples (IG points, noisy copies).

Multi-sample methods feed ``N * m`` inputs through one batched forward pass inside the graph; the
copy shares every initializer with the original, so the file grows only by the node list.
"""

from __future__ import annotations

import onnx

from edgesal.errors import InputError
from edgesal.graph.info import TensorInfo


def forward_copy(
    graph: onnx.GraphProto, source: str, replacement: str, wanted: set[str], prefix: str
) -> dict[str, str]:
    """Append copies of the nodes between ``source`` and ``wanted``, fed by ``replacement``.

    Returns the mapping from original tensor names to their copies. Nodes that do not depend on
    ``source`` (constants, weight preprocessing) are shared, not copied.
    """
    needed = _needed_nodes(graph, wanted)
    mapping = {source: replacement}
    copies = []
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
        copies.append(copy)
    graph.node.extend(copies)
    return mapping


def batched_info(model: onnx.ModelProto, what: str) -> TensorInfo:
    """Re-infer shapes after adding a batched copy; a fixed-batch reshape gets a clear error."""
    try:
        return TensorInfo(model, strict=True)
    except onnx.shape_inference.InferenceError as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(
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
