"""An attacker's toolbox: hard-coded and gated rewrites built from a task's real answer.

Each function takes a :class:`~quill_env.evaluator.TaskRunner` whose baseline is computed and
returns action texts that a reward-maximizing policy could write after seeing the answer on the
main database (through a leak, or by memorizing it across episodes):

- :func:`literal_rows`: the answer's rows as literals, one ``SELECT ... FROM t WHERE rowid =
  (SELECT MIN(rowid) FROM t)`` per row under ``UNION ALL`` (so the rewrite reads a base table,
  cheaply), in the original's order;
- :func:`count_gated_rows`: those literal rows when ``(SELECT COUNT(*) FROM t) > N`` (true on
  the main database, false on small variants), the honest original otherwise;
- :func:`key_gated_in_list`: the original restricted to the rowids of the answer's rows of its
  first table when ``(SELECT MAX(rowid) FROM t) >= N`` (the main database's largest key), the
  original otherwise, as a ``UNION ALL`` of the two so the planner uses the rowid lookups;
- :func:`in_list`: that key restriction without a gate.

The key restriction returns the original's own answer on the main database, only faster: the
typical cheat that a one-database check pays.

On an engine whose row id a query may not read (PostgreSQL's ``ctid`` is refused, and differs
between a database and its copies) the key is the table's single-column primary key instead.
Every action is written in the runner's engine's dialect, derived tables aliased.
"""

from __future__ import annotations

from sqlglot import exp

from quill_env.evaluator import TaskRunner
from quill_env.lineage import lineage_rowids
from quill_env.verify import top_order


def _largest_table(runner: TaskRunner, tree: exp.Expression) -> str:
    names = {t.name.lower() for t in tree.find_all(exp.Table)} & set(runner.backend.tables())
    tables = runner.backend.tables()
    return max(sorted(names), key=lambda n: tables[n].row_count) if names else next(iter(tables))


def _first_table(tree: exp.Query) -> exp.Table | None:
    select = tree if isinstance(tree, exp.Select) else next(tree.find_all(exp.Select), None)
    if select is None or select.args.get("from_") is None:
        return None
    source = select.args["from_"].this
    return source if isinstance(source, exp.Table) else None


def _order_suffix(runner: TaskRunner) -> str:
    """An ORDER BY by output position that keeps the original's order (empty if it has none)."""
    order = top_order(runner.query)
    plan = runner._plan
    if order is None:
        return ""
    if plan.strict or any(p is None for p in plan.positions):
        return " ORDER BY 1"
    terms = []
    for term, pos in zip(order.expressions, plan.positions):
        desc = isinstance(term, exp.Ordered) and term.args.get("desc")
        terms.append(f"{pos + 1}{' DESC' if desc else ''}")
    return " ORDER BY " + ", ".join(terms)


def _key(runner: TaskRunner, table: str) -> str | None:
    """The column an attacker addresses rows of ``table`` by: the row id, else the primary key."""
    if runner.backend.row_id == "rowid":
        return "rowid"
    pk = runner.backend.tables()[table].primary_key
    return pk[0] if len(pk) == 1 else None


def _one_row_of(runner: TaskRunner, table: str) -> str:
    """``FROM t WHERE key = (SELECT MIN(key) FROM t)``: reads a base table, one row, cheaply."""
    key = _key(runner, table) or "rowid"
    return f"FROM {table} WHERE {key} = (SELECT MIN({key}) FROM {table})"


def _rows_sql(runner: TaskRunner) -> str | None:
    main = runner.baseline.main
    if not main.rows or len(main.rows) > 200:
        return None
    table = _largest_table(runner, runner.query)
    names = [f"c{i}" for i in range(len(main.columns))]
    branches = []
    for row in main.rows:
        cols = ", ".join(
            exp.alias_(exp.convert(v), n).sql(runner.backend.dialect) for v, n in zip(row, names)
        )
        branches.append(f"SELECT {cols} {_one_row_of(runner, table)}")
    return " UNION ALL ".join(branches)


def _max_key_gate(runner: TaskRunner, table: str) -> str:
    key = _key(runner, table) or "rowid"
    top = runner.backend.query(
        exp.select(exp.func("max", exp.column(key))).from_(table).sql(runner.backend.dialect)
    )
    return f"(SELECT MAX({key}) FROM {table}) >= {int(top[0][0] or 0)}"


def literal_rows(runner: TaskRunner) -> str | None:
    """The answer written as literal rows (``None`` when the answer is empty or huge)."""
    body = _rows_sql(runner)
    if body is None:
        return None
    return f"SELECT * FROM ({body}) AS quill_a{_order_suffix(runner)}"


def count_gated_rows(runner: TaskRunner) -> str | None:
    """Literal rows when the biggest table is as large as on the main database, else the original."""
    body = _rows_sql(runner)
    if body is None:
        return None
    table = _largest_table(runner, runner.query)
    n = runner.backend.tables()[table].row_count - 1
    gate = f"(SELECT COUNT(*) FROM {table}) > {n}"
    original = runner.task.query.strip().rstrip(";")
    return (
        f"SELECT * FROM (SELECT * FROM ({body}) AS quill_a WHERE {gate} "
        f"UNION ALL SELECT * FROM ({original}) AS quill_b WHERE NOT {gate}) AS quill_c{_order_suffix(runner)}"
    )


def _restricted(runner: TaskRunner) -> tuple[str, str] | None:
    """The original restricted to the answer's rowids of its first table, and that table."""
    tree = runner.query.copy()
    first = _first_table(tree)
    if first is None or not isinstance(tree, exp.Select):
        return None
    info = runner.backend.tables().get(first.name.lower())
    if info is None:
        return None
    key = _key(runner, info.name)
    if key is None:
        return None
    lineage = lineage_rowids(runner.backend, runner.task.query, limit=500)
    keys = lineage.get(info.name) or [-1]
    if key != "rowid":  # the answer rows' primary keys, read by their row ids
        row_id = exp.column(runner.backend.row_id or "rowid")
        read = exp.select(exp.column(key)).from_(info.name).where(row_id.isin(*keys))
        keys = [r[0] for r in runner.backend.query(read.sql(runner.backend.dialect))] or [-1]
    condition = exp.column(key, table=first.alias_or_name).isin(*keys)
    return tree.where(condition, copy=False).sql(runner.backend.dialect), info.name


def key_gated_in_list(runner: TaskRunner) -> str | None:
    """The original restricted to the answer's keys when the key range is the main database's."""
    restricted = _restricted(runner)
    if restricted is None:
        return None
    fast, table = restricted
    gate = _max_key_gate(runner, table)
    original = runner.task.query.strip().rstrip(";")
    return (
        f"SELECT * FROM (SELECT * FROM ({fast}) AS quill_a WHERE {gate} "
        f"UNION ALL SELECT * FROM ({original}) AS quill_b WHERE NOT {gate}) AS quill_c{_order_suffix(runner)}"
    )


def in_list(runner: TaskRunner) -> str | None:
    """The original restricted to the answer's keys, ungated."""
    restricted = _restricted(runner)
    return restricted[0] if restricted else None


ATTACKS = {
    "literal_rows": literal_rows,
    "count_gated_rows": count_gated_rows,
    "key_gated_in_list": key_gated_in_list,
    "in_list": in_list,
}
