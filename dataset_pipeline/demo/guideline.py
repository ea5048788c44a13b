"""The demo team's guideline history: the rules they started with, and the revision that
rewrote the cloth and gripper boundary rules and the rule for ambiguous classes half-way through
the first batch.

Revision 2 is the packaged rules file itself (with an effective date), so a later ``dagster dev``
on the packaged rules finds it in force and makes no third revision.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import yaml

from dataset_pipeline.annotation_guideline import default_rules_path

#: What the first revision said before the team sharpened it (the classes whose agreement was low).
FIRST_WORDING = {
    "obstacle_deformable": "Outline the cloth or cable.",
    "gripper": "Outline each finger.",
}
FIRST_AMBIGUOUS_RULE = "When unsure of the class, pick the closest one."


def write_demo_rules(path: Path, revision: int, effective: datetime) -> Path:
    """Write the demo's rules file as it stood at ``revision`` (1 or 2), taking effect at ``effective``."""
    document = yaml.safe_load(default_rules_path().read_text(encoding="utf-8"))
    if revision == 1:
        for name, boundary in FIRST_WORDING.items():
            document["classes"][name]["boundary"] = boundary
            document["classes"][name]["edge_cases"] = []
        document["global"]["ambiguous"] = FIRST_AMBIGUOUS_RULE
    document["effective_date"] = effective.isoformat()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
