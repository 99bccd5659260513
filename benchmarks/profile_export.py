"""Profile one first-run Braze export (four mapped fields, unthrottled sandbox) with cProfile.

    .venv/bin/python benchmarks/profile_export.py --rows 200000            # top 40 by own time
    .venv/bin/python benchmarks/profile_export.py --sort cumulative --top 60
    .venv/bin/python benchmarks/profile_export.py --save /tmp/export.prof  # keep the profile

cProfile adds a fixed cost to every Python call, so it overstates functions that are called
per row; use its figures to rank, and ``run_all.py --only cpu`` (no profiler) to measure.
Sampling without that bias: run the command this script prints under ``py-spy record``.
"""

from __future__ import annotations

import argparse
import pstats
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - after the path tweak

#: The issue's reference export: email, customer ID and two attributes.
CPU_ATTRIBUTES = ("first_name", "last_name")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="profiles to send (default 200,000)")
    parser.add_argument("--sort", default="tottime", help="pstats sort key (default tottime)")
    parser.add_argument("--top", type=int, default=40, help="functions to print")
    parser.add_argument("--save", type=Path, help="write the raw profile here")
    args = parser.parse_args()
    data = common.profiles(args.rows)
    with tempfile.TemporaryDirectory() as tmp, common.sandbox("braze", "--rate-limit", "0") as box:
        profile = args.save or Path(tmp) / "export.prof"
        export, body = common.braze_export(box.url, requests_per_3s=10_000_000, attributes=CPU_ATTRIBUTES)
        with common.workspace(data, body) as ws:
            run = common.run_export(ws, export, {common.BRAZE_KEY_VAR: box.api_key}, timeout=600,
                                    wrapper=(sys.executable, "-m", "cProfile", "-o", str(profile)))
            common.check_ok(run, "profile", sent=args.rows)
        print(f"{args.rows:,} profiles under cProfile: {run.seconds:.2f} s wall, {run.cpu_seconds:.2f} s CPU "
              f"(profiler included); load average {common.load_average()}")
        pstats.Stats(str(profile)).strip_dirs().sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
