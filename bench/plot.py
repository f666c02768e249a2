"""`python -m bench.plot [results.json] [-o bench.png]`: benchmark figures as ratios to their baselines.

Every figure becomes one horizontal bar: a measurement divided by what it is judged against (the
no-op endpoint, the raw read, a latency target), on a logarithmic axis so that 0.1x and 10x are
equally far from 1. A bar is green where it meets its target, red where it misses, grey where
there is no target; a black tick marks the target on its row.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT = Path(__file__).with_name("results.json")


@dataclass(frozen=True)
class Bar:
    label: str
    ratio: float
    target: float | None
    higher_is_better: bool
    detail: str

    @property
    def meets(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target


def bars(results: Mapping[str, Any]) -> list[Bar]:
    """The bars for whichever sections `results` has (see `plot` for the keys)."""
    out: list[Bar] = []
    for section, ingest in results.items():
        if not section.startswith("ingest") or not ingest:
            continue
        mode = section.removeprefix("ingest").strip(" _")
        base = float(ingest["noop"])
        target = ingest.get("target_ratio")
        for key, name in (("distinct", "distinct alerts"), ("storm", "duplicate storm")):
            if key in ingest:
                rate = float(ingest[key])
                out.append(
                    Bar(
                        f"ingest{f' ({mode})' if mode else ''}: {name} / no-op",
                        rate / base,
                        target,
                        True,
                        f"{rate:,.0f} vs {base:,.0f} alerts/s",
                    )
                )
    analytics = results.get("analytics")
    if analytics:
        r = analytics["rebuild"]
        out.append(
            Bar(
                "rebuild / raw read",
                float(r["ratio"]),
                r.get("target_ratio"),
                True,
                f"{r['rebuild_events_per_s']:,.0f} vs {r['raw_read_events_per_s']:,.0f} events/s",
            )
        )
        limit = float(analytics.get("query_target_ms", 50.0))
        for name, q in analytics.get("queries", {}).items():
            out.append(
                Bar(f"p95 {name} / {limit:g} ms", q["p95_ms"] / limit, 1.0, False, f"{q['p95_ms']:,.1f} ms")
            )
    for name, lat in results.get("latencies", {}).items():
        out.append(
            Bar(
                f"{name} / target",
                lat["ms"] / lat["target_ms"],
                1.0,
                False,
                f"{lat['ms']:,.1f} of {lat['target_ms']:,.0f} ms",
            )
        )
    for name, mem in results.get("memory", {}).items():
        out.append(
            Bar(
                f"{name} / limit",
                mem["mb"] / mem["limit_mb"],
                1.0,
                False,
                f"{mem['mb']:,.0f} of {mem['limit_mb']:,.0f} MB",
            )
        )
    return out


def plot(results: Mapping[str, Any], path: Path, *, title: str = "Lynchpin benchmarks") -> Path:
    """Draw `results` as a PNG at `path`. Every section is optional; the keys:

    - `ingest`: alerts/s from `python -m bench`: `{"noop": float, "distinct": float, "storm": float}`,
      optionally `"target_ratio"` (the fraction of the no-op rate to reach). Bars: each / no-op.
    - `analytics`: the dict `bench.analytics.run` returns. Used: `rebuild.ratio` (rebuild events/s over
      raw-read events/s), `rebuild.target_ratio`, `rebuild.rebuild_events_per_s`,
      `rebuild.raw_read_events_per_s`; `queries.<name>.p95_ms` and `query_target_ms` (default 50).
      Bars: rebuild / raw read; each query's p95 / the target.
    - `latencies`: `{name: {"ms": float, "target_ms": float}}`, e.g. `{"alert -> visible p99":
      {"ms": 41.0, "target_ms": 1000}}`. Bars: each / its target.
    - `memory`: `{name: {"mb": float, "limit_mb": float}}`. Bars: each / its limit.
    Further ingest sections (`ingest_distributed`, ...) are drawn like `ingest`, labelled by their suffix.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = bars(results)
    if not drawn:
        raise ValueError("nothing to plot: results has no ingest, analytics, latencies or memory section")
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(drawn) + 1.6))
    rows = list(range(len(drawn)))[::-1]
    colours = {True: "#2e7d32", False: "#c62828", None: "#9e9e9e"}
    ax.barh(rows, [b.ratio for b in drawn], color=[colours[b.meets] for b in drawn], height=0.6)
    ax.set_xscale("log")
    ax.axvline(1.0, color="#555555", linewidth=0.8, linestyle="--")
    for row, b in zip(rows, drawn, strict=True):
        if b.target is not None:
            ax.plot([b.target, b.target], [row - 0.4, row + 0.4], color="black", linewidth=2)
        goal = "" if b.target is None else f"  (target {'>=' if b.higher_is_better else '<='} {b.target:g}x)"
        ax.annotate(
            f" {b.ratio:.2f}x: {b.detail}{goal}",
            (max(b.ratio, b.target or 0.0), row),
            va="center",
            fontsize=8,
            xytext=(3, 0),
            textcoords="offset points",
        )
    ax.set_yticks(rows, [b.label for b in drawn], fontsize=9)
    lo = min(min(b.ratio for b in drawn), *(b.target for b in drawn if b.target is not None))
    hi = max(max(b.ratio for b in drawn), *(b.target for b in drawn if b.target is not None))
    ax.set_xlim(lo / 2, hi * 25)  # room on the right for the labels
    ax.set_xlabel("ratio to baseline or target (log scale; dashed line: 1x)")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", type=Path, nargs="?", default=DEFAULT, help="JSON of the figures")
    parser.add_argument("-o", "--output", type=Path, default=None, help="PNG (default: beside the JSON)")
    args = parser.parse_args()
    if not args.results.exists():
        raise SystemExit(
            f"{args.results} not found: write one with `python -m bench.analytics --json {args.results}`"
        )
    out = args.output if args.output is not None else args.results.with_suffix(".png")
    print(plot(json.loads(args.results.read_text()), out))


if __name__ == "__main__":
    main()
