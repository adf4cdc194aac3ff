"""Train against the environment with RLOO (leave-one-out baseline, PPO-style clipping).

python examples/train_rloo.py --suites shop --qlora --out outputs/rloo
"""

import argparse

from quill_agents.trainers import DEFAULT_MODEL, RLOOTrainConfig, train_rloo

if __name__ == "__main__":  # required: reward workers are started with "spawn"
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--suites", nargs="+", default=None)
    parser.add_argument("--out", default="outputs/quill-rloo")
    parser.add_argument("--qlora", action="store_true")
    parser.add_argument("--max-steps", type=int, default=200)
    args = parser.parse_args()

    config = RLOOTrainConfig(
        model=args.model,
        suites=args.suites,
        output_dir=args.out,
        load_in_4bit=args.qlora,
        max_steps=args.max_steps,
    )
    report = train_rloo(config)
    print("verdicts:", report.extra.get("verdict_counts"))
