"""`segship schedule` end to end: stale alerts between runs and Prometheus metrics over HTTP.

The scheduler runs in-process (typer's CliRunner) on a clock the test drives, so hours pass in
a second, while the runs are real: the engine, the Braze sandbox, state, the alert receiver, and
the metrics server scraped over HTTP and parsed with Prometheus' own text parser. A subprocess
test checks what the ``segship`` script itself serves and prints.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import urllib.request
from datetime import datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from segship.cli.main import app
from segship.engine import schedule

from .conftest import profile
from .test_alerts import DOWN_PAGE

CHANNEL = """
notifications:
  hook:
    type: webhook
    url: ${env:ALERT_WEBHOOK_URL}
"""


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed: (sample name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ScriptedClock:
    """The scheduler's clock: time moves only when it waits; ``script(clock, stop)`` runs at every wait.

    It starts two hours ago, so that all it lives through is in the past of the times state writes
    (real ones): a run recorded now is, to the scheduler, one that started after its every tick.
    """

    def __init__(self, script) -> None:
        self.time = datetime.now().astimezone() - timedelta(hours=2)
        self.started = self.time
        self.script = script

    def now(self) -> datetime:
        return self.time

    async def wait(self, seconds: float, stop: asyncio.Event) -> None:
        self.time += timedelta(seconds=max(0.0, seconds))
        self.script(self, stop)
        await asyncio.sleep(0)


@pytest.mark.parametrize("state_target", ["sqlite"], indirect=True)
def test_the_scheduler_alerts_a_stale_export_and_serves_what_its_runs_did(project, braze_sandbox, webhook_receiver,
                                                                          monkeypatch):
    with (project.root / "segship.yaml").open("a") as config:
        config.write(CHANNEL)
    text = (project.root / "segship.yaml").read_text().replace(
        "    display_name: VIP to Braze\n",
        "    display_name: VIP to Braze\n    schedule: '*/10 * * * *'\n    alerts: {stale_after: 30m}\n")
    (project.root / "segship.yaml").write_text(text)
    project.write([profile(index) for index in range(1, 21)])
    braze_sandbox.answer_instead("/users/track", DOWN_PAGE, status=404, content_type="text/html")  # down from the start
    url = f"http://127.0.0.1:{free_port()}/metrics"
    scraped: list[dict] = []

    def script(clock: ScriptedClock, stop: asyncio.Event) -> None:
        events = [(alert["event"], alert["status"]) for alert in (d.json() for d in webhook_receiver.deliveries())]
        if ("stale", "open") in events and ("stale", "resolved") not in events and not scraped:
            braze_sandbox.set_faults(canned_answers=[])  # back up: the next tick's run succeeds
            scraped.append({})
        elif ("stale", "resolved") in events and len(scraped) == 1:
            scraped.append(scrape(url))
            stop.set()
        elif clock.time - clock.started > timedelta(minutes=100):
            stop.set()  # something is wrong: the assertions below say what

    clock = ScriptedClock(script)
    monkeypatch.setattr(schedule, "SystemClock", lambda: clock)
    result = CliRunner().invoke(app, ["schedule", "-c", str(project.root / "segship.yaml"),
                                      "--metrics-port", url.split(":")[2].split("/")[0]],
                                env={**project.env, "ALERT_WEBHOOK_URL": webhook_receiver.url + "/alerts"})
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"serving Prometheus metrics at {url}"

    alerts = [d.json() for d in webhook_receiver.deliveries()]
    assert [(alert["event"], alert["status"]) for alert in alerts] == [
        ("failed", "open"), ("stale", "open"), ("failed", "resolved"), ("stale", "resolved")]
    stale = alerts[1]
    assert stale["run_id"] is None and stale["figures"]["last_success_at"] is None
    assert stale["message"].startswith("vip-braze has had no successful run yet: a run came due at ")
    assert stale["message"].endswith(", more than 30m ago")
    runs = project.state().runs("vip-braze", limit=100)
    failed = sum(run["outcome"] == "failed" for run in runs)
    assert failed >= 3 and [run["outcome"] for run in runs][0] == "succeeded"  # every 10 minutes for 30+ minutes
    assert alerts[3]["run_id"] == runs[0]["id"]  # the run that succeeded resolved it

    metrics = scraped[1]
    export = (("export", "vip-braze"),)
    assert metrics[("segship_runs_total", (*export, ("outcome", "failed")))] == failed
    assert metrics[("segship_runs_total", (*export, ("outcome", "succeeded")))] == 1
    assert metrics[("segship_runs_total", (*export, ("outcome", "aborted")))] == 0  # there from the start
    assert metrics[("segship_members", export)] == 20
    assert metrics[("segship_rows_sent_total", export)] == 20
    assert metrics[("segship_rows_removed_total", export)] == 0
    assert metrics[("segship_rows_refused_total", export)] == 0
    braze = (("destination", "braze"), *export)
    requests = sum((run["report"] or {}).get("http", {}).get("requests", 0) for run in runs)
    assert metrics[("segship_requests_total", braze)] == requests > failed  # each failed run asked once at least
    assert metrics[("segship_rate_limited_responses_total", braze)] == 0
    assert metrics[("segship_run_duration_seconds_count", export)] == failed + 1
    finished = datetime.fromisoformat(runs[0]["finished_at"]).timestamp()
    assert metrics[("segship_last_success_timestamp_seconds", export)] == finished
    assert ("segship_last_success_timestamp_seconds", (("export", "vip-brevo"),)) not in metrics  # no schedule


def test_the_metrics_server_starts_with_the_last_success_from_state_and_says_where_it_is(project):
    with (project.root / "segship.yaml").open("a") as config:
        config.write("    schedule: '0 0 1 1 *'\n")  # vip-brevo, next due on New Year's Day
    project.write([profile(index) for index in range(1, 6)])
    assert project.cli("export", "vip-brevo").returncode == 0
    [last] = project.state().runs("vip-brevo")
    process = subprocess.Popen(project.command("schedule", "--metrics-port", "0"), cwd=project.root, env=project.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline().strip()
        assert first.startswith("serving Prometheus metrics at http://127.0.0.1:"), first
        metrics = scrape(first.removeprefix("serving Prometheus metrics at "))
        waiting = process.stderr.readline()  # the scheduler is waiting: a SIGTERM now ends it cleanly
        assert "schedule.waiting" in waiting, waiting
    finally:
        process.terminate()
        process.wait(timeout=30)
    export = (("export", "vip-brevo"),)
    assert metrics[("segship_last_success_timestamp_seconds", export)] == \
        datetime.fromisoformat(last["finished_at"]).timestamp()
    assert metrics[("segship_runs_total", (*export, ("outcome", "succeeded")))] == 0  # this scheduler ran none
    assert metrics[("segship_requests_total", (("destination", "sendinblue"), *export))] == 0
    assert process.returncode == 0


def test_metrics_are_not_served_by_a_one_shot_scheduler(project):
    with (project.root / "segship.yaml").open("a") as config:
        config.write("    schedule: '0 0 1 1 *'\n")
    result = project.cli("schedule", "--once", "--metrics-port", "0")
    assert result.returncode == 2
    assert "error: --metrics-port serves metrics while the scheduler runs: not with --once" in result.stderr
