"""Tables of runs that fit where they are printed (a terminal, or a pipe at their own width): `dlrun report`'s,
the end of a sweep's, the end of a run's. Numbers to 4 significant digits; what every row shares is said once."""
from __future__ import annotations

import math

# ---- tables of runs (also the table at the end of `dlrun -m`) ----------------------------------------
MAX_KEY_COLUMNS = 4  # more overrides that differ between runs share one wrapped "overrides" column

STATUS_COLOUR = {"completed": "green", "skipped": "green", "failed": "red", "interrupted": "yellow"}

def _float(v) -> float | None:
    """A float, or the float that text such as '0.0031' stands for; None for integers and anything else."""
    if isinstance(v, float):
        return v
    if not isinstance(v, str):
        return None
    try:
        int(v)
        return None  # '128', '0': shown as written
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return None

def _rounded(values: list, number, form: str) -> list[str]:
    """`values` as text, the numbers among them (`number(v)` not None) to 4 significant digits, or more
    where fewer would make different values look the same; None as blank."""
    def identity(v):
        f = number(v)
        return ("text", "" if v is None else str(v)) if f is None or math.isnan(f) else f

    distinct = len(set(map(identity, values)))
    for digits in range(4, 17):
        texts = ["" if v is None else str(v) if number(v) is None else format(number(v), f"{form}.{digits}g")
                 for v in values]
        if len(set(texts)) >= distinct:
            break
    return texts

def shown(values: list) -> list[str]:
    """A column's values as a table shows them: floats to 4 significant digits, trailing zeros kept so that
    decimals line up (0.5990); ints and text as they are."""
    return _rounded(values, lambda v: v if isinstance(v, float) else None, "#")

def shown_setting(values: list) -> list[str]:
    """Override values as a table shows them: numbers to 4 significant digits (0.004430375 -> 0.00443)."""
    return _rounded(values, _float, "")

def runs_table(rows: list[dict], overrides: list[dict], keep=("job",), fold: bool = False):
    """A rich table of runs and its caption. `rows`: one {column: value} per run, identity first ("job",
    "folder"); `overrides`: each run's {key: value}. The overrides that tell runs apart come after the
    identity, one column per key, or one wrapped "overrides" column with `fold` or when more than
    MAX_KEY_COLUMNS keys differ. Numbers are rounded (`shown`). What every row shares (overrides, and
    columns other than `keep` that hold one value) leaves the table for the caption: "same in every
    row: k=v, ...". """
    from rich.table import Table
    from rich.text import Text

    several = len(rows) > 1
    keys = list(dict.fromkeys(k for o in overrides for k in o))
    common = [k for k in keys if several and all(k in o for o in overrides) and len({o[k] for o in overrides}) == 1]
    varying = [k for k in keys if k not in common]
    same = [f"{k}={shown_setting([overrides[0][k]])[0]}" for k in common]
    columns = list(dict.fromkeys(c for r in rows for c in r))
    texts = {c: shown([r.get(c) for r in rows]) for c in columns}
    for c in list(columns):
        if several and c not in keep and len(set(texts[c])) == 1:
            columns.remove(c)
            same += [f"{c}={texts[c][0]}"] if texts[c][0] else []
    lead = [c for c in columns if c in ("job", "folder")]
    rest = [c for c in columns if c not in lead]
    key_cells = {k: shown_setting([o.get(k) for o in overrides]) for k in varying}
    folded = len(varying) > 1 and (fold or len(varying) > MAX_KEY_COLUMNS)
    if folded:
        key_cells = {"overrides": [" ".join(f"{k}={key_cells[k][i]}" for k in varying if k in o)
                                   for i, o in enumerate(overrides)]}

    table = Table()
    for c in lead:
        table.add_column(c, justify="left" if c == "job" else "right")
    for k in key_cells:
        table.add_column(k, max_width=48 if folded else None, overflow="fold")
    for c in rest:
        numeric = all(t == "" or _float(t) is not None or t.lstrip("-").isdigit() for t in texts[c])
        table.add_column(c, justify="right" if numeric else "left")
    cells = {**texts, **key_cells}
    for i in range(len(rows)):
        table.add_row(*(Text(cells[c][i], style=STATUS_COLOUR.get(cells[c][i], "dim") if c == "status" else "")
                        for c in [*lead, *key_cells, *rest]))
    return table, ("same in every row: " + ", ".join(same) if same else "")

def _width(console, table) -> int:
    """The columns `table` takes when nothing in it is folded."""
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update_width(10_000), table).maximum

def print_table(table, console=None) -> None:
    """Print `table`; where stdout is not a terminal (a pipe, a CI log) at the table's own width, not rich's
    default of 80 columns, so nothing is cut or folded."""
    from rich.console import Console

    console = console or Console()
    width = console.width
    if not console.is_terminal:
        console.width = _width(console, table)
    try:
        console.print(table)
    finally:
        console.width = width

def print_runs(title: str, rows: list[dict], overrides: list[dict], keep=("job",), console=None) -> None:
    """The title line, `runs_table` and its caption line; on a terminal too narrow for one column per
    override key, the keys share one column. The title and caption are never folded (the terminal may)."""
    from rich.console import Console

    console = console or Console()
    table, caption = runs_table(rows, overrides, keep)
    if console.is_terminal and _width(console, table) > console.width:
        table, caption = runs_table(rows, overrides, keep, fold=True)
    console.print(title, style="bold", soft_wrap=True, highlight=False, markup=False)
    print_table(table, console)
    if caption:
        console.print(caption, soft_wrap=True, highlight=False, markup=False)
