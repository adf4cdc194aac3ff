"""Collection rules for the whole checkout (the tests' own fixtures live in ``tests/conftest.py``).

Modules that import an optional framework at the top (and say which extra to install when it is
missing) have their doctests collected only where it is installed: the DuckDB and PostgreSQL
backends, the verifiers taskset, and the check scripts that tests run in another interpreter
(``tests/interpreters.py``), which are never collected here.
"""

import importlib.util

OPTIONAL = {
    "src/quill_env/backends/duckdb.py": "duckdb",
    "src/quill_env/backends/postgres.py": "psycopg",
    "src/quill_env/backends/pg_server.py": "psycopg",
    "src/quill_env/backends/pg_catalog.py": "psycopg",
    "src/quill_env/backends/pg_gate.py": "pglast",
    "src/quill_verifiers/__init__.py": "verifiers",
}

collect_ignore = [path for path, module in OPTIONAL.items() if importlib.util.find_spec(module) is None]
collect_ignore += ["tests/verifiers_check.py", "tests/openenv_check.py", "tests/verl_check.py"]
