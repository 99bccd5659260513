"""A member's row digest is written with its acknowledgement: the digest goes through the engine's
batches beside the row's hashes, whatever the plan's size."""

from __future__ import annotations

import adbc_driver_postgresql.dbapi as postgresql
import pytest

from segship.engine.warehouse_members import WarehouseMembers

from .conftest import profiles

pytestmark = pytest.mark.parametrize("state_target", ["warehouse"], indirect=True)


def row_digests(url: str) -> dict[str, int | None]:
    with postgresql.connect(url, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT key, row_digest FROM segship.segship_members")
        return dict(cursor.fetchall())


def test_every_member_a_run_acknowledges_gets_its_rows_digest_in_the_same_upsert(workspace, monkeypatch):
    # the run's end records only the digests of members found unchanged with another digest: none here
    monkeypatch.setattr(WarehouseMembers, "record_digests", lambda self: None)
    workspace.write(profiles(30))
    assert workspace.run().outcome == "succeeded"
    first = row_digests(workspace.state_target.warehouse)
    assert len(first) == 30 and None not in first.values()
    workspace.write(profiles(30, changed={7: "Changed"}))
    report = workspace.run()
    assert (report.outcome, report.upserted) == ("succeeded", 1)
    second = row_digests(workspace.state_target.warehouse)
    assert second["7"] not in (None, first["7"])
    assert {key: digest for key, digest in second.items() if key != "7"} == {
        key: digest for key, digest in first.items() if key != "7"}
    assert workspace.run().plan["unchanged"] == 30
