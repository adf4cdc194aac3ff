"""The one dialect that Quill's own SQL text is written in.

Suites are authored once, in SQLite's SQL (``suites/*/suite.json`` may say otherwise with a
``"dialect"`` key); every other engine runs them ported by its backend
(:meth:`quill_env.backends.base.Backend.port`). Engine-neutral code that parses or renders suite
text, or the agents' text, names this constant rather than an engine, so that a grep for an
engine's name outside its backend finds nothing a second engine would need to change.
"""

from __future__ import annotations

SUITE_DIALECT = "sqlite"
"""The sqlglot dialect of suite text (queries, references, DDL) and of the agents' rewrites."""
