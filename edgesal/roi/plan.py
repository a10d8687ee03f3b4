"""Region-of-interest saliency: the map of a window R of the image, early layers run on a crop.

For a tensor T of the local prefix (:mod:`edgesal.roi.receptive`) that the score depends on the
image only through,

    dS/dx[R] = sum_{p in F} dS/dT[p] * dT[p]/dx[R],   F = {p : RF_T(p) meets R},

and each T[p], p in F, depends only on the pixels of a crop C. So the map is built as

1. g = dS/dT on the full graph: only the deep, low-resolution layers are differentiated;
2. a forward copy of the prefix runs on x[C]; its T is seeded with g over the window of T that C
   covers; positions outside F may read fake zero padding at interior crop edges, but their
   fields miss R, so they add nothing to dS/dx[R];
3. that copy's input gradient, sliced to R, is the map.

C starts on a multiple of T's stride (the cropped T grid aligns with the full one) and ends on the
image border wherever it reaches it (the padding there is the real one); :meth:`Prefix.verify`
checks, per axis, that every T[p] in F is recomputed exactly. T is chosen by the estimated cost of
the prefix (full backward vs cropped forward + backward); when no T saves work the full gradient
is computed and sliced. The window is fixed at export (``--roi x0,y0,x1,y1``) or placed at run
time (``--roi-size W,H``: an int64 input ``roi`` [N, 2] of top-left corners, clamped into the
image; output ``roi_used`` says where each window went). The crop then has a fixed worst-case
size whose distance to either border is a multiple of the stride, so it can sit flush against
either; a table maps each window start to its crop start.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx
from onnx import helper

from edgesal.autodiff.engine import active_tensors, input_gradient
from edgesal.errors import InputError
from edgesal.graph.batched import forward_copy
from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo
from edgesal.image_input import ImageInput
from edgesal.roi.receptive import ELEMENT_COST, Link, Prefix

ROI_INPUT = "roi"
ROI_USED = "roi_used"


@dataclass(frozen=True)
class AxisPlan:
    """One spatial axis (y or x): the window, the crop around it and the split tensor's part."""

    size: int  # image extent
    window: int  # ROI extent
    crop: int  # crop extent
    starts: tuple[int, ...]  # crop start for each window start 0..size-window (fixed ROI: one)
    stride: int = 1  # stride of the split tensor
    split_crop: int = 0  # split tensor extent on the crop


@dataclass
class RoiPlan:
    """Where the map is computed and how; ``split`` None: full gradient, sliced to the window."""

    image: ImageInput
    box: tuple[int, int, int, int] | None  # x0, y0, x1, y1 (fixed ROI) or None (runtime ROI)
    axes: tuple[AxisPlan, AxisPlan]
    split: str | None = None
    split_axes: tuple[int, int] = (2, 3)
    saving: float = 0.0  # estimated fraction of the prefix's backward cost saved
    reason: str = ""
    _starts: dict = field(default_factory=dict)
    _copies: dict = field(default_factory=dict)

    @property
    def runtime(self) -> bool:
        return self.box is None

    @property
    def image_axes(self) -> tuple[int, int]:
        return (2, 3) if self.image.layout == "NCHW" else (1, 2)

    def describe(self) -> dict:
        """The ``roi`` metadata entry: window, crop, split tensor and the reason for the choice."""
        y, x = self.axes
        info: dict[str, object] = {
            "window": [x.window, y.window],
            "crop": [x.crop, y.crop],
            "split": self.split,
        }
        info.update({"estimated_saving": round(self.saving, 3), "reason": self.reason})
        info["cropped"] = bool(self._copies)  # false when no method took a gradient (Grad-CAM)
        if self.box is None:  # placed at run time
            info.update({"input": ROI_INPUT, "used": ROI_USED})
        else:
            info["box"] = list(self.box)
        return info

    # --- graph building -------------------------------------------------------------------

    def gradient(self, ctx, at: str, mapping: dict, seeds: dict, copies: int, mode: str) -> str:
        """dS/d(at) on the window (zeros elsewhere, so methods can multiply by x unchanged)."""
        b = ctx.b
        split = self.split
        if split is None:
            raise RuntimeError("RoiPlan.gradient needs a split tensor (callers check roi.split)")
        full_split = mapping.get(split, split)
        g_split = input_gradient(ctx.model.graph, ctx.info, b, seeds, full_split, mode)
        crop, copied = self._cropped_prefix(ctx, at, split, copies)
        seed = self._take(b, g_split, ctx.shape(full_split), "split", copies)
        g_crop = input_gradient(ctx.model.graph, ctx.info, b, {copied: seed}, crop, mode)
        inner = self._take(b, g_crop, ctx.shape(crop), "inner", copies)
        return self._place(b, inner, ctx.shape(at), copies)

    def region(self, b: Builder, tensor: str, shape: tuple[int, ...]) -> tuple[str, list[int]]:
        """``tensor`` (image-shaped, layout of the image) cut to the window."""
        return self._take(b, tensor, shape, "window", 1), self._shape(shape, "window")

    def add_input(self, model: onnx.ModelProto) -> None:
        """The runtime ``roi`` input [N, 2] (x0, y0 of each window)."""
        model.graph.input.append(
            helper.make_tensor_value_info(
                ROI_INPUT, onnx.TensorProto.INT64, [self.image.shape[0], 2]
            )
        )

    def add_output(self, b: Builder, model: onnx.ModelProto) -> None:
        """The runtime ``roi_used`` output: the window actually used, after clamping."""
        model.graph.node.append(
            helper.make_node("Identity", [self._used(b)], [ROI_USED], name=f"edgesal/{ROI_USED}")
        )
        model.graph.output.append(
            helper.make_tensor_value_info(
                ROI_USED, onnx.TensorProto.INT64, [self.image.shape[0], 2]
            )
        )

    def _cropped_prefix(self, ctx, at: str, split: str, copies: int) -> tuple[str, str]:
        """(crop of ``at``, the split tensor computed from it), one forward copy per sample set."""
        key = (at, copies)
        if key not in self._copies:
            crop = self._take(ctx.b, at, ctx.shape(at), "crop", copies)
            prefix = ctx.b.unique("roi_crop")
            mapping = forward_copy(ctx.model.graph, self.image.tensor, crop, {split}, prefix)
            ctx.info = TensorInfo(ctx.model)
            self._copies[key] = (crop, mapping[split])
        return self._copies[key]

    def _shape(self, shape: tuple[int, ...], kind: str) -> list[int]:
        axes = self.split_axes if kind == "split" else self.image_axes
        extents = {
            "split": [a.split_crop for a in self.axes],
            "crop": [a.crop for a in self.axes],
        }.get(kind, [a.window for a in self.axes])
        out = list(shape)
        for axis, extent in zip(axes, extents, strict=True):
            out[axis] = extent
        return out

    def _take(self, b: Builder, x: str, shape: tuple[int, ...], kind: str, copies: int) -> str:
        """x sliced to the ``kind`` window: crop, split (on T), inner (window in crop), window."""
        axes = self.split_axes if kind == "split" else self.image_axes
        extents = self._shape(shape, kind)
        starts = self._start(b, kind)
        if not self.runtime:
            ends = [s + extents[a] for s, a in zip(starts, axes, strict=True)]
            return b.Slice(x, b.ints(starts), b.ints(ends), b.ints(axes))
        groups = self.image.shape[0]
        grouped = b.Reshape(x, b.ints([groups, copies, *shape[1:]]))
        sizes = [1] + [extents[a] for a in axes]
        pieces = []
        for n in range(groups):
            item = b.Reshape(
                b.Slice(starts, b.ints([n]), b.ints([n + 1]), b.ints([0])), b.ints([2])
            )
            begin = b.Concat(b.ints([n]), item, axis=0)
            pieces.append(
                b.Slice(
                    grouped, begin, b.Add(begin, b.ints(sizes)), b.ints([0, *(a + 1 for a in axes)])
                )
            )
        joined = pieces[0] if groups == 1 else b.Concat(*pieces, axis=0)
        return b.Reshape(joined, b.ints(extents))

    def _place(self, b: Builder, inner: str, full: tuple[int, ...], copies: int) -> str:
        """The window's values put back at their place in an image-shaped tensor of zeros."""
        rank, (ay, ax) = len(full), self.image_axes
        sizes = [full[ay] - self.axes[0].window, full[ax] - self.axes[1].window]
        if self.box is not None:  # fixed ROI
            before = [0] * rank
            before[ay], before[ax] = self.box[1], self.box[0]
            after = [0] * rank
            after[ay], after[ax] = sizes[0] - self.box[1], sizes[1] - self.box[0]
            return b.Pad(inner, b.ints(before + after))
        starts = self._start(b, "window")
        groups = self.image.shape[0]
        shape = self._shape(full, "window")
        grouped = b.Reshape(inner, b.ints([groups, copies, *shape[1:]]))
        lead, trail = b.ints([0] * (ay + 1)), b.ints([0] * (rank - ax - 1))
        pieces = []
        for n in range(groups):
            item = b.Reshape(
                b.Slice(starts, b.ints([n]), b.ints([n + 1]), b.ints([0])), b.ints([2])
            )
            pads = b.Concat(lead, item, trail, lead, b.Sub(b.ints(sizes), item), trail, axis=0)
            one = b.Slice(grouped, b.ints([n]), b.ints([n + 1]), b.ints([0]))
            pieces.append(b.Pad(one, pads))
        joined = pieces[0] if groups == 1 else b.Concat(*pieces, axis=0)
        return b.Reshape(joined, b.ints(full))

    def _start(self, b: Builder, kind: str):
        """Starts (y, x) of window ``kind``: ints (fixed ROI) or an int64 tensor [N, 2]."""
        if self.box is not None:  # fixed ROI
            x0, y0 = self.box[:2]
            window = [y0, x0]
            crop = [a.starts[0] for a in self.axes]
            return {
                "window": window,
                "crop": crop,
                "inner": [w - c for w, c in zip(window, crop, strict=True)],
                "split": [c // a.stride for c, a in zip(crop, self.axes, strict=True)],
            }[kind]
        if kind not in self._starts:
            self._starts[kind] = self._runtime_start(b, kind)
        return self._starts[kind]

    def _runtime_start(self, b: Builder, kind: str) -> str:
        if kind == "window":
            return b.Gather(self._used(b), b.ints([1, 0]), axis=1)
        if kind == "crop":
            window = self._start(b, "window")
            columns = [
                b.Reshape(
                    b.Gather(
                        b.ints(a.starts, hint="roi_crop_starts"),
                        b.Gather(window, b.ints([i]), axis=1),
                    ),
                    b.ints([-1, 1]),
                )
                for i, a in enumerate(self.axes)
            ]
            return b.Concat(*columns, axis=1)
        crop = self._start(b, "crop")
        if kind == "inner":
            return b.Sub(self._start(b, "window"), crop)
        return b.Div(crop, b.ints([a.stride for a in self.axes]))

    def _used(self, b: Builder) -> str:
        if "used" not in self._starts:
            y, x = self.axes
            low = b.Max(ROI_INPUT, b.ints([0, 0]))
            self._starts["used"] = b.Min(low, b.ints([x.size - x.window, y.size - y.window]))
        return self._starts["used"]


# --- planning ---------------------------------------------------------------------------------


def plan(
    model: onnx.ModelProto,
    info: TensorInfo,
    image: ImageInput,
    seeds: dict[str, str],
    box: tuple[int, int, int, int] | None = None,
    size: tuple[int, int] | None = None,
    split: str | None = None,
) -> RoiPlan:
    """Check the window against the image and choose the split tensor and crop (or none)."""
    height, width = image.spatial
    windows = _windows(box, size, width, height)
    prefix = Prefix.build(model.graph, info, image.tensor, image.layout)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    active = active_tensors(model.graph, set(seeds), image.tensor, opset)
    cuts = [
        t for t in prefix.fields if t != image.tensor and _is_cut(model.graph, prefix, t, active)
    ]
    if split is not None and split not in cuts:
        listed = ", ".join(cuts[:12]) + (f" and {len(cuts) - 12} more" if len(cuts) > 12 else "")
        raise InputError(
            f"--roi-split {split}: not a tensor of the spatially local prefix that every path "
            f"from the image to the target goes through (candidates: {listed or 'none'})"
        )
    best = None
    for tensor in [split] if split else cuts:
        candidate = _evaluate(prefix, tensor, windows, box is None)
        if candidate is not None and (best is None or candidate[0] > best[0]):
            best = candidate
    plain_y, plain_x = (
        AxisPlan(n, w, n, (0,) * len(starts))
        for n, (w, starts) in zip((height, width), windows, strict=True)
    )
    plain = (plain_y, plain_x)
    if not prefix.links:
        return RoiPlan(image, box, plain, reason="the graph has no spatially local prefix")
    if not cuts:
        why = "no tensor of the local prefix lies on every path from the image to the target"
        return RoiPlan(image, box, plain, reason=why)
    if best is None:
        return RoiPlan(image, box, plain, reason="no split tensor has an exact crop")
    saving, tensor, axes = best
    if split is None and saving <= 0:
        return RoiPlan(image, box, plain, reason="no split saves work")
    backward = prefix.cost(prefix.ancestors(tensor), prefix.full_sizes(), backward=True)
    return RoiPlan(
        image,
        box,
        axes,
        split=tensor,
        split_axes=prefix.axes[tensor],
        saving=saving / backward,
        reason="forced by --roi-split" if split else "largest estimated saving",
    )


def _windows(box, size, width: int, height: int) -> tuple[tuple, tuple]:
    """Per axis (y, x): (window extent, possible window starts), after checking the flags."""
    if box is not None and size is not None:
        raise InputError("--roi and --roi-size: give one (a fixed window, or one set at run time)")
    if box is not None:
        x0, y0, x1, y1 = box
        text = ",".join(map(str, box))
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise InputError(
                f"--roi {text}: not a non-empty window x0,y0,x1,y1 (half-open) inside the "
                f"{width}x{height} image"
            )
        return (y1 - y0, (y0,)), (x1 - x0, (x0,))
    w, h = size
    if not (1 <= w <= width and 1 <= h <= height):
        raise InputError(
            f"--roi-size {w},{h}: must be between 1x1 and the image's {width}x{height}"
        )
    return (h, tuple(range(height - h + 1))), (w, tuple(range(width - w + 1)))


def _is_cut(graph: onnx.GraphProto, prefix: Prefix, tensor: str, active: set[str]) -> bool:
    """True when every differentiable path from the image to the target passes ``tensor``."""
    if tensor not in active:
        return False
    links = prefix.ancestors(tensor)
    inside = {prefix.image} | {link.out for link in links}
    upstream = inside - {tensor}
    for node in graph.node:
        if any(name in upstream for name in node.input):
            if any(out in active and out not in inside for out in node.output):
                return False
    return True


def _evaluate(prefix: Prefix, tensor: str, windows, runtime: bool):
    """(saving, tensor, axis plans) for splitting at ``tensor``, or None when no crop is exact."""
    links = prefix.ancestors(tensor)
    axes = []
    for axis, window in enumerate(windows):
        size = prefix.sizes[prefix.image][axis]
        window_extent = window[0]
        crop = _crop_axis(prefix, links, tensor, axis, window, runtime)
        if crop is None:
            return None
        extent, starts = crop
        field_ = prefix.fields[tensor][axis]
        split_crop = prefix.crop_sizes(links, axis, extent)[tensor]
        axes.append(AxisPlan(size, window_extent, extent, starts, field_.stride, split_crop))
    full = prefix.full_sizes()
    crop_y, crop_x = (prefix.crop_sizes(links, i, a.crop) for i, a in enumerate(axes))
    cropped = (crop_y, crop_x)
    cost = prefix.cost(links, cropped, False) + prefix.cost(links, cropped, True)
    # slices of the image and of dS/dT, the window padded back and cut out again
    moved = prefix.elements(prefix.image, cropped) + prefix.elements(tensor, cropped)
    moved += 2 * prefix.elements(prefix.image, full)
    saving = prefix.cost(links, full, True) - cost - ELEMENT_COST * moved
    return saving, tensor, tuple(axes)


def _crop_axis(prefix: Prefix, links: list[Link], tensor: str, axis: int, window, runtime: bool):
    """(crop extent, crop start per window start) along ``axis``, verified exact; or None.

    ``window`` is (extent, window starts). A fixed window tries its tight crop, then that crop
    stretched to the far border, then from the near border. A runtime window gets one extent for
    all starts, with (image - extent) a multiple of the stride so a clamped crop stays aligned.
    """
    extent_w, positions = window
    size = prefix.sizes[prefix.image][axis]
    field_ = prefix.fields[tensor][axis]
    stride, spans, wanted = field_.stride, {}, []
    for r0 in positions:
        f0, f1 = field_.meeting(r0, r0 + extent_w, prefix.sizes[tensor][axis])
        if f0 > f1:
            return None
        if (f0, f1) not in spans:
            need = prefix.needed(links, axis, tensor, f0, f1)[prefix.image]
            spans[(f0, f1)] = (max(need[0], 0), min(need[1], size - 1))
        a, b = spans[(f0, f1)]
        wanted.append((f0, f1, min(a, r0) // stride * stride, max(b, r0 + extent_w - 1)))

    def exact(starts, extent) -> bool:
        tried = {(f0, f1, c0) for (f0, f1, _, _), c0 in zip(wanted, starts, strict=True)}
        return all(prefix.verify(links, axis, tensor, f0, f1, c0, extent) for f0, f1, c0 in tried)

    if not runtime:
        _, _, c, b = wanted[0]
        for c0, end in ((c, b + 1), (c, size), (0, b + 1), (0, size)):
            if exact([c0], end - c0):
                return end - c0, (c0,)
        return None
    extent = max(b + 1 - c for _, _, c, b in wanted)
    extent = size - (size - extent) // stride * stride
    while extent <= size:
        starts = [min(c, size - extent) for _, _, c, _ in wanted]
        if exact(starts, extent):
            return extent, tuple(starts)
        extent += stride
    return None
