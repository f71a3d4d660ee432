"""
The loaders of the real corpora (PoseScript, PoseFix, PoseEst) on small files the tests write in the real
formats, and the ImageScript / ImageDiff builders: records, splits, heading rules, captions, errors, sampling
and pair mining.
"""

import json
import logging
import math

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict
from PIL import Image

from unipose.data import image_corpora, posescript
from unipose.data.amass import change_up_axis, heading_angle
from unipose.data.image_corpora import (
    build_imagediff,
    build_imagescript,
    farthest_point_sampling,
    mine_pairs,
    pose_features,
    posecode_categories,
)
from unipose.data.pose_estimation import crop_person, load_pose_estimation, read_pose_estimation_annotations
from unipose.data.posescript import load_posefix, load_posescript
from unipose.data.schema import FEATURES, IMAGE_POSE_FEATURES, record_kind
from unipose.rotations import axis_angle_to_matrix, elementary_rotation, matrix_to_axis_angle


def _rotation(angle: float, axis: str) -> torch.Tensor:
    return elementary_rotation(torch.tensor(angle, dtype=torch.float64), axis)


# A person standing upright in AMASS's z-up world: the body's y (up) axis turned onto the world's z.
UPRIGHT = _rotation(math.pi / 2, "x")


def _headings(roots: np.ndarray, up_axis: str = "z") -> np.ndarray:
    return heading_angle(axis_angle_to_matrix(torch.from_numpy(roots.astype(np.float64))), up_axis).numpy()


def _wrap(angle):
    return (np.asarray(angle) + math.pi) % (2 * math.pi) - math.pi


# ---------------------------------------------------------------------------------------------------------
# Fixtures: an AMASS tree and the PoseScript / PoseFix release files
# ---------------------------------------------------------------------------------------------------------

# relative path -> number of frames
SEQUENCES = {"CMU/01/01_01_poses.npz": 6, "CMU/02/02_03_poses.npz": 5, "BMLrub/s1/walk_poses.npz": 4}


@pytest.fixture
def amass_root(tmp_path):
    """Sequences whose roots turn about z (heading), lean (tilt) and carry random body joints, as in AMASS."""
    root = tmp_path / "amass"
    generator = np.random.default_rng(0)
    raw = {}
    for relative, frames in SEQUENCES.items():
        poses = generator.normal(scale=0.3, size=(frames, 156))
        for frame in range(frames):
            heading = generator.uniform(-math.pi, math.pi)
            tilt = generator.uniform(-0.4, 0.4)
            matrix = _rotation(heading, "z") @ _rotation(tilt, "y") @ UPRIGHT
            poses[frame, :3] = matrix_to_axis_angle(matrix).numpy()
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            poses=poses,
            trans=np.zeros((frames, 3)),
            betas=np.zeros(16),
            mocap_framerate=np.array(120.0),
        )
        raw[relative] = poses
    return root, raw


# pose id -> (sequence, frame)
POSES = {
    0: ("CMU/01/01_01_poses.npz", 0),
    1: ("CMU/01/01_01_poses.npz", 3),
    2: ("CMU/01/01_01_poses.npz", 5),
    3: ("CMU/02/02_03_poses.npz", 1),
    4: ("CMU/02/02_03_poses.npz", 4),
    5: ("BMLrub/s1/walk_poses.npz", 2),
    6: ("BMLrub/s1/walk_poses.npz", 0),
}
HUMAN = {
    "0": "The person stands.",
    "1": ["Arms up.", "Both arms are raised."],
    "3": "Kneeling.",
    "5": "Sitting.",
}
AUTO = {str(i): [f"auto {i} a", f"auto {i} b", f"auto {i} c"] for i in POSES}
TRAIN, VAL = [0, 1, 2, 3, 6], [4, 5]


def _write_json(path, content):
    path.write_text(json.dumps(content))


@pytest.fixture
def release(tmp_path):
    """The PoseScript and PoseFix files in one folder (both releases share the pose index)."""
    root = tmp_path / "release"
    root.mkdir()
    _write_json(
        root / posescript.POSE_INDEX_FILE,
        {str(i): ["AMASS", seq, frame] for i, (seq, frame) in POSES.items()},
    )
    _write_json(root / "train_ids_100k.json", TRAIN)
    _write_json(root / "val_ids_100k.json", VAL)
    _write_json(root / "posescript_human_6293.json", HUMAN)
    _write_json(root / "posescript_auto_100k.json", AUTO)
    # PoseFix: pair id = position in the list.
    _write_json(root / "pair_id_2_pose_ids.json", [[0, 1], [1, 2], [3, 4], [0, 5], [6, 3], [2, 0]])
    _write_json(root / "train_in_sequence_pair_ids.json", [0, 1, 5])
    _write_json(root / "train_out_sequence_pair_ids.json", [3, 4])
    _write_json(root / "val_in_sequence_pair_ids.json", [2])
    _write_json(root / "val_out_sequence_pair_ids.json", [])
    _write_json(
        root / "posefix_human_6157.json",
        {"0": ["Raise your arms."], "1": "Bend.", "2": ["Turn."], "3": ["Sit."], "4": ["Kneel."]},
    )
    _write_json(root / "posefix_auto_135305.json", {str(i): [f"auto pair {i}"] for i in range(6)})
    _write_json(root / "posefix_paraphrases_4284.json", {"0": ["Lift your arms."]})
    return root


def _raw_pose(raw, pose_id: int) -> np.ndarray:
    sequence, frame = POSES[pose_id]
    return raw[sequence][frame, :66].reshape(22, 3)


# ---------------------------------------------------------------------------------------------------------
# PoseScript
# ---------------------------------------------------------------------------------------------------------


def test_posescript_records_and_captions(release, amass_root):
    root, raw = amass_root
    dataset = load_posescript(release, root, split="train", captions="human", output_up_axis="z")
    assert isinstance(dataset, Dataset) and record_kind(dataset.features) == "pose_text"
    # Train poses with a human caption, in the split file's order.
    assert dataset["id"] == ["0", "1", "3"]
    assert dataset["texts"] == [["The person stands."], ["Arms up.", "Both arms are raised."], ["Kneeling."]]
    assert set(dataset["source"]) == {"posescript-H/train"}

    both = load_posescript(release, root, split="train", captions="both", output_up_axis="z")
    assert both["id"] == ["0", "1", "2", "3", "6"]
    assert both["texts"][1] == ["Arms up.", "Both arms are raised.", "auto 1 a", "auto 1 b", "auto 1 c"]
    assert both["texts"][2] == AUTO["2"] and set(both["source"]) == {"posescript-H+A/train"}


def test_posescript_heading_normalisation(release, amass_root):
    root, raw = amass_root
    dataset = load_posescript(release, root, split="train", captions="automatic", output_up_axis="z").with_format("numpy")
    poses = dataset["pose"][:]
    assert poses.dtype == np.float32 and poses.shape == (5, 22, 3)
    assert np.abs(_headings(poses[:, 0])).max() < 1e-5
    expected = np.stack([_raw_pose(raw, int(i)) for i in dataset["id"]])
    # Joints below the root are untouched.
    np.testing.assert_array_equal(poses[:, 1:], expected[:, 1:].astype(np.float32))
    # The root changed by a rotation about z only: tilt and roll are kept.
    turn = axis_angle_to_matrix(torch.from_numpy(poses[:, 0].astype(np.float64))) @ axis_angle_to_matrix(
        torch.from_numpy(expected[:, 0])
    ).transpose(-1, -2)
    np.testing.assert_allclose(turn[:, 2, 2].numpy(), 1.0, atol=1e-5)
    assert np.abs(_headings(expected[:, 0])).min() > 1e-3  # the fixture's headings were not zero already

    y_up = load_posescript(release, root, split="train", captions="automatic", output_up_axis="y")
    y_up = y_up.with_format("numpy")["pose"][:]
    np.testing.assert_allclose(
        y_up[:, 0],
        change_up_axis(torch.from_numpy(poses[:, 0].astype(np.float64)), "z", "y").numpy(),
        atol=1e-5,
    )
    assert np.abs(_headings(y_up[:, 0], "y")).max() < 1e-5


def test_posescript_splits_and_file_reads(release, amass_root, monkeypatch):
    root, _ = amass_root
    calls = []
    original = posescript.read_amass_sequence
    monkeypatch.setattr(
        posescript, "read_amass_sequence", lambda path, *a, **k: calls.append(path) or original(path, *a, **k)
    )
    splits = load_posescript(release, root, split=("train", "val"), captions="automatic", output_up_axis="z")
    assert isinstance(splits, DatasetDict) and list(splits) == ["train", "val"]
    assert splits["val"]["id"] == ["4", "5"] and set(splits["val"]["source"]) == {"posescript-A/val"}
    # Each AMASS file is read once per split however many poses point into it.
    train_files = {POSES[i][0] for i in TRAIN}
    val_files = {POSES[i][0] for i in VAL}
    assert len(calls) == len(train_files) + len(val_files)


def test_posescript_errors(release, amass_root, tmp_path):
    root, _ = amass_root
    _write_json(release / "none.json", {"999": ["a caption of no pose of the split"]})
    with pytest.raises(ValueError, match=r"None of the \d+ poses of PoseScript split 'train' .* has human captions"):
        load_posescript(release, root, caption_files={"human": "none.json"}, output_up_axis="z")
    with pytest.raises(FileNotFoundError, match="test_ids_100k.json"):
        load_posescript(release, root, split="test", output_up_axis="z")
    with pytest.raises(ValueError, match="`captions`"):
        load_posescript(release, root, captions="written", output_up_axis="z")

    # Missing AMASS file: the error names the pose id and the path.
    (root / "CMU/02/02_03_poses.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"pose id '3'.*02_03_poses\.npz"):
        load_posescript(release, root, split="train", output_up_axis="z")

    # Frame out of range: id, file, frame and length.
    index = json.loads((release / posescript.POSE_INDEX_FILE).read_text())
    index["1"] = ["AMASS", "CMU/01/01_01_poses.npz", 6]
    _write_json(release / posescript.POSE_INDEX_FILE, index)
    _write_json(release / "h.json", {"0": "a", "1": "b"})
    with pytest.raises(
        ValueError, match=r"Pose id '1': frame 6 is out of range for .*01_01_poses\.npz.*6 frames"
    ):
        load_posescript(release, {"AMASS": root}, split="train", caption_files={"human": "h.json"}, output_up_axis="z")

    # A pose id of the split without an index entry, and a malformed caption entry.
    _write_json(release / "h2.json", {"9": "a"})
    _write_json(release / "train_ids_100k.json", TRAIN + [9])
    with pytest.raises(ValueError, match=r"Pose id '9' is not in the pose index"):
        load_posescript(release, root, caption_files={"human": "h2.json"}, output_up_axis="z")
    _write_json(release / "h3.json", {"0": ["fine"], "1": []})
    with pytest.raises(ValueError, match=r"id '1' has \[\]"):
        load_posescript(release, root, caption_files={"human": "h3.json"}, output_up_axis="z")
    with pytest.raises(ValueError, match="does not map"):
        load_posescript(release, {"KIT": root}, split="val", captions="automatic", output_up_axis="z")


# ---------------------------------------------------------------------------------------------------------
# PoseFix
# ---------------------------------------------------------------------------------------------------------


def _root_matrices(poses: np.ndarray) -> torch.Tensor:
    return axis_angle_to_matrix(torch.from_numpy(poses[:, 0].astype(np.float64)))


def test_posefix_heading_rules(release, amass_root):
    root, raw = amass_root
    dataset = load_posefix(release, root, split="train", modifiers="automatic", output_up_axis="z").with_format("numpy")
    assert record_kind(dataset.features) == "pose_pair"
    assert list(dataset["id"]) == ["0", "1", "5", "3", "4"]  # in-sequence pairs first
    pairs = json.loads((release / "pair_id_2_pose_ids.json").read_text())
    raw_a = np.stack([_raw_pose(raw, pairs[int(i)][0]) for i in dataset["id"]])
    raw_b = np.stack([_raw_pose(raw, pairs[int(i)][1]) for i in dataset["id"]])
    pose_a, pose_b = dataset["pose_a"][:], dataset["pose_b"][:]
    in_sequence = np.array([True, True, True, False, False])

    # Pose A always has zero heading; pose B only when out of sequence.
    assert np.abs(_headings(pose_a[:, 0])).max() < 1e-5
    assert np.abs(_headings(pose_b[~in_sequence, 0])).max() < 1e-5
    assert np.abs(_headings(pose_b[in_sequence, 0])).min() > 1e-3
    # In sequence, the relative rotation between A and B survives, and B's heading is the relative turn.
    before = _root_matrices(raw_a).transpose(-1, -2) @ _root_matrices(raw_b)
    after = _root_matrices(pose_a).transpose(-1, -2) @ _root_matrices(pose_b)
    np.testing.assert_allclose(after[in_sequence].numpy(), before[in_sequence].numpy(), atol=1e-5)
    np.testing.assert_allclose(
        _wrap(
            _headings(pose_b[in_sequence, 0])
            - _headings(raw_b[in_sequence, 0])
            + _headings(raw_a[in_sequence, 0])
        ),
        0.0,
        atol=1e-5,
    )
    np.testing.assert_array_equal(pose_b[:, 1:], raw_b[:, 1:].astype(np.float32))


def test_posefix_modifiers_and_splits(release, amass_root):
    root, _ = amass_root
    dataset = load_posefix(release, root, split="train", modifiers=("human", "paraphrases"), sequence="in", output_up_axis="z")
    assert dataset["id"] == ["0", "1"]  # pair 5 has no human modifier
    assert dataset["texts"] == [["Raise your arms.", "Lift your arms."], ["Bend."]]
    assert set(dataset["source"]) == {"posefix-H+P/train"}
    splits = load_posefix(release, root, split=["train", "val"], modifiers="human", output_up_axis="z")
    assert splits["val"]["id"] == ["2"] and splits["train"]["id"] == ["0", "1", "3", "4"]


def test_posefix_errors(release, amass_root):
    root, _ = amass_root
    _write_json(release / "none.json", {"999": ["a modifier of no pair of the split"]})
    with pytest.raises(ValueError, match=r"None of the \d+ pairs of PoseFix split 'train' \(in/out-sequence\)"):
        load_posefix(release, root, modifier_files={"human": "none.json"}, output_up_axis="z")
    _write_json(release / "train_out_sequence_pair_ids.json", [3, 4, 1])
    with pytest.raises(ValueError, match=r"Pair id '1' is listed both"):
        load_posefix(release, root, output_up_axis="z")
    _write_json(release / "train_out_sequence_pair_ids.json", [3, 4, 17])
    _write_json(release / "posefix_human_6157.json", {"17": ["x"], "0": ["y"]})
    with pytest.raises(ValueError, match=r"Pair id '17' is not in the pairs file .* \(6 pairs\)"):
        load_posefix(release, root, output_up_axis="z")
    with pytest.raises(ValueError, match="`sequence`"):
        load_posefix(release, root, sequence="inside", output_up_axis="z")
    with pytest.raises(FileNotFoundError, match="test_in_sequence_pair_ids.json"):
        load_posefix(release, root, split="test", output_up_axis="z")


# ---------------------------------------------------------------------------------------------------------
# PoseEst
# ---------------------------------------------------------------------------------------------------------

IMAGE_SIZE = (64, 48)  # width, height
COLOURS = [(250, 20, 20), (20, 250, 20), (20, 20, 250), (250, 250, 20)]


@pytest.fixture
def poseest(tmp_path):
    """Four images, each with a coloured 16 x 16 square on grey, and an npz whose boxes frame the squares."""
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    generator = np.random.default_rng(1)
    names, centers = [], []
    for i, colour in enumerate(COLOURS):
        image = Image.new("RGB", IMAGE_SIZE, (128, 128, 128))
        left, top = 8 + 8 * i, 10 + 4 * i
        image.paste(colour, (left, top, left + 16, top + 16))
        name = f"sub/image_{i}.png"
        image.save(images / name)
        names.append(name)
        centers.append((left + 8.0, top + 8.0))
    poses = generator.normal(scale=0.3, size=(len(names), 72))
    arrays = {
        "imgname": np.array(names),
        "pose": poses,
        "betas": generator.normal(size=(len(names), 10)),
        "center": np.array(centers),
        "scale": np.full(len(names), 16.0 / 200.0),
    }
    path = tmp_path / "corpus_train.npz"
    np.savez(path, **arrays)
    return path, images, arrays


def test_poseest_records_and_crops(poseest, tmp_path):
    path, images, arrays = poseest
    dataset = load_pose_estimation(
        path, images, image_size=32, image_format="PNG", cache_dir=tmp_path / "cache"
    , output_up_axis="-y")
    assert dataset.features == IMAGE_POSE_FEATURES and len(dataset) == 4
    assert dataset["id"] == [f"corpus_train/{i}" for i in range(4)]
    assert set(dataset["source"]) == {"poseest/corpus_train"} and dataset["texts"] == [[]] * 4
    for i, record in enumerate(dataset):
        assert record["image"].size == (32, 32)
        # The box is the square: the crop is its colour throughout (away from the resampled border).
        centre = np.asarray(record["image"])[4:-4, 4:-4].reshape(-1, 3)
        np.testing.assert_allclose(centre.mean(0), COLOURS[i], atol=3)
    np.testing.assert_allclose(
        dataset.with_format("numpy")["pose"][:], arrays["pose"][:, :66].reshape(4, 22, 3).astype(np.float32)
    )


def test_poseest_pose_layouts_and_frames(poseest, tmp_path):
    path, images, arrays = poseest
    expected = read_pose_estimation_annotations(path).poses
    variants = {
        "split": {"body_pose": arrays["pose"][:, 3:], "global_orient": arrays["pose"][:, :3]},
        "split63": {"body_pose": arrays["pose"][:, 3:66], "global_orient": arrays["pose"][:, :3]},
        "hmr2": {"body_pose": arrays["pose"], "has_body_pose": np.array([1, 1, 0, 1])},
    }
    for name, pose_arrays in variants.items():
        others = {k: v for k, v in arrays.items() if k != "pose"}
        variant = tmp_path / f"{name}.npz"
        np.savez(variant, **others, **pose_arrays)
        annotations = read_pose_estimation_annotations(variant)
        np.testing.assert_array_equal(annotations.poses, expected)
    assert read_pose_estimation_annotations(tmp_path / "hmr2.npz").fitted.tolist() == [
        True,
        True,
        False,
        True,
    ]
    # HMR 2.0 stores the box size in pixels, (N, 2): its `ImageDataset` divides `scale` by 200 and multiplies it
    # back. Its layout (`body_pose` of 72 values, `has_body_pose`) reads pixels by default; SPIN's 200-pixel units.
    np.savez(tmp_path / "pixels.npz", **{**arrays, "scale": np.full((4, 2), 16.0)})
    np.testing.assert_allclose(
        read_pose_estimation_annotations(tmp_path / "pixels.npz", scale_unit=1.0).box_sizes, 16.0
    )
    hmr2 = {k: v for k, v in arrays.items() if k != "pose"} | variants["hmr2"] | {"scale": np.full((4, 2), 16.0)}
    np.savez(tmp_path / "hmr2_pixels.npz", **hmr2)
    np.testing.assert_allclose(read_pose_estimation_annotations(tmp_path / "hmr2_pixels.npz").box_sizes, 16.0)
    np.testing.assert_allclose(
        read_pose_estimation_annotations(tmp_path / "pixels.npz").box_sizes, 16.0 * 200
    )
    # HMR 2.0's training shards are webdataset tars, which are named as such.
    import tarfile

    with tarfile.open(tmp_path / "shard.tar", "w") as shard:
        shard.add(tmp_path / "pixels.npz", arcname="000000.data.pyd")
    with pytest.raises(ValueError, match="is a tar archive"):
        read_pose_estimation_annotations(tmp_path / "shard.tar")

    camera = load_pose_estimation(path, images, image_size=8, cache_dir=tmp_path / "c1", output_up_axis="-y").with_format("numpy")[
        "pose"
    ][:]
    y_up = load_pose_estimation(path, images, image_size=8, output_up_axis="y", cache_dir=tmp_path / "c2")
    y_up = y_up.with_format("numpy")["pose"][:]
    half_turn = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    np.testing.assert_allclose(
        axis_angle_to_matrix(torch.from_numpy(y_up[:, 0].astype(np.float64))).numpy(),
        (half_turn @ axis_angle_to_matrix(torch.from_numpy(camera[:, 0].astype(np.float64)))).numpy(),
        atol=1e-5,
    )
    np.testing.assert_array_equal(y_up[:, 1:], camera[:, 1:])


def test_poseest_missing_images_and_unfitted_rows(poseest, tmp_path, caplog):
    path, images, arrays = poseest
    (images / "sub/image_2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"row 2 .*image_2\.png"):
        load_pose_estimation(path, images, cache_dir=tmp_path / "cache", output_up_axis="-y")
    with caplog.at_level(logging.WARNING):
        dataset = load_pose_estimation(
            path, images, image_size=8, skip_missing=True, cache_dir=tmp_path / "cache"
        , output_up_axis="-y")
    assert dataset["id"] == ["corpus_train/0", "corpus_train/1", "corpus_train/3"]
    assert "Skipped 1 of 4" in caplog.text and "image_2.png" in caplog.text

    caplog.clear()
    np.savez(tmp_path / "flags.npz", **arrays, has_smpl=np.array([0, 1, 1, 1]))
    with caplog.at_level(logging.WARNING):
        dataset = load_pose_estimation(
            tmp_path / "flags.npz", images, image_size=8, skip_missing=True, cache_dir=tmp_path / "c"
        , output_up_axis="-y")
    assert dataset["id"] == ["flags/1", "flags/3"]
    assert "1 of 4 rows" in caplog.text and "no pose fit" in caplog.text


def test_poseest_bad_files(poseest, tmp_path):
    path, images, arrays = poseest
    np.savez(tmp_path / "no_center.npz", **{k: v for k, v in arrays.items() if k != "center"})
    with pytest.raises(ValueError, match="Missing key `center`"):
        read_pose_estimation_annotations(tmp_path / "no_center.npz")
    bad = arrays["pose"].copy()
    bad[3, 7] = np.nan
    np.savez(tmp_path / "nan.npz", **{**arrays, "pose": bad})
    with pytest.raises(ValueError, match="NaN or infinite values in row 3"):
        read_pose_estimation_annotations(tmp_path / "nan.npz")
    np.savez(tmp_path / "short.npz", **{**arrays, "pose": arrays["pose"][:, :60]})
    with pytest.raises(ValueError, match=r"shape \(4, 60\)"):
        read_pose_estimation_annotations(tmp_path / "short.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_pose_estimation(tmp_path / "missing.npz", images, output_up_axis="-y")


def test_crop_pads_outside_the_image():
    image = Image.new("RGB", (40, 40), (255, 255, 255))
    crop = np.asarray(crop_person(image, center=(0.0, 40.0), box_size=20.0, image_size=20)).astype(float)
    # The box's top-right quarter lies inside the image (white), the rest outside (black).
    assert crop[1:9, 11:19].min() > 250 and crop[11:19, :].max() < 5 and crop[:, 1:9].max() < 5


# ---------------------------------------------------------------------------------------------------------
# Farthest-point sampling and pair mining
# ---------------------------------------------------------------------------------------------------------


def _plain_fps(joints: torch.Tensor, num_samples: int, start: int) -> list:
    """The textbook algorithm: every pose's distance to the selection is updated at every step."""
    distance = torch.full((len(joints),), torch.inf)
    selected = [start]
    for _ in range(num_samples - 1):
        distance = torch.minimum(
            distance, torch.linalg.vector_norm(joints - joints[selected[-1]], dim=-1).mean(-1)
        )
        distance[selected] = -1.0
        selected.append(int(distance.argmax()))
    return selected


def test_fps_on_a_line_takes_the_extremes_first(one_thread):
    generator = np.random.default_rng(0)
    positions = generator.permutation(np.linspace(-1.0, 2.0, 41))
    direction = generator.normal(size=(22, 3))
    joints = positions[:, None, None] * direction  # MPJPE between two poses is proportional to |t_i - t_j|
    selected = farthest_point_sampling(joints, 3)
    assert set(selected[:2]) == {int(np.argmin(positions)), int(np.argmax(positions))}
    assert abs(positions[selected[2]] - 0.5) < 0.05  # then the middle
    # From a given start, the two ends come next, the farther one first.
    start = int(np.argmin(np.abs(positions - 0.275)))
    selected = farthest_point_sampling(joints, 3, start_index=start)
    assert list(selected) == [start, int(np.argmax(positions)), int(np.argmin(positions))]


@pytest.fixture
def one_thread():
    """Sampling steps are many tiny tensor operations, for which thread hand-offs cost more than they save."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fps_matches_the_plain_algorithm(seed, one_thread):
    generator = torch.Generator().manual_seed(seed)
    # Poses on a 3-dimensional family, as real ones nearly are: most clusters are then pruned at every step,
    # so that a wrong pruning bound changes the selection.
    coordinates = torch.rand(300, 3, generator=generator)
    joints = (coordinates @ torch.randn(3, 66, generator=generator)).reshape(300, 22, 3)
    # Ten copies of pose 0 leave 290 distinct poses: the last of the 295 selections are copies at distance 0,
    # and no pose may be selected twice.
    joints[250:260] = joints[0]
    selected = farthest_point_sampling(joints, 295, start_index=3)
    assert selected.tolist() == _plain_fps(joints, 295, 3)
    assert len(set(selected.tolist())) == 295


def test_fps_rejects_bad_arguments():
    joints = np.zeros((5, 22, 3))
    with pytest.raises(ValueError, match="`num_samples`"):
        farthest_point_sampling(joints, 6)
    with pytest.raises(ValueError, match="`start_index`"):
        farthest_point_sampling(joints, 2, start_index=5)
    with pytest.raises(ValueError, match="NaN"):
        farthest_point_sampling(np.full((5, 22, 3), np.nan), 2)


def test_mine_pairs_respects_the_posecode_threshold(caplog):
    generator = np.random.default_rng(0)
    features = generator.normal(size=(200, 66)).astype(np.float32)
    categories = generator.integers(0, 2, size=(200, 30)).astype(np.int8)
    # Pose 0's nearest neighbour differs in 2 posecodes only; pose 1 is like nobody in the top 5.
    features[7] = features[0] + 0.01
    categories[7] = categories[0]
    categories[7, :2] ^= 1
    anchors = [0, 1, 2, 3]
    similarity = features @ features.T / np.outer(*(2 * [np.linalg.norm(features, axis=1)]))
    top = np.argsort(-similarity[1])[1:6]
    categories[top] = categories[1]
    with caplog.at_level(logging.WARNING):
        pairs = mine_pairs(features, categories, anchors, num_candidates=5, min_posecode_difference=10)
    assert pairs.anchors.tolist() == [0, 2, 3] and "1 of 4 poses have no pose" in caplog.text
    assert pairs.partners[0] != 7
    for a, b, difference in zip(pairs.anchors, pairs.partners, pairs.posecode_difference):
        assert difference == (categories[a] != categories[b]).sum() >= 10
        candidates = [i for i in np.argsort(-similarity[a]) if i != a][:5]
        qualifying = [i for i in candidates if (categories[a] != categories[i]).sum() >= 10]
        assert b == qualifying[0]  # the most similar one that qualifies


# ---------------------------------------------------------------------------------------------------------
# The ImageScript / ImageDiff builders
# ---------------------------------------------------------------------------------------------------------


def _image_pose_dataset(poses: np.ndarray) -> Dataset:
    images = [Image.new("RGB", (4, 4), (i % 256, (3 * i) % 256, 7)) for i in range(len(poses))]
    return Dataset.from_dict(
        {
            "id": [f"pose{i}" for i in range(len(poses))],
            "image": images,
            "pose": poses.astype(np.float32),
            "texts": [[] for _ in poses],
            "source": ["test"] * len(poses),
        },
        features=IMAGE_POSE_FEATURES,
    )


def test_imagescript_selects_extreme_poses_and_captions_them():
    # One joint bent further and further: under MPJPE the poses lie on a line ordered by the angle.
    angles = np.random.default_rng(0).permutation(np.linspace(0.0, 1.5, 25))
    poses = np.zeros((25, 22, 3))
    poses[:, 18, 1] = angles  # left elbow
    dataset = _image_pose_dataset(poses)
    result = build_imagescript(dataset, num_poses=2, num_captions=2, up_axis="y")
    assert result.features == FEATURES["image_pose"]
    chosen = [int(i[len("pose") :]) for i in result["id"]]
    assert set(chosen) == {int(np.argmin(angles)), int(np.argmax(angles))}
    assert all(len(texts) == 2 and all(texts) for texts in result["texts"]) and set(result["source"]) == {
        "imagescript-A"
    }
    for record, index in zip(result, chosen):
        assert np.asarray(record["image"]).tolist() == np.asarray(dataset[index]["image"]).tolist()
        np.testing.assert_array_equal(record["pose"], np.asarray(dataset[index]["pose"]))


def test_imagediff_pairs_differ_in_enough_posecodes():
    from unipose.pose_sampler import sample_poses

    poses = sample_poses(80, seed=0)
    dataset = _image_pose_dataset(poses)
    # The nearest neighbours of these varied poses differ in about 26 posecodes: 30 rejects many of them.
    result = build_imagediff(
        dataset, num_poses=20, num_candidates=15, min_posecode_difference=30, num_captions=1, up_axis="y"
    )
    assert result.features == FEATURES["image_pair"] and 0 < len(result) <= 20
    joints = pose_features(poses, "y")
    categories = posecode_categories(joints)
    flat = joints.reshape(len(joints), -1)
    unit = flat / np.linalg.norm(flat, axis=1, keepdims=True)
    for record in result:
        a, b = (int(part[len("pose") :]) for part in record["id"].split("+"))
        neighbours = [i for i in np.argsort(-(unit @ unit[a])) if i != a][:15]
        qualifying = [i for i in neighbours if (categories[a] != categories[i]).sum() >= 30]
        assert b == qualifying[0]
        np.testing.assert_array_equal(record["pose_a"], poses[a].astype(np.float32))
        np.testing.assert_array_equal(record["pose_b"], poses[b].astype(np.float32))
        assert np.asarray(record["image_b"]).tolist() == np.asarray(dataset[b]["image"]).tolist()
        assert len(record["texts"]) == 1 and record["texts"][0]


def test_pose_features_ignore_heading_and_camera_frame():
    from unipose.pose_sampler import sample_poses

    poses = sample_poses(6, seed=1).astype(np.float64)
    turned = poses.copy()
    roots = axis_angle_to_matrix(torch.from_numpy(poses[:, 0]))
    turned[:, 0] = matrix_to_axis_angle(_rotation(1.1, "y") @ roots).numpy()
    np.testing.assert_allclose(pose_features(turned, "y"), pose_features(poses, "y"), atol=1e-5)
    # The same poses in the camera frame (y down) and in AMASS's z-up world give the same features.
    half_turn = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    camera = poses.copy()
    camera[:, 0] = matrix_to_axis_angle(half_turn @ roots).numpy()
    np.testing.assert_allclose(pose_features(camera, "-y"), pose_features(poses, "y"), atol=1e-5)
    z_up = poses.copy()
    z_up[:, 0] = change_up_axis(torch.from_numpy(poses[:, 0]), "y", "z").numpy()
    np.testing.assert_allclose(pose_features(z_up, "z"), pose_features(poses, "y"), atol=1e-5)
    np.testing.assert_allclose(pose_features(poses, "y")[:, 0], 0.0, atol=1e-7)


def test_builders_reject_bad_input():
    dataset = _image_pose_dataset(np.zeros((5, 22, 3)))
    with pytest.raises(ValueError, match="exactly one of `num_poses` and `indices`"):
        build_imagescript(dataset)
    with pytest.raises(ValueError, match="`num_candidates`"):
        build_imagediff(dataset, indices=[0, 1], num_candidates=10)
    with pytest.raises(ValueError, match="`image_pose` records"):
        build_imagescript(dataset.remove_columns("image"), num_poses=2)
    with pytest.raises(ValueError, match="`up_axis`"):
        build_imagescript(dataset, num_poses=2, up_axis="x")
    assert image_corpora.DEFAULT_NUM_CANDIDATES == 100 and image_corpora.DEFAULT_MIN_POSECODE_DIFFERENCE == 10
