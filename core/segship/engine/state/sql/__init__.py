"""The SQL both state backends share: the contract over a DB-API connection, a module per concern.

Laid out as Dagster's storage is (``dagster/_core/storage/``: a base class per concern, a SQL
layer that owns the connection, one module per concern), with one difference: a commit writes
members, stale identities, rejects, dropped fields and the in-flight journal in one transaction, so the
concerns are not separate stores with connections of their own but mixins of one
:class:`SqlState` over one connection.

- ``connection.py``: the DB-API connection on the store's own thread (``on_state_thread``),
  statements (``execute``, ``rows``, ``one``, ``many``, ``many_columns``, ``stream``),
  ``transaction()``, driver errors as ``StateError`` (``errors()``), placeholders (``sql``);
- ``caches.py``: what a concern caches, and the events that make a cache stale (a transaction
  committed or rolled back, a run started, an export forgotten, state replaced);
- ``schema.py``: the tables (their DDL is each backend's), the columns that tie rows to an
  export, the migration helpers;
- ``exports.py``: export ids, which the tables keyed by export id share;
- a module per concern, each implementing its contract (``segship.engine.state``) with its own
  SQL and caches: ``members.py`` (members, digests, settings, hash conversion, commits),
  ``targets.py`` (targets, members by target, stale identities), ``in_flight.py``,
  ``destinations.py`` (the destination each export was last sent through), ``rejects.py``,
  ``dropped_fields.py``, ``runs.py``, ``alerts.py`` (open alerts), ``sync_log.py`` (the member-level
  sync log, written by the commits), ``administration.py`` (``state show``, ``forget``),
  ``transfer.py`` (``state copy``).

A concern writes another's tables through that concern's helpers (named in the docstrings) and
never touches another's cache; ``forget`` and ``state copy`` go through every table ``schema.py``
declares. A new concern is a new module (its mixin, over ``SqlConnection`` or ``SqlExports``, and its
caches, registered with ``cached``) plus a new abstract base in the contract, added to
``StateStore`` and to :class:`SqlState`; its tables go into ``schema.py`` (copied and forgotten
with the others) and into each backend's migrations. The backends (``sqlite.py``,
``postgres.py``) subclass :class:`SqlState`: how to connect, lock, migrate and begin, driver
specifics, and SQLite's member journal.
"""

from __future__ import annotations

from segship.engine.state import StateStore
from segship.engine.state.sql.administration import SqlAdministration
from segship.engine.state.sql.alerts import SqlAlerts
from segship.engine.state.sql.destinations import SqlDestinations
from segship.engine.state.sql.dropped_fields import SqlDroppedFields
from segship.engine.state.sql.in_flight import SqlInFlight
from segship.engine.state.sql.members import SqlMembers
from segship.engine.state.sql.rejects import SqlRejects
from segship.engine.state.sql.runs import SqlRuns
from segship.engine.state.sql.sync_log import SqlSyncLog
from segship.engine.state.sql.targets import SqlTargets
from segship.engine.state.sql.transfer import SqlTransfer


class SqlState(SqlMembers, SqlTargets, SqlInFlight, SqlDestinations, SqlRejects, SqlDroppedFields, SqlRuns,
               SqlAlerts, SqlSyncLog, SqlAdministration, SqlTransfer, StateStore):
    """The contract in SQL: every concern over one connection (a backend provides it)."""
