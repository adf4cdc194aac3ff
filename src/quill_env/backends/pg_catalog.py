"""What Quill reads from and writes to a PostgreSQL catalog: introspection, templates, copies.

- :func:`introspect`: tables and views of a schema, with columns, keys (real ones, and those
  kept as table comments: :mod:`quill_env.backends.ddl`), indexes and row counts;
- :func:`source_copy`: a template of Quill's holding a copy of a user's database, read once per
  process in one ``REPEATABLE READ`` snapshot (enum and domain types, tables, keys, indexes,
  views; rows with ``COPY``), with a digest of what was copied;
- :func:`finish_template`: what every template gets (the reader role's grants, locked functions,
  autovacuum off, deterministic statistics);
- :func:`allowed`: the function and type names the gate allows on a database.
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from collections.abc import Sequence

from sqlglot import exp

from quill_env.errors import DatabaseError, MissingExtraError

try:
    import psycopg
    from psycopg import sql as pgsql
except ImportError:  # pragma: no cover - the postgres extra is not installed
    raise MissingExtraError("postgres", "psycopg") from None

from quill_env.backends import ddl, pg_gate
from quill_env.backends.base import ColumnInfo, ForeignKey, IndexInfo, TableInfo
from quill_env.backends.pg_server import READER_ROLE, Pool, Server, first_line, lock_functions


def copy_rows(
    pg: psycopg.Connection, table: str, rows: Sequence[Sequence[object]], columns: Sequence[str] | None = None
) -> None:
    """Write ``rows`` into ``table`` with ``COPY`` (``columns`` in that order, else all of them)."""
    if not rows:
        return
    target = pgsql.Identifier(table)
    if columns:
        stmt = pgsql.SQL("COPY {} ({}) FROM STDIN").format(
            target, pgsql.SQL(", ").join(map(pgsql.Identifier, columns))
        )
    else:
        stmt = pgsql.SQL("COPY {} FROM STDIN").format(target)
    with pg.cursor().copy(stmt) as copy:
        for row in rows:
            copy.write_row(row)


def grant_reader(pg: psycopg.Connection, schema: str, server: Server) -> None:
    """Let the reader role read every table of ``schema`` (where the role is usable here)."""
    if not server.facts["reader"]:
        return
    role = pgsql.Identifier(READER_ROLE)
    pg.execute(pgsql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(pgsql.Identifier(schema), role))
    pg.execute(
        pgsql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(pgsql.Identifier(schema), role)
    )


def finish_template(pg: psycopg.Connection, server: Server) -> None:
    """Grant the reader role, lock functions, switch autovacuum off and take deterministic statistics."""
    lock_functions(pg, server)
    for (table,) in pg.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r'"
    ).fetchall():
        off = "ALTER TABLE {} SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)"
        pg.execute(pgsql.SQL(off)
                   .format(pgsql.Identifier(table)))  # fmt: skip
    grant_reader(pg, "public", server)
    pg.execute("SET default_statistics_target = 10000")
    pg.execute("VACUUM (ANALYZE, FREEZE)")


_SOURCE_LOCK = threading.Lock()
_SOURCES: dict[tuple[int, str], tuple[str, str]] = {}


def source_copy(source: Server, dbname: str, home: Server) -> tuple[str, str]:
    """A template of Quill's holding a copy of the user's database (made once per process).

    Returns ``(template name, digest of the copied schema and rows)``.
    """
    key = (id(source), dbname)
    with _SOURCE_LOCK:
        if key in _SOURCES:
            return _SOURCES[key]
        name = home.create("src", source=source.describe(dbname))
        try:
            digest = _copy_database(source, dbname, home, name)
        except BaseException:
            home.drop(name)
            raise
        _SOURCES[key] = (name, digest)
        return name, digest


def _copy_database(source: Server, dbname: str, home: Server, target: str) -> str:
    """Copy ``dbname``'s ``public`` schema into ``target``; return a digest of what was copied.

    Enum and domain types, tables (partitioned ones as plain tables of all their rows), keys,
    indexes and views are copied; a view the copy cannot define is left out with a warning.

    Raises:
        DatabaseError: the server refused a statement (a column type of an extension, say).
    """
    digest = hashlib.sha256()
    with source.connect(dbname) as src, home.connect(target) as dst:
        with src.transaction():
            src.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            src.execute("SET LOCAL search_path TO public")
            for stmt in type_statements(src):
                dst.execute(stmt)
                digest.update(stmt.encode())
            tables = introspect(src, "public", count_rows=False)
            for info in tables.values():
                if info.is_view:
                    continue
                try:
                    for stmt in ddl.port_ddl([info.sql], "postgres", "postgres"):
                        dst.execute(stmt)
                except psycopg.Error as err:
                    raise DatabaseError(f"cannot copy table {info.name}: {first_line(err)}") from None
                digest.update(info.sql.encode())
                columns = pgsql.SQL(", ").join(map(pgsql.Identifier, info.column_names))
                read = pgsql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(
                    columns, pgsql.Identifier(info.name)
                )
                write = pgsql.SQL("COPY {} ({}) FROM STDIN").format(pgsql.Identifier(info.name), columns)
                with src.cursor().copy(read) as out, dst.cursor().copy(write) as into:
                    for chunk in out:
                        digest.update(chunk)
                        into.write(chunk)
                for index in info.indexes:
                    if index.sql:
                        dst.execute(index.sql)
            for info in tables.values():
                if info.is_view:
                    try:
                        dst.execute(info.sql)
                    except psycopg.Error as err:  # a view over a function of the user's: left out
                        warnings.warn(f"view {info.name} is not copied: {first_line(err)}", stacklevel=2)
                        continue
                    digest.update(info.sql.encode())
        finish_template(dst, home)
    return digest.hexdigest()[:16]


def type_statements(pg: psycopg.Connection, schema: str = "public") -> list[str]:
    """``CREATE TYPE ... AS ENUM`` and ``CREATE DOMAIN`` of ``schema``'s own types."""
    out = []
    for name, labels in pg.execute(
        "SELECT t.typname, to_json(ARRAY(SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = t.oid "
        "ORDER BY e.enumsortorder))::text FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE n.nspname = %s AND t.typtype = 'e' ORDER BY t.oid",
        (schema,),
    ).fetchall():
        values = pgsql.SQL(", ").join(map(pgsql.Literal, json.loads(labels)))
        out.append(
            pgsql.SQL("CREATE TYPE {} AS ENUM ({})").format(pgsql.Identifier(name), values).as_string(pg)
        )
    for oid, name, base, notnull in pg.execute(
        "SELECT t.oid, t.typname, format_type(t.typbasetype, t.typtypmod), t.typnotnull FROM pg_type t "
        "JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = %s AND t.typtype = 'd' "
        "ORDER BY t.oid",
        (schema,),
    ).fetchall():
        checks = [
            r[0]
            for r in pg.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contypid = %s", (oid,)
            )
        ]
        text = pgsql.SQL("CREATE DOMAIN {} AS ").format(pgsql.Identifier(name)).as_string(pg) + str(base)
        out.append(" ".join([text, *(["NOT NULL"] if notnull else []), *checks]))
    return out


def introspect(pg: psycopg.Connection, schema: str, *, count_rows: bool = True) -> dict[str, TableInfo]:
    """Tables and views of ``schema`` with columns, keys, indexes and row counts."""
    objects = pg.execute(
        "SELECT c.oid, c.relname, c.relkind, obj_description(c.oid, 'pg_class') FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition "
        "ORDER BY c.oid",
        (schema,),
    ).fetchall()
    out: dict[str, TableInfo] = {}
    for oid, name, kind, comment in objects:
        cols = pg.execute(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
            "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (oid,),
        ).fetchall()
        if kind in ("v", "m"):
            view_sql = pg.execute("SELECT pg_get_viewdef(%s, true)", (oid,)).fetchone()[0]
            columns = tuple(ColumnInfo(c, str(t).upper(), bool(nn), 0) for c, t, nn in cols)
            body = str(view_sql).strip().rstrip(";")
            out[name.lower()] = TableInfo(
                name, columns, (), (), 0, f"CREATE VIEW {_ident(name)} AS {body}", is_view=True
            )
            continue
        constraints = pg.execute(
            "SELECT conname, contype, "
            "to_json(ARRAY(SELECT a.attname FROM unnest(conkey) WITH ORDINALITY k(n, i) "
            "      JOIN pg_attribute a ON a.attrelid = conrelid AND a.attnum = k.n ORDER BY k.i))::text, "
            "(SELECT relname FROM pg_class WHERE oid = confrelid), "
            "to_json(ARRAY(SELECT a.attname FROM unnest(confkey) WITH ORDINALITY k(n, i) "
            "      JOIN pg_attribute a ON a.attrelid = confrelid AND a.attnum = k.n ORDER BY k.i))::text, "
            "pg_get_constraintdef(oid, true) FROM pg_constraint WHERE conrelid = %s ORDER BY oid",
            (oid,),
        ).fetchall()
        constraints = [(n, t, json.loads(c), r, json.loads(rc), d) for n, t, c, r, rc, d in constraints]
        pk: list[str] = []
        keys: list[ForeignKey] = []
        indexes: list[IndexInfo] = []
        parts: list[str] = []
        for cname, ctype, ccols, ref_table, ref_cols, definition in constraints:
            if ctype == "p":
                pk = list(ccols)
                indexes.append(IndexInfo(cname, tuple(ccols), True, "pk"))
                parts.append(f"PRIMARY KEY ({', '.join(_ident(c) for c in ccols)})")
            elif ctype == "u":
                indexes.append(IndexInfo(cname, tuple(ccols), True, "u"))
                parts.append(f"UNIQUE ({', '.join(_ident(c) for c in ccols)})")
            elif ctype == "f":
                keys.append(ForeignKey(tuple(ccols), str(ref_table), tuple(ref_cols)))
            elif ctype == "c":
                parts.append(str(definition))
        kept = ddl.comment_keys(comment)
        constraint_indexes = {c[0] for c in constraints}
        for iname, unique, isql, icols in pg.execute(
            "SELECT i.relname, x.indisunique, pg_get_indexdef(x.indexrelid), "
            "to_json(ARRAY(SELECT pg_get_indexdef(x.indexrelid, k + 1, true) "
            "             FROM generate_subscripts(x.indkey, 1) k))::text "
            "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s ORDER BY i.oid",
            (oid,),
        ).fetchall():
            if iname in constraint_indexes:
                continue
            indexes.append(IndexInfo(iname, tuple(json.loads(icols)), bool(unique), "c", str(isql)))
        column_defs = [f"{_ident(c)} {t}{' NOT NULL' if nn else ''}" for c, t, nn in cols]
        columns = tuple(
            ColumnInfo(c, str(t).upper(), bool(nn) or c in pk, pk.index(c) + 1 if c in pk else 0)
            for c, t, nn in cols
        )
        count = 0
        if count_rows:
            count = int(
                pg.execute(pgsql.SQL("SELECT COUNT(*) FROM {}").format(pgsql.Identifier(name))).fetchone()[0]
            )
        all_keys = keys + kept
        shown = [
            f"FOREIGN KEY ({', '.join(map(_ident, k.columns))}) REFERENCES {_ident(k.ref_table)}"
            + (f" ({', '.join(map(_ident, k.ref_columns))})" if k.ref_columns else "")
            for k in all_keys
        ]
        out[name.lower()] = TableInfo(
            name=name,
            columns=columns,
            foreign_keys=tuple(all_keys),
            indexes=tuple(indexes),
            row_count=count,
            sql=f"CREATE TABLE {_ident(name)} ({', '.join(column_defs + parts + shown)})",
        )
    return out


def _ident(name: str) -> str:
    return exp.to_identifier(name, quoted=not name.islower() or not name.isidentifier()).sql("postgres")


_ALLOWED_LOCK = threading.Lock()
_ALLOWED: dict[tuple[int, str, str], tuple[frozenset[str], frozenset[str]]] = {}


def allowed(server: Server, pool: Pool, schema: str) -> tuple[frozenset[str], frozenset[str]]:
    """Function and type names the gate allows on a database (read once per database and schema)."""
    key = (
        id(server),
        pool.dbname if schema == "public" else "scratch",
        schema if schema == "public" else "*",
    )
    with _ALLOWED_LOCK:
        if key in _ALLOWED:
            return _ALLOWED[key]
    with pool.connection(schema) as conn:
        rows = conn.pg.execute(
            "SELECT p.proname, n.nspname, bool_or(p.provolatile = 'i') FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname IN ('pg_catalog', %s) GROUP BY 1, 2",
            (schema,),
        ).fetchall()
        types = conn.pg.execute(
            "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            "WHERE n.nspname = %s AND t.typtype = 'e'",
            (schema,),
        ).fetchall()
    functions = {
        name.lower()
        for name, nsp, immutable in rows
        if (immutable and not (nsp == "pg_catalog" and name.startswith("pg_")))
    }
    functions |= pg_gate.STABLE_ALLOWED
    functions -= pg_gate.DENIED_NAMES
    result = (frozenset(functions), frozenset(t[0].lower() for t in types))
    with _ALLOWED_LOCK:
        _ALLOWED[key] = result
    return result


__all__ = [
    "allowed",
    "copy_rows",
    "finish_template",
    "grant_reader",
    "introspect",
    "source_copy",
    "type_statements",
]
