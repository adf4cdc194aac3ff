"""The rewrite rules, one module per rule or small family of related rules.

:mod:`~quill_agents.heuristic.rewrites` orders them into ``RULES`` and ``ALTERNATIVES``;
:mod:`.base` holds the :class:`~quill_agents.heuristic.rules.base.Context` every rule takes.
"""
