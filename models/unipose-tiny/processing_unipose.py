"""
Processor of UniPose: text with image and pose placeholders, images and SMPL poses in; model inputs out.

A pose inside a sequence is always `<p>` + `num_pose_tokens` tokens + `</p>`. The processor writes every span,
so prompts only hold single placeholders:

- `<image>` becomes `image_seq_length` copies of `<image>`; the image gives `pixel_values` (CLIP) and
  `pose_pixel_values` (pose ViT).
- `<pose>` marks a pose given as input. A pose in any rotation format becomes `<p>` + `<pose>` x N + `</p>`
  and is returned in `pose_values` (the model encodes it with its frozen pose tokenizer); integer pose codes
  are written directly as the code tokens `<p><pose_12>...</p>`.
- `<pose_query>` marks a pose the model must produce in training: `<p>` + `<pose_query>` x N + `</p>`.
  With `target_poses` (codes), `labels` holds the code token of each query position, so that
  `model(**processor(...)).loss` is the pose loss; a chat tokenized with `return_assistant_tokens_mask=True`
  also labels the text of its answers.
- Text from users: `apply_chat_template(..., tokenize=True, sanitize_control_tokens=True)` (or
  `processor(text=..., sanitize_control_tokens=True)` on text whose user parts went through
  `processor.mark_control_tokens`) encodes the control tokens that users typed (`<image>`, `<pose>`,
  `<pose_query>`, `<p>`, `</p>`, the code tokens, `<s>`) as plain text; only the placeholders written by the
  prompt itself (or by the chat's image and pose items) take effect. Without it, a control token in the wrong
  place is refused: a placeholder without its input, a `<pose_query>` without `target_poses`, a `<p>`, `</p>`
  or code token outside a complete span.
- A prompt that ends with an open `<p>` asks `generate` for a pose right away (Text-to-Pose, Pose
  Estimation, Pose Editing): the model writes all N codes in one step. In a chat, a final assistant message
  `"<p>"` continued with `continue_final_message=True` does the same.

In a chat, `{"type": "pose", "pose": pose}` carries its pose as `{"type": "image", "image": image}` carries
its image. A text that already starts with the tokenizer's BOS (the chat template writes it) gets no second
one.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
from transformers import CLIPImageProcessorPil
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import MultiModalData, ProcessingKwargs, ProcessorMixin, Unpack
from transformers.utils import logging

# Imported so that the pipeline travels with the processor: `save_pretrained` copies relative imports.
from .pipeline_unipose import UniPosePipeline
from .processing_inputs import (
    ImageLike,
    as_id_row,
    as_id_rows,
    chat_poses,
    default_image_processors,
    is_image_item,
    pose_vit_view,
    read_images,
    read_per_sample,
    read_texts,
    to_rgb_images,
)
from .processing_poses import POSE_END_TOKEN, POSE_QUERY_TOKEN, POSE_START_TOKEN, POSE_TOKEN, PoseSpans
from .processing_text import (
    IMAGE_TOKEN,
    PromptEncoder,
    expand_placeholders,
    get_unipose_token_ids,
    mark_user_text,
    placeholders,
)
from .skeleton import NUM_BODY_JOINTS

logger = logging.get_logger(__name__)


class UniPoseProcessor(ProcessorMixin):
    r"""
    Builds the inputs of [`UniPoseForConditionalGeneration`] from text with placeholders, images and SMPL
    poses, and decodes its outputs.

    Args:
        image_processor ([`CLIPImageProcessor`]):
            Preprocessing of the CLIP vision tower (336 px: resize the short side, centre crop, CLIP
            mean/std).
        pose_image_processor ([`CLIPImageProcessor`]):
            Preprocessing of the pose ViT: resize the short side to 256, centre crop 256x192, ImageNet
            mean/std (a CLIP processor configured for it; see [`~UniPoseProcessor.default_image_processors`]).
        tokenizer ([`PreTrainedTokenizerBase`]):
            A tokenizer holding the UniPose tokens (`unipose.tokenization.add_unipose_tokens`).
        chat_template (`str`, *optional*):
            Jinja template of [`~ProcessorMixin.apply_chat_template`]; defaults to the tokenizer's.
        image_seq_length (`int`, *optional*, defaults to 576):
            Tokens per image (CLIP's patch grid: 24x24 at 336 px with 14 px patches).
        num_pose_tokens (`int`, *optional*, defaults to 80):
            Tokens per pose span, between `<p>` and `</p>` (the pose tokenizer's `num_tokens`).
        num_joints (`int`, *optional*, defaults to 22):
            Joints per pose.
        image_start_text (`str`, *optional*, defaults to `""`), image_end_text (`str`, *optional*, defaults to `""`):
            Text written before and after the tokens of every image. A checkpoint converted from the published
            UniPose sets `"<im_start>"` and `"<im_end>"`, the way the release writes images in its prompts.

    Example:

    ```python
    >>> import torch
    >>> from unipose.testing import tiny_model_and_processor
    >>> _, processor = tiny_model_and_processor()
    >>> inputs = processor(text=["Describe this pose: <pose>"], poses=[torch.zeros(22, 3)])
    >>> inputs["pose_values"].shape  # the pose in 6D, for the model's pose tokenizer
    torch.Size([1, 22, 6])
    >>> int((inputs["input_ids"] == processor.pose_token_id).sum()) == processor.num_pose_tokens
    True
    ```
    """

    # Defaults of `__call__`: a padded batch of PyTorch tensors (padded on the left, see `__call__`).
    text_kwargs = {"padding": True, "return_tensors": "pt"}

    def __init__(
        self,
        image_processor,
        pose_image_processor,
        tokenizer,
        chat_template: str | None = None,
        image_seq_length: int = 576,
        num_pose_tokens: int = 80,
        num_joints: int = NUM_BODY_JOINTS,
        image_start_text: str = "",
        image_end_text: str = "",
    ):
        for name, value in (("image_start_text", image_start_text), ("image_end_text", image_end_text)):
            if not isinstance(value, str):
                raise TypeError(f"`{name}` must be a string, got {type(value).__name__}.")
        sizes = {"image_seq_length": image_seq_length, "num_pose_tokens": num_pose_tokens, "num_joints": num_joints}
        for name, value in sizes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        vars(self).update(sizes, image_start_text=image_start_text, image_end_text=image_end_text)
        if chat_template is None:
            chat_template = getattr(tokenizer, "chat_template", None)
        super().__init__(image_processor, pose_image_processor, tokenizer, chat_template=chat_template)

        token_ids, self.pose_codebook_size = get_unipose_token_ids(tokenizer)
        # `image_token_id`, `pose_token_id`, `pose_query_token_id`, `pose_start_token_id`, `pose_end_token_id`
        # and `pose_code_token_offset`, under the names of the model config's fields.
        vars(self).update(token_ids)
        self.pose_spans = PoseSpans(tokenizer, token_ids, self.pose_codebook_size, num_pose_tokens, num_joints)
        self.prompt_encoder = PromptEncoder(tokenizer, token_ids, image_seq_length, self.pose_spans)
        # Read by ProcessorMixin's multimodal helpers (token type ids, placeholder checks).
        self.image_token = IMAGE_TOKEN

    @staticmethod
    def default_image_processors(
        clip_size: int = 336, pose_size: tuple[int, int] = (256, 192)
    ) -> tuple[CLIPImageProcessorPil, CLIPImageProcessorPil]:
        """The CLIP and pose ViT image processors of UniPose (see `processing_inputs.default_image_processors`)."""
        return default_image_processors(clip_size, pose_size)

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        # transformers saves a PIL-backend image processor under its backend-free name (`CLIPImageProcessor`),
        # which loads the torchvision class where torchvision is installed and otherwise falls back to the PIL
        # one with a warning. The PIL name loads the class the processor was built with, silently.
        for name in ("image_processor", "pose_image_processor"):
            if isinstance(output.get(name), dict):
                output[name]["image_processor_type"] = type(getattr(self, name)).__name__
        return output

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        """[`~ProcessorMixin.save_pretrained`], which also writes `pipeline_unipose.py` (imported by this
        file) and registers the pipeline in the model's `config.json` if it is there: save the model first."""
        result = super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        UniPosePipeline.register_in_config(save_directory)
        return result

    @property
    def model_input_names(self) -> list[str]:
        names = [*self.tokenizer.model_input_names, *self.image_processor.model_input_names]
        return list(dict.fromkeys([*names, "pose_pixel_values", "pose_values"]))

    def replace_image_token(self, image_inputs: dict | None = None, image_idx: int = 0, **kwargs) -> str:
        """The text that replaces one `<image>` placeholder: `image_seq_length` copies of `<image>`, between
        `image_start_text` and `image_end_text`."""
        return self.image_start_text + IMAGE_TOKEN * self.image_seq_length + self.image_end_text

    def _get_num_multimodal_tokens(self, image_sizes=None, **kwargs) -> MultiModalData:
        """Tokens and patches per image: every image is `image_seq_length` tokens, whatever its size."""
        if image_sizes is None:
            return MultiModalData()
        return MultiModalData(
            num_image_tokens=[self.image_seq_length] * len(image_sizes),
            num_image_patches=[1] * len(image_sizes),
        )

    # ---------------------------------------------------------------------------------------------------
    # Chats
    # ---------------------------------------------------------------------------------------------------

    def apply_chat_template(self, conversation, chat_template: str | None = None, **kwargs):
        r"""
        [`~ProcessorMixin.apply_chat_template`] with poses in the content: `{"type": "pose", "pose": pose}`
        renders `<pose>` and, with `tokenize=True`, gives its pose to the processor (any format of `poses`).

        - The template writes the BOS; tokenized here or by the processor afterwards, a chat has one BOS.
        - A final assistant message `"<p>"` with `continue_final_message=True` asks for a pose answer:
          the prompt ends with an open `<p>` and `generate` writes the pose in one step.
        - With `tokenize=True, return_dict=True, return_assistant_tokens_mask=True`, the result also holds
          `labels`: the answers' tokens label themselves, their pose queries carry the codes of `target_poses`
          (in `processor_kwargs`) and everything else is `-100` -- what training needs.

        Example:

        ```python
        >>> question = [{"type": "text", "text": "Describe this pose:"}, {"type": "pose", "pose": pose}]
        >>> chat = [{"role": "user", "content": question}]
        >>> inputs = processor.apply_chat_template(chat, tokenize=True, return_dict=True)
        >>> ask_pose = [
        ...     {"role": "user", "content": "Generate the pose described as follows: a person kneeling."},
        ...     {"role": "assistant", "content": "<p>"},
        ... ]
        >>> inputs = processor.apply_chat_template(
        ...     ask_pose, tokenize=True, return_dict=True, continue_final_message=True
        ... )
        >>> model.generate(**inputs, return_dict_in_generate=True).poses[0].shape
        torch.Size([1, 22, 3])
        ```
        """
        processor_kwargs = kwargs.get("processor_kwargs") or {}
        poses = chat_poses(conversation)
        if kwargs.get("tokenize") and poses:
            if processor_kwargs.get("poses") is not None:
                raise ValueError(
                    'The poses are given twice: in the chat\'s `{"type": "pose", "pose": ...}` items and in '
                    "`processor_kwargs['poses']`. Give them in one place."
                )
            kwargs["processor_kwargs"] = processor_kwargs = {**processor_kwargs, "poses": poses}
        out = super().apply_chat_template(conversation, chat_template, **kwargs)
        if all(kwargs.get(name) for name in ("tokenize", "return_dict", "return_assistant_tokens_mask")):
            has_targets = processor_kwargs.get("target_poses") is not None
            out["labels"] = self.prompt_encoder.answer_labels(out, has_targets)
        return out

    # ---------------------------------------------------------------------------------------------------
    # Inputs
    # ---------------------------------------------------------------------------------------------------

    def __call__(
        self,
        images: ImageLike | Sequence | None = None,
        text: str | list[str] | None = None,
        poses: Any = None,
        target_poses: Any = None,
        **kwargs: Unpack[ProcessingKwargs],
    ) -> BatchFeature:
        r"""
        Expands the placeholders of `text`, tokenizes it and preprocesses images and poses.

        Images, poses and targets are given either as a flat list matched to the placeholders in order across
        the batch, or nested, one list per sample. A single item (or a batched array) stands for a flat list.

        Args:
            images (PIL image, numpy array, torch tensor, path, or a (nested) list of them, *optional*):
                One image per `<image>`. Numpy arrays are `(H, W, C)` (or `(N, H, W, C)` for several), torch
                tensors `(C, H, W)` (or `(N, C, H, W)`), uint8 or floats in [0, 1]; any PIL mode converts to
                RGB.
            text (`str` or `list[str]`):
                The prompts, with `<image>`, `<pose>` and `<pose_query>` placeholders written once each.
            poses (tensor, array, nested list of numbers, or a (nested) list of them, *optional*):
                One pose per `<pose>`. The dtype decides how a pose enters the model:

                - floating point: a pose in any format of `to_rotation_6d` (axis-angle `(J*3,)` / `(J, 3)`,
                  rotation matrices `(J, 3, 3)`, 6D `(J, 6)`, or several stacked on a leading axis); it is
                  validated, returned in `pose_values` and its span holds `<pose>` placeholders that the model
                  fills from its pose tokenizer. Matrices and 6D are taken as given (`pose_values` holds the
                  raw first two rows, not re-orthonormalised), as the published UniPose model reads them;
                - integer: pose codes of shape `(num_pose_tokens,)` (or `(N, num_pose_tokens)`), written
                  directly as the code tokens `<p><pose_c1>...</p>`.

                A plain Python list of numbers is read as one array (`[0] * 66` holds integers, hence codes:
                write `[0.0] * 66` for a pose); per-sample nesting needs the poses as tensors or arrays. Poses
                stand in the world of the model's poses, `config.pose_up_axis` (`"z"` for the published
                UniPose); they are not turned.
            target_poses (integer tensor, array or a (nested) list of them, *optional*):
                The codes `(num_pose_tokens,)` of the pose to produce at each `<pose_query>`; they give
                `labels`.
            return_tensors (`str`, *optional*, defaults to `"pt"`):
                `"pt"`, `"np"`, or `None` for lists.
            padding (`bool` or `str`, *optional*, defaults to `True`):
                Padding strategy of the tokenizer.
            padding_side (`str`, *optional*, defaults to `"left"`):
                Left unless given, whatever the tokenizer's own setting.
            add_special_tokens (`bool`, *optional*):
                By default the tokenizer's special tokens (the BOS) are added to every text that does not
                already start with the BOS, as a text rendered by the chat template does.
            truncation (`bool` or `str`, *optional*, defaults to `False`):
                Truncation may only remove text: a cut through (or of) an image or a pose span raises a
                `ValueError`.
            max_length (`int`, *optional*):
                Maximum sequence length. Without truncation a longer sequence raises a `ValueError`, as does
                one longer than the tokenizer's `model_max_length`.

        Returns:
            [`BatchFeature`]: with
            - **input_ids**, **attention_mask** -- the tokenized, expanded text (`(batch, length)`);
            - **pixel_values** `(num_images, 3, H, W)` and **pose_pixel_values** `(num_images, 3, 256, 192)`
              -- when images are given;
            - **pose_values** `(num_poses, num_joints, 6)` float32 -- when poses are given as rotations;
            - **labels** `(batch, length)` -- when `target_poses` are given: `-100` everywhere except at the
              query positions, which hold the vocabulary id of their code (`pose_code_token_offset` + code),
              as the model's loss reads them: `model(**inputs).loss` is the pose loss.
        """
        # `apply_chat_template` passes `videos=None, audio=None` to every processor.
        if [kwargs.pop(name, None) for name in ("videos", "audio")] != [None, None]:
            raise ValueError(f"{type(self).__name__} takes no `videos` or `audio`.")
        output_kwargs = self._merge_kwargs(tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs)
        text_kwargs, images_kwargs = output_kwargs["text_kwargs"], output_kwargs["images_kwargs"]
        sanitize = bool(text_kwargs.pop("sanitize_control_tokens", None))
        if "padding_side" not in kwargs and "padding_side" not in kwargs.get("text_kwargs", {}):
            text_kwargs["padding_side"] = "left"
        return_tensors = text_kwargs.pop("return_tensors", None)
        images_kwargs.pop("return_tensors", None)

        if text is None:
            if poses is not None or target_poses is not None:
                raise ValueError(
                    "`poses` and `target_poses` need `text` with `<pose>` / `<pose_query>` placeholders."
                )
            if images is None:
                raise ValueError(f"{type(self).__name__} needs `text`, `images` or both.")
            pixels = self._process_image_list(read_images(images), images_kwargs)
            return BatchFeature(pixels, tensor_type=return_tensors)

        texts = read_texts(text)
        found = [[match.group() for match in placeholders(sample, sanitize)] for sample in texts]
        image_counts, pose_counts, query_counts = (
            [tokens.count(token) for tokens in found] for token in (IMAGE_TOKEN, POSE_TOKEN, POSE_QUERY_TOKEN)
        )

        sample_images = read_per_sample(
            images, image_counts, "images", IMAGE_TOKEN, is_image_item, to_rgb_images, "an image", "image(s)"
        )
        sample_poses = self.pose_spans.read(poses, "poses", pose_counts, POSE_TOKEN, codes_only=False)
        sample_targets = self.pose_spans.read(
            target_poses, "target_poses", query_counts, POSE_QUERY_TOKEN, codes_only=True
        )

        expanded, replacement_offsets = expand_placeholders(
            texts,
            sanitize,
            image_text=self.replace_image_token(),
            pose_texts=[[self.pose_spans.span_text(*pose) for pose in group] for group in sample_poses],
            query_text=POSE_START_TOKEN + POSE_QUERY_TOKEN * self.num_pose_tokens + POSE_END_TOKEN,
        )
        encoding = self.prompt_encoder.encode(expanded, text_kwargs, sanitize)

        spans = [self.pose_spans.find(ids, index) for index, ids in enumerate(encoding["input_ids"])]
        data = dict(encoding)
        if target_poses is not None:
            data["labels"] = self.pose_spans.labels(encoding["input_ids"], spans, sample_targets)
        flat_images = [image for group in sample_images for image in group]
        if flat_images:
            data.update(self._process_image_list(flat_images, images_kwargs))
        rotations = [value for group in sample_poses for kind, value in group if kind == "rotation"]
        if rotations:
            data["pose_values"] = torch.stack(rotations).numpy()
        if output_kwargs["return_mm_token_type_ids"]:
            data["mm_token_type_ids"] = self.create_mm_token_type_ids(data["input_ids"])
        if output_kwargs["return_text_replacement_offsets"]:
            data["text_replacement_offsets"] = replacement_offsets
        return BatchFeature(
            data, tensor_type=return_tensors, skip_tensor_conversion=self.skip_tensor_conversion
        )

    def _process_image_list(
        self, images: list[PIL.Image.Image], images_kwargs: dict
    ) -> dict[str, np.ndarray]:
        """CLIP and pose ViT pixels of the same images. `images_kwargs` apply to the CLIP processor only."""
        pixel_values = self.image_processor(images, **images_kwargs, return_tensors="np")["pixel_values"]
        crop = self.pose_image_processor.crop_size
        views = [pose_vit_view(image, crop["height"], crop["width"]) for image in images]
        pose_pixel_values = self.pose_image_processor(
            views, do_resize=False, do_center_crop=False, return_tensors="np"
        )["pixel_values"]
        return {"pixel_values": pixel_values, "pose_pixel_values": pose_pixel_values}

    def mark_control_tokens(self, text: str) -> str:
        """
        Marks the control tokens in `text`, a string typed by a user, so that
        `processor(..., sanitize_control_tokens=True)` encodes them as plain text: a `<pose_query>`, `<image>`,
        `<p>` or `<pose_12>` typed by a user is then just text, never a placeholder or a pose span. (The chat
        route does this itself: `apply_chat_template(..., tokenize=True, sanitize_control_tokens=True)`.)

        Example:

        ```python
        >>> user_text = "what does <pose_query> mean?"
        >>> prompt = "Describe this pose: <pose> " + processor.mark_control_tokens(user_text)
        >>> inputs = processor(text=prompt, poses=[pose], sanitize_control_tokens=True)  # one pose, no query
        ```
        """
        return mark_user_text(self.tokenizer, self.chat_template, text)

    # ---------------------------------------------------------------------------------------------------
    # Decoding
    # ---------------------------------------------------------------------------------------------------

    def decode(
        self, token_ids: Any, skip_special_tokens: bool = True, pose_spans: str = "marker", **kwargs
    ) -> str:
        """
        Decodes one sequence of token ids.

        Args:
            token_ids (`torch.Tensor`, `np.ndarray` or `list[int]` of shape `(length,)`):
                The ids, e.g. a row of `generate`'s output.
            skip_special_tokens (`bool`, *optional*, defaults to `True`):
                Whether to drop special tokens (BOS, EOS, padding, `<image>`...). The pose marker of
                `pose_spans="marker"` and the spans of `pose_spans="keep"` stay.
            pose_spans (`str`, *optional*, defaults to `"marker"`):
                What to do with each pose span `<p> ... </p>` (an unterminated one runs to the end; codes that
                open the ids and end with `</p>`, the new tokens of a prompt that ended with `<p>`, are one too):
                `"marker"` writes `<pose>` in its place, `"remove"` drops it, `"keep"` decodes its tokens
                (`<p><pose_12>...</p>`). Get the codes themselves with
                [`~UniPoseProcessor.extract_pose_codes`].
            kwargs:
                Passed to the tokenizer's `decode` (e.g. `clean_up_tokenization_spaces`).

        Returns:
            `str`: the text.
        """
        row = as_id_row(token_ids, "token_ids")
        return self.pose_spans.decode([row], skip_special_tokens, pose_spans, **kwargs)[0]

    def batch_decode(
        self, sequences: Any, skip_special_tokens: bool = True, pose_spans: str = "marker", **kwargs
    ) -> list[str]:
        """
        Decodes a batch of sequences `(batch, length)`; see [`~UniPoseProcessor.decode`] for the arguments.

        Example:

        ```python
        >>> codes = torch.zeros(processor.num_pose_tokens, dtype=torch.long)
        >>> ids = processor(text=["Like this: <pose>"], poses=[codes])
        >>> processor.batch_decode(ids["input_ids"])
        ['Like this: <pose>']
        >>> processor.batch_decode(ids["input_ids"], pose_spans="remove")
        ['Like this: ']
        ```
        """
        rows = as_id_rows(sequences, "sequences")
        return self.pose_spans.decode(rows, skip_special_tokens, pose_spans, **kwargs)

    def post_process_image_text_to_text(
        self, generated_outputs, skip_special_tokens: bool = True, **kwargs
    ) -> list[str]:
        """The texts of `generate`'s output, with each pose span replaced by a `<pose>` marker by default."""
        return self.batch_decode(generated_outputs, skip_special_tokens=skip_special_tokens, **kwargs)

    def extract_pose_codes(self, sequences: Any) -> list[torch.LongTensor]:
        """
        The pose codes written in each sequence, e.g. the poses that `generate` produced.

        Args:
            sequences (`torch.Tensor`, `np.ndarray` or `list[list[int]]` of shape `(batch, length)`):
                Token ids.

        Returns:
            `list[torch.LongTensor]`: per sequence, a tensor `(num_spans, num_pose_tokens)` with the codes of
            its complete code spans in order (spans of `<pose>` or `<pose_query>` placeholders hold no codes
            and are left out; a sequence that opens with the codes and `</p>` of a span, the new tokens of a
            prompt that ended with `<p>`, counts that span first). Decode them to poses with the pose tokenizer.
        """
        return [self.pose_spans.codes(row) for row in as_id_rows(sequences, "sequences")]


# `save_pretrained` copies this file (and its relative imports) next to the processor files, so that
# `AutoProcessor.from_pretrained(..., trust_remote_code=True)` works where `unipose` is not installed.
UniPoseProcessor.register_for_auto_class()

__all__ = ["UniPoseProcessor"]
