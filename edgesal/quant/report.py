"""The fidelity report: per-image scores, float decisions and their reasons, as text and JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgesal.quant.fidelity import ImageFidelity, Summary, summarize
from edgesal.quant.options import Budget


@dataclass
class KeptNode:
    """A node left in float: why, and what that costs in latency."""

    node: str
    op_type: str
    region: str
    reason: str
    float_ms: float | None = None
    int8_ms: float | None = None
    cost_ms: float | None = None


@dataclass
class Report:
    """Everything ``edgesal quantize`` measured and decided."""

    model: str
    method: str
    output_format: str
    budget: Budget
    images: dict
    seed_scale: dict
    gradient_ranges: dict[str, int]  # how many gradient tensors each range method won
    quantized_nodes: int
    kept: list[KeptNode]
    blocks: list[dict]
    search_log: list[str]
    rows: list[ImageFidelity]
    latency_ms: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self, split: str) -> Summary:
        return summarize([r for r in self.rows if r.split == split])

    @property
    def meets_budget(self) -> bool:
        """The budget holds on the held-out validation images."""
        s = self.summary("validation")
        return s.images > 0 and self.budget.met(s.spearman, s.top10_iou)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["summary"] = {
            split: asdict(self.summary(split)) for split in ("calibration", "validation")
        }
        data["meets_budget"] = self.meets_budget
        return data

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def _kept_lines(self, shown: int = 20) -> list[str]:
        """The float nodes, costliest first; the rest are counted (all are in the JSON)."""
        costed = [k for k in self.kept if k.cost_ms is not None]
        lines = []
        if costed:
            total = sum(k.cost_ms for k in costed)
            lines.append(f"latency cost of the float nodes (profiled, vs int8): {total:+.2f} ms")
        ordered = sorted(self.kept, key=lambda k: -(k.cost_ms or 0.0))
        for k in ordered[:shown]:
            cost = "" if k.cost_ms is None else f" [{k.cost_ms:+.3f} ms]"
            lines.append(f"  {k.node} ({k.op_type}, {k.region}): {k.reason}{cost}")
        if len(ordered) > shown:
            lines.append(f"  ... {len(ordered) - shown} more float nodes in the JSON report")
        return lines

    def format(self) -> str:
        """The printed report."""
        lines = [
            f"edgesal quantize: {self.model} (method {self.method}) -> {self.output_format}",
            f"images: {len(self.images.get('calibration', []))} calibration "
            f"(+{self.images.get('calibration_augmented', 0)} augmented), "
            f"{len(self.images.get('validation', []))} validation, from "
            f"{self.images.get('source')}",
            f"  calibration: {', '.join(self.images.get('calibration', []))}",
            f"  validation:  {', '.join(self.images.get('validation', []))}",
            *(f"  note: {n}" for n in self.images.get("notes", [])),
            f"seed scale: x{self.seed_scale.get('factor')} ({self.seed_scale.get('reason')}; "
            f"undone by {self.seed_scale.get('undo')})",
            "gradient ranges: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.gradient_ranges.items())),
            "",
            f"{'image':28s} {'split':11s} {'spearman':>8s} {'top10iou':>8s} {'ssim':>6s} top1",
        ]
        for r in self.rows:
            agree = "yes" if r.top1_agrees else f"no ({r.float_class}->{r.int8_class})"
            lines.append(
                f"{r.image[:28]:28s} {r.split:11s} {r.spearman:8.3f} {r.top10_iou:8.3f} "
                f"{r.ssim:6.3f} {agree}"
            )
        for split in ("calibration", "validation"):
            s = self.summary(split)
            lines.append(
                f"{'mean ' + split:40s} {s.spearman:8.3f} {s.top10_iou:8.3f} {s.ssim:6.3f} "
                f"{s.top1_agreement:.2f}"
            )
        verdict = "MET" if self.meets_budget else "NOT MET"
        lines += [
            f"budget (validation): mean Spearman >= {self.budget.spearman}, mean top-10% IoU >= "
            f"{self.budget.iou}: {verdict}",
            "",
            f"{self.quantized_nodes} nodes int8, {len(self.kept)} kept float",
        ]
        lines += self._kept_lines()
        lines += [f"search: {entry}" for entry in self.search_log]
        if self.latency_ms:
            lines.append(
                "latency (median ms): "
                + ", ".join(f"{k} {v:.2f}" for k, v in self.latency_ms.items())
            )
        if self.sizes:
            lines.append("size (bytes): " + ", ".join(f"{k} {v}" for k, v in self.sizes.items()))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)
