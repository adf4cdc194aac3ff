"""Quill's verl rows and reward driven by verl itself (run by test_verl.py).

Run with an interpreter that has ``verl`` 0.9 and Quill installed; prints one JSON object of
what it found, and exits non-zero on a failed check. The rows are written by
``quill tasks export --format verl``, read back by verl's own ``RLHFDataset``, and completions
of them are scored concurrently by verl's own ``RewardLoopWorker`` (its ``naive`` reward manager
calling :func:`quill_env.reward_functions.compute_score` from a thread pool, as in training).
The tokenizer is a byte-level BPE trained here on the prompts and replies: no download.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import verl
from omegaconf import OmegaConf, open_dict
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

import quill_env.reward_functions
from quill_agents.verl_data import verl_rows
from quill_env.prompt import format_completion
from quill_env.reward_functions import RewardFunction

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TASKS_SCORED = 3


def build_tokenizer(corpus: list[str], path: Path) -> PreTrainedTokenizerFast:
    """A byte-level BPE (it decodes every string back exactly) with a ChatML template, saved."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=1000, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(path)
    return tokenizer


def batch_of(samples: list[tuple[dict, str]], tokenizer: PreTrainedTokenizerFast) -> verl.DataProto:
    """A rollout batch as verl's agent loop hands it to the reward: left-padded prompts, right-padded replies."""
    prompts, responses = [], []
    for item, reply in samples:
        text = tokenizer.apply_chat_template(item["raw_prompt"], add_generation_prompt=True, tokenize=False)
        prompts.append(tokenizer(text, add_special_tokens=False)["input_ids"])
        responses.append(tokenizer(reply, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
    width_p, width_r = max(map(len, prompts)), max(map(len, responses))
    pad = tokenizer.pad_token_id
    prompt_ids = torch.tensor([[pad] * (width_p - len(p)) + p for p in prompts])
    response_ids = torch.tensor([r + [pad] * (width_r - len(r)) for r in responses])
    mask = torch.tensor(
        [
            [0] * (width_p - len(p)) + [1] * len(p) + [1] * len(r) + [0] * (width_r - len(r))
            for p, r in zip(prompts, responses)
        ]
    )
    columns = collate_fn([item for item, _ in samples])
    non_tensors = {k: v for k, v in columns.items() if not isinstance(v, torch.Tensor)}
    return verl.DataProto.from_dict(
        tensors={
            "prompts": prompt_ids,
            "responses": response_ids,
            "input_ids": torch.cat([prompt_ids, response_ids], dim=1),
            "attention_mask": mask,
        },
        non_tensors=non_tensors,
    )


async def main(engine: str, tmp: Path) -> dict:
    parquet = tmp / "test.parquet"
    export = [sys.executable, "-m", "quill_cli", "tasks", "export", "--format", "verl", "--suite", "shop"]
    export += ["--split", "test", "--scale", "small", "--engine", engine, "--out", str(parquet)]
    subprocess.run(export, check=True, capture_output=True)
    rows = list(verl_rows(["shop"], "test", "small", engine=engine))
    reward = RewardFunction(None, "small", engine=engine)
    references = {
        r["extra_info"]["task_id"]: reward.runner(r["extra_info"]["task_id"]).task.reference for r in rows
    }
    for row in rows:
        assert references[row["extra_info"]["task_id"]] not in json.dumps(row), row  # no answer in a row

    config = OmegaConf.load(Path(verl.__file__).parent / "trainer/config/_generated_ppo_trainer.yaml")
    with open_dict(config):
        config.data.cache_dir = str(tmp / "cache")
        config.data.max_prompt_length = 100_000
        config.data.filter_overlong_prompts = True  # runs the chat template over every row
        config.data.filter_overlong_prompts_workers = 1
        config.actor_rollout_ref.model.path = str(tmp / "tokenizer")
        config.reward.custom_reward_function.path = quill_env.reward_functions.__file__
        config.reward.custom_reward_function.name = "compute_score"

    task_ids = [r["extra_info"]["task_id"] for r in rows]
    replies_of = {}
    for i, task_id in enumerate(task_ids[:TASKS_SCORED]):
        runner = reward.runner(task_id)
        replies_of[task_id] = {
            "reference": format_completion(runner.task.reference),
            "identity": format_completion(runner.task.query),
            "garbage": "I would add an index.",
            "drop": format_completion("DROP TABLE users"),
            "other_task": format_completion(references[task_ids[(i + 1) % len(task_ids)]]),
        }
    corpus = [m["content"] for r in rows for m in r["prompt"]]
    corpus += [reply for replies in replies_of.values() for reply in replies.values()]
    tokenizer = build_tokenizer(corpus * 3, tmp / "tokenizer")

    dataset = RLHFDataset(str(parquet), tokenizer, config.data)
    assert len(dataset) == len(rows), (len(dataset), len(rows))  # verl drops rows it cannot read
    items = {}
    for i, row in enumerate(rows):
        item = dataset[i]
        assert item["raw_prompt"] == row["prompt"], i  # the CLI's rows are the function's, read as is
        assert item["extra_info"] == row["extra_info"] and item["data_source"] == "quill"
        assert item["reward_model"] == row["reward_model"]
        items[row["extra_info"]["task_id"]] = i

    samples, names = [], []
    for task_id, replies in replies_of.items():
        for name, reply in replies.items():
            samples.append((dataset[items[task_id]], reply))
            names.append((task_id, name, reply))
    data = batch_of(samples, tokenizer)
    prompt_width = data.batch["prompts"].shape[1]
    for k, (_, _, reply) in enumerate(names):
        ids = data.batch["responses"][k][data.batch["attention_mask"][k, prompt_width:].bool()]
        assert tokenizer.decode(ids, skip_special_tokens=True) == reply, reply  # the reward sees the reply

    worker = RewardLoopWorker(config)  # in the running loop, as in verl's Ray actor
    outputs = await worker.compute_score_batch(data)
    assert len(outputs) == len(names)
    checked = []
    for (task_id, name, reply), out in zip(names, outputs, strict=True):
        (want,) = reward.results([reply], [task_id])
        got = out["reward_score"]
        extra = out["reward_extra_info"]
        assert got == float(want.reward), (task_id, name, got, want.reward)
        assert extra["correct"] == (1.0 if want.correct else 0.0)
        assert extra["speedup"] == float(want.speedup or 0.0)
        checked.append({"task": task_id, "reply": name, "reward": got, "verdict": want.verdict.value})
    return {
        "engine": engine,
        "verl": verl.__version__,
        "rows": len(rows),
        "dataset": len(dataset),
        "scored_together": len(data),
        "checked": checked,
    }


if __name__ == "__main__":
    work = Path(tempfile.mkdtemp(prefix="quill-verl-"))
    try:
        print(json.dumps(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "sqlite", work))))
    finally:
        shutil.rmtree(work, ignore_errors=True)
