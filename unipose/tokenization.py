"""
The UniPose vocabulary on top of any Hugging Face tokenizer, the chat template, and a tiny offline tokenizer.

UniPose appends to the text vocabulary, in this order: `<image>` (unless the tokenizer has it), `<pose>`,
`<pose_query>`, `<p>`, `</p>` and the pose codes `<pose_0>` ... `<pose_{K-1}>` with contiguous ids, all as
special tokens so that they are never split.
"""

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AddedToken, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from .checks import check_positive_int
from .processing_poses import (
    POSE_CODE_PATTERN,
    POSE_END_TOKEN,
    POSE_QUERY_TOKEN,
    POSE_START_TOKEN,
    POSE_TOKEN,
    pose_code_token,
)
from .processing_text import IMAGE_TOKEN, get_unipose_token_ids

# Mistral-instruct turns as LLaVA writes them (its `mistral_instruct` conversation), the prompt format of
# LLaVA-1.6-Mistral and of the published UniPose weights, which were trained on it:
# "<s>[INST] question [/INST] answer </s>[INST] ..." (a space before each EOS, as in their training labels).
# The system message opens the first user turn. Content is
# a string or a list of items: {"type": "text", "text": ...}, {"type": "image"} -> <image>, {"type": "pose"}
# -> <pose> (an input pose), {"type": "pose_query"} -> <pose_query> (a pose to produce); items are joined by
# spaces. Image and pose items may carry their value ({"type": "pose", "pose": pose}); the processor reads it,
# the template renders the placeholder only. `[/INST]` already ends every prompt where the answer starts, so
# `add_generation_prompt` adds nothing; a final assistant message "<p>" continued with
# `continue_final_message=True` asks for a pose answer. The answer and its EOS are marked with
# {% generation %} for assistant-only losses. The template writes the BOS, as Mistral's does; the processor
# adds no second one.
UNIPOSE_CHAT_TEMPLATE = r"""{%- macro render(content) -%}
{%- if content is string -%}
{{- content -}}
{%- else -%}
{%- for item in content -%}
{%- if not loop.first %} {% endif -%}
{%- if item.type == 'text' -%}
{{- item.text -}}
{%- elif item.type == 'image' -%}
{{- '<image>' -}}
{%- elif item.type == 'pose' -%}
{{- '<pose>' -}}
{%- elif item.type == 'pose_query' -%}
{{- '<pose_query>' -}}
{%- else -%}
{{- raise_exception('Unsupported content type "' ~ item.type ~ '": use text, image, pose or pose_query.') -}}
{%- endif -%}
{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{%- if messages and messages[0].role == 'system' -%}
{%- set system = render(messages[0].content) -%}
{%- set turns = messages[1:] -%}
{%- else -%}
{%- set system = '' -%}
{%- set turns = messages -%}
{%- endif -%}
{{- bos_token -}}
{%- for message in turns -%}
{%- if message.role not in ('user', 'assistant') or (message.role == 'user') != (loop.index0 is even) -%}
{{- raise_exception('After an optional system message, the roles must alternate user, assistant, user, ...; '
    ~ 'got "' ~ message.role ~ '" at turn ' ~ loop.index0 ~ '.') -}}
{%- endif -%}
{%- if message.role == 'user' -%}
{{- '[INST] ' -}}
{%- if loop.first and system -%}
{{- system + '\n\n' -}}
{%- endif -%}
{{- render(message.content) + ' [/INST]' -}}
{%- else -%}
{%- generation -%}
{{- ' ' + render(message.content) + ' ' + eos_token -}}
{%- endgeneration -%}
{%- endif -%}
{%- endfor -%}"""

# The corpus of the tiny tokenizer: body-pose descriptions and instructions in the style of the UniPose tasks.
TINY_CORPUS = (
    "[INST] Describe the pose of this person. [/INST]",
    "[INST] Generate the 3D pose that matches this description. [/INST]",
    "[INST] Estimate the SMPL pose of the person in the image. [/INST]",
    "[INST] How should the first pose change to become the second pose? [/INST]",
    "[INST] Edit the pose by following the instruction. [/INST]",
    "[INST] What is the difference between the two images? [/INST]",
    "The person is standing upright with both arms hanging down by the sides.",
    "The person is kneeling on the right knee while the left foot rests flat on the floor.",
    "She raises her left arm above her head and keeps the right arm close to the body.",
    "He is sitting on the ground with the legs crossed and the hands resting on the knees.",
    "The body leans forward slightly and the back is bent.",
    "Both elbows are bent at a right angle and the hands are in front of the chest.",
    "The left leg is extended to the side while the right leg supports the weight.",
    "The torso is twisted to the right and the head looks over the left shoulder.",
    "The person squats down with the knees wide apart and the heels on the ground.",
    "The right hand touches the left shoulder and the left hand is on the hip.",
    "The arms are stretched out horizontally, parallel to the floor.",
    "The head is tilted backward and the chin points up.",
    "The person lies on the back with the arms spread wide.",
    "One foot is lifted behind the body and the knee is bent.",
    "The hands are clasped together above the head.",
    "The left wrist is lower than the right wrist.",
    "The feet are shoulder-width apart and the knees are slightly bent.",
    "The person is walking forward, the right foot in front of the left one.",
    "The person is running with the left knee raised high and the right arm swinging forward.",
    "The person jumps with both arms up in the air.",
    "The person bends down to touch the toes with both hands.",
    "The right elbow rests on the right knee and the chin is on the hand.",
    "The person crouches with the back rounded and the head down.",
    "The pelvis is rotated to the left and the shoulders face forward.",
    "Raise your right arm until it is vertical.",
    "Lower your left arm so that it hangs next to your body.",
    "Bend your left knee more and move your foot backward.",
    "Straighten both legs and stand up.",
    "Turn your whole body to the left by about ninety degrees.",
    "Lean your torso backward a little.",
    "Move your hands closer together in front of your belly.",
    "Spread your legs further apart.",
    "Put your right hand on your head.",
    "Tilt your head to the right side.",
    "Rotate your shoulders so that you face the camera.",
    "Lift your left leg and bring the knee up to the height of the hip.",
    "Keep your arms straight and bring them down to shoulder height.",
    "Cross your arms over your chest.",
    "Extend your left arm forward and point at something in front of you.",
    "In the second pose the right arm is higher and the left knee is more bent.",
    "Compared to the first image, the person now kneels and looks down.",
    "The neck, the spine and the pelvis are aligned vertically.",
    "The left ankle is behind the right ankle and the toes point outward.",
    "Both collars are raised, the shoulders are shrugged up toward the ears.",
)


def add_unipose_tokens(tokenizer: PreTrainedTokenizerBase, codebook_size: int) -> dict[str, int]:
    """
    Adds the UniPose tokens to a tokenizer (in place) and returns their ids.

    The tokens are added as special tokens in the order `<image>` (unless already present), `<pose>`,
    `<pose_query>`, `<p>`, `</p>`, `<pose_0>` ... `<pose_{codebook_size - 1}>`. Calling it again is a no-op.
    Resize the language model's embeddings to `len(tokenizer)` afterwards.

    Args:
        tokenizer ([`PreTrainedTokenizerBase`]):
            Any Hugging Face tokenizer.
        codebook_size (`int`):
            Number of pose codes of the pose tokenizer (2,048 in the paper).

    Returns:
        `dict[str, int]`: `image_token_id`, `pose_token_id`, `pose_query_token_id`, `pose_start_token_id`,
        `pose_end_token_id` and `pose_code_token_offset` (the id of `<pose_0>`), ready for
        `UniPoseConfig(**token_ids, ...)`.

    Raises:
        `ValueError`: if the tokenizer already holds more pose codes than `codebook_size`, or if tokens it
        already
            holds would leave the code ids non-contiguous (checked before anything is added).

    Example:

    ```python
    >>> from transformers import AutoTokenizer
    >>> tokenizer = AutoTokenizer.from_pretrained("mistralai/Mistral-7B-Instruct-v0.2")
    >>> token_ids = add_unipose_tokens(tokenizer, codebook_size=2048)
    >>> token_ids["image_token_id"], token_ids["pose_code_token_offset"], len(tokenizer)
    (32000, 32005, 34053)
    ```
    """
    check_positive_int(codebook_size, "codebook_size")
    vocab = tokenizer.get_vocab()
    present_codes = [int(match.group(1)) for token in vocab if (match := POSE_CODE_PATTERN.fullmatch(token))]
    if present_codes and max(present_codes) >= codebook_size:
        raise ValueError(
            f"The tokenizer already holds pose codes up to {pose_code_token(max(present_codes))}, more than "
            f"`codebook_size`={codebook_size}."
        )
    wanted = [IMAGE_TOKEN, POSE_TOKEN, POSE_QUERY_TOKEN, POSE_START_TOKEN, POSE_END_TOKEN]
    wanted += [pose_code_token(code) for code in range(codebook_size)]
    new_tokens = [token for token in wanted if token not in vocab]
    # New tokens take the next ids in order: check the codes would be contiguous before changing anything.
    planned = {token: len(tokenizer) + index for index, token in enumerate(new_tokens)}
    planned_code_ids = [vocab.get(token, planned.get(token)) for token in wanted[5:]]
    if planned_code_ids != list(range(planned_code_ids[0], planned_code_ids[0] + codebook_size)):
        code = next(c for c, token_id in enumerate(planned_code_ids) if token_id != planned_code_ids[0] + c)
        raise ValueError(
            f"Adding the UniPose tokens would give {pose_code_token(code)} the id {planned_code_ids[code]} "
            f"instead of {planned_code_ids[0] + code}: the tokenizer already holds some of the tokens "
            f"({len(wanted) - len(new_tokens)} of them) in an order that leaves the pose codes "
            "non-contiguous. Start from the base tokenizer."
        )
    if new_tokens:
        tokenizer.add_tokens(
            [
                AddedToken(token, special=True, normalized=False, lstrip=False, rstrip=False)
                for token in new_tokens
            ],
            special_tokens=True,
        )
    token_ids, num_codes = get_unipose_token_ids(tokenizer)
    if num_codes != codebook_size:
        raise ValueError(
            f"Expected {codebook_size} pose codes in the tokenizer after adding them, found {num_codes}."
        )
    return token_ids


def build_tiny_tokenizer(
    codebook_size: int = 64,
    extra_corpus: Iterable[str] | None = None,
    vocab_size: int = 1000,
    model_max_length: int = 2048,
) -> PreTrainedTokenizerFast:
    """
    A small byte-level BPE tokenizer trained in memory (no download) on [`TINY_CORPUS`], with the UniPose
    tokens.

    Training is deterministic: the same arguments give the same vocabulary. The tokenizer has `<unk>`, `<s>`
    (prepended to every sequence, as Mistral's), `</s>` and `<pad>`, pads on the left and carries
    [`UNIPOSE_CHAT_TEMPLATE`].

    Args:
        codebook_size (`int`, *optional*, defaults to 64):
            Number of pose-code tokens.
        extra_corpus (`Iterable[str]`, *optional*):
            More training text (e.g. captions of a synthetic dataset), appended to the built-in corpus.
        vocab_size (`int`, *optional*, defaults to 1000):
            Upper bound of the BPE vocabulary before the UniPose tokens; a small corpus gives fewer tokens.
        model_max_length (`int`, *optional*, defaults to 2048):
            Longest sequence the tokenizer accepts.

    Returns:
        [`PreTrainedTokenizerFast`]: the tokenizer.
    """
    special_tokens = ["<unk>", "<s>", "</s>", "<pad>"]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([*TINY_CORPUS, *(extra_corpus or ())], trainer=trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", backend.token_to_id("<s>"))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        padding_side="left",
        model_max_length=model_max_length,
    )
    tokenizer.chat_template = UNIPOSE_CHAT_TEMPLATE
    add_unipose_tokens(tokenizer, codebook_size)
    return tokenizer


__all__ = ["TINY_CORPUS", "UNIPOSE_CHAT_TEMPLATE", "add_unipose_tokens", "build_tiny_tokenizer"]
