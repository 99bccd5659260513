"""Arrow column facts for ``Destination.map_batch`` implementations, computed in C, not per value."""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import orjson
import pyarrow as pa
import pyarrow.compute as pc


def batch_column(rows: pa.RecordBatch, name: str) -> pa.Array:
    """The column ``name``, or nulls when the batch lacks it (as ``row.get`` gives None)."""
    index = rows.schema.get_field_index(name)
    return rows.column(index) if index >= 0 else pa.nulls(rows.num_rows)


def is_text(array: pa.Array) -> bool:
    return pa.types.is_string(array.type) or pa.types.is_large_string(array.type)


def rows_where(mask: pa.Array) -> list[int]:
    """Indexes where ``mask`` is true (null counts as false)."""
    if not pc.any(mask).as_py():
        return []
    return pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist()


def null_rows(array: pa.Array) -> list[int]:
    return rows_where(array.is_null()) if array.null_count else []


def long_text_rows(array: pa.Array, limit: int) -> list[int]:
    """Rows whose text is longer than ``limit`` characters (as Python's ``len``)."""
    longest = pc.max(pc.binary_length(array)).as_py()  # from the offsets alone; no text has more characters than bytes
    if longest is None or longest <= limit:
        return []
    return rows_where(pc.greater(pc.utf8_length(array), limit))


# -- JSON made column-wise: what orjson writes of text, integers and booleans ------------------

#: Python's whitespace (``str.isspace``: what ``str.strip`` removes and ``re``'s ``\s`` matches) as
#: an RE2 class, so a column's rows that a per-value ``strip()`` or ``\s`` would decide are found in C.
PYTHON_WHITESPACE_CLASS = (r"[\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}"
                           r"\x{202f}\x{205f}\x{3000}]")
#: The same characters' UTF-8 encodings: one byte, or a sequence starting with one of these bytes.
_PYTHON_WHITESPACE_BYTES = b"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "
_PYTHON_WHITESPACE_LEAD_BYTES = b"\xc2\xe1\xe2\xe3"
#: Characters orjson writes escaped in a JSON string (RFC 8259's minimum); any other is written as it is.
_JSON_ESCAPED = r'[\x00-\x1f"\\]'
_JSON_ESCAPED_BYTES = bytes(range(0x20)) + b'"\\'


def _text_bytes(array: pa.Array) -> bytes:
    """The UTF-8 bytes of a text array's values, end to end (and whatever lies under its nulls)."""
    if len(array) == 0:
        return b""
    _, offsets, data = array.buffers()
    positions = memoryview(offsets).cast("i")  # small_text: 32-bit offsets
    start, end = positions[array.offset], positions[array.offset + len(array)]
    return memoryview(data)[start:end].tobytes() if data is not None else b""


def _holds_any(data: bytes, single: bytes) -> bool:
    return len(data.translate(None, single)) != len(data)  # one C pass deleting those bytes


def may_have_python_whitespace(array: pa.Array) -> bool:
    """Whether any text of the array may hold Python whitespace: a pass or two over its bytes,
    no per-row work; only then is it worth asking which rows (:func:`has_python_whitespace`).
    Beyond ASCII, any character led like a whitespace one (U+0080-U+00BF, U+1xxx, U+2xxx,
    U+3xxx) counts."""
    data = _text_bytes(array)
    return _holds_any(data, _PYTHON_WHITESPACE_BYTES) or (
        not data.isascii() and _holds_any(data, _PYTHON_WHITESPACE_LEAD_BYTES))


def may_need_json_escapes(array: pa.Array) -> bool:
    """Whether any text of the array may need JSON escapes (see :func:`may_have_python_whitespace`)."""
    return _holds_any(_text_bytes(array), _JSON_ESCAPED_BYTES)


def small_text(array: pa.Array) -> pa.Array:
    """Large text (64-bit offsets) as text: Arrow's kernels join text of one offset width."""
    return array.cast(pa.string()) if pa.types.is_large_string(array.type) else array


def has_python_whitespace(array: pa.Array) -> pa.Array:
    return pc.match_substring_regex(array, PYTHON_WHITESPACE_CLASS)


def has_edge_python_whitespace(array: pa.Array) -> pa.Array:
    """Text that Python's ``strip()`` would change."""
    return pc.match_substring_regex(array, f"^{PYTHON_WHITESPACE_CLASS}|{PYTHON_WHITESPACE_CLASS}$")


def needs_json_escapes(array: pa.Array) -> pa.Array:
    """Text whose JSON string has escapes (a quote, a backslash, a control character)."""
    return pc.match_substring_regex(array, _JSON_ESCAPED)


def json_member(name: str, array: pa.Array) -> list[pa.Array | str]:
    """Parts of :meth:`JsonArray.joined` that write ``,"name":value`` per row as orjson does, or
    nothing where the value is null.

    ``array`` holds text without JSON escapes (see :func:`needs_json_escapes`), integers or
    booleans; a row's text is written as it is, between quotes.
    """
    key = ',' + orjson.dumps(name).decode() + ':'
    parts: list[pa.Array | str] = [key + '"', small_text(array), '"'] if is_text(array) else \
        [key, pc.cast(array, pa.string())]
    if not array.null_count:
        return parts  # joined with the row's other parts: no array of its own
    return [pc.fill_null(pc.binary_join_element_wise(*parts, ""), "")]


class JsonArray(Sequence[orjson.Fragment]):
    """JSON values made column-wise, held as one Arrow text array: item ``i`` is row ``i``'s JSON
    (an ``orjson.Fragment``, which orjson writes as it is), and :meth:`json` the JSON array of
    them all, copied from the array's buffer at once, with no Python object per row."""

    __slots__ = ("_texts",)

    def __init__(self, texts: pa.Array) -> None:
        self._texts = texts  # each value followed by a comma, so a slice's bytes are the array's inside

    @classmethod
    def joined(cls, parts: Sequence[pa.Array | str]) -> JsonArray:
        """Per row, the concatenation of ``parts`` (text arrays and constants): one JSON value each."""
        return cls(pc.binary_join_element_wise(*parts, ",", ""))

    def __len__(self) -> int:
        return len(self._texts)

    @overload
    def __getitem__(self, index: int) -> orjson.Fragment: ...
    @overload
    def __getitem__(self, index: slice) -> JsonArray: ...

    def __getitem__(self, index: int | slice) -> orjson.Fragment | JsonArray:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("a JsonArray slices with step 1 only")
            return JsonArray(self._texts.slice(start, max(stop - start, 0)))
        text = self._texts[index].as_py()
        if text is None:
            raise ValueError(f"row {index} has no JSON (a null in a part)")
        return orjson.Fragment(text[:-1])

    def fragments(self) -> list[orjson.Fragment | None]:
        """Every row's JSON, None where a row has none (a null in a part)."""
        return [None if text is None else orjson.Fragment(text[:-1]) for text in self._texts.to_pylist()]

    def json(self) -> bytes:
        """``[value,value,...]``: what ``orjson.dumps(list(self))`` gives, in one copy."""
        if self._texts.null_count:
            raise ValueError("a row has no JSON (a null in a part)")
        return b"[" + _text_bytes(self._texts)[:-1] + b"]"
