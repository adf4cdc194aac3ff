"""Export a verified store to training data: SFT and DPO JSONL in TRL's conversational formats.

- **SFT**: ``{"prompt": [system, user], "completion": [assistant]}``; the prompt is
  :func:`quill_env.prompt.build_messages` of the observation rebuilt from the record (schema text
  and plan of the suite database at the record's scale), the completion
  :func:`quill_env.prompt.format_completion` of the kept rewrite.
- **DPO**: ``{"prompt": [...], "chosen": [assistant], "rejected": [assistant]}``, pairs from the same
  slow query whose reward gap is at least ``min_gap`` (the work mode is deterministic, so the gap
  only has to exceed the reward's own resolution).
- **Augmentation** (DESIGN §7): each example is repeated under ``multiplier - 1`` consistent
  renamings of its schema (:mod:`quill_env.authoring.augment`); the renamed schema text and plan come from
  the renamed suite's own database, so an augmented example is as executable as the original.
- A Hugging Face ``datasets`` copy when that package is installed, and a dataset card.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from quill_agents.generate import summarize
from quill_agents.heldout import check_schemas, held_out_records
from quill_agents.store import DRAWS_FILE, RECORDS_FILE, read_jsonl
from quill_env.action_policy import split_statements
from quill_env.authoring.augment import RenameMap, augment_suite, augment_task_text, rename_sql, schema_tables
from quill_env.backends import open_backend
from quill_env.dialect import SUITE_DIALECT
from quill_env.errors import ConfigError, MissingExtraError, StoreError
from quill_env.evaluator import TaskRunner
from quill_env.prompt import build_messages, format_completion, make_observation
from quill_env.reward import Verdict
from quill_env.tasks import Task, get_suite

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportConfig:
    """How a store is exported.

    Args:
        multiplier: rows per verified example including the original (4 = original + 3 renamings).
        min_gap: the smallest reward gap between the chosen and the rejected answer of a DPO pair.
        max_pairs_per_query: the most DPO pairs drawn from one slow query.
        seed: seed of the renamings.
        hf: also save Hugging Face datasets (when ``datasets`` is installed).
        verify: score every renamed example on its renamed database and drop those that fail.
        max_indexes: the index allowance written into the system prompt.
        include_test_schemas: export records from the held-out test schemas too (refused by
            default: such data overlaps the test split).
    """

    multiplier: int = 4
    min_gap: float = 0.1
    max_pairs_per_query: int = 4
    seed: int = 0
    hf: bool = True
    verify: bool = False
    max_indexes: int = 3
    include_test_schemas: bool = False

    def __post_init__(self) -> None:
        if self.multiplier < 1:
            raise ConfigError(f"multiplier must be >= 1 (1 = no augmentation), got {self.multiplier}")
        if self.min_gap < 0 or self.max_pairs_per_query < 1:
            raise ConfigError("min_gap must be >= 0 and max_pairs_per_query >= 1")


@dataclass
class ExportReport:
    """What an export wrote."""

    records: int = 0
    sft_rows: int = 0
    dpo_rows: int = 0
    augmented_rows: int = 0
    augment_failures: int = 0
    verify_failures: int = 0
    files: dict[str, str] = field(default_factory=dict)
    hf_saved: bool = False
    schemas: dict[str, int] = field(default_factory=dict)
    """Records per source schema (``quill train`` reads it to refuse held-out schemas)."""
    held_out_schemas: list[str] = field(default_factory=list)
    """The held-out test schemas among ``schemas`` (empty unless ``include_test_schemas``)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable form."""
        return dict(self.__dict__)


def load_records(store: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a store file or run directory (a torn last line is skipped, not repaired).

    Raises:
        StoreError: the store does not exist (no such file, or a directory without ``records.jsonl``).
    """
    path = Path(store)
    file = path / RECORDS_FILE if path.is_dir() else path
    if not file.is_file():
        what = f"{path} has no {RECORDS_FILE}" if path.is_dir() else f"no such store: {path}"
        raise StoreError(f"{what} (expected the run directory of quill generate, or its {RECORDS_FILE})")
    return read_jsonl(file)


# --- observations --------------------------------------------------------------------------


class _Schema:
    """One database (original or renamed) with its schema text and a plan cache."""

    def __init__(self, suite: Any, scale: str) -> None:
        self.suite = suite
        self.scale = scale
        self.backend = open_backend(str(suite.database(scale)))
        self.text = self.backend.schema_text()
        self._plans: dict[str, str] = {}

    def observation(self, query: str, output_columns: Sequence[str] | None) -> dict[str, str]:
        """The observation ``TaskRunner.observation()`` would show for this query."""
        if query not in self._plans:
            self._plans[query] = self.backend.explain(query)
        return make_observation(
            schema=self.text,
            query=query,
            plan=self._plans[query],
            engine=self.backend.display_name,
            output_columns=output_columns,
        )

    def close(self) -> None:
        self.backend.close()


class ObservationBuilder:
    """Rebuilds observations of records, original or renamed; caches one database per schema."""

    def __init__(self, records: Sequence[Mapping[str, Any]], seed: int = 0) -> None:
        self.seed = seed
        self._records_by_suite: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for r in records:
            self._records_by_suite[r["suite"]].append(r)
        self._schemas: dict[tuple[str, str, int], _Schema] = {}
        self._maps: dict[tuple[str, int], Any] = {}

    def suite(self, name: str) -> Any:
        """The source suite of records named ``name``."""
        return get_suite(name)

    def mapping(self, suite_name: str, copy: int) -> Any:
        """The renaming of augmentation copy ``copy`` (>= 1) of a suite, sampled once."""
        key = (suite_name, copy)
        if key not in self._maps:
            suite = self.suite(suite_name)
            texts = [t for task in suite.tasks for t in (task.query, task.reference)]
            for r in self._records_by_suite[suite_name]:
                texts += [r["query"], r["action"], *(x["action"] for x in r.get("rejected", ()))]
            seed = zlib.crc32(f"{self.seed}:{suite_name}:{copy}".encode())
            domain = str(suite.spec.get("schema_name", suite.name))
            self._maps[key] = RenameMap.sample(
                schema_tables(suite.ddl), seed, domain, reserved=_identifiers(texts)
            )
        return self._maps[key]

    def schema(self, suite_name: str, scale: str, copy: int = 0) -> _Schema:
        """The database of a suite at ``scale``: the original (copy 0) or renamed copy ``copy``."""
        key = (suite_name, scale, copy)
        if key not in self._schemas:
            suite = self.suite(suite_name)
            if copy:
                suite = augment_suite(
                    suite, copy, name_suffix=f"aug{copy}", mapping=self.mapping(suite_name, copy)
                )
            self._schemas[key] = _Schema(suite, scale)
        return self._schemas[key]

    def observation(self, record: Mapping[str, Any]) -> dict[str, str]:
        """The original observation of a record."""
        return self.schema(record["suite"], record["scale"]).observation(
            record["query"], record.get("output_columns")
        )

    def renamed(self, record: Mapping[str, Any], copy: int) -> tuple[dict[str, str], Any, Any]:
        """``(observation, renamed task, mapping)`` of augmentation copy ``copy`` of a record.

        Raises:
            ValueError, sqlglot.errors.SqlglotError: the record's SQL cannot be renamed.
        """
        mapping = self.mapping(record["suite"], copy)
        out = record.get("output_columns")
        task = Task(
            id=f"{record['suite']}/{record['id']}", query=record["query"], reference=record["action"],
            suite=record["suite"], output_columns=tuple(out) if out else None,
        )  # fmt: skip
        renamed = augment_task_text(task, mapping, id_suffix=f"aug{copy}")
        schema = self.schema(record["suite"], record["scale"], copy)
        return schema.observation(renamed.query, renamed.output_columns), renamed, mapping

    def close(self) -> None:
        """Close every database opened."""
        for s in self._schemas.values():
            s.close()


def _identifiers(texts: Iterable[str | None]) -> set[str]:
    names: set[str] = set()
    for text in texts:
        if not text:
            continue
        try:
            for part in split_statements(text):
                names.update(
                    i.name.lower()
                    for i in sqlglot.parse_one(part, read=SUITE_DIALECT).find_all(exp.Identifier)
                )
        except sqlglot.errors.SqlglotError:
            continue
    return names


# --- rows ----------------------------------------------------------------------------------


def sft_row(observation: Mapping[str, str], action: str, max_indexes: int = 3) -> dict[str, Any]:
    """One conversational SFT row (TRL prompt-completion format)."""
    return {
        "prompt": build_messages(observation, max_indexes=max_indexes),
        "completion": [{"role": "assistant", "content": format_completion(action)}],
    }


def dpo_row(
    observation: Mapping[str, str], chosen: str, rejected: str, max_indexes: int = 3
) -> dict[str, Any]:
    """One conversational DPO row (TRL preference format with an explicit prompt)."""
    return {
        "prompt": build_messages(observation, max_indexes=max_indexes),
        "chosen": [{"role": "assistant", "content": format_completion(chosen)}],
        "rejected": [{"role": "assistant", "content": format_completion(rejected)}],
    }


def preference_pairs(
    records: Sequence[Mapping[str, Any]], min_gap: float = 0.1, max_pairs: int = 4
) -> list[tuple[Mapping[str, Any], str, str, float]]:
    """``(record, chosen, rejected, gap)`` pairs, grouped by slow query.

    The chosen answers are the slow query's kept rewrites (best first); the rejected ones are
    every other candidate scored for it, kept or not, whose reward is at least ``min_gap`` lower
    (clearest first).
    """
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        groups[r["query_fingerprint"]].append(r)
    out = []
    for recs in groups.values():
        scored: dict[str, float] = {}
        for r in recs:
            scored[r["action"]] = float(r["reward"])
            for x in (*r.get("rejected", ()), *r.get("siblings", ())):
                scored.setdefault(x["action"], float(x["reward"]))
        losers = sorted(scored.items(), key=lambda kv: kv[1])
        pairs = []
        for rec in sorted(recs, key=lambda r: -float(r["reward"])):
            for action, reward in losers:
                gap = float(rec["reward"]) - reward
                if action != rec["action"] and gap >= min_gap:
                    pairs.append((rec, rec["action"], action, round(gap, 6)))
        out += pairs[:max_pairs]
    return out


def _verify(schema: Any, task: Any) -> bool:
    runner = TaskRunner.from_suite(schema.suite, task, schema.scale)
    try:
        result = runner.evaluate(task.reference)
    finally:
        runner.close()
    return result.verdict is Verdict.IMPROVED


def export(
    store: str | os.PathLike[str], out: str | os.PathLike[str], config: ExportConfig | None = None
) -> ExportReport:
    """Write ``sft.jsonl``, ``dpo.jsonl``, ``README.md`` (dataset card) and ``export.json``.

    Args:
        store: a run directory or its ``records.jsonl``.
        out: the output directory (created).
        config: export settings.

    Returns:
        What was written.

    Raises:
        StoreError: the store does not exist or holds no records (nothing is written).
        ConfigError: records come from a held-out test schema and ``config.include_test_schemas``
            is false (nothing is written).
    """
    config = config or ExportConfig()
    records = load_records(store)
    if not records:
        raise StoreError(f"{store} holds no records yet: nothing to export (run quill generate first)")
    held = held_out_records(records)
    check_schemas(held, include_test_schemas=config.include_test_schemas, what="export records of")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = ExportReport(records=len(records))
    report.schemas = dict(Counter(str(r["suite"]) for r in records).most_common())
    report.held_out_schemas = sorted(held)
    builder = ObservationBuilder(records, seed=config.seed)
    sft: list[dict[str, Any]] = []
    dpo: list[dict[str, Any]] = []
    pairs_by_record: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for rec, chosen, rejected, _ in preference_pairs(records, config.min_gap, config.max_pairs_per_query):
        pairs_by_record[rec["id"]].append((chosen, rejected))
    renamable = (ValueError, KeyError, sqlglot.errors.SqlglotError)
    try:
        for rec in records:
            obs = builder.observation(rec)
            sft.append(sft_row(obs, rec["action"], config.max_indexes))
            for chosen, rejected in pairs_by_record.get(rec["id"], ()):
                dpo.append(dpo_row(obs, chosen, rejected, config.max_indexes))
            for copy in range(1, config.multiplier):
                try:
                    obs2, task2, mapping = builder.renamed(rec, copy)
                except renamable as err:
                    report.augment_failures += 1
                    log.debug("cannot rename record %s: %s", rec["id"], err)
                    continue
                if config.verify and not _verify(builder.schema(rec["suite"], rec["scale"], copy), task2):
                    report.verify_failures += 1
                    continue
                sft.append(sft_row(obs2, task2.reference, config.max_indexes))
                report.augmented_rows += 1
                for chosen, rejected in pairs_by_record.get(rec["id"], ()):
                    try:
                        dpo.append(
                            dpo_row(
                                obs2,
                                rename_sql(chosen, mapping),
                                rename_sql(rejected, mapping),
                                config.max_indexes,
                            )
                        )
                    except renamable:
                        report.augment_failures += 1
    finally:
        builder.close()
    report.sft_rows, report.dpo_rows = len(sft), len(dpo)
    for name, rows in (("sft", sft), ("dpo", dpo)):
        path = out / f"{name}.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        report.files[name] = str(path)
    if config.hf:
        report.hf_saved = _save_hf(out, {"sft": sft, "dpo": dpo})
    draws_path = Path(store) / DRAWS_FILE if Path(store).is_dir() else Path(store).with_name(DRAWS_FILE)
    draws = read_jsonl(draws_path)
    card = out / "README.md"
    card.write_text(dataset_card(records, draws, report, config))
    report.files["card"] = str(card)
    summary = out / "export.json"
    report.files["summary"] = str(summary)
    summary.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _save_hf(out: Path, tables: Mapping[str, list[dict[str, Any]]]) -> bool:
    try:
        import datasets
    except ImportError:
        log.info(
            '`datasets` is not installed; skipped the Hugging Face copy (pip install "quill-sql[datasets]")'
        )
        return False
    quiet = not datasets.are_progress_bars_disabled()
    if quiet:  # a "Saving the dataset" bar per table says nothing the export's own summary does not
        datasets.disable_progress_bars()
    try:
        for name, rows in tables.items():
            if rows:
                datasets.Dataset.from_list(rows).save_to_disk(str(out / "hf" / name))
    finally:
        if quiet:
            datasets.enable_progress_bars()
    return True


# --- the dataset card ----------------------------------------------------------------------

CARD_LICENSE = "apache-2.0"
"""The license the card declares: Quill's own (the suites' data is generated by Quill)."""
CARD_TAGS = ("sql", "query-optimization", "text-to-sql", "reinforcement-learning", "quill")


def card_front_matter(report: ExportReport) -> list[str]:
    """The card's YAML front matter (one line each), with a config per non-empty file.

    >>> for line in card_front_matter(ExportReport(records=1, sft_rows=3, dpo_rows=0)):
    ...     print(line)
    ---
    license: apache-2.0
    pretty_name: Quill verified SQL optimization
    task_categories:
    - text-generation
    tags:
    - sql
    - query-optimization
    - text-to-sql
    - reinforcement-learning
    - quill
    configs:
    - config_name: sft
      default: true
      data_files:
      - split: train
        path: sft.jsonl
    ---
    <BLANKLINE>
    """
    lines = ["---", f"license: {CARD_LICENSE}", "pretty_name: Quill verified SQL optimization"]
    lines += ["task_categories:", "- text-generation", "tags:", *(f"- {t}" for t in CARD_TAGS)]
    lines += ["configs:"]
    for i, (name, rows) in enumerate((("sft", report.sft_rows), ("dpo", report.dpo_rows))):
        if rows:  # an empty file is no table: datasets refuses to load it
            lines += [f"- config_name: {name}", *(["  default: true"] if i == 0 else [])]
            lines += ["  data_files:", "  - split: train", f"    path: {name}.jsonl"]
    return [*lines, "---", ""]


def push_to_hub(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    api: Any = None,
) -> str:
    """Upload an export folder to a dataset repository of the Hugging Face Hub.

    Pushes the card and the JSONL files (and ``export.json``); the local ``hf/`` copies are
    left out, since the Hub builds its own tables from the card's configs. The credentials are
    ``token``, else ``HF_TOKEN`` or the login that ``huggingface_hub`` keeps.

    Args:
        folder: a folder written by :func:`export`.
        repo_id: ``user/name`` of the dataset repository (created when missing).
        private: create the repository private.
        token: a Hub token (never stored).
        api: a ``huggingface_hub.HfApi`` (a stand-in in tests); a new one when ``None``.

    Returns:
        The URL of the commit.

    Raises:
        StoreError: ``folder`` is not an export (no ``README.md`` card or no ``sft.jsonl``).
        MissingExtraError: ``huggingface_hub`` is not installed.
    """
    folder = Path(folder)
    if not (folder / "README.md").is_file() or not (folder / "sft.jsonl").is_file():
        raise StoreError(f"{folder} is not a quill export (it needs README.md and sft.jsonl)")
    if api is None:
        try:
            from huggingface_hub import HfApi
        except ImportError:
            raise MissingExtraError("huggingface_hub", "datasets") from None
        api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="dataset",
        allow_patterns=["README.md", "*.jsonl", "export.json"],
        commit_message="Upload a Quill export",
    )
    return str(getattr(commit, "commit_url", commit))


def dataset_card(
    records: Sequence[Mapping[str, Any]],
    draws: Sequence[Mapping[str, Any]],
    report: ExportReport,
    config: ExportConfig,
) -> str:
    """A markdown dataset card: counts, uniqueness, speedup mix vs target, coverage, cost.

    Its YAML front matter names the license, task category and tags, and declares the ``sft``
    and ``dpo`` files as named configs, so ``datasets.load_dataset(folder, "dpo")`` (or the
    Hub's viewer) loads each as its own table.
    """
    s = summarize(records)
    n = max(s["records"], 1)
    usage: Counter[str] = Counter()
    for d in draws:
        usage.update({k: v for k, v in (d.get("usage") or {}).items() if isinstance(v, (int, float))})
    candidates = sum(int(d.get("candidates", 0)) for d in draws)
    kept = sum(int(d.get("kept", 0)) for d in draws)
    lines = [
        *card_front_matter(report),
        "# Quill verified SQL optimization dataset",
        "",
        "Slow SQL queries with rewrites that Quill verified by execution (same results on the main",
        "database and on adversarial variant databases) and measured faster (reward >= 0.25).",
        "",
        "## Counts",
        "",
        "| | |",
        "|---|---|",
        f"| verified records | {s['records']} |",
        f"| unique (slow query, rewrite) keys | {s['unique_keys']} ({s['unique_keys'] / n:.1%}) |",
        f"| unique slow queries | {s['unique_slow_queries']} |",
        f"| unique query shapes (literals ignored) | {s['unique_shapes']} ({s['unique_shapes'] / n:.1%}) |",
        f"| SFT rows (x{config.multiplier} with renamings) | {report.sft_rows} "
        f"({report.augmented_rows} renamed) |",
        f"| DPO pairs (reward gap >= {config.min_gap}) | {report.dpo_rows} |",
        f"| draws / candidates scored / kept | {len(draws)} / {candidates} / {kept} |",
        f"| acceptance rate (kept / scored) | {kept / candidates:.1%} |"
        if candidates
        else "| acceptance rate | - |",
        f"| mean reward / median speedup / geo-mean speedup | {s['mean_reward']:.3f} / "
        f"{s['median_speedup']:.1f}x / {s['geo_mean_speedup']:.1f}x |",
        "",
        "## Speedup mix vs target",
        "",
        "| bucket | share | target |",
        "|---|---|---|",
    ]
    for b, share in s["mix"].items():
        target = s["target_mix"].get(b)
        lines.append(f"| {b} | {share:.1%} | {'-' if target is None else f'{target:.0%}'} |")
    for title, key in (("Pattern coverage", "patterns"), ("Family coverage", "families"),
                       ("Schema coverage", "schemas"), ("Scales", "scales")):  # fmt: skip
        lines += ["", f"## {title}", "", "| name | records |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in s[key].items()]
    proposers = Counter(
        f"{r.get('proposer')}" + (f" ({r['model']})" if r.get("model") else "") for r in records
    )
    lines += ["", "## Provenance and cost", ""]
    lines += [f"- proposer {k}: {v} records" for k, v in proposers.most_common()]
    lines += [f"- slow queries from: {', '.join(sorted({str(r.get('slow_source')) for r in records}))}"]
    lines += [f"- engines: {', '.join(sorted({str(r.get('engine')) for r in records}))}"]
    held = ", ".join(report.held_out_schemas) or "none"
    lines += [f"- held-out test schemas in this data: {held}"]
    lines += [f"- quill versions: {', '.join(sorted({str(r.get('quill_version')) for r in records}))}"]
    if usage:
        lines += ["- teacher usage: " + ", ".join(f"{k}={v:,.4g}" for k, v in sorted(usage.items()))]
    else:
        lines += ["- teacher usage: none (offline run: 0 tokens, $0)"]
    if not report.hf_saved:
        lines += ["- Hugging Face copy: not written (`datasets` not installed or disabled)"]
    return "\n".join(lines) + "\n"


__all__ = [
    "CARD_LICENSE",
    "CARD_TAGS",
    "ExportConfig",
    "ExportReport",
    "ObservationBuilder",
    "card_front_matter",
    "dataset_card",
    "dpo_row",
    "export",
    "load_records",
    "preference_pairs",
    "push_to_hub",
    "sft_row",
]
