"""Run the benchmarks and write bench/results/latest.md.

    python -m bench.runner [--only NAME] [--duration SECONDS]

Every module bench/bench_<name>.py exposes `run(duration: float) -> str` (a markdown section);
they run in name order, each case for `--duration` seconds (default 60), and the report gets
the machine description, the date and every section.
"""

import argparse
import importlib
import signal
import sys
import time
from pathlib import Path

from . import common

DEFAULT_DURATION = 60.0


def discover() -> list[str]:
    return sorted(
        path.stem.removeprefix("bench_") for path in Path(__file__).parent.glob("bench_*.py")
    )


def main(argv: list[str] | None = None) -> int:
    names = discover()
    parser = argparse.ArgumentParser(
        prog="python -m bench.runner", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--only", choices=names, action="append", help="run this benchmark only (repeatable)"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_DURATION,
        help=f"seconds per measured case (default {DEFAULT_DURATION:g})",
    )
    args = parser.parse_args(argv)
    if args.duration < 1:
        parser.error("--duration must be at least 1 second")
    selected = args.only or names

    # SIGTERM unwinds like Ctrl-C: the gunicorn of the case in progress is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    common.django_setup()
    started = common.now_utc()
    machine = common.machine_description()
    command = "python -m bench.runner " + " ".join(sys.argv[1:] if argv is None else argv)
    sections = []
    clock = time.monotonic()
    for name in selected:
        print(f"==> bench_{name} ({args.duration:g} s per case)", flush=True)
        module = importlib.import_module(f"bench.bench_{name}")
        sections.append(module.run(args.duration))
    minutes = (time.monotonic() - clock) / 60

    report = "\n".join(
        [
            "# sessionhub benchmarks",
            "",
            f"Run {started} ({minutes:.1f} min): `{command.strip()}`",
            "",
            "Machine:",
            "",
            machine,
            "",
            *[section + "\n" for section in sections],
        ]
    )
    latest = common.RESULTS_DIR / "latest.md"
    latest.write_text(report)
    print(f"\n{report}\n==> written to {common.rel(latest)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
