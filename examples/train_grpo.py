"""Train against the environment with GRPO: every sampled rewrite is executed and verified.

The reward is the environment's (tiered verified speedup, -1.0 for broken SQL), computed in
worker processes; the share of each verdict is logged as ``quill/verdict/<v>``. With
--multi-turn the model may call tools (query_plan, dry_run) before it calls submit.

    python examples/train_grpo.py --suites shop ecommerce --qlora --out outputs/grpo
    python examples/train_grpo.py --multi-turn --out outputs/grpo-tools
"""

import argparse

from quill_agents.trainers import DEFAULT_MODEL, GRPOTrainConfig, train_grpo

if __name__ == "__main__":  # required: reward workers are started with "spawn"
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--suites", nargs="+", default=None, help="suites whose train tasks give prompts")
    parser.add_argument("--out", default="outputs/quill-grpo")
    parser.add_argument("--qlora", action="store_true")
    parser.add_argument("--multi-turn", action="store_true", help="tools through TRL's environment_factory")
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=200)
    args = parser.parse_args()

    config = GRPOTrainConfig(
        model=args.model,
        suites=args.suites,
        output_dir=args.out,
        load_in_4bit=args.qlora,
        multi_turn=args.multi_turn,
        num_generations=args.num_generations,
        max_steps=args.max_steps,
    )
    report = train_grpo(config)
    if report.rewards:
        print(f"mean reward {report.rewards[0]['reward']:+.3f} -> {report.rewards[-1]['reward']:+.3f}")
    print("verdicts:", report.extra.get("verdict_counts"))
