"""The warehouse planner's members' digest, summed again from its members by the test's own SQL (the
mix PostgreSQL's ``hash_record_extended`` of (key, row digest, target), as the dialect defines it)."""

from __future__ import annotations

import adbc_driver_postgresql.dbapi as postgresql

from segship.engine.digest import signed_64
from segship.engine.planners.postgres import PostgresDialect


def recorded_and_summed(url: str, export: str) -> tuple[tuple | None, tuple | None]:
    """The digest recorded of ``export``'s members (kind, members, digest; None: none is), and the same
    summed again from the members (None: no run made the planner schema yet)."""
    with postgresql.connect(url, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('segship.segship_member_digests') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return None, None
        cursor.execute("SELECT kind, members, digest FROM segship.segship_member_digests WHERE export = $1", (export,))
        recorded = cursor.fetchall()
        cursor.execute("SELECT count(*), CAST(coalesce(sum(hash_record_extended(ROW(key, row_digest, target), 0)), 0) "
                       "AS text) FROM segship.segship_members WHERE export = $1", (export,))
        count, total = cursor.fetchone()
    return (recorded[0] if recorded else None), (PostgresDialect.digest_kind, int(count), signed_64(int(total)))
