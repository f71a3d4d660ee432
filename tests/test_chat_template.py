"""The chat template and the processor's chat route: pose items carry their poses, one BOS by every route, a
pose answer forced with `continue_final_message`, the training templates rendered token for token as training
writes them, and labels for training from the processor."""

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from unipose.demo import DEFAULT_MODEL
from unipose.processing_poses import IGNORE_INDEX
from unipose.task_formats import INSTRUCTION_TEMPLATES, SIMPLE_TEMPLATES, TASK_SPECS, TASKS
from unipose.testing import tiny_model_and_processor
from unipose.tokenization import UNIPOSE_CHAT_TEMPLATE
from unipose.training.collator import UniPoseDataCollator
from unipose.training.tasks import build_example

BUNDLED_TEMPLATE = Path(DEFAULT_MODEL) / "chat_template.jinja"
CAPTION = "The person is kneeling on the right knee while the left foot rests flat on the floor."
# Training samples of every task: the simple template and a few phrasings of stage 3 (first, middle, last).
SAMPLED_TEMPLATES = [
    (task, template)
    for task in TASKS
    for template in dict.fromkeys(
        (
            SIMPLE_TEMPLATES[task],
            INSTRUCTION_TEMPLATES[task][0],
            INSTRUCTION_TEMPLATES[task][len(INSTRUCTION_TEMPLATES[task]) // 2],
            INSTRUCTION_TEMPLATES[task][-1],
        )
    )
]


@pytest.fixture(scope="module")
def model_and_processor():
    return tiny_model_and_processor(seed=4)


@pytest.fixture(scope="module")
def collator(model_and_processor):
    model, processor = model_and_processor
    return UniPoseDataCollator.from_model(model, processor)


def pose(seed: int) -> torch.Tensor:
    return torch.randn(22, 3, generator=torch.Generator().manual_seed(seed)) * 0.4


def image(seed: int) -> PIL.Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    return PIL.Image.fromarray(pixels)


def record(task: str) -> dict:
    """A record of the kind `task` reads, with every column any task reads."""
    return {
        "id": f"{task}-0",
        "source": "test",
        "pose": pose(1).numpy(),
        "pose_a": pose(2).numpy(),
        "pose_b": pose(3).numpy(),
        "image": image(4),
        "image_a": image(5),
        "image_b": image(6),
    }


def training_example(task: str, template: str) -> dict:
    spec = TASK_SPECS[task]
    text = CAPTION if spec.needs_text else None
    return build_example(record(task), task, template, text)


def with_media(content: list[dict], images: list, poses: list) -> list[dict]:
    """The user content of a training example with each image and pose item carrying its value."""
    images, poses = iter(images), iter(poses)
    filled = []
    for item in content:
        item = {key: value for key, value in item.items() if value is not None}
        if item["type"] == "image":
            item["image"] = next(images)
        elif item["type"] == "pose":
            item["pose"] = next(poses)
        filled.append(item)
    return filled


def bos_count(ids, processor) -> int:
    return int((torch.as_tensor(ids) == processor.tokenizer.bos_token_id).sum())


# ---------------------------------------------------------------------------------------------------
# The shipped templates
# ---------------------------------------------------------------------------------------------------

CONVERSATIONS = [
    [{"role": "user", "content": "Describe the pose."}],
    [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "What changed from"}, {"type": "pose"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "The arms."}]},
        {"role": "user", "content": [{"type": "text", "text": "Now produce it:"}, {"type": "pose_query"}]},
    ],
    [{"role": "user", "content": "Show a person kneeling."}, {"role": "assistant", "content": "<p>"}],
    [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Describe this pose:"}, {"type": "pose", "pose": [0.0]}],
        },
        {"role": "assistant", "content": "The person kneels."},
    ],
]


@pytest.mark.parametrize("conversation", CONVERSATIONS)
@pytest.mark.parametrize(
    "options", [{}, {"add_generation_prompt": True}, {"continue_final_message": True}], ids=str
)
def test_the_package_template_renders_as_the_bundled_models(processor, conversation, options):
    if not BUNDLED_TEMPLATE.exists():
        pytest.skip("no bundled model in this checkout")
    if options.get("continue_final_message") and conversation[-1]["role"] != "assistant":
        pytest.skip("only a final assistant message can be continued")
    bundled = BUNDLED_TEMPLATE.read_text()
    expected = processor.apply_chat_template(conversation, chat_template=bundled, **options)
    assert processor.chat_template == UNIPOSE_CHAT_TEMPLATE
    assert processor.apply_chat_template(conversation, **options) == expected


def test_every_training_template_renders_alike_with_the_package_and_the_bundled_template(processor):
    if not BUNDLED_TEMPLATE.exists():
        pytest.skip("no bundled model in this checkout")
    bundled = BUNDLED_TEMPLATE.read_text()
    for task in TASKS:
        for template in INSTRUCTION_TEMPLATES[task]:
            example = training_example(task, template)
            for messages in (example["messages"], example["messages"][:1]):
                assert processor.apply_chat_template(messages) == processor.apply_chat_template(
                    messages, chat_template=bundled
                ), template


# ---------------------------------------------------------------------------------------------------
# Pose items, BOS, forcing a pose
# ---------------------------------------------------------------------------------------------------


def test_pose_items_carry_their_poses_to_the_processor(processor):
    rotations, codes = pose(7), torch.arange(80) % processor.pose_codebook_size
    chat = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Pose A:"},
                {"type": "pose", "pose": rotations},
                {"type": "text", "text": "Pose B:"},
                {"type": "pose", "pose": codes},
                {"type": "image", "image": image(8)},
                {"type": "text", "text": "How should pose A change to become pose B?"},
            ],
        }
    ]
    out = processor.apply_chat_template(chat, tokenize=True, return_dict=True)
    direct = processor(text=processor.apply_chat_template(chat), poses=[rotations, codes], images=[image(8)])
    assert set(out) == set(direct) and all(torch.equal(out[key], direct[key]) for key in out)
    assert out["pose_values"].shape == (1, 22, 6)
    assert processor.extract_pose_codes(out["input_ids"])[0].tolist() == [codes.tolist()]


def test_pose_items_of_a_batch_of_chats_go_to_their_own_chat(processor):
    first = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Describe this pose:"}, {"type": "pose", "pose": pose(1)}],
        }
    ]
    second = [{"role": "user", "content": "Describe the pose."}]
    third = [
        {"role": "user", "content": [{"type": "pose", "pose": pose(2)}, {"type": "pose", "pose": pose(3)}]}
    ]
    out = processor.apply_chat_template([first, second, third], tokenize=True, return_dict=True)
    alone = [
        processor.apply_chat_template(chat, tokenize=True, return_dict=True)
        for chat in (first, second, third)
    ]
    assert torch.equal(out["pose_values"], torch.cat([alone[0]["pose_values"], alone[2]["pose_values"]]))
    for row, single in enumerate(alone):
        kept = out["attention_mask"][row].bool()
        assert torch.equal(out["input_ids"][row][kept], single["input_ids"][0])


def test_poses_given_both_in_the_chat_and_as_processor_kwargs_are_refused(processor):
    chat = [{"role": "user", "content": [{"type": "pose", "pose": pose(1)}]}]
    with pytest.raises(ValueError, match="given twice"):
        processor.apply_chat_template(
            chat, tokenize=True, return_dict=True, processor_kwargs={"poses": [pose(1)]}
        )


@pytest.mark.parametrize("continue_final_message", [False, True])
def test_one_bos_whether_the_processor_or_apply_chat_template_tokenizes(processor, continue_final_message):
    chat = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Describe this pose:"}, {"type": "pose", "pose": pose(1)}],
        }
    ]
    if continue_final_message:
        chat = [
            {"role": "user", "content": "Show a person kneeling."},
            {"role": "assistant", "content": "<p>"},
        ]
    options = {"continue_final_message": continue_final_message}
    text = processor.apply_chat_template(chat, **options)
    assert text.startswith(processor.tokenizer.bos_token)
    poses = [pose(1)] if not continue_final_message else None
    routes = {
        "tokenize=True": processor.apply_chat_template(chat, tokenize=True, return_dict=True, **options),
        "tokenize=False, then the processor": processor(text=text, poses=poses),
        "the processor on the text without the BOS": processor(
            text=text.removeprefix(processor.tokenizer.bos_token), poses=poses
        ),
    }
    for route, out in routes.items():
        ids = out["input_ids"][0]
        assert ids[0] == processor.tokenizer.bos_token_id and bos_count(ids, processor) == 1, route
        assert torch.equal(ids, routes["tokenize=True"]["input_ids"][0]), route


def test_a_batch_of_texts_with_and_without_the_bos_gets_one_bos_each(processor):
    text = processor.apply_chat_template([{"role": "user", "content": "Describe the pose."}])
    plain = text.removeprefix(processor.tokenizer.bos_token)
    out = processor(text=[text, plain, "[INST] A longer request about the pose of a person. [/INST]"])
    for row in range(3):
        real = out["input_ids"][row][out["attention_mask"][row].bool()]
        assert real[0] == processor.tokenizer.bos_token_id and bos_count(real, processor) == 1
    assert torch.equal(out["input_ids"][0], out["input_ids"][1])
    assert out["input_ids"][0, 0] == processor.tokenizer.pad_token_id  # padded on the left as ever
    # Asked for explicitly, special tokens are added (or not) whatever the text.
    forced = processor(text=text, add_special_tokens=True)["input_ids"][0]
    assert bos_count(forced, processor) == 2


@pytest.mark.parametrize("content", ["<p>", [{"type": "text", "text": "<p>"}]], ids=["string", "items"])
def test_continue_final_message_with_an_open_pose_makes_the_answer_a_pose(model_and_processor, content):
    model, processor = model_and_processor
    chat = [
        {"role": "user", "content": "Generate the pose described as follows: a person kneeling."},
        {"role": "assistant", "content": content},
    ]
    text = processor.apply_chat_template(chat, continue_final_message=True)
    assert text.endswith("[/INST] <p>")
    inputs = processor.apply_chat_template(chat, tokenize=True, return_dict=True, continue_final_message=True)
    assert inputs["input_ids"][0, -1] == processor.pose_start_token_id
    out = model.generate(
        **inputs,
        max_new_tokens=model.config.num_pose_tokens + 1,
        do_sample=False,
        return_dict_in_generate=True,
    )
    new = out.sequences[0, inputs["input_ids"].shape[1] :]
    # The pose is written at once: the codes, then `</p>`.
    assert processor.extract_pose_codes(out.sequences)[0].shape == (1, 80)
    assert new[80] == processor.pose_end_token_id
    assert out.poses[0].shape == (1, 22, 3)


# ---------------------------------------------------------------------------------------------------
# The chat route gives the training route's token ids
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task, template", SAMPLED_TEMPLATES, ids=lambda value: str(value)[:40])
def test_chat_route_gives_the_training_prompt_ids(processor, collator, task, template):
    example = training_example(task, template)
    batch = collator([example])
    ids = batch["input_ids"][0]
    pose_task = TASK_SPECS[task].target is not None
    # Where the answer starts: its first labelled token for text, the pose queries for a pose (after `<p>`).
    if pose_task:
        prompt_length = int((ids == processor.pose_query_token_id).nonzero()[0])
    else:
        prompt_length = int((batch["labels"][0] != IGNORE_INDEX).nonzero()[0])
    expected = ids[:prompt_length]

    images = list(example["images"])
    poses = [torch.as_tensor(value) for value in example["poses"]]
    user = {"role": "user", "content": with_media(example["messages"][0]["content"], images, poses)}
    chat = [user, {"role": "assistant", "content": "<p>"}] if pose_task else [user]
    options = {"continue_final_message": True} if pose_task else {"add_generation_prompt": True}
    routes = {
        "tokenize=True": processor.apply_chat_template(chat, tokenize=True, return_dict=True, **options),
        "tokenize=False": processor(
            text=processor.apply_chat_template(chat, **options), images=images or None, poses=poses or None
        ),
    }
    for route, out in routes.items():
        assert torch.equal(out["input_ids"][0], expected), (route, processor.decode(out["input_ids"][0]))
        for key in ("pose_values", "pixel_values", "pose_pixel_values"):
            assert (key in out) == (key in batch), (route, key)
            if key in batch:
                torch.testing.assert_close(out[key], batch[key], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------
# Labels for training
# ---------------------------------------------------------------------------------------------------


def _codes_of(batch, config) -> torch.Tensor:
    """The target codes the collator wrote at the query positions of its one example."""
    is_query = batch["input_ids"][0] == config.pose_query_token_id
    return batch["labels"][0][is_query].view(-1, config.num_pose_tokens) - config.pose_code_token_offset


@pytest.mark.parametrize("task", ["text_to_pose", "pose_estimation", "pose_editing"])
def test_processor_labels_make_the_models_loss_the_collators_pose_loss(model_and_processor, collator, task):
    model, processor = model_and_processor
    example = training_example(task, SIMPLE_TEMPLATES[task])
    batch = collator([example])
    text = processor.apply_chat_template(example["messages"])
    inputs = processor(
        text=text,
        images=list(example["images"]) or None,
        poses=[np.asarray(value) for value in example["poses"]] or None,
        target_poses=list(_codes_of(batch, model.config)),
    )
    assert torch.equal(inputs["input_ids"], batch["input_ids"])
    is_query = inputs["input_ids"] == processor.pose_query_token_id
    assert torch.equal(inputs["labels"][is_query], batch["labels"][is_query])
    assert bool((inputs["labels"][~is_query] == IGNORE_INDEX).all())

    with torch.no_grad():
        loss = model(**inputs).loss
        # The collator's loss restricted to the pose: its labels at the queries only.
        pose_only = torch.where(is_query, batch["labels"], IGNORE_INDEX)
        expected = model(**{**batch, "labels": pose_only, "shift_labels": None}).loss
    assert loss is not None and torch.isfinite(loss)
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("task", TASKS)
def test_chat_labels_equal_the_collators_and_give_its_loss(model_and_processor, collator, task):
    model, processor = model_and_processor
    example = training_example(task, SIMPLE_TEMPLATES[task])
    batch = collator([example])
    processor_kwargs = {
        "images": list(example["images"]) or None,
        "poses": [np.asarray(p) for p in example["poses"]] or None,
    }
    if example["target_poses"]:
        processor_kwargs["target_poses"] = list(_codes_of(batch, model.config))
    inputs = processor.apply_chat_template(
        example["messages"],
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
        return_tensors="pt",
        processor_kwargs={key: value for key, value in processor_kwargs.items() if value is not None},
    )
    assert torch.equal(inputs["input_ids"], batch["input_ids"])
    assert torch.equal(inputs["labels"], batch["labels"])
    with torch.no_grad():
        loss = model(
            **{key: inputs[key] for key in inputs if key != "assistant_masks"}
        ).loss
        expected = model(**batch).loss
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, expected)


def test_chat_labels_need_the_target_of_every_pose_to_produce(processor):
    chat = [
        {"role": "user", "content": "Show a person kneeling."},
        {"role": "assistant", "content": [{"type": "pose_query"}]},
    ]
    with pytest.raises(ValueError, match="target_poses"):
        processor.apply_chat_template(
            chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )


def test_chat_labels_refuse_an_answer_that_writes_a_pose_as_codes(processor):
    codes = torch.arange(80) % processor.pose_codebook_size
    chat = [
        {"role": "user", "content": "Show a person kneeling."},
        {"role": "assistant", "content": [{"type": "text", "text": "Here:"}, {"type": "pose", "pose": codes}]},
    ]
    kwargs = {"tokenize": True, "return_dict": True}
    with pytest.raises(ValueError, match=r"holds a pose written as its codes.*`\{\"type\": \"pose_query\"\}`"):
        processor.apply_chat_template(chat, return_assistant_tokens_mask=True, **kwargs)
    # Codes in the prompt are an input pose, and an answer without labels may hold them.
    prompt = [{"role": "user", "content": [{"type": "pose", "pose": codes}]}, {"role": "assistant", "content": "ok"}]
    processor.apply_chat_template(prompt, return_assistant_tokens_mask=True, **kwargs)
    assert processor.extract_pose_codes(processor.apply_chat_template(chat, **kwargs)["input_ids"])[0][0].tolist() == (
        codes.tolist()
    )
