"""Training throughput: tokens/s and peak memory of SFT (LoRA, QLoRA) and GRPO steps.

Writes benchmarks/results/train_throughput.json. Each mode runs in its own process, so the peak
memory of one (process peak RSS on CPU, CUDA allocator peak on a GPU) does not leak into the next.

    .venv/bin/python benchmarks/train_throughput.py                     # tiny random Qwen2, CPU
    .venv/bin/python benchmarks/train_throughput.py --arch qwen2.5-7b   # 7B shapes, needs a GPU

``--arch qwen2.5-7b`` builds a *randomly initialized* model from the Qwen2.5-7B config values
written below (no download): the figures are the cost of a step at 7B scale, not of a useful
model. The original research plan budgeted QLoRA fine-tuning of the 7B model on ~6,000 examples
(after augmentation) at 4-8 hours on one RTX 4090 (24 GB); compare ``sft_qlora`` tokens/s with
that: 6,000 examples x ~900 tokens x 3 epochs = ~16M tokens, i.e. 4-8 h needs ~560-1,100 tokens/s.
Tokens/s here counts prompt and completion tokens processed per second of ``trainer.train()``,
first (warm-up) step included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from quill_agents.trainers.tiny import TINY_SHAPE, build_tiny_model

OUT = Path(__file__).resolve().parent / "results" / "train_throughput.json"

QWEN25_7B = {
    # config.json of Qwen/Qwen2.5-7B(-Instruct / -Coder-7B-Instruct)
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
MODES = ("sft_lora", "sft_qlora", "grpo")


def build_model(arch: str, path: Path) -> None:
    """A byte-level BPE tokenizer trained on the shop suite and a random Qwen2 model of ``arch``."""
    import torch

    if arch == "qwen2.5-7b":
        build_tiny_model(path, shape=QWEN25_7B, dtype=torch.bfloat16)
    else:
        build_tiny_model(path)


def run_mode(mode: str, model_dir: str, steps: int, arch: str, threads: int | None) -> dict:
    """One measurement, in this process."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from quill_agents.trainers import GRPOTrainConfig, SFTTrainConfig, train_grpo, train_sft

    cpu = not torch.cuda.is_available()
    common = dict(
        model=model_dir,
        output_dir=tempfile.mkdtemp(prefix=f"quill-bench-{mode}-"),
        suites=["shop"],
        scale="small",
        max_steps=steps,
        logging_steps=1,
        use_cpu=cpu,
        bf16=not cpu,
        gradient_checkpointing=arch == "qwen2.5-7b",
        report_to="none",
    )
    if mode.startswith("sft"):
        config = SFTTrainConfig(
            **common,
            per_device_train_batch_size=4,
            gradient_accumulation_steps=1,
            max_length=1024,
            load_in_4bit=mode == "sft_qlora",
        )
        report = train_sft(config)
    else:
        config = GRPOTrainConfig(
            **common,
            per_device_train_batch_size=8,
            gradient_accumulation_steps=1,
            num_generations=4,
            max_completion_length=64,
            temperature=1.0,
            reward_workers=2,
            num_variants=8,
            task_ids=["shop/coupon_lookup", "shop/orders_of_email"],
        )
        report = train_grpo(config)
    step_times = [h["step_time"] for h in report.log_history if "step_time" in h]
    return {
        "mode": mode,
        "steps": report.steps,
        "train_seconds": report.train_seconds,
        "seconds_per_step": round(report.train_seconds / max(report.steps, 1), 3),
        "tokens": report.tokens,
        "tokens_per_second": report.tokens_per_second,
        "peak_memory_bytes": report.peak_memory_bytes,
        "peak_memory_gib": round(report.peak_memory_bytes / 2**30, 3),
        "peak_memory_kind": report.peak_memory_kind,
        "trainable_parameters": report.parameters.get("trainable"),
        "total_parameters": report.parameters.get("total"),
        "grpo_step_time": step_times or None,
        "completions_scored": report.extra.get("completions_scored"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="tiny", choices=["tiny", "qwen2.5-7b"])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (CPU); default: torch's")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(run_mode(args.worker, args.model_dir, args.steps, args.arch, args.threads)))
        return

    import torch
    import transformers
    import trl

    with tempfile.TemporaryDirectory(prefix="quill-bench-model-") as model_dir:
        start = time.perf_counter()
        build_model(args.arch, Path(model_dir))
        build_seconds = time.perf_counter() - start
        results = []
        for mode in args.modes:
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                mode,
                "--model-dir",
                model_dir,
                "--steps",
                str(args.steps),
            ]
            cmd += ["--arch", args.arch] + (["--threads", str(args.threads)] if args.threads else [])
            proc = subprocess.run(
                cmd, capture_output=True, text=True, env={**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1"}
            )
            if proc.returncode != 0:
                results.append({"mode": mode, "error": proc.stderr[-2000:]})
            else:
                results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1])[:400])
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    payload = {
        "arch": args.arch,
        "model_shape": QWEN25_7B if args.arch == "qwen2.5-7b" else TINY_SHAPE,
        "device": device,
        "cpu_count": os.cpu_count(),
        "torch_threads": args.threads or torch.get_num_threads(),
        "load_average_at_end": os.getloadavg(),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
        },
        "steps": args.steps,
        "model_build_seconds": round(build_seconds, 2),
        "results": results,
        "plan_budget": (
            "original plan: QLoRA SFT of Qwen2.5-7B on ~6,000 examples in 4-8 h on one RTX 4090 "
            "(~16M tokens at 3 epochs x ~900 tokens => needs ~560-1,100 tokens/s)"
        ),
        "notes": "tokens/s includes the first step; CPU peak memory is the process peak RSS (imports included)",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
