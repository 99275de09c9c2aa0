#!/usr/bin/env python3
"""Learning curves of several runs on one chart, from their episodes.csv.

    scripts/compare_runs.py OUT.svg LABEL=RUN_DIR [LABEL=RUN_DIR ...] [--window STEPS] [--column score]
                            [--until STEPS]

Each run's training episodes are binned by the env step at which they ended
(--window steps per bin, 10,000 by default); the chart shows the mean of
--column (score or return) per bin, and a Markdown table of the same numbers
(mean, max and episodes per bin) goes to stdout. --until drops episodes that
ended after that step, so runs that got different distances compare on the
same budget. Standard library only.
"""
import csv
import sys
from pathlib import Path

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def bins(run_dir, window, column, until):
    out = {}
    with open(Path(run_dir) / "episodes.csv", newline="") as f:
        for row in csv.DictReader(f):
            if until is not None and int(row["end_step"]) > until:
                continue
            b = int(row["end_step"]) // window
            out.setdefault(b, []).append(float(row[column]))
    return {b: (sum(v) / len(v), max(v), len(v)) for b, v in sorted(out.items())}


def svg(series, window, column, width=720, height=360):
    left, right, top, bottom = 60, 150, 20, 40
    xs = [(b + 1) * window for s in series.values() for b in s]
    ys = [m for s in series.values() for (m, _, _) in s.values()]
    x_max = max(xs) if xs else 1
    y_max = max(max(ys) if ys else 1.0, 1e-9) * 1.1
    sx = lambda x: left + (width - left - right) * x / x_max
    sy = lambda y: top + (height - top - bottom) * (1 - y / y_max)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<line x1="{left}" y1="{sy(0)}" x2="{width - right}" y2="{sy(0)}" stroke="black"/>',
         f'<line x1="{left}" y1="{top}" x2="{left}" y2="{sy(0)}" stroke="black"/>']
    for k in range(5):
        y = y_max * k / 4
        o.append(f'<text x="{left - 6}" y="{sy(y) + 4}" text-anchor="end">{y:.2g}</text>')
        x = x_max * k / 4
        o.append(f'<text x="{sx(x)}" y="{height - bottom + 16}" text-anchor="middle">{x / 1000:.0f}k</text>')
    o.append(f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle">env steps</text>')
    o.append(f'<text x="14" y="{(top + height - bottom) / 2}" transform="rotate(-90 14 {(top + height - bottom) / 2})" '
             f'text-anchor="middle">mean {column} per {window // 1000}k steps</text>')
    for i, (label, s) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        points = " ".join(f"{sx((b + 1) * window):.1f},{sy(m):.1f}" for b, (m, _, _) in s.items())
        o.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        o.append(f'<text x="{width - right + 10}" y="{top + 16 * (i + 1)}" fill="{colour}">{label}</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"


def main(argv):
    window, column, runs, out, until = 10000, "score", {}, None, None
    args = iter(argv)
    for a in args:
        if a == "--window":
            window = int(next(args))
        elif a == "--column":
            column = next(args)
        elif a == "--until":
            until = int(next(args))
        elif "=" in a:
            label, run_dir = a.split("=", 1)
            runs[label] = run_dir
        elif out is None:
            out = a
        else:
            sys.exit(f"compare_runs: unexpected argument {a!r} (runs are LABEL=RUN_DIR)")
    if out is None or not runs:
        sys.exit(__doc__)
    series = {label: bins(d, window, column, until) for label, d in runs.items()}
    Path(out).write_text(svg(series, window, column))
    labels = list(series)
    print("| env steps | " + " | ".join(f"{l}: mean {column} (max, episodes)" for l in labels) + " |")
    print("| --- |" + " ---: |" * len(labels))
    for b in sorted({b for s in series.values() for b in s}):
        cells = []
        for l in labels:
            m = series[l].get(b)
            cells.append(f"{m[0]:.2f} ({m[1]:.0f}, {m[2]})" if m else "")
        print(f"| {b * window // 1000}–{(b + 1) * window // 1000}k | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
