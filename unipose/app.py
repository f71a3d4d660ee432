"""`unipose app`: the seven UniPose tasks on one web page (Gradio), for a local run or a Hugging Face Space.

The page takes an image or two, a pose file or two (or the bundled examples), a description and an
instruction; the task picked reads the inputs it needs. The answer shows the model's text and each pose it
wrote as an interactive 3D body (the body mesh as a GLB file in `gr.Model3D`), a rendered picture, and the
pose as files to download (`.npz` with the SMPL-H body axis-angle `pose` (22, 3), and the mesh as `.obj`).

    unipose app                                  # the bundled model on http://127.0.0.1:7860
    unipose app --model path/to/checkpoint --port 8080
    python app.py --model owner/unipose          # the same from the repository root, as a Space runs it

Pose files hold one pose in any rotation format that `unipose.rotations.to_rotation_6d` reads: axis-angle
`(66,)` or `(22, 3)`, rotation matrices `(22, 3, 3)` or 6D `(22, 6)`, optionally with a batch axis of 1. An
`.npz` holds it as its array `pose` (or as its only array), an `.npy` as its array, a `.json` as a nested
list or as the list under the key `"pose"`.

Everything but the page itself (reading pose files, checking a task's inputs, generating, writing the answer's
files) is plain functions and a class, `AppModel`, that work without Gradio; Gradio (the `app` extra) is
imported only by [`build_app`].
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoModel, AutoProcessor

from .body_model import BodyModel
from .checks import check_positive_int
from .data.amass import change_pose_up_axis
from .data.schema import RECORD_UP_AXIS
from .demo import ASSETS, DEFAULT_MODEL, POSE_FILE_SUFFIXES, TASK_TITLES, read_pose_file, task_records
from .evaluation.runner import evaluation_prompt
from .files import atomic_path, open_npz, resolve_model_path
from .processing_inputs import to_rgb_images
from .rotations import to_rotation_6d
from .task_formats import TASK_SLOTS
from .visualization import contact_sheet, render_pose, save_obj

# Which inputs each task reads (the keys of `INPUT_NAMES`), in the order its prompt does: its template slots,
# a task of one pose or image reading the page's first.
_INPUT_OF_SLOT = {"pose": "pose_a", "image": "image_a", "caption": "description"}
TASK_INPUTS: dict[str, tuple[str, ...]] = {
    task: tuple(_INPUT_OF_SLOT.get(slot, slot) for slot in slots) for task, slots in TASK_SLOTS.items()
}
INPUT_NAMES = {
    "image_a": "image A",
    "image_b": "image B",
    "pose_a": "pose A",
    "pose_b": "pose B",
    "description": "a description",
    "instruction": "an instruction",
}
# Where to give each input, for the message of a task that lacks it.
_INPUT_HINTS = {
    "image_a": "upload image A",
    "image_b": "upload image B",
    "pose_a": "upload a pose file for pose A or pick a bundled example",
    "pose_b": "upload a pose file for pose B or pick a bundled example",
    "description": "type a description of the pose",
    "instruction": "type an instruction that changes pose A",
}
# The bundled example poses by the names the page shows (`demo_assets/poses.npz`'s `pose_a`, `pose_b`).
BUNDLED_POSES = {"Bundled pose A": "pose_a", "Bundled pose B": "pose_b"}
# Longer texts are refused before they reach the tokenizer (the model's context limit is checked too).
MAX_TEXT_CHARACTERS = 2000
MAX_UPLOAD_SIZE = "20mb"
DEFAULT_MAX_NEW_TOKENS = 96
# Bodies of one answer stand this far apart (metres) along x in the 3D view.
BODY_SPACING = 1.0
# The 3D view's background (RGBA in [0, 1]) and camera: `(alpha, beta, radius)`, degrees about the vertical
# from +x and from straight above, and metres from the body. It sees an upright body from the front, from
# its left and a little above, as `unipose.visualization`'s pictures do (azimuth 40, elevation 15 degrees).
VIEW_BACKGROUND = (0.96, 0.96, 0.97, 1.0)
VIEW_CAMERA = (50, 75, 3.0)
# The body's colour in the 3D view (linear RGBA): darker than the background; the viewer lights it brightly.
BODY_COLOR = (0.30, 0.42, 0.62, 1.0)
# Answers kept on disk: older request folders are removed once Gradio has served them.
KEPT_ANSWERS = 16
DEFAULT_PORT = 7860


# ---------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------




def bundled_pose(name: str) -> np.ndarray:
    """A bundled example pose by its name in [`BUNDLED_POSES`], as 6D `(22, 6)` float32."""
    if name not in BUNDLED_POSES:
        raise ValueError(f"There is no bundled pose {name!r}; the bundled poses are {list(BUNDLED_POSES)}.")
    key = BUNDLED_POSES[name]
    with open_npz(ASSETS / "poses.npz", "bundled pose file") as archive:
        return to_rotation_6d(archive[key], name=key)[0].numpy().astype(np.float32)


def choose_pose(upload: str | os.PathLike | None, example: str | None) -> np.ndarray | None:
    """The pose of one slot: the uploaded file if there is one, else the bundled example picked, else None."""
    if upload:
        return read_pose_file(upload)
    if example:
        return bundled_pose(example)
    return None


def _clean_text(text: str | None, what: str) -> str | None:
    text = " ".join((text or "").split())
    if len(text) > MAX_TEXT_CHARACTERS:
        raise ValueError(
            f"The {what} is {len(text)} characters long; the app takes at most {MAX_TEXT_CHARACTERS}: "
            "shorten it."
        )
    return text or None


def task_inputs(
    task: str,
    image_a: Image.Image | None = None,
    image_b: Image.Image | None = None,
    pose_a: np.ndarray | None = None,
    pose_b: np.ndarray | None = None,
    description: str | None = None,
    instruction: str | None = None,
) -> dict[str, Any]:
    """
    Checks that `task` has every input it reads and returns the inputs in the shape of `unipose.demo`'s
    (`pose_a`, `pose_b`, `image_a`, `image_b`, `caption`, `instruction`), None for those it does not read.

    Args:
        task (`str`): a key of [`TASK_INPUTS`].
        image_a, image_b (`PIL.Image.Image`, *optional*): the images.
        pose_a, pose_b (`np.ndarray` of shape `(22, 6)`, *optional*): the poses, e.g. from [`choose_pose`].
        description, instruction (`str`, *optional*): the texts of Text-to-Pose and Pose Editing.

    Raises:
        `ValueError`: for an unknown task, a missing input (the message names it and where to give it), or a
            text that is too long.
    """
    if task not in TASK_INPUTS:
        raise ValueError(f"Unknown task {task!r}; expected one of {list(TASK_INPUTS)}.")
    reads = TASK_INPUTS[task]
    given = {"image_a": image_a, "image_b": image_b, "pose_a": pose_a, "pose_b": pose_b}
    given |= {
        name: _clean_text(text, name) if name in reads else None
        for name, text in (("description", description), ("instruction", instruction))
    }
    missing = [name for name in reads if given[name] is None]
    if missing:
        raise ValueError(
            f"{TASK_TITLES[task]} needs {' and '.join(INPUT_NAMES[name] for name in missing)}: "
            f"{'; '.join(_INPUT_HINTS[name] for name in missing)}."
        )
    used = {name: value if name in reads else None for name, value in given.items()}
    return {
        "pose_a": used["pose_a"],
        "pose_b": used["pose_b"],
        # As the processor reads an image: 16-bit and float modes scaled by their range, not clipped.
        "image_a": None if used["image_a"] is None else to_rgb_images(used["image_a"], "image_a")[0],
        "image_b": None if used["image_b"] is None else to_rgb_images(used["image_b"], "image_b")[0],
        "caption": used["description"],
        "instruction": used["instruction"],
    }


# ---------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------


@dataclass
class TaskAnswer:
    """
    Args:
        task (`str`): the task answered.
        prompt (`str`): the prompt the model read.
        text (`str`): the text it wrote (pose spans removed; empty when it wrote a pose only).
        poses (`np.ndarray` of shape `(num_poses, 22, 3)`): the poses it wrote, SMPL-H body axis-angle.
        seconds (`float`): the time generation took.
    """

    task: str
    prompt: str
    text: str
    poses: np.ndarray
    seconds: float = 0.0


@dataclass
class AnswerFiles:
    """
    The files of one answer, in one folder.

    Args:
        view (`Path`, *optional*): the bodies of every pose, side by side, as GLB (for `gr.Model3D`).
        render (`Path`, *optional*): a picture of the pose (or of all poses) as PNG.
        downloads (`list[Path]`): per pose, its `.npz` (`pose`, axis-angle `(22, 3)`) and its mesh as `.obj`.
    """

    view: Path | None = None
    render: Path | None = None
    downloads: list[Path] = field(default_factory=list)


class AppModel:
    """
    The model behind the app: a UniPose checkpoint loaded once (as a user loads one from the Hub, with remote
    code), answering one task at a time, and the body model that turns its poses into meshes.

    Args:
        model (`str` or `os.PathLike`, *optional*):
            A checkpoint folder or a Hub model id; defaults to the bundled `models/unipose-tiny`.
        body_model (`str` or `os.PathLike`, *optional*):
            The SMPL-H file for meshes; defaults to the generated stand-in body.
        max_new_tokens (`int`, *optional*, defaults to 96):
            The longest answer, in tokens.

    Example:

    ```python
    >>> app = AppModel()
    >>> inputs = task_inputs("text_to_pose", description="A person kneeling with both arms raised.")
    >>> answer = app.answer("text_to_pose", inputs)
    >>> answer.poses.shape
    (1, 22, 3)
    >>> files = app.write_answer(answer, "outputs/app")
    ```
    """

    def __init__(
        self,
        model: str | os.PathLike = DEFAULT_MODEL,
        body_model: str | os.PathLike | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> None:
        check_positive_int(max_new_tokens, "max_new_tokens")
        self.model_name = resolve_model_path(model, "--model")
        self.body_model_path = body_model
        self.max_new_tokens = max_new_tokens
        self.model = self.processor = self.body = None
        # Gradio runs events in worker threads: loading happens once, and one generation runs at a time.
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self.model is not None

    def load(self) -> AppModel:
        """Loads the model, its processor and the body model (once)."""
        with self._lock:
            if self.model is None:
                try:
                    model = AutoModel.from_pretrained(self.model_name, trust_remote_code=True).eval()
                    processor = AutoProcessor.from_pretrained(self.model_name, trust_remote_code=True)
                except OSError as error:
                    raise FileNotFoundError(
                        f"Could not load the UniPose checkpoint {self.model_name}: {error}"
                    ) from None
                model_type = getattr(model.config, "model_type", None)
                if model_type != "unipose":
                    raise ValueError(
                        f"{self.model_name} is a {model_type!r} checkpoint, not a UniPose one (model_type "
                        "'unipose'). Pass a UniPose checkpoint as `--model`."
                    )
                self.body = BodyModel(self.body_model_path or "generated")
                self.model, self.processor = model, processor
        return self

    @torch.no_grad()
    def answer(self, task: str, inputs: dict[str, Any]) -> TaskAnswer:
        """
        Answers one task, greedily.

        Args:
            task (`str`): a key of [`TASK_INPUTS`].
            inputs (`dict`): from [`task_inputs`].

        Returns:
            [`TaskAnswer`]

        Raises:
            `ValueError`: if the prompt and the answer would not fit in the model's context.
        """
        self.load()
        # What visitors type is text: a `<image>` or `<pose_query>` in it is encoded as plain text.
        typed = {"caption", "instruction"}
        marked = {
            name: self.processor.mark_control_tokens(value) if name in typed and value else value
            for name, value in inputs.items()
        }
        record, text = task_records(marked)[task]
        up_axis = self.model.config.pose_up_axis
        prompt = evaluation_prompt(task.replace("_", "-"), record, text, self.processor.tokenizer, up_axis)
        batch = self.processor(
            text=[prompt.text], images=[prompt.images], poses=[prompt.poses], sanitize_control_tokens=True
        )
        prompt_length = batch["input_ids"].shape[1]
        context = self.model.config.context_length
        if context is not None and prompt_length + self.max_new_tokens > context:
            raise ValueError(
                f"The prompt is {prompt_length} tokens long and the answer may take {self.max_new_tokens}, "
                f"more than the model's context of {context} tokens: shorten the text."
            )
        with self._lock:
            start = time.perf_counter()
            output = self.model.generate(
                **batch, max_new_tokens=self.max_new_tokens, do_sample=False, return_dict_in_generate=True
            )
            seconds = time.perf_counter() - start
        answer = self.processor.batch_decode(output.sequences[:, prompt_length:], pose_spans="remove")[0]
        poses = output.poses[0].detach().cpu().numpy().astype(np.float32)  # (num_poses, 22, 3)
        poses = change_pose_up_axis(poses, up_axis, RECORD_UP_AXIS)  # shown and saved in SMPL's frame
        shown = evaluation_prompt(task.replace("_", "-"), *task_records(inputs)[task], self.processor.tokenizer)
        return TaskAnswer(task=task, prompt=shown.text, text=answer.strip(), poses=poses, seconds=seconds)

    def write_answer(self, answer: TaskAnswer, out_dir: str | os.PathLike) -> AnswerFiles:
        """Writes the 3D view, the picture and the downloads of `answer`'s poses into `out_dir` (see
        [`AnswerFiles`]); an answer without a pose has none."""
        self.load()
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        files = AnswerFiles()
        if len(answer.poses) == 0:
            return files
        mesh = self.body(torch.from_numpy(answer.poses))
        vertices, faces = mesh.vertices.detach().cpu().numpy(), mesh.faces.cpu().numpy()  # (n, V, 3), (F, 3)
        for index, (pose, body_vertices) in enumerate(zip(answer.poses, vertices)):
            stem = f"{answer.task}_pose" if len(answer.poses) == 1 else f"{answer.task}_pose_{index + 1}"
            with atomic_path(out_dir / f"{stem}.npz") as temporary, open(temporary, "wb") as handle:
                np.savez(handle, pose=pose)
            files.downloads += [
                out_dir / f"{stem}.npz",
                save_obj(body_vertices, faces, out_dir / f"{stem}.obj"),
            ]
        files.view = save_glb(*side_by_side(vertices, faces), out_dir / f"{answer.task}.glb")
        title = TASK_TITLES[answer.task]
        if len(answer.poses) == 1:
            picture = render_pose(answer.poses[0], title=title, body_model=self.body)
        else:
            captions = [f"{title} {index + 1}" for index in range(len(answer.poses))]
            picture = contact_sheet(
                answer.poses, captions=captions, body_model=self.body, cell_size=(320, 360)
            )
        files.render = out_dir / f"{answer.task}.png"
        with atomic_path(files.render) as temporary:
            picture.save(temporary, format="PNG")
        return files


# ---------------------------------------------------------------------------------------------------------
# Meshes for the 3D view
# ---------------------------------------------------------------------------------------------------------


def side_by_side(
    vertices: np.ndarray, faces: np.ndarray, spacing: float = BODY_SPACING
) -> tuple[np.ndarray, np.ndarray]:
    """
    Several posed bodies as one mesh, standing `spacing` metres apart along x and centred on x = 0.

    Args:
        vertices (`np.ndarray` of shape `(num_bodies, num_vertices, 3)`): the bodies.
        faces (`np.ndarray` of shape `(num_faces, 3)`): the triangles of one body.

    Returns:
        `tuple`: vertices `(num_bodies * num_vertices, 3)` and faces `(num_bodies * num_faces, 3)`.
    """
    num_bodies, num_vertices = vertices.shape[:2]
    offsets = (np.arange(num_bodies) - (num_bodies - 1) / 2) * spacing
    shifted = vertices + np.stack([offsets, np.zeros(num_bodies), np.zeros(num_bodies)], axis=-1)[:, None]
    all_faces = faces[None] + (np.arange(num_bodies) * num_vertices)[:, None, None]
    return shifted.reshape(-1, 3), all_faces.reshape(-1, 3)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals `(V, 3)` of a triangle mesh: the area-weighted sum of the normals of a vertex's faces."""
    corners = vertices[faces]  # (F, 3, 3)
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])  # length = 2 * area
    normals = np.zeros_like(vertices)
    for corner in range(3):
        np.add.at(normals, faces[:, corner], face_normals)
    length = np.linalg.norm(normals, axis=-1, keepdims=True)
    return normals / np.where(length > 0, length, 1.0)


def save_glb(vertices: np.ndarray, faces: np.ndarray, path: str | os.PathLike) -> Path:
    """
    Writes a triangle mesh as binary glTF 2.0 (GLB), atomically: one mesh of positions, smooth normals and
    indices, in one material of colour `BODY_COLOR`. glTF is y-up in metres, as SMPL bodies are, and, unlike
    OBJ, fixes its handedness, so that viewers do not mirror the body.

    Args:
        vertices (`np.ndarray` of shape `(num_vertices, 3)`): positions, finite.
        faces (`np.ndarray` of shape `(num_faces, 3)`): 0-based vertex indices.
        path (`str` or `os.PathLike`): the file to write.

    Returns:
        `pathlib.Path`: the file written.
    """
    positions = np.ascontiguousarray(vertices, dtype=np.float32)
    indices = np.ascontiguousarray(faces, dtype=np.uint32)
    if positions.ndim != 2 or positions.shape[1] != 3 or not np.isfinite(positions).all():
        raise ValueError(
            f"`vertices` must be finite numbers of shape (num_vertices, 3), got shape {positions.shape}."
        )
    if indices.ndim != 2 or indices.shape[1] != 3 or (indices.size and indices.max() >= len(positions)):
        raise ValueError(
            f"`faces` must be (num_faces, 3) indices of the {len(positions)} vertices, got shape "
            f"{indices.shape}."
        )
    normals = vertex_normals(positions.astype(np.float64), indices.astype(np.int64)).astype(np.float32)
    # One buffer: positions, normals, indices; all are 4-byte types, so each view starts on a 4-byte boundary.
    chunks = [positions.tobytes(), normals.tobytes(), indices.tobytes()]
    offsets = np.cumsum([0] + [len(chunk) for chunk in chunks])
    array_buffer, element_buffer = 34962, 34963  # glTF bufferView targets
    float32, uint32 = 5126, 5125  # glTF componentTypes
    document = {
        "asset": {"version": "2.0", "generator": "unipose"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "body"}],
        "meshes": [
            {"primitives": [{"attributes": {"POSITION": 0, "NORMAL": 1}, "indices": 2, "material": 0}]}
        ],
        "materials": [
            {
                "pbrMetallicRoughness": {
                    "baseColorFactor": list(BODY_COLOR),
                    "metallicFactor": 0.0,
                    "roughnessFactor": 0.7,
                }
            }
        ],
        "buffers": [{"byteLength": int(offsets[-1])}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": int(offsets[i]), "byteLength": len(chunks[i]), "target": target}
            for i, target in enumerate((array_buffer, array_buffer, element_buffer))
        ],
        "accessors": [
            {
                "bufferView": 0,
                "componentType": float32,
                "count": len(positions),
                "type": "VEC3",
                "min": positions.min(axis=0).tolist(),
                "max": positions.max(axis=0).tolist(),
            },
            {"bufferView": 1, "componentType": float32, "count": len(normals), "type": "VEC3"},
            {"bufferView": 2, "componentType": uint32, "count": int(indices.size), "type": "SCALAR"},
        ],
    }
    json_chunk = json.dumps(document, separators=(",", ":")).encode()
    json_chunk += b" " * (
        -len(json_chunk) % 4
    )  # chunks are padded to 4 bytes: JSON with spaces, binary with zeros
    binary_chunk = b"".join(chunks)
    binary_chunk += b"\0" * (-len(binary_chunk) % 4)
    total = 12 + 8 + len(json_chunk) + 8 + len(binary_chunk)
    path = Path(path)
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        handle.write(struct.pack("<4sII", b"glTF", 2, total))
        handle.write(struct.pack("<I4s", len(json_chunk), b"JSON") + json_chunk)
        handle.write(struct.pack("<I4s", len(binary_chunk), b"BIN\0") + binary_chunk)
    return path


def read_glb(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The mesh of a GLB from [`save_glb`]: `{"vertices": (V, 3), "normals": (V, 3), "faces": (F, 3)}`."""
    data = Path(path).read_bytes()
    magic, version, total = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF" or version != 2 or total != len(data):
        raise ValueError(
            f"{path} is not a GLB 2.0 file (magic {magic!r}, version {version}, length {total} of "
            f"{len(data)})."
        )
    json_length, _ = struct.unpack_from("<I4s", data, 12)
    document = json.loads(data[20 : 20 + json_length])
    binary_start = 20 + json_length + 8
    primitive = document["meshes"][0]["primitives"][0]

    def accessor(index: int, dtype, width: int) -> np.ndarray:
        spec = document["accessors"][index]
        view = document["bufferViews"][spec["bufferView"]]
        start = binary_start + view.get("byteOffset", 0)
        return np.frombuffer(data, dtype=dtype, count=spec["count"] * width, offset=start).reshape(-1, width)

    return {
        "vertices": accessor(primitive["attributes"]["POSITION"], np.float32, 3),
        "normals": accessor(primitive["attributes"]["NORMAL"], np.float32, 3),
        "faces": accessor(primitive["indices"], np.uint32, 1).reshape(-1, 3),
    }


# ---------------------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------------------


def _import_gradio():
    try:
        import gradio
    except ImportError as error:
        raise ImportError(
            "The web demo needs gradio, which is not installed: `pip install unipose[app]`."
        ) from error
    return gradio


class _AnswerFolders:
    """A fresh folder per answer under one root, removing all but the newest `KEPT_ANSWERS` (Gradio copies
    each answer's files into its own cache when it sends them, so older folders are no longer read)."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        # A temporary root is removed with this object (when the page is garbage-collected, or at exit).
        self._temporary = tempfile.TemporaryDirectory(prefix="unipose-app-") if root is None else None
        self.root = Path(self._temporary.name if root is None else root)
        self.root.mkdir(parents=True, exist_ok=True)
        # Numbering goes on after the folders an earlier page left in the same root.
        numbers = [int(path.name.removeprefix("answer-")) for path in self.root.glob("answer-*")
                   if path.name.removeprefix("answer-").isdigit()]  # fmt: skip
        self._count = max(numbers, default=0)
        self._lock = threading.Lock()

    def new(self) -> Path:
        with self._lock:
            self._count += 1
            folder = self.root / f"answer-{self._count:06d}"
            folder.mkdir()
            for old in sorted(self.root.glob("answer-*"))[:-KEPT_ANSWERS]:
                shutil.rmtree(old, ignore_errors=True)
        return folder


def build_app(app: AppModel, output_dir: str | os.PathLike | None = None):
    """
    The page: inputs on the left, the answer on the right.

    Args:
        app ([`AppModel`]): the model that answers.
        output_dir (`str` or `os.PathLike`, *optional*): where answers are written (by default a temporary
            folder).

    Returns:
        `gradio.Blocks`: launch it with `.launch()` (or `unipose app`).
    """
    gr = _import_gradio()
    folders = _AnswerFolders(output_dir)
    tasks = list(TASK_INPUTS)

    def user_error(error: Exception):
        # The project's own message, as a notice on the page, instead of a traceback.
        return gr.Error(" ".join(str(error).split()) or type(error).__name__)

    def preview(upload, example):
        try:
            pose = choose_pose(upload, example)
        except (ValueError, TypeError, FileNotFoundError) as error:
            raise user_error(error) from None
        return None if pose is None else render_pose(pose, size=(260, 260))

    def shown_inputs(task):
        wanted = set(TASK_INPUTS[task])
        names = ("image_a", "image_b", "pose_a", "pose_b", "description", "instruction")
        needs = (
            f"**{TASK_TITLES[task]}** reads {' and '.join(INPUT_NAMES[name] for name in TASK_INPUTS[task])}."
        )
        return [gr.update(visible=name in wanted) for name in names] + [needs]

    def respond(
        task,
        image_a,
        image_b,
        upload_a,
        example_a,
        upload_b,
        example_b,
        description,
        instruction,
        progress=gr.Progress(),  # noqa: B008 - how Gradio hands a progress bar to an event
    ):
        try:
            progress(0.0, desc="Reading the inputs")
            pose_a = choose_pose(upload_a, example_a) if "pose_a" in TASK_INPUTS.get(task, ()) else None
            pose_b = choose_pose(upload_b, example_b) if "pose_b" in TASK_INPUTS.get(task, ()) else None
            inputs = task_inputs(task, image_a, image_b, pose_a, pose_b, description, instruction)
            if not app.loaded:
                progress(0.1, desc="Loading the model")
                app.load()
            progress(0.3, desc=f"{TASK_TITLES[task]}: generating")
            answer = app.answer(task, inputs)
            if len(answer.poses):
                progress(0.7, desc="Building the 3D body")
            files = app.write_answer(answer, folders.new())
        except (ValueError, TypeError, FileNotFoundError) as error:
            raise user_error(error) from None
        text = answer.text or "(a pose only)"
        poses = f"{len(answer.poses)} pose" + ("" if len(answer.poses) == 1 else "s")
        status = f"{TASK_TITLES[task]}: {poses}, {answer.seconds:.1f} s of generation."
        downloads = [str(path) for path in files.downloads] or None
        view = str(files.view) if files.view else None
        render = str(files.render) if files.render else None
        return text, status, view, render, downloads

    examples = list(BUNDLED_POSES)
    def _pose_input(letter: str, example: str, visible: bool):
        """One pose slot: an upload, a bundled example and a preview; returns the column and the three parts."""
        with gr.Column(elem_id=f"pose_{letter}", visible=visible) as column:
            upload = gr.File(
                label=f"Pose {letter.upper()} (.npz, .npy, .json)",
                file_types=list(POSE_FILE_SUFFIXES),
                type="filepath",
                elem_id=f"pose_{letter}_file",
                height=120,
            )
            choice = gr.Dropdown(examples, value=example, label="or a bundled pose", elem_id=f"pose_{letter}_example")
            picture = gr.Image(
                render_pose(bundled_pose(example), size=(260, 260)),
                label=f"Pose {letter.upper()}",
                interactive=False,
                height=200,
                elem_id=f"pose_{letter}_preview",
            )
        return column, upload, choice, picture

    with gr.Blocks(title="UniPose", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown(
            "# UniPose\nOne model that describes, compares, generates, estimates and edits 3D human poses. "
            f"Model: `{app.model_name}`. Pick a task, give it what it reads, and press **Run**."
        )
        with gr.Row():
            with gr.Column(scale=1):
                task = gr.Radio(
                    [(TASK_TITLES[name], name) for name in tasks],
                    value="pose_to_text",
                    label="Task",
                    elem_id="task",
                )
                needs = gr.Markdown(shown_inputs("pose_to_text")[-1], elem_id="needs")
                with gr.Row():
                    image_a, image_b = (
                        gr.Image(
                            str(ASSETS / f"image_{letter}.jpg"),
                            type="pil",
                            label=f"Image {letter.upper()}",
                            height=220,
                            elem_id=f"image_{letter}",
                            visible=False,
                        )
                        for letter in "ab"
                    )
                with gr.Row():
                    pose_a_column, upload_a, example_a, preview_a = _pose_input("a", examples[0], visible=True)
                    pose_b_column, upload_b, example_b, preview_b = _pose_input("b", examples[1], visible=False)
                bundled_texts = json.loads((ASSETS / "inputs.json").read_text())
                description, instruction = (
                    gr.Textbox(
                        bundled_texts[key],
                        label=label,
                        lines=lines,
                        max_length=MAX_TEXT_CHARACTERS,
                        elem_id=elem_id,
                        visible=False,
                    )
                    for key, label, lines, elem_id in (
                        ("caption", "Description (Text-to-Pose)", 3, "description"),
                        ("instruction", "Instruction (Pose Editing)", 2, "instruction"),
                    )
                )
                run = gr.Button("Run", variant="primary", elem_id="run")
            with gr.Column(scale=1):
                answer_text = gr.Textbox(label="Answer", lines=4, interactive=False, elem_id="answer")
                status = gr.Markdown(elem_id="status")
                view = gr.Model3D(
                    label="3D body (drag to turn, scroll to zoom)",
                    height=380,
                    elem_id="view",
                    clear_color=VIEW_BACKGROUND,
                    camera_position=VIEW_CAMERA,
                )
                render = gr.Image(
                    label="Rendered", type="filepath", interactive=False, height=320, elem_id="render"
                )
                downloads = gr.File(
                    label="Download the pose (.npz) and its body (.obj)",
                    file_count="multiple",
                    interactive=False,
                    elem_id="downloads",
                )

        input_groups = [image_a, image_b, pose_a_column, pose_b_column, description, instruction]
        task.change(shown_inputs, task, input_groups + [needs], queue=False)
        for upload, example, picture in ((upload_a, example_a, preview_a), (upload_b, example_b, preview_b)):
            upload.change(preview, [upload, example], picture)
            example.change(preview, [upload, example], picture)
        run.click(
            respond,
            [task, image_a, image_b, upload_a, example_a, upload_b, example_b, description, instruction],
            [answer_text, status, view, render, downloads],
            concurrency_limit=1,
        )
    return page


def launch(page, host: str | None = None, port: int | None = None, **kwargs):
    """Serves `page` (from [`build_app`]) with the app's upload limit; returns at once only if given
    `prevent_thread_lock=True`. `host` and `port` default to Gradio's: 127.0.0.1:7860, or
    `$GRADIO_SERVER_NAME` and `$GRADIO_SERVER_PORT`."""
    # `show_error=False`: an unexpected failure shows "Error" alone; the project's errors (`gr.Error`) carry
    # their message.
    return page.queue(default_concurrency_limit=1).launch(
        server_name=host, server_port=port, max_file_size=MAX_UPLOAD_SIZE, show_error=False, **kwargs
    )


# ---------------------------------------------------------------------------------------------------------
# Command line: `unipose app`
# ---------------------------------------------------------------------------------------------------------


__all__ = [
    "AnswerFiles",
    "AppModel",
    "TaskAnswer",
    "build_app",
    "bundled_pose",
    "choose_pose",
    "launch",
    "read_glb",
    "read_pose_file",
    "save_glb",
    "task_inputs",
]
