"""transformers' own common tests (`ModelTesterMixin`, `ConfigTester`, `ProcessorTesterMixin`, from its source
distribution: see `tests/transformers_common.py`) on UniPose's model, its pose tokenizer, their configs and the
processor.

Every test of the mixins runs, unless this file opts it out with the reason."""

import unittest
from unittest import mock

import torch
from parameterized import parameterized
from transformers.models.auto import modeling_auto
from transformers_common import load

from unipose import UniPoseConfig, UniPoseForConditionalGeneration
from unipose.configuration_pose_vqvae import PoseVQVAEConfig
from unipose.modeling_pose_vqvae import PoseVQVAE
from unipose.modeling_unipose import UniPoseModel
from unipose.pose_sampler import sample_poses
from unipose.processing_poses import POSE_TOKEN
from unipose.processing_unipose import UniPoseProcessor
from unipose.rotations import to_rotation_6d
from unipose.testing import (
    TINY_POSE_TOKENIZER_CONFIG,
    tiny_pose_tokenizer_config,
    tiny_processor,
    tiny_unipose_config,
)

test_modeling_common, test_configuration_common, test_processing_common = load()
ModelTesterMixin = test_modeling_common.ModelTesterMixin
ConfigTester = test_configuration_common.ConfigTester
ProcessorTesterMixin = test_processing_common.ProcessorTesterMixin
floats_tensor, ids_tensor = test_modeling_common.floats_tensor, test_modeling_common.ids_tensor


NEEDS_INPUT_IDS = (
    "UniPose reads the pose spans, and so its attention pattern, from `input_ids`; `inputs_embeds` alone is refused "
    "with that reason (tests/test_modeling_unipose.py), and `inputs_embeds` beside `input_ids` is tested in "
    "tests/test_generation_contracts.py"
)


class UniPoseModelTester:
    """Random inputs of the tiny UniPose: per row, text, one image's tokens and one input pose's span."""

    def __init__(self, parent, batch_size: int = 7, text_length: int = 7):
        self.parent = parent
        self.batch_size = batch_size
        self.is_training = True
        config = self.get_config()
        text = config.text_config
        self.vocab_size = text.vocab_size
        self.hidden_size = text.hidden_size
        self.num_hidden_layers = text.num_hidden_layers
        self.num_attention_heads = text.num_attention_heads
        self.text_config = text.to_dict()
        self.vision_config = config.vision_config.to_dict()
        self.text_length = text_length
        self.query_pose = True
        self.num_image_tokens = config.image_seq_length

    @property
    def seq_length(self) -> int:
        num_spans = 2 if self.query_pose else 1
        return self.text_length + self.num_image_tokens + num_spans * (self.get_config().num_pose_tokens + 2)

    def get_config(self) -> UniPoseConfig:
        # A vocabulary smaller than the resizing tests' 128 rows, with spare rows after the pose codes (as a
        # vocabulary padded to a multiple has) so that they may shrink it without dropping UniPose's tokens, which
        # `resize_token_embeddings` refuses. The last CLIP layer is the image features' (LLaVA's tests do the
        # same), so that every weight gets a gradient in the training tests.
        config = tiny_unipose_config(base_vocab_size=32, pose_tokenizer_config={"codebook_size": 16})
        return tiny_unipose_config(
            base_vocab_size=32,
            pose_tokenizer_config={"codebook_size": 16},
            text_config={"vocab_size": config.text_config.vocab_size + 24},
            vision_feature_layer=-1,
        )

    def prepare_config_and_inputs_for_common(self):
        """Per row: text, an image, an input pose's span, a queried pose's span (with `query_pose`), text."""
        config = self.get_config()
        vision, pose_vision = config.vision_config, config.pose_vision_config
        batch, num_pose_tokens = self.batch_size, config.num_pose_tokens
        # Text ids below the first UniPose token, so that they are never placeholders.
        text = ids_tensor([batch, self.text_length], config.image_token_id - 3) + 3

        def span(token_id):
            return [config.pose_start_token_id, *[token_id] * num_pose_tokens, config.pose_end_token_id]

        multimodal = [config.image_token_id] * self.num_image_tokens + span(config.pose_token_id)
        if self.query_pose:
            multimodal += span(config.pose_query_token_id)
        # Text last: the resizing test writes a new token id at position -2.
        input_ids = torch.cat([text[:, :1], torch.tensor([multimodal]).expand(batch, -1), text[:, 1:]], dim=1)
        inputs = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "pixel_values": floats_tensor([batch, 3, vision.image_size, vision.image_size]),
            "pose_pixel_values": floats_tensor([batch, 3, *pose_vision.image_size]),
            "pose_values": to_rotation_6d(sample_poses(batch, seed=int(text.sum()))),
        }
        return config, inputs


class UniPoseModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (UniPoseModel, UniPoseForConditionalGeneration)
    # `generate` is UniPose's own decoding loop (all pose codes in one step after `<p>`), tested in
    # tests/test_generation_contracts.py; transformers' generation tests are not in its source distribution.
    all_generative_model_classes = ()
    _is_composite = True
    additional_model_inputs = ["pixel_values", "pose_pixel_values", "pose_values"]
    # CLIP's `post_layernorm` acts only on its pooled CLS output, which UniPose (as LLaVA) does not read, so it
    # never gets a gradient; the gradient-checkpointing tests still compare every other gradient with and without,
    # and tests/test_modeling_unipose.py names every weight that gets none.
    test_all_params_have_gradient = False

    @classmethod
    def setUpClass(cls):
        # The mixin picks some tests by a class's name in transformers' mappings (a base model has no loss to train,
        # a model with a head is trained on labels and must honour `shift_labels`): while this class runs,
        # UniPose's classes are named there, as one of transformers' own models would be.
        for mapping, name in (
            (modeling_auto.MODEL_MAPPING_NAMES, "UniPoseModel"),
            (modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES, "UniPoseForConditionalGeneration"),
        ):
            patch = mock.patch.dict(mapping, {UniPoseConfig.model_type: name})
            patch.start()
            cls.addClassCleanup(patch.stop)

    def setUp(self):
        self.model_tester = UniPoseModelTester(self)
        self.config_tester = ConfigTester(
            self,
            config_class=UniPoseConfig,
            has_text_modality=False,
            common_properties=["image_token_id", "pose_token_id", "image_seq_length", "num_pose_tokens"],
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        """The mixin's, which labels an image-text-to-text model with token 0 everywhere; a queried pose's positions
        must hold codes, so they hold the first."""
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels)
        if "labels" in inputs_dict:
            config = self.model_tester.get_config()
            is_query = inputs_dict["input_ids"] == config.pose_query_token_id
            inputs_dict["labels"] = inputs_dict["labels"].masked_fill(is_query, config.pose_code_token_offset)
        return inputs_dict

    def test_causal_lm_loss_honors_shift_labels(self):
        # The test draws targets 0 and 1 for every position, which a queried pose's positions refuse (their targets
        # are pose codes): it runs on rows without one.
        self.model_tester.query_pose = False
        super().test_causal_lm_loss_honors_shift_labels()

    @unittest.skip(NEEDS_INPUT_IDS)
    def test_inputs_embeds(self):
        pass

    @unittest.skip(NEEDS_INPUT_IDS)
    def test_inputs_embeds_matches_input_ids(self):
        pass

    @parameterized.expand([("linear",), ("dynamic",), ("yarn",)])
    @unittest.skip(
        "The test feeds ids drawn over the whole vocabulary, so `<pose_query>`, `<p>` and code tokens stand in "
        "random places, which the model refuses; tests/test_modeling_unipose.py runs RoPE scaling past "
        "`max_position_embeddings`"
    )
    def test_model_rope_scaling_from_config(self, scaling_type):
        pass

    @unittest.skip(
        "The test's bool-tensor branch calls the state dict it holds (`state_dict()[key]`), a TypeError for any "
        "model with a bool buffer, here the pose tokenizer's `initialized` flag; the save/load round trips are "
        "tested in tests/test_modeling_common.py"
    )
    def test_torch_save_load(self):
        pass


class PoseVQVAEModelTester:
    """Random 6D poses for the tiny pose tokenizer."""

    def __init__(self, parent, batch_size: int = 3):
        self.parent = parent
        self.batch_size = batch_size
        self.is_training = True
        self.hidden_size = self.get_config().hidden_size

    def get_config(self) -> PoseVQVAEConfig:
        return tiny_pose_tokenizer_config()

    def prepare_config_and_inputs_for_common(self):
        return self.get_config(), {"poses_6d": to_rotation_6d(sample_poses(self.batch_size, seed=self.batch_size))}


class PoseVQVAEModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (PoseVQVAE,)
    # A convolutional VQ-VAE: no attention, no token embeddings.
    has_attentions = False
    test_resize_embeddings = False

    def setUp(self):
        self.model_tester = PoseVQVAEModelTester(self)
        self.config_tester = ConfigTester(
            self, config_class=PoseVQVAEConfig, has_text_modality=False, common_properties=["hidden_size"],
            **TINY_POSE_TOKENIZER_CONFIG,
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    @unittest.skip("A convolutional VQ-VAE: it has no stack of layers whose hidden states the test could count")
    def test_hidden_states_output(self):
        pass

    @unittest.skip("A convolutional VQ-VAE: it has no stack of layers whose hidden states the test could count")
    def test_retain_grad_hidden_states_attentions(self):
        pass

    @unittest.skip(
        "The test also asks for hidden states, which the tokenizer has not (see above); its tuple and dict outputs "
        "are compared in tests/test_pose_vqvae.py"
    )
    def test_model_outputs_equivalence(self):
        pass

    @unittest.skip("Poses in, poses out: the pose tokenizer has no token embeddings")
    def test_model_get_set_embeddings(self):
        pass

    @unittest.skip(
        "The pose tokenizer's loss (6D, joint and vertex reconstruction through the body model, and commitment) is "
        "its trainer's (unipose/training/pose_tokenizer.py), tested in tests/test_pose_tokenizer_training.py"
    )
    def test_training(self):
        pass


class UniPoseProcessorTest(ProcessorTesterMixin, unittest.TestCase):
    processor_class = UniPoseProcessor

    @classmethod
    def _setup_from_components(cls):
        return tiny_processor()

    @staticmethod
    def prepare_processor_dict():
        # The tests that build the processor from its components give it the tiny images' token count.
        return {"image_seq_length": tiny_processor().image_seq_length}

    def get_component(self, attribute, use_tiny_ckpt=True, **kwargs):
        # No auto class maps the name `pose_image_processor`: it is read back from the saved processor, as
        # `ProcessorMixin.from_pretrained` reads it, and `kwargs` override its saved settings.
        if attribute != "pose_image_processor":
            return super().get_component(attribute, use_tiny_ckpt, **kwargs)
        saved = self.processor_class.from_pretrained(self.tmpdirname).pose_image_processor
        return type(saved).from_dict(saved.to_dict(), **kwargs)

    def test_model_input_names(self):
        # The mixin's version gives text and images only; UniPose's third input, the pose, gives `pose_values`.
        processor = self.get_processor()
        text = [f"{processor.image_token} {POSE_TOKEN} a", f"{processor.image_token} {POSE_TOKEN} b"]
        poses = to_rotation_6d(sample_poses(2, seed=0))
        inputs = processor(text=text, images=self.prepare_images_inputs(batch_size=2), poses=poses)
        self.assertSetEqual(set(inputs.keys()), set(processor.model_input_names))

    def test_tokenizer_decode_defaults(self):
        # UniPose's `batch_decode` skips special tokens unless told otherwise (the tokenizer's default keeps
        # them), so that a decoded answer carries no `<image>` runs or padding; given the same arguments, and
        # ids without pose spans, it decodes as the tokenizer does.
        processor = self.get_processor()
        predicted_ids = [[1, 4, 5, 8, 1, 0, 8], [3, 4, 3, 1, 1, 8, 9]]
        for skip_special_tokens in (False, True):
            self.assertListEqual(
                processor.batch_decode(predicted_ids, skip_special_tokens=skip_special_tokens),
                processor.tokenizer.batch_decode(predicted_ids, skip_special_tokens=skip_special_tokens),
            )
        self.assertListEqual(
            processor.batch_decode(predicted_ids),
            processor.tokenizer.batch_decode(predicted_ids, skip_special_tokens=True),
        )

    @unittest.skip(
        "The mixin matches transformers' wording ('... tokens in the prompts should be the same as the number of "
        "...'); UniPose's processor raises its own message, which names the argument and the counts per sample "
        "(tests/test_processing_unipose.py pins it)"
    )
    def test_if_input_has_mismatching_tokens_and_mm_data(self):
        pass

    SAVE_RECORDS_AUTO_MAP = (
        "`ProcessorMixin.save_pretrained` of a processor registered for an auto class writes `auto_map` onto the "
        "saved instance, and `from_pretrained` drops `auto_map` from the loaded one, so `to_dict()` differs for "
        "every remote-code processor; the round trip of UniPose's processor is tested in "
        "tests/test_processing_unipose.py"
    )

    @unittest.skip(SAVE_RECORDS_AUTO_MAP)
    def test_processor_from_and_save_pretrained(self):
        pass

    @unittest.skip(SAVE_RECORDS_AUTO_MAP)
    def test_processor_from_and_save_pretrained_as_nested_dict(self):
        pass
