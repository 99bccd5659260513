"""CPU of segship's HTTP client alone: µs per request of ``HttpClient.request`` against the Braze sandbox.

    .venv/bin/python benchmarks/http_client.py                     # 13,334 requests (1M profiles)
    .venv/bin/python benchmarks/http_client.py --requests 3000 --repeat 3

Starts the Braze sandbox with its rate limit off, then sends pre-encoded ``/users/track``
bodies of 75 users (``body=``, as a destination that builds its own JSON does) through one
``HttpClient`` with Braze's concurrency (120 requests in flight, from 120 worker tasks, so
the harness costs next to nothing), pacing out of the way.
The figure is this process's CPU time (``time.process_time``: user + system, the sandbox is
another process) per request, best of ``--repeat``; connections are opened by a warm-up
that is not counted. Bound: 80 µs per request, the client's share of issue 13's 450 µs of
segship CPU per 75-profile request. Exits 1 if the bound is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - after the path tweak
from common import Figure  # noqa: E402
from segship.http import HttpClient  # noqa: E402
from segship.ratelimit import RateLimit  # noqa: E402
from segship_braze.destination import CONCURRENCY, REQUESTS_PER_BATCH, TRACK_PATH  # noqa: E402

MICROSECONDS_PER_REQUEST = 80.0
USERS_PER_REQUEST = 75


def track_body() -> bytes:
    users = [{"external_id": str(i), "email": f"user{i}@example.com", "first_name": "Ann", "last_name": "Lee",
              "segship_segments": {"add": [common.SEGMENT_ID]}} for i in range(USERS_PER_REQUEST)]
    return orjson.dumps({"attributes": users})


async def send(http: HttpClient, body: bytes, requests: int, in_flight: int) -> None:
    """``requests`` requests from ``in_flight`` workers, each sending its next once answered (as the
    engine's concurrent batches do); every answer must be a success."""
    remaining = iter(range(requests))

    async def worker() -> None:
        for _ in remaining:
            response = await http.request("POST", TRACK_PATH, body=body)
            if response.status not in (200, 201):
                raise RuntimeError(f"the sandbox answered HTTP {response.status}")

    await asyncio.gather(*(worker() for _ in range(in_flight)))


async def measure(url: str, api_key: str, requests: int, repeat: int) -> list[tuple[float, float]]:
    """(CPU seconds, wall seconds) of each repetition."""
    concurrency = CONCURRENCY * REQUESTS_PER_BATCH
    http = HttpClient(url, {"Authorization": f"Bearer {api_key}"}, rate_limit=RateLimit(10_000_000, 3),
                      concurrency=concurrency)
    body = track_body()
    try:
        await send(http, body, concurrency * 2, concurrency)  # warm-up: every connection open
        costs = []
        for _ in range(repeat):
            cpu, wall = time.process_time(), time.perf_counter()
            await send(http, body, requests, concurrency)
            costs.append((time.process_time() - cpu, time.perf_counter() - wall))
        return costs
    finally:
        await http.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=13_334, help="requests per repetition (13,334: 1M profiles)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; the best counts")
    args = parser.parse_args()
    print(f"machine: {common.machine()}; load average {common.load_average()}", flush=True)
    with common.sandbox("braze", "--rate-limit", "0") as box:
        costs = asyncio.run(measure(box.url, box.api_key, args.requests, args.repeat))
    for cpu, wall in costs:
        print(f"  {args.requests:,} requests: {cpu / args.requests * 1e6:.1f} µs CPU/request, "
              f"{wall:.2f} s wall ({args.requests / wall:,.0f} requests/s)", flush=True)
    best = min(cpu for cpu, _ in costs) / args.requests * 1e6
    figure = Figure("HttpClient CPU per request (75-user body, sandbox unthrottled)", best,
                    MICROSECONDS_PER_REQUEST, "µs", note=f"best of {args.repeat}")
    print(common.table([figure]))
    print(f"load average after: {common.load_average()}")
    return 0 if figure.met else 1


if __name__ == "__main__":
    sys.exit(main())
