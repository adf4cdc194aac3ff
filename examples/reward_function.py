"""Quill's reward as a plain function: what a trainer other than a Gymnasium loop calls.

Usage:
    python examples/reward_function.py [--engine sqlite|duckdb]

Scores four completions of two shop tasks with ``quill_env.reward_fn`` (the reference rewrite,
the original query unchanged, another task's answer, and no SQL at all), then one with the
verl-style ``compute_score``. Offline; nothing is downloaded.
"""

import argparse

import quill_env
from quill_env.prompt import format_completion
from quill_env.reward_functions import RewardFunction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="sqlite")
    args = parser.parse_args()
    reward = RewardFunction(scale="small", engine=args.engine)
    first, second = [t for t in quill_env.get_suite("shop").split("train") if t.reference][:2]
    port = {t.id: reward.runner(t.id).task for t in (first, second)}  # the engine's SQL
    completions = {
        "the reference rewrite": (first.id, format_completion(port[first.id].reference)),
        "the original, unchanged": (first.id, format_completion(port[first.id].query)),
        "another task's answer": (first.id, format_completion(port[second.id].reference)),
        "no SQL at all": (first.id, "I would add an index."),
    }
    ids = [task_id for task_id, _ in completions.values()]
    texts = [text for _, text in completions.values()]
    for (name, (task_id, _)), result in zip(completions.items(), reward.results(texts, ids)):
        print(f"{task_id:32s} {name:24s} {result.verdict.value:13s} reward {result.reward:+.3f}")
    verl = quill_env.compute_score(
        "quill",
        format_completion(port[first.id].reference),
        None,
        {"task_id": first.id, "scale": "small", "engine": args.engine},
    )
    print(f"compute_score (verl): {verl}")


if __name__ == "__main__":
    main()
