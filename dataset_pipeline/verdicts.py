"""A gating check's outcome, in the domain's words: the validator shape statistics → report → summary.

Each stage's checks are functions of its tables that return a :class:`Verdict`; the assets
turn it into Dagster's check result. So every check runs, and is tested, without Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Verdict:
    """Passed or not; one summary a person can act on; figures; the offending rows, if any; and the
    settings that decided it (the check's parameter names, which are the fields of the resource
    that configures the stage, with their values), so a refusal names what would change it.

    ``warning``: not passed, but not a reason to stop what follows (a target the data cannot meet).

    >>> Verdict(True, "all 3 images usable", {"images": 3}).passed
    True
    """

    passed: bool
    summary: str
    figures: dict[str, object] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    settings: dict[str, object] = field(default_factory=dict)
    warning: bool = False
