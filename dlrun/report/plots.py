"""A report's plots: every run's learning curves, and the metric against a 1-D or 2-D grid of settings."""
from __future__ import annotations

import statistics

from dlrun.plotter import pyplot, text_width, wrap
from dlrun.report.runs import metric, number, sort_value
from dlrun.report.tables import shown_setting

# ---- plots ----------------------------------------------------------------------------------------
MAX_LEGEND = 20  # runs named in a legend (the first in the table's order)

def run_labels(runs: list[dict], keys: list[str]) -> list[str]:
    """What tells each run apart: its values of the `keys` that differ between runs (those it sets), else
    its folder's name; the name is added where two runs would read the same."""
    values = {k: shown_setting([run["overrides"].get(k) for run in runs]) for k in keys}
    labels = [" ".join(f"{k}={values[k][i]}" for k in keys if k in run["overrides"]) or run["name"]
              for i, run in enumerate(runs)]
    return [f"{label} ({run['name']})" if labels.count(label) > 1 and label != run["name"] else label
            for label, run in zip(labels, runs)]

def _legend_size(labels: list[str], title: str = "") -> tuple[float, float]:
    """About the (width, height) in inches of a legend of `labels` at 8 points, one column."""
    lines = sum(label.count("\n") + 1 for label in labels) + (1 if title else 0)
    return max(text_width(t, 8) for t in [*labels, title]) + 0.6, lines * 8 * 1.6 / 72 + 0.4

def curves_figure(runs: list[dict], labels: list[str], title: str):
    """Every run's learning curves overlaid: losses (train dashed, validation solid), validation accuracy.
    The legend stands right of the plots and names the first MAX_LEGEND runs."""
    plt = pyplot()

    with_acc = any("val_accuracy" in r for run in runs for r in run["rows"])
    named = [wrap(label + ("" if run["status"] == "completed" else f" ({run['status']})"), 3.2, 8)
             for label, run in zip(labels[:MAX_LEGEND], runs)]
    legend_title = f"first {MAX_LEGEND} of {len(runs)} runs" if len(runs) > MAX_LEGEND else ""
    legend_w, legend_h = _legend_size(named, legend_title)
    width = (11.0 if with_acc else 6.0) + legend_w
    title = wrap(title, width - 0.4, 12)
    fig, axes = plt.subplots(1, 2 if with_acc else 1, squeeze=False, layout="constrained",
                             figsize=(width, max(4.5, legend_h + 0.25 * title.count("\n") + 0.6)))
    ax_loss, ax_acc = axes[0][0], axes[0][1] if with_acc else None
    handles = []
    for i, run in enumerate(runs):
        epochs = [r.get("epoch") for r in run["rows"]]

        def series(name):
            return [v if v is not None else float("nan") for v in (number(r.get(name)) for r in run["rows"])]

        # ten colours; the marker tells runs i and i + 10 apart
        style = {"color": f"C{i % 10}", "marker": "os^Dv"[i // 10 % 5], "markersize": 4, "linewidth": 1.2,
                 "markevery": max(1, len(epochs) // 10)}
        handles += ax_loss.plot(epochs, series("val_loss"), **style)
        ax_loss.plot(epochs, series("train_loss"), linestyle="--", alpha=0.5, **style)
        if ax_acc is not None:
            ax_acc.plot(epochs, series("val_accuracy"), **style)
    losses = [v for run in runs for r in run["rows"] for v in (number(r.get("val_loss")), number(r.get("train_loss")))
              if v is not None]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 30:
        ax_loss.set_yscale("log")
    for ax in axes[0]:
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs: no 2.25
    ax_loss.set(xlabel="epoch", ylabel="loss")
    ax_loss.set_title("loss (validation solid, training dashed)", fontsize=10)
    if ax_acc is not None:
        ax_acc.set(xlabel="epoch", ylabel="validation accuracy")
        ax_acc.set_title("validation accuracy", fontsize=10)
    fig.legend(handles[:MAX_LEGEND], named, loc="outside right upper", fontsize=8, title=legend_title or None,
               title_fontsize=8)
    fig.suptitle(title, fontsize=12)
    return fig

def grid_axes(runs: list[dict], keys: list[str]) -> tuple[str, str | None] | None:
    """(x key, line key) when the swept keys, seeds aside, form a 1-D or 2-D grid; else None.
    The x axis gets the numeric key with more values."""
    dims = [k for k in keys if k != "seed"]
    if not 1 <= len(dims) <= 2:
        return None

    def numeric(k):
        return all(sort_value(r["overrides"].get(k))[0] == 0 for r in runs)

    dims.sort(key=lambda k: (not numeric(k), -len({r["overrides"].get(k) for r in runs})))
    return dims[0], (dims[1] if len(dims) == 2 else None)

def grid_figure(runs: list[dict], axes: tuple[str, str | None], metric_name: str, title: str):
    """The metric against the swept value (one line per value of a second key, named right of the plot);
    the mean over seeds, with their spread as error bars. Jobs that did not complete are red crosses on
    the x axis."""
    plt = pyplot()

    x_key, line_key = axes
    xs = sorted({r["overrides"].get(x_key) for r in runs}, key=sort_value)
    numeric = all(sort_value(x)[0] == 0 for x in xs)
    pos = {x: float(x) if numeric else i for i, x in enumerate(xs)}
    lines = sorted({r["overrides"].get(line_key) for r in runs}, key=sort_value) if line_key else [None]
    names = [wrap(f"{line_key}={v}", 3.2, 8) for v in shown_setting(lines)] if line_key else []
    width = 7.0 + (_legend_size(names)[0] if names else 0)
    title = wrap(title, width - 0.4, 12)
    fig, ax = plt.subplots(figsize=(width, 4.5 + 0.25 * title.count("\n")), layout="constrained")
    for i, line in enumerate(lines):
        px, py, pe = [], [], []
        for x in xs:
            cell = [r for r in runs if r["overrides"].get(x_key) == x
                    and (line_key is None or r["overrides"].get(line_key) == line)]
            values = [v for v in (metric(r, metric_name) for r in cell if r["status"] == "completed") if v is not None]
            if len(values) < len(cell):
                ax.plot([pos[x]], [0.03 + 0.03 * i], "x", color="red", transform=ax.get_xaxis_transform())
            if values:
                px.append(pos[x])
                py.append(statistics.fmean(values))
                pe.append(statistics.pstdev(values) if len(values) > 1 else 0.0)
        ax.errorbar(px, py, yerr=pe if any(pe) else None, marker="o", capsize=3, color=f"C{i % 10}",
                    label=names[i] if line_key else None)
    if numeric and all(p > 0 for p in pos.values()) and max(pos.values()) / min(pos.values()) >= 100:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(list(pos.values()), [wrap(x, 1.5, 9) for x in shown_setting(xs)], rotation=30, fontsize=9)
    failed = sum(r["status"] != "completed" for r in runs)
    ax.set(xlabel=x_key, ylabel=metric_name)
    ax.set_title(wrap(f"{metric_name} against {x_key}" + (f" (x: {failed} job(s) not completed)" if failed else ""),
                      width - 1.5, 10), fontsize=10)
    if line_key:
        fig.legend(loc="outside right upper", fontsize=8)
    fig.suptitle(title, fontsize=12)
    return fig
