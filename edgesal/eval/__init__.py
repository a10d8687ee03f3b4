"""Evaluation and audit of saliency models on the runtime that runs them (onnxruntime).

``evaluate(model, images, out)`` scores a saliency model made by ``edgesal export``: deletion and
insertion curves (:mod:`~edgesal.eval.perturb`), ROAD (:mod:`~edgesal.eval.road`), the pointing
game (:mod:`~edgesal.eval.pointing`), max-sensitivity (:mod:`~edgesal.eval.stability`) and sanity
checks on the ONNX graph (:mod:`~edgesal.eval.sanity`), with a random map and a Sobel edge
detector as controls. ``compare(a, b, images, out)`` measures how close b's maps are to a's,
``audit_records(model, records, out)`` what a device recorded. Work runs as tasks on an engine
(:mod:`~edgesal.eval.engines`: in process, a process pool, or Ray), stored as they finish so a
killed audit resumes; the report folder gets ``report.json``, ``report.html`` and PNG plots.
"""

from __future__ import annotations

from edgesal.eval.options import EvalOptions

__all__ = ["EvalOptions", "audit_records", "compare", "evaluate"]


def __getattr__(name: str):
    """The entry points load on first use: ``edgesal.eval.cli`` builds its parser without onnx."""
    if name in ("compare", "evaluate"):
        from edgesal.eval import audit

        return getattr(audit, name)
    if name == "audit_records":
        from edgesal.eval.records import audit_records

        return audit_records
    raise AttributeError(f"module 'edgesal.eval' has no attribute {name!r}")
