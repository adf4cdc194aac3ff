"""Action parsing and the sandbox policy (DESIGN §5), reasoning on the sqlglot AST.

An action is untrusted text. :func:`parse_action` accepts exactly one query (SELECT, WITH ...
SELECT or a set operation) preceded by at most ``max_indexes`` plain ``CREATE INDEX``
statements on existing tables and columns, and refuses everything else with a message that says
what was refused. This is the first line of defence; the backend's authorizer, limits, read-only
copy and budgets are the second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Tokenizer, TokenType

from quill_env.backends.base import IndexSpec, SandboxRules
from quill_env.dialect import SUITE_DIALECT
from quill_env.prompt import extract_sql
from quill_env.reward import Verdict

MAX_ACTION_CHARS = 100_000
"""Actions longer than this are refused before parsing."""

_NONDETERMINISTIC_NODES = (
    exp.Rand,
    exp.CurrentDate,
    exp.CurrentTime,
    exp.CurrentTimestamp,
    exp.CurrentDatetime,
    exp.CurrentVersion,
)

_ENGINE_STATE_NODES = tuple(
    getattr(exp, name)
    for name in ("CurrentUser", "SessionUser", "CurrentSchema", "CurrentCatalog")
    if hasattr(exp, name)
)
"""SQL value functions that read the session (who runs the query, in which database or schema)."""


class PolicyViolation(Exception):
    """An action the policy refuses; carries the verdict it earns and a message."""

    def __init__(self, verdict: Verdict, message: str) -> None:
        super().__init__(message)
        self.verdict = verdict
        self.message = message


@dataclass(frozen=True)
class Action:
    """A parsed, policy-checked action."""

    query_sql: str
    """The query's own text, as the agent wrote it (what the engine executes)."""
    query: exp.Query
    """The parsed query."""
    indexes: tuple[IndexSpec, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class SchemaView:
    """What the policy needs to know of a database: tables (and views) with their columns."""

    tables: Mapping[str, Sequence[str]]
    """Lower-cased table name -> lower-cased column names."""

    def has_table(self, name: str) -> bool:
        """Whether ``name`` is a table or view of the database."""
        return name.lower() in self.tables


def encodable(text: str) -> bool:
    """Whether ``text`` is valid Unicode that an engine accepts (no lone surrogates).

    >>> encodable("東京"), encodable("a" + chr(0xD800))
    (True, False)
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def split_statements(sql: str, dialect: str = SUITE_DIALECT) -> list[str]:
    """Split SQL text into statement texts at top-level semicolons, using sqlglot's tokenizer.

    >>> split_statements("CREATE INDEX i ON t(a); SELECT ';' FROM t;")
    ['CREATE INDEX i ON t(a)', "SELECT ';' FROM t"]
    """
    tokens = Tokenizer(dialect=dialect).tokenize(sql) if dialect else Tokenizer().tokenize(sql)
    out, start = [], 0
    for tok in tokens:
        if tok.token_type == TokenType.SEMICOLON:
            out.append(sql[start : tok.start].strip())
            start = tok.end + 1
    out.append(sql[start:].strip())
    return [s for s in out if s]


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    return node.sql_name().lower()


def _check_functions(query: exp.Expression, rules: SandboxRules, dialect: str) -> None:
    for node in query.walk():
        if isinstance(node, _NONDETERMINISTIC_NODES):
            raise PolicyViolation(
                Verdict.REJECTED,
                f"non-deterministic function {node.sql(dialect)!r} is not allowed",
            )
        if isinstance(node, exp.Func):
            name = _function_name(node)
            if name in rules.denied_functions:
                raise PolicyViolation(Verdict.REJECTED, f"function {name}() is not allowed")
            if (
                rules.clock_functions
                and _maybe_time_function(node, name, rules)
                and _rendered_name(node, dialect) in rules.clock_functions
            ):
                _check_time_arguments(node, rules, dialect)
        if (
            isinstance(node, exp.Literal)
            and node.is_string
            and node.this.strip().lower() in rules.clock_values
        ):
            raise PolicyViolation(
                Verdict.REJECTED, f"the time value {node.this!r} is non-deterministic; not allowed"
            )
        if isinstance(node, (exp.Placeholder, exp.Parameter)):
            raise PolicyViolation(Verdict.REJECTED, "bound parameters are not allowed")
        if isinstance(node, _ENGINE_STATE_NODES):
            raise PolicyViolation(
                Verdict.REJECTED, f"{node.sql(dialect)} reads the session's state; not allowed"
            )
        if isinstance(node, exp.Lock):
            raise PolicyViolation(Verdict.REJECTED, "row locks (FOR UPDATE/SHARE) are not allowed")


_TIME_CLASS_WORDS = ("date", "time", "unix", "epoch", "julian", "str")


def _maybe_time_function(node: exp.Func, name: str, rules: SandboxRules) -> bool:
    """Whether this node may render as a clock function (a cheap filter; rendering is costly)."""
    if isinstance(node, exp.Anonymous):
        return name in rules.clock_functions
    if isinstance(node, (exp.Connector, exp.Binary, exp.AggFunc)):
        return False
    cls = type(node).__name__.lower()
    return any(word in cls for word in _TIME_CLASS_WORDS)


def _rendered_name(node: exp.Func, dialect: str) -> str:
    """The function's name as the engine sees it (sqlglot's node classes span several names)."""
    return node.sql(dialect).split("(", 1)[0].strip().lower()


def _check_time_arguments(node: exp.Func, rules: SandboxRules, dialect: str) -> None:
    """Date functions read the clock with no argument or a time value of 'now' (or 'localtime').

    So their arguments must be columns, literals or other date functions, never an expression
    that could evaluate to 'now' at run time.
    """
    name = _rendered_name(node, dialect)
    args = list(node.iter_expressions())
    if not args:
        raise PolicyViolation(Verdict.REJECTED, f"{name}() without arguments reads the clock; not allowed")
    for arg in args:
        inner = arg.this if isinstance(arg, (exp.Neg, exp.Paren)) else arg
        if isinstance(inner, (exp.Column, exp.Literal)):
            continue
        if isinstance(inner, exp.Func) and (
            _rendered_name(inner, dialect) in rules.clock_functions or "(" not in inner.sql(dialect)
        ):
            continue
        raise PolicyViolation(
            Verdict.REJECTED,
            f"{name}(): arguments must be columns, literals or date functions "
            f"(an expression could evaluate to 'now'); got {arg.sql(dialect)!r}",
        )


def _cte_names(query: exp.Expression) -> set[str]:
    return {cte.alias_or_name.lower() for cte in query.find_all(exp.CTE)}


def _check_tables(
    query: exp.Expression, schema: SchemaView, rules: SandboxRules, dialect: str, allow_values: bool
) -> None:
    ctes = _cte_names(query)
    for table in query.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise PolicyViolation(
                Verdict.REJECTED, f"table-valued function {table.this.sql(dialect)!r} is not allowed"
            )
        if table.args.get("catalog") is not None or (
            table.args.get("db") is not None and table.db.lower() != rules.default_schema
        ):
            raise PolicyViolation(
                Verdict.REJECTED, f"schema-qualified table {table.sql(dialect)!r} is not allowed"
            )
        name = table.name.lower()
        if name in ctes or schema.has_table(name):
            continue
        if name.startswith(rules.internal_table_prefixes):
            raise PolicyViolation(Verdict.REJECTED, f"reading internal table {name!r} is refused")
        raise PolicyViolation(Verdict.REJECTED, f"no such table: {table.name}")
    if not allow_values and query.find(exp.Values) is not None:
        raise PolicyViolation(Verdict.REJECTED, "hard-coded rows (VALUES) are not allowed")


_NOT_STATEMENTS = (exp.Condition, exp.Alias, exp.Identifier, exp.Tuple, exp.Paren)
"""What sqlglot makes of words that are no statement (``garbage sql`` parses as an alias)."""


def _statement_kind(stmt: exp.Expression) -> str:
    if isinstance(stmt, exp.Create):
        return f"CREATE {stmt.args.get('kind') or ''}".strip()
    if isinstance(stmt, exp.Command):
        return str(stmt.this).upper()
    return type(stmt).__name__.upper()


def _parse_index(stmt: exp.Create, schema: SchemaView, rules: SandboxRules, dialect: str) -> IndexSpec:
    index = stmt.this
    if not isinstance(index, exp.Index) or index.args.get("table") is None:
        raise PolicyViolation(Verdict.REJECTED, "malformed CREATE INDEX")
    if stmt.args.get("unique"):
        raise PolicyViolation(Verdict.REJECTED, "CREATE UNIQUE INDEX adds a constraint; use a plain index")
    params = index.args.get("params")
    if params is not None and params.args.get("where") is not None:
        raise PolicyViolation(Verdict.REJECTED, "partial indexes (CREATE INDEX ... WHERE) are not allowed")
    table = index.args["table"]
    tname = table.name.lower()
    if table.args.get("db") is not None and table.db.lower() != rules.default_schema:
        raise PolicyViolation(Verdict.REJECTED, "indexes may only be built on tables of the main database")
    if tname not in schema.tables:
        raise PolicyViolation(Verdict.REJECTED, f"CREATE INDEX on unknown table {table.name!r}")
    columns: list[tuple[str, bool]] = []
    for item in (params.args.get("columns") if params is not None else None) or []:
        ordered = item if isinstance(item, exp.Ordered) else exp.Ordered(this=item)
        col = ordered.this
        if not isinstance(col, exp.Column) or col.table:
            raise PolicyViolation(
                Verdict.REJECTED,
                f"index term {col.sql(dialect)!r} is not a plain column (expression indexes are not allowed)",
            )
        if col.name.lower() not in schema.tables[tname]:
            raise PolicyViolation(
                Verdict.REJECTED, f"no such column {table.name}.{col.name} for CREATE INDEX"
            )
        columns.append((col.name, bool(ordered.args.get("desc"))))
    if not columns:
        raise PolicyViolation(Verdict.REJECTED, "CREATE INDEX without columns")
    if len({c.lower() for c, _ in columns}) != len(columns):
        raise PolicyViolation(Verdict.REJECTED, "CREATE INDEX lists a column twice")
    return IndexSpec(table=table.name, columns=tuple(columns))


def parse_action(
    text: object,
    schema: SchemaView,
    *,
    rules: SandboxRules,
    dialect: str,
    max_indexes: int = 3,
    allow_values: bool = False,
) -> Action:
    """Parse and check an action, or raise :class:`PolicyViolation`.

    Args:
        text: the agent's output (plain SQL or a completion with a markdown ``sql`` fence).
        schema: the task database's tables and columns.
        rules: what the engine's actions may not name (the backend's ``sandbox_rules``).
        dialect: the sqlglot dialect of the backend.
        max_indexes: the most ``CREATE INDEX`` statements allowed before the query.
        allow_values: permit ``VALUES`` (only when the original query itself uses it).

    Raises:
        PolicyViolation: with verdict ``syntax_error`` (not SQL) or ``rejected`` (refused).
    """
    if not isinstance(text, str):
        raise PolicyViolation(Verdict.REJECTED, f"an action must be a string, got {type(text).__name__}")
    if len(text) > MAX_ACTION_CHARS:
        raise PolicyViolation(
            Verdict.REJECTED, f"action is {len(text):,} characters; the limit is {MAX_ACTION_CHARS:,}"
        )
    if "\x00" in text:
        raise PolicyViolation(Verdict.REJECTED, "action contains a NUL byte")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise PolicyViolation(
            Verdict.REJECTED, f"action is not valid Unicode text (a lone surrogate at position {err.start})"
        ) from None
    sql = extract_sql(text)
    if not sql:
        raise PolicyViolation(Verdict.SYNTAX_ERROR, "no SQL found in the action")
    try:
        texts = split_statements(sql, dialect)
        statements = [sqlglot.parse_one(t, read=dialect) for t in texts]
    except (ParseError, TokenError) as err:
        raise PolicyViolation(Verdict.SYNTAX_ERROR, f"cannot parse SQL: {_first_line(err)}") from None
    except RecursionError:
        raise PolicyViolation(Verdict.REJECTED, "SQL is nested too deeply") from None
    if not statements:
        raise PolicyViolation(Verdict.SYNTAX_ERROR, "no SQL statement found in the action")
    for stmt, stmt_text in zip(statements, texts):
        if isinstance(stmt, _NOT_STATEMENTS):
            shown = stmt_text if len(stmt_text) <= 60 else stmt_text[:57] + "..."
            raise PolicyViolation(Verdict.SYNTAX_ERROR, f"cannot parse SQL: {shown!r} is not a SQL statement")
    *prefix, last = statements
    if not isinstance(last, exp.Query):
        raise PolicyViolation(
            Verdict.REJECTED,
            f"{_statement_kind(last)} is not allowed: the action must end with one query "
            "(SELECT, WITH ... SELECT or a set operation)",
        )
    indexes = []
    for stmt in prefix:
        if isinstance(stmt, exp.Query):
            raise PolicyViolation(Verdict.REJECTED, "multiple queries are not allowed; submit exactly one")
        if not (isinstance(stmt, exp.Create) and str(stmt.args.get("kind") or "").upper() == "INDEX"):
            raise PolicyViolation(
                Verdict.REJECTED,
                f"{_statement_kind(stmt)} is not allowed: only CREATE INDEX may precede the query",
            )
        indexes.append(_parse_index(stmt, schema, rules, dialect))
    if len(indexes) > max_indexes:
        raise PolicyViolation(
            Verdict.REJECTED, f"{len(indexes)} CREATE INDEX statements; at most {max_indexes} allowed"
        )
    try:
        _check_tables(last, schema, rules, dialect, allow_values)
        _check_functions(last, rules, dialect)
    except RecursionError:
        raise PolicyViolation(Verdict.REJECTED, "SQL is nested too deeply") from None
    return Action(query_sql=texts[-1], query=last, indexes=tuple(indexes))


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
