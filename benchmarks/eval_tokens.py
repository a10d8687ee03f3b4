"""'Attention is not attribution', measured on a real model: deletion / insertion over tokens and
the weight-randomization cascade for all-MiniLM-L6-v2 + topic head (edgesal.eval.tokens).

Texts: 30 short sentences written for this table, 6 per topic; deleted tokens become [MASK].
Usage: python benchmarks/eval_tokens.py [--seq 32] [--write]  (--write updates docs/tokens.md)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, write_section  # noqa: E402
from edgesal.eval.tokens import evaluate_texts, markdown, sanity_cascade  # noqa: E402
from edgesal.export import ExportOptions, save  # noqa: E402
from edgesal.options import MethodOptions  # noqa: E402
from edgesal.runtimes.text import TextExplainer  # noqa: E402
from edgesal.tokens.export import TokenOptions, export_token_saliency  # noqa: E402
from tests.tokens import minilm  # noqa: E402

TEXTS = [
    "The striker scored twice in the cup final.",
    "Our goalkeeper saved a penalty in extra time.",
    "The tennis champion lost the first set but won the match.",
    "Fans cheered as the runners crossed the finish line.",
    "The coach picked a young team for the league game.",
    "He hit a home run in the ninth inning.",
    "The senate passed the budget after a long debate.",
    "Voters chose a new mayor in the local election.",
    "The minister resigned after the scandal.",
    "Parliament will vote on the tax reform next week.",
    "The president signed a treaty with its neighbours.",
    "The opposition party criticised the new law.",
    "The new phone has a faster chip and a better camera.",
    "Engineers released a software update for the laptop.",
    "The startup trains neural networks on cloud servers.",
    "This browser blocks trackers and saves battery.",
    "The robot uses sensors to map the warehouse.",
    "A security patch fixes a bug in the operating system.",
    "I cooked pasta with tomato sauce and fresh basil.",
    "The bakery sells warm bread and chocolate cake.",
    "We ordered spicy noodles and dumplings for dinner.",
    "Add salt and pepper before you roast the chicken.",
    "The soup tastes better with garlic and onions.",
    "She baked an apple pie for dessert.",
    "Heavy rain and strong winds are expected tomorrow.",
    "The forecast says snow will fall overnight.",
    "A heat wave pushed temperatures above forty degrees.",
    "Thunderstorms may bring hail this afternoon.",
    "Fog will clear by noon and the sun will shine.",
    "The storm caused floods along the coast.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=32)
    parser.add_argument("--sanity-texts", type=int, default=10)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    path = minilm.minilm_onnx(args.seq)
    tokenizer = minilm.tokenizer_path()
    options = ExportOptions(
        methods=["vanilla", "gradxinput", "integrated"], target="input", input="input_ids",
        input_shape=(1, args.seq), reduce="l2", labels=minilm.TOPICS,
        params=MethodOptions(steps=16),
    )  # fmt: skip
    tokens = TokenOptions(
        attention=True, baseline_token=minilm.MASK_TOKEN, special_tokens=minilm.SPECIAL
    )
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1000))

        def export(forward: onnx.ModelProto) -> TextExplainer:
            out = Path(tmp) / f"m{next(counter)}.onnx"
            save(export_token_saliency(forward, options, tokens), out)
            return TextExplainer(out, tokenizer)

        forward = onnx.load(str(path))
        explainer = export(forward)
        hits = sum(explainer.explain(t).label == minilm.TOPICS[i // 6] for i, t in enumerate(TEXTS))
        curves = evaluate_texts(explainer, TEXTS, minilm.MASK_TOKEN, minilm.SPECIAL)
        picked = TEXTS[:: max(1, len(TEXTS) // args.sanity_texts)]
        sanity = sanity_cascade(forward, export, picked, minilm.SPECIAL)
    body = "\n".join(
        [
            f"all-MiniLM-L6-v2 + zero-shot topic head (5 topics), T = {args.seq}; {len(TEXTS)} "
            f"sentences (6 per topic, the model labels {hits} of them as intended); deleted "
            "tokens become [MASK]; IG: 16 points from [MASK] embeddings, [CLS]/[SEP] kept; "
            f"sanity: {len(picked)} sentences, all {max(sanity)} parametric layers re-initialized "
            "from the top.",
            "",
            markdown(curves, sanity),
        ]
    )
    print(body)
    if args.write:
        write_section("token-eval", body, ROOT / "docs" / "tokens.md")


if __name__ == "__main__":
    main()
