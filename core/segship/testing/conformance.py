"""The conformance suite: what every destination must do, as tests a plugin runs by subclassing one class.

A plugin's tests subclass :class:`DestinationConformance` in a class whose name starts with ``Test``
and supply only what is particular to the plugin; pytest then runs every ``test_…`` below
against it (as Singer SDK's standard target tests do)::

    class TestHubSpotConformance(DestinationConformance):
        destination = HubSpotDestination
        key_column = "id"
        mapping = {"email": "email"}
        settings = {"list": "a"}
        moved_settings = {"list": "b"}                        # another target: members move there

        def row(self, number):                                # a row the destination accepts
            return {"id": f"C{number}", "email": f"member{number}@example.com"}

        def connection_settings(self, url):                   # reaching `url`, with the key
            return {"base_url": url, "api_key": self.api_key}

        def answer(self, request):                            # how the service answers (or: upstream())
            return FakeAnswer(200, json={"results": [...]})

The destination talks to a :class:`~segship.testing.fake_server.FakeServer` on 127.0.0.1, which
answers with ``answer`` or, when ``upstream()`` serves a sandbox, passes the requests on to it;
either way the suite adds its faults (429, 5xx, a refused key, dropped connections) in front and
records every request. A test failing here says which promise the destination breaks.
"""

from __future__ import annotations

import asyncio
import copy
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segship import event_loop
from segship.destination import (
    ConnectionContext,
    Destination,
    DestinationError,
    ExportContext,
    Member,
    Record,
    Records,
    RowRejected,
)
from segship.network import NetworkSettings
from segship.ratelimit import RateLimit
from segship.testing import strategies
from segship.testing.fake_server import FakeAnswer, FakeServer, RecordedRequest
from segship.testing.harness import ExportHarness, secret_paths

T = TypeVar("T")

#: A key no server accepts; the suite checks it never shows in a message or a report.
WRONG_KEY = "segship-wrong-key-5c1e88f0d2a94b37"
#: Retries within a second or two: the suite's faults are few, and a run that must fail fails fast.
QUICK_RETRIES = NetworkSettings(max_attempts=4, max_seconds=10.0)


def fail(message: str) -> None:
    """Fail the test with ``message`` alone: it names the broken promise, a traceback would hide it."""
    pytest.fail(message, pytrace=False)


def run(coroutine: Awaitable[T]) -> T:
    """Run a coroutine to its end on the event loop exports run on."""

    async def main() -> T:
        return await coroutine

    return event_loop.run(main())


class DestinationConformance:
    """The standard tests of a destination plugin (see the module's docstring for an example).

    A subclass sets ``destination``, ``key_column`` and ``mapping`` (and ``settings`` when its
    export settings need some), implements ``row`` and ``connection_settings``, and says how the
    service answers: ``answer`` (for the fake server) or ``upstream`` (a running sandbox). The
    other class attributes switch on the tests that need them.
    """

    #: The destination class under test.
    destination: ClassVar[type[Destination]]
    #: The segment column holding each member's key.
    key_column: ClassVar[str]
    #: An export's ``mapping`` that reads the columns ``row`` gives.
    mapping: ClassVar[dict[str, Any]]
    #: An export's ``settings``.
    settings: ClassVar[dict[str, Any]] = {}
    #: Export ``settings`` values naming another target (``{"list_id": 4}``): members move there.
    moved_settings: ClassVar[dict[str, Any] | None] = None
    #: Connection settings that pace requests slowly, and the limit the requests must then keep
    #: (``({"requests_per_second": 2}, RateLimit(2, 1.0))``); None skips the pacing test.
    paced: ClassVar[tuple[dict[str, Any], RateLimit] | None] = None
    #: The path of the requests pacing applies to (None: every request the destination makes).
    paced_path: ClassVar[str | None] = None
    #: The key the destination is given; the server (or sandbox) must accept it and refuse others.
    api_key: ClassVar[str] = "segship-conformance-key-7d2f9a41c0b8"
    #: Kinds of values (names in ``segship.testing.strategies.KINDS``) the random batches hold in a
    #: mapped column; a column not named here holds values of every kind.
    column_kinds: ClassVar[dict[str, list[str]]] = {}
    #: How many random batches ``map_batch`` is compared with ``map`` on.
    examples: ClassVar[int] = 60

    # -- what a plugin supplies -----------------------------------------------------------------

    def row(self, number: int) -> dict[str, Any]:
        """Segment row ``number`` (with ``key_column``): one the destination accepts, of its own member."""
        raise NotImplementedError(f"{type(self).__name__} must define row(number)")

    def connection_settings(self, url: str) -> dict[str, Any]:
        """Connection settings reaching the service at ``url``, with ``api_key`` as the key."""
        raise NotImplementedError(f"{type(self).__name__} must define connection_settings(url)")

    def answer(self, request: RecordedRequest) -> FakeAnswer | None:
        """How the service answers ``request`` (as the fake server's handler); None passes it on to
        ``upstream``. A plugin overrides this or ``upstream``."""
        return None

    def upstream(self) -> AbstractContextManager[str | None]:
        """A context that serves the service's stand-in (a sandbox accepting ``api_key`` only) and gives
        its base URL; the default serves none (``answer`` answers)."""
        return nullcontext(None)

    def encode(self, payload: Any) -> bytes:
        """A payload as bytes, to compare two payloads (``encode_payload`` unless overridden)."""
        return encode_payload(payload)

    # -- fixtures and helpers -------------------------------------------------------------------

    @pytest.fixture
    def server(self) -> Iterator[FakeServer]:
        """The fake server the destination talks to (in front of ``upstream`` when there is one)."""
        with self.upstream() as upstream, FakeServer(self.answer, upstream=upstream) as server:
            yield server

    @pytest.fixture
    def harness(self, tmp_path: Path, server: FakeServer) -> ExportHarness:
        """An export of the destination to ``server``, run in-process."""
        return ExportHarness(tmp_path, self.destination, connection=self.connection_settings(server.url),
                             settings=self.settings, mapping=self.mapping, key=self.key_column,
                             network={"retries": {"max_attempts": QUICK_RETRIES.max_attempts,
                                                  "max_seconds": QUICK_RETRIES.max_seconds}})

    def build(self, url: str = "http://127.0.0.1:9", *, connection: Mapping[str, Any] | None = None,
              export_settings: Mapping[str, Any] | None = None) -> Destination:
        """A destination instance, as the engine builds one (its settings as given, no I/O)."""
        context = ConnectionContext("conformance", dict(connection or self.connection_settings(url)), QUICK_RETRIES)
        return self.destination(context, ExportContext("conformance", dict(self.settings if export_settings is None
                                                                              else export_settings),
                                                       self.mapping, ("members",)))

    def rows(self, count: int, start: int = 0) -> list[dict[str, Any]]:
        return [self.row(number) for number in range(start, start + count)]

    def records(self, destination: Destination, rows: list[dict[str, Any]]) -> Records:
        """The rows mapped as the engine maps them for a join (keys from ``key_column``)."""
        keys, identities, payloads = [], [], []
        for row in rows:
            try:
                record = destination.map(row, None)
            except RowRejected as exc:
                fail(f"map refused row {row!r} ({exc.reason}); row(number) must give rows the destination accepts")
            keys.append(str(row[self.key_column]))
            identities.append(record.identity)
            payloads.append(record.payload)
        return Records(keys, identities, payloads)

    def outcome(self, destination: Destination, row: Mapping[str, Any],
                changed: frozenset[str] | None) -> tuple[Any, ...]:
        return mapped_outcome(destination, row, changed, self.encode)

    def session(self, destination: Destination, work: Callable[[Destination], Awaitable[T]]) -> T:
        """Check the connection, prepare, do ``work``, and always finish, as a run does."""

        async def lifecycle() -> T:
            try:
                await destination.check_connection()
                await destination.prepare()
                return await work(destination)
            finally:
                await destination.finish()

        return run(lifecycle())

    def _answered_each(self, what: str, sent: list[str], results: Any) -> None:
        results = list(results)
        if len(results) != len(sent):
            fail(f"{what} answered {len(results)} result(s) for {len(sent)} record(s): it must return exactly one "
                 f"RecordResult per record")
        answered = Counter(result.key for result in results)
        missing = sorted((Counter(sent) - answered).elements())
        unexpected = sorted((answered - Counter(sent)).elements())
        if missing or unexpected:
            fail(f"{what} answered for the wrong records: missing {missing}, not sent {unexpected}; "
                 f"each RecordResult carries the key of its record")
        refused = {result.key: result.error for result in results if result.error is not None}
        if refused:
            fail(f"{what} refused records the service accepted: {refused}")

    # -- the tests ------------------------------------------------------------------------------

    def test_map_is_pure_and_deterministic(self) -> None:
        """``map`` gives the same answer for the same row, every time and on every instance, and leaves
        the row as it was: ``--dry-run`` and ``plan`` rely on it, and state hashes what it sends."""
        first, second = self.build(), self.build()
        columns = self.destination.source_columns(self.mapping)
        for row in self.rows(5):
            for changed in (None, frozenset(columns), frozenset(columns[:1]), frozenset()):
                before = copy.deepcopy(row)
                answers = [self.outcome(first, row, changed), self.outcome(first, row, changed),
                           self.outcome(second, row, changed)]
                if row != before:
                    fail(f"map changed the row it was given: {before!r} became {row!r}")
                if answers[0] != answers[1] or answers[0] != answers[2]:
                    fail(f"map is not deterministic: row {row!r} (changed_columns={changed}) was mapped to "
                         f"{answers[0]!r}, then {answers[1]!r}, then on another instance {answers[2]!r}")
                if changed is None and answers[0][0] == "refused":
                    fail(f"map refused row {row!r} ({answers[0][1]}); row(number) must give rows it accepts")

        @settings(max_examples=self.examples, deadline=None, suppress_health_check=list(HealthCheck))
        @given(strategies.rows(columns))
        def random_rows(row: dict[str, Any]) -> None:
            if self.outcome(first, row, None) != self.outcome(second, row, None):
                fail(f"map is not deterministic: two instances mapped row {row!r} differently")

        random_rows()

    def test_map_batch_gives_what_map_gives(self) -> None:
        """``map_batch`` gives, row for row, ``map``'s identity and payload or its refusal and reason, for
        random batches (Unicode, huge text, nulls, NaN, big decimals, times with and without a zone,
        nested lists), as joins and as changes."""
        destination = self.build()
        columns = self.destination.source_columns(self.mapping)
        kinds = {column: self.column_kinds.get(column, list(strategies.KINDS)) for column in columns}
        assert_batch_maps_as_rows(destination, pa.RecordBatch.from_pylist(
            [{column: row.get(column) for column in columns} for row in self.rows(5)]), None, self.encode)

        @settings(max_examples=self.examples, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.data())
        def random_batches(data: st.DataObject) -> None:
            rows, _ = data.draw(strategies.batches(kinds))
            assert_batch_maps_as_rows(destination, rows, data.draw(strategies.changes(rows.num_rows, columns)),
                                      self.encode)

        random_batches()

    def test_upsert_and_remove_answer_every_record(self, server: FakeServer) -> None:
        """``upsert`` and ``remove`` answer each record they are given with its own result, no more, no
        fewer: a record without one is sent again next run, an answer for another is ignored."""
        destination = self.build(server.url)
        records = self.records(destination, self.rows(3))

        async def upsert_then_remove(destination: Destination) -> tuple[Any, Any]:
            upserted = await destination.upsert(records)
            removed = await destination.remove([Member(key, identity) for key, identity
                                                in zip(records.keys, records.identities)])
            return upserted, removed

        upserted, removed = self.session(destination, upsert_then_remove)
        self._answered_each("upsert", list(records.keys), upserted)
        self._answered_each("remove", list(records.keys), removed)

    def test_a_full_batch_is_accepted(self, server: FakeServer) -> None:
        """The batch sizes in ``limits`` are ones the service takes: an upsert of ``upsert_batch_size``
        records and a removal of ``remove_batch_size`` are answered record by record."""
        destination = self.build(server.url)
        limits = destination.limits
        for name in ("upsert_batch_size", "remove_batch_size", "concurrency"):
            value = getattr(limits, name)
            if not isinstance(value, int) or value < 1:
                fail(f"limits.{name} is {value!r}: a positive int")
        records = self.records(destination, self.rows(limits.upsert_batch_size))
        leavers = [Member(key, identity) for key, identity
                   in zip(records.keys[:limits.remove_batch_size], records.identities)]

        async def full_batches(destination: Destination) -> tuple[Any, Any]:
            return await destination.upsert(records), await destination.remove(leavers)

        upserted, removed = self.session(destination, full_batches)
        self._answered_each(f"upsert of a full batch ({limits.upsert_batch_size})", list(records.keys), upserted)
        self._answered_each(f"remove of a full batch ({limits.remove_batch_size})",
                            [member.key for member in leavers], removed)

    def test_requests_are_paced(self, server: FakeServer) -> None:
        """With settings that pace it slowly, the destination keeps to the limit, however many batches are
        in flight (``HttpClient`` paces to a ``RateLimit``): a window more than the limit holds takes a
        window's time."""
        if self.paced is None:
            pytest.skip("set `paced` (connection settings and the RateLimit they set) to test pacing")
        paced_settings, limit = self.paced
        destination = self.build(connection={**self.connection_settings(server.url), **paced_settings})
        rows = self.rows(limit.requests + 2)  # one more than a window holds, and another
        batches = [self.records(destination, [row]) for row in rows]

        async def upserts(destination: Destination) -> None:
            server.clear()
            flight = asyncio.Semaphore(destination.limits.concurrency)

            async def one(records: Records) -> None:
                async with flight:
                    await destination.upsert(records)

            await asyncio.gather(*(one(records) for records in batches))

        self.session(destination, upserts)
        times = [request.at for request in server.requests if self.paced_path in (None, request.path)]
        # judged over the whole span, not window by window: the server sees requests later than the
        # client paced them, and unevenly on a busy machine, but never earlier
        needed = (len(times) - 1) // limit.requests * limit.per_seconds
        span = times[-1] - times[0] if times else 0.0
        if len(times) < len(batches) or span < needed * 0.8:
            fail(f"{len(times)} requests reached the server within {span:.2f} s; with "
                 f"{paced_settings} the destination must send at most {limit.requests} per {limit.per_seconds:g} s, "
                 f"so they take {needed:g} s at least")

    def test_429_and_5xx_are_retried(self, server: FakeServer) -> None:
        """A 429 (with ``Retry-After``), a 5xx and a dropped connection are retried, and the batch is then
        acknowledged: the run goes on as if nothing happened."""
        destination = self.build(server.url)
        records = self.records(destination, self.rows(2))

        async def upsert_through_faults(destination: Destination) -> Any:
            server.script(FakeAnswer(429, json={"message": "Too Many Requests"}, headers={"Retry-After": "0"}),
                          FakeAnswer(503, json={"message": "Service Unavailable"}), FakeAnswer(drop=True))
            seen = len(server.requests)
            try:
                results = await destination.upsert(records)
            except Exception as exc:  # noqa: BLE001 - the failure says what should have happened
                fail(f"upsert raised {type(exc).__name__}: {exc} after a 429, a 503 and a dropped connection: "
                     f"those must be retried (make requests with segship.http.HttpClient)")
            if len(server.requests) - seen < 4:
                fail(f"upsert made {len(server.requests) - seen} request(s) through a 429, a 503 and a dropped "
                     f"connection: each must be retried")
            return results

        self._answered_each("upsert after retries", list(records.keys),
                            self.session(destination, upsert_through_faults))

    def test_a_refused_key_stops_the_run_without_showing_it(self, server: FakeServer, harness: ExportHarness) -> None:
        """A key the service refuses makes ``check_connection`` raise ``DestinationError`` with a message
        that says what to fix and never holds the key, even when the service quotes it back; a run
        then fails with that message, and nothing of the key reaches its report."""

        def refuse(request: RecordedRequest) -> FakeAnswer:
            quoted = " ".join(request.headers.values())  # a careless service quotes what it got
            return FakeAnswer(401, json={"message": f"unauthorized: {quoted}", "code": "unauthorized"})

        server.handler = refuse
        connection = _with_secrets(self.connection_settings(server.url), self.destination, WRONG_KEY)
        destination = self.build(connection=connection)

        async def check() -> None:
            try:
                description = await destination.check_connection()
            except DestinationError as exc:
                message = str(exc)
                if WRONG_KEY in message:
                    fail(f"check_connection's error holds the key: {message.replace(WRONG_KEY, '<the key>')!r}; "
                         f"register the key with segship.secrets.redactor and redact quoted answers")
                if not message.strip():
                    fail("check_connection raised DestinationError without a message: say what to fix")
            except Exception as exc:  # noqa: BLE001 - the failure says what to raise instead
                fail(f"check_connection raised {type(exc).__name__} for a refused key: raise DestinationError "
                     f"with a message saying what to fix")
            else:
                fail(f"check_connection accepted a key the service refuses (it said {description!r})")
            finally:
                try:
                    await destination.finish()
                except Exception as exc:  # noqa: BLE001 - the failure names it
                    fail(f"finish raised {type(exc).__name__}: {exc} after check_connection failed; it is "
                         f"called after any failure, so it must close only what was opened")

        run(check())
        harness.connection = connection
        harness.write_rows(self.rows(2))
        report = harness.run()
        if report["outcome"] != "failed":
            fail(f"a run with a refused key ended {report['outcome']!r}, not 'failed': {report['message']}")
        if WRONG_KEY in orjson.dumps(report, default=str).decode():
            fail("the run's report holds the key")

    def test_finish_is_called_once_even_after_a_failure(self, server: FakeServer, harness: ExportHarness) -> None:
        """``finish`` closes what was opened without failing itself, whatever failed before it: on an
        instance that never connected, and in a run whose requests all fail."""
        try:
            run(self.build(server.url).finish())
        except Exception as exc:  # noqa: BLE001 - the failure names it
            fail(f"finish raised {type(exc).__name__}: {exc} on a destination that never connected")
        finished: list[BaseException | None] = []
        base = self.destination

        class Finishing(base):  # type: ignore[misc, valid-type] - a spy on the class under test
            async def finish(self) -> None:
                try:
                    await super().finish()
                except BaseException as exc:
                    finished.append(exc)
                    raise
                finished.append(None)

        Finishing.__name__ = base.__name__
        harness.destination = Finishing
        harness.write_rows(self.rows(3))
        server.handler = lambda request: FakeAnswer(500, json={"message": "Internal Server Error"})
        report = harness.run()
        if report["outcome"] != "failed":
            fail(f"a run whose every request got 500 ended {report['outcome']!r}, not 'failed'")
        if len(finished) != 1:
            fail(f"finish was called {len(finished)} times in a failed run: the engine calls it once")
        if finished[0] is not None:
            fail(f"finish raised {type(finished[0]).__name__}: {finished[0]} after a failed run")

    def test_dry_run_and_plan_work_without_secrets(self, server: FakeServer, harness: ExportHarness) -> None:
        """``plan`` and ``export --dry-run`` work with the secrets unresolved (CI without them) and send
        nothing: building the destination, ``limits`` and ``map`` need no key and no connection."""
        harness.write_rows(self.rows(4))
        plan = harness.plan()
        if plan["add"] != 4:
            fail(f"plan planned {plan['add']} joins for 4 new members")
        report = harness.run(dry_run=True, unresolved=True)
        if report["outcome"] not in ("succeeded", "rejects"):
            fail(f"a dry run with the secrets unresolved ended {report['outcome']!r}: {report['message']}")
        if server.requests:
            fail(f"plan and a dry run sent {len(server.requests)} request(s): they must open no connection")

    def test_a_changed_target_moves_members(self, harness: ExportHarness) -> None:
        """Changing a setting of ``target_settings`` moves the members: ``plan`` says so, and the next run
        removes them from the old target and adds them to the new one."""
        changed = set(self.moved_settings or {}) & set(self.destination.target_settings)
        if not self.destination.target_settings:
            pytest.skip(f"{self.destination.__name__} declares no target_settings")
        if not changed:
            fail("set moved_settings to export settings that change one of the destination's target_settings "
                 f"({', '.join(self.destination.target_settings)})")
        harness.write_rows(self.rows(3))
        first = harness.run()
        if first["outcome"] != "succeeded" or first["upserted"] != 3:
            fail(f"the first run ended {first['outcome']!r} with {first['upserted']} of 3 members sent: "
                 f"{first['message']}")
        harness.settings = {**self.settings, **(self.moved_settings or {})}
        plan = harness.plan()
        if plan["move"] != 3:
            fail(f"after changing {sorted(changed)}, plan moves {plan['move']} of 3 members")
        moved = harness.run()
        if moved["outcome"] != "succeeded" or moved["upserted"] != 3 or moved["removed"] != 3:
            fail(f"the run after changing {sorted(changed)} ended {moved['outcome']!r}, adding {moved['upserted']} "
                 f"and removing {moved['removed']} of 3 moving members: {moved['message']}")

    def test_secret_settings_are_marked(self) -> None:
        """Every connection setting that holds the key is marked ``"x-secret": true`` in
        ``connection_schema``, so `segship validate` refuses it written in clear."""
        marked = secret_paths(self.destination.connection_schema)
        holding = [path for path, value in _leaves(self.connection_settings("http://127.0.0.1:9"))
                   if value == self.api_key]
        if not holding:
            fail("connection_settings(url) must put api_key in the settings")
        unmarked = [".".join(path) for path in holding if path not in marked]
        if unmarked:
            fail(f"connection_schema doesn't mark {unmarked} \"x-secret\": true, yet it holds the key")


def encode_payload(payload: Any) -> bytes:
    """A payload as bytes, to compare two: bytes as they are, anything else as JSON (a NaN stays NaN)."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    return orjson.dumps(_comparable(payload), option=orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME,
                        default=repr)


def mapped_outcome(destination: Destination, row: Mapping[str, Any], changed: frozenset[str] | None,
                   encode: Callable[[Any], bytes] = encode_payload) -> tuple[Any, ...]:
    """What ``map`` makes of a row, comparably: ("mapped", identity, encoded payload) or ("refused", reason)."""
    try:
        record = destination.map(row, changed)
    except RowRejected as exc:
        return ("refused", exc.reason)
    except Exception as exc:  # noqa: BLE001 - the failure names what map raised
        fail(f"map raised {type(exc).__name__}: {exc} for row {row!r}; a row it can't send must raise "
             f"RowRejected(reason)")
    if not isinstance(record, Record):
        fail(f"map returned {type(record).__name__}, not a segship.destination.Record")
    return ("mapped", record.identity, encode(record.payload), tuple(record.dropped))


def assert_batch_maps_as_rows(destination: Destination, rows: pa.RecordBatch,
                              changed: Sequence[frozenset[str] | None] | None,
                              encode: Callable[[Any], bytes] = encode_payload) -> list[tuple[Any, ...]]:
    """Fail unless ``map_batch`` gives, row for row, what ``map`` gives; return ``map``'s outcomes
    (``mapped_outcome``), for a plugin's own property tests to check further."""
    mapped = destination.map_batch(rows, changed)
    if not len(mapped.identities) == len(mapped.payloads) == rows.num_rows:
        fail(f"map_batch gave {len(mapped.identities)} identities and {len(mapped.payloads)} payloads for "
             f"{rows.num_rows} rows: one of each per row (a placeholder for a refused row)")
    if not set(mapped.rejects) <= set(range(rows.num_rows)):
        fail(f"map_batch refused rows {sorted(set(mapped.rejects) - set(range(rows.num_rows)))} of a batch of "
             f"{rows.num_rows}")
    if set(mapped.dropped) & set(mapped.rejects):
        fail(f"map_batch dropped fields of rows it refused {sorted(set(mapped.dropped) & set(mapped.rejects))}: "
             f"a refused row has no record to drop a field from")
    outcomes = []
    for index, row in enumerate(rows.to_pylist()):
        expected = mapped_outcome(destination, row, None if changed is None else changed[index], encode)
        got = (("refused", mapped.rejects[index]) if index in mapped.rejects
               else ("mapped", mapped.identities[index], encode(mapped.payloads[index]),
                     tuple(mapped.dropped.get(index, ()))))
        if got != expected:
            fail(f"map_batch and map disagree on row {index} {row!r} (changed: "
                 f"{None if changed is None else changed[index]}): map gives {expected!r}, map_batch {got!r}")
        outcomes.append(expected)
    return outcomes


def _comparable(value: Any) -> Any:
    """A payload JSON can hold exactly: a NaN is not null, a decimal keeps its digits, a tuple is a list."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN (float)"
    if isinstance(value, Mapping):
        return {key: _comparable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_comparable(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted(map(repr, value))
    if isinstance(value, bytes | bytearray):
        return repr(bytes(value))
    return value


def _leaves(settings: Mapping[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name, value in settings.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, (*path, name))
        else:
            yield (*path, name), value


def _with_secrets(settings: Mapping[str, Any], destination: type[Destination], value: str) -> dict[str, Any]:
    """``settings`` with every secret the schema marks replaced by ``value``."""
    result = copy.deepcopy(dict(settings))
    for path in secret_paths(destination.connection_schema):
        holder = result
        for name in path[:-1]:
            holder = holder.setdefault(name, {})
        if path[-1] in holder:
            holder[path[-1]] = value
    return result

