"""Tests of the body renderer and of the synthetic corpus (records, splits, determinism, command line)."""

import argparse
import colorsys

import numpy as np
import pytest
import torch
from datasets import DatasetDict, load_dataset

from unipose.body_model import BodyModel
from unipose.commands import data as data_command
from unipose.data import synthetic
from unipose.data.rendering import (
    MATERIALS,
    BodyRenderer,
    Scene,
    frontal_scene,
    rasterize,
    render_background,
    sample_scenes,
)
from unipose.data.schema import FEATURES
from unipose.data.synthetic import (
    CONTACT_SHEET_FILE,
    KINDS,
    METADATA_FILE,
    MIN_PAIR_DISPLACEMENT,
    build_synthetic_corpus,
    heading,
    load_synthetic_corpus,
    sample_pose_pairs,
    split_sizes,
    turn_about_vertical,
)
from unipose.pose_sampler import sample_poses
from unipose.skeleton import BODY_JOINT_NAMES, JOINT_INDEX

IMAGE_SIZE = 96
NUM = 20
NUM_IMAGES = 6


@pytest.fixture(scope="module")
def body_model() -> BodyModel:
    return BodyModel("generated")


@pytest.fixture(scope="module")
def renderer(body_model) -> BodyRenderer:
    return BodyRenderer(body_model, image_size=IMAGE_SIZE)


def _build(path, seed=0, **kwargs):
    kwargs = {"num": NUM, "num_images": NUM_IMAGES, "image_size": IMAGE_SIZE, "num_captions": 2, **kwargs}
    return build_synthetic_corpus(path, seed=seed, **kwargs)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory, body_model):
    path = tmp_path_factory.mktemp("synthetic") / "corpus"
    _build(path, body_model=body_model)
    return path


@pytest.fixture(scope="module")
def corpus(corpus_dir):
    return load_synthetic_corpus(corpus_dir)


def _hue_masks(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels in the left limbs' blues and in the right limbs' reds (saturated enough to be limbs)."""
    rgb = image.astype(np.float64) / 255.0
    hsv = np.array([colorsys.rgb_to_hsv(*pixel) for pixel in rgb.reshape(-1, 3)]).reshape(rgb.shape)
    hue, saturation = hsv[..., 0] * 360.0, hsv[..., 1]
    colored = saturation > 0.35
    blue = colored & (hue > 190) & (hue < 245)
    red = colored & ((hue < 30) | (hue > 340))
    return blue, red


def _one_arm_raised(side: str) -> np.ndarray:
    """The T-pose with the `side` arm raised about 70 degrees and the other arm down."""
    pose = np.zeros((22, 3), dtype=np.float32)
    # Rotations about the body's forward axis (z): + lifts the left arm and lowers the right one.
    other = "right" if side == "left" else "left"
    pose[JOINT_INDEX[f"{side}_shoulder"], 2] = 1.2 if side == "left" else -1.2
    pose[JOINT_INDEX[f"{other}_shoulder"], 2] = 1.3 if other == "right" else -1.3
    return pose


# ---------------------------------------------------------------------------------------------------------
# Rasteriser and renderer
# ---------------------------------------------------------------------------------------------------------


def test_rasterize_fills_triangles_and_keeps_the_nearest():
    # Two triangles covering the same square's lower-left half; the second is nearer (larger 1/z).
    points = np.array(
        [[2, 2, 0.5], [30, 2, 0.5], [2, 30, 0.5], [2, 2, 0.9], [30, 2, 0.9], [2, 30, 0.9]], dtype=np.float32
    )
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    fragments = rasterize(points, faces, 32, 32)
    # Pixel centres (column + 0.5, row + 0.5) inside or on the triangle x >= 2, y >= 2, x + y <= 32.
    rows, columns = np.mgrid[0:32, 0:32]
    inside = (columns >= 2) & (rows >= 2) & (rows + columns <= 31)
    np.testing.assert_array_equal(np.sort(fragments.pixels), np.flatnonzero(inside.reshape(-1)))
    assert np.all(fragments.faces == 1)
    np.testing.assert_allclose(fragments.barycentric.sum(1), 1.0, atol=1e-5)
    assert np.all(fragments.barycentric >= -1e-4)
    np.testing.assert_allclose(fragments.inverse_depth, 0.9, atol=1e-5)
    # Barycentric coordinates reproduce the pixel centres.
    pixel_rows, pixel_columns = np.divmod(fragments.pixels, 32)
    corners = points[3:, :2]
    np.testing.assert_allclose(
        fragments.barycentric @ corners, np.stack((pixel_columns, pixel_rows), 1) + 0.5, atol=1e-3
    )


def test_pose_vertices_match_smplx(body_model, renderer):
    poses = sample_poses(4, seed=3)
    betas = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    full_betas = torch.zeros(4, body_model.num_betas)
    full_betas[:, :3] = torch.from_numpy(betas)
    expected = body_model(torch.from_numpy(poses), betas=full_betas).vertices.numpy()
    np.testing.assert_allclose(renderer.pose_vertices(poses, betas=betas), expected, atol=1e-5)


def test_pose_correctives_match_smplx():
    # A body with pose correctives (the generated one has none): the renderer draws the body it is given.
    body = BodyModel("generated")
    generator = torch.Generator().manual_seed(0)
    body.smplh.posedirs.copy_(torch.randn(body.smplh.posedirs.shape, generator=generator) * 1e-3)
    renderer = BodyRenderer(body, image_size=32)
    poses = sample_poses(3, seed=5)
    expected = body(torch.from_numpy(poses)).vertices.numpy()
    np.testing.assert_allclose(renderer.pose_vertices(poses), expected, atol=1e-5)


def test_render_is_rgb_not_blank_and_deterministic(renderer):
    poses = sample_poses(4, seed=7)
    scenes = sample_scenes(4, np.random.default_rng(1))
    images = renderer.render(poses, scenes)
    assert images.shape == (4, IMAGE_SIZE, IMAGE_SIZE, 3) and images.dtype == np.uint8
    for image, scene in zip(images, scenes):
        background = (render_background(scene, IMAGE_SIZE, IMAGE_SIZE) * 255 + 0.5).astype(np.uint8)
        person = np.abs(image.astype(int) - background.astype(int)).max(-1) > 12
        assert 0.03 < person.mean() < 0.8, "the body covers a plausible share of the image"
        assert image.astype(float).var() > 50.0
    np.testing.assert_array_equal(renderer.render(poses, scenes), images)
    np.testing.assert_array_equal(renderer.render(poses, sample_scenes(4, np.random.default_rng(1))), images)


def test_left_and_right_limbs_are_told_apart(body_model):
    renderer = BodyRenderer(body_model, image_size=128)
    # Grey everywhere but on the limbs, so that any blue or red pixel belongs to a limb.
    colors = tuple(
        color if "_" in name else (0.6, 0.6, 0.6) for name, color in zip(MATERIALS, frontal_scene().colors)
    )
    scene = frontal_scene(ambient=0.7, colors=colors)
    upper = slice(0, 32)  # above the shoulders: only the raised arm (and the head) reach up there
    for side in ("left", "right"):
        image = renderer.render(_one_arm_raised(side)[None], [scene])[0]
        blue, red = _hue_masks(image[upper])
        raised, other = (blue, red) if side == "left" else (red, blue)
        assert raised.sum() > 20, f"the raised {side} arm shows its colour above the shoulders"
        assert other.sum() == 0, "the lowered arm does not reach above the shoulders"
        columns = np.nonzero(raised)[1]
        # Seen from the front, the body's left is on the image's right.
        if side == "left":
            assert columns.min() > 64
        else:
            assert columns.max() < 64


def test_camera_yaw_equals_turning_the_body(renderer):
    # What the corpus stores for an image: the body turned by minus the camera's yaw, seen from yaw 0.
    poses = sample_poses(2, seed=9)
    scenes = [
        frontal_scene(yaw_deg=70.0, pitch_deg=20.0, fill=0.8),
        frontal_scene(yaw_deg=-135.0, pitch_deg=5.0),
    ]
    turned = turn_about_vertical(poses, -np.radians([s.yaw_deg for s in scenes]))
    straight = [frontal_scene(pitch_deg=s.pitch_deg, fill=s.fill) for s in scenes]
    seen = renderer.render(poses, scenes).astype(int)
    stored = renderer.render(turned, straight).astype(int)
    differing = (np.abs(seen - stored).max(-1) > 40).mean()
    assert differing < 0.005


def test_pairs_share_one_camera(renderer):
    poses = sample_poses(2, seed=2)
    scene = frontal_scene()
    images_a, images_b = renderer.render_pairs(poses[:1], poses[:1], [scene])
    np.testing.assert_array_equal(images_a, images_b)
    images_a, images_b = renderer.render_pairs(poses[:1], poses[1:], [scene])
    assert not np.array_equal(images_a, images_b)


def test_renderer_rejects_bad_input(renderer):
    with pytest.raises(ValueError, match="image_size"):
        BodyRenderer(image_size=4)
    with pytest.raises(ValueError, match="scenes"):
        renderer.render(np.zeros((2, 22, 3)), [frontal_scene()])
    with pytest.raises(TypeError, match="scenes"):
        renderer.render(np.zeros((1, 22, 3)), frontal_scene())
    with pytest.raises(ValueError, match="poses"):
        renderer.render(np.zeros((1, 21, 3)), [frontal_scene()])
    with pytest.raises(ValueError, match="background"):
        Scene(background="stripes")


# ---------------------------------------------------------------------------------------------------------
# Pairs, headings, splits
# ---------------------------------------------------------------------------------------------------------


def test_pose_pairs_change_something_plausible():
    pairs = sample_pose_pairs(40, seed=4)
    assert pairs.poses_a.shape == pairs.poses_b.shape == (40, 22, 3)
    displacement = synthetic._max_displacement(pairs.poses_a, pairs.poses_b)
    assert np.all(displacement >= MIN_PAIR_DISPLACEMENT)
    kinds = set()
    for a, b, change in zip(pairs.poses_a, pairs.poses_b, pairs.changes):
        if change.startswith("posture"):
            kinds.add("posture")
            continue
        kinds.add("parts")
        changed = {
            JOINT_INDEX[name] for part in change.split("+") for name in synthetic.PAIR_PART_JOINTS[part]
        }
        untouched = [index for index in range(len(BODY_JOINT_NAMES)) if index not in changed]
        np.testing.assert_array_equal(a[untouched], b[untouched])
    assert kinds == {"posture", "parts"}
    posture = [i for i, change in enumerate(pairs.changes) if change.startswith("posture")]
    turn = heading(pairs.poses_b[posture]) - heading(pairs.poses_a[posture])
    np.testing.assert_allclose(np.angle(np.exp(1j * turn)), 0.0, atol=1e-4)
    again = sample_pose_pairs(40, seed=4)
    np.testing.assert_array_equal(again.poses_b, pairs.poses_b)


def test_split_sizes():
    for num in (1, 2, 3, 20, 101, 1000):
        sizes = split_sizes(num)
        assert list(sizes) == ["train", "validation", "test"] and sum(sizes.values()) == num
        if num >= 3:
            assert min(sizes.values()) >= 1
    assert split_sizes(1000) == {"train": 900, "validation": 50, "test": 50}


# ---------------------------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------------------------


def test_corpus_follows_the_schemas_and_splits(corpus_dir, corpus):
    assert set(corpus) == set(KINDS)
    assert (corpus_dir / METADATA_FILE).is_file() and (corpus_dir / CONTACT_SHEET_FILE).is_file()
    assert sorted(p.name for p in corpus_dir.parent.iterdir()) == ["corpus"], "no temporary directory is left"
    ids = set()
    for kind, splits in corpus.items():
        assert isinstance(splits, DatasetDict)
        expected = split_sizes(NUM_IMAGES if kind.startswith("image") else NUM)
        assert {split: len(data) for split, data in splits.items()} == expected
        for split, data in splits.items():
            assert data.features == FEATURES[kind]
            assert set(data["source"]) <= {f"synthetic/{split}"}
            ids.update(data["id"])
            for texts in data["texts"]:
                assert len(texts) == 2 and all(isinstance(t, str) and t for t in texts)
    assert len(ids) == sum(len(data) for splits in corpus.values() for data in splits.values())


def test_corpus_poses_and_images(corpus):
    # Pose-only records have their heading zeroed (pose A's, for pairs).
    poses = np.asarray(corpus["pose_text"]["train"]["pose"], dtype=np.float32)
    assert poses.shape[1:] == (22, 3) and np.isfinite(poses).all()
    np.testing.assert_allclose(np.sin(heading(poses)), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.cos(heading(poses)), 1.0, atol=1e-4)
    poses_a = np.asarray(corpus["pose_pair"]["train"]["pose_a"], dtype=np.float32)
    np.testing.assert_allclose(np.sin(heading(poses_a)), 0.0, atol=1e-4)
    for record in corpus["image_pair"]["train"]:
        for name in ("image_a", "image_b"):
            image = record[name]
            assert image.mode == "RGB" and image.size == (IMAGE_SIZE, IMAGE_SIZE)
            pixels = np.asarray(image, dtype=np.float64)
            assert pixels.var() > 50.0
            blue, red = _hue_masks(np.asarray(image))
            assert blue.sum() + red.sum() > 10, "limb colours are present"
    image = corpus["image_pose"]["train"][0]["image"]
    assert image.mode == "RGB" and image.size == (IMAGE_SIZE, IMAGE_SIZE)


def test_corpus_is_deterministic(tmp_path, body_model, corpus):
    same = _build(tmp_path / "again", body_model=body_model)
    for kind in KINDS:
        for split in corpus[kind]:
            first = corpus[kind][split].with_format("arrow")[:]
            second = same[kind][split].with_format("arrow")[:]
            assert first.equals(second), f"{kind}/{split} differs between two builds with the same seed"
    image = corpus["image_pose"]["train"].cast_column(
        "image", type(FEATURES["image_pose"]["image"])(decode=False)
    )
    other = _build(tmp_path / "other", seed=1, body_model=body_model, kinds=("pose_text", "image_pose"))
    other_image = other["image_pose"]["train"].cast_column(
        "image", type(FEATURES["image_pose"]["image"])(decode=False)
    )
    assert image[0]["image"]["bytes"] != other_image[0]["image"]["bytes"]
    assert corpus["pose_text"]["train"]["texts"] != other["pose_text"]["train"]["texts"]


def test_command_line_writes_a_loadable_corpus(tmp_path):
    parser = argparse.ArgumentParser(prog="unipose data")
    data_command.add_arguments(parser)
    out = tmp_path / "cli"
    args = parser.parse_args(
        [
            "synth",
            "--out",
            str(out),
            "--num",
            "6",
            "--num-images",
            "3",
            "--seed",
            "3",
            "--image-size",
            "48",
            "--kinds",
            "pose_text",
            "image_pose",
            "--no-contact-sheet",
        ]
    )
    assert "Wrote" in data_command.run(args)
    for kind in ("pose_text", "image_pose"):
        loaded = load_dataset(str(out), kind)  # the corpus is a Hub dataset folder, a configuration per kind
        assert isinstance(loaded, DatasetDict) and sum(len(d) for d in loaded.values()) == (
            6 if kind == "pose_text" else 3
        )
        assert loaded["train"].features == FEATURES[kind]
    assert not (out / "pose_pair").exists() and not (out / CONTACT_SHEET_FILE).exists()
    with pytest.raises(FileExistsError, match="overwrite"):
        data_command.run(args)
    assert (
        data_command.run(
            parser.parse_args(
                [
                    "synth",
                    "--out",
                    str(out),
                    "--num",
                    "4",
                    "--kinds",
                    "pose_text",
                    "--overwrite",
                    "--no-contact-sheet",
                ]
            )
        ).startswith("pose_text: train 2")
    )
    assert sum(len(d) for d in load_synthetic_corpus(out, "pose_text").values()) == 4
    assert not (out / "image_pose").exists()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num": 0}, ValueError, "`num`"),
        ({"num": -3}, ValueError, "`num`"),
        ({"num": 2.5}, ValueError, "`num`"),
        ({"num_images": 0}, ValueError, "`num_images`"),
        ({"seed": -1}, ValueError, "`seed`"),
        ({"image_size": 8}, ValueError, "`image_size`"),
        ({"kinds": ("poses",)}, ValueError, "`kinds`"),
        ({"image_format": "gif"}, ValueError, "`image_format`"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        build_synthetic_corpus(tmp_path / "corpus", **kwargs)
    assert not (tmp_path / "corpus").exists()


def test_bad_output_paths_are_refused(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a directory")
    with pytest.raises(NotADirectoryError, match="out_dir"):
        build_synthetic_corpus(a_file, num=3, kinds=("pose_text",), contact_sheet=False)
    with pytest.raises(NotADirectoryError, match="out_dir"):
        build_synthetic_corpus(a_file / "corpus", num=3, kinds=("pose_text",), contact_sheet=False)
    user_data = tmp_path / "mine"
    user_data.mkdir()
    (user_data / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a synthetic corpus"):
        build_synthetic_corpus(user_data, num=3, kinds=("pose_text",), contact_sheet=False, overwrite=True)
    assert (user_data / "notes.txt").read_text() == "keep me"
    with pytest.raises(TypeError, match="out_dir"):
        build_synthetic_corpus(3, num=3)
    with pytest.raises(FileNotFoundError, match="synthetic corpus"):
        load_synthetic_corpus(tmp_path)


def test_the_corpus_is_a_hub_dataset_and_no_cache_is_written_inside_it(tmp_path):
    from huggingface_hub import DatasetCard

    from unipose.data.hub import load_corpus

    out = tmp_path / "corpus"
    synthetic.build_synthetic_corpus(out, num=8, num_images=6, seed=1, image_size=32, contact_sheet=False)
    card = DatasetCard.load(out / "README.md")
    configs = {config["config_name"]: config for config in card.data.to_dict()["configs"]}
    assert set(configs) == set(synthetic.KINDS) and configs["pose_text"].get("default") is True
    assert {info["config_name"] for info in card.data.to_dict()["dataset_info"]} == set(synthetic.KINDS)
    assert "seed\n1" in card.text or "seed 1" in card.text.replace("\n", " ")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    for kind in synthetic.KINDS:
        splits = load_dataset(str(out), kind)
        assert set(splits) == {"train", "validation", "test"}
        splits["train"].map(lambda record: {"n": len(record["texts"])})  # writes a cache file, elsewhere
        assert len(load_corpus(out, kind, split="test")) == len(splits["test"])
        assert load_corpus(out / kind, kind, split="test").features == FEATURES[kind]  # a kind's folder alone
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    with pytest.raises(ValueError, match="has no `image_pair` configuration"):
        out_b = tmp_path / "only_text"
        synthetic.build_synthetic_corpus(out_b, num=4, seed=1, kinds=("pose_text",), contact_sheet=False)
        load_corpus(out_b, "image_pair")


def test_two_corpora_in_folders_of_the_same_name_are_read_each_as_itself(tmp_path):
    """`load_dataset(folder, kind)` caches a folder's records under its name and configuration alone; the corpus reader
    must not give one corpus's records for another's (a rebuilt `runs/.../corpus` read as an old test one)."""
    from unipose.data.hub import load_corpus

    first, second = tmp_path / "a" / "corpus", tmp_path / "b" / "corpus"
    synthetic.build_synthetic_corpus(first, num=10, seed=0, kinds=("pose_text",), contact_sheet=False)
    synthetic.build_synthetic_corpus(second, num=20, seed=0, kinds=("pose_text",), contact_sheet=False)
    assert len(load_corpus(first, "pose_text", split="train")) == synthetic.split_sizes(10)["train"]
    assert len(load_corpus(second, "pose_text", split="train")) == synthetic.split_sizes(20)["train"]
    assert load_corpus(second, "pose_text", split="test").features == FEATURES["pose_text"]
    # The same for a kind's own folder of shards, which every corpus names alike (`pose_text/`).
    assert len(load_corpus(first / "pose_text", "pose_text", split="train")) == synthetic.split_sizes(10)["train"]
    assert len(load_corpus(second / "pose_text", "pose_text", split="train")) == synthetic.split_sizes(20)["train"]
