"""
The `image-text-to-text` pipeline of UniPose: transformers' pipeline, with the poses each answer wrote.

transformers' [`ImageTextToTextPipeline`] keeps only the generated token ids, so a pose answer comes back as
text that ends where the pose starts. [`UniPosePipeline`] asks `generate` for its poses as well and returns
them beside the text:

```python
>>> from transformers import pipeline
>>> pipe = pipeline("image-text-to-text", model="path/to/unipose", trust_remote_code=True)
>>> question = [{"type": "text", "text": "Describe this pose:"}, {"type": "pose", "pose": pose}]
>>> chat = [{"role": "user", "content": question}]
>>> pipe(text=chat)[0]["generated_text"][-1]  # the chat with the assistant's answer appended
{'role': 'assistant', 'content': 'The person is standing ...'}
>>> forced = [
...     {"role": "user", "content": "Generate the pose described as follows: a person kneeling."},
...     {"role": "assistant", "content": "<p>"},  # the answer opens a pose: it is a pose
... ]
>>> pipe(text=forced)[0]["poses"].shape  # SMPL-H axis-angle of each pose of the answer
torch.Size([1, 22, 3])
```

Every UniPose checkpoint saved with its processor carries this file and names it in its config
(`custom_pipelines`), so `pipeline(..., trust_remote_code=True)` finds it where `unipose` is not installed.
With the package installed, `pipeline(..., pipeline_class=UniPosePipeline)` needs no remote code.
"""

import json
import os
from collections.abc import Sized

import torch
from torch.utils.data import DataLoader
from transformers.pipelines.base import no_collate_fn
from transformers.pipelines.image_text_to_text import Chat, ImageTextToTextPipeline, ReturnType
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

# Inputs of one request that hold one row per prompt token (left-padded when requests are batched) and inputs
# that hold one row per image or pose (concatenated).
_TOKEN_INPUTS = {"input_ids": "pad", "attention_mask": 0}
_ITEM_INPUTS = ("pixel_values", "pose_pixel_values", "pose_values")
PIPELINE_TASK = "image-text-to-text"


class UniPosePipeline(ImageTextToTextPipeline):
    r"""
    [`ImageTextToTextPipeline`] for UniPose: takes prompts or chats with images and poses, and returns each
    answer's text and poses.

    Inputs are those of transformers' pipeline. In a chat, a pose is a content item `{"type": "pose",
    "pose": pose}` (SMPL-H axis-angle `(22, 3)`, rotation matrices `(22, 3, 3)`, 6D `(22, 6)`, or integer
    codes); a final assistant message whose content is `"<p>"` makes the answer a pose. A plain prompt takes
    its poses as `poses=[...]` (one prompt at a time) and ends with `<p>` to ask for a pose.

    Returns, per input, a `dict` with
    - **generated_text** -- the chat with the answer (or the prompt and the answer, or the answer alone with
      `return_full_text=False`); each pose of the answer is written as a `<pose>` marker;
    - **poses** (`torch.FloatTensor` of shape `(num_poses, 22, 3)`) -- the poses of the answer, SMPL-H
      axis-angle, in order;
    - **pose_codes** (`torch.LongTensor` of shape `(num_poses, num_pose_tokens)`) -- their codes;
    - **input_text** -- the input, and **generated_token_ids** instead of the text with `return_tensors=True`.

    Requests can be batched (`batch_size=`): each one gets what it would get alone, whether it writes text or
    a pose.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if getattr(self.processor, "pose_start_token_id", None) is None:
            raise TypeError(
                f"{type(self).__name__} needs a UniPose processor (with pose tokens), got "
                f"{type(self.processor).__name__}."
            )

    def check_model_type(self, supported_models):
        # The pipeline is registered for UniPose checkpoints only: the class is the checkpoint's own.
        if not hasattr(self.model.config, "pose_start_token_id"):
            raise TypeError(
                f"{type(self).__name__} runs UniPose models, got a {type(self.model).__name__} whose config "
                "has no `pose_start_token_id`."
            )

    @staticmethod
    def registration() -> dict:
        """The entry of a checkpoint's `config.custom_pipelines` by which `pipeline(...)` loads this class."""
        return {
            PIPELINE_TASK: {
                "impl": f"{UniPosePipeline.__module__.rsplit('.', 1)[-1]}.{UniPosePipeline.__name__}",
                "pt": ["AutoModelForImageTextToText"],
                "type": "multimodal",
            }
        }

    @staticmethod
    def register_in_config(save_directory) -> None:
        """Names this pipeline in the `config.json` of `save_directory`, if there is one (`registration`)."""
        config_file = os.path.join(save_directory, "config.json")
        if not os.path.isfile(config_file):
            return
        with open(config_file, encoding="utf-8") as handle:
            config = json.load(handle)
        pipelines, registration = config.get("custom_pipelines", {}), UniPosePipeline.registration()
        if any(pipelines.get(task) != entry for task, entry in registration.items()):
            config["custom_pipelines"] = {**pipelines, **registration}
            with open(config_file, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(config, indent=2, sort_keys=True) + "\n")

    def save_pretrained(self, save_directory, **kwargs):
        """Saves the model and the processor (which writes this pipeline beside them and registers it)."""
        self.model.save_pretrained(save_directory, **kwargs)
        self.processor.save_pretrained(save_directory, **kwargs)

    # ------------------------------------------------------------------------------------------------------

    def _forward(self, model_inputs, generate_kwargs=None):
        prompt_text = model_inputs.pop("text")
        generate_kwargs = self._prepare_generate_kwargs(
            dict(generate_kwargs or {}), return_dict_in_generate=True
        )
        output = self.model.generate(**model_inputs, **generate_kwargs)
        input_ids = model_inputs["input_ids"]
        # One entry per prompt, which batching splits into requests: its `num_return_sequences` answers.
        num_prompts = input_ids.shape[0]
        per_prompt = output.sequences.shape[0] // num_prompts
        return {
            "generated_sequence": output.sequences.view(num_prompts, per_prompt, -1),
            "input_ids": input_ids,
            "prompt_text": prompt_text,
            "poses": _group(output.poses, per_prompt),
            "pose_codes": _group(output.pose_codes, per_prompt),
        }

    def postprocess(
        self,
        model_outputs,
        return_type=ReturnType.FULL_TEXT,
        continue_final_message=None,
        skip_special_tokens=None,
        **postprocess_kwargs,
    ):
        postprocess_kwargs.pop("tools", None)
        prompts = model_outputs["prompt_text"]
        # Usually one request (a batch of one, or a row of a split batch); a request of several prompts with
        # their images gives a row each.
        prompts = [prompts] if isinstance(prompts, (str, Chat)) else list(prompts)
        # A split batch gives one prompt's tuple of answers' poses, a whole request a list of them.
        poses, pose_codes = model_outputs["poses"], model_outputs["pose_codes"]
        poses, pose_codes = ([poses], [pose_codes]) if isinstance(poses, tuple) else (poses, pose_codes)
        decode_kwargs = {"skip_special_tokens": skip_special_tokens is not False, **postprocess_kwargs}
        return [
            self._record(
                prompt,
                sequence,
                model_outputs["input_ids"][row],
                poses[row][answer],
                pose_codes[row][answer],
                return_type,
                continue_final_message,
                decode_kwargs,
            )
            for row, prompt in enumerate(prompts)
            for answer, sequence in enumerate(model_outputs["generated_sequence"][row])
        ]

    def _record(
        self,
        prompt,
        sequence,
        prompt_ids,
        poses,
        pose_codes,
        return_type,
        continue_final_message,
        decode_kwargs,
    ) -> dict:
        """The result of one prompt: `sequence` is its row of `generate`'s output, `prompt_ids` its input."""
        record = {
            "input_text": prompt.messages if isinstance(prompt, Chat) else prompt,
            "poses": poses,
            "pose_codes": pose_codes,
        }
        if return_type == ReturnType.TENSORS:
            return {**record, "generated_token_ids": sequence}
        # A prompt that ends with `<p>` opened the answer's first pose: its span starts in the prompt.
        pose_start = self.processor.pose_start_token_id
        opened = bool(prompt_ids[-1] == pose_start)
        answer_ids = sequence[len(prompt_ids) :].tolist()
        answer = self.processor.decode([pose_start] * opened + answer_ids, **decode_kwargs)
        if return_type == ReturnType.NEW_TEXT:
            return {**record, "generated_text": answer}
        marker = self.processor.tokenizer.convert_ids_to_tokens(pose_start)
        if isinstance(prompt, str):
            text = prompt.rstrip().removesuffix(marker) if opened else prompt
            return {**record, "generated_text": text + answer}
        messages = list(prompt.messages)
        if continue_final_message is None:
            continue_final_message = messages[-1]["role"] == "assistant"
        if continue_final_message:
            final = messages[-1]
            messages[-1] = {**final, "content": _continue(final["content"], answer, opened, marker)}
        else:
            messages.append({"role": "assistant", "content": answer.strip()})
        return {**record, "generated_text": messages}

    # ------------------------------------------------------------------------------------------------------

    def get_iterator(
        self, inputs, num_workers: int, batch_size: int, preprocess_params, forward_params, postprocess_params
    ):
        # As transformers' pipeline, except for the collate function: transformers' pads every tensor along
        # its second axis, whereas images and poses are concatenated.
        if isinstance(inputs, Sized):
            dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        else:
            dataset, num_workers = (
                PipelineIterator(inputs, self.preprocess, preprocess_params),
                min(num_workers, 1),
            )
        collate_fn = no_collate_fn if batch_size == 1 else self._collate
        loader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=collate_fn)
        model_iterator = PipelineIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)

    def _collate(self, requests: list[dict]) -> dict:
        """Preprocessed requests -> one batch: token inputs left-padded, images and poses concatenated."""
        batch = {"text": [request["text"] for request in requests]}
        length = max(request["input_ids"].shape[-1] for request in requests)
        pad_token_id = self.processor.tokenizer.pad_token_id
        for key, fill in _TOKEN_INPUTS.items():
            if key not in requests[0]:
                continue
            value = pad_token_id if fill == "pad" else fill
            batch[key] = torch.stack(
                [
                    torch.nn.functional.pad(
                        request[key][0], (length - request[key].shape[-1], 0), value=value
                    )
                    for request in requests
                ]
            )
        for key in _ITEM_INPUTS:
            values = [request[key] for request in requests if key in request]
            if values:
                batch[key] = torch.cat(values)
        unknown = {key for request in requests for key in request} - {*batch, *_TOKEN_INPUTS, *_ITEM_INPUTS}
        if unknown:
            raise ValueError(
                f"{type(self).__name__} cannot batch the processor outputs {sorted(unknown)}; expected only "
                f"{sorted({*_TOKEN_INPUTS, *_ITEM_INPUTS})}. Pass `batch_size=1`."
            )
        return batch


def _continue(content, answer: str, opened: bool, marker: str):
    """The final message's content followed by the answer; a `<p>` that opened the answer's pose is part of
    the answer's `<pose>` marker."""
    if isinstance(content, str):
        return (content.rstrip().removesuffix(marker) if opened else content) + answer
    content = list(content)
    for index in range(len(content) - 1, -1, -1):
        if content[index].get("type") == "text":
            text = content[index]["text"]
            text = text.rstrip().removesuffix(marker) if opened else text
            content[index] = {**content[index], "text": text + answer}
            return content
    return [*content, {"type": "text", "text": answer}]


def _group(values: list, size: int) -> list[tuple]:
    """`values` of consecutive answers, `size` per prompt, as one tuple per prompt."""
    return [tuple(values[start : start + size]) for start in range(0, len(values), size)]


__all__ = ["UniPosePipeline"]
