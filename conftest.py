"""Collection rules for the whole checkout (the tests' own fixtures live in ``tests/conftest.py``).

The DuckDB backend module imports ``duckdb`` at the top and says which extra to install when it
is missing; its doctests are collected only where the extra is installed.
"""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("duckdb") else ["src/quill_env/backends/duckdb.py"]
