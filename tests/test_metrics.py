"""The scheduler's metrics on their own: counted from run reports, served and parsed over HTTP."""

from __future__ import annotations

import socket
import urllib.request
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from segship.engine.report import RunReport
from segship.metrics import MetricsServerError, RunMetrics


def samples(url: str) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_reports_are_counted_by_export_outcome_and_destination() -> None:
    metrics = RunMetrics({"vip": "braze"}, {"vip": "2026-01-05T09:00:00+00:00"})
    metrics.observe(RunReport("vip", run_id=1, outcome="rejects", upserted=90, removed=4, rejected=6, seconds=12.5,
                              finished_at="2026-01-05T10:00:12+00:00", plan={"members": 96},
                              rejects_by_reason=Counter({"bad": 6}), http={"requests": 5, "throttled": 2}))
    metrics.observe(RunReport("vip", run_id=2, outcome="failed", seconds=0.4, finished_at="2026-01-05T11:00:01+00:00",
                              http={"requests": 1}))
    with metrics.served("127.0.0.1", 0) as url:
        found = samples(url)
    vip = ("export", "vip")
    assert found[("segship_runs_total", frozenset({vip, ("outcome", "rejects")}))] == 1
    assert found[("segship_runs_total", frozenset({vip, ("outcome", "failed")}))] == 1
    assert found[("segship_runs_total", frozenset({vip, ("outcome", "interrupted")}))] == 0
    assert found[("segship_members", frozenset({vip}))] == 96  # the failed run planned nothing: kept
    rows = [found[(f"segship_rows_{kind}_total", frozenset({vip}))] for kind in ("sent", "removed", "refused")]
    assert rows == [90, 4, 6]
    assert found[("segship_requests_total", frozenset({vip, ("destination", "braze")}))] == 6
    assert found[("segship_rate_limited_responses_total", frozenset({vip, ("destination", "braze")}))] == 2
    assert found[("segship_run_duration_seconds_count", frozenset({vip}))] == 2
    assert found[("segship_run_duration_seconds_bucket", frozenset({vip, ("le", "1.0")}))] == 1
    # 10:00:12, the run that delivered; not the failure after it
    assert found[("segship_last_success_timestamp_seconds", frozenset({vip}))] == 1767607212


def test_a_port_taken_is_a_usage_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsServerError, match=rf"--metrics-port {port}: can't listen on 127.0.0.1: "
                                                      "Address already in use"), \
                RunMetrics({}, {}).served("127.0.0.1", port):
            pass
