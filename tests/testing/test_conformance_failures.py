"""A broken plugin fails the conformance suite with a message that says what is wrong.

Each case breaks the plugin `segship plugin new` writes (which passes the suite: see
test_scaffold.py) in one way, runs its conformance tests with pytest's own runner (pytester) in
a process of its own, and reads the failure: an impure ``map``, a ``map_batch`` that differs from
``map``, an answer missing for a record, a key shown in an error, requests not paced, a
destination that doesn't retry.
"""

from __future__ import annotations

import textwrap

import pytest

from segship.scaffold import write_plugin

pytest_plugins = ["pytester"]

#: The suite's test each broken plugin fails, and a line of its failure message (fnmatch pattern).
BROKEN = {
    "impure_map": (
        """
        class Broken(AcmeDestination):
            calls = 0

            def map(self, row, changed_columns=None):
                record = super().map(row, changed_columns)
                type(self).calls += 1
                record.payload["fields"]["mapped_at"] = type(self).calls   # a counter: not the same twice
                return record
        """,
        "test_map_is_pure_and_deterministic",
        "*map is not deterministic: row {'id': 'C0'*was mapped to*then*",
    ),
    "map_batch_differs": (
        """
        from segship.destination import MappedBatch

        class Broken(AcmeDestination):
            def map_batch(self, rows, changed=None):
                mapped = super().map_batch(rows, changed)
                return MappedBatch(mapped.identities, [None] * len(mapped.payloads), mapped.rejects)
        """,
        "test_map_batch_gives_what_map_gives",
        "*map_batch and map disagree on row 0*",
    ),
    "missing_result": (
        """
        class Broken(AcmeDestination):
            async def upsert(self, records):
                return (await super().upsert(records))[:-1]   # the last record goes unanswered
        """,
        "test_upsert_and_remove_answer_every_record",
        "*upsert answered 2 result(s) for 3 record(s): it must return exactly one RecordResult per record*",
    ),
    "leaked_key": (
        """
        from segship.destination import DestinationError

        class Broken(AcmeDestination):
            async def check_connection(self):
                try:
                    return await super().check_connection()
                except DestinationError:
                    raise DestinationError(f"the key {self.api_key} was refused") from None
        """,
        "test_a_refused_key_stops_the_run_without_showing_it",
        "*check_connection's error holds the key: 'the key <the key> was refused'*",
    ),
    "unpaced": (
        """
        from segship.http import RateLimit

        class Broken(AcmeDestination):
            def __init__(self, connection, export=None):
                super().__init__(connection, export)
                self.rate_limit = RateLimit(1000, 1.0)   # requests_per_second ignored
        """,
        "test_requests_are_paced",
        "*7 requests reached the server within 0.* s; with {'requests_per_second': 5} the destination must send at "
        "most 5 per 1 s, so they take 1 s at least*",
    ),
    "no_retries": (
        """
        import aiohttp
        from segship.destination import DestinationError

        class Broken(AcmeDestination):
            async def upsert(self, records):   # aiohttp by hand: a 429 or a 5xx is not retried
                async with aiohttp.ClientSession() as session, session.post(
                        f"{self.base_url}/lists/{self.list}/members", headers={"Authorization": f"Bearer {self.api_key}"},
                        json={"members": [record.payload for record in records]}) as answer:
                    if answer.status != 200:
                        raise DestinationError(f"HTTP {answer.status}")
                    return [RecordResult(record.key) for record in records]
        """,
        "test_429_and_5xx_are_retried",
        "*upsert raised DestinationError: HTTP 429 after a 429, a 503 and a dropped connection: those must be "
        "retried*",
    ),
}


@pytest.fixture
def acme(pytester: pytest.Pytester) -> pytest.Pytester:
    """A folder holding the package of the plugin `segship plugin new acme` writes, importable, and its
    conformance class as the module ``acme_conformance`` (pytest's process runs in the folder)."""
    write_plugin("acme", pytester.path / "scaffold")
    (pytester.path / "scaffold" / "segship_acme").rename(pytester.path / "segship_acme")
    (pytester.path / "scaffold" / "tests" / "test_conformance.py").rename(pytester.path / "acme_conformance.py")
    return pytester


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_plugin_fails_the_suite_saying_what_is_wrong(acme: pytest.Pytester, case: str) -> None:
    broken, test, message = BROKEN[case]
    acme.makepyfile(**{f"test_{case}": "\n".join([
        "from segship.destination import RecordResult",
        "from segship_acme.destination import AcmeDestination",
        "import acme_conformance",
        textwrap.dedent(broken),
        "class TestBroken(acme_conformance.TestAcmeConformance):",
        "    destination = Broken",
    ])})
    result = acme.runpytest_subprocess("-p", "no:cacheprovider", "-k", test)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([message])


def test_the_plugin_unbroken_passes_those_tests(acme: pytest.Pytester) -> None:
    acme.makepyfile(test_unbroken="import acme_conformance\n\n"
                                  "class TestUnbroken(acme_conformance.TestAcmeConformance):\n    pass\n")
    tests = " or ".join(test for _, test, _ in BROKEN.values())
    result = acme.runpytest_subprocess("-p", "no:cacheprovider", "-k", tests)
    result.assert_outcomes(passed=len(BROKEN))
