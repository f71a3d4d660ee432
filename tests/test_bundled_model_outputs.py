"""The bundled model's answers to the demo's seven prompts are pinned: new token ids and pose codes.

A change anywhere between the prompt and the answer (processor, chat template, attention, decoding, the weights)
that changes what UniPose-Tiny says shows up here. When a change is intended, re-pin and commit the file:

    python tests/test_bundled_model_outputs.py
"""

import json
import sys
from pathlib import Path

import pytest
import torch

from unipose.demo import DEFAULT_MODEL, load_inputs, task_records
from unipose.evaluation.runner import evaluation_prompt


PINS = Path(__file__).parent / "fixtures" / "bundled_model_outputs.json"
MAX_NEW_TOKENS = 48


def load_model_and_prompts(**load_kwargs):
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(DEFAULT_MODEL, trust_remote_code=True, **load_kwargs).eval()
    processor = AutoProcessor.from_pretrained(DEFAULT_MODEL, trust_remote_code=True)
    prompts = {
        task: evaluation_prompt(task.replace("_", "-"), record, text, processor.tokenizer)
        for task, (record, text) in task_records(load_inputs()).items()
    }
    return model, processor, prompts


@torch.no_grad()
def answers(batched: bool, loaded: tuple | None = None) -> dict:
    """Task -> the new token ids and the pose codes of its greedy answer, one prompt at a time or all at once
    (`loaded`: the model, processor and prompts of `load_model_and_prompts`, loaded here when not given)."""
    model, processor, prompts = loaded or load_model_and_prompts()
    groups = [list(prompts)] if batched else [[task] for task in prompts]
    results = {}
    for tasks in groups:
        batch = processor(
            text=[prompts[task].text for task in tasks],
            images=[prompts[task].images for task in tasks],
            poses=[prompts[task].poses for task in tasks],
        )
        output = model.generate(**batch, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, return_dict_in_generate=True)
        prompt_length = batch["input_ids"].shape[1]
        for row, task in enumerate(tasks):
            # In a batch, shorter answers are padded on the right up to the longest.
            new_ids = output.sequences[row, prompt_length:].tolist()
            results[task] = {"new_ids": new_ids, "pose_codes": output.pose_codes[row].tolist()}
    return results


@pytest.fixture(scope="module")
def pins() -> dict:
    if not PINS.is_file():
        pytest.fail(f"{PINS} is missing: run `python {Path(__file__).relative_to(Path.cwd())}` to pin the answers.")
    return json.loads(PINS.read_text())


def assert_pinned(got: dict, pins: dict, batched: bool) -> None:
    assert set(got) == set(pins["answers"])
    for task, pinned in pins["answers"].items():
        assert got[task]["pose_codes"] == pinned["pose_codes"], task
        length = len(pinned["new_ids"])
        assert got[task]["new_ids"][:length] == pinned["new_ids"], task
        if not batched:
            assert len(got[task]["new_ids"]) == length, task


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "as-one-batch"])
def test_the_bundled_model_gives_its_pinned_answers(pins, batched):
    assert_pinned(answers(batched), pins, batched)


def test_the_pins_cover_text_and_pose_answers(pins):
    kinds = {task: bool(answer["pose_codes"]) for task, answer in pins["answers"].items()}
    assert kinds == {
        "pose_to_text": False, "image_to_text": False, "pose_diff": False, "image_diff": False,
        "text_to_pose": True, "pose_estimation": True, "pose_editing": True,
    }


if __name__ == "__main__":
    single, batched = answers(batched=False), answers(batched=True)
    for task, answer in single.items():
        same = batched[task]["new_ids"][: len(answer["new_ids"])] == answer["new_ids"]
        if not same or batched[task]["pose_codes"] != answer["pose_codes"]:
            sys.exit(f"The batched answer of {task} differs from its answer alone: fix that before pinning.")
    PINS.write_text(json.dumps({"max_new_tokens": MAX_NEW_TOKENS, "answers": single}, indent=1) + "\n")
    print(f"Pinned {len(single)} answers in {PINS}.")
