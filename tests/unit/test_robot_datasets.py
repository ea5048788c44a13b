"""Robot-dataset ingest settings, sampling and detection (no dataset library needed)."""

from __future__ import annotations

import pytest

from dataset_pipeline.formats.robot_dataset import (
    Episode,
    RobotDatasetError,
    RobotSource,
    sample_frames,
)
from dataset_pipeline.robot_datasets import IngestSettings


def _source(fps: float | None) -> RobotSource:
    return RobotSource("lerobot", "v3.0", "/d", ("cam",), (Episode(0, 90), Episode(1, 7)), fps=fps)


def test_the_marker_s_settings_are_read_and_a_wrong_one_is_named():
    assert IngestSettings.from_json(b"", "m") == IngestSettings()
    assert IngestSettings.from_json(b'{"cameras": ["a"], "every": 3}', "m") == IngestSettings(("a",), every=3)
    with pytest.raises(RobotDatasetError, match=r"incoming/b/UPLOAD_COMPLETE: unknown field\(s\) \['step'\]"):
        IngestSettings.from_json(b'{"step": 3}', "incoming/b/UPLOAD_COMPLETE")
    with pytest.raises(RobotDatasetError, match="not JSON"):
        IngestSettings.from_json(b"every=3", "m")
    with pytest.raises(RobotDatasetError, match="either every N-th frame or a target fps"):
        IngestSettings.from_json(b'{"every": 2, "fps": 3}', "m")
    with pytest.raises(RobotDatasetError, match="fps must be positive"):
        IngestSettings.from_json(b'{"fps": 0}', "m")


def test_default_sampling_is_two_per_second_or_every_tenth_frame_without_an_fps():
    assert IngestSettings().picks(_source(30.0)) == {0: list(range(0, 90, 15)), 1: [0]}
    assert IngestSettings().picks(_source(None)) == {0: list(range(0, 90, 10)), 1: [0]}
    assert IngestSettings(every=1).picks(_source(None))[1] == list(range(7))
    with pytest.raises(ValueError, match="needs the dataset's own fps"):
        IngestSettings(fps=5).picks(_source(None))


def test_a_target_fps_keeps_evenly_spaced_frames_within_the_episode():
    assert sample_frames(30, fps=4, source_fps=30) == [0, 7, 15, 22]
    assert sample_frames(0, fps=4, source_fps=30) == []
    assert all(f < 31 for f in sample_frames(31, fps=7, source_fps=29.97))
