"""The rewrite rules, one module per rule or small family of related rules.

:mod:`~quill_agents.heuristic.rewrites` orders them into ``RULES`` and ``ALTERNATIVES``;
:mod:`.base` holds the :class:`~quill_agents.heuristic.rules.rule_context.Context` every rule takes.
"""
