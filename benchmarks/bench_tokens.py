"""Token saliency speed on a real MiniLM-class encoder (all-MiniLM-L6-v2 + topic head, T = 128):
onnxruntime forward vs the in-graph maps, attention outputs, integrated gradients, and torch /
Captum on the same weights. One run, fixed threads, medians in alternating blocks
(:func:`edgesal.tools.bench.interleaved_medians`); only the ratios of one run compare.

Usage: python benchmarks/bench_tokens.py [--runs 15] [--threads 2] [--seq 128] [--write]
(--write replaces the table in docs/tokens.md)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, machine_info, write_section  # noqa: E402
from edgesal.export import ExportOptions  # noqa: E402
from edgesal.graph.fold import drop_dead_nodes, remove_unused_initializers  # noqa: E402
from edgesal.options import MethodOptions  # noqa: E402
from edgesal.tokens.export import TokenOptions, export_token_saliency  # noqa: E402
from edgesal.tools.bench import interleaved_medians, session  # noqa: E402
from tests.tokens import minilm  # noqa: E402

IG = "integrated (16 points, default: chunks of 8)"
ONE_BATCH = "integrated (16 points, one batch)"
TEXT = (
    "The home team came back from two goals down in the second half, and the striker scored "
    "the winner in the last minute of the final, sending thousands of fans into the streets "
    "of the city to celebrate the first championship title in more than twenty years."
)


def token_model(path: Path, seq: int, method: str, attention: bool, **params) -> onnx.ModelProto:
    options = ExportOptions(
        method=method, input="input_ids", input_shape=(1, seq), reduce="l2",
        params=MethodOptions(**params),
    )  # fmt: skip
    tokens = TokenOptions(
        attention=attention, baseline_token=minilm.PAD, special_tokens=minilm.SPECIAL
    )
    return export_token_saliency(path, options, tokens)


def only_outputs(model: onnx.ModelProto, keep: list[str]) -> onnx.ModelProto:
    """``model`` computing only ``keep`` (the attention outputs without the backward pass)."""
    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    outputs = [o for o in pruned.graph.output if o.name in keep]
    del pruned.graph.output[:]
    pruned.graph.output.extend(outputs)
    drop_dead_nodes(pruned.graph, "")
    remove_unused_initializers(pruned)
    return pruned


def bench(seq: int, threads: int, runs: int, cpu: bool) -> tuple[dict[str, float], int]:
    import torch
    from captum.attr import LayerIntegratedGradients

    torch.set_num_threads(threads)
    path = minilm.minilm_onnx(seq)
    ids, mask = minilm.encode(TEXT, seq)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    vanilla_att = token_model(path, seq, "vanilla", True)
    models = {
        "forward": onnx.load(str(path)),
        "forward (exported file, scores only)": only_outputs(vanilla_att, ["scores"]),
        "forward + attention outputs": only_outputs(
            vanilla_att, ["scores", "attention", "attention_rollout"]
        ),
        "vanilla": token_model(path, seq, "vanilla", False),
        "vanilla + attention, rollout, attention-gradient": vanilla_att,
        IG: token_model(path, seq, "integrated", False, steps=16),  # default batching
        ONE_BATCH: token_model(path, seq, "integrated", False, steps=16, max_batch=0),
    }
    sessions = {name: session(m, threads) for name, m in models.items()}
    fns = {name: (lambda s=s: s.run(None, feeds)) for name, s in sessions.items()}

    bert = minilm.load_minilm()
    tid, tmask = torch.from_numpy(ids), torch.from_numpy(mask)
    types = torch.zeros_like(tid)
    target = int(sessions["forward"].run(None, feeds)[0].argmax())

    def torch_forward():
        with torch.no_grad():
            return bert(tid, tmask, types)

    def torch_backward():
        words = bert.embeddings.word_embeddings(tid).detach().requires_grad_(True)
        bert(tid, tmask, types, words)[0, target].backward()
        return words.grad

    special = torch.from_numpy(np.isin(ids, minilm.SPECIAL))
    baseline_ids = torch.where(special, tid, torch.full_like(tid, minilm.PAD))
    lig = LayerIntegratedGradients(bert, bert.embeddings.word_embeddings)

    def captum_ig():
        return lig.attribute(
            tid, baselines=baseline_ids, additional_forward_args=(tmask, types), target=target,
            n_steps=16, method="gausslegendre",
        )  # fmt: skip

    fns.update(
        {
            "torch forward": torch_forward,
            "torch forward + backward (embeddings)": torch_backward,
            "Captum LayerIntegratedGradients (16)": captum_ig,
        }
    )
    clock = time.process_time if cpu else time.perf_counter
    return interleaved_medians(fns, runs, clock=clock), int(mask.sum())


def table(ms: dict[str, float], seq: int, tokens: int, threads: int, runs: int, cpu: bool) -> str:
    forward = ms["forward"]
    clock = "process CPU time (all threads)" if cpu else "wall time"
    lines = [
        f"all-MiniLM-L6-v2 + topic head, T = {seq} ({tokens} real tokens), batch 1, {threads} "
        f"threads, {clock}, medians of {runs} runs in alternating blocks; {machine_info()}. "
        "The machine was shared with other jobs: compare ratios within this table only.",
        "",
        "| pass | ms | x onnxruntime forward |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {v:.1f} | {v / forward:.2f} |" for name, v in ms.items()]
    vanilla, ig = ms["vanilla"], ms[IG]
    captum = ms["Captum LayerIntegratedGradients (16)"] / ig
    one_batch = ms[ONE_BATCH] / (16 * vanilla)
    attention_cost = ms["forward + attention outputs"] / forward - 1
    extra = ms["vanilla + attention, rollout, attention-gradient"] - vanilla
    lines += [
        "",
        f"- vanilla token saliency: {vanilla / forward:.2f}x the forward pass (target <= 2.6x); "
        f"torch forward + backward {ms['torch forward + backward (embeddings)'] / vanilla:.2f}x "
        "slower than it.",
        f"- attention outputs add {100 * attention_cost:.1f}% to the forward pass (target <= 5%); "
        f"on top of the vanilla map all three attention outputs add {extra:.2f} ms "
        f"({100 * extra / forward:.1f}% of a forward).",
        f"- integrated gradients, 16 points: {ig / (16 * vanilla):.2f} x 16 vanilla calls "
        f"(target <= 0.85; one batch: {one_batch:.2f}); Captum LayerIntegratedGradients (16) "
        f"takes {captum:.2f}x as long.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--cpu-time", action="store_true", help="time CPU, not wall (loaded box)")
    parser.add_argument("--write", action="store_true", help="update docs/tokens.md")
    args = parser.parse_args()
    ms, tokens = bench(args.seq, args.threads, args.runs, args.cpu_time)
    body = table(ms, args.seq, tokens, args.threads, args.runs, args.cpu_time)
    print(body)
    if args.write:
        write_section("tokens", body, ROOT / "docs" / "tokens.md")


if __name__ == "__main__":
    main()
