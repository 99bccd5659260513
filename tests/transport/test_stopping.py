"""Every wait is capped and ends at once on Ctrl-C or SIGTERM, which end the run cleanly and free its lock
(issue 23, item 7: a rate-limit reset a day away paused a Brevo run holding the export's lock).

The real CLI against a destination that asks it to wait: Brevo's headers on a success saying the
budget is spent for a while, or Braze's 429 with a reset in a few minutes.
"""

from __future__ import annotations

import signal
import time

import pytest

from .conftest import RawServer, answer_with

BREVO_ANSWER = (b'{"email": "ops@example.com", "companyName": "Acme", "organization_id": "acme", "id": 3, "name": "VIP", '
                b'"uniqueSubscribers": 0}')


def brevo_spent(reset: str):
    """Every request answered 200, the account's budget spent until ``reset`` seconds from now."""
    return answer_with(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nx-sib-ratelimit-limit: 10\r\n"
                       b"x-sib-ratelimit-remaining: 0\r\nx-sib-ratelimit-reset: " + reset.encode(), BREVO_ANSWER)


def braze_throttled():
    """Every request answered 429, the window resetting in 200 s (epoch seconds, as Braze says it)."""

    async def answer(writer, number):
        reset = b"%d" % (time.time() + 200)
        await answer_with(b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
                          b"X-RateLimit-Limit: 3000\r\nX-RateLimit-Remaining: 0\r\nX-RateLimit-Reset: " + reset,
                          b'{"message": "Too Many Requests"}')(writer, number)

    return answer


@pytest.mark.parametrize(("export", "answer", "stop"), [
    ("to-brevo", brevo_spent("200"), signal.SIGTERM),
    ("to-braze", braze_throttled(), signal.SIGINT),
], ids=["Brevo's spent budget, SIGTERM", "Braze's 429, Ctrl-C"])
def test_a_stop_ends_a_run_waiting_on_the_destination_at_once_and_frees_its_lock(project, export, answer, stop):
    with RawServer(answer) as server:
        project.configure(server.url, server.url + "/v3")
        run = project.start("export", export)
        try:
            deadline = time.monotonic() + 30
            while server.requests < 1 and time.monotonic() < deadline and run.poll() is None:
                time.sleep(0.05)
            time.sleep(1.0)  # now waiting: 200 s, as asked
            assert run.poll() is None, run.communicate()
            stopped = time.monotonic()
            run.send_signal(stop)
            stdout, stderr = run.communicate(timeout=20)
        finally:
            run.kill()  # a run the signal did not stop
            run.wait(timeout=10)
        assert time.monotonic() - stopped < 10, "the wait did not end on the signal"
        assert server.requests == 1  # nothing was sent after the wait began
    assert run.returncode == 1, (stdout, stderr)
    assert f"{export}: interrupted" in stdout and "Traceback" not in stdout + stderr
    again = project.cli("export", export, "--dry-run")  # takes the export's lock: the stopped run freed it
    assert again.exit_code == 0, again


@pytest.mark.parametrize("reset", ["86400", "1e12", "inf"])
def test_a_spent_budget_refilling_a_day_away_does_not_hold_a_run(project, reset):
    with RawServer(brevo_spent(reset)) as server:
        project.configure(server.url, server.url + "/v3")
        run = project.cli("export", "to-brevo", timeout=60)
    assert run.seconds < 20, run  # whatever the run made of the answers, it was not paused for a day
    assert "Traceback" not in run.output and server.requests >= 3
    assert project.cli("export", "to-brevo", "--dry-run").exit_code == 0
