"""The checks transformers runs on every model of its own (its common model, generation and config tests),
written for UniPose: config round trips, save/load of each class, resizing the vocabulary, gradient
checkpointing, hidden states and attentions, offloading with `device_map`, `torch.compile`, and generation
options that the decoding loop cannot honour. A check that does not apply says why."""

import copy

import pytest
import torch
from PIL import Image

from unipose import UniPoseConfig, UniPoseForConditionalGeneration
from unipose.modeling_unipose import UniPoseModel
from unipose.testing import tiny_model_and_processor


@pytest.fixture(scope="module")
def tiny():
    model, processor = tiny_model_and_processor(seed=0)
    inputs = processor(
        text=["Describe <pose> and <image>", "Say hello"],
        poses=[torch.zeros(22, 3)],
        images=[Image.new("RGB", (40, 30), (10, 20, 30))],
    )
    return model, processor, inputs


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    model, _, _ = tiny
    path = tmp_path_factory.mktemp("checkpoint")
    model.save_pretrained(path)
    return path


# ------------------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------------------


def test_config_round_trips_through_dict_json_and_save_pretrained(tiny, tmp_path):
    config = tiny[0].config
    assert UniPoseConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()
    config.to_json_file(tmp_path / "config.json")
    assert UniPoseConfig.from_json_file(tmp_path / "config.json").to_dict() == config.to_dict()
    config.save_pretrained(tmp_path / "saved")
    assert UniPoseConfig.from_pretrained(tmp_path / "saved").to_dict() == config.to_dict()
    assert config.get_text_config() is config.text_config


def test_config_keeps_the_common_keyword_arguments(tiny):
    common = {"output_hidden_states": True, "return_dict": False, "tie_word_embeddings": False}
    config = UniPoseConfig(**{**tiny[0].config.to_dict(), **common})
    assert all(getattr(config, name) == value for name, value in common.items())


# ------------------------------------------------------------------------------------------------------------
# Saving and loading
# ------------------------------------------------------------------------------------------------------------


def test_each_class_loads_a_saved_checkpoint_with_the_same_outputs(tiny, saved):
    model, _, inputs = tiny
    loaded = UniPoseForConditionalGeneration.from_pretrained(saved).eval()
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, loaded(**inputs).logits)
        # The backbone loads from the checkpoint of the model with a head, as transformers' base models do.
        base = UniPoseModel.from_pretrained(saved).eval()
        assert torch.equal(model.model(**inputs).last_hidden_state, base(**inputs).last_hidden_state)


def test_loading_in_another_dtype_converts_every_weight_but_the_pose_tokenizers(saved):
    model = UniPoseForConditionalGeneration.from_pretrained(saved, dtype=torch.bfloat16)
    dtypes = {}
    for name, parameter in model.named_parameters():
        dtypes.setdefault(name.startswith("model.pose_tokenizer."), set()).add(parameter.dtype)
    # The frozen pose tokenizer stays in float32 (`_keep_in_fp32_modules_strict`): its codes would change.
    assert dtypes == {False: {torch.bfloat16}, True: {torch.float32}} and model.dtype == torch.bfloat16


def test_building_in_another_dtype_keeps_the_pose_tokenizer_in_float32(tiny):
    """As loading does: `_from_config(config, dtype=...)` builds the pose tokenizer in float32 too."""
    model = UniPoseForConditionalGeneration._from_config(tiny[0].config, dtype=torch.bfloat16)
    assert model.model.pose_tokenizer.dtype == torch.float32 and model.model.language_model.dtype == torch.bfloat16


def test_loading_info_is_returned_instead_of_raised(tiny, saved, tmp_path):
    """Strict loading raises on missing weights; asked for the loading info, the caller gets it as transformers
    gives it: the model with a head loads a backbone checkpoint with `lm_head` reported missing."""
    UniPoseModel.from_pretrained(saved).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="missing_keys: \\['lm_head.weight'\\]"):
        UniPoseForConditionalGeneration.from_pretrained(tmp_path)
    model, info = UniPoseForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == {"lm_head.weight"} and not info["unexpected_keys"]
    torch.testing.assert_close(model.model.pose_queries, tiny[0].model.pose_queries)


@pytest.mark.parametrize(
    "device_map",
    [
        "everything on disk",
        {
            "model.pose_queries": "cpu",
            "lm_head": "cpu",
            "model.multi_modal_projector": "cpu",
            "model.pose_tokenizer": "disk",
            "model.vision_tower": "disk",
            "model.pose_vision_tower": "cpu",
            "model.language_model": "disk",
        },
    ],
)
def test_offloaded_weights_give_the_same_outputs_and_poses(tiny, saved, tmp_path, device_map):
    model, processor, inputs = tiny
    kwargs = {"offload_folder": tmp_path / "offload"}
    if device_map == "everything on disk":
        kwargs |= {"device_map": "auto", "max_memory": {"cpu": "100KB"}}
    else:
        kwargs |= {"device_map": device_map}
    offloaded = UniPoseForConditionalGeneration.from_pretrained(saved, **kwargs).eval()
    assert "disk" in set(offloaded.hf_device_map.values())
    with torch.no_grad():
        torch.testing.assert_close(offloaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=1e-5)
    prompt = processor(text=["Draw it <p>"])
    ours = offloaded.generate(**prompt, max_new_tokens=2, do_sample=False, return_dict_in_generate=True)
    reference = model.generate(**prompt, max_new_tokens=2, do_sample=False, return_dict_in_generate=True)
    assert torch.equal(ours.pose_codes[0], reference.pose_codes[0])
    torch.testing.assert_close(ours.poses[0], reference.poses[0])


# ------------------------------------------------------------------------------------------------------------
# Embeddings, training features, outputs
# ------------------------------------------------------------------------------------------------------------


def test_resizing_the_vocabulary_keeps_the_model_working_and_refuses_to_drop_unipose_tokens(tiny):
    model, _, inputs = tiny
    resized = copy.deepcopy(model)
    size = resized.config.text_config.vocab_size
    resized.resize_token_embeddings(size + 8)
    assert resized.config.text_config.vocab_size == size + 8
    assert resized.get_output_embeddings().weight.shape[0] == size + 8
    with torch.no_grad():
        logits = resized(**inputs).logits
        torch.testing.assert_close(logits[..., :size], model(**inputs).logits)
    with pytest.raises(ValueError, match=r"`new_num_tokens`=100 would drop UniPose's tokens"):
        resized.resize_token_embeddings(100)
    assert resized.config.text_config.vocab_size == size + 8  # nothing changed


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny):
    model, _, inputs = tiny
    model = copy.deepcopy(model).train()
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)

    def loss_and_grads():
        model.zero_grad()
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, grads = loss_and_grads()
    model.gradient_checkpointing_enable()
    assert model.is_activation_checkpointing
    checkpointed_loss, checkpointed_grads = loss_and_grads()
    assert torch.equal(loss, checkpointed_loss) and grads.keys() == checkpointed_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(checkpointed_grads[name], grad, msg=name)


def test_hidden_states_and_attentions_cover_every_layer(tiny):
    model, _, inputs = tiny
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    layers = model.config.text_config.num_hidden_layers
    with torch.no_grad():
        out = eager(**inputs, output_hidden_states=True, output_attentions=True)
    length = inputs["input_ids"].shape[1]
    assert len(out.hidden_states) == layers + 1 and out.hidden_states[-1].shape[:2] == (2, length)
    assert len(out.attentions) == layers
    heads = model.config.text_config.num_attention_heads
    assert out.attentions[0].shape == (2, heads, length, length)


def test_compiled_model_gives_the_same_logits(tiny):
    model, _, inputs = tiny
    compiled = torch.compile(copy.deepcopy(model), backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(**inputs).logits, model(**inputs).logits)


# ------------------------------------------------------------------------------------------------------------
# Generation
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["output_scores", "output_logits", "output_attentions", "output_hidden_states"])
def test_per_step_generation_outputs_are_refused_not_dropped(tiny, flag):
    # Not applicable: a pose step writes 81 tokens per row at once, so there is no per-token step to report.
    model, processor, _ = tiny
    with pytest.raises(ValueError, match=f"does not return per-step outputs .*`{flag}=True`"):
        model.generate(**processor(text=["Hello"]), max_new_tokens=2, return_dict_in_generate=True, **{flag: True})


def test_greedy_generation_equals_the_argmax_of_forward_passes(tiny):
    model, processor, _ = tiny
    prompt = processor(text=["Say hello"])
    ids = prompt["input_ids"]
    forbidden = [model.config.pose_start_token_id]  # keep it text, then compare token by token
    out = model.generate(
        **prompt, max_new_tokens=4, do_sample=False, eos_token_id=None, suppress_tokens=forbidden
    )
    text_only = torch.zeros(model.config.text_config.vocab_size, dtype=torch.bool)
    text_only[: model.config.image_token_id] = True
    text_only[forbidden] = False
    for _ in range(4):
        with torch.no_grad():
            logits = model(input_ids=ids).logits[:, -1]
        next_token = logits.masked_fill(~text_only, float("-inf")).argmax(-1, keepdim=True)
        ids = torch.cat([ids, next_token], dim=-1)
    assert torch.equal(out, ids)
