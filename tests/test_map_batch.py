"""``map_batch`` gives exactly what ``map`` gives, row by row: the same JSON bytes, the same
dropped fields and the same rejects with the same reasons, for random batches (Unicode, over-long text, nulls, numbers with
NaN and infinities, decimals, dates, times with and without a zone, arrays), as joins and as
changes. Braze and Brevo map column-wise; the default ``map_batch`` calls ``map``."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import orjson
import phonenumbers
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segship.destination import ConnectionContext, Destination, DroppedField, ExportContext, Record, RowRejected
from segship_braze.destination import BrazeDestination
from segship_sendinblue.destination import SendinblueDestination

from tests.engine.memory_destination import MemoryDestination

EXAMPLES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

UNICODE = st.characters(codec="utf-8", exclude_categories=("Cs",))
#: Values that need a decision of their own, to be found among fine ones by the column-wise paths.
ODD_TEXTS = ["", " ", "\t", "\x1f", "\u00a0", " padded ", "ÉLODIE", "ß", "İstanbul", "零", 'say "hi"', '","',
             "back\\", "é" * 255, "é" * 256, "%s"]
ODD_EMAILS = ["a@b", "a@b.c", "x@y.co\n", "no-at.example.com", "two@@example.com", "sp ace@example.com",
              "tab\t@example.com", "é@exämple.org", "a@b.c0m", "", "  ", "a\u2028@example.com", "\x1c@example.com",
              "ann@example.com\nbad", "bad\nann@example.com", "a@example.com\rx", "a" * 243 + "@example.com",
              "a" * 242 + "@example.com", " A@EXAMPLE.com "]
ODD_PHONES = ["+33 6 12 34 56 78", "0033612345678", "06 12 34 56 78", "(555) 123-4567", "+1", "0", "+0123456789",
              "+33 6 12 34 56 78 90 12 34", "abc", " ", "+٣٣٦١٢٣٤٥٦٧٨", "+1234567890123456", "+1234567",
              "+12345678\n+1234", "+123456789012345", "+12345678", "n/a", "(555) 001-0001", "+44 (0)20 7946 0018",
              "+440791112345", "+33 6 CALL ME", "612345678"]
#: Valid numbers of many countries, in E.164, from phonenumbers' own example numbers.
VALID_PHONES = sorted({phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                       for region in sorted(phonenumbers.SUPPORTED_REGIONS)[::4]
                       for number in (phonenumbers.example_number_for_type(region, kind)
                                      for kind in (phonenumbers.PhoneNumberType.MOBILE,
                                                   phonenumbers.PhoneNumberType.FIXED_LINE))
                       if number is not None})
TEXT = st.one_of(
    st.text(UNICODE, max_size=12),
    st.sampled_from(ODD_TEXTS),
    st.integers(250, 260).map(lambda n: "é" * n),  # around Braze's 255 characters
)
GOOD_EMAILS = st.one_of(
    st.builds(lambda local, domain: f"{local}@{domain}.com", st.text("abcXYZ.-_+", min_size=1, max_size=8),
              st.text("abcdef-", min_size=1, max_size=8)),
    st.sampled_from(["ada@example.com", " Ada@Example.COM ", "first.last+tag@sub.example.co.uk"]),
)
BAD_EMAILS = st.one_of(
    st.sampled_from(ODD_EMAILS),
    st.integers(235, 260).map(lambda n: "a" * n + "@example.com"),
)
EMAILS = st.one_of(GOOD_EMAILS, BAD_EMAILS, TEXT)
PHONES = st.one_of(st.sampled_from(ODD_PHONES), TEXT)
INT64 = st.integers(-2**63, 2**63 - 1)
UTC_TIMES = st.datetimes(datetime.datetime(1900, 1, 1), datetime.datetime(2200, 1, 1), timezones=st.just(datetime.UTC))
#: Column kinds: Arrow type and values (nulls are added by ``columns``).
KINDS: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "good_text": (pa.string(), st.text(UNICODE, min_size=1, max_size=12)
                  | st.sampled_from(['say "hi"', '",', '","', "back\\", "%s", "%b", "{}", "\u2028"])),
    "good_email": (pa.string(), GOOD_EMAILS),
    "bad_email": (pa.string(), BAD_EMAILS),
    "text": (pa.string(), TEXT),
    "large_text": (pa.large_string(), TEXT),
    "email": (pa.string(), EMAILS),
    "phone": (pa.string(), PHONES),
    "odd_phone": (pa.string(), st.sampled_from(ODD_PHONES)),
    "good_phone": (pa.string(), st.sampled_from(VALID_PHONES) | st.just("")),
    "e164_phone": (pa.string(), st.integers(10**7, 10**15 - 1).map(lambda number: f"+{number}")),
    "int64": (pa.int64(), INT64),
    "int8": (pa.int8(), st.integers(-128, 127)),
    "float64": (pa.float64(), st.floats(allow_nan=True, allow_infinity=True)),
    "float32": (pa.float32(), st.floats(width=32, allow_nan=True, allow_infinity=True)),
    "bool": (pa.bool_(), st.booleans()),
    "decimal": (pa.decimal128(12, 3), st.decimals(-10**8, 10**8, places=3, allow_nan=False, allow_infinity=False)),
    "date": (pa.date32(), st.dates()),
    "timestamp": (pa.timestamp("us"), st.datetimes(datetime.datetime(1900, 1, 1), datetime.datetime(2200, 1, 1))),
    "timestamp_tz": (pa.timestamp("us", tz="+02:00"), UTC_TIMES),
    "text_array": (pa.list_(pa.string()), st.lists(st.none() | TEXT, max_size=3)),
    "int_array": (pa.list_(pa.int64()), st.lists(st.none() | INT64, max_size=3)),
    "struct": (pa.struct([("x", pa.string()), ("n", pa.float64())]),
               st.fixed_dictionaries({"x": st.none() | TEXT, "n": st.none() | st.floats()})),
    "nothing": (pa.null(), st.none()),
}


#: Kinds whose values are all fine, and the kind of the odd value one of them may hold
ODD_ONE_OUT = {"good_text": "text", "good_email": "bad_email", "good_phone": "odd_phone", "e164_phone": "good_phone",
               "int64": "int64", "float64": "float64"}


@st.composite
def columns(draw: st.DrawFn, size: int, kinds: list[str]) -> pa.Array:
    """A column of ``size`` values of one of ``kinds``: sometimes no nulls, sometimes only nulls, and
    sometimes all fine but one (the batch paths decide whole columns at once where values are fine)."""
    kind = draw(st.sampled_from(kinds))
    arrow_type, values = KINDS[kind]
    nulls = draw(st.sampled_from([0.0, 0.0, 0.2, 1.0]))
    cells = draw(st.lists(values, min_size=size, max_size=size))
    holes = draw(st.lists(st.floats(0, 1), min_size=size, max_size=size))
    cells = [None if hole < nulls else cell for cell, hole in zip(cells, holes)]
    if kind in ODD_ONE_OUT and draw(st.booleans()):
        cells[draw(st.integers(0, size - 1))] = draw(KINDS[ODD_ONE_OUT[kind]][1])
    return pa.array(cells, arrow_type)


@st.composite
def batches(draw: st.DrawFn, named: dict[str, list[str]], attributes: int
            ) -> tuple[pa.RecordBatch, list[str]]:
    """A batch with the ``named`` columns (name -> kinds) and up to ``attributes`` others of any kind."""
    size = draw(st.integers(1, 10))
    arrays = {name: draw(columns(size, kinds)) for name, kinds in named.items()}
    for number in range(draw(st.integers(0, attributes))):
        arrays[f"c{number}"] = draw(columns(size, list(KINDS)))
    return pa.RecordBatch.from_pydict(arrays), list(arrays)


@st.composite
def changes(draw: st.DrawFn, size: int, source_columns: list[str]) -> list[frozenset[str] | None] | None:
    """None (every row new), or per row: None (send everything) or the columns that changed."""
    changed = st.none() | st.frozensets(st.sampled_from(source_columns))
    return draw(st.none() | st.lists(changed, min_size=size, max_size=size))


def row_by_row(destination: Destination, rows: pa.RecordBatch, changed: list | None, encode) -> list[tuple]:
    answers = []
    for index, row in enumerate(rows.to_pylist()):
        try:
            record = destination.map(row, None if changed is None else changed[index])
        except RowRejected as exc:
            answers.append(("rejected", exc.reason))
        else:
            answers.append(("mapped", record.identity, encode(record.payload), tuple(record.dropped)))
    return answers


def batch_wise(destination: Destination, rows: pa.RecordBatch, changed: list | None, encode) -> list[tuple]:
    mapped = destination.map_batch(rows, changed)
    assert len(mapped.identities) == len(mapped.payloads) == rows.num_rows
    assert set(mapped.rejects) <= set(range(rows.num_rows))
    assert not set(mapped.dropped) & set(mapped.rejects)  # a refused row has no record to drop a field from
    return [("rejected", mapped.rejects[index]) if index in mapped.rejects
            else ("mapped", mapped.identities[index], encode(mapped.payloads[index]),
                  tuple(mapped.dropped.get(index, ())))
            for index in range(rows.num_rows)]


def assert_same(destination: Destination, rows: pa.RecordBatch, changed: list | None, encode) -> list[tuple]:
    expected = row_by_row(destination, rows, changed, encode)
    assert batch_wise(destination, rows, changed, encode) == expected
    # and so the request bodies, which are the mapped payloads in row order
    return expected


def braze(mapping: dict[str, Any], **settings: Any) -> BrazeDestination:
    connection = ConnectionContext("braze", {"api_key": "k" * 32, "rest_endpoint": "https://rest.iad-01.braze.com"})
    return BrazeDestination(connection, ExportContext("to-braze", {"segment_api_identifier": "s-1", **settings},
                                                      mapping))


def brevo(mapping: dict[str, Any], **settings: Any) -> SendinblueDestination:
    connection = ConnectionContext("brevo", {"api_key": "k" * 32})
    return SendinblueDestination(connection, ExportContext("to-brevo", {"list_id": 3, **settings}, mapping))


@EXAMPLES
@given(st.data())
def test_braze_maps_a_batch_as_it_maps_each_row(data: st.DataObject) -> None:
    rows, names = data.draw(batches({"customer_id": ["good_text"] * 3 + ["text", "int64", "int8", "large_text", "decimal",
                                                     "float64", "bool", "nothing"],
                                     "email": ["good_email"] * 4 + ["email", "large_text", "int64", "nothing"]},
                                    attributes=4))
    attributes = {f"attr_{name}": name for name in names[2:]}
    if data.draw(st.booleans()):
        attributes["again_email"] = "email"  # one column read twice
    destination = braze({"customer_id": "customer_id", "email": "email", "attributes": attributes},
                        update_existing_only=data.draw(st.booleans()))
    changed = data.draw(changes(rows.num_rows, destination.source_columns(destination.export.mapping)))
    mapped = assert_same(destination, rows, changed, orjson.dumps)
    payloads = [answer[2] for answer in mapped if answer[0] == "mapped"]
    batch = destination.map_batch(rows, changed)
    body = orjson.dumps({"attributes": [p for i, p in enumerate(batch.payloads) if i not in batch.rejects]})
    assert body == b'{"attributes":[' + b",".join(payloads) + b"]}"
    # only what segship chose is written: a consent field (email_subscribe, ...) only where the mapping names it
    chosen = {"external_id", "email", "segship_segments", "_update_existing_only", *attributes}
    assert all(set(orjson.loads(payload)) <= chosen for payload in payloads)


@pytest.mark.parametrize("odd", ODD_TEXTS + ODD_EMAILS)
def test_braze_maps_one_odd_value_among_fine_ones_as_its_row(odd: str) -> None:
    fine = {"customer_id": "C1", "email": "ada@example.com", "first_name": "Ada"}
    destination = braze({"customer_id": "customer_id", "email": "email", "attributes": {"first_name": "first_name"}})
    for column in fine:
        rows = pa.RecordBatch.from_pylist([fine, {**fine, column: odd}, fine])
        assert_same(destination, rows, None, orjson.dumps)
        assert_same(destination, rows, [None, frozenset({column}), frozenset()], orjson.dumps)


@pytest.mark.parametrize("odd", ODD_TEXTS + ODD_EMAILS + ODD_PHONES)
def test_brevo_maps_one_odd_value_among_fine_ones_as_its_row(odd: str) -> None:
    fine = {"email": "ada@example.com", "first_name": "Ada", "phone": "+33612345678"}
    for export_settings in ({}, {"default_country_code": "+33"}):
        destination = brevo({"email": "email", "first_name": "first_name", "phone": "phone"}, **export_settings)
        for column in fine:
            rows = pa.RecordBatch.from_pylist([fine, {**fine, column: odd}, fine])
            assert_same(destination, rows, None, bytes)


def test_braze_maps_a_first_run_batch_through_its_fast_path_as_each_row() -> None:
    rows = pa.RecordBatch.from_pydict({"customer_id": [" C1 ", "C2"], "email": ["a@example.com ", "B@example.com"],
                                       "first_name": ["Ada", "Ben"], "score": [1.5, 2.0]})
    destination = braze({"customer_id": "customer_id", "email": "email",
                         "attributes": {"first_name": "first_name", "score": "score"}})
    assert_same(destination, rows, None, orjson.dumps)
    assert destination.map_batch(rows).identities == ["C1", "C2"]


@EXAMPLES
@given(st.data())
def test_brevo_maps_a_batch_as_it_maps_each_row(data: st.DataObject) -> None:
    rows, names = data.draw(batches({"email": ["good_email"] * 4 + ["email", "large_text", "int64", "nothing"],
                                     "phone": ["good_phone"] * 3 + ["e164_phone", "phone", "int64", "float64",
                                                                    "nothing"]},
                                    attributes=4))
    mapping: dict[str, Any] = {"email": "email", "phone": "phone"}
    others = names[2:]
    if others:
        mapping["first_name"] = others[0]
    mapping["attributes"] = {f"ATTR_{name.upper()}": name for name in others[1:]}
    settings = {"default_country_code": "+33"} if data.draw(st.booleans()) else {}
    destination = brevo(mapping, **settings)
    changed = data.draw(changes(rows.num_rows, destination.source_columns(mapping)))
    mapped = assert_same(destination, rows, changed, bytes)
    # a contact is its email and the attributes the mapping names: never emailBlacklisted or the like
    named = {"SMS", *(["FIRSTNAME"] if "first_name" in mapping else []), *mapping["attributes"]}
    contacts = [orjson.loads(answer[2]) for answer in mapped if answer[0] == "mapped"]
    assert all(set(contact) <= {"email", "attributes"} and set(contact.get("attributes", {})) <= named
               for contact in contacts)


class RowByRow(MemoryDestination):
    """The memory destination with a reject rule and a drop rule of its own; it has no ``map_batch``."""

    def map(self, row, changed_columns=None):
        if row.get("id") == "refuse":
            raise RowRejected("refused by the rule")
        record = super().map(row, changed_columns)
        if row.get("n") == 2:
            return Record(record.key, record.identity, record.payload, (DroppedField("n", "two is too many"),))
        return record


def test_the_default_map_batch_calls_map_for_each_row() -> None:
    destination = RowByRow(ConnectionContext("memory", {}),
                           ExportContext("to-memory", {}, {"id": "id", "fields": {"n": "n"}}))
    rows = pa.RecordBatch.from_pydict({"id": ["a", "refuse", "b", "c"], "n": [1, 2, Decimal("3"), 2]})
    mapped = destination.map_batch(rows, [None, None, frozenset({"n"}), None])
    assert mapped.rejects == {1: "refused by the rule"}
    assert mapped.dropped == {3: (DroppedField("n", "two is too many"),)}
    assert (mapped.identities[0], mapped.identities[2]) == ("a", "b")
    assert (mapped.payloads[0], mapped.payloads[2]) == ((True, {"n": 1}), (False, {"n": Decimal("3")}))
