"""Third-party messages that every training run prints and that say nothing about the run.

Each is filtered by :func:`quiet_third_party_noise` (called by every trainer before it imports
TRL) and explained here:

- ``Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'``:
  bitsandbytes, imported by TRL and peft, looks for an optional Hub kernel on CPUs with
  AVX512-BF16 at import time. Without the ``kernels`` package it uses its own CPU code, which
  matters only for QLoRA on a CPU; nothing is missing.
- ``FutureWarning: `is_gradient_checkpointing` is deprecated``: transformers 5 renamed the
  property to ``is_activation_checkpointing``; TRL and peft still read the old name.
- ``'pin_memory' argument is set as true but no accelerator is found``: does not occur, since
  :meth:`~quill_agents.trainers.common.TrainConfig.trl_kwargs` turns pinning off without an
  accelerator; likewise the ``gradient_checkpointing`` deprecation, since it passes the new name
  ``activation_checkpointing``.

Only these exact messages are dropped; every other warning and log record is left alone.
"""

from __future__ import annotations

import logging
import warnings

BITSANDBYTES_LOGGER = "bitsandbytes.backends.cpu.ops"
"""The logger of bitsandbytes' CPU backend (it logs the ``kernels`` message)."""


class _DropMessages(logging.Filter):
    """Drops log records whose message contains one of ``needles``."""

    def __init__(self, *needles: str) -> None:
        super().__init__()
        self.needles = needles

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(n in text for n in self.needles)


_KERNELS_FILTER = _DropMessages("kernels-community")


def quiet_third_party_noise() -> None:
    """Filter the third-party messages listed in this module's docstring (idempotent)."""
    logger = logging.getLogger(BITSANDBYTES_LOGGER)
    if _KERNELS_FILTER not in logger.filters:
        logger.addFilter(_KERNELS_FILTER)
    warnings.filterwarnings(
        "ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning
    )


__all__ = ["BITSANDBYTES_LOGGER", "quiet_third_party_noise"]
