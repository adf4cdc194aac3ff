"""TeacherAgent against a local OpenAI-compatible server, through the real ``openai`` client."""

import re
import subprocess
import sys

import pytest
from tests.openai_stub import OpenAIStub, Reply

from quill_agents import Agent
from quill_agents.teacher import TeacherAgent, TeacherConfig, cache_key
from quill_agents.teacher.prompts import slow_query_messages
from quill_env import Verdict, evaluate
from quill_env.errors import ConfigError, MissingExtraError, UnknownNameError
from quill_env.prompt import build_messages

openai = pytest.importorskip("openai")

SLOW = "SELECT u.id, (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.id) AS n FROM users u WHERE u.country = 'NZ'"
FAST = (
    "SELECT u.id, COALESCE(c.n, 0) AS n FROM users u LEFT JOIN "
    "(SELECT user_id, COUNT(*) AS n FROM orders GROUP BY user_id) c ON c.user_id = u.id WHERE u.country = 'NZ'"
)
WRONG = (  # forgets the COALESCE: NULL instead of 0 for users without orders
    "SELECT u.id, c.n FROM users u LEFT JOIN "
    "(SELECT user_id, COUNT(*) AS n FROM orders GROUP BY user_id) c ON c.user_id = u.id WHERE u.country = 'NZ'"
)
SCHEMA = (
    "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, email TEXT, country TEXT);\n"
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), total REAL);"
)
OBS = {"schema": SCHEMA, "query": SLOW, "plan": "SCAN u\nCORRELATED SCALAR SUBQUERY 1\n  SCAN o"}


@pytest.fixture
def stub():
    with OpenAIStub() as server:
        yield server


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def make_agent(stub, tmp_path, sleeps):
    agents = []

    def make(**overrides):
        options = dict(
            model="stub-model",
            base_url=stub.base_url,
            api_key="test-key",
            cache_dir=tmp_path / "cache",
            timeout=2.0,
            max_retries=2,
            backoff=(0.001, 0.01),
        )
        options.update(overrides)
        agent = TeacherAgent(sleep=sleeps.append, **options)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()


def _echo_query(body):
    """Answer an optimization prompt with its own slow query (to check ordering)."""
    match = re.search(r"Slow query:\n```sql\n(.*?)\n```", body["messages"][-1]["content"], re.DOTALL)
    return Reply.sql(match.group(1) if match else "SELECT 0")


# --- the happy path ---------------------------------------------------------------------------


def test_optimize_sends_the_shared_prompt_and_extracts_sql(stub, make_agent, small_db):
    stub.enqueue(Reply.sql(FAST))
    agent = make_agent(temperature=0.2, max_tokens=256, seed=11)
    assert isinstance(agent, Agent) and agent.name == "teacher:stub-model"
    candidate = agent.act(OBS)
    assert candidate == FAST
    (req,) = stub.chat_requests
    assert req.body["messages"] == build_messages(OBS)
    assert (req.body["model"], req.body["temperature"], req.body["max_tokens"]) == ("stub-model", 0.2, 256)
    assert req.body["seed"] == 11 and not req.body.get("stream")
    assert req.headers["authorization"] == "Bearer test-key"
    assert evaluate(small_db, SLOW, candidate).verdict is Verdict.IMPROVED


def test_k_samples_are_separate_requests_with_distinct_seeds(stub, make_agent):
    stub.enqueue(Reply.sql("SELECT 1"), Reply.sql("SELECT 2"), Reply.sql("SELECT 3"))
    agent = make_agent(seed=5, concurrency=1)
    assert agent.optimize(OBS, k=3) == ["SELECT 1", "SELECT 2", "SELECT 3"]
    assert sorted(r.body["seed"] for r in stub.chat_requests) == [5, 6, 7]
    with pytest.raises(ConfigError):
        agent.optimize(OBS, k=0)


# --- retries ---------------------------------------------------------------------------------


def test_429_is_retried_after_the_retry_after_delay(stub, make_agent, sleeps):
    stub.enqueue(Reply.error(429, retry_after=0.05), Reply.sql(FAST))
    agent = make_agent()
    assert agent.act(OBS) == FAST
    assert len(stub.chat_requests) == 2
    assert sleeps == [0.05]  # the server's hint, not the (tiny) backoff
    assert (agent.usage.requests, agent.usage.retries, agent.usage.errors) == (2, 1, [])


def test_500_is_retried_with_exponential_backoff(stub, make_agent, sleeps):
    stub.enqueue(Reply.error(500), Reply.error(503), Reply.sql(FAST))
    agent = make_agent(max_retries=3, backoff=(0.01, 1.0))
    assert agent.act(OBS) == FAST
    assert len(stub.chat_requests) == 3 and agent.usage.retries == 2
    assert len(sleeps) == 2
    assert 0.005 <= sleeps[0] < 0.01 and 0.01 <= sleeps[1] < 0.02  # base * 2**attempt, jittered


def test_persistent_5xx_is_an_empty_candidate_and_a_recorded_error(stub, make_agent):
    stub.default = Reply.error(502)
    agent = make_agent(max_retries=2)
    assert agent.optimize(OBS, k=1) == [""]
    assert len(stub.chat_requests) == 3
    assert len(agent.usage.errors) == 1 and "HTTP 502" in agent.usage.errors[0]
    assert "gave up after 3 attempts" in agent.usage.errors[0]
    stub.default = Reply.sql(FAST)  # failures are not cached: the next run asks again
    assert agent.act(OBS) == FAST


def test_other_4xx_is_not_retried(stub, make_agent, sleeps):
    stub.enqueue(Reply.error(400))
    agent = make_agent()
    assert agent.act(OBS) == ""
    assert len(stub.chat_requests) == 1 and sleeps == [] and agent.usage.retries == 0
    assert "HTTP 400" in agent.usage.errors[0]


@pytest.mark.parametrize("status", [401, 404])
def test_bad_key_or_unknown_model_is_a_config_error(stub, make_agent, status):
    stub.enqueue(Reply.error(status))
    with pytest.raises(ConfigError, match=f"HTTP {status}"):
        make_agent().act(OBS)


def test_hang_times_out_and_is_retried(stub, make_agent):
    stub.enqueue(Reply.hang(1.0), Reply.sql(FAST))
    agent = make_agent(timeout=0.25)
    assert agent.act(OBS) == FAST
    assert agent.usage.retries == 1 and agent.usage.errors == []


def test_hang_on_every_attempt_is_recorded_not_raised(stub, make_agent):
    stub.default = Reply.hang(1.0)
    agent = make_agent(timeout=0.25, max_retries=1)
    assert agent.act(OBS) == ""
    assert len(stub.chat_requests) == 2
    assert "timed out" in agent.usage.errors[0]


# --- whatever comes back is data ---------------------------------------------------------------


def test_malformed_json_is_a_rejected_candidate(stub, make_agent, small_db):
    stub.enqueue(Reply.malformed())
    agent = make_agent()
    candidate = agent.act(OBS)
    assert candidate == ""
    assert len(stub.chat_requests) == 1 and "malformed response" in agent.usage.errors[0]
    assert evaluate(small_db, SLOW, candidate).verdict in (Verdict.SYNTAX_ERROR, Verdict.REJECTED)


def test_prose_without_sql_gives_no_candidate(stub, make_agent, small_db):
    stub.enqueue(Reply.prose(), Reply.prose())
    agent = make_agent()
    candidate = agent.act(OBS)
    assert candidate == "" and agent.usage.errors == []  # a model answer, not a failure
    assert evaluate(small_db, SLOW, candidate).verdict is Verdict.SYNTAX_ERROR
    assert agent.write_slow_query(SCHEMA, "or_to_in") is None


def test_wrong_sql_is_scored_wrong_result(stub, make_agent, small_db):
    stub.enqueue(Reply.sql(WRONG))
    candidate = make_agent().act(OBS)
    assert candidate == WRONG
    assert evaluate(small_db, SLOW, candidate).verdict is Verdict.WRONG_RESULT


# --- cache, accounting, concurrency ------------------------------------------------------------


def test_cache_makes_a_rerun_free_and_k_can_grow(stub, make_agent):
    stub.default = Reply.sql(FAST, prompt_tokens=100, completion_tokens=10)
    prices = dict(price_per_1k_input=1.0, price_per_1k_output=2.0, seed=3)
    first = make_agent(**prices)
    assert first.optimize(OBS, k=3) == [FAST] * 3
    assert len(stub.chat_requests) == 3 and first.usage.dollars > 0

    rerun = make_agent(**prices)
    assert rerun.optimize(OBS, k=3) == [FAST] * 3
    assert len(stub.chat_requests) == 3  # zero new requests
    usage = rerun.usage.to_dict()
    assert (usage["requests"], usage["cache_hits"], usage["total_tokens"], usage["dollars"]) == (0, 3, 0, 0.0)

    assert rerun.optimize(OBS, k=5) == [FAST] * 5
    assert len(stub.chat_requests) == 5  # only samples 3 and 4 were asked for
    assert sorted(r.body["seed"] for r in stub.chat_requests[3:]) == [6, 7]

    other = make_agent(**(prices | {"temperature": 0.1}))  # a different request: a miss
    other.act(OBS)
    assert len(stub.chat_requests) == 6


def test_corrupt_cache_entry_is_a_miss(stub, make_agent):
    agent = make_agent()
    agent.act(OBS)
    key = cache_key(agent._transport.request(build_messages(OBS), 0))
    path = agent._transport.cache.path(key)
    path.write_text("{not json")
    assert make_agent().act(OBS) == "SELECT 1"
    assert len(stub.chat_requests) == 2 and path.read_text().startswith("{")


def test_token_and_dollar_accounting_matches_the_server(stub, make_agent):
    stub.enqueue(
        Reply.sql("SELECT 1", prompt_tokens=1000, completion_tokens=500),
        Reply.error(429, retry_after=0),
        Reply.sql("SELECT 2", prompt_tokens=3000, completion_tokens=250),
    )
    agent = make_agent(price_per_1k_input=0.5, price_per_1k_output=2.0, concurrency=1, cache=False)
    agent.act(OBS)
    agent.act(OBS)
    usage = agent.usage.to_dict()
    assert usage["prompt_tokens"] == 4000 and usage["completion_tokens"] == 750
    assert usage["total_tokens"] == 4750
    assert usage["dollars"] == pytest.approx(4.0 * 0.5 + 0.75 * 2.0)
    assert (usage["requests"], usage["retries"], usage["cache_hits"]) == (3, 1, 0)


def test_concurrency_limit_is_respected_and_order_kept(make_agent):
    with OpenAIStub(default=_echo_query, delay=0.15) as slow_stub:
        agent = make_agent(base_url=slow_stub.base_url, concurrency=2, cache=False)
        observations = [dict(OBS, query=f"SELECT {i} FROM users") for i in range(6)]
        assert agent.act_batch(observations) == [o["query"] for o in observations]
        assert slow_stub.max_in_flight == 2
        assert len(slow_stub.chat_requests) == 6


# --- writing slow queries ----------------------------------------------------------------------


def test_write_slow_query_returns_one_runnable_query(stub, make_agent, small_db):
    query = "SELECT * FROM orders WHERE user_id = 3 OR user_id = 7 OR user_id = 9"
    stub.enqueue(Reply.sql(query + ";"))
    agent = make_agent()
    examples = [
        "SELECT id FROM users WHERE country = 'NZ' OR country = 'AU'",
        {"query": SLOW, "patterns": ["x"]},
    ]
    assert agent.write_slow_query(SCHEMA, "or_to_in", examples) == query
    prompt = stub.chat_requests[0].body["messages"][-1]["content"]
    assert (
        "or_to_in" in prompt and "instead of IN" in prompt and "country = 'AU'" in prompt and SCHEMA in prompt
    )
    assert evaluate(small_db, query, query).verdict is Verdict.UNCHANGED  # it runs on the schema


def test_write_slow_query_rejects_non_queries_and_unknown_patterns(stub, make_agent):
    stub.enqueue(Reply.sql("DELETE FROM orders"), Reply.sql("SELECT 1; SELECT 2"))
    agent = make_agent()
    assert agent.write_slow_query(SCHEMA, "correlated_subquery") is None
    assert agent.write_slow_query(SCHEMA, "correlated_subquery", sample=1) is None
    assert agent.write_slow_query(SCHEMA, "cartesian") is not None  # a generator family name works
    with pytest.raises(UnknownNameError, match="did you mean 'select_star'"):
        agent.write_slow_query(SCHEMA, "select_stars")
    assert len(stub.chat_requests) == 3


# --- the stub itself, with the raw client -------------------------------------------------------


def test_stub_streams_server_sent_events_to_the_raw_client(stub):
    client = openai.OpenAI(base_url=stub.base_url, api_key="k", max_retries=0)
    assert [m.id for m in client.models.list()] == ["stub-model"]
    reply = Reply.sql(FAST, prompt_tokens=21, completion_tokens=9)
    stub.enqueue(reply)
    stream = client.chat.completions.create(
        model="stub-model",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (21, 9)
    assert stub.chat_requests[0].body["stream"] is True
    client.close()


# --- configuration -----------------------------------------------------------------------------


def test_endpoint_comes_from_the_environment(stub, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
    monkeypatch.setenv("QUILL_TEACHER_MODEL", "env-model")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with TeacherAgent(cache_dir=tmp_path) as agent:
        assert agent.act(OBS) == "SELECT 1"
    req = stub.chat_requests[0]
    assert req.body["model"] == "env-model" and req.headers["authorization"] == "Bearer not-needed"


def test_config_is_validated(monkeypatch):
    for bad in (
        dict(temperature=3.0),
        dict(max_tokens=0),
        dict(timeout=0),
        dict(max_retries=-1),
        dict(backoff=(2.0, 1.0)),
        dict(backoff="fast"),
        dict(concurrency=0),
        dict(price_per_1k_input=-1),
        dict(seed="x"),
        dict(model=""),
    ):
        with pytest.raises(ConfigError):
            TeacherConfig(**bad)
    with pytest.raises(ConfigError, match="unknown TeacherConfig field"):
        TeacherConfig().with_overrides(modle="x")
    monkeypatch.delenv("QUILL_TEACHER_MODEL", raising=False)
    with pytest.raises(ConfigError, match="QUILL_TEACHER_MODEL"):
        TeacherConfig().resolve()
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        TeacherConfig(model="gpt-4o-mini").resolve()


def test_openai_is_imported_lazily(monkeypatch):
    code = "import sys, quill_agents, quill_agents.teacher; assert 'openai' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(MissingExtraError, match=r"quill-sql\[teacher\]"):
        TeacherAgent(model="m", base_url="http://127.0.0.1:9/v1")


def test_slow_query_prompt_names_the_engine_the_query_must_run_on():
    schema = "CREATE TABLE t(a INTEGER)"
    default = "\n".join(m["content"] for m in slow_query_messages(schema, "not_in"))
    duck = "\n".join(m["content"] for m in slow_query_messages(schema, "not_in", engine="DuckDB"))
    assert "run on SQLite" in default and "Database schema (SQLite)" in default
    assert "run on DuckDB" in duck and "Database schema (DuckDB)" in duck and "SQLite" not in duck
