"""`unipose demo`: the seven UniPose tasks on bundled inputs, with poses, meshes, renders and a report.

The model is loaded exactly as a user loads a checkpoint from the Hub (`AutoModel.from_pretrained(...,
trust_remote_code=True)` and `AutoProcessor`), and all seven requests run as one batch: some sequences
write a pose while others write text. The output folder holds:

- `report.md`: every task with its inputs and outputs side by side;
- `texts.json`: the prompts and the generated texts;
- `poses/*.npz`: every input and output pose (SMPL-H body axis-angle, key `pose`);
- `meshes/*.obj`: the body mesh of every pose (the generated body model unless `--body-model` is given);
- `renders/*.png`: a picture of every pose and pose pair, and the input images.

    unipose demo --out outputs/demo
    unipose demo --model path/to/checkpoint --pose-a a.npz --pose-b b.npz --image-a a.jpg --image-b b.jpg
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoProcessor

from .body_model import BodyModel
from .data.amass import change_pose_up_axis
from .data.schema import RECORD_UP_AXIS
from .evaluation.runner import evaluation_prompt
from .files import atomic_path, open_npz, resolve_model_path, write_text_atomically
from .processing_inputs import to_rgb_images
from .rotations import to_axis_angle, to_rotation_6d
from .visualization import render_pose, render_pose_pair, save_obj

ASSETS = Path(__file__).parent / "demo_assets"
# The bundled model of a repository checkout (the package itself does not ship weights).
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "unipose-tiny"
TASK_TITLES = {
    "pose_to_text": "Pose-to-Text",
    "image_to_text": "Image-to-Text",
    "pose_diff": "Pose-Diff",
    "image_diff": "Image-Diff",
    "text_to_pose": "Text-to-Pose",
    "pose_estimation": "Pose Estimation",
    "pose_editing": "Pose Editing",
}
# The files a user's pose may come in (see `read_pose_file`).
POSE_FILE_SUFFIXES = (".npz", ".npy", ".json")


def read_pose_file(path: str | os.PathLike) -> np.ndarray:
    """
    One pose from a user's file, as the pose encoder reads it.

    Args:
        path (`str` or `os.PathLike`):
            An `.npz` (array `pose`, or its only array), `.npy` or `.json` (a nested list, or an object with
            the key `"pose"`) holding one pose in any rotation format: axis-angle `(66,)` or `(22, 3)`,
            rotation matrices `(22, 3, 3)` or 6D `(22, 6)`, optionally with a batch axis of 1.

    Returns:
        `np.ndarray` of shape `(22, 6)`, float32: the pose in 6D (see `unipose.rotations.to_rotation_6d`).

    Raises:
        `FileNotFoundError`: if there is no such file.
        `ValueError`: for another file type, an unreadable file, a missing `pose` array or key, a shape that
            is no pose, values that are no rotation, or more than one pose.
        `TypeError`: if the file holds something other than numbers.

    Example:

    ```python
    >>> np.save("pose.npy", np.zeros((22, 3)))
    >>> read_pose_file("pose.npy").shape
    (22, 6)
    ```
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in POSE_FILE_SUFFIXES:
        raise ValueError(
            f"The pose file {path.name} is not a pose file: expected {', '.join(POSE_FILE_SUFFIXES)} "
            f"(got {suffix or 'no extension'})."
        )
    if not path.is_file():
        raise FileNotFoundError(f"The pose file {path} does not exist.")
    if suffix == ".npz":
        with open_npz(path, "pose file") as archive:
            if "pose" in archive:
                array = archive["pose"]
            elif len(archive.files) == 1:
                array = archive[archive.files[0]]
            else:
                raise ValueError(
                    f"The pose file {path.name} holds the arrays {sorted(archive.files)} but none named "
                    "`pose`: save the pose as `np.savez(file, pose=pose)`."
                )
    elif suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise ValueError(f"The pose file {path.name} is not a readable .npy array ({error}).") from None
    else:
        try:
            array = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"The pose file {path.name} is not valid JSON ({error}).") from None
        if isinstance(array, dict):
            if "pose" not in array:
                raise ValueError(
                    f"The pose file {path.name} is a JSON object with the keys {sorted(array)[:8]} but no "
                    '"pose": write the pose as a nested list, or as {"pose": [...]}.'
                )
            array = array["pose"]
        if not isinstance(array, list):
            raise ValueError(
                f"The pose file {path.name} holds a JSON {type(array).__name__}; expected a nested list of "
                "numbers."
            )
    poses = to_rotation_6d(array, name=path.name)
    if poses.shape[0] != 1:
        raise ValueError(
            f"The pose file {path.name} holds {poses.shape[0]} poses; one pose per file is read."
        )
    return poses[0].numpy().astype(np.float32)

def load_inputs(pose_a=None, pose_b=None, image_a=None, image_b=None, caption=None, instruction=None) -> dict:
    """The demo's inputs: the bundled ones, each replaceable by a file or a text of the user's.

    Poses are kept as 6D `(22, 6)` float32, as the pose tokenizer reads them: a file of rotation matrices
    (such as the UniPose release's `demo_smpl_rotmat_*.npy`) reaches the model with its raw first two rows,
    not projected onto exact rotations through axis-angle.
    """
    bundled = json.loads((ASSETS / "inputs.json").read_text())

    def read_pose(path, key):
        if path is None:
            return to_rotation_6d(np.load(ASSETS / "poses.npz")[key], name=key)[0].numpy()
        try:
            return read_pose_file(path)
        except (FileNotFoundError, TypeError, ValueError) as error:  # named by the argument that gave it
            raise type(error)(f"`{key}`: {error}") from None

    def read_image(path, name):
        path = ASSETS / name if path is None else Path(path)
        if not path.exists():
            raise FileNotFoundError(f"Image {path} not found.")
        return to_rgb_images(path, name)[0]  # as the processor reads a file: EXIF orientation, 16-bit scaling

    return {
        "pose_a": read_pose(pose_a, "pose_a").astype(np.float32),
        "pose_b": read_pose(pose_b, "pose_b").astype(np.float32),
        "image_a": read_image(image_a, "image_a.jpg"),
        "image_b": read_image(image_b, "image_b.jpg"),
        "caption": caption or bundled["caption"],
        "instruction": instruction or bundled["instruction"],
    }


def task_records(inputs: dict) -> dict[str, tuple[dict, str | None]]:
    """Each task's record (in the corpus schema) and its input text."""
    single = {"id": "demo", "source": "demo", "texts": []}
    return {
        "pose_to_text": ({**single, "pose": inputs["pose_a"]}, None),
        "image_to_text": ({**single, "image": inputs["image_a"], "pose": inputs["pose_a"]}, None),
        "pose_diff": ({**single, "pose_a": inputs["pose_a"], "pose_b": inputs["pose_b"]}, None),
        "image_diff": ({**single, "image_a": inputs["image_a"], "image_b": inputs["image_b"]}, None),
        "text_to_pose": (single, inputs["caption"]),
        "pose_estimation": ({**single, "image": inputs["image_a"]}, None),
        "pose_editing": ({**single, "pose_a": inputs["pose_a"], "pose_b": inputs["pose_b"]}, inputs["instruction"]),
    }


@torch.no_grad()
def run_demo(model_path, out_dir, inputs: dict, body_model=None, max_new_tokens: int = 96, seed: int = 0) -> dict:
    """Run the seven tasks as one batch and write everything to `out_dir` (a new or empty folder, or an earlier
    demo's, which is replaced); returns the summary."""
    out_dir = Path(out_dir)
    reusable = out_dir.is_dir() and (not any(out_dir.iterdir()) or (out_dir / "texts.json").is_file())
    if out_dir.exists() and not reusable:
        raise FileExistsError(
            f"`--out` {str(out_dir)!r} is a file or a folder that holds something other than a demo's output: give "
            "a new or empty folder (an earlier demo's output is replaced)."
        )
    model_path = resolve_model_path(model_path, "--model")
    model = AutoModel.from_pretrained(model_path, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(model_path, trust_remote_code=True)
    torch.manual_seed(seed)

    up_axis = model.config.pose_up_axis
    prompts = {
        task: evaluation_prompt(task.replace("_", "-"), record, text, processor.tokenizer, up_axis)
        for task, (record, text) in task_records(inputs).items()
    }
    batch = processor(
        text=[prompt.text for prompt in prompts.values()],
        images=[prompt.images for prompt in prompts.values()],
        poses=[prompt.poses for prompt in prompts.values()],
    )
    output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, return_dict_in_generate=True)
    prompt_length = batch["input_ids"].shape[1]
    texts = processor.batch_decode(output.sequences[:, prompt_length:], pose_spans="remove")
    poses = [change_pose_up_axis(row, up_axis, RECORD_UP_AXIS) for row in output.poses]  # rendered in SMPL's frame
    return write_outputs(out_dir, inputs, prompts, texts, poses, body_model)


def write_outputs(out_dir: Path, inputs: dict, prompts: dict, texts: list[str], poses: list, body_model=None) -> dict:
    for folder in ("poses", "meshes", "renders"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    body = BodyModel(body_model or "generated")

    def save_pose(name: str, pose) -> str:
        # Saved as SMPL-H body axis-angle `(22, 3)` whatever the format of `pose` (inputs are 6D).
        pose = to_axis_angle(np.asarray(pose, dtype=np.float32), name=name)[0].numpy()
        with atomic_path(out_dir / "poses" / f"{name}.npz") as temporary, open(temporary, "wb") as handle:
            np.savez(handle, pose=pose)
        mesh = body(torch.from_numpy(pose)[None])
        save_obj(mesh.vertices[0], mesh.faces, out_dir / "meshes" / f"{name}.obj")
        render_pose(pose, path=out_dir / "renders" / f"{name}.png", title=name.replace("_", " "))
        return f"renders/{name}.png"

    for name in ("image_a", "image_b"):
        with atomic_path(out_dir / "renders" / f"{name}.png") as temporary:
            inputs[name].save(temporary, format="PNG")
    pictures = {
        "pose_a": save_pose("input_pose_a", inputs["pose_a"]),
        "pose_b": save_pose("input_pose_b", inputs["pose_b"]),
    }
    render_pose_pair(inputs["pose_a"], inputs["pose_b"], path=out_dir / "renders" / "input_pair.png")

    summary, lines = {}, ["# UniPose demo", "", "Every task ran in one batch through `generate`.", ""]
    for (task, prompt), text, task_poses in zip(prompts.items(), texts, poses):
        entry = {"prompt": prompt.text, "text": text.strip(), "num_poses": int(len(task_poses))}
        lines += [f"## {TASK_TITLES[task]}", "", f"Prompt: `{prompt.text}`", ""]
        if task in ("pose_to_text", "pose_editing"):
            lines.append(f"![input pose]({pictures['pose_a']})")
        if task == "pose_diff":
            lines.append("![input poses](renders/input_pair.png)")
        if task in ("image_to_text", "pose_estimation"):
            lines.append("![input image](renders/image_a.png)")
        if task == "image_diff":
            lines.append("![image A](renders/image_a.png) ![image B](renders/image_b.png)")
        for index, pose in enumerate(task_poses):
            picture = save_pose(f"{task}_{index}", pose.cpu().numpy())
            entry.setdefault("poses", []).append(f"poses/{task}_{index}.npz")
            lines.append(f"![generated pose]({picture})")
        lines += ["", f"Output: {entry['text'] or '(a pose only)'}", ""]
        summary[task] = entry
    write_text_atomically(out_dir / "texts.json", json.dumps(summary, indent=2) + "\n")
    write_text_atomically(out_dir / "report.md", "\n".join(lines) + "\n")
    return summary


__all__ = ["load_inputs", "run_demo", "task_records"]
