"""Invariants of the UniPose processor and vocabulary: placeholder expansion, inputs, labels, errors, chat
format, decoding, saving and the remote-code closure."""

import ast
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import jinja2
import numpy as np
import PIL.Image
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AddedToken, AutoProcessor, PreTrainedTokenizerFast
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

import unipose.processing_unipose as processing_module
from unipose.configuration_unipose import UniPoseConfig
from unipose.processing_poses import IGNORE_INDEX, pose_code_token
from unipose.processing_unipose import UniPoseProcessor
from unipose.rotations import axis_angle_to_matrix, to_rotation_6d
from unipose.testing import near_rotation_matrices
from unipose.tokenization import UNIPOSE_CHAT_TEMPLATE, add_unipose_tokens, build_tiny_tokenizer

CODEBOOK_SIZE = 16
NUM_POSE_TOKENS = 10
# CLIP at 28 px with 14 px patches: a 2x2 grid.
CLIP_SIZE, IMAGE_SEQ_LENGTH = 28, 4
POSE_SIZE = (32, 24)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer(codebook_size=CODEBOOK_SIZE)


def make_processor(tokenizer, **kwargs):
    image_processor, pose_image_processor = UniPoseProcessor.default_image_processors(CLIP_SIZE, POSE_SIZE)
    kwargs = {"image_seq_length": IMAGE_SEQ_LENGTH, "num_pose_tokens": NUM_POSE_TOKENS, **kwargs}
    return UniPoseProcessor(image_processor, pose_image_processor, tokenizer, **kwargs)


@pytest.fixture(scope="module")
def processor(tokenizer):
    return make_processor(tokenizer)


def image(height=40, width=30, seed=0):
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def axis_angle(seed=0, batch=()):
    generator = torch.Generator().manual_seed(seed)
    return 0.5 * torch.randn(*batch, 22, 3, generator=generator)


def codes(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, CODEBOOK_SIZE, (NUM_POSE_TOKENS,), generator=generator)


def word_level_tokenizer(extra_special=()):
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "hello": 3, "world": 4}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    if extra_special:
        tokenizer.add_tokens(
            [AddedToken(token, special=True, normalized=False) for token in extra_special], True
        )
    return tokenizer


def unpadded(row_ids, row_mask):
    return [token for token, keep in zip(row_ids.tolist(), row_mask.tolist(), strict=True) if keep]


# ---------------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------------


def test_add_unipose_tokens_appends_in_order_with_contiguous_codes():
    tokenizer = word_level_tokenizer()
    base = len(tokenizer)
    ids = add_unipose_tokens(tokenizer, codebook_size=8)
    assert ids == {
        "image_token_id": base,
        "pose_token_id": base + 1,
        "pose_query_token_id": base + 2,
        "pose_start_token_id": base + 3,
        "pose_end_token_id": base + 4,
        "pose_code_token_offset": base + 5,
    }
    assert len(tokenizer) == base + 5 + 8
    assert [tokenizer.convert_tokens_to_ids(pose_code_token(code)) for code in range(8)] == list(
        range(base + 5, base + 13)
    )
    assert all(tokenizer.added_tokens_decoder[token_id].special for token_id in range(base, base + 13))
    # The returned names are the config's fields.
    config = UniPoseConfig(**ids)
    assert all(getattr(config, name) == value for name, value in ids.items())


def test_add_unipose_tokens_is_idempotent():
    tokenizer = word_level_tokenizer()
    first = add_unipose_tokens(tokenizer, codebook_size=8)
    size = len(tokenizer)
    assert add_unipose_tokens(tokenizer, codebook_size=8) == first
    assert len(tokenizer) == size


def test_add_unipose_tokens_reuses_an_existing_image_token():
    tokenizer = word_level_tokenizer(extra_special=["<image>"])
    image_id, base = tokenizer.convert_tokens_to_ids("<image>"), len(tokenizer)
    ids = add_unipose_tokens(tokenizer, codebook_size=4)
    assert ids["image_token_id"] == image_id
    assert ids["pose_token_id"] == base
    assert ids["pose_code_token_offset"] == base + 4
    assert len(tokenizer) == base + 4 + 4


def test_add_unipose_tokens_refuses_non_contiguous_codes_without_changing_the_tokenizer():
    tokenizer = word_level_tokenizer(extra_special=["<pose_0>", "<pose_1>", "<other>"])
    size = len(tokenizer)
    with pytest.raises(ValueError, match="non-contiguous"):
        add_unipose_tokens(tokenizer, codebook_size=4)
    assert len(tokenizer) == size


def test_add_unipose_tokens_refuses_a_smaller_codebook():
    tokenizer = word_level_tokenizer()
    add_unipose_tokens(tokenizer, codebook_size=8)
    with pytest.raises(ValueError, match="<pose_7>"):
        add_unipose_tokens(tokenizer, codebook_size=4)


@pytest.mark.parametrize("codebook_size", [0, -3, True, 2.5])
def test_add_unipose_tokens_rejects_bad_codebook_size(codebook_size):
    with pytest.raises(ValueError, match="codebook_size"):
        add_unipose_tokens(word_level_tokenizer(), codebook_size)


def test_tiny_tokenizer(tokenizer):
    vocab = tokenizer.get_vocab()
    base_size = len(tokenizer) - 5 - CODEBOOK_SIZE
    assert 300 <= base_size <= 1000
    assert all(vocab[token] < base_size for token in ("<unk>", "<s>", "</s>", "<pad>"))
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token, tokenizer.unk_token) == (
        "<s>",
        "</s>",
        "<pad>",
        "<unk>",
    )
    assert tokenizer.padding_side == "left"
    assert tokenizer.model_max_length == 2048
    assert tokenizer.chat_template == UNIPOSE_CHAT_TEMPLATE
    ids = tokenizer("The person raises the left arm.")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "The person raises the left arm."
    # Deterministic training.
    assert build_tiny_tokenizer(codebook_size=CODEBOOK_SIZE).get_vocab() == vocab


def test_tiny_tokenizer_learns_the_extra_corpus():
    word = " zyzzyva"
    plain = build_tiny_tokenizer(codebook_size=4)
    extended = build_tiny_tokenizer(codebook_size=4, extra_corpus=[f"a{word}{word}."] * 20)
    assert len(plain(word, add_special_tokens=False)["input_ids"]) > 1
    assert len(extended(word, add_special_tokens=False)["input_ids"]) == 1


def test_processor_needs_the_unipose_tokens():
    with pytest.raises(ValueError, match="add_unipose_tokens"):
        make_processor(word_level_tokenizer())


# ---------------------------------------------------------------------------------------------------
# Chat template
# ---------------------------------------------------------------------------------------------------

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {
        "role": "user",
        "content": [{"type": "image"}, {"type": "text", "text": "What changed from"}, {"type": "pose"}],
    },
    {"role": "assistant", "content": [{"type": "text", "text": "The arms."}]},
    {"role": "user", "content": "Now produce it: <pose_query>"},
]


def test_chat_template_renders_mistral_turns_with_images_and_poses(processor):
    rendered = processor.apply_chat_template(CONVERSATION)
    assert rendered == (
        "<s>[INST] Be brief.\n\n<image> What changed from <pose> [/INST] The arms. </s>"
        "[INST] Now produce it: <pose_query> [/INST]"
    )
    query = [{"role": "user", "content": [{"type": "text", "text": "Show"}, {"type": "pose_query"}]}]
    assert processor.apply_chat_template(query) == "<s>[INST] Show <pose_query> [/INST]"


def test_chat_template_generation_prompt_is_a_prefix_of_the_full_conversation(processor):
    prompt = processor.apply_chat_template(CONVERSATION[:2], add_generation_prompt=True)
    full = processor.apply_chat_template(CONVERSATION[:3])
    assert prompt.endswith("[/INST]")
    assert full.startswith(prompt) and full != prompt


def test_chat_template_string_and_text_item_content_agree(processor):
    as_string = [{"role": "user", "content": "Describe the pose."}]
    as_items = [{"role": "user", "content": [{"type": "text", "text": "Describe the pose."}]}]
    assert processor.apply_chat_template(as_string) == processor.apply_chat_template(as_items)


@pytest.mark.parametrize(
    "conversation, message",
    [
        ([{"role": "assistant", "content": "Hi"}], "alternate"),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "alternate"),
        ([{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}], "alternate"),
        ([{"role": "user", "content": [{"type": "video"}]}], "Unsupported content type"),
    ],
)
def test_chat_template_rejects_bad_conversations(processor, conversation, message):
    with pytest.raises(jinja2.exceptions.TemplateError, match=message):
        processor.apply_chat_template(conversation)


def test_apply_chat_template_tokenizes_with_images_and_poses(processor):
    images, poses = [image(seed=1)], [axis_angle(1), codes(2)]
    conversation = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "From"}, {"type": "pose"}]},
        {"role": "assistant", "content": "To <pose>"},
    ]
    out = processor.apply_chat_template(
        conversation, tokenize=True, return_dict=True, processor_kwargs={"images": images, "poses": poses}
    )
    direct = processor(
        text=processor.apply_chat_template(conversation), images=images, poses=poses, add_special_tokens=False
    )
    assert (
        set(out)
        == set(direct)
        == {"input_ids", "attention_mask", "pixel_values", "pose_pixel_values", "pose_values"}
    )
    assert all(torch.equal(out[key], direct[key]) for key in out)
    assert (
        out["input_ids"][0, 0] == processor.tokenizer.bos_token_id
        and out["input_ids"][0, 1] != out["input_ids"][0, 0]
    )


def test_assistant_mask_covers_the_answer_after_placeholder_expansion(processor):
    conversation = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the pose."}]},
        {"role": "assistant", "content": "Both arms are raised."},
    ]
    out = processor.apply_chat_template(
        conversation,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
        return_tensors="pt",
        processor_kwargs={"images": [image()]},
    )
    mask = out["assistant_masks"][0].bool()
    answer = processor.tokenizer.decode(out["input_ids"][0][mask])
    assert answer == " Both arms are raised. </s>"


# ---------------------------------------------------------------------------------------------------
# Placeholders, inputs and labels
# ---------------------------------------------------------------------------------------------------


def test_placeholders_expand_to_spans(processor):
    text = "A <image> B <pose> C <pose_query> D <image>"
    out = processor(
        text=text, images=[image(seed=0), image(seed=1)], poses=[axis_angle()], target_poses=[codes(2)]
    )
    ids = out["input_ids"][0]

    def count(token_id):
        return int((ids == token_id).sum())

    assert count(processor.image_token_id) == 2 * IMAGE_SEQ_LENGTH
    assert count(processor.pose_token_id) == NUM_POSE_TOKENS
    assert count(processor.pose_query_token_id) == NUM_POSE_TOKENS
    assert count(processor.pose_start_token_id) == count(processor.pose_end_token_id) == 2
    for token_id in (processor.pose_token_id, processor.pose_query_token_id):
        positions = (ids == token_id).nonzero().flatten()
        first, last = int(positions[0]), int(positions[-1])
        assert last - first + 1 == NUM_POSE_TOKENS
        assert (
            ids[first - 1] == processor.pose_start_token_id and ids[last + 1] == processor.pose_end_token_id
        )
    assert out["pixel_values"].shape == (2, 3, CLIP_SIZE, CLIP_SIZE)
    assert out["pose_pixel_values"].shape == (2, 3, *POSE_SIZE)
    assert out["pose_values"].shape == (1, 22, 6) and out["pose_values"].dtype == torch.float32
    assert int((out["labels"] != -100).sum()) == NUM_POSE_TOKENS


def test_batches_are_left_padded_by_default(processor):
    texts = ["Short <pose>", "A much longer prompt about the pose of a person <pose>"]
    poses = [axis_angle(0), axis_angle(1)]
    out = processor(text=texts, poses=poses)
    mask = out["attention_mask"]
    assert mask[0, 0] == 0 and bool(mask[:, -1].all())
    assert bool((out["input_ids"][0][mask[0] == 0] == processor.tokenizer.pad_token_id).all())
    for index, text in enumerate(texts):
        alone = processor(text=text, poses=[poses[index]])["input_ids"][0].tolist()
        assert unpadded(out["input_ids"][index], mask[index]) == alone
    right = processor(text=texts, poses=poses, padding_side="right")
    assert right["attention_mask"][0, -1] == 0 and bool(right["attention_mask"][:, 0].all())


def test_flat_and_nested_inputs_agree(processor):
    texts = ["<image> and <pose> then <pose>", "<image> <image> with <pose> <pose_query>"]
    images = [image(seed=0), image(32, 50, seed=1), image(seed=2)]
    poses = [axis_angle(0), codes(1), axis_angle(2)]
    targets = [codes(3)]
    flat = processor(text=texts, images=images, poses=poses, target_poses=targets)
    nested = processor(
        text=texts,
        images=[images[:1], images[1:]],
        poses=[poses[:2], poses[2:]],
        target_poses=[[], targets],
    )
    stacked = processor(
        text=texts, images=images, poses=[poses[0], poses[1], poses[2][None]], target_poses=codes(3)
    )
    assert set(flat) == set(nested) == set(stacked)
    for key in flat:
        assert torch.equal(flat[key], nested[key]) and torch.equal(flat[key], stacked[key]), key


def test_pose_formats_give_the_same_pose_values(processor):
    pose = axis_angle(4)
    matrices = axis_angle_to_matrix(pose)
    formats = [
        pose,
        pose.reshape(66),
        pose.double(),
        pose.numpy(),
        pose.tolist(),
        matrices,
        matrices[:, :2].reshape(22, 6).numpy(),
    ]
    expected = to_rotation_6d(pose)[0]
    for given in formats:
        out = processor(text="Pose <pose>", poses=[given])
        torch.testing.assert_close(out["pose_values"][0], expected, atol=1e-5, rtol=0)


def test_real_rotation_matrices_are_accepted_and_their_raw_rows_are_the_pose_values(processor):
    """Float32 matrices off by ~4e-3 (as SMPL fits and the release's demo poses are) enter `pose_values` as
    their raw first two rows, as the published model encodes them; 6D input enters unchanged."""
    matrices = near_rotation_matrices(axis_angle(7, batch=(2,)))
    raw_rows = matrices[:, :, :2, :].reshape(2, 22, 6)
    for given in (matrices[0], matrices[0].numpy(), raw_rows[0], raw_rows[0].numpy()):
        out = processor(text="Pose <pose>", poses=[given])
        assert out["pose_values"].dtype == torch.float32
        assert torch.equal(out["pose_values"][0], raw_rows[0])  # bit for bit
    out = processor(text=["A <pose>", "B <pose>"], poses=[matrices[0], matrices[1].numpy()])
    assert torch.equal(out["pose_values"], raw_rows)


def test_a_clear_non_rotation_is_refused_with_its_deviation(processor):
    matrices = near_rotation_matrices(axis_angle(8))
    matrices[3] = matrices[3] @ torch.diag(torch.tensor([1.0, 1.0, 1.1]))  # one joint stretched by 10%
    deviation = (matrices[3] @ matrices[3].T - torch.eye(3)).abs().amax().item()
    message = rf"`poses\[0\]` .*joint 3, max \|R R\^T - I\| = {deviation:.3g} > atol"
    with pytest.raises(ValueError, match=message):
        processor(text="Pose <pose>", poses=[matrices])


def test_integer_codes_are_written_as_code_tokens(processor):
    code = codes(5)
    out = processor(text=["Pose <pose>", "Rotation <pose>"], poses=[code.numpy(), axis_angle(6)])
    ids = out["input_ids"][0]
    start = int((ids == processor.pose_start_token_id).nonzero()[0])
    assert (
        ids[start + 1 : start + 1 + NUM_POSE_TOKENS].tolist()
        == (code + processor.pose_code_token_offset).tolist()
    )
    assert ids[start + 1 + NUM_POSE_TOKENS] == processor.pose_end_token_id
    assert not bool((ids == processor.pose_token_id).any())
    # Only the rotation pose needs the model's pose tokenizer.
    torch.testing.assert_close(out["pose_values"], to_rotation_6d(axis_angle(6)))
    only_codes = processor(text="Pose <pose>", poses=[code.tolist()])
    assert "pose_values" not in only_codes
    assert only_codes["input_ids"][0].tolist() == unpadded(ids, out["attention_mask"][0])


def test_labels_hold_the_target_codes_at_the_query_positions(processor):
    texts = ["Make it <pose_query>", "Edit <pose> into <pose_query> and <pose_query>"]
    targets = [[codes(7)], [codes(8), codes(9)]]
    out = processor(text=texts, poses=[axis_angle(0)], target_poses=targets)
    labels, ids = out["labels"], out["input_ids"]
    assert labels.shape == ids.shape and labels.dtype == torch.long
    is_query = ids == processor.pose_query_token_id
    assert bool((labels[~is_query] == IGNORE_INDEX).all())
    for sample, sample_targets in enumerate(targets):
        expected = torch.cat(sample_targets) + processor.pose_code_token_offset
        assert torch.equal(labels[sample][is_query[sample]], expected)


def test_image_formats_give_the_same_pixels(processor, tmp_path):
    picture = image(36, 28, seed=3)
    array = np.array(picture)
    path = tmp_path / "picture.png"
    picture.save(path)
    formats = [
        array,
        torch.from_numpy(array).permute(2, 0, 1),
        torch.from_numpy(array).permute(2, 0, 1).float() / 255,
        str(path),
        path,
        picture.convert("RGBA"),
    ]
    expected = processor(text="<image>", images=[picture])
    for given in formats:
        out = processor(text="<image>", images=[given])
        for key in ("pixel_values", "pose_pixel_values"):
            torch.testing.assert_close(out[key], expected[key], atol=1e-6, rtol=0)
    batch = processor(text="<image> <image>", images=np.stack([array, array]))
    assert torch.equal(batch["pixel_values"][1], expected["pixel_values"][0])
    grey = processor(text="<image>", images=[picture.convert("L")])
    assert torch.equal(
        grey["pixel_values"],
        processor(text="<image>", images=[np.asarray(picture.convert("L"))])["pixel_values"],
    )


def _reference_pose_pixels(picture, height, width):
    """UniPose's pose ViT preprocessing written out: short side to `height` (bicubic), centre square, central
    `width` columns, ImageNet normalisation."""
    short, long = sorted(picture.size)
    new_long = int(height * long / short)
    size = (height, new_long) if picture.width <= picture.height else (new_long, height)
    resized = np.asarray(picture.resize(size, PIL.Image.BICUBIC), dtype=np.float64)
    top, left = (resized.shape[0] - height) // 2, (resized.shape[1] - height) // 2
    square = resized[top : top + height, left : left + height]
    columns = square[:, (height - width) // 2 : (height - width) // 2 + width]
    normalised = (columns / 255 - np.array(IMAGENET_DEFAULT_MEAN)) / np.array(IMAGENET_DEFAULT_STD)
    return torch.from_numpy(normalised.transpose(2, 0, 1)).float()


@pytest.mark.parametrize(
    "pose_size, picture_size", [((32, 24), (50, 37)), ((32, 24), (37, 61)), ((256, 192), (300, 211))]
)
def test_pose_image_processor_matches_the_reference_crop(tokenizer, pose_size, picture_size):
    _, pose_image_processor = UniPoseProcessor.default_image_processors(CLIP_SIZE, pose_size)
    picture = image(*picture_size, seed=4)
    pixels = pose_image_processor(picture, return_tensors="pt")["pixel_values"][0]
    assert pixels.shape == (3, *pose_size)
    torch.testing.assert_close(pixels, _reference_pose_pixels(picture, *pose_size), atol=1e-5, rtol=0)


def test_default_image_processors():
    clip, pose = UniPoseProcessor.default_image_processors()
    assert (clip.size["shortest_edge"], clip.crop_size["height"], clip.crop_size["width"]) == (336, 336, 336)
    assert (pose.size["shortest_edge"], pose.crop_size["height"], pose.crop_size["width"]) == (256, 256, 192)
    assert tuple(pose.image_mean) == tuple(IMAGENET_DEFAULT_MEAN)
    for pose_size in [(192, 256), (256, 191), (0, 0)]:
        with pytest.raises(ValueError, match="pose_size"):
            UniPoseProcessor.default_image_processors(pose_size=pose_size)


def test_return_tensors_and_images_only(processor):
    as_numpy = processor(
        text=["x <pose>", "longer text <pose>"], poses=[codes(0), codes(1)], return_tensors="np"
    )
    assert isinstance(as_numpy["input_ids"], np.ndarray)
    as_lists = processor(text="x <pose>", poses=[codes(0)], return_tensors=None)
    assert isinstance(as_lists["input_ids"], list)
    pixels = processor(images=[image(seed=0), image(seed=1)])
    assert set(pixels) == {"pixel_values", "pose_pixel_values"} and pixels["pixel_values"].shape[0] == 2
    # Images alone, nested per sample as with text: every image, in order.
    nested = processor(images=[[image(seed=0)], [image(seed=1), image(seed=2)]])
    flat = processor(images=[image(seed=0), image(seed=1), image(seed=2)])
    assert torch.equal(nested["pixel_values"], flat["pixel_values"])
    assert torch.equal(nested["pose_pixel_values"], flat["pose_pixel_values"])


def test_model_input_names(processor):
    assert processor.model_input_names == [
        "input_ids",
        "attention_mask",
        "pixel_values",
        "pose_pixel_values",
        "pose_values",
    ]


# ---------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "inputs, error, message",
    [
        (
            {"text": "<image> <image>", "images": [image()]},
            ValueError,
            r"2 `<image>` placeholder.*gives 1 image",
        ),
        (
            {"text": ["<image>", "<image>"], "images": [[image()], []]},
            ValueError,
            r"\[1, 0\] image\(s\) per sample",
        ),
        ({"text": ["<image>", "x"], "images": [[image()]]}, ValueError, "1 sample"),
        ({"text": "no placeholder", "images": [image()]}, ValueError, "gives 1 image"),
        ({"text": "<image>"}, ValueError, "no `images`"),
        (
            {"text": "<image>", "images": [PIL.Image.new("RGB", (0, 5))]},
            ValueError,
            r"`images\[0\]` is an empty image",
        ),
        ({"text": "<image>", "images": [np.zeros((0, 4, 3), np.uint8)]}, ValueError, "empty"),
        ({"text": "<image>", "images": [np.zeros((4, 4, 2), np.uint8)]}, ValueError, "channels"),
        ({"text": "<image>", "images": [torch.zeros(5, 5, 3)]}, ValueError, "channels-first"),
        ({"text": "<image>", "images": [np.full((4, 4, 3), 2.0)]}, ValueError, r"\[0, 1\]"),
        ({"text": "<image>", "images": [np.zeros((4, 4, 3), np.int32)]}, TypeError, "int32"),
        ({"text": "<image>", "images": [{"image": 1}]}, TypeError, r"`images\[0\]` is a dict"),
        ({"text": "<image>", "images": ["/no/such/picture.png"]}, FileNotFoundError, "/no/such/picture.png"),
        (
            {"text": "<pose> <pose>", "poses": [axis_angle()]},
            ValueError,
            r"2 `<pose>` placeholder.*gives 1 pose",
        ),
        (
            {"text": ["<pose>", "x"], "poses": [[], [axis_angle()]]},
            ValueError,
            r"\[0, 1\] pose\(s\) per sample",
        ),
        ({"text": "<pose>"}, ValueError, "no `poses`"),
        ({"text": "<pose>", "poses": [torch.zeros(21, 3)]}, ValueError, r"`poses\[0\]` has shape \(21, 3\)"),
        (
            {"text": "<pose> <pose>", "poses": [axis_angle(), torch.full((22, 3), math.nan)]},
            ValueError,
            r"poses\[1\]",
        ),
        ({"text": "<pose>", "poses": [2 * torch.eye(3).expand(22, 3, 3)]}, ValueError, "not a rotation"),
        (
            {"text": "<pose>", "poses": [torch.full((NUM_POSE_TOKENS,), CODEBOOK_SIZE)]},
            ValueError,
            "pose code 16",
        ),
        (
            {"text": "<pose>", "poses": [-torch.ones(NUM_POSE_TOKENS, dtype=torch.long)]},
            ValueError,
            "pose code -1",
        ),
        (
            {"text": "<pose>", "poses": [torch.zeros(NUM_POSE_TOKENS + 1, dtype=torch.long)]},
            ValueError,
            r"\(11,\)",
        ),
        ({"text": "<pose>", "poses": [[0] * 66]}, ValueError, "give a pose as floats"),
        ({"text": "<pose>", "poses": [torch.zeros(22, 3, dtype=torch.bool)]}, TypeError, "torch.bool"),
        ({"text": "<pose>", "poses": ["pose"]}, TypeError, r"`poses\[0\]` is a str"),
        ({"text": "<pose_query>", "target_poses": [axis_angle()]}, TypeError, "integer pose codes"),
        ({"text": "<pose_query>", "target_poses": [codes(), codes(1)]}, ValueError, "gives 2 pose"),
        ({"text": "no query", "target_poses": [codes()]}, ValueError, "0 `<pose_query>`"),
        ({"text": 3}, TypeError, "`text` must be a string"),
        ({"text": ["a", 3]}, TypeError, "`text` must be a string"),
        ({"text": []}, TypeError, "non-empty"),
        ({"poses": [axis_angle()]}, ValueError, "need `text`"),
        ({"text": "x", "videos": [np.zeros((2, 4, 4, 3))]}, ValueError, "videos"),
        ({"text": "<p><pose_1></p>"}, ValueError, "malformed pose span"),
        ({"text": "stray <pose_3> code"}, ValueError, "outside"),
    ],
)
def test_bad_inputs_raise(processor, inputs, error, message):
    with pytest.raises(error, match=message):
        processor(**inputs)


def test_sequences_over_the_length_limit_raise(processor, tokenizer):
    text = "A long prompt about the pose of a person: <pose>"
    length = processor(text=text, poses=[axis_angle()])["input_ids"].shape[1]
    with pytest.raises(ValueError, match=f"`max_length` = {length - 1}"):
        processor(text=text, poses=[axis_angle()], max_length=length - 1)
    short_tokenizer = build_tiny_tokenizer(codebook_size=CODEBOOK_SIZE, model_max_length=length - 1)
    with pytest.raises(ValueError, match="model_max_length"):
        make_processor(short_tokenizer)(text=text, poses=[axis_angle()])


def test_truncation_only_removes_text(processor):
    text = "<pose> then a long description of the pose that goes on and on"
    full = processor(text=text, poses=[codes()])["input_ids"][0]
    span_end = int((full == processor.pose_end_token_id).nonzero()[0])
    cut = processor(text=text, poses=[codes()], truncation=True, max_length=span_end + 2)["input_ids"][0]
    assert cut.tolist() == full[: span_end + 2].tolist()
    with pytest.raises(ValueError, match="would cut an image or a pose span"):
        processor(text=text, poses=[codes()], truncation=True, max_length=span_end - 3)


# ---------------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------------


def test_batch_decode_pose_span_modes(processor):
    code = codes(11)
    ids = processor(text=["Like this: <pose>.", "Hello <pose_query>"], poses=[code], target_poses=[code])[
        "input_ids"
    ]
    assert processor.batch_decode(ids) == ["Like this: <pose>.", "Hello <pose>"]
    assert processor.batch_decode(ids, pose_spans="remove") == ["Like this: .", "Hello "]
    kept = processor.batch_decode(ids, pose_spans="keep")
    written = "<p>" + "".join(pose_code_token(value) for value in code.tolist()) + "</p>"
    assert kept == ["Like this: " + written + ".", "Hello <p>" + "<pose_query>" * NUM_POSE_TOKENS + "</p>"]
    with_specials = processor.batch_decode(ids, skip_special_tokens=False)
    assert with_specials[1].startswith("<pad>") and with_specials[1].endswith("<s>Hello <pose>")
    # A span cut short (generation stopped inside it) still becomes one marker.
    assert processor.decode(ids[0, :-4]) == "Like this: <pose>"
    with pytest.raises(ValueError, match="pose_spans"):
        processor.decode(ids[0], pose_spans="drop")


def test_extract_pose_codes(processor):
    first, second = codes(12), codes(13)
    ids = processor(text=["<pose> and <pose>", "none <pose>"], poses=[first, second, axis_angle()])[
        "input_ids"
    ]
    extracted = processor.extract_pose_codes(ids)
    assert torch.equal(extracted[0], torch.stack([first, second]))
    assert extracted[1].shape == (0, NUM_POSE_TOKENS)


def test_the_new_tokens_of_each_row_decode_as_transformers_trims_them(processor):
    # `[out[len(prompt):] for prompt, out in zip(inputs["input_ids"], generated)]`, transformers' recipe for the new
    # tokens: a list of 1D tensors, and after a prompt that ended with `<p>`, the codes and `</p>` of its span.
    code = codes(14)
    prompt = processor(text=["Write it. <p>", "Describe <pose> in words"], poses=[codes(15)], return_tensors="pt")
    written = torch.cat([code + processor.pose_code_token_offset, torch.tensor([processor.pose_end_token_id])])
    words = processor.tokenizer(" kneeling", add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    new, text = [torch.cat([written, words]), words], processor.tokenizer.decode(words)
    assert processor.batch_decode(new) == ["<pose> kneeling", text]
    assert processor.batch_decode([row.numpy() for row in new], pose_spans="remove") == [" kneeling", text]
    assert processor.post_process_image_text_to_text(new) == ["<pose> kneeling", text]
    extracted = processor.extract_pose_codes(new)
    assert torch.equal(extracted[0], code[None]) and extracted[1].shape == (0, NUM_POSE_TOKENS)
    # Whole sequences read as before: the span opens inside them, with its `<p>`.
    whole = [torch.cat([prompt["input_ids"][0], row]) for row in (written,)]
    assert processor.batch_decode(whole) == ["Write it. <pose>"]
    assert torch.equal(processor.extract_pose_codes(whole)[0], code[None])
    # Codes cut short, without their `</p>`, are not a span, and a row that is not a sequence is refused.
    assert processor.extract_pose_codes([written[:-2]])[0].shape == (0, NUM_POSE_TOKENS)
    with pytest.raises(TypeError, match="`sequences` must be a 2D tensor"):
        processor.batch_decode([torch.tensor(5)])


# ---------------------------------------------------------------------------------------------------
# Saving, loading and the remote-code closure
# ---------------------------------------------------------------------------------------------------


def _batch(processor):
    return processor(
        text=["<image> <pose> <pose_query>", "describe <pose>"],
        images=[image(seed=5)],
        poses=[axis_angle(5), codes(5)],
        target_poses=[codes(6)],
    )


def test_save_and_load_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    loaded = UniPoseProcessor.from_pretrained(tmp_path)
    for name in (
        "image_seq_length",
        "num_pose_tokens",
        "num_joints",
        "pose_codebook_size",
        "pose_code_token_offset",
    ):
        assert getattr(loaded, name) == getattr(processor, name)
    assert loaded.chat_template == processor.chat_template == UNIPOSE_CHAT_TEMPLATE
    assert loaded.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    for name in ("image_processor", "pose_image_processor"):
        assert getattr(loaded, name).to_dict() == getattr(processor, name).to_dict()
    expected, got = _batch(processor), _batch(loaded)
    assert set(expected) == set(got) and all(torch.equal(expected[key], got[key]) for key in expected)


def test_auto_processor_registration(processor, tmp_path):
    AutoProcessor.register(UniPoseConfig, UniPoseProcessor, exist_ok=True)
    processor.save_pretrained(tmp_path)
    assert isinstance(AutoProcessor.from_pretrained(tmp_path), UniPoseProcessor)


def _closure_files(entry: Path) -> set[Path]:
    """The file and everything it reaches through relative imports."""
    seen, todo = set(), [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                todo.append(path.parent / f"{node.module}.py")
    return seen


def test_the_remote_code_files_import_only_torch_transformers_numpy_pil_and_each_other():
    allowed = {"torch", "numpy", "PIL", "transformers"} | set(sys.stdlib_module_names)
    package = Path(processing_module.__file__).parent
    # What a saved checkpoint carries: the processor's, the model's and the pipeline's files and their closure.
    entries = ("processing_unipose.py", "modeling_unipose.py", "pipeline_unipose.py")
    files = set().union(*(_closure_files(package / entry) for entry in entries))
    assert {path.name for path in files} >= {
        "processing_unipose.py", "rotations.py", "configuration_unipose.py", "configuration_pose_vqvae.py",
        "modeling_pose_vqvae.py", "pipeline_unipose.py",
    }
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            elif isinstance(node, ast.ImportFrom):
                # Relative imports must be single-level imports of a sibling file: only those are copied.
                assert node.level == 1 and node.module and (path.parent / f"{node.module}.py").is_file(), path
                continue
            else:
                continue
            for module in modules:
                assert module.split(".")[0] in allowed, f"{path.name} imports {module}"


def test_remote_code_processor_loads_without_the_package(tokenizer, tmp_path, monkeypatch):
    # Saving with an Auto class writes `auto_map` into the sub-processors too: use a processor of its own.
    processor = make_processor(tokenizer)
    monkeypatch.setattr(UniPoseProcessor, "_auto_class", None)
    UniPoseProcessor.register_for_auto_class()
    processor.save_pretrained(tmp_path)
    assert {"processing_unipose.py", "rotations.py", "skeleton.py"} <= {
        path.name for path in tmp_path.iterdir()
    }
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["unipose"] = None  # the saved files must be enough
        import torch
        from transformers import AutoProcessor
        processor = AutoProcessor.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
        out = processor(text="Describe <pose>", poses=[torch.zeros(22, 3)])
        print(type(processor).__name__, tuple(out["pose_values"].shape), int(out["input_ids"].shape[1]))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    expected_length = processor(text="Describe <pose>", poses=[torch.zeros(22, 3)])["input_ids"].shape[1]
    assert result.stdout.strip().splitlines()[-1] == f"UniPoseProcessor (1, 22, 6) {expected_length}"
