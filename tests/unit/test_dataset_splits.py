"""Splits: no scene, episode, checksum or near-duplicate in two splits - ever; stratified; deterministic."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataset_pipeline import layout
from dataset_pipeline.dataset_splits import SPLITS, assign_splits, difference_hash, leakage_groups, leaks


@st.composite
def corpora(draw):
    n = draw(st.integers(1, 60))
    scenes = draw(st.lists(st.integers(0, 8), min_size=n, max_size=n))
    episodes = draw(st.lists(st.integers(0, 20), min_size=n, max_size=n))
    shas = draw(st.lists(st.integers(0, 80), min_size=n, max_size=n))
    hashes = draw(st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n))
    lighting = draw(st.lists(st.sampled_from(["dim", "warm", "daylight"]), min_size=n, max_size=n))
    images = pd.DataFrame(
        {
            "image_id": [f"b/i{k}" for k in range(n)],
            "scene_id": [f"s{v}" for v in scenes],
            "episode_id": [f"e{v}" for v in episodes],
            "sha256": [f"h{v}" for v in shas],
            "lighting": lighting,
        }
    )
    presence = pd.DataFrame(
        draw(st.lists(st.lists(st.integers(0, 1), min_size=3, max_size=3), min_size=n, max_size=n)),
        index=images.image_id,
        columns=["a", "b", "c"],
    )
    return images, presence, np.array(hashes, dtype=np.uint64)


@settings(max_examples=150, deadline=None)
@given(corpora(), st.integers(0, 5))
def test_no_leakage_for_any_group_structure(corpus, seed):
    images, presence, hashes = corpus
    plan = assign_splits(images, presence, seed=seed, hashes=hashes, hash_distance=3)
    assert len(plan.assignments) == len(images)
    assert set(plan.assignments.split) <= set(SPLITS)
    assert leaks(plan.assignments, images, hashes, hash_distance=3) == []


def test_groups_join_scenes_episodes_checksums_and_near_duplicates():
    images = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "d", "e"],
            "scene_id": ["s1", "s2", "s3", "s4", "s5"],
            "episode_id": ["e1", "e1", "e2", "e3", "e4"],  # a-b share an episode
            "sha256": ["x", "y", "z", "z", "w"],  # c-d share a checksum
        }
    )
    hashes = np.array([1, 2, 0b1111_0000, 0b1111_0001, 0b1111_0011], dtype=np.uint64)  # d-e differ by 1 bit
    assert leakage_groups(images, hashes, hash_distance=1).tolist() == [0, 0, 1, 1, 1]
    assert leakage_groups(images, hashes, hash_distance=0).tolist() == [0, 0, 1, 1, 2]


def _many_groups(n_scenes=40, per_scene=5):
    rows = []
    for s in range(n_scenes):
        for k in range(per_scene):
            rows.append(
                {
                    "image_id": f"s{s}/{k}",
                    "scene_id": f"s{s}",
                    "episode_id": f"s{s}-e",
                    "sha256": f"s{s}-{k}",
                    "lighting": ["dim", "warm"][s % 2],
                }
            )
    images = pd.DataFrame(rows)
    presence = pd.DataFrame(
        {"cable": [int(s % 4 == 0) for s in range(n_scenes) for _ in range(per_scene)]}, index=images.image_id
    )
    return images, presence


def test_shares_near_targets_stratified_and_deterministic():
    images, presence = _many_groups()
    plan = assign_splits(images, presence, seed=7)
    for split, target in plan.targets.items():
        assert abs(plan.shares[split] - target) <= 0.05
    merged = images.merge(plan.assignments, on="image_id")
    assert set(merged[merged.split == "test"].lighting) == {"dim", "warm"}  # both lightings everywhere
    cable = merged.merge(presence.reset_index(), on="image_id")
    assert cable.groupby("split").cable.sum().min() > 0  # the rare class in every split
    again = assign_splits(images, presence, seed=7)
    pd.testing.assert_frame_equal(plan.assignments, again.assignments)
    other = assign_splits(images, presence, seed=8)
    assert not other.assignments.split.equals(plan.assignments.split)


def test_held_out_environments_go_to_test_whole():
    images, presence = _many_groups()
    plan = assign_splits(images, presence, held_out_scenes=["s3", "s11"])
    held = plan.assignments[images.scene_id.isin(["s3", "s11"])]
    assert set(held.split) == {"test"}


def test_bad_shares_are_refused():
    images, presence = _many_groups(3, 2)
    with pytest.raises(ValueError, match="add up to 1"):
        assign_splits(images, presence, shares={"train": 0.8, "val": 0.3, "test": 0.1})


def test_difference_hash_sees_near_duplicates():
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    base = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    noisy = np.clip(base.astype(int) + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)
    other = (rng.random((48, 64, 3)) * 255).astype(np.uint8)

    def jpeg(a):
        buffer = io.BytesIO()
        Image.fromarray(a).save(buffer, format="JPEG", quality=95)
        return buffer.getvalue()

    h = [difference_hash(jpeg(a)) for a in (base, noisy, other)]
    assert bin(h[0] ^ h[1]).count("1") <= 6
    assert bin(h[0] ^ h[2]).count("1") > 16


def _brute_force_closest(sizes, targets, held=()):
    """The closest split by trying every assignment of the free groups (held-out groups in test)."""
    import itertools

    total, best = sum(sizes), float("inf")
    free = [g for g in range(len(sizes)) if g not in held]
    for choice in itertools.product(range(3), repeat=len(free)):
        counts = [0.0, 0.0, float(sum(sizes[g] for g in held))]
        for group, split in zip(free, choice, strict=True):
            counts[split] += sizes[group]
        best = min(best, max(abs(c / total - targets[s]) for c, s in zip(counts, SPLITS, strict=True)))
    return best


def test_the_closest_possible_split_is_exact_for_small_corpora_and_bounded_for_large_ones():
    from dataset_pipeline.dataset_splits import closest_split

    targets = {"train": 0.7, "val": 0.15, "test": 0.15}
    rng = np.random.default_rng(0)
    for _ in range(150):
        sizes = rng.integers(1, 60, rng.integers(1, 7)).tolist()
        held = (
            tuple(rng.choice(len(sizes), size=int(rng.integers(0, 2)), replace=False))
            if len(sizes) > 1
            else ()
        )
        closest, error = closest_split(np.array(sizes), targets, np.array(held, dtype=int))
        assert error == 0.0 and closest == pytest.approx(
            _brute_force_closest(sizes, targets, held), abs=1e-12
        )
    for _ in range(10):  # 1,000s of images: counted in units, within the error it states
        sizes = rng.integers(100, 3000, rng.integers(2, 8)).tolist()
        closest, error = closest_split(np.array(sizes), targets)
        assert 0 < error < 0.05 and abs(closest - _brute_force_closest(sizes, targets)) <= error + 1e-12
    assert closest_split(np.ones(1000, int), targets) == (0.0, 0.0)  # many small episodes meet any target


def _info(shares, closest, groups=6):
    return {
        "shares": shares,
        "targets": {"train": 0.7, "val": 0.15, "test": 0.15},
        "groups": groups,
        "largest_group_share": 0.2,
        "closest_possible": closest,
        "closest_error": 0.0,
    }


def test_a_target_the_groups_cannot_meet_warns_and_one_they_can_meet_blocks():
    from dataset_pipeline.dataset_splits import shares_verdict

    off = {"train": 0.758, "val": 0.121, "test": 0.121}
    cannot = shares_verdict(_info(off, closest=0.058), share_tolerance=0.05, seed=0)
    assert not cannot.passed and cannot.warning
    assert "as close as the data allows" in cannot.summary and "Not blocking" in cannot.summary
    can = shares_verdict(_info(off, closest=0.01), share_tolerance=0.05, seed=3)
    assert not can.passed and not can.warning
    assert "the assigner did not find it" in can.summary and can.settings == {
        "share_tolerance": 0.05,
        "seed": 3,
    }
    on = shares_verdict(_info({"train": 0.72, "val": 0.14, "test": 0.14}, closest=0.0), share_tolerance=0.05)
    assert on.passed and not on.warning


def test_adding_a_batch_never_moves_a_released_image():
    """Release 1 splits 30 scenes; the next batch brings 10 new scenes and new frames of 6 released
    scenes. Every released image keeps its split, the new frames of a released scene join that
    scene's split, and the new scenes bring the shares back near their targets."""
    images, presence = _many_groups(n_scenes=30)
    first = assign_splits(images, presence, seed=0)
    released = dict(zip(first.assignments.image_id, first.assignments.split, strict=True))
    more, more_presence = _many_groups(n_scenes=40)
    more = more[~more.image_id.isin(released)]  # the 10 new scenes' frames
    old_scene_frames = pd.DataFrame(
        [
            {
                "image_id": f"s{s}/new{k}",
                "scene_id": f"s{s}",
                "episode_id": f"s{s}-e2",
                "sha256": f"s{s}-n{k}",
            }
            for s in range(6)
            for k in range(3)
        ]
    ).assign(lighting="dim")
    grown = pd.concat([images, more, old_scene_frames], ignore_index=True)
    grown_presence = pd.concat([more_presence, pd.DataFrame({"cable": 0}, index=old_scene_frames.image_id)])
    # the seed that placed release 1 does not matter once its images are pinned
    second = assign_splits(grown, grown_presence, seed=5, pinned=released)
    split_of = dict(zip(second.assignments.image_id, second.assignments.split, strict=True))
    assert {i: split_of[i] for i in released} == released
    for s in range(6):
        assert {split_of[f"s{s}/new{k}"] for k in range(3)} == {released[f"s{s}/0"]}
    assert leaks(second.assignments, grown) == []
    for split, target in second.targets.items():
        assert abs(second.shares[split] - target) <= 0.05
    assert any("kept 150 released images" in note for note in second.notes)
    # unpinned, the same corpus with that seed would have moved released images
    unpinned = assign_splits(grown, grown_presence, seed=5)
    moved = unpinned.assignments[unpinned.assignments.image_id.isin(released)]
    assert (moved.split != moved.image_id.map(released)).any()


def test_a_new_frame_linking_two_released_splits_keeps_both_and_the_leak_is_named():
    images = pd.DataFrame(
        {
            "image_id": ["a", "b", "c"],
            "scene_id": ["s1", "s2", "s1"],
            "episode_id": ["e1", "e2", "e3"],
            "sha256": ["x", "y", "y"],  # c: scene s1 (a's) and the checksum of b
        }
    )
    presence = pd.DataFrame({"k": [1, 1, 1]}, index=images.image_id)
    plan = assign_splits(images, presence, pinned={"a": "train", "b": "test"})
    split_of = dict(zip(plan.assignments.image_id, plan.assignments.split, strict=True))
    assert split_of["a"] == "train" and split_of["b"] == "test"
    assert leaks(plan.assignments, images)  # the leakage check names it: people decide


def test_two_releases_recorded_at_once_both_stay_in_the_registry(local_store, monkeypatch):
    """Two releases completing at the same moment both read the registry before either writes;
    each adds a part of its own, so neither's images are lost (one shared file rewritten by both
    would keep only the last writer's)."""
    import threading

    from dataset_pipeline import dataset_splits as ds

    registry = ds.released_splits
    both_read = threading.Barrier(2)

    def read_then_wait(store):
        seen = registry(store)
        both_read.wait(timeout=30)
        return seen

    monkeypatch.setattr(ds, "released_splits", read_then_wait)
    releases = {
        "v1": pd.DataFrame({"image_id": ["a", "b"], "split": ["train", "test"]}),
        "v2": pd.DataFrame({"image_id": ["b", "c"], "split": ["test", "val"]}),
    }
    added: dict[str, int] = {}
    threads = [
        threading.Thread(
            target=lambda v=v, t=t: added.update({v: ds.record_released_splits(local_store, t, v)})
        )
        for v, t in releases.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert added == {"v1": 2, "v2": 2}  # each saw an empty registry
    assert registry(local_store) == {"a": "train", "b": "test", "c": "val"}
    assert len(local_store.list(layout.RELEASED_SPLITS_PARTS)) == 2


def test_the_registry_keeps_the_first_release_of_each_image(local_store):
    from dataset_pipeline.dataset_splits import record_released_splits, released_splits

    assert released_splits(local_store) == {}
    v1 = pd.DataFrame({"image_id": ["a", "b"], "split": ["train", "test"]})
    assert record_released_splits(local_store, v1, "v1") == 2
    v2 = pd.DataFrame({"image_id": ["a", "b", "c"], "split": ["val", "test", "val"]})
    assert record_released_splits(local_store, v2, "v2") == 1
    assert released_splits(local_store) == {"a": "train", "b": "test", "c": "val"}
    with pytest.raises(ValueError, match="'a' has split 'holdout'"):
        assign_splits(v1.assign(scene_id="s"), pd.DataFrame(index=v1.image_id), pinned={"a": "holdout"})
