"""Receptive fields of the spatially local prefix of a network, exact per spatial axis.

The *local prefix* is the part of the graph, from the image on, where every output position
depends only on a window of input positions: Conv / MaxPool / AveragePool (2-D, NCHW, explicit
pads), constant Pad, BatchNormalization, pointwise activations, elementwise ops between tensors on
the same grid or with constants that do not vary in space, channel Concat and Transpose. Along
each spatial axis such an op reads ``out[j] <- in[s*j - pad + d*u], u < k``, so every prefix tensor
``t`` has an affine receptive field ``RF_t(j) = [S*j + P, S*j + P + K)`` in image pixels.

:func:`Prefix.verify` is the exactness check behind region-of-interest saliency: recomputing the
prefix on a crop of the image gives the same values at chosen positions of a tensor when, at every
tensor those positions depend on, the positions that are real (not padding) in the full graph are
exactly the ones that are real in the cropped graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from edgesal.graph.info import TensorInfo
from edgesal.graph.optraits import with_trait

WINDOWED = {"Conv", "MaxPool", "AveragePool"}
POINTWISE = with_trait("pointwise")  # declared in edgesal/graph/optraits.py
# Cost weights (onnxruntime CPU, docs/FACTS.md and a per-node profile of MobileNetV2's saliency
# graph): a tensor element moved costs ~32 MACs; a backward pass costs, relative to its forward:
# convolutions 1x (stride 1), 2x (strided dense: ConvTranspose), 4x (strided depthwise: zero
# insertion then a full-size Conv); activations 3x (comparison masks, Cast, Mul); Add/Sub 0.5x.
ELEMENT_COST = 32.0
BACKWARD = {"Add": 0.5, "Sub": 0.5, "Identity": 0.5, "BatchNormalization": 1.0, "Pad": 1.0}
BACKWARD_ACTIVATION = 3.0


@dataclass(frozen=True)
class Step:
    """One spatial axis of a local op: ``out[j]`` reads ``in[stride*j - pad + dilation*u]``."""

    kernel: int = 1
    stride: int = 1
    dilation: int = 1
    pad: int = 0
    pad_end: int = 0

    def out_size(self, n: int) -> int:
        """floor((n + pads - span) / stride) + 1 (0 when the window does not fit)."""
        total = n + self.pad + self.pad_end - self.dilation * (self.kernel - 1) - 1
        return total // self.stride + 1 if total >= 0 else 0

    def reads(self, lo: int, hi: int) -> tuple[int, int]:
        """Input positions (padding included) read by output positions lo..hi."""
        return self.stride * lo - self.pad, self.stride * hi - self.pad + self.dilation * (
            self.kernel - 1
        )


@dataclass(frozen=True)
class Field:
    """Affine receptive field along one axis: RF(j) = [stride*j + start, ... + extent)."""

    stride: int = 1
    start: int = 0
    extent: int = 1

    def then(self, step: Step) -> Field:
        return Field(
            self.stride * step.stride,
            self.start - self.stride * step.pad,
            self.extent + self.stride * step.dilation * (step.kernel - 1),
        )

    def union(self, other: Field) -> Field | None:
        if other.stride != self.stride:
            return None
        start = min(self.start, other.start)
        end = max(self.start + self.extent, other.start + other.extent)
        return Field(self.stride, start, end - start)

    def meeting(self, lo: int, hi: int, size: int) -> tuple[int, int]:
        """Positions j in [0, size) whose field meets pixels [lo, hi) (may be empty: a > b)."""
        first = -((self.extent - 1 + self.start - lo) // self.stride)  # ceil((lo-start-ext+1)/S)
        last = (hi - 1 - self.start) // self.stride
        return max(first, 0), min(last, size - 1)


@dataclass
class Link:
    """A prefix node: output ``out`` from local inputs ``ins`` by ``steps`` (one per axis)."""

    node: onnx.NodeProto
    out: str
    ins: list[str]
    steps: tuple[Step, Step]


@dataclass
class Prefix:
    """The local prefix of ``graph`` from ``image``: per tensor its spatial axes, sizes, fields."""

    image: str
    links: list[Link] = field(default_factory=list)
    axes: dict[str, tuple[int, int]] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    fields: dict[str, tuple[Field, Field]] = field(default_factory=dict)

    @classmethod
    def build(cls, graph: onnx.GraphProto, info: TensorInfo, image: str, layout: str) -> Prefix:
        shape = info.shape(image)
        axes = (2, 3) if layout == "NCHW" else (1, 2)
        prefix = cls(image)
        prefix._add(image, shape, axes, (Field(), Field()))
        dependent = _depends_on(graph, image)
        for node in graph.node:
            if any(name in prefix.axes for name in node.input):
                link = _local_link(node, info, prefix, dependent)
                if link is not None:
                    prefix._extend(link, info)
        return prefix

    def _add(self, name, shape, axes, fields) -> None:
        self.shapes[name] = tuple(shape)
        self.axes[name] = axes
        self.sizes[name] = (shape[axes[0]], shape[axes[1]])
        self.fields[name] = fields

    def _extend(self, link: Link, info: TensorInfo) -> None:
        fields: list[Field | None] = [None, None]
        for i in range(2):
            merged = None
            for name in link.ins:
                f = self.fields[name][i].then(link.steps[i])
                merged = f if merged is None else merged.union(f)
                if merged is None:
                    return
            fields[i] = merged
        axes = _out_axes(link.node, self.axes[link.ins[0]])
        self._add(link.out, info.shape(link.out), axes, tuple(fields))
        self.links.append(link)

    def ancestors(self, tensor: str) -> list[Link]:
        """The prefix links ``tensor`` depends on, in forward order."""
        wanted, chain = {tensor}, []
        for link in reversed(self.links):
            if link.out in wanted:
                chain.append(link)
                wanted.update(link.ins)
        return chain[::-1]

    def crop_sizes(self, links: list[Link], axis: int, size: int) -> dict[str, int]:
        """Extent along ``axis`` of each tensor when the prefix runs on ``size`` image pixels."""
        sizes = {self.image: size}
        for link in links:
            sizes[link.out] = link.steps[axis].out_size(sizes[link.ins[0]])
        return sizes

    def needed(self, links: list[Link], axis: int, tensor: str, lo: int, hi: int):
        """(lo, hi) positions each tensor must supply (padding included) for tensor[lo..hi]."""
        need = {tensor: (lo, hi)}
        for link in reversed(links):
            if link.out not in need:
                continue
            a, b = _clip(need[link.out], self.sizes[link.out][axis])
            if a > b:
                continue
            reads = link.steps[axis].reads(a, b)
            for name in link.ins:
                old = need.get(name)
                need[name] = (
                    reads if old is None else (min(old[0], reads[0]), max(old[1], reads[1]))
                )
        return need

    def verify(self, links, axis: int, tensor: str, lo: int, hi: int, start: int, size: int):
        """True when a crop [start, start+size) of the image computes tensor[lo..hi] exactly."""
        offsets, sizes = {self.image: start}, self.crop_sizes(links, axis, size)
        for link in links:
            offset = offsets[link.ins[0]]
            if any(offsets[n] != offset or sizes[n] != sizes[link.ins[0]] for n in link.ins):
                return False
            if offset % link.steps[axis].stride or sizes[link.out] < 1:
                return False
            offsets[link.out] = offset // link.steps[axis].stride
        for name, span in self.needed(links, axis, tensor, lo, hi).items():
            full = _clip(span, self.sizes[name][axis])
            crop = _clip(span, sizes[name], offsets[name])
            if full != crop and not (full[0] > full[1] and crop[0] > crop[1]):
                return False
        return True

    def cost(self, links: list[Link], sizes: tuple[dict[str, int], dict[str, int]], backward):
        """Estimated cost (MAC units) of ``links`` at the given extents: forward, or backward."""
        total = 0.0
        for link in links:
            elements = sum(self.elements(n, sizes) for n in (*link.ins, link.out))
            work = ELEMENT_COST * elements
            if link.node.op_type in WINDOWED:
                kernel = link.steps[0].kernel * link.steps[1].kernel
                channels = self._channels_in(link) if link.node.op_type == "Conv" else 1
                work += self.elements(link.out, sizes) * kernel * channels
            total += work * (_backward_factor(link, self.shapes) if backward else 1.0)
        return total

    def full_sizes(self) -> tuple[dict[str, int], dict[str, int]]:
        """Extents (y, x) of every tensor on the whole image, as :meth:`cost` takes them."""
        y, x = ({name: s[i] for name, s in self.sizes.items()} for i in range(2))
        return y, x

    def elements(self, name: str, sizes) -> int:
        """Number of elements of ``name`` at the given extents."""
        per_position = int(np.prod(self.shapes[name])) // int(np.prod(self.sizes[name]))
        return per_position * sizes[0][name] * sizes[1][name]

    def _channels_in(self, link: Link) -> int:
        group = next((a.i for a in link.node.attribute if a.name == "group"), 1)
        return self.shapes[link.ins[0]][1] // group


def _backward_factor(link: Link, shapes: dict[str, tuple[int, ...]]) -> float:
    """Backward cost over forward cost of one prefix op (see the weights above)."""
    op = link.node.op_type
    if op not in WINDOWED:
        return BACKWARD.get(op, BACKWARD_ACTIVATION)
    if all(s.stride == 1 for s in link.steps):
        return 1.0
    group = next((a.i for a in link.node.attribute if a.name == "group"), 1)
    return 4.0 if group > 1 and group == shapes[link.ins[0]][1] else 2.0


def _clip(span: tuple[int, int], size: int, offset: int = 0) -> tuple[int, int]:
    return max(span[0], offset), min(span[1], offset + size - 1)


def _depends_on(graph: onnx.GraphProto, image: str) -> set[str]:
    dependent = {image}
    for node in graph.node:
        if any(name in dependent for name in node.input):
            dependent.update(node.output)
    return dependent


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _local_link(node, info: TensorInfo, prefix: Prefix, dependent: set[str]) -> Link | None:
    """The node as a prefix link, or None when an output position may read far away."""
    if node.domain not in ("", "ai.onnx") or len([o for o in node.output if o]) != 1:
        return None
    ins = [n for n in node.input if n in dependent]
    if not ins or any(n not in prefix.axes for n in ins):
        return None
    first = ins[0]
    axes, size = prefix.axes[first], prefix.sizes[first]
    if any(prefix.axes[n] != axes or prefix.sizes[n] != size for n in ins):
        return None
    out = node.output[0]
    dims = info.dims(out) if info.has(out) else None
    if dims is None or len(dims) != len(info.shape(first)):
        return None
    op = node.op_type
    if op in WINDOWED:
        steps = (
            _window_steps(node, info, axes) if len(ins) == 1 and first == node.input[0] else None
        )
    elif op == "Pad":
        steps = _pad_steps(node, info, axes) if ins == [node.input[0]] else None
    elif op in POINTWISE and (op == "BatchNormalization" or _flat_in_space(node, info, ins, axes)):
        steps = (Step(), Step())
    elif op == "Concat" and len(ins) == len(node.input):
        rank = len(info.shape(first))
        steps = (Step(), Step()) if _attr(node, "axis") % rank not in axes else None
    elif op == "Transpose":
        steps = (Step(), Step())
    else:
        steps = None
    if steps is None:
        return None
    out_axes = _out_axes(node, axes)
    expected = tuple(s.out_size(n) for s, n in zip(steps, size, strict=True))
    shape = info.shape(out)
    if (shape[out_axes[0]], shape[out_axes[1]]) != expected:
        return None
    return Link(node, out, ins, steps)


def _out_axes(node: onnx.NodeProto, axes: tuple[int, int]) -> tuple[int, int]:
    if node.op_type != "Transpose":
        return axes
    perm = list(_attr(node, "perm"))
    return perm.index(axes[0]), perm.index(axes[1])


def _window_steps(node, info: TensorInfo, axes) -> tuple[Step, Step] | None:
    if axes != (2, 3) or len(info.shape(node.input[0])) != 4:
        return None
    if _attr(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID") or _attr(node, "ceil_mode", 0):
        return None
    if node.op_type == "Conv":
        if not info.has(node.input[1]) or info.dims(node.input[1]) is None:
            return None
        kernel = list(info.shape(node.input[1])[2:])
    else:
        kernel = list(_attr(node, "kernel_shape"))
    strides = list(_attr(node, "strides", [1, 1]))
    dilations = list(_attr(node, "dilations", [1, 1]))
    pads = list(_attr(node, "pads", [0, 0, 0, 0]))
    return tuple(Step(kernel[i], strides[i], dilations[i], pads[i], pads[i + 2]) for i in range(2))  # type: ignore[return-value]


def _pad_steps(node, info: TensorInfo, axes) -> tuple[Step, Step] | None:
    if _attr(node, "mode", "constant") != "constant":
        return None
    rank = len(info.shape(node.input[0]))
    given_pads = info.value(node.input[1]) if len(node.input) > 1 else None
    if given_pads is None:
        return None
    pads = [int(p) for p in given_pads]
    listed = list(range(rank))
    if len(node.input) > 3 and node.input[3]:
        given = info.value(node.input[3])
        if given is None:
            return None
        listed = [int(a) % rank for a in given]
    count = len(listed)
    before = dict(zip(listed, pads[:count], strict=True))
    after = dict(zip(listed, pads[count:], strict=True))
    if any(before.get(a, 0) or after.get(a, 0) for a in range(rank) if a not in axes):
        return None
    steps = tuple(Step(pad=before.get(a, 0), pad_end=after.get(a, 0)) for a in axes)
    return None if any(s.pad < 0 or s.pad_end < 0 for s in steps) else steps  # type: ignore


def _flat_in_space(node, info: TensorInfo, ins: list[str], axes) -> bool:
    """Inputs not computed from the image broadcast along the spatial axes (size 1 there)."""
    rank = len(info.shape(ins[0]))
    for name in node.input:
        if not name or name in ins:
            continue
        dims = info.dims(name)
        if dims is None:
            return False
        lead = rank - len(dims)
        if any(a - lead >= 0 and dims[a - lead] != 1 for a in axes):
            return False
    return True
