"""ReST-EM self-training (Singh et al., 2023): sample, keep verified rewrites, fine-tune, repeat.

Each iteration samples k rewrites per training task from the current policy, keeps those the
environment rewards >= 0.25, fine-tunes a fresh adapter on the base model with them plus the
seed set, and evaluates it on the test split; the loop stops when the test reward stops improving.

    python examples/train_restem.py --suites shop --iterations 3 --k 8 --qlora --out outputs/restem
"""

import argparse

from quill_agents.trainers import DEFAULT_MODEL, ReSTEMConfig, train_restem

if __name__ == "__main__":  # required: reward workers are started with "spawn"
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--suites", nargs="+", default=None)
    parser.add_argument("--out", default="outputs/quill-restem")
    parser.add_argument("--qlora", action="store_true")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--k", type=int, default=8, help="samples per training task")
    args = parser.parse_args()

    config = ReSTEMConfig(
        model=args.model,
        suites=args.suites,
        output_dir=args.out,
        load_in_4bit=args.qlora,
        iterations=args.iterations,
        samples_per_task=args.k,
    )
    report = train_restem(config)
    for it in report.extra["iterations"]:
        kept = it.get("e_step", {}).get("kept", "-")
        print(
            f"iteration {it['iteration']}: kept {kept}, test reward {it.get('test', {}).get('mean_reward')}"
        )
    print("best adapter:", report.extra["best_adapter"])
