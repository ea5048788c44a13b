"""The embedded demo data: a robot's uploads rendered procedurally, and people reviewing them.

* ``scenes.py`` - tabletop scenes and episodes, rendered with their exact instance masks;
* ``upload.py`` - a demo batch written as a robot's upload (``incoming/<batch>/``) plus its
  ground truth, kept apart from the upload;
* ``robot.py`` - a demo batch logged as a LeRobot v3.0 dataset with lerobot's own recorder;
* ``review.py`` - three simulated annotators whose work lands in ``reviews/<batch>/`` as the
  annotation tools' own export files: the tasks that went out (of long episodes, the keyframes),
  then the propagated frames, accepted where right and corrected where not.

Nothing here is a stage: the pipeline treats the demo's files exactly as it treats a real
robot's upload and a real team's exports.
"""

from dataset_pipeline.demo.guideline import write_demo_rules
from dataset_pipeline.demo.review import (
    corrections_export_key,
    simulate_corrections,
    simulate_qc_verdicts,
    simulate_review,
)
from dataset_pipeline.demo.robot import DemoRobotUpload, write_demo_robot_upload
from dataset_pipeline.demo.scenes import render_episode
from dataset_pipeline.demo.upload import (
    DemoUpload,
    ground_truth_annotations,
    plan_episodes,
    write_demo_upload,
)

__all__ = [
    "DemoRobotUpload",
    "DemoUpload",
    "ground_truth_annotations",
    "plan_episodes",
    "render_episode",
    "corrections_export_key",
    "simulate_corrections",
    "simulate_qc_verdicts",
    "simulate_review",
    "write_demo_rules",
    "write_demo_robot_upload",
    "write_demo_upload",
]
