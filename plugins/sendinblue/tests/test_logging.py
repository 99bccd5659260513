"""No API key in any log line or error, whatever happens (structlog configured as the CLI does)."""

from __future__ import annotations

import pytest
import structlog
from segship.destination import DestinationError
from segship.log import configure_logging

from segship_sendinblue.sandbox import SANDBOX_API_KEY

from .conftest import person, records


@pytest.fixture
def restore_logging():
    yield
    structlog.reset_defaults()


async def test_the_api_key_never_appears_in_logs_or_errors(sendinblue_sandbox, make_destination, capsys,
                                                            restore_logging):
    # configured here, not in a fixture: the logger binds the sys.stderr that capsys installs for the test
    configure_logging(json_format=True, level="debug")
    destination = make_destination(sendinblue_sandbox.url)
    sendinblue_sandbox.set_faults(error_fraction=0.5, error_statuses=(429, 500), seed=1)
    await destination.check_connection()
    assert all(r.ok for r in await destination.upsert(records(destination, [person(n) for n in range(3)])))
    sendinblue_sandbox.set_faults(error_fraction=0.0)

    wrong_key = "xkeysib-this-one-is-wrong-0000"
    refused = make_destination(sendinblue_sandbox.url, connection={"api_key": wrong_key})
    with pytest.raises(DestinationError) as stopped:
        await refused.upsert(records(refused, [person(9)]))

    logged = capsys.readouterr()
    output = logged.out + logged.err
    assert "http.retry" in output  # the retries were logged...
    for key in (SANDBOX_API_KEY, wrong_key):
        assert key not in output  # ...without the key
        assert key not in str(stopped.value)
