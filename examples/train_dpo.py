"""Improve an SFT model with DPO on preference pairs ranked by verified reward.

Without --dataset the pairs are built from the suites: each reference rewrite (improved) is
preferred over the slow query itself (unchanged). With --dataset, the JSONL of
``quill_agents.export`` (``{"prompt", "chosen", "rejected"}`` rows).

    python examples/train_dpo.py --model outputs/sft-merged --dataset data/dpo.jsonl --out outputs/dpo
"""

import argparse

from quill_agents.trainers import DEFAULT_MODEL, DPOTrainConfig, train_dpo

if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--dataset", default=None, help="exported DPO JSONL (default: seed pairs)")
    parser.add_argument("--out", default="outputs/quill-dpo")
    parser.add_argument("--qlora", action="store_true")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--max-steps", type=int, default=-1)
    args = parser.parse_args()

    config = DPOTrainConfig(
        model=args.model,
        dataset=args.dataset,
        output_dir=args.out,
        load_in_4bit=args.qlora,
        beta=args.beta,
        max_steps=args.max_steps,
    )
    report = train_dpo(config)
    losses = report.losses  # never empty: a run shorter than logging_steps logs its last step
    print(f"{report.steps} steps; loss {losses[0]['loss']:.4f} -> {losses[-1]['loss']:.4f}")
