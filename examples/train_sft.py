"""Fine-tune a code model on verified rewrites (SFT with LoRA, or QLoRA with --qlora).

Without --dataset the seed set is the shipped suites' reference rewrites; with it, the JSONL
written by ``quill_agents.export`` (``{"prompt": [...], "completion": [...]}`` rows).

    python examples/train_sft.py --qlora --dataset data/sft.jsonl --out outputs/sft
    quill train sft --load-in-4bit true --dataset data/sft.jsonl --output-dir outputs/sft   # same thing

Then evaluate the adapter:  quill bench --agent policy:outputs/sft
"""

import argparse

from quill_agents.trainers import DEFAULT_MODEL, SFTTrainConfig, train_sft

if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local path of a causal LM")
    parser.add_argument("--dataset", default=None, help="exported SFT JSONL (default: the suites' seed set)")
    parser.add_argument("--out", default="outputs/quill-sft")
    parser.add_argument("--qlora", action="store_true", help="load the base model in 4-bit nf4")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--max-steps", type=int, default=-1)
    args = parser.parse_args()

    config = SFTTrainConfig(
        model=args.model,
        dataset=args.dataset,
        output_dir=args.out,
        load_in_4bit=args.qlora,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
    )
    report = train_sft(config)
    print(
        f"{report.steps} steps, {report.tokens_per_second} tokens/s; adapter and report in {report.output_dir}"
    )
