"""The usage examples of README.md and of the model card template, read from the files and run against the
bundled model: every prompt gets the kind of answer it asks for (a description, an instruction, a pose).

The bundled model's weights are run with the package's current code (its remote-code files, processor files
and pipeline), as `train/build_unipose_tiny.py`'s `publish` step writes them, so that the examples are
checked against the code they document."""

import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import AutoProcessor, GenerationMixin

from unipose.demo import ASSETS, DEFAULT_MODEL, TASK_TITLES
from unipose.task_formats import TASK_SPECS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
CARD_TEMPLATE = REPO / "unipose" / "templates" / "model_card.md"
PACKAGE = REPO / "unipose"
EXAMPLES = Path(DEFAULT_MODEL) / "evaluation" / "examples"
# A text answer reads as words: "." or a lone token is not a description.
MIN_WORDS = 4

pytestmark = pytest.mark.skipif(
    not (Path(DEFAULT_MODEL) / "model.safetensors").exists(), reason="no bundled model in this checkout"
)


def section(markdown: str, heading: str) -> str:
    """The text under `heading` (a `## ` heading line), up to the next heading of the same level."""
    start = markdown.index(f"\n{heading}\n") + len(heading) + 2
    end = markdown.find("\n## ", start)
    return markdown[start : end if end >= 0 else None]


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


def table_calls(markdown: str) -> list[tuple[str, str]]:
    """The `| task | `call` |` rows of a Markdown table."""
    return re.findall(r"^\| ([^|`]+?) \| `(.+)` \|$", markdown, flags=re.MULTILINE)


def words(text: str) -> int:
    return len(re.findall(r"[A-Za-z]{2,}", text))


@pytest.fixture(scope="module")
def bundled_model(tmp_path_factory) -> Path:
    """The bundled model's weights, tokenizer and config with the package's code (remote-code files, processor
    files, the pipeline and its registration)."""
    path = tmp_path_factory.mktemp("unipose-tiny")
    source = Path(DEFAULT_MODEL)
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(source / name, path / name)
    for remote_code in source.glob("*.py"):
        shutil.copy(PACKAGE / remote_code.name, path / remote_code.name)
    # The package's processor, built from the bundled files, writes its own files and the pipeline.
    AutoProcessor.from_pretrained(source).save_pretrained(path)
    return path


def inputs_of(kind: str) -> dict:
    """Real inputs for the `...` of the examples: the demo's (a test record of the synthetic corpus), or the
    rendered images of the bundled model's evaluation examples with the demo poses swapped."""
    poses = np.load(ASSETS / "poses.npz")
    pose_a, pose_b = torch.from_numpy(poses["pose_a"]).float(), torch.from_numpy(poses["pose_b"]).float()
    if kind == "demo inputs":
        images = [PIL.Image.open(ASSETS / name).convert("RGB") for name in ("image_a.jpg", "image_b.jpg")]
        return {"pose_a": pose_a, "pose_b": pose_b, "image": images[0], "image_b": images[1]}
    images = [
        PIL.Image.open(EXAMPLES / f"image-diff-0-image-{side}.png").convert("RGB") for side in ("a", "b")
    ]
    return {"pose_a": pose_b, "pose_b": pose_a, "image": images[0], "image_b": images[1]}


@contextmanager
def recorded_generations():
    """Every call of `generate` (direct, or from a pipeline) with its prompts and its output."""
    calls = []
    original = GenerationMixin.generate

    def generate(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        calls.append((self.config, kwargs["input_ids"].cpu(), output))
        return output

    with mock.patch.object(GenerationMixin, "generate", generate):
        yield calls


def check_answers(calls, processor) -> list[str]:
    """Checks each prompt of each recorded call: a prompt that opens a pose (ends with `<p>`) gets exactly one
    pose; any other prompt asks for text and gets words, without a pose. Returns the kinds seen."""
    assert calls, "the example generated nothing"
    kinds = []
    for config, input_ids, output in calls:
        sequences = output.sequences if hasattr(output, "sequences") else output
        for prompt, sequence in zip(input_ids, sequences.cpu(), strict=True):
            new = sequence[len(prompt) :]
            num_poses = int((new == config.pose_end_token_id).sum())
            text = processor.decode(new, pose_spans="remove")
            asked = re.sub(r"(<image>)+", "<image>", processor.decode(prompt, skip_special_tokens=False))
            if prompt[-1] == config.pose_start_token_id:
                assert num_poses == 1, f"{asked!r} asks for a pose and got {num_poses} pose(s): {text!r}"
                kinds.append("pose")
            else:
                assert num_poses == 0 and words(text) >= MIN_WORDS, (
                    f"{asked!r} asks for text and got {text!r}"
                )
                kinds.append("text")
    return kinds


def run_blocks(blocks: list[str], path: Path, placeholder: str, namespace: dict) -> dict:
    for block in blocks:
        code = compile(block.replace(placeholder, str(path)), "<documented example>", "exec")
        exec(code, namespace)  # noqa: S102 -- running the documentation is the point of this test
    return namespace


# ---------------------------------------------------------------------------------------------------
# README.md
# ---------------------------------------------------------------------------------------------------


def test_readme_examples_give_the_kind_of_answer_they_ask_for(bundled_model):
    blocks = [
        block
        for block in python_blocks(section(README.read_text(), "## Using a model"))
        if "path/to/unipose" in block
    ]
    assert len(blocks) >= 2  # the processor and the chat / pipeline examples
    processor = AutoProcessor.from_pretrained(bundled_model)
    with recorded_generations() as calls:
        run_blocks(blocks, bundled_model, "path/to/unipose", {})
    kinds = check_answers(calls, processor)
    assert "text" in kinds and "pose" in kinds


# ---------------------------------------------------------------------------------------------------
# The model card
# ---------------------------------------------------------------------------------------------------

EXPECTED_KIND = {
    title: "text" if TASK_SPECS[task].target is None else "pose" for task, title in TASK_TITLES.items()
}


@pytest.mark.parametrize("inputs", ["demo inputs", "evaluation examples"])
def test_model_card_examples_give_the_kind_of_answer_they_ask_for(bundled_model, inputs):
    usage = section(CARD_TEMPLATE.read_text(), "## Usage")
    setup, *others = python_blocks(usage)
    calls = table_calls(usage)
    assert sorted(task for task, _ in calls) == sorted(EXPECTED_KIND), calls

    namespace = run_blocks([setup], bundled_model, "{{ repo_id }}", {})
    # The example leaves the user's own poses and images as `...`: real ones replace them.
    missing = {name for name, value in namespace.items() if value is Ellipsis}
    given = inputs_of(inputs)
    assert missing == set(given), missing
    namespace.update(given)
    processor = AutoProcessor.from_pretrained(bundled_model)
    for task, call in calls:
        with recorded_generations() as generations:
            text, poses = eval(call, namespace)
        check_answers(generations, processor)
        if EXPECTED_KIND[task] == "pose":
            assert poses.shape == (1, 22, 3) and torch.isfinite(poses).all(), (task, call)
        else:
            assert poses.shape == (0, 22, 3) and words(text) >= MIN_WORDS, (task, call, text)

    # The pipeline example, on the same inputs.
    with recorded_generations() as generations:
        run_blocks(others, bundled_model, "{{ repo_id }}", namespace)
    assert check_answers(generations, processor) == ["text"]
    assert namespace["result"]["poses"].shape == (0, 22, 3)
