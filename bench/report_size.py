"""Report sizes at a benchmark size (issue 13): scan the simulator's scale scenario with the
real CLI, once plain and once with --gzip, and print each file's size.

    .venv/bin/python bench/report_size.py [--size L] [--dir /tmp/report-size]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nsx_route_gc.simulator import Simulator, scale_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="L", help="S, M or L (bench/run.py's sizes)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the reports")
    args = parser.parse_args()
    out = args.dir or Path(tempfile.mkdtemp(prefix="report-size-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NSXT_", "NSX_ROUTE_GC_"))}
    with Simulator(scale_size(args.size)) as sim:
        config = sim.write_config(out / "sim")
        for name, extra in (("plain", []), ("gzip", ["--gzip"])):
            started = time.monotonic()
            result = subprocess.run(
                [sys.executable, "-m", "nsx_route_gc", "--log-format", "json", "scan",
                 "--config", str(config), "--report-dir", str(out / name), *extra],
                capture_output=True, text=True, env=env, check=False,
            )  # fmt: skip
            took = time.monotonic() - started
            sys.stdout.write(f"{name}: exit {result.returncode}, {took:.1f} s\n")
            for path in sorted((out / name).iterdir()):
                sys.stdout.write(f"  {path.name}: {path.stat().st_size / 1e6:.1f} MB\n")


if __name__ == "__main__":
    main()
