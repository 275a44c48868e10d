"""Numbers, durations and markdown tables as reports print them, in one place.

Every report genlab writes (the lab's results.md, `genlab bench`, `genlab eval`,
the scripts in benchmarks/) formats through these, so a missing value, a time
or a table looks the same everywhere.
"""

from __future__ import annotations

import math
from pathlib import Path


def num(v, spec: str = ".3g", missing: str = "-") -> str:
    """`format(v, spec)`, or `missing` for None, NaN and +-inf."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return missing
    return format(v, spec)


def duration(seconds: float) -> str:
    """'4.2 s', '73 s', '2.5 min': the precision a wall-clock time deserves."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table: a header row, the separator, one line per row of cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def write_section(path: str | Path, name: str, text: str, title: str = "# genlab benchmarks") -> Path:
    """Put `text` between <!-- genlab-bench:name --> markers in a markdown file, keeping its other sections.

    A new file starts with `title`; the file is replaced atomically (write, then rename).
    """
    path = Path(path)
    start, end = f"<!-- genlab-bench:{name} -->", f"<!-- /genlab-bench:{name} -->"
    block = f"{start}\n{text.rstrip()}\n{end}"
    old = path.read_text() if path.exists() else f"{title}\n"
    if start in old and end in old:
        head, rest = old.split(start, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(new)
    tmp.replace(path)
    return path
