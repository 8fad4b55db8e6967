"""The parameter sets of a sweep: parsing `--grid` options and expanding a space into runs.

Grid values are comma lists (`lr=0.01,0.1,1`); with `random=N`, N combinations are sampled from
the grid, and a parameter may also be a distribution: `uniform(a,b)`, `loguniform(a,b)` or
`randint(a,b)` (both ends included). Pure functions of their arguments (no workspace), so the
CLI, the widgets and the REST forms parse and size a sweep exactly as `wb.sweep` runs it.
"""

from __future__ import annotations

import itertools
import math
import numbers
import random as random_module
import re
from dataclasses import dataclass
from typing import Any

from workbench.errors import ValidationError
from workbench.runs.params import coerce_text

_DISTRIBUTION = re.compile(r"^(uniform|loguniform|randint)\(\s*([^,()]+)\s*,\s*([^,()]+)\s*\)$")


@dataclass(frozen=True)
class Distribution:
    """A range to sample from in a random sweep."""

    kind: str
    low: float
    high: float

    def sample(self, rng: random_module.Random) -> float | int:
        if self.kind == "randint":
            return rng.randint(int(self.low), int(self.high))
        if self.kind == "loguniform":
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)


Space = dict[str, "list[Any] | Distribution"]


def parse_grid_option(text: str, declared: dict[str, dict[str, Any]], allow_new: bool = False) -> tuple[str, Any]:
    """`lr=0.01,0.1` -> ("lr", [0.01, 0.1]) with values typed like the notebook's default."""
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name or not values.strip():
        raise ValidationError(f"Invalid --grid {text!r}.", "Write NAME=V1,V2,... e.g. --grid lr=0.01,0.1")
    if name not in declared and not allow_new:
        known = ", ".join(sorted(declared)) or "none"
        raise ValidationError(f"Unknown parameter {name!r} in --grid (known: {known}).",
                              "Fix the name, or pass --allow-new-params.")  # fmt: skip
    type_name = declared.get(name, {}).get("type", "any")
    match = _DISTRIBUTION.match(values.strip())
    if match:
        try:
            low, high = float(match.group(2)), float(match.group(3))
        except ValueError as exc:
            raise ValidationError(f"Invalid range in --grid {text!r}.", "Bounds must be numbers.") from exc
        if low >= high or (match.group(1) == "loguniform" and low <= 0):
            raise ValidationError(f"Invalid range in --grid {text!r}.", "Need low < high (and low > 0 for loguniform).")
        return name, Distribution(match.group(1), low, high)
    return name, [coerce_text(name, v.strip(), type_name) for v in values.split(",")]


def _combination(lists: list[list[Any]], index: int) -> tuple[Any, ...]:
    """The `index`-th tuple of `itertools.product(*lists)`, without building the others."""
    picked = []
    for values in reversed(lists):
        index, position = divmod(index, len(values))
        picked.append(values[position])
    return tuple(reversed(picked))


def expand(space: Space, random: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Parameter sets of a sweep: the full grid, or `random` samples from it."""
    if not space:
        raise ValidationError("A sweep needs at least one parameter to vary.", "Add --grid NAME=V1,V2,...")
    for name, values in space.items():
        if not isinstance(values, Distribution) and not values:
            raise ValidationError(f"Parameter {name!r} has no values to sweep over.")
    names = list(space)
    has_distribution = any(isinstance(v, Distribution) for v in space.values())
    if random is None:
        if has_distribution:
            raise ValidationError("Ranges like uniform(a,b) need a random sweep.", "Add --random N.")
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*space.values())]
    if random < 1:
        raise ValidationError(f"--random must be at least 1, got {random}.")
    rng = random_module.Random(seed)
    if not has_distribution:
        # Sample positions, not a list of every combination: a 100^4 grid is 10^8 tuples. Same
        # draws as sampling the list (random.sample only uses its length).
        lists = [list(values) for values in space.values()]  # type: ignore[arg-type]
        total = math.prod(len(values) for values in lists)
        picked = [_combination(lists, index) for index in rng.sample(range(total), min(random, total))]
        return [dict(zip(names, combo, strict=True)) for combo in picked]
    return [
        {name: values.sample(rng) if isinstance(values, Distribution) else rng.choice(values)
         for name, values in space.items()}
        for _ in range(random)
    ]  # fmt: skip


def sweep_size(space: Space, random: Any = None) -> int:
    """How many runs `expand(space, random)` makes, computed without building them."""
    if random is not None and (isinstance(random, bool) or not isinstance(random, numbers.Integral) or random < 1):
        raise ValidationError(f"random must be a whole number of at least 1, not {random!r}.")
    grid = math.prod(len(v) for v in space.values() if not isinstance(v, Distribution))
    if random is None:
        return grid
    if any(isinstance(v, Distribution) for v in space.values()):
        return int(random)
    return min(int(random), grid)
