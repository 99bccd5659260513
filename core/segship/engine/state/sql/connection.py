"""The store's DB-API connection, confined to a thread of its own, and the statements run on it.

Every concern runs its SQL through :class:`SqlConnection`: one connection in autocommit mode,
one cursor, a transaction opened explicitly (``transaction``), driver errors turned into
:class:`StateError` (``errors``). Queries are written once, with ``?`` placeholders; a backend
rewrites them if its driver wants others (``sql``), says how a transaction begins (``begin``) and
how a cursor is made.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import pyarrow as pa

from segship.engine.state import StateError
from segship.engine.state.sql.caches import StateCache

T = TypeVar("T")
C = TypeVar("C", bound=StateCache)


def arrow_columns(rows: Sequence[Sequence[Any]], types: Sequence[pa.DataType | None] = ()) -> list[pa.Array]:
    """The rows' columns as Arrow arrays, typed by ``types`` where given; a column of NULLs only is text."""
    arrays = [pa.array(values, types[index] if index < len(types) else None)
              for index, values in enumerate(zip(*rows, strict=True))]
    return [array.cast(pa.string()) if array.type == pa.null() else array for array in arrays]


def on_state_thread(method: Callable[..., T]) -> Callable[..., T]:
    """Run the method on the store's own thread. ADBC's DB-API installs a SIGINT handler of its own
    around every blocking call made on the main thread (to cancel the query), which would swallow
    segship's Ctrl-C (finish the batches in flight, commit, stop) or cancel a commit; off the main
    thread it doesn't. One thread per store also keeps the connection to one thread."""

    @functools.wraps(method)
    def on_thread(self: SqlConnection, *args: Any, **kwargs: Any) -> T:
        if threading.get_ident() == self._thread_id:
            return method(self, *args, **kwargs)
        return self._thread.submit(method, self, *args, **kwargs).result()

    return on_thread


class SqlConnection:
    """Statements over ``self.db`` (a DB-API connection in autocommit mode), on the store's thread.

    A backend sets ``db`` and ``driver_error`` before ``__init__`` and provides ``describe()``
    (the store's, see ``StateStore``) for error messages.
    """

    db: Any
    #: the driver's error base class, turned into StateError
    driver_error: type[Exception] | tuple[type[Exception], ...]
    begin = "BEGIN"

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="segship-state")
        self._thread_id = self._thread.submit(threading.get_ident).result()
        self.cursor = self.new_cursor()
        #: every concern's cache, told of each event (see caches.py)
        self.caches: list[StateCache] = []
        self._closed = False

    def cached(self, cache: C) -> C:
        """Register a concern's cache (it is told of every event from now on); returns it."""
        self.caches.append(cache)
        return cache

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._thread.submit(self.close_connection).result()
        finally:
            self._thread.shutdown(wait=True)

    def close_connection(self) -> None:
        for close in (self.cursor.close, self.db.close):
            try:
                close()
            except self.driver_error:
                pass  # already gone (a server that went away)

    # -- what a backend provides ------------------------------------------------------------------

    def sql(self, text: str) -> str:
        """``text`` with the driver's placeholders (``?`` as written)."""
        return text

    def error_message(self, exc: Exception) -> str:
        return f"state {self.describe()}: {exc}"

    def new_cursor(self) -> Any:
        return self.db.cursor()

    def stream_cursor(self) -> Any:
        """A cursor for one streamed query (a backend sets its batch size)."""
        return self.new_cursor()

    # -- statements -----------------------------------------------------------------------------------

    @contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except self.driver_error as exc:
            raise StateError(self.error_message(exc)) from None

    @on_state_thread
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self.errors():
            self.cursor.execute(self.sql(sql), params)
            return self.cursor

    @on_state_thread
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self.errors():
            self.cursor.execute(self.sql(sql), params)
            return self.cursor.fetchall()

    @on_state_thread
    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        with self.errors():
            self.cursor.execute(self.sql(sql), params)
            return self.cursor.fetchone()

    def many(self, sql: str, rows: Sequence[Sequence[Any]], types: Sequence[pa.DataType | None] = ()) -> None:
        """Run ``sql`` for each row, the rows bound as one Arrow batch (the driver's own row loop is
        slow in Python); a column of NULLs only is bound as text unless ``types`` says otherwise."""
        if rows:
            self.many_columns(sql, arrow_columns(rows, types))

    @on_state_thread
    def many_columns(self, sql: str, columns: Sequence[pa.Array]) -> None:
        """Run ``sql`` for each row of ``columns`` (equally long, at least one row)."""
        with self.errors():
            self.cursor.executemany(self.sql(sql), pa.RecordBatch.from_arrays(
                list(columns), names=[f"p{index}" for index in range(len(columns))]))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction for the with-block; the caches hear whether it committed (see caches.py)."""
        self.execute(self.begin)
        try:
            yield
            self.execute("COMMIT")
        except BaseException:
            for cache in self.caches:
                cache.rolled_back()
            try:
                self.execute("ROLLBACK")
            except StateError:
                pass  # the connection is gone (the server rolled back), or the COMMIT failed
            raise
        for cache in self.caches:
            cache.committed()

    # -- a streamed query -----------------------------------------------------------------------------

    def stream(self, sql: str) -> Iterator[pa.RecordBatch]:
        """The driver's batches of one query, on a cursor of its own, each fetched on the state thread;
        the query runs when the first batch is asked for."""
        cursor, reader = self._query_stream(sql)
        try:
            while (batch := self._next_batch(reader)) is not None:
                yield batch
        finally:
            if not self._closed:  # (a store closed first closed its cursors with its connection)
                self._close_stream(cursor)

    @on_state_thread
    def _query_stream(self, sql: str) -> tuple[Any, pa.RecordBatchReader]:
        cursor = self.stream_cursor()
        with self.errors():
            cursor.execute(sql)
            return cursor, cursor.fetch_record_batch()

    @on_state_thread
    def _next_batch(self, reader: pa.RecordBatchReader) -> pa.RecordBatch | None:
        try:
            return reader.read_next_batch()
        except StopIteration:
            return None
        except self.driver_error as exc:  # the server gone while streaming
            raise StateError(self.error_message(exc)) from None
        except pa.ArrowException as exc:  # (the same, as the driver's stream reports it)
            raise StateError(self.error_message(exc)) from None

    @on_state_thread
    def _close_stream(self, cursor: Any) -> None:
        try:
            cursor.close()
        except self.driver_error:
            pass  # the connection is gone: so is the query
