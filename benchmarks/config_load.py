"""Loading and validating a large config: ``segship validate`` of 1,000, 5,000 and 20,000 segments.

    .venv/bin/python benchmarks/config_load.py
    .venv/bin/python benchmarks/config_load.py --segments 1000 --segments 2000 --timeout 60

Each size is a config directory written before the clock starts: one file with the source
and a Braze connection, and four files that share the segments, each segment with one
export through the connection (so N segments are 2N entries). ``segship validate -c DIR``
runs in a child process; the figure is its CPU time (user + system, ``RUSAGE_CHILDREN``), best of
``--repeat``, wall time beside it. A config of one segment gives the CLI's start-up, which
the per-segment cost leaves out.

Bounds: CPU ≤ 1 s + 0.4 ms per segment (20,000 segments in 9 s), and loading is linear:
the per-segment cost at the largest size is at most 1.25 times that at the middle one
(quadratic loading gives 4 times from 5,000 to 20,000). A run over ``--timeout`` is killed
and reported. Exits 1 if a bound is missed.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - after the path tweak
from common import Figure  # noqa: E402

SIZES = (1_000, 5_000, 20_000)
FILES = 4
START_UP_ALLOWANCE = 1.0    # seconds of CPU for the CLI's own start (imports, plugins, schema)
SECONDS_PER_SEGMENT = 0.0004
LINEAR_GROWTH = 1.25        # per-segment cost, largest size against the middle one

BASE = """\
version: 1
sources:
  crm: {type: duckdb, path: data/profiles.csv}
connections:
  braze-prod:
    type: braze
    display_name: Braze production
    data_privacy_consent: true
    settings:
      api_key: ${env:BRAZE_API_KEY}
      rest_endpoint: https://rest.iad-01.braze.com
"""


def write_config(root: Path, segments: int) -> None:
    """``segments`` segments and as many exports (one each), in FILES files beside the base file."""
    root.mkdir(parents=True)
    (root / "base.yaml").write_text(BASE)
    for part in range(FILES):
        numbers = range(part * segments // FILES, (part + 1) * segments // FILES)
        if not numbers:
            continue
        lines = ["version: 1", "segments:"]
        for n in numbers:
            lines += [f"  segment-{n}:", "    source: crm", "    key: customer_id",
                      f"    sql: SELECT * FROM crm WHERE lifetime_value > {n}"]
        lines.append("exports:")
        for n in numbers:
            lines += [f"  export-{n}:", f"    display_name: Segment {n} to Braze", "    connection: braze-prod",
                      f"    segments: [segment-{n}]",
                      f"    settings: {{segment_api_identifier: {common.SEGMENT_ID}}}",
                      "    mapping: {email: email, customer_id: customer_id, attributes: {first_name: first_name}}"]
        (root / f"part-{part}.yaml").write_text("\n".join(lines) + "\n")


def validate(root: Path, timeout: float) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of ``segship validate -c ROOT``; TimeoutExpired once over ``timeout``."""
    common.compile_bytecode()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([common.SEGSHIP, "validate", "-c", str(root)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child's own CPU, once it is waited for
    if done.returncode != 0:
        raise RuntimeError(f"segship validate of {root.name} exited {done.returncode}: {done.stderr[-2000:]}")
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, wall


def best(root: Path, repeat: int, timeout: float) -> tuple[float, float]:
    return min(validate(root, timeout) for _ in range(repeat))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, action="append",
                        help="a config size in segments (repeat for several; default 1,000, 5,000 and 20,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size; the best counts")
    parser.add_argument("--timeout", type=float, default=120, help="seconds before a run is killed")
    args = parser.parse_args()
    sizes = sorted(args.segments or SIZES)
    print(f"machine: {common.machine()}; load average {common.load_average()}", flush=True)
    figures: list[Figure] = []
    per_segment: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="segship-bench-config-") as folder:
        write_config(Path(folder) / "start-up", 1)
        start_up, _ = best(Path(folder) / "start-up", args.repeat, args.timeout)
        print(f"  start-up (one segment): {start_up:.2f} s CPU", flush=True)
        for size in sizes:
            root = Path(folder) / f"segments-{size}"
            write_config(root, size)
            try:
                cpu, wall = best(root, args.repeat, args.timeout)
            except subprocess.TimeoutExpired:
                print(f"  {size:,} segments: over {args.timeout:.0f} s, killed", flush=True)
                cpu = wall = float("inf")
            per_segment[size] = (cpu - start_up) / size
            print(f"  {size:,} segments + {size:,} exports: {cpu:.2f} s CPU, {wall:.2f} s wall, "
                  f"{per_segment[size] * 1e3:.3f} ms CPU per segment above start-up", flush=True)
            figures.append(Figure(f"`segship validate`, {size:,} segments + {size:,} exports (CPU)", cpu,
                                  START_UP_ALLOWANCE + SECONDS_PER_SEGMENT * size, "s",
                                  note=f"{wall:.2f} s wall; best of {args.repeat}"))
    if len(sizes) >= 2:
        middle, largest = sizes[-2], sizes[-1]
        growth = per_segment[largest] / per_segment[middle]
        figures.append(Figure(f"per-segment CPU, {largest:,} against {middle:,} segments", growth, LINEAR_GROWTH,
                              "×", note=f"quadratic: {largest / middle:g}×"))
    print(common.table(figures))
    print(f"load average after: {common.load_average()}")
    return 0 if all(figure.met for figure in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
