"""Grow a verified dataset offline, then export it for TRL (SFT + DPO, augmented ~4x).

The loop draws "junior developer" slow queries from the procedural generator, asks the heuristic
agent for optimizations, keeps what the environment verifies with reward >= 0.25 and appends it
to a resumable store; rerunning the script continues where it stopped.

Usage: python examples/generate_dataset.py [OUT_DIR] [TARGET]
"""

import sys

from quill_agents.export import ExportConfig, export
from quill_agents.generate import GenerateConfig, generate

out = sys.argv[1] if len(sys.argv) > 1 else "outputs/dataset"
target = int(sys.argv[2]) if len(sys.argv) > 2 else 30

stats = generate(GenerateConfig(out=out, target=target, suites=("shop", "ecommerce"), scales=("small",), seed=0))
print(f"kept {stats.kept} verified examples after {stats.draws} draws")
report = export(out, f"{out}/export", ExportConfig(multiplier=2))
print(f"SFT rows: {report.sft_rows}, DPO pairs: {report.dpo_rows} -> {out}/export")
