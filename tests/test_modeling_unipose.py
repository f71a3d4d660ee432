"""Invariants of the UniPose model: pose spans, mixed attention, queries, loss, generation, checkpoints."""

import copy
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from transformers import DynamicCache

from unipose.configuration_unipose import UniPoseConfig
from unipose.modeling_unipose import (
    CACHE_NAME,
    create_pose_attention_mask,
    pose_bidirectional_mask,
    pose_block_ids,
    pose_query_positions,
    pose_shift_labels,
)
from unipose.testing import near_rotation_matrices, tiny_model, tiny_unipose_config

N = 80  # tokens per pose of every config (tiny ones included)


@pytest.fixture(scope="module")
def config():
    return tiny_unipose_config()


@pytest.fixture(scope="module")
def model(config):
    return tiny_model(config, seed=0)


INPUT_POSE_ATTENTION = ("bidirectional", "causal")


@pytest.fixture(scope="module")
def models_by_attention():
    """Tiny models with the same weights, one per `input_pose_attention` setting."""
    return {
        setting: tiny_model(tiny_unipose_config(input_pose_attention=setting), seed=0)
        for setting in INPUT_POSE_ATTENTION
    }


def text(*ids):
    return list(ids)


def target_span(config):
    return [config.pose_start_token_id] + [config.pose_query_token_id] * N + [config.pose_end_token_id]


def code_span(config, codes):
    return [config.pose_start_token_id] + [config.pose_code_token_offset + int(c) for c in codes] + [
        config.pose_end_token_id
    ]


def random_codes(config, seed):
    return torch.randint(0, config.pose_codebook_size, (N,), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------------


def test_default_config_describes_the_paper():
    config = UniPoseConfig()
    assert (config.num_pose_tokens, config.pose_codebook_size, config.num_joints) == (80, 2048, 22)
    assert config.image_seq_length == 576 and config.image_grid_size == 24
    assert config.text_config.model_type == "mistral" and config.text_config.hidden_size == 4096
    assert config.vision_config.hidden_size + config.pose_vision_config.hidden_size == 2304
    assert config.pose_vision_config.num_hidden_layers == 32
    assert config.text_config.sliding_window is None


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"pose_token_id": 10_000_000}, "pose_token_id"),
        ({"pose_end_token_id": 300}, "pose_end_token_id"),  # inside the tiny code range
        ({"pose_code_token_offset": 300}, "vocab_size"),
        ({"pose_vision_feature_padding": -1}, "pose_vision_feature_padding"),
        ({"text_config": {"sliding_window": 16, "model_type": "mistral"}}, "sliding_window"),
        ({"input_pose_attention": "full"}, "input_pose_attention"),
    ],
)
def test_config_cross_field_checks_name_the_field(overrides, field):
    vocab_size = tiny_unipose_config().text_config.vocab_size
    text_config = {"vocab_size": vocab_size, **overrides.pop("text_config", {})}
    with pytest.raises(ValueError, match=field):
        tiny_unipose_config(text_config=text_config, **overrides)


def test_the_ids_of_unipose_tokens_come_from_the_config_fields():
    config = UniPoseConfig()
    assert config.special_token_ids == {
        "image_token_id": 32000, "pose_token_id": 32001, "pose_query_token_id": 32002, "pose_start_token_id": 32003,
        "pose_end_token_id": 32004,
    }  # fmt: skip
    assert config.pose_code_token_ids == range(32005, 32005 + 2048)
    assert "special_token_ids" not in config.to_dict()  # derived, never saved
    with pytest.raises(ValueError, match="must be distinct"):
        tiny_unipose_config(pose_query_token_id=tiny_unipose_config().pose_token_id)


def test_input_pose_attention_is_validated_and_defaults_to_bidirectional():
    assert UniPoseConfig().input_pose_attention == "bidirectional"
    assert tiny_unipose_config(input_pose_attention="causal").input_pose_attention == "causal"
    with pytest.raises(ValueError, match=r"`input_pose_attention`.*'bidirectional', 'causal'.*'Causal'"):
        tiny_unipose_config(input_pose_attention="Causal")


def test_input_pose_attention_round_trips_and_old_configs_load_as_bidirectional(tmp_path):
    import json

    tiny_unipose_config(input_pose_attention="causal").save_pretrained(tmp_path / "causal")
    assert json.loads((tmp_path / "causal" / "config.json").read_text())["input_pose_attention"] == "causal"
    assert UniPoseConfig.from_pretrained(tmp_path / "causal").input_pose_attention == "causal"

    # A config saved before the field existed lacks it: it must keep the attention it was trained with.
    tiny_unipose_config().save_pretrained(tmp_path / "old")
    path = tmp_path / "old" / "config.json"
    fields = json.loads(path.read_text())
    del fields["input_pose_attention"]
    path.write_text(json.dumps(fields))
    assert UniPoseConfig.from_pretrained(tmp_path / "old").input_pose_attention == "bidirectional"

    fields["input_pose_attention"] = "sideways"
    path.write_text(json.dumps(fields))
    with pytest.raises(ValueError, match="input_pose_attention"):
        UniPoseConfig.from_pretrained(tmp_path / "old")


# ---------------------------------------------------------------------------------------------------------------------
# Pose spans and the attention mask
# ---------------------------------------------------------------------------------------------------------------------


def test_pose_block_ids_by_hand():
    span = torch.tensor([[0, 1, 1, 0, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0, 1, 0]], dtype=torch.bool)
    expected = torch.tensor([[-1, 0, 0, -1, 1, 1, 1, -1], [0, 0, -1, -1, -1, -1, 1, -1]])
    assert torch.equal(pose_block_ids(span), expected)


def test_query_positions_and_run_length_check(config):
    q = config.pose_query_token_id
    ids = torch.tensor([[5] + [q] * N + [6] + [q] * N])
    positions = pose_query_positions(ids, q, N)
    assert positions[0, 0] == -1 and positions[0, N + 1] == -1
    assert torch.equal(positions[0, 1 : N + 1], torch.arange(N))
    assert torch.equal(positions[0, N + 2 :], torch.arange(N))
    with pytest.raises(ValueError, match="exactly 80"):
        pose_query_positions(torch.tensor([[5] + [q] * (N - 1) + [6]]), q, N)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_attention_mask_against_a_hand_written_matrix(config, attn_implementation):
    # Short spans of 2 code tokens are enough for the mask (the span length is not the mask's business).
    c0 = config.pose_code_token_offset
    p, e = config.pose_start_token_id, config.pose_end_token_id
    ids = torch.tensor([[0, 0, 7, p, c0, c0 + 1, e, 8], [7, p, c0, c0, e, p, c0, e]])
    attention_mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1]])
    text_config = tiny_unipose_config(text_config={"model_type": "llama"}).text_config
    text_config._attn_implementation = attn_implementation
    embeds = torch.zeros(2, 8, 4)
    mask = create_pose_attention_mask(config, text_config, ids, embeds, attention_mask, None, torch.zeros(2, 8).long())
    visible = mask[:, 0] if mask.dtype == torch.bool else mask[:, 0] == 0

    expected = torch.zeros(2, 8, 8, dtype=torch.bool)
    for b in range(2):
        for i in range(8):
            for j in range(8):
                expected[b, i, j] = j <= i and attention_mask[b, j] == 1
    expected[0, 4, 5] = True  # the two codes of row 0 see each other
    expected[1, 2, 3] = True  # first span of row 1
    # Fully padded query rows are not constrained (their outputs are never used).
    visible, expected = visible[:, 2:], expected[:, 2:]
    assert torch.equal(visible[0], expected[0]) and torch.equal(visible[1], expected[1])


@pytest.mark.parametrize("setting", INPUT_POSE_ATTENTION)
def test_attention_mask_blocks_follow_input_pose_attention(setting):
    config = tiny_unipose_config(input_pose_attention=setting)
    c0, q = config.pose_code_token_offset, config.pose_query_token_id
    p, e, x = config.pose_start_token_id, config.pose_end_token_id, config.pose_token_id
    # An input span of codes, one of `<pose>` placeholders and a run of queries (2 tokens each suffice here).
    ids = torch.tensor([[7, p, c0, c0 + 1, e, p, x, x, e, p, q, q, e]])
    bidirectional = pose_bidirectional_mask(ids, config)
    expected = ids == q if setting == "causal" else (ids >= c0) | (ids == x) | (ids == q)
    assert torch.equal(bidirectional, expected)

    text_config = tiny_unipose_config(text_config={"model_type": "llama"}).text_config
    text_config._attn_implementation = "sdpa"
    length = ids.shape[1]
    embeds, positions = torch.zeros(1, length, 4), torch.arange(length)[None]
    mask = create_pose_attention_mask(config, text_config, ids, embeds, torch.ones_like(ids), None, positions)
    visible = torch.ones(length, length, dtype=torch.bool).tril()
    visible[10, 11] = True  # the queries see each other whatever the setting
    if setting == "bidirectional":
        visible[2, 3] = visible[6, 7] = True
    assert torch.equal(mask[0, 0], visible)


def _ids(config, *parts):
    return torch.tensor([sum(parts, [])])


@pytest.mark.parametrize("setting", INPUT_POSE_ATTENTION)
@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_prefill_pose_step_and_text_equal_one_forward(attn_implementation, setting):
    config = tiny_unipose_config(input_pose_attention=setting)
    model = tiny_model(config, seed=1, attn_implementation=attn_implementation)
    prompt = text(3, 4, 5) + code_span(config, random_codes(config, 0)) + text(6, 7)
    full = torch.tensor([prompt + target_span(config) + text(9, 10, 11)])
    with torch.no_grad():
        reference = model(input_ids=full).logits
        cache = DynamicCache(config=config.text_config)
        n = len(prompt)
        first = model(input_ids=full[:, :n], past_key_values=cache, use_cache=True).logits
        pose = model(input_ids=full[:, n : n + 1 + N], past_key_values=cache, use_cache=True).logits
        rest = model(input_ids=full[:, n + 1 + N :], past_key_values=cache, use_cache=True).logits
    stepped = torch.cat([first, pose, rest], dim=1)
    torch.testing.assert_close(stepped, reference, atol=1e-5, rtol=1e-5)


def test_cache_is_taken_under_either_name_and_returned_under_the_installed_ones(config, model):
    # transformers 5.24 renamed `past_key_values` to `cache`; UniPose accepts both and returns the cache where
    # the installed transformers' outputs keep it.
    ids = torch.tensor([text(3, 4, 5)])
    with torch.no_grad():
        for name in ("past_key_values", "cache"):
            cache = DynamicCache(config=config.text_config)
            outputs = model(input_ids=ids, use_cache=True, **{name: cache})
            assert cache.get_seq_length() == 3 and getattr(outputs, CACHE_NAME) is cache
        with pytest.raises(ValueError, match="`past_key_values` or as `cache`, not both"):
            model(input_ids=ids, past_key_values=cache, cache=cache)


def test_causal_input_poses_can_be_fed_in_pieces():
    """With causal input spans nothing in a span looks ahead, so a span split between two calls (prefill, then
    the rest) gives the outputs of one forward."""
    config = tiny_unipose_config(input_pose_attention="causal")
    model = tiny_model(config, seed=1)
    full = torch.tensor([text(3, 4) + code_span(config, random_codes(config, 4)) + text(6, 7)])
    split = 2 + 1 + N // 2  # inside the span
    with torch.no_grad():
        reference = model(input_ids=full).logits
        cache = DynamicCache(config=config.text_config)
        first = model(input_ids=full[:, :split], past_key_values=cache, use_cache=True).logits
        rest = model(input_ids=full[:, split:], past_key_values=cache, use_cache=True).logits
    torch.testing.assert_close(torch.cat([first, rest], dim=1), reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("setting", INPUT_POSE_ATTENTION)
def test_input_pose_span_attention_follows_the_config(models_by_attention, setting):
    """Changing one code in the middle of an input span: with causal input spans the outputs of every earlier
    position stay bit-identical; with bidirectional ones the earlier positions of the span see the change."""
    model = models_by_attention[setting]
    config = model.config
    prompt = text(3, 4, 5)
    start = len(prompt) + 1  # first position of the span
    changed_index = N // 2
    codes = random_codes(config, 5)
    other = codes.clone()
    other[changed_index] = (codes[changed_index] + 1) % config.pose_codebook_size

    with torch.no_grad():
        base, changed = (
            model(input_ids=torch.tensor([prompt + code_span(config, span) + text(6)])).logits[0]
            for span in (codes, other)
        )
    position = start + changed_index
    torch.testing.assert_close(base[:start], changed[:start], atol=0, rtol=0)  # text before never sees it
    assert not torch.allclose(base[position], changed[position])  # the changed token itself
    assert not torch.allclose(base[-1], changed[-1])  # text after the span
    earlier = [not torch.equal(base[i], changed[i]) for i in range(start, position)]
    if setting == "causal":
        assert not any(earlier)
    else:
        assert all(earlier)


@pytest.mark.parametrize("setting", INPUT_POSE_ATTENTION)
def test_queries_see_each_other_and_text_before_does_not_see_them(models_by_attention, setting):
    model = models_by_attention[setting]
    config = model.config
    prompt = text(3, 4, 5, 6)
    ids = torch.tensor([prompt + target_span(config) + text(9)])
    with torch.no_grad():
        base = model(input_ids=ids).logits
        original = model.model.pose_queries.data[-1].clone()
        model.model.pose_queries.data[-1] += 1.0  # change what the last query feeds in
        try:
            changed = model(input_ids=ids).logits
        finally:
            model.model.pose_queries.data[-1] = original  # bit for bit: the module's models are shared
    first_query = len(prompt) + 1
    assert not torch.allclose(base[0, first_query], changed[0, first_query])
    torch.testing.assert_close(base[0, : len(prompt) + 1], changed[0, : len(prompt) + 1], atol=0, rtol=0)


def test_left_and_right_padding_give_the_same_outputs(config, model):
    a = text(3, 4) + target_span(config) + text(5)
    b = text(6, 7, 8, 9) + code_span(config, random_codes(config, 1)) + text(5, 6, 7)
    length = max(len(a), len(b))
    pad = 0

    def batch(side):
        ids, mask = [], []
        for seq in (a, b):
            padding = [pad] * (length - len(seq))
            ids.append(padding + seq if side == "left" else seq + padding)
            ones, zeros = [1] * len(seq), [0] * len(padding)
            mask.append(zeros + ones if side == "left" else ones + zeros)
        return torch.tensor(ids), torch.tensor(mask)

    with torch.no_grad():
        alone = [model(input_ids=torch.tensor([seq])).logits[0] for seq in (a, b)]
        for side in ("left", "right"):
            ids, mask = batch(side)
            logits = model(input_ids=ids, attention_mask=mask).logits
            for row, seq in enumerate((a, b)):
                real = mask[row].bool()
                torch.testing.assert_close(logits[row][real], alone[row], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# Inputs: poses and images
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", INPUT_POSE_ATTENTION)
def test_pose_values_equal_their_codes_written_as_tokens(models_by_attention, setting):
    # `<pose>` placeholders become codes before the mask is built, so they attend as input codes do.
    model = models_by_attention[setting]
    config = model.config
    pose = torch.randn(22, 3) * 0.3
    codes = model.pose_tokenizer.encode(pose)[0]
    placeholder = [config.pose_start_token_id] + [config.pose_token_id] * N + [config.pose_end_token_id]
    with torch.no_grad():
        from_values = model(input_ids=torch.tensor([text(3) + placeholder + text(4)]), pose_values=pose[None]).logits
        from_codes = model(input_ids=torch.tensor([text(3) + code_span(config, codes) + text(4)])).logits
    torch.testing.assert_close(from_values, from_codes, atol=0, rtol=0)


def test_encode_poses_reads_real_rotation_matrices_as_given(config, model):
    # Float32 matrices ~4e-3 off (as real data is) reach the pose encoder as their raw first two rows.
    matrices = near_rotation_matrices(torch.randn(2, 22, 3, generator=torch.Generator().manual_seed(2)) * 0.4)
    raw_rows = matrices[..., :2, :].reshape(2, 22, 6)
    tokenizer = model.pose_tokenizer
    with torch.no_grad():
        latents = [tokenizer.encoder(pose[None]) for pose in raw_rows]
        expected = torch.cat([tokenizer.quantizer.quantize(latent) for latent in latents])
    assert torch.equal(model.model.encode_poses(matrices), expected + config.pose_code_token_offset)
    assert torch.equal(model.model.encode_poses(raw_rows), expected + config.pose_code_token_offset)


def test_image_features_grid_and_scatter(config, model):
    n_img = config.image_seq_length
    ids = torch.tensor([text(3) + [config.image_token_id] * n_img + text(4)])
    pixel_values, pose_pixel_values = torch.randn(1, 3, 42, 42), torch.randn(1, 3, 32, 16)
    outputs = model.get_image_features(pixel_values, pose_pixel_values)
    assert outputs.pooler_output.shape == (1, n_img, config.text_config.hidden_size)
    assert outputs.last_hidden_state.shape == (1, n_img + 1, config.vision_config.hidden_size)  # CLIP's, with CLS
    assert outputs.hidden_states is None  # unless asked for, as transformers' models do
    asked = model.get_image_features(pixel_values, pose_pixel_values, output_hidden_states=True, return_dict=False)
    assert torch.equal(asked[1], outputs.pooler_output)
    assert len(asked[2]) == config.vision_config.num_hidden_layers + 1
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=pixel_values, pose_pixel_values=pose_pixel_values)
        other = model(input_ids=ids, pixel_values=pixel_values, pose_pixel_values=pose_pixel_values.flip(-1))
    assert not torch.equal(out.logits[0, -1], other.logits[0, -1])  # the pose ViT's features reach the LM


def test_images_reach_a_model_whose_config_turns_return_dict_off(config, model):
    # `get_image_features` answers a tuple under `config.return_dict=False`; forward asks it for its output.
    ids = torch.tensor([text(3) + [config.image_token_id] * config.image_seq_length + text(4)])
    images = {"pixel_values": torch.randn(1, 3, 42, 42), "pose_pixel_values": torch.randn(1, 3, 32, 16)}
    off = copy.deepcopy(model)
    off.config.return_dict = False
    with torch.no_grad():
        expected = model(input_ids=ids, **images).logits
        got = off(input_ids=ids, **images)
        assert isinstance(got, tuple) and torch.equal(got[0], expected)
        assert isinstance(off.get_image_features(**images), tuple)


def test_pose_vit_features_are_padded_and_resized_as_described(config, model):
    """Reference: pad the h x w map with `padding` zero columns per side, resize bilinearly (corners aligned)."""
    captured = {}
    projector = model.model.multi_modal_projector
    handle = projector.register_forward_hook(lambda m, args, out: captured.setdefault("input", args[0]))
    pixel_values, pose_pixel_values = torch.randn(2, 3, 42, 42), torch.randn(2, 3, 32, 16)
    with torch.no_grad():
        model.get_image_features(pixel_values, pose_pixel_values)
        feature_map = model.model.pose_vision_tower(pose_pixel_values).feature_maps[-1]  # (2, 4*2, C)
    handle.remove()
    width = config.vision_config.hidden_size
    pose_part = captured["input"][..., width:]
    grid = feature_map.reshape(2, 4, 2, -1).permute(0, 3, 1, 2)
    padded = torch.cat([torch.zeros_like(grid[..., :1]), grid, torch.zeros_like(grid[..., :1])], dim=-1)
    resized = F.interpolate(padded, size=(3, 3), mode="bilinear", align_corners=True)
    torch.testing.assert_close(pose_part, resized.flatten(2).transpose(1, 2))


# ---------------------------------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------------------------------


def _training_example(config, seed=0):
    codes = random_codes(config, seed)
    ids = torch.tensor([text(3, 4) + target_span(config) + text(5, 6)])
    labels = torch.full_like(ids, -100)
    start = 3  # first query
    labels[0, start : start + N] = codes + config.pose_code_token_offset
    labels[0, -2:] = ids[0, -2:]  # text after the pose is trained too
    return ids, labels, codes


def test_loss_equals_a_hand_computed_cross_entropy(config, model):
    ids, labels, codes = _training_example(config)
    out = model(input_ids=ids, labels=labels)
    logits = out.logits[0].float()
    offset, K = config.pose_code_token_offset, config.pose_codebook_size
    terms = []
    for i in range(N):  # query i predicts code i, over the codes only, no shift
        terms.append(F.cross_entropy(logits[3 + i, offset : offset + K][None], codes[i][None]))
    # `</p>` (position 3 + N) predicts token 5, and token 5 predicts token 6.
    terms.append(F.cross_entropy(logits[3 + N][None], ids[0, 4 + N][None]))
    terms.append(F.cross_entropy(logits[4 + N][None], ids[0, 5 + N][None]))
    torch.testing.assert_close(out.loss, torch.stack(terms).mean())


def test_labels_and_shift_labels_agree(config, model):
    ids, labels, _ = _training_example(config)
    shift = pose_shift_labels(ids, labels, config)
    assert shift[0, 2] == -100  # `<p>` is not trained to predict a query
    assert torch.equal(shift[0, 3 : 3 + N], labels[0, 3 : 3 + N])
    torch.testing.assert_close(model(input_ids=ids, labels=labels).loss, model(input_ids=ids, shift_labels=shift).loss)


def test_trl_fused_head_loss_equals_the_model_loss_on_text_targets(config):
    trl_utils = pytest.importorskip("trl.trainer.utils")
    model = tiny_model(config, seed=2)
    ids = torch.tensor([text(3, 4) + code_span(config, random_codes(config, 3)) + text(5, 6, 7, 8)])
    labels = ids.clone()
    labels[0, :5] = -100
    shift = pose_shift_labels(ids, labels, config)
    expected = model(input_ids=ids, labels=labels).loss
    trl_utils.add_fused_lm_head(model)
    fused = model(input_ids=ids, labels=labels, shift_labels=shift, fused_lm_head=True).loss
    torch.testing.assert_close(fused, expected)


def test_frozen_tokenizer_is_bit_identical_after_an_optimizer_step(config):
    model = tiny_model(config, seed=3).train()
    before = {k: v.clone() for k, v in model.model.pose_tokenizer.state_dict().items()}
    ids, labels, _ = _training_example(config)
    pose = torch.randn(1, 22, 3) * 0.2
    placeholder = [config.pose_start_token_id] + [config.pose_token_id] * N + [config.pose_end_token_id]
    ids = torch.cat([torch.tensor([placeholder]), ids], dim=1)
    labels = torch.cat([torch.full((1, N + 2), -100), labels], dim=1)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(input_ids=ids, labels=labels, pose_values=pose).loss.backward()
    optimizer.step()
    assert not model.model.pose_tokenizer.training
    for key, value in model.model.pose_tokenizer.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(not p.requires_grad for p in model.model.pose_tokenizer.parameters())
    assert model.model.pose_queries.grad is not None and model.model.pose_queries.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------------------


def _generate(model, prompts, **kwargs):
    length = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (length - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (length - len(p)) + [1] * len(p) for p in prompts])
    kwargs = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": 0, "eos_token_id": 2, **kwargs}
    return model.generate(input_ids=ids, attention_mask=mask, return_dict_in_generate=True, **kwargs)


def _generated(out, row, prompt_length):
    tokens = out.sequences[row, prompt_length:].tolist()
    return tokens


def test_prompt_ending_with_p_decodes_a_whole_pose(config, model):
    out = _generate(model, [text(3, 4, 5, config.pose_start_token_id)])
    codes = out.pose_codes[0]
    assert codes.shape == (1, N) and codes.min() >= 0 and codes.max() < config.pose_codebook_size
    generated = out.sequences[0, 4:]
    assert torch.equal(generated[:N] - config.pose_code_token_offset, codes[0])
    assert generated[N] == config.pose_end_token_id
    assert out.poses[0].shape == (1, 22, 3)
    # The decoded pose is the tokenizer's decoding of the codes.
    torch.testing.assert_close(out.poses[0], model.pose_tokenizer.decode_to_axis_angle(codes))


@pytest.mark.parametrize("setting", INPUT_POSE_ATTENTION)
def test_generated_pose_equals_argmax_of_one_forward_over_the_queries(models_by_attention, setting):
    model = models_by_attention[setting]
    config = model.config
    # The prompt holds an input pose, so that generation's prefill has to honour `input_pose_attention`.
    prompt = text(3) + code_span(config, random_codes(config, 6)) + text(4, 5, config.pose_start_token_id)
    out = _generate(model, [prompt], max_new_tokens=N + 1)
    ids = torch.tensor([prompt + [config.pose_query_token_id] * N])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) :]
    offset = config.pose_code_token_offset
    expected = logits[:, offset : offset + config.pose_codebook_size].argmax(-1)
    assert torch.equal(out.pose_codes[0][0], expected)


def _biased_model(config, seed, towards, bias=30.0):
    """A model whose head strongly prefers the `towards` tokens, to test that the constraints hold."""
    model = tiny_model(config, seed=seed)
    model.lm_head.bias = torch.nn.Parameter(torch.zeros(config.text_config.vocab_size))
    with torch.no_grad():
        model.lm_head.bias[towards] = bias
    return model


def test_text_never_emits_codes_or_queries_even_when_the_head_prefers_them(config):
    code_ids = torch.arange(config.pose_code_token_offset, config.pose_code_token_offset + config.pose_codebook_size)
    forbidden = torch.cat([code_ids, torch.tensor([config.pose_query_token_id, config.pose_token_id])])
    model = _biased_model(config, 4, forbidden)
    prompt = text(3, 4, 5)
    with torch.no_grad():
        greedy = model(input_ids=torch.tensor([prompt])).logits[0, -1].argmax()
    assert int(greedy) in forbidden.tolist()  # unconstrained, the head would write a code
    out = _generate(model, [prompt], max_new_tokens=30)
    tokens = out.sequences[0, 3:]
    # Codes appear only inside a `<p> ... </p>` span of exactly N tokens.
    i = 0
    tokens = tokens.tolist()
    while i < len(tokens):
        if tokens[i] == config.pose_start_token_id:
            span = tokens[i + 1 : i + 1 + N]
            assert len(span) == N and all(t in code_ids.tolist() for t in span)
            assert tokens[i + 1 + N] == config.pose_end_token_id
            i += N + 2
        else:
            assert tokens[i] not in forbidden.tolist() and tokens[i] != config.pose_end_token_id
            i += 1


def test_pose_codes_are_valid_even_when_the_head_prefers_text(config):
    model = _biased_model(config, 5, torch.arange(0, 50))
    out = _generate(model, [text(3, config.pose_start_token_id)], max_new_tokens=N + 1)
    codes = out.pose_codes[0]
    assert codes.shape == (1, N) and codes.min() >= 0 and codes.max() < config.pose_codebook_size


def test_mixed_task_batch_with_left_padding_equals_single_runs(config):
    model = tiny_model(config, seed=6).double()
    # Force a pose in the middle of text for one row: prefer `<p>` after token 9.
    prompts = [
        text(3, 4, 5, config.pose_start_token_id),  # pose right away
        text(6, 7, 8, 9, 10, 11, 12),  # text only (whatever the model writes)
        text(13, config.pose_start_token_id),  # short prompt, pose right away
        text(3, 4) + code_span(config, random_codes(config, 7)) + text(5),  # an input pose, then text
    ]
    batch = _generate(model, prompts, max_new_tokens=100)
    for row, prompt in enumerate(prompts):
        alone = _generate(model, [prompt], max_new_tokens=100)
        width = batch.sequences.shape[1] - alone.sequences.shape[1]
        batch_row = batch.sequences[row, max(len(p) for p in prompts) :]
        alone_row = alone.sequences[0, len(prompt) :]
        assert torch.equal(batch_row[: alone_row.shape[0]], alone_row), row
        assert (batch_row[alone_row.shape[0] :] == 0).all() or width <= 0
        assert torch.equal(batch.pose_codes[row], alone.pose_codes[0])


def test_positions_no_running_row_attends_to_leave_the_cache(config):
    """Once the row that wrote a pose has left the batch, the positions only it attended to (its queries, which
    are masked-out padding for the text row) leave the cache: the text row decodes over the cache it has alone."""
    model = tiny_model(config, seed=6)
    prompts = [text(3, 4, config.pose_start_token_id), text(6, 7, 8, 9, 10)]  # a pose, then 3 text tokens; text

    def cache_lengths(prompts):
        seen = []

        def record(module, args, kwargs):
            cache = kwargs.get("past_key_values")
            seen.append((cache.get_seq_length(), kwargs.get("attention_mask") is None))

        hook = model.model.register_forward_pre_hook(record, with_kwargs=True)
        try:
            out = _generate(model, prompts, max_new_tokens=N + 1 + 3, eos_token_id=None)
        finally:
            hook.remove()
        return out, seen

    batch, in_batch = cache_lengths(prompts)
    alone, by_itself = cache_lengths(prompts[1:])
    assert torch.equal(batch.sequences[1, len(prompts[1]) :], alone.sequences[0, len(prompts[1]) :])
    # Before the pose row leaves, the cache holds its queries; after, exactly what the text row holds alone,
    # with no mask left to apply.
    assert in_batch[3][0] == len(prompts[1]) + N + 2
    assert in_batch[-10:] == by_itself[-10:]


def test_rows_switching_between_pose_and_text_steps_decode_as_alone(config):
    """With `<p>` always preferred, the row whose prompt ends with `<p>` writes a pose while the other writes
    `<p>`, then they swap: every step mixes a pose step and a text step."""
    p = config.pose_start_token_id
    model = _biased_model(config, 8, torch.tensor([p])).double()
    prompts = [text(3, p), text(5, 6, 7)]
    budget = 3 * (N + 2)
    batch = _generate(model, prompts, max_new_tokens=budget)
    assert all(codes.shape[0] >= 2 for codes in batch.pose_codes)
    for row, prompt in enumerate(prompts):
        alone = _generate(model, [prompt], max_new_tokens=budget)
        alone_row = alone.sequences[0, len(prompt) :]
        batch_row = batch.sequences[row, 3:]
        assert torch.equal(batch_row[: alone_row.shape[0]], alone_row), row
        assert torch.equal(batch.pose_codes[row], alone.pose_codes[0])


def test_sampling_gives_valid_codes_and_depends_on_the_seed(config, model):
    prompt = [text(3, 4, config.pose_start_token_id)]
    torch.manual_seed(0)
    a = _generate(model, prompt, do_sample=True, pose_temperature=2.0, pose_top_k=0, max_new_tokens=N + 1)
    torch.manual_seed(1)
    b = _generate(model, prompt, do_sample=True, pose_temperature=2.0, pose_top_k=0, max_new_tokens=N + 1)
    for out in (a, b):
        codes = out.pose_codes[0]
        assert codes.shape == (1, N) and codes.min() >= 0 and codes.max() < config.pose_codebook_size
    assert not torch.equal(a.pose_codes[0], b.pose_codes[0])
    greedy = _generate(model, prompt, do_sample=True, pose_do_sample=False, max_new_tokens=N + 1)
    reference = _generate(model, prompt, max_new_tokens=N + 1)
    assert torch.equal(greedy.pose_codes[0], reference.pose_codes[0])


def test_generate_without_dict_returns_sequences(config, model):
    ids = torch.tensor([text(3, 4, config.pose_start_token_id)])
    sequences = model.generate(input_ids=ids, max_new_tokens=N + 1, do_sample=False, pad_token_id=0)
    assert isinstance(sequences, torch.Tensor) and sequences.shape[1] >= 3 + N + 1


# ---------------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors(config, model):
    placeholder = [config.pose_start_token_id] + [config.pose_token_id] * N + [config.pose_end_token_id]
    with pytest.raises(ValueError, match="pose_values"):
        model(input_ids=torch.tensor([text(3) + placeholder]))
    with pytest.raises(ValueError, match="pose_values"):
        model(input_ids=torch.tensor([text(3) + placeholder]), pose_values=torch.zeros(2, 22, 3))
    with pytest.raises(ValueError, match="pixel_values"):
        model(input_ids=torch.tensor([text(3, config.image_token_id)]))
    with pytest.raises(ValueError, match="pixel_values"):
        model(
            input_ids=torch.tensor([text(3) + [config.image_token_id] * 3]),
            pixel_values=torch.randn(1, 3, 42, 42),
            pose_pixel_values=torch.randn(1, 3, 32, 16),
        )
    with pytest.raises(ValueError, match="input_ids"):
        model(inputs_embeds=torch.zeros(1, 3, config.text_config.hidden_size))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(input_ids=torch.zeros(1, config.text_config.max_position_embeddings + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        model(input_ids=torch.tensor([text(3, 4)]), labels=torch.tensor([[3]]))
    with pytest.raises(ValueError, match="pose span"):
        model.generate(input_ids=torch.tensor([text(3, config.pose_query_token_id)]), pad_token_id=0)
    with pytest.raises(ValueError):
        model(input_ids=torch.tensor([text(3)]), pose_values=torch.full((1, 22, 3), float("nan")))


@pytest.mark.parametrize("rope", [{"rope_type": "linear", "factor": 2.0}, {"rope_type": "dynamic", "factor": 2.0}])
def test_rope_scaling_lifts_the_trained_context_bound(rope):
    """A sequence longer than `max_position_embeddings` is refused for the trained context, and runs once the RoPE
    parameters stretch the positions (the reason to configure them)."""
    config = tiny_unipose_config(text_config={"max_position_embeddings": 16, "rope_scaling": rope})
    long_input = torch.tensor([text(*range(3, 27))])
    assert config.context_length is None
    scaled = tiny_model(config)
    assert scaled(input_ids=long_input).logits.shape[1] == 24
    # generate goes past the trained context too, where without scaling it stops at its end.
    prompt = {"input_ids": long_input[:, :4], "max_new_tokens": 20, "min_new_tokens": 20, "do_sample": False}
    assert scaled.generate(**prompt, pad_token_id=0).shape[1] == 24
    trained = tiny_unipose_config(text_config={"max_position_embeddings": 16})
    assert trained.context_length == 16
    unscaled = tiny_model(trained)
    assert unscaled.generate(**prompt, pad_token_id=0).shape[1] == 17
    with pytest.raises(ValueError, match="max_position_embeddings"):
        unscaled(input_ids=long_input)


def test_attention_implementations_without_the_block_mask_are_refused_for_the_language_model(tmp_path):
    # Whether named for every part or, in a dict, for the language model only; the vision towers may differ.
    from unipose.modeling_unipose import UniPoseForConditionalGeneration
    from unipose.testing import tiny_model

    # A name that is no attention implementation gets transformers' own message, which lists the valid ones.
    with pytest.raises(ValueError, match='Specified `attn_implementation="foo"` is not supported'):
        UniPoseForConditionalGeneration._from_config(tiny_unipose_config(), attn_implementation="foo")
    for requested in ("flash_attention_2", "flex_attention", {"text_config": "flex_attention"}):
        config = tiny_unipose_config()  # a fresh one: a refused attempt may leave its choice in the config
        with pytest.raises(ValueError, match="language model cannot use"):
            UniPoseForConditionalGeneration._from_config(config, attn_implementation=requested)
    model = tiny_model()
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="flex_attention"):
        UniPoseForConditionalGeneration.from_pretrained(tmp_path, attn_implementation={"text_config": "flex_attention"})
    for requested in ({"text_config": "flex_attention"}, {"": "flex_attention"}, "flex_attention"):
        with pytest.raises(ValueError, match="language model cannot use"):
            model.set_attn_implementation(requested)
        assert model.config.text_config._attn_implementation == "sdpa"  # unchanged
    model.set_attn_implementation({"text_config": "eager", "vision_config": "sdpa"})
    assert model.config.text_config._attn_implementation == "eager"


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------------------


def test_remote_code_round_trip_without_the_package(tmp_path):
    from unipose.testing import tiny_model_and_processor

    model, processor = tiny_model_and_processor(seed=11)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    closure = sorted(p.name for p in tmp_path.glob("*.py"))
    assert "modeling_unipose.py" in closure and "configuration_unipose.py" in closure
    prompts = ["Describe this pose: <pose>", "A person raising both arms. <p>"]
    pose = torch.randn(22, 3) * 0.3
    inputs = processor(text=prompts, poses=[pose])
    with torch.no_grad():
        logits = model(**inputs).logits
    out = model.generate(**inputs, max_new_tokens=N + 5, do_sample=False, return_dict_in_generate=True)
    torch.save({"pose": pose, "logits": logits, "sequences": out.sequences}, tmp_path / "expected.pt")

    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["unipose"] = None  # the package must not be needed
        import torch
        from transformers import AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor
        expected = torch.load({str(tmp_path / "expected.pt")!r})
        processor = AutoProcessor.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
        inputs = processor(text={prompts!r}, poses=[expected["pose"]])
        for auto in (AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText):
            model = auto.from_pretrained({str(tmp_path)!r}, trust_remote_code=True).eval()
            with torch.no_grad():
                logits = model(**inputs).logits
            assert torch.equal(logits, expected["logits"]), auto
            out = model.generate(**inputs, max_new_tokens={N + 5}, do_sample=False, return_dict_in_generate=True)
            assert torch.equal(out.sequences, expected["sequences"]), auto
            assert len(out.poses[1]) == 1
        print("ok")
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


def test_checkpoint_with_missing_or_mis_shaped_weights_fails_loudly(config, model, tmp_path):
    from safetensors.torch import load_file, save_file

    from unipose.modeling_unipose import UniPoseForConditionalGeneration

    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights["model.pose_queries"] = torch.zeros(N + 1, config.text_config.hidden_size)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(Exception, match="pose_queries"):
        UniPoseForConditionalGeneration.from_pretrained(tmp_path)


def test_generate_from_processor_inputs_with_an_image_at_the_end():
    from unipose.testing import tiny_model_and_processor

    model, processor = tiny_model_and_processor(seed=9)
    image = torch.randint(0, 255, (3, 50, 40), dtype=torch.uint8)
    inputs = processor(
        text=["Describe this pose: <pose>", "What is the person doing? <image>"],
        poses=[torch.randn(22, 3) * 0.2],
        images=[image],
        return_tensors="pt",
    )
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False, return_dict_in_generate=True)
    with torch.no_grad():
        logits = model(**inputs).logits[:, -1]
    forbidden = torch.zeros(logits.shape[-1], dtype=torch.bool)
    forbidden[model.config.pose_code_token_offset :] = True
    forbidden[[model.config.pose_query_token_id, model.config.pose_token_id, model.config.image_token_id]] = True
    forbidden[model.config.pose_end_token_id] = True
    expected = logits.masked_fill(forbidden, float("-inf")).argmax(-1)
    assert torch.equal(out.sequences[:, inputs["input_ids"].shape[1]], expected)


def test_a_prompt_ending_with_an_open_p_asks_for_a_pose():
    from unipose.testing import tiny_model_and_processor

    model, processor = tiny_model_and_processor(seed=10)
    inputs = processor(text=["A person kneeling on the left knee. <p>", "Describe <pose>"], poses=[torch.zeros(22, 3)])
    out = model.generate(**inputs, max_new_tokens=N + 1, do_sample=False, return_dict_in_generate=True)
    assert out.pose_codes[0].shape == (1, N) and out.poses[0].shape == (1, 22, 3)
    text = processor.batch_decode(out.sequences, pose_spans="marker")[0]
    assert text.count("<pose>") == 1


def test_every_trained_part_gets_a_gradient_from_a_pose_and_image_batch():
    # transformers' common test of this is switched off for UniPose (tests/test_transformers_common.py): by design
    # some weights never get one. With every weight trainable, those are exactly: the pose tokenizer (its codes are
    # discrete), CLIP's layers after `vision_feature_layer` and its `post_layernorm` (on the pooled CLS output),
    # which UniPose, as LLaVA, does not read.
    import numpy as np
    import PIL.Image

    from unipose.pose_sampler import sample_poses
    from unipose.testing import tiny_model_and_processor

    model, processor = tiny_model_and_processor(seed=0)
    model.train()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    image = PIL.Image.fromarray((np.random.default_rng(0).random((64, 48, 3)) * 255).astype(np.uint8))
    codes = torch.zeros(processor.num_pose_tokens, dtype=torch.long)
    pose = sample_poses(1, seed=0)[0]
    batch = processor(text=["<image> <pose> then <pose_query>"], images=[image], poses=[pose], target_poses=[codes])
    model(**batch).loss.backward()
    layers, feature_layer = model.config.vision_config.num_hidden_layers, model.config.vision_feature_layer
    unread = range(layers + feature_layer + 1, layers)
    expected = {
        name
        for name, _ in model.named_parameters()
        if name.startswith(("model.pose_tokenizer.", "model.vision_tower.post_layernorm."))
        or any(name.startswith(f"model.vision_tower.encoder.layers.{layer}.") for layer in unread)
    }
    assert len(unread) == 1 and expected
    assert {name for name, parameter in model.named_parameters() if parameter.grad is None} == expected
