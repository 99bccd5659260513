"""Prometheus metrics of `segship schedule --metrics-port N`: what the scheduler's runs did.

Counters count from the scheduler's start (``rate()`` and ``increase()`` take a restart in their
stride); each scheduled export's series exist from the start, at zero, so an alert rule over
them has something to read before the first run. The time of each export's last successful
run is read from state at the start, then kept by the runs, so a restarted scheduler still says
how long ago each export last delivered. Served by prometheus-client's own HTTP server, in a
thread of its own, on 127.0.0.1 unless told otherwise (``--metrics-host``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from segship.engine.report import DELIVERED_OUTCOMES, RunReport
from segship.errors import SegshipError

#: Every metric's name starts ``segship_``.
NAMESPACE = "segship"
#: Every outcome a run may end with (RunReport.outcome), each a series from the start.
OUTCOMES = ("succeeded", "rejects", "failed", "aborted", "interrupted", "invalid")
#: Run durations, in seconds: from an unchanged re-run to a first run of millions of members.
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)


class MetricsServerError(SegshipError):
    """The metrics can't be served where asked (the port is taken, the address isn't this host's)."""

    outcome = "invalid"  # usage: --metrics-port / --metrics-host


class RunMetrics:
    """The scheduler's metrics, in a registry of their own."""

    def __init__(self, destinations: Mapping[str, str], last_successes: Mapping[str, str | None]) -> None:
        """``destinations``: each scheduled export's destination (its plugin's name); ``last_successes``:
        when each export's last successful run finished (ISO time), as far as state knows."""
        self.destinations = dict(destinations)
        self.registry = CollectorRegistry()

        def metric(kind: type, name: str, documentation: str, labels: tuple[str, ...] = ("export",),
                   **options: Any) -> Any:
            return kind(name, documentation, labels, namespace=NAMESPACE, registry=self.registry, **options)

        self.runs = metric(Counter, "runs", "Runs that ended, by export and outcome.", ("export", "outcome"))
        self.members = metric(Gauge, "members", "Members of the export (rows of its segments) at its last planned run.")
        self.rows_sent = metric(Counter, "rows_sent", "Rows the destination acknowledged (joins, changes, moves).")
        self.rows_removed = metric(Counter, "rows_removed", "Members the destination acknowledged removing.")
        self.rows_refused = metric(Counter, "rows_refused", "Rows refused, by the destination or the mapping.")
        self.requests = metric(Counter, "requests", "HTTP requests to the destination, retries included.",
                               ("export", "destination"))
        self.rate_limited = metric(Counter, "rate_limited_responses", "HTTP 429 answers from the destination.",
                                   ("export", "destination"))
        self.duration = metric(Histogram, "run_duration_seconds", "How long runs took.", buckets=DURATION_BUCKETS)
        self.last_success = metric(Gauge, "last_success_timestamp_seconds",
                                   "When the export's last successful run (succeeded or rejects) finished, Unix time.")

        # every series there at zero from the start, so an alert rule has something to read
        for export, destination in self.destinations.items():
            for outcome in OUTCOMES:
                self.runs.labels(export, outcome)
            for counter in (self.rows_sent, self.rows_removed, self.rows_refused, self.duration):
                counter.labels(export)
            self.requests.labels(export, destination)
            self.rate_limited.labels(export, destination)
        for export, finished_at in last_successes.items():
            if finished_at:
                self.last_success.labels(export).set(datetime.fromisoformat(finished_at).timestamp())

    def observe(self, report: RunReport) -> None:
        """Count a run of a scheduled export that ended."""
        export = report.export
        destination = self.destinations[export]
        self.runs.labels(export, report.outcome).inc()
        members = (report.plan or {}).get("members")
        if members is not None:
            self.members.labels(export).set(members)
        self.rows_sent.labels(export).inc(report.upserted)
        self.rows_removed.labels(export).inc(report.removed)
        self.rows_refused.labels(export).inc(report.rejected)
        self.requests.labels(export, destination).inc(report.http.get("requests", 0))
        self.rate_limited.labels(export, destination).inc(report.http.get("throttled", 0))
        self.duration.labels(export).observe(report.seconds)
        if report.outcome in DELIVERED_OUTCOMES and report.finished_at:
            self.last_success.labels(export).set(datetime.fromisoformat(report.finished_at).timestamp())

    @contextmanager
    def served(self, host: str, port: int) -> Iterator[str]:
        """Serve ``/metrics`` on ``host:port`` (0: a free port) for the with-block; yields its URL."""
        try:
            server, thread = start_http_server(port, host, self.registry)
        except OSError as exc:
            raise MetricsServerError(f"--metrics-port {port}: can't listen on {host}: "
                                     f"{exc.strerror or exc}") from None
        shown = f"[{host}]" if ":" in host else host
        try:
            yield f"http://{shown}:{server.server_address[1]}/metrics"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
