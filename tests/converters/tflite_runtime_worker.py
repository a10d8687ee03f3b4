"""Runs .tflite models with the device runtime (``edgesal.runtimes.backends``) in a separate venv.

Usage: python tflite_runtime_worker.py JOBS.json. Each job names a model, an .npz of ONNX-layout
feeds and an .npz to write every output to; the worker also records which interpreter package
ran, how many XNNPACK partitions it made and the contract the runtime read from the metadata.
It imports numpy, the interpreter and ``runtimes`` only, so it runs under numpy < 2 with
tflite-runtime.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from edgesal.runtimes.backends import BackendOptions, load_backend
from edgesal.runtimes.contract import build_contract


def run(job: dict) -> dict:
    backend = load_backend(job["model"], BackendOptions(threads=2))
    feeds = dict(np.load(job["feeds"]))
    for name, (shape, _) in backend.inputs.items():
        if feeds[name].shape != tuple(shape):
            feeds[name] = feeds[name].transpose(0, 2, 3, 1)
    outputs = backend.run(backend.outputs, feeds)
    np.savez(job["out"], **dict(zip(backend.outputs, outputs, strict=True)))
    ops = [op["op_name"] for op in backend._acquire()._get_ops_details()]
    contract = build_contract(job["model"], backend.metadata, backend.inputs, backend.outputs)
    return {
        "backend": backend.name,
        "delegates": ops.count("DELEGATE"),
        "layout": contract.layout,
        "input": contract.input,
        "saliency": contract.saliency,
        "numpy": np.__version__,
    }


if __name__ == "__main__":
    jobs = json.loads(open(sys.argv[1]).read())
    print(json.dumps([run(job) for job in jobs]))
