"""Task authoring: how the shipped suites' slow queries and tasks are made and multiplied.

:mod:`~quill_env.authoring.querygen` writes "junior developer" slow queries from a schema, one
family per anti-pattern; :mod:`~quill_env.authoring.taskgen` keeps the ones whose reference
rewrite earns its tier in the environment; :mod:`~quill_env.authoring.augment` renames a suite's
tables and columns consistently (its name pools are the data file ``name_pools.json``). The
environment itself (:mod:`quill_env.env`, scoring, backends, suites) never imports this package;
the data loop, the trainers' exports and ``scripts/generate_tasks.py`` do.
"""
