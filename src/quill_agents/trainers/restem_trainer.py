"""ReST-EM self-training on the Quill environment.

Singh et al., 2023, "Beyond Human Data: Scaling Self-Training for Problem-Solving with Language
Models" (ReST-EM): an expectation-maximization loop with a binary, verifiable reward.

* E-step: sample ``k`` rewrites per training task from the current policy, evaluate each with the
  environment, keep those with reward >= ``threshold`` (0.25, the 1.5x acceptance tier).
* M-step: fine-tune *from the base model* (not the previous policy, as the paper prescribes, to
  limit drift) on the kept rewrites plus the seed set.
* After each iteration the new policy is evaluated greedily on the test split; the loop stops when
  the mean test reward has not improved for ``patience`` iterations.
"""

from __future__ import annotations

import collections
import logging
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

from quill_agents.models import load_model, load_tokenizer
from quill_agents.policy import PolicyAgent
from quill_agents.trainers.common import (
    TrainingReport,
    load_model_and_tokenizer,
    observation_of,
    peak_memory,
    reset_peak_memory,
    resolve_suites,
    run_and_save,
    select_tasks,
    training_rows,
)
from quill_agents.trainers.restem_config import ReSTEMConfig
from quill_agents.trainers.rewards import EnvironmentReward
from quill_agents.trainers.sft_trainer import build_sft_trainer
from quill_env.prompt import build_messages, extract_sql, format_completion

logger = logging.getLogger(__name__)


def _policy(config: ReSTEMConfig, model: Any, tokenizer: Any, temperature: float) -> Any:
    return PolicyAgent(
        model,
        tokenizer=tokenizer,
        max_new_tokens=config.max_new_tokens,
        temperature=temperature,
        batch_size=config.generation_batch_size,
    )


def evaluate_policy(
    agent: Any, observations: Mapping[str, Mapping[str, str]], reward: EnvironmentReward
) -> dict[str, Any]:
    """Greedy actions of ``agent`` on every task; mean reward and verdict counts."""
    task_ids = list(observations)
    actions = agent.act_batch([observations[t] for t in task_ids])
    results = reward.score(task_ids, actions)
    rewards = [float(r.reward) for r in results]
    return {
        "mean_reward": statistics.fmean(rewards) if rewards else 0.0,
        "verdicts": dict(collections.Counter(r.verdict.value for r in results)),
        "tasks": len(task_ids),
    }


def e_step(
    agent: Any,
    observations: Mapping[str, Mapping[str, str]],
    reward: EnvironmentReward,
    samples_per_task: int,
    temperature: float,
    threshold: float,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Sample, evaluate and filter: the kept prompt-completion rows and the step's statistics."""
    task_ids = list(observations)
    samples = agent.generate([observations[t] for t in task_ids], samples_per_task, temperature)
    flat_ids = [t for t, group in zip(task_ids, samples) for _ in group]
    actions = [extract_sql(text) for group in samples for text in group]
    results = reward.score(flat_ids, actions)
    kept: dict[tuple[str, str], dict[str, Any]] = {}
    for task_id, action, result in zip(flat_ids, actions, results):
        key = (task_id, " ".join(action.split()).lower())
        if result.reward >= threshold and key not in kept:
            kept[key] = {
                "prompt": build_messages(observations[task_id]),
                "completion": [{"role": "assistant", "content": format_completion(action)}],
                "task_id": task_id,
                "reward": float(result.reward),
            }
    rewards = [float(r.reward) for r in results]
    stats = {
        "sampled": len(actions),
        "kept": len(kept),
        "kept_tasks": len({k[0] for k in kept}),
        "mean_reward": statistics.fmean(rewards) if rewards else 0.0,
        "verdicts": dict(collections.Counter(r.verdict.value for r in results)),
    }
    return list(kept.values()), stats


def train_restem(
    config: ReSTEMConfig,
    seed_rows: Sequence[Mapping[str, Any]] | None = None,
    *,
    reward: EnvironmentReward | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainingReport:
    """Run ReST-EM; each iteration's adapter goes to ``<output_dir>/iter_<i>``.

    Args:
        config: the run's configuration.
        seed_rows: the seed set (prompt-completion rows); the config's dataset or the suites'
            reference rewrites when None.
        reward: the environment reward (built from the config, and closed at the end, when None).
        callbacks: extra ``transformers`` callbacks for every M-step.

    Returns:
        The :class:`TrainingReport` (written to ``output_dir``); ``extra["iterations"]`` holds
        per-iteration E-step, M-step and test results, ``extra["best_adapter"]`` the adapter of
        the best iteration (None when no iteration beat the base model).
    """
    owned = reward is None
    reward = reward or EnvironmentReward(
        suites=config.suites,
        scale=config.scale,
        eval_options=config.eval_options(),
        workers=config.reward_workers,
        ray_address=config.reward_ray,
    )
    suites = resolve_suites(config.suites)
    train_obs = {
        t.id: observation_of(s, t, config.scale)
        for s, t in select_tasks(suites, config.split, config.task_ids)
    }
    test_obs = {t.id: observation_of(s, t, config.scale) for s, t in select_tasks(suites, config.test_split)}
    seed = list(seed_rows) if seed_rows is not None else training_rows(config, "sft")
    tokenizer = load_tokenizer(config.model, trust_remote_code=config.trust_remote_code)
    reset_peak_memory()
    start = time.perf_counter()
    try:
        policy = load_model(
            config.model,
            load_in_4bit=config.load_in_4bit,
            bf16=config.resolved_bf16(),
            trust_remote_code=config.trust_remote_code,
            for_training=False,
        )
        iterations: list[dict[str, Any]] = []
        best: float | None = None
        best_adapter: str | None = None
        if config.eval_base:
            base_eval = evaluate_policy(_policy(config, policy, tokenizer, 0.0), test_obs, reward)
            best = base_eval["mean_reward"]
            iterations.append({"iteration": 0, "test": base_eval})
        stale, steps = 0, 0
        losses: list[dict[str, float]] = []
        for i in range(1, config.iterations + 1):
            agent = _policy(config, policy, tokenizer, config.sample_temperature)
            kept, e_stats = e_step(
                agent, train_obs, reward, config.samples_per_task, config.sample_temperature, config.threshold
            )
            rows = kept + (seed if config.include_seed else [])
            record: dict[str, Any] = {"iteration": i, "e_step": e_stats}
            if not rows:
                record["stopped"] = "nothing to train on: no sample reached the threshold and no seed set"
                iterations.append(record)
                break
            m_config = config.m_step_config(i)
            del policy, agent
            model, _ = load_model_and_tokenizer(m_config)
            trainer, _, n = build_sft_trainer(
                m_config, rows, model=model, tokenizer=tokenizer, callbacks=callbacks
            )
            m_report = run_and_save(m_config, trainer, tokenizer, n)
            steps += m_report.steps
            losses += [{**entry, "iteration": i} for entry in m_report.losses]
            policy = trainer.model
            test = evaluate_policy(_policy(config, policy, tokenizer, 0.0), test_obs, reward)
            record.update(
                m_step={
                    "examples": n,
                    "steps": m_report.steps,
                    "seconds": m_report.train_seconds,
                    "losses": m_report.losses,
                },
                test=test,
                adapter=m_config.output_dir,
            )
            iterations.append(record)
            logger.info("ReST-EM iteration %d: kept %d, test reward %.3f", i, len(kept), test["mean_reward"])
            if best is None or test["mean_reward"] > best + config.min_delta:
                best, best_adapter, stale = test["mean_reward"], m_config.output_dir, 0
            else:
                stale += 1
                if stale >= config.patience:
                    record["stopped"] = f"no test improvement for {stale} iteration(s)"
                    break
    finally:
        if owned:
            reward.close()
    seconds = time.perf_counter() - start
    report = TrainingReport(
        algorithm=config.algorithm,
        config=config.to_dict(),
        output_dir=config.output_dir,
        steps=steps,
        examples=len(seed),
        train_seconds=round(seconds, 3),
        losses=losses,
        extra={"iterations": iterations, "best_adapter": best_adapter, "best_test_reward": best},
        **peak_memory(),
    )
    report.write()
    return report
