"""`unipose demo` end to end on a tiny random checkpoint saved to disk."""

import json

import numpy as np
import pytest

from unipose.cli import main
from unipose.demo import TASK_TITLES


def test_demo_writes_every_task_with_renders_meshes_and_poses(checkpoint, tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--model", str(checkpoint), "--out", str(out), "--max-new-tokens", "12"]) == 0
    summary = json.loads((out / "texts.json").read_text())
    assert sorted(summary) == sorted(TASK_TITLES)
    # Prompts of the pose tasks end with `<p>`: each writes exactly one pose, in one step.
    for task in ("text_to_pose", "pose_estimation", "pose_editing"):
        assert summary[task]["num_poses"] == 1
        pose = np.load(out / summary[task]["poses"][0])["pose"]
        assert pose.shape == (22, 3) and np.isfinite(pose).all()
        assert (out / "renders" / f"{task}_0.png").exists()
        obj = (out / "meshes" / f"{task}_0.obj").read_text().splitlines()
        assert sum(line.startswith("v ") for line in obj) == 6890
    report = (out / "report.md").read_text()
    assert all(title in report for title in TASK_TITLES.values())
    for picture in ("image_a.png", "image_b.png", "input_pose_a.png", "input_pose_b.png", "input_pair.png"):
        assert (out / "renders" / picture).exists()


def test_demo_explains_a_missing_model(tmp_path, capsys):
    assert main(["demo", "--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("unipose demo: error: FileNotFoundError:") and "--model" in error
    with pytest.raises(FileNotFoundError, match="--model"):
        main(["demo", "--debug", "--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")])


def test_demo_takes_the_users_inputs(checkpoint, tmp_path):
    pose = tmp_path / "pose.npz"
    np.savez(pose, pose=np.zeros((22, 3, 3)) + np.eye(3))  # rotation matrices work too
    out = tmp_path / "demo"
    main(["demo", "--model", str(checkpoint), "--out", str(out), "--pose-a", str(pose), "--max-new-tokens", "4",
          "--caption", "A person sitting."])
    np.testing.assert_allclose(np.load(out / "poses" / "input_pose_a.npz")["pose"], 0.0, atol=1e-6)
    assert "A person sitting." in json.loads((out / "texts.json").read_text())["text_to_pose"]["prompt"]


def test_a_pose_file_of_real_rotation_matrices_reaches_the_model_as_its_raw_rows(tmp_path):
    # Like the release's `demo_smpl_rotmat_*.npy`: float32 matrices a few 1e-3 off exact rotations.
    import torch

    from unipose.demo import load_inputs
    from unipose.testing import near_rotation_matrices

    matrices = near_rotation_matrices(torch.randn(22, 3, generator=torch.Generator().manual_seed(0)) * 0.5)
    np.save(tmp_path / "pose.npy", matrices.numpy())
    inputs = load_inputs(pose_a=tmp_path / "pose.npy")
    np.testing.assert_array_equal(inputs["pose_a"], matrices[:, :2].reshape(22, 6).numpy())


def test_the_demo_writes_only_into_a_new_or_empty_folder_or_over_an_earlier_demo(checkpoint, tmp_path, capsys):
    other = tmp_path / "evaluation"
    other.mkdir()
    (other / "report.md").write_text("# Another report\n")
    assert main(["demo", "--model", str(checkpoint), "--out", str(other), "--max-new-tokens", "2"]) == 1
    assert "holds something other than a demo's output" in capsys.readouterr().err
    assert (other / "report.md").read_text() == "# Another report\n" and len(list(other.iterdir())) == 1
    out = tmp_path / "demo"
    for _ in range(2):  # the second run replaces the first one's output
        assert main(["demo", "--model", str(checkpoint), "--out", str(out), "--max-new-tokens", "2"]) == 0


def test_the_demo_reads_pose_files_as_the_app_does_and_names_the_argument(tmp_path):
    from unipose.demo import load_inputs, read_pose_file

    (tmp_path / "pose.json").write_text(json.dumps({"pose": np.zeros((22, 3)).tolist()}))
    read = load_inputs(pose_b=tmp_path / "pose.json")["pose_b"]
    np.testing.assert_array_equal(read, read_pose_file(tmp_path / "pose.json"))
    np.save(tmp_path / "three.npy", np.zeros((3, 22, 3)))
    np.savez(tmp_path / "other.npz", a=np.zeros((22, 3)), b=np.zeros((22, 3)))
    (tmp_path / "text.npy").write_text("not an array")
    for name, message in (
        ("three.npy", "`pose_a`: The pose file three.npy holds 3 poses; one pose per file is read"),
        ("other.npz", "`pose_a`: The pose file other.npz holds the arrays \\['a', 'b'\\] but none named"),
        ("text.npy", "`pose_a`: The pose file text.npy is not a readable .npy array"),
        ("pose.txt", "`pose_a`: The pose file pose.txt is not a pose file"),
    ):
        with pytest.raises(ValueError, match=message):
            load_inputs(pose_a=tmp_path / name)
    with pytest.raises(FileNotFoundError, match="`pose_a`: The pose file .* does not exist"):
        load_inputs(pose_a=tmp_path / "missing.npy")


def test_the_bundled_model_loads_as_remote_code_and_writes_a_pose():
    from pathlib import Path

    import torch
    from transformers import AutoModel, AutoProcessor

    from unipose.demo import DEFAULT_MODEL

    if not (Path(DEFAULT_MODEL) / "config.json").exists():
        pytest.skip("no bundled model in this checkout (an installed package ships none)")
    model = AutoModel.from_pretrained(DEFAULT_MODEL, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(DEFAULT_MODEL, trust_remote_code=True)
    inputs = processor(text=["[INST] Generate the pose described as follows: a person kneeling. [/INST] <p>"])
    out = model.generate(**inputs, max_new_tokens=model.config.num_pose_tokens + 1, do_sample=False,
                         return_dict_in_generate=True)
    assert out.poses[0].shape == (1, 22, 3) and torch.isfinite(out.poses[0]).all()


def test_the_bundled_models_remote_code_is_the_packages():
    from pathlib import Path

    import unipose
    from unipose.demo import DEFAULT_MODEL

    remote_code = sorted(Path(DEFAULT_MODEL).glob("*.py"))
    if not remote_code:
        pytest.skip("no bundled model in this checkout (an installed package ships none)")
    package = Path(unipose.__file__).parent
    stale = [path.name for path in remote_code if path.read_bytes() != (package / path.name).read_bytes()]
    assert not stale, f"refresh {stale} in {DEFAULT_MODEL} from the package"


def test_demo_images_are_read_as_the_processor_reads_a_file(tmp_path):
    # A phone photo stored sideways with its EXIF orientation, and a 16-bit greyscale scan.
    from PIL import Image

    from unipose.demo import load_inputs

    photo = Image.new("RGB", (40, 20), (200, 30, 30))
    exif = photo.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    photo.save(tmp_path / "photo.jpg", exif=exif)
    ramp = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    ramp.save(tmp_path / "scan.png")
    inputs = load_inputs(image_a=tmp_path / "photo.jpg", image_b=tmp_path / "scan.png")
    assert inputs["image_a"].size == (20, 40)
    assert len(np.unique(np.asarray(inputs["image_b"]))) > 200  # scaled by its range, not clipped to white
