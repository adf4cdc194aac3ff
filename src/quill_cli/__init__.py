"""The ``quill`` command line (``quill --help``; ``python -m quill_cli``).

Commands: ``demo``, ``evaluate`` and ``tasks`` (the environment), ``generate`` and ``export``
(the data loop), ``bench`` and ``validate`` (the leaderboard), ``train`` (the trainers). See
:mod:`quill_cli.console` for the output and exit-code conventions every command follows.
"""

from quill_cli.main import build_parser, main

__all__ = ["build_parser", "main"]
