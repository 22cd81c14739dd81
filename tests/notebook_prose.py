"""What a notebook's prose may not do, for the per-notebook tests: type a number that a run
produced (print it from a code cell instead) or tell the notebook's development history."""

from __future__ import annotations

import re

DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+")
HISTORY = re.compile(r"earlier version|previous version|session \d|lab log|we used to", re.I)


def prose_problems(nb, constants: set[str]) -> list[str]:
    """For each markdown cell: the decimals it types that are not in `constants` (fixed values
    the prose may name, such as a threshold), and any development history."""
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        typed = set(DECIMAL.findall(cell.source)) - constants
        if typed:
            problems.append(f"cell {index} types the numbers {sorted(typed)}: print them from a "
                            "code cell and refer to the output instead")
        if HISTORY.search(cell.source):
            problems.append(f"cell {index} tells development history")
    return problems
