# Pictures a technician would rather look at than read: the fitted curve with residuals, and the QC chart.
from __future__ import annotations

from pathlib import Path

import numpy as np

from station.decide.qc import QCState


def _pyplot():
    # Headless on the Pi and in CI: Agg draws to files only, no display or GUI toolkit needed.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curve_plot(analysis, path: Path, title: str = "") -> None:
    """T/C against concentration (log axis; blanks drawn at the left edge), the 4PL, LOD, limit, cutoff, residuals."""
    plt = _pyplot()
    reps = analysis.replicates
    nonzero = sorted({r.concentration for r in reps if r.concentration > 0})
    left = min(nonzero[0], analysis.lod)
    blank_x = left / 5  # where the blanks sit on a log axis that cannot show zero
    fig, (ax, rax) = plt.subplots(2, 1, figsize=(7.5, 7.0), height_ratios=(3, 1.2), sharex=True)
    xs = np.array([r.concentration if r.concentration > 0 else blank_x for r in reps])
    ys = np.array([r.tc for r in reps])
    low = np.array([r in analysis.downweighted for r in reps])
    ax.scatter(xs[~low], ys[~low], s=28, color="#1f5fa8", label="replicates", zorder=3)
    if low.any():
        ax.scatter(xs[low], ys[low], s=70, marker="x", color="#d62728", label="down-weighted", zorder=4)
    grid = np.geomspace(left / 2.5, nonzero[-1] * 1.6, 300)
    ax.plot(grid, analysis.curve.tc(grid), color="#333333", lw=1.6, label="4PL fit")
    # The curve's value at zero (a), drawn across the blank column: the blanks are fitted there, not at blank_x.
    ax.plot([blank_x / 1.4, blank_x * 1.4], [analysis.curve.a] * 2, color="#333333", lw=2.5)
    ax.axvline(left / 2.5, color="#999999", lw=0.8, ls=(0, (1, 3)))
    ax.axhline(analysis.cutoff, color="#d62728", ls="--", lw=1.2,
               label=f"cutoff T/C {analysis.cutoff:.3f} (positive below)")
    ax.axvline(analysis.limit, color="#2ca02c", ls="-.", lw=1.2, label=f"limit {analysis.limit:g} {analysis.unit}")
    ax.axvline(analysis.lod, color="#9467bd", ls=":", lw=1.5, label=f"LOD {analysis.lod:.3g} {analysis.unit}")
    ax.plot([analysis.limit], [analysis.tc_at_limit], marker="D", color="#2ca02c", ms=7, zorder=5)
    ax.set_xscale("log")
    ax.set_ylabel("T/C ratio")
    ax.set_title(title or "calibration from standards")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="lower left")
    c = analysis.curve
    text = (f"a={c.a:.3f}  b={c.b:.3f}\nc={c.c:.4g}  d={c.d:.3f}\nR²={analysis.fit.r2:.4f}  "
            f"resid SD={analysis.fit.scale:.3f}\nblank {analysis.blank_mean:.3f} ± {analysis.blank_sd:.3f}\n"
            f"T/C at limit {analysis.tc_at_limit:.3f}\nFN {100 * analysis.false_negative:.1f} %  "
            f"FP {100 * analysis.false_positive:.1f} %")
    ax.text(0.98, 0.97, text, transform=ax.transAxes, ha="right", va="top", fontsize=8, family="monospace",
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85})
    res = ys - analysis.curve.tc(np.array([r.concentration for r in reps]))
    rax.axhline(0, color="#333333", lw=1)
    rax.scatter(xs[~low], res[~low], s=20, color="#1f5fa8")
    if low.any():
        rax.scatter(xs[low], res[low], s=50, marker="x", color="#d62728")
    rax.set_ylabel("residual")
    rax.set_xlabel(f"concentration ({analysis.unit or 'as in the series'}); blanks at the left edge")
    rax.grid(True, which="both", alpha=0.25)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def qc_chart(state: QCState, path: Path) -> None:
    """Levey–Jennings: control T/C in time order against the lot's target mean and ±1/2/3 SD; rule hits marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    tcs = [j.reading.tc for j in state.judged]
    xs = np.arange(1, len(tcs) + 1)
    ax.plot(xs, tcs, color="#1f5fa8", lw=1, marker="o", ms=5, label="control card T/C")
    if state.mean is not None and state.sd is not None:
        ax.axhline(state.mean, color="#333333", lw=1.2, label=f"mean {state.mean:.3f}")
        for k, colour in ((1, "#bbbbbb"), (2, "#ff7f0e"), (3, "#d62728")):
            for sign in (1, -1):
                ax.axhline(state.mean + sign * k * state.sd, color=colour, ls="--", lw=0.9,
                           label=f"±{k} SD" if sign == 1 else None)
        ax.axvspan(0.5, sum(j.baseline for j in state.judged) + 0.5, color="#eeeeee", zorder=0,
                   label="baseline (sets mean and SD)")
    for x, j in zip(xs, state.judged, strict=True):
        if j.rule:
            colour = "#d62728" if j.rule == "1-3s" else "#ff7f0e"
            ax.plot([x], [j.reading.tc], marker="o", ms=11, mfc="none", mec=colour, mew=2)
            ax.annotate(j.rule + (" reject" if j.rule == "1-3s" else " warn"), (x, j.reading.tc),
                        textcoords="offset points", xytext=(6, 8), color=colour, fontsize=8)
    status = state.blocked and "BLOCKED" or state.warning and "warning" or (
        "in control" if state.mean is not None else "establishing baseline")
    ax.margins(y=0.15)  # room for the rule labels above the highest point
    ax.set_title(f"Levey–Jennings, lot {state.lot}: {status}")
    ax.set_xlabel("control card (time order)")
    ax.set_ylabel("T/C ratio")
    ax.grid(True, alpha=0.25)
    ax.legend(fontsize=7, loc="upper left", ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
