"""Building a UniPose model from pretrained parts saved to disk."""

import torch
from transformers import AutoConfig, AutoModelForCausalLM, CLIPVisionModel, VitPoseBackbone

from unipose import UniPoseForConditionalGeneration, UniPoseProcessor
from unipose.assembly import build_unipose, set_generation_special_tokens
from unipose.modeling_pose_vqvae import PoseVQVAE
from unipose.testing import (
    TINY_POSE_VISION_CONFIG,
    TINY_TEXT_CONFIG,
    TINY_VISION_CONFIG,
    tiny_model_and_processor,
    tiny_pose_tokenizer_config,
)
from unipose.tokenization import build_tiny_tokenizer


def _config(fields, **extra):
    fields = {**fields, **extra}
    return AutoConfig.for_model(fields.pop("model_type"), **fields)


def test_build_from_parts_saved_to_disk(tmp_path):
    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer(codebook_size=64)
    base_vocab = tokenizer.convert_tokens_to_ids("<image>")  # the text vocabulary before the UniPose tokens
    lm = AutoModelForCausalLM.from_config(_config(TINY_TEXT_CONFIG, vocab_size=base_vocab, model_type="mistral",
                                                  sliding_window=64))
    clip = CLIPVisionModel(_config(TINY_VISION_CONFIG))
    vit = VitPoseBackbone(_config(TINY_POSE_VISION_CONFIG))
    vq = PoseVQVAE(tiny_pose_tokenizer_config())
    vq.quantizer.set_codebook(torch.randn(64, vq.config.code_dim))
    for name, part in {"lm": lm, "clip": clip, "vit": vit, "vq": vq, "tok": tokenizer}.items():
        part.save_pretrained(tmp_path / name)

    model, processor = build_unipose(
        tmp_path / "lm", tmp_path / "clip", tmp_path / "vit", tmp_path / "vq", tmp_path / "tok", clip_size=42
    )
    assert isinstance(model, UniPoseForConditionalGeneration) and isinstance(processor, UniPoseProcessor)
    config = model.config
    assert config.text_config.vocab_size == len(processor.tokenizer) == base_vocab + 5 + 64
    assert config.text_config.sliding_window is None
    # Pretrained weights are kept exactly.
    torch.testing.assert_close(model.model.language_model.layers[0].mlp.up_proj.weight, lm.model.layers[0].mlp.up_proj.weight)
    torch.testing.assert_close(model.lm_head.weight[:base_vocab], lm.lm_head.weight[:base_vocab])
    for built, original in ((model.model.vision_tower, clip), (model.model.pose_vision_tower, vit)):
        reference = original.state_dict()
        for key, value in built.state_dict().items():
            assert torch.equal(value, reference[key]), key
    assert torch.equal(model.model.pose_tokenizer.quantizer.codebook, vq.quantizer.codebook)
    # It runs end to end, and survives a save / load round trip.
    inputs = processor(text=["Describe <pose> please"], poses=[torch.zeros(22, 3)], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    model.save_pretrained(tmp_path / "unipose")
    reloaded = UniPoseForConditionalGeneration.from_pretrained(tmp_path / "unipose")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, logits)
    # `generate` knows the tokenizer's special tokens, and the processor the model's sizes.
    generation = model.generation_config
    assert (generation.bos_token_id, generation.eos_token_id, generation.pad_token_id) == (
        tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    )  # fmt: skip
    assert processor.image_processor.crop_size["height"] == 42
    assert (processor.image_seq_length, processor.num_pose_tokens) == (config.image_seq_length, config.num_pose_tokens)


def test_a_tokenizer_without_padding_pads_generation_with_its_eos():
    model, processor = tiny_model_and_processor()
    tokenizer = processor.tokenizer
    tokenizer.pad_token = None
    set_generation_special_tokens(model, tokenizer)
    assert model.generation_config.pad_token_id == tokenizer.eos_token_id is not None
