"""Tasks and task suites (DESIGN §7): suites are data, loaded from ``envs/``.

A suite is a directory with ``suite.json`` (name, version, seed, schema DDL, generator spec with
scale tiers, variant settings) and ``tasks.jsonl`` (one task per line: id, query, reference
action, pattern tags, split, optional ``output_columns`` and measured ``reference_speedup`` per
scale). Databases are generated from the seed and cached on disk under ``QUILL_CACHE`` (default:
the user cache dir), keyed by a hash of the spec, so a changed spec regenerates its data.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quill_env._version import DATA_FORMAT
from quill_env.backends import DEFAULT_ENGINE, get_backend
from quill_env.datagen import generate_tables, generator_version, spec_hash
from quill_env.dialect import SUITE_DIALECT
from quill_env.errors import ConfigError, SuiteError, UnknownNameError
from quill_env.paths import cache_dir

SPLITS = ("train", "test")
SCALES = ("small", "medium", "large")
VARIANT_SCALE = "variant"
"""The generator tier that variant databases are sampled from."""


@dataclass(frozen=True)
class Task:
    """One optimization task: a slow query over a database, and (for suites) a reference.

    Args:
        id: unique id, ``<suite>/<name>``.
        query: the slow query.
        reference: the reference action (optional ``CREATE INDEX`` statements and a query).
        patterns: optimization pattern tags.
        split: ``train`` or ``test``.
        suite: the suite name (``user`` for a user's own database).
        schema: the schema (domain) name.
        output_columns: the columns the application reads; when set, the rewrite must return
            exactly these columns and is compared with the original projected onto them.
        reference_speedup: the reference's measured speedup per scale tier.
    """

    id: str
    query: str
    reference: str | None = None
    patterns: tuple[str, ...] = ()
    split: str = "train"
    suite: str = "user"
    schema: str = "user"
    output_columns: tuple[str, ...] | None = None
    reference_speedup: Mapping[str, float] = field(default_factory=dict)
    notes: str = ""

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], suite: str = "user", schema: str = "user") -> Task:
        """Build a task from its JSON form (as in ``tasks.jsonl``)."""
        try:
            out = raw.get("output_columns")
            return cls(
                id=str(raw["id"]),
                query=str(raw["query"]),
                reference=raw.get("reference"),
                patterns=tuple(raw.get("patterns", ())),
                split=str(raw.get("split", "train")),
                suite=str(raw.get("suite", suite)),
                schema=str(raw.get("schema", schema)),
                output_columns=tuple(out) if out else None,
                reference_speedup=dict(raw.get("reference_speedup", {})),
                notes=str(raw.get("notes", "")),
            )
        except KeyError as err:
            raise SuiteError(f"task is missing field {err}: {dict(raw)!r:.200}") from None

    def ported(self, port: Callable[[str], str]) -> Task:
        """The task with its query and reference translated by ``port`` (see ``Backend.port``)."""
        reference = port(self.reference) if self.reference else self.reference
        return dataclasses.replace(self, query=port(self.query), reference=reference)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the task."""
        out = {
            "id": self.id,
            "suite": self.suite,
            "schema": self.schema,
            "split": self.split,
            "patterns": list(self.patterns),
            "query": self.query,
            "reference": self.reference,
            "reference_speedup": dict(self.reference_speedup),
        }
        if self.output_columns:
            out["output_columns"] = list(self.output_columns)
        if self.notes:
            out["notes"] = self.notes
        return out


def suites_root() -> Path:
    """The directory holding the shipped suites (inside the wheel, or ``envs/`` in a checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "envs", here.parents[1] / "envs"):
        if candidate.is_dir():
            return candidate
    raise SuiteError("cannot find the shipped task suites (envs/); is the installation complete?")


class Suite:
    """A task suite: schema, deterministic generator with scale tiers, and tasks."""

    def __init__(self, spec: Mapping[str, Any], tasks: Iterable[Task], path: Path | None = None) -> None:
        self.spec = dict(spec)
        self.name: str = str(spec["name"])
        self.version: str = str(spec.get("version", "1"))
        self.description: str = str(spec.get("description", ""))
        self.seed: int = int(spec.get("seed", 0))
        self.ddl: list[str] = list(spec["schema"])
        self.generator: dict[str, Any] = dict(spec["generator"])
        self.default_scale: str = str(spec.get("default_scale", "medium"))
        self.variant_count: int = int(spec.get("variants", {}).get("count", 8))
        self.variant_rows: int = int(spec.get("variants", {}).get("rows_per_table", 40))
        self.benchmark: bool = bool(spec.get("benchmark", False))
        """A published benchmark workload (TPC-H): listed only by ``list_suites(benchmarks=True)``."""
        self.dialect: str = str(spec.get("dialect", SUITE_DIALECT))
        """The dialect the schema and the tasks are written in (other engines run them ported)."""
        self.path = path
        self.tasks: list[Task] = list(tasks)
        ids = [t.id for t in self.tasks]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise SuiteError(f"suite {self.name!r} has duplicate task ids: {dup[:5]}")
        self._by_id = {t.id: t for t in self.tasks}

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Suite:
        """Load a suite directory (``suite.json`` + ``tasks.jsonl``).

        Raises:
            SuiteError: a file is missing or malformed.
        """
        path = Path(path)
        try:
            spec = json.loads((path / "suite.json").read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise SuiteError(f"cannot read {path / 'suite.json'}: {err}") from None
        tasks = []
        tasks_file = path / "tasks.jsonl"
        if tasks_file.exists():
            for n, line in enumerate(tasks_file.read_text().splitlines(), 1):
                if line.strip():
                    try:
                        raw = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise SuiteError(f"{tasks_file}:{n}: {err}") from None
                    tasks.append(
                        Task.from_dict(raw, suite=spec["name"], schema=spec.get("schema_name", spec["name"]))
                    )
        return cls(spec, tasks, path)

    # --- lookup ----------------------------------------------------------------------------

    @property
    def scales(self) -> list[str]:
        """The scale tiers every table defines (variant tier excluded)."""
        tiers = [set(t["rows"]) for t in self.generator["tables"].values()]
        common = set.intersection(*tiers) if tiers else set()
        return [s for s in SCALES if s in common]

    def task(self, task_id: str) -> Task:
        """The task with ``task_id`` (the ``<suite>/`` prefix is optional)."""
        key = task_id if "/" in task_id else f"{self.name}/{task_id}"
        if key not in self._by_id:
            raise UnknownNameError("task", task_id, self._by_id)
        return self._by_id[key]

    def split(self, split: str | None) -> list[Task]:
        """The tasks of a split (``None`` or ``all`` for every task)."""
        if split in (None, "all"):
            return list(self.tasks)
        if split not in SPLITS:
            raise UnknownNameError("split", str(split), (*SPLITS, "all"))
        return [t for t in self.tasks if t.split == split]

    @functools.cached_property
    def engine_marks(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per engine and task: whether the original runs there and what its reference earns.

        Read from ``engines.json`` (written by ``scripts/engine_marks.py``; empty when absent).
        """
        path = self.path / "engines.json" if self.path is not None else None
        if path is None or not path.exists():
            return {}
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as err:
            raise SuiteError(f"cannot read {path}: {err}") from None

    def engine_mark(self, task_id: str, engine: str) -> dict[str, Any]:
        """The mark of one task on ``engine`` (empty when the task was not marked there)."""
        return dict(self.engine_marks.get(engine, {}).get(task_id, {}))

    def runs_on(self, task: Task, engine: str) -> bool:
        """Whether the task's original runs on ``engine`` (unmarked tasks are assumed to)."""
        return self.engine_mark(task.id, engine).get("original") != "fails"

    @functools.cached_property
    def data_hash(self) -> str:
        """Hash of everything that determines the generated data (a packaged generator's version too)."""
        version = generator_version(self.generator)
        return spec_hash(DATA_FORMAT, self.ddl, self.generator, self.seed, *([version] if version else []))

    @functools.cached_property
    def hash(self) -> str:
        """Hash of the whole suite: data spec and tasks."""
        return spec_hash(self.data_hash, [t.to_dict() for t in self.tasks])

    # --- databases -------------------------------------------------------------------------

    def database(
        self, scale: str | None = None, *, rebuild: bool = False, engine: str = DEFAULT_ENGINE
    ) -> Path | str:
        """Path of the generated database at ``scale`` for ``engine``, built and cached when needed.

        Every engine gets the same generated rows; the schema is ported from :attr:`dialect`. On
        a server engine (PostgreSQL) the database is built on the configured server
        (``QUILL_POSTGRES_URL``) and its URL is returned.
        """
        scale = scale or self.default_scale
        if scale != VARIANT_SCALE and scale not in self.scales:
            raise UnknownNameError("scale", scale, self.scales)
        cls = get_backend(engine)
        if cls.is_server:
            return cls.suite_database(  # type: ignore[attr-defined]
                f"{self.name}-{self.data_hash}-{scale}",
                self.ddl,
                lambda: generate_tables(self.generator, scale, self.seed),
                dialect=self.dialect,
                rebuild=rebuild,
            )
        suffix = cls.file_suffixes[0]
        target = cache_dir() / "suites" / f"{self.name}-{self.data_hash}-{scale}{suffix}"
        if target.exists() and not rebuild:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=suffix + ".tmp", dir=target.parent)
        os.close(fd)
        os.unlink(tmp)
        try:
            data = generate_tables(self.generator, scale, self.seed)
            cls.create_file(tmp, self.ddl, data, dialect=self.dialect)
            os.replace(tmp, target)
        finally:
            for leftover in (tmp, tmp + ".wal"):
                if os.path.exists(leftover):
                    os.unlink(leftover)
        return target

    def __repr__(self) -> str:
        return f"Suite({self.name!r}, version={self.version!r}, tasks={len(self.tasks)})"


@functools.cache
def _load_suite(name: str) -> Suite:
    root = suites_root()
    path = root / name
    if not (path / "suite.json").exists():
        raise UnknownNameError("suite", name, list_suites())
    return Suite.load(path)


def list_suites(benchmarks: bool = False) -> list[str]:
    """Names of the shipped suites.

    Args:
        benchmarks: also list the published benchmark workloads (``tpch``). They are left out of
            the default set (the default environments, training data, exports) because they are
            evaluated on, the way the papers do, and their data needs an extra.
    """
    root = suites_root()
    names = sorted(p.name for p in root.iterdir() if (p / "suite.json").exists())
    return names if benchmarks else [n for n in names if not _load_suite(n).benchmark]


def get_suite(name: str | os.PathLike[str]) -> Suite:
    """A shipped suite by name, or a suite directory by path."""
    if isinstance(name, os.PathLike) or os.sep in str(name):
        return Suite.load(name)
    return _load_suite(str(name))


def resolve_suites(names: Sequence[str | os.PathLike[str]] | None = None) -> list[Suite]:
    """Suites by name or directory; every shipped suite that has tasks when ``names`` is empty."""
    if names:
        return [get_suite(n) for n in names]
    return [s for s in map(get_suite, list_suites()) if s.tasks]


def select_tasks(
    suites: Sequence[Suite],
    split: str | None = "all",
    task_ids: Sequence[str] | None = None,
    limit: int | None = None,
    engine: str | None = None,
) -> list[tuple[Suite, Task]]:
    """The ``(suite, task)`` pairs of a split: what the env, the leaderboard and the trainers run.

    Args:
        suites: the suites to draw from.
        split: ``train``, ``test`` or ``all``.
        task_ids: only these tasks, in this order (each once).
        limit: only the first ``limit`` of them.
        engine: leave out the tasks whose original does not run on this engine
            (:meth:`Suite.runs_on`).

    Raises:
        UnknownNameError: a task id is not in the suites' split.
        ConfigError: no task is left.
    """
    pairs = [(s, t) for s in suites for t in s.split(split) if engine is None or s.runs_on(t, engine)]
    if task_ids:
        by_id = {t.id: (s, t) for s, t in pairs}
        for tid in task_ids:
            if tid not in by_id:
                raise UnknownNameError(f"task (split {split!r})", tid, by_id)
        pairs = [by_id[tid] for tid in dict.fromkeys(task_ids)]
    if limit is not None:
        if limit < 1:
            raise ConfigError("limit must be >= 1")
        pairs = pairs[:limit]
    if not pairs:
        raise ConfigError(f"no tasks in split {split!r} of suites {[s.name for s in suites]}")
    return pairs
