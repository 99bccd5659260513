"""CPU of mapping alone, in process: ``map`` row by row against ``map_batch``, per plugin.

    .venv/bin/python benchmarks/mapping.py                  # 200,000 profiles
    .venv/bin/python benchmarks/mapping.py --rows 1000000

Each plugin maps the benchmark profiles in the engine's Arrow batches (Braze 8,250 rows: 11
of its batches of 750, mapped at once; Brevo 25,000) for its export of ``common`` (Braze:
email, customer ID, two attributes; Brevo: email, names, phone), as first-run joins; the
JSON the requests would carry is encoded too.
The figure is CPU time (``time.process_time``) per profile, best of three.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - after the path tweak
from segship.destination import ConnectionContext, Destination, ExportContext, RowRejected  # noqa: E402
from segship_braze.destination import BrazeDestination, track_body  # noqa: E402
from segship_braze.schemas import DEFAULT_BATCH_SIZE  # noqa: E402
from segship_sendinblue.destination import SendinblueDestination  # noqa: E402




def braze() -> BrazeDestination:
    connection = ConnectionContext("braze", {"api_key": "k" * 32, "rest_endpoint": "http://127.0.0.1"})
    mapping = {"customer_id": "customer_id", "email": "email",
               "attributes": {name: name for name in common.BRAZE_ATTRIBUTES}}
    return BrazeDestination(connection, ExportContext("to-braze", {"segment_api_identifier": common.SEGMENT_ID},
                                                      mapping))


def brevo() -> SendinblueDestination:
    connection = ConnectionContext("brevo", {"api_key": "k" * 32})
    mapping = {"email": "email", "first_name": "first_name", "last_name": "last_name", "phone": "phone"}
    return SendinblueDestination(connection, ExportContext("to-brevo", {"list_id": common.BREVO_LIST_ID}, mapping))


def row_by_row(destination: Destination, rows) -> list:
    payloads = []
    for row in rows.to_pylist():
        try:
            payloads.append(destination.map(row).payload)
        except RowRejected:
            pass
    return payloads


def batch_wise(destination: Destination, rows) -> Sequence:
    mapped = destination.map_batch(rows)
    if not mapped.rejects:
        return mapped.payloads  # as the engine hands them on (a Braze JsonArray stays one)
    return [payload for index, payload in enumerate(mapped.payloads) if index not in mapped.rejects]


def braze_requests(payloads: Sequence) -> None:
    """The /users/track bodies, as the destination makes them."""
    for start in range(0, len(payloads), DEFAULT_BATCH_SIZE):
        track_body(payloads[start:start + DEFAULT_BATCH_SIZE])


def cpu_per_profile(work: Callable[[], None], rows: int) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best / rows * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="profiles to map (default 200,000)")
    args = parser.parse_args()
    table = pq.read_table(common.profiles(args.rows))
    print(f"mapping {args.rows:,} profiles; load average {common.load_average()}")
    encoders = {"braze": braze_requests, "brevo": b",".join}  # Brevo's payloads are each contact's JSON
    for name, destination, size in (("braze", braze(), 8_250), ("brevo", brevo(), 25_000)):
        encode = encoders[name]
        batches = table.select(destination.source_columns(destination.export.mapping)).to_batches(size)
        for way, mapper in (("map, row by row", row_by_row), ("map_batch", batch_wise)):
            def work() -> None:
                for batch in batches:
                    encode(mapper(destination, batch))  # and the requests' JSON
            print(f"  {name:6s} {way:16s} {cpu_per_profile(work, args.rows):6.2f} µs CPU per profile", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
