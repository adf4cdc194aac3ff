"""Trainers end to end on a tiny random Qwen2 model (CPU, no downloads).

A session fixture trains a byte-level BPE tokenizer on the shop suite's SQL and builds a
2-layer, 64-wide Qwen2 model with a tool-calling chat template. SFT, DPO and ReST-EM run on it
as is. For the online RL trainers a "warm" copy is first taught, in a few seconds, to answer one
short prompt with the slow query, the reference rewrite or a ``submit`` tool call, so that the
environment's rewards differ within a group (a purely random model scores -1.0 everywhere, which
gives zero advantages and no update).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("peft")

from quill_agents.leaderboard import AgentSpec, BenchConfig, run_bench  # noqa: E402
from quill_agents.trainers import (  # noqa: E402
    DPOTrainConfig,
    EnvironmentReward,
    GRPOTrainConfig,
    ReSTEMConfig,
    RLOOTrainConfig,
    SFTTrainConfig,
    train_dpo,
    train_grpo,
    train_restem,
    train_rloo,
    train_sft,
)
from quill_agents.trainers.rewards import TOOL_INSTRUCTIONS, SQLToolEnvironment  # noqa: E402
from quill_agents.trainers.tiny import build_tiny_model  # noqa: E402
from quill_env import EvalOptions, TaskRunner  # noqa: E402
from quill_env.prompt import format_completion  # noqa: E402
from quill_env.reward import DEFAULT_VERDICT_REWARDS  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")

TASK = "shop/coupon_lookup"
SHORT_PROMPT = [{"role": "user", "content": f"Rewrite the slow query of {TASK}."}]
EVAL = {"num_variants": 2}


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny models run several times faster on one thread than on two busy cores.

    Session-scoped so that it is in place before the session fixtures train the warm model.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, shop_suite):
    from transformers.utils import get_json_schema

    env = SQLToolEnvironment()
    schemas = [json.dumps({"type": "function", "function": get_json_schema(f)}) for f in tool_methods(env)]
    path = tmp_path_factory.mktemp("tiny-qwen2")
    return build_tiny_model(path, suite=shop_suite, extra_texts=[TOOL_INSTRUCTIONS, *schemas])


@pytest.fixture(scope="session")
def warm_model(tiny_model, tmp_path_factory, shop_suite):
    """The tiny model taught to answer SHORT_PROMPT with the query, the reference or a submit call."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    task = shop_suite.task(TASK)
    tools = tool_methods(SQLToolEnvironment())
    tool_prompt = [{"role": "user", "content": SHORT_PROMPT[0]["content"] + TOOL_INSTRUCTIONS}]
    batches = []
    for prompt, with_tools in ((SHORT_PROMPT, False), (tool_prompt, True)):
        kwargs = {"tools": tools} if with_tools else {}
        head = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True, **kwargs)
        texts = []
        for sql in (task.query, task.reference):
            if with_tools:
                call = {"type": "function", "function": {"name": "submit", "arguments": {"sql": sql}}}
                answer = {"role": "assistant", "content": "", "tool_calls": [call]}
            else:
                answer = {"role": "assistant", "content": format_completion(sql)}
            texts.append(tokenizer.apply_chat_template([*prompt, answer], tokenize=False, **kwargs))
        batch = tokenizer(texts, return_tensors="pt", padding=True)
        labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
        labels[:, : len(tokenizer(head).input_ids)] = -100  # learn the answers, not the prompt
        batches.append((batch, labels))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    model.train()
    for _ in range(80):
        for batch, labels in batches:
            model(**batch, labels=labels).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # a plateau-free warm-up for any tokenizer
            optimizer.step()
            optimizer.zero_grad()
    path = tmp_path_factory.mktemp("warm-qwen2")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def tool_methods(env):
    """The tools TRL exposes: the public methods, in alphabetical order."""
    return [env.dry_run, env.query_plan, env.submit]


class Snapshot:
    """A callback that records the trainable parameters when training begins and ends."""

    def __init__(self):
        from transformers import TrainerCallback

        outer = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kw):
                outer.before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

            def on_train_end(self, args, state, control, model=None, **kw):
                outer.after = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

        self.callback = _Callback()

    def changed(self) -> bool:
        assert self.before and self.before.keys() == self.after.keys()
        return any(not torch.equal(self.before[n], self.after[n]) for n in self.before)


def common(model, out, **kw):
    values = dict(
        model=model,
        output_dir=str(out),
        suites=["shop"],
        scale="small",
        max_steps=2,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        logging_steps=1,
        learning_rate=1e-2,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        max_length=1024,
        report_to="none",
    )
    values.update(kw)
    return values


def check_report(out, algorithm, steps):
    report = json.loads((out / "training_report.json").read_text())
    assert report["algorithm"] == algorithm
    assert report["steps"] == steps
    assert report["train_seconds"] > 0 and report["peak_memory_bytes"] > 0
    assert report["config"]["output_dir"] == str(out)
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    return report


ENV_REWARDS = set(DEFAULT_VERDICT_REWARDS.values())


def check_env_rewards(history, shop_suite, n_recompute=3):
    """Every recorded reward is the environment's: recompute some through a fresh TaskRunner."""
    assert history
    for h in history:
        if h["verdict"] != "improved":
            assert h["reward"] == DEFAULT_VERDICT_REWARDS[h["verdict"]]
    runner = TaskRunner.from_suite(shop_suite, shop_suite.task(TASK), "small", EvalOptions(**EVAL))
    seen = set()
    for h in history:
        if h["verdict"] not in seen and len(seen) < n_recompute:
            seen.add(h["verdict"])
            result = runner.evaluate(h["action"])
            assert (result.verdict.value, result.reward) == (h["verdict"], h["reward"])
    runner.close()


def test_sft_lora(tiny_model, tmp_path):
    snap = Snapshot()
    report = train_sft(SFTTrainConfig(**common(tiny_model, tmp_path / "sft")), callbacks=[snap.callback])
    assert snap.changed()
    saved = check_report(tmp_path / "sft", "sft", 2)
    assert [entry["step"] for entry in saved["losses"]] == [1, 2]
    assert report.tokens and report.tokens_per_second > 0
    assert 0 < report.parameters["trainable"] < report.parameters["total"]


def test_a_trained_adapter_gets_quills_model_card_with_its_leaderboard_results(tiny_model, tmp_path):
    """Not PEFT's blank template: the card names the base model and the training run, and every
    ``quill bench`` of the model adds its leaderboard row."""
    out = tmp_path / "sft"
    train_sft(SFTTrainConfig(**common(tiny_model, out)))
    card = (out / "README.md").read_text()
    assert card.startswith("---\nbase_model: ") and "trained with Quill's `sft` trainer" in card
    assert "More Information Needed" not in card  # PEFT's template
    assert "Not benchmarked yet" in card and "- steps: 2" in card
    spec = AgentSpec("policy", {"path": str(out), "max_new_tokens": 16}, label="policy:sft")
    config = BenchConfig(agents=[spec], suites=["shop"], split="test", scale="small", limit=2, workers=0)
    result = run_bench(config, run="card-test")
    card = (out / "README.md").read_text()
    row = next(line for line in card.splitlines() if line.endswith("| card-test |"))
    summary = result.agents[0].summary
    assert row.startswith("| shop | test | small | SQLite") and f"| {summary['tasks']} |" in row
    assert f"{100 * summary['correct']:.1f}%" in row and f"{100 * summary['fast_p']['2']:.1f}% |" in row
    assert "Not benchmarked yet" not in card
    run_bench(config, run="card-test")  # the same run again replaces its row
    assert (out / "README.md").read_text().count("| card-test |") == 1


def test_sft_completion_only_and_export_rows(tiny_model, tmp_path, shop_suite):
    """The export format trains too; only completion tokens carry loss."""
    from quill_agents.trainers.sft_trainer import build_sft_trainer

    task = shop_suite.task(TASK)
    row = {
        "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        "completion": [{"role": "assistant", "content": format_completion(task.reference)}],
        "task_id": TASK,
    }
    path = tmp_path / "export.jsonl"
    path.write_text(json.dumps(row) + "\n")
    config = SFTTrainConfig(**common(tiny_model, tmp_path / "out", dataset=str(path), max_steps=1))
    trainer, _, n = build_sft_trainer(config)
    assert n == 1
    example = trainer.train_dataset[0]
    supervised = sum(label != -100 for label in example["labels"])
    assert 0 < supervised < len(example["input_ids"])


def test_dpo_lora(tiny_model, tmp_path):
    snap = Snapshot()
    report = train_dpo(DPOTrainConfig(**common(tiny_model, tmp_path / "dpo")), callbacks=[snap.callback])
    assert snap.changed()
    check_report(tmp_path / "dpo", "dpo", 2)
    assert len(report.losses) == 2 and report.examples >= 1


@pytest.mark.slow
def test_qlora_sft_on_cpu(tiny_model, tmp_path):
    pytest.importorskip("bitsandbytes")
    snap = Snapshot()
    config = SFTTrainConfig(
        **common(tiny_model, tmp_path / "qlora", load_in_4bit=True, max_steps=1, task_ids=[TASK])
    )
    train_sft(config, callbacks=[snap.callback])
    assert snap.changed()
    saved = check_report(tmp_path / "qlora", "sft", 1)
    assert saved["config"]["load_in_4bit"] is True


def rl_rows():
    return [{"prompt": SHORT_PROMPT, "task_id": TASK}]


def rl_common(model, out, **kw):
    values = dict(
        task_ids=[TASK],
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=64,
        num_variants=EVAL["num_variants"],
    )
    values.update(kw)
    return common(model, out, **values)


def test_grpo_single_turn_rewards_are_the_environments(warm_model, tmp_path, shop_suite):
    snap = Snapshot()
    reward = EnvironmentReward(suites=["shop"], scale="small", eval_options=EVAL, workers=2)
    try:
        config = GRPOTrainConfig(**rl_common(warm_model, tmp_path / "grpo"))
        report = train_grpo(config, rl_rows(), reward=reward, callbacks=[snap.callback])
    finally:
        reward.close()
    history = list(reward.history)
    assert len(history) == 2 * 4 and reward.calls == 2
    check_env_rewards(history, shop_suite)
    assert len({h["reward"] for h in history}) > 1, "the warm model should give the group varied rewards"
    assert snap.changed()
    saved = check_report(tmp_path / "grpo", "grpo", 2)
    for logged in saved["rewards"]:
        rewards = [h["reward"] for h in history if h["call"] == logged["step"]]
        assert math.isclose(logged["rewards/quill_env/mean"], sum(rewards) / len(rewards), abs_tol=1e-6)
        shares = {k: v for k, v in logged.items() if k.startswith("quill/verdict/")}
        assert math.isclose(sum(shares.values()), 1.0, abs_tol=1e-6)
    assert sum(report.extra["verdict_counts"].values()) == 8


@pytest.mark.parametrize(
    ("reward_workers", "environment"), [(0, "SQLToolEnvironment"), (2, "AsyncSQLToolEnvironment")]
)
def test_grpo_multi_turn_environment_factory(warm_model, tmp_path, reward_workers, environment):
    snap = Snapshot()
    rows = [{"prompt": SHORT_PROMPT, "task_id": TASK}]
    # a submit call with the reference takes about 90 tokens
    config = GRPOTrainConfig(
        **rl_common(
            warm_model,
            tmp_path / "mt",
            multi_turn=True,
            max_tool_calling_iterations=1,
            max_completion_length=128,
            temperature=0.7,
            reward_workers=reward_workers,
        )
    )
    report = train_grpo(config, rows, callbacks=[snap.callback])
    check_report(tmp_path / "mt", "grpo", 2)
    submitted = [r["quill/submitted"] for r in report.rewards]
    assert max(submitted) > 0, "the warm model submits through the tool"
    for logged in report.rewards:
        # get_reward is the reward; the zero-weight metrics function reports the same values
        assert math.isclose(logged["reward"], logged[f"rewards/{environment}/mean"], abs_tol=1e-6)
        assert math.isclose(logged["rewards/quill_verdicts/mean"], logged["reward"], abs_tol=1e-6)
    if reward_workers:  # the workers' reward scored every episode, once: 2 steps of 4 rollouts
        assert sum(report.extra["verdict_counts"].values()) == 8
    assert snap.changed()


def test_tool_environment_tools(shop_suite):
    from quill_agents.trainers.rewards import tool_environment_factory

    env = tool_environment_factory(["shop"], "small", EVAL)()
    assert env.reset(task_id=TASK) == TOOL_INSTRUCTIONS
    task = shop_suite.task(TASK)
    assert (
        "idx" in env.query_plan(task.reference).lower() or "index" in env.query_plan(task.reference).lower()
    )
    assert env.dry_run(task.reference).startswith("verdict=improved")
    failed = env.dry_run("SELECT FROM orders WHERE")
    assert failed.startswith("verdict=") and "improved" not in failed
    assert env.get_reward() == -1.0  # nothing submitted
    env.reset(task_id=TASK)
    env.submit(format_completion(task.reference))
    assert env.get_reward() > 0.25


def test_rloo(warm_model, tmp_path, shop_suite):
    snap = Snapshot()
    reward = EnvironmentReward(suites=["shop"], scale="small", eval_options=EVAL, workers=0)
    config = RLOOTrainConfig(**rl_common(warm_model, tmp_path / "rloo"))
    report = train_rloo(config, rl_rows(), reward=reward, callbacks=[snap.callback])
    check_env_rewards(list(reward.history), shop_suite)
    check_report(tmp_path / "rloo", "rloo", 2)
    assert len(report.rewards) == 2
    assert snap.changed()


def test_environment_reward_on_random_model_output(tiny_model, shop_suite):
    """A random model writes garbage; the reward function returns the environment's verdicts."""
    from quill_agents.policy import PolicyAgent
    from quill_agents.trainers.common import observation_of

    agent = PolicyAgent(tiny_model, max_new_tokens=24, temperature=1.0, batch_size=2)
    obs = observation_of(shop_suite, shop_suite.task(TASK), "small")
    completions = [
        [{"role": "assistant", "content": text}] for text in agent.generate([obs], num_samples=3)[0]
    ]
    completions.append([{"role": "assistant", "content": format_completion(shop_suite.task(TASK).reference)}])
    metrics = {}
    reward = EnvironmentReward(suites=["shop"], scale="small", eval_options=EVAL, workers=0)
    values = reward(
        prompts=[None] * 4, completions=completions, task_id=[TASK] * 4, log_metric=metrics.__setitem__
    )
    assert all(v in ENV_REWARDS for v in values[:3]) and -1.0 in values[:3]
    assert values[3] > 0.25
    assert metrics["quill/verdict/improved"] == 0.25 and metrics["quill/correct"] == 0.25
    check_env_rewards(list(reward.history), shop_suite)
    reward.close()


def test_policy_agent_actions_are_evaluated(tiny_model, shop_suite):
    import gymnasium as gym

    from quill_agents.policy import PolicyAgent
    from quill_agents.protocol import Agent

    agent = PolicyAgent(tiny_model, max_new_tokens=16, batch_size=2)
    assert isinstance(agent, Agent)
    env = gym.make("Quill-v1", suite="shop", split="test", scale="small", num_variants=2)
    observations = []
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        observations.append(obs)
    actions = agent.act_batch(observations)
    assert len(actions) == 3 and all(isinstance(a, str) for a in actions)
    assert agent.act(observations[0]) == actions[0]  # greedy decoding is deterministic
    _, _, terminated, _, info = env.step(actions[-1])
    assert terminated and info["verdict"] in {v for v in DEFAULT_VERDICT_REWARDS} | {"improved"}
    env.close()


def test_restem_two_iterations(tiny_model, tmp_path):
    out = tmp_path / "restem"
    config = ReSTEMConfig(
        **common(tiny_model, out, task_ids=["shop/coupon_lookup", "shop/orders_of_email"]),
        iterations=2,
        patience=2,
        samples_per_task=2,
        max_new_tokens=12,
        reward_workers=0,
        num_variants=2,
    )
    report = train_restem(config)
    iterations = report.extra["iterations"]
    assert [it["iteration"] for it in iterations] == [0, 1, 2]
    for it in iterations[1:]:
        assert it["e_step"]["sampled"] == 2 * 2
        assert sum(it["e_step"]["verdicts"].values()) == 4
        assert sum(it["test"]["verdicts"].values()) == it["test"]["tasks"] == 6
        assert it["m_step"]["steps"] == 2 and it["m_step"]["examples"] >= 2
        from safetensors.torch import load_file

        weights = load_file(f"{it['adapter']}/adapter_model.safetensors")
        assert any(float(w.abs().sum()) > 0 for k, w in weights.items() if "lora_B" in k)  # B starts at zero
    saved = json.loads((out / "training_report.json").read_text())
    assert saved["algorithm"] == "restem" and saved["steps"] == 4


def test_cli_train_parses_and_runs(tiny_model, tmp_path):
    from quill_cli import main

    out = tmp_path / "cli"
    code = main(
        [
            "train",
            "sft",
            "--model",
            tiny_model,
            "--output-dir",
            str(out),
            "--suites",
            "shop",
            "--scale",
            "small",
            "--task-ids",
            TASK,
            "--max-steps",
            "1",
            "--use-cpu",
            "true",
            "--bf16",
            "false",
            "--gradient-checkpointing",
            "false",
            "--trl-args",
            "warmup_steps=0",
        ]
    )
    assert code == 0
    saved = check_report(out, "sft", 1)
    assert saved["config"]["trl_args"] == {"warmup_steps": 0}


def test_a_run_shorter_than_logging_steps_reports_its_loss(tiny_model, tmp_path):
    """max_steps < logging_steps used to give ``"losses": []`` and ``final loss None``."""
    out = tmp_path / "short"
    report = train_sft(SFTTrainConfig(**common(tiny_model, out, max_steps=1, logging_steps=10)))
    assert [e["step"] for e in report.losses] == [1]
    assert math.isfinite(report.losses[0]["loss"]) and report.losses[0]["loss"] > 0
    assert json.loads((out / "training_report.json").read_text())["losses"] == report.losses


def test_trl_kwargs_log_the_last_step_and_skip_pinning_on_cpu():
    config = SFTTrainConfig(max_steps=3, logging_steps=10, use_cpu=True, bf16=False)
    kwargs = config.trl_kwargs()
    assert kwargs["logging_steps"] == 3 and kwargs["dataloader_pin_memory"] is False
    assert SFTTrainConfig(max_steps=-1, logging_steps=10, bf16=False).trl_kwargs()["logging_steps"] == 10
    trl_config = config.trl_config()
    assert trl_config.gradient_checkpointing is True and trl_config.logging_steps == 3


def test_cli_train_prints_no_third_party_noise(tiny_model, tmp_path):
    """``No module named 'kernels'``, FutureWarnings and pin_memory warnings used to come with every run."""
    out = tmp_path / "quiet"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run(
        [
            sys.executable, "-m", "quill_cli", "train", "sft", "--model", tiny_model, "--output-dir", str(out),
            "--suites", "shop", "--scale", "small", "--task-ids", TASK, "--max-steps", "1",
            "--use-cpu", "true", "--bf16", "false",
        ],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for noise in ("kernels", "FutureWarning", "pin_memory", "is deprecated"):
        assert noise not in proc.stderr, proc.stderr
    assert re.search(r"loss\s*│\s*\d+\.\d+ -> \d+\.\d+", proc.stdout), proc.stdout
    assert check_report(out, "sft", 1)["losses"]


def test_importing_the_cli_stays_light():
    code = (
        "import sys, quill_env, quill_cli.cmd_train, quill_agents.trainers\n"
        "from quill_cli import build_parser; build_parser()\n"
        "heavy = [m for m in ('torch', 'trl', 'transformers', 'peft', 'datasets') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_configs_validate():
    from quill_env.errors import ConfigError

    with pytest.raises(ConfigError):
        GRPOTrainConfig(per_device_train_batch_size=3, gradient_accumulation_steps=1, num_generations=2)
    with pytest.raises(ConfigError):
        SFTTrainConfig(lora_dropout=1.5)
    assert SFTTrainConfig(load_in_4bit=True, use_lora=False).use_lora is True
