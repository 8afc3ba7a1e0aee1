"""Render a ``prunetune bench`` JSON report as the README's Markdown "Efficiency" section.

    python benchmarks/render_efficiency.py benchmarks/results/smollm2-135m-cpu.json > efficiency.md

The section is generated from the measured data, never typed by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from prunetune.benchmark import render_markdown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a prunetune bench JSON file")
    parser.add_argument("--heading", default="## Efficiency", help="the section's heading line")
    args = parser.parse_args()
    sys.stdout.write(render_markdown(json.loads(args.report.read_text()), heading=args.heading))
    return 0


if __name__ == "__main__":
    sys.exit(main())
