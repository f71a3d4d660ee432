"""
The seven UniPose tasks: what each reads from its record ([`TASK_SPECS`]) and its prompts, shared by training
(which builds conversations from them) and evaluation (which asks them).

A template is a prompt with slots: `{pose}`, `{pose_a}`, `{pose_b}` (input poses), `{image}`, `{image_a}`,
`{image_b}` (images), `{caption}` (a pose description, for Text-to-Pose) and `{instruction}` (a modification,
for Pose Editing). Pose and image slots become chat content items (`{"type": "pose"}`, `{"type": "image"}`),
which the chat template renders as the `<pose>` / `<image>` placeholders; text slots are written into the
text. Every slot stands on its own, between spaces, so that the rendered prompt reads exactly as the template.

Stages 1 and 2 use one fixed, simple template per task ([`SIMPLE_TEMPLATES`]); stage 3 draws from many
phrasings per task ([`INSTRUCTION_TEMPLATES`]), with the slots placed where a person would put them (the
poses or images first, in the middle, or last; in either order for the two-input tasks).

Example:

```python
>>> content, media = render_template(SIMPLE_TEMPLATES["pose_diff"])
>>> [item["type"] for item in content], media
(['text', 'pose', 'text', 'pose', 'text'], ['pose_a', 'pose_b'])
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TASKS = (
    "pose_to_text",
    "image_to_text",
    "pose_diff",
    "image_diff",
    "text_to_pose",
    "pose_estimation",
    "pose_editing",
)
TEMPLATE_STYLES = ("simple", "instruction")

POSE_SLOTS = ("pose", "pose_a", "pose_b")
IMAGE_SLOTS = ("image", "image_a", "image_b")
TEXT_SLOTS = ("caption", "instruction")
# The slots each task's templates hold, each exactly once.
TASK_SLOTS = {
    "pose_to_text": ("pose",),
    "image_to_text": ("image",),
    "pose_diff": ("pose_a", "pose_b"),
    "image_diff": ("image_a", "image_b"),
    "text_to_pose": ("caption",),
    "pose_estimation": ("image",),
    "pose_editing": ("pose", "instruction"),
}

_SLOT_PATTERN = re.compile(r"\{(" + "|".join(POSE_SLOTS + IMAGE_SLOTS + TEXT_SLOTS) + r")\}")

SIMPLE_TEMPLATES = {
    "pose_to_text": "Describe this pose: {pose}",
    "image_to_text": "{image} Describe the pose of the person in this image.",
    "pose_diff": "Pose A: {pose_a} Pose B: {pose_b} How should pose A change to become pose B?",
    "image_diff": "Image A: {image_a} Image B: {image_b} How should the person in A move to match B?",
    "text_to_pose": "Generate the pose described as follows: {caption}",
    "pose_estimation": "{image} Estimate the 3D pose of the person in this image.",
    "pose_editing": "Here is a pose: {pose} Modify it as follows: {instruction}",
}

INSTRUCTION_TEMPLATES = {
    "pose_to_text": (
        "Describe this pose: {pose}",
        "{pose} Describe the pose of this body in detail.",
        "What is the person doing with their body in this pose? {pose}",
        "Here is a 3D human pose: {pose} Write a description of it.",
        "Explain in words how the body is positioned in {pose} so that someone could reproduce it.",
        "{pose} How would you describe this posture to someone who cannot see it?",
        "Give a detailed account of the position of the limbs and torso in this pose: {pose}",
        "Look at the pose {pose} and tell me how the arms, legs and head are placed.",
        "Write a caption for the body pose {pose} that mentions every important joint.",
        "Can you put this pose into words? {pose}",
        "I captured the following pose: {pose} Please describe it.",
        "{pose} Describe this pose as if you were directing a model at a photo shoot.",
        "Summarize the body configuration shown in {pose} in a few sentences.",
        "Describe how the person stands, sits or lies in this pose: {pose}",
        "What does the body look like in {pose} from head to toe?",
        "Tell me about this pose. {pose}",
        "Please provide a description of the human pose {pose}",
        "{pose} What posture is this? Describe it in detail.",
        "Turn this SMPL pose into a natural-language description: {pose}",
        "Imagine you are explaining {pose} to a dance student. How is the body positioned?",
        "Describe the relative positions of the hands, feet and head in the pose {pose}",
        "Here is a body pose. {pose} Which way are the limbs bent and where are they pointing?",
        "Write one paragraph that describes the pose {pose}",
        "Given the 3D pose {pose} describe what the person's body is doing.",
        "{pose} Generate a description of this body posture.",
        "How is this person holding their body? {pose}",
        "Describe the pose below. {pose}",
        "Characterize the posture {pose} in plain language.",
        "Study this pose carefully: {pose} Now describe it in words.",
        "Could you describe the body pose {pose} for me?",
        "Go through each body part and say where it is in {pose}",
        "{pose} A person is in this pose. What does it look like?",
    ),
    "image_to_text": (
        "{image} Describe the pose of the person in this image.",
        "Describe the body pose of the person shown in {image}",
        "Look at this picture: {image} How is the person positioned?",
        "{image} What is the person doing with their arms and legs?",
        "Here is a photo. {image} Describe the person's posture in detail.",
        "Explain how the person in the image {image} is holding their body.",
        "{image} Write a description of the human pose in this image.",
        "In the image {image} how are the person's limbs and torso arranged?",
        "Describe the pose the person takes in this photo: {image}",
        "{image} Ignore the background and the clothing, and describe only the body pose.",
        "Can you describe the posture of the person in {image} for me?",
        "{image} Tell me how the person's body is positioned, from the head down to the feet.",
        "What pose is the person in? {image}",
        "Give a detailed description of the body pose visible in {image}",
        "{image} How would you describe this person's stance to someone who cannot see the picture?",
        "Caption the pose of the person in the following image. {image}",
        "Here is an image of a person: {image} Describe the position of their arms, legs and head.",
        "{image} Summarize the body posture of the person in a few sentences.",
        "Describe the human pose in {image} so that someone could copy it.",
        "Analyze the picture {image} and describe the pose of the person.",
        "{image} Which way are the person's limbs bent, and where do they point?",
        "Please write a pose description for this image: {image}",
        "What does the person's body look like in this image? {image}",
        "{image} Describe the person's pose as a coach would.",
        "Tell me about the pose in this photograph. {image}",
        "Describe the stance of the person in the image {image} in plain language.",
        "{image} Put the pose of this person into words.",
        "Observe the person in {image} and explain how their body is positioned.",
        "I took this picture: {image} What pose is the person holding?",
        "{image} Provide a detailed account of the person's posture.",
        "How is the person in {image} standing, sitting or lying?",
        "{image} Describe the pose of the body in this image, joint by joint.",
    ),
    "pose_diff": (
        "Pose A: {pose_a} Pose B: {pose_b} How should pose A change to become pose B?",
        "What should I change to go from the first pose to the second? {pose_a} {pose_b}",
        "{pose_a} {pose_b} Give instructions that turn the first pose into the second.",
        "I am in this pose: {pose_a} I want to end up in this one: {pose_b} What do I have to move?",
        "Describe how to modify the pose {pose_a} so that it matches {pose_b}",
        "Compare the two poses {pose_a} and {pose_b} and explain how to get from the first to the second.",
        "Here is a starting pose: {pose_a} And here is the target: {pose_b} How do I get there?",
        "{pose_a} This is my current pose. {pose_b} This is the pose I need. Tell me what to change.",
        "Tell me how to move from {pose_a} into {pose_b} step by step.",
        "List the changes that transform pose {pose_a} into pose {pose_b} one body part at a time.",
        "Source pose: {pose_a} Target pose: {pose_b} Explain the modifications needed.",
        "{pose_a} {pose_b} What is the difference between these two poses, written as instructions?",
        "As a coach, tell someone in the pose {pose_a} how to adjust their body to reach {pose_b} exactly.",
        "Given the initial pose {pose_a} and the final pose {pose_b} describe the movement in between.",
        "What adjustments turn the first pose into the second? First: {pose_a} Second: {pose_b}",
        "First pose {pose_a} second pose {pose_b} Explain what changes between them.",
        "Write a correction that brings {pose_a} closer to {pose_b} in every joint.",
        "Before: {pose_a} After: {pose_b} What did the person change?",
        "{pose_a} Now compare it with {pose_b} How should the body be modified?",
        "Explain, in terms of arm, leg and torso movements, how {pose_a} becomes {pose_b} in the end.",
        "I start here: {pose_a} Guide me to this pose: {pose_b}",
        "Give me feedback on my pose {pose_a} given that the goal is {pose_b} for this exercise.",
        "Describe the modification that leads from {pose_a} to {pose_b} in a few sentences.",
        "How does the second pose differ from the first, as an instruction to the person? {pose_a} {pose_b}",
        "Pose 1: {pose_a} Pose 2: {pose_b} Instruct the person to change from pose 1 to pose 2.",
        "{pose_a} is where the person is, and {pose_b} is where they should be. What should they do?",
        "Consider {pose_a} and {pose_b} Which body parts must move and how, from the first to the second?",
        "Tell the person in the first pose how to reach the second one. {pose_a} {pose_b}",
        "The target is {pose_b} and the current pose is {pose_a} What has to change?",
        "Here are two poses, the original {pose_a} and the modified {pose_b} Describe the modification.",
        "Write the steps to change the body from {pose_a} into {pose_b} in plain language.",
        "Original: {pose_a} Edited: {pose_b} What instruction produced the edited pose?",
    ),
    "image_diff": (
        "{image_a} {image_b} How does the person's pose change from the first image to the second?",
        "Image A: {image_a} Image B: {image_b} What should the person in image A do to match image B?",
        "Compare the poses in {image_a} and {image_b} and describe how to go from the first to the second.",
        "Here is the first photo: {image_a} and here is the second: {image_b} Explain the change in pose.",
        "What is the difference in body pose between {image_a} and {image_b} written as instructions?",
        "{image_a} This is the starting pose. {image_b} This is the target pose. Describe the modification.",
        "Tell the person in the first image how to reach the pose of the second. {image_a} {image_b}",
        "Before: {image_a} After: {image_b} How did the person change their pose?",
        "Look at these two pictures: {image_a} {image_b} How does one pose turn into the next?",
        "Describe the movements that lead from the pose in {image_a} to the pose in {image_b} briefly.",
        "Given the photos {image_a} and {image_b} explain how the body pose differs.",
        "{image_a} {image_b} Which body parts moved between the two images, and how?",
        "First image: {image_a} Second image: {image_b} Write the pose correction between them.",
        "As a coach, explain how the person in {image_a} should adjust to match {image_b} exactly.",
        "I am posing like this: {image_a} but I should pose like this: {image_b} What do I need to change?",
        "Explain the change of posture between the two images. {image_a} {image_b}",
        "{image_a} Now look at {image_b} How should the body move to go from the first pose to the second?",
        "Source image: {image_a} Target image: {image_b} List the pose changes needed.",
        "Write the steps that take the person from the pose in {image_a} to the one in {image_b} in order.",
        "Describe how the pose in {image_b} differs from that in {image_a} as advice to the first person.",
        "What would you tell the first person so that they end up in the second pose? {image_a} {image_b}",
        "Photo 1: {image_a} Photo 2: {image_b} How should the pose in photo 1 be modified?",
        "{image_a} {image_b} Give a short instruction describing the pose change.",
        "Here are two images of people in different poses, {image_a} and {image_b} Explain the change.",
        "Compare the body positions shown in {image_a} and {image_b} and explain the modification.",
        "Starting pose shown in {image_a} target pose shown in {image_b} Describe the movement.",
        "How must the limbs and torso move to turn the pose of {image_a} into that of {image_b} exactly?",
        "Guide the person in {image_a} into the pose from {image_b} with clear instructions.",
        "{image_a} That was the first pose. {image_b} That is the second. What changed?",
        "Please describe the pose difference between the following images. {image_a} {image_b}",
        "The person should go from the pose in {image_a} to the pose in {image_b} Tell them how.",
        "Original pose: {image_a} Modified pose: {image_b} What instruction leads to the modified pose?",
    ),
    "text_to_pose": (
        "Generate the 3D pose described as follows: {caption}",
        "{caption} Generate this pose.",
        "Create a body pose that matches this description: {caption}",
        "Here is a description of a pose: {caption} Produce the corresponding SMPL pose.",
        "Read this description and output the matching pose. {caption}",
        "Can you generate a pose for the following description? {caption}",
        "Description: {caption} Pose:",
        "Turn this text into a 3D human pose: {caption}",
        "{caption} What does this pose look like? Generate it.",
        "Pose the body according to this description: {caption}",
        "Give me the SMPL pose for the description below. {caption}",
        "I need a 3D pose that fits this caption: {caption}",
        "Produce a human pose in which the following is true. {caption}",
        "{caption} Please create the pose described above.",
        "Synthesize a body pose from this text: {caption}",
        "Generate the pose that someone following these words would take: {caption}",
        "Build the 3D body pose described here. {caption}",
        "{caption} Output the corresponding human pose.",
        "Make the body take the pose described in the following text. {caption}",
        'Given the description "{caption}" generate the pose.',
        "What is the 3D pose for this description? {caption}",
        "Convert the following pose description into a pose: {caption}",
        "{caption} Show this pose as a 3D body.",
        "Here is how a person is positioned: {caption} Generate the pose.",
        "Create the pose that this caption describes. {caption}",
        "Write the pose tokens of the body described here: {caption}",
        "Imagine a person in the following pose and generate it. {caption}",
        "According to this description, what pose is the person in? {caption}",
        "Generate a 3D human pose. Description: {caption}",
        "{caption} Can you produce a pose like this?",
        "A coach describes a pose as follows: {caption} Generate the pose the coach means.",
        "Reconstruct the body pose from this text. {caption}",
    ),
    "pose_estimation": (
        "{image} Estimate the 3D pose of the person in this image.",
        "Estimate the SMPL body pose of the person shown in {image} as accurately as possible.",
        "Here is a photo: {image} Recover the person's 3D body pose.",
        "{image} Generate the 3D pose of this person.",
        "Predict the body pose of the person in this picture. {image}",
        "Look at {image} and output the 3D pose of the person.",
        "Reconstruct the human pose in this image: {image}",
        "{image} What 3D pose is the person in? Output it.",
        "Estimate the pose. {image}",
        "Can you infer the 3D body pose of the person in the image? {image}",
        "{image} Produce the SMPL pose that matches the person in this image.",
        "Recover the 3D human pose from the following image. {image}",
        "What pose does the person in this photo hold? Give the 3D pose. {image}",
        "{image} Lift the person in this image to a 3D pose.",
        "Given the image {image} estimate the person's body pose.",
        "Output the 3D pose of the person visible in {image} without describing it.",
        "Here is an image of a person: {image} Generate their pose in 3D.",
        "{image} Estimate the rotation of every joint of this person as a 3D pose.",
        "Please perform 3D human pose estimation on this image: {image}",
        "Translate the person in {image} into a 3D body pose.",
        "{image} Show me the 3D pose of the person.",
        "Determine the SMPL body pose of the person in the photo. {image}",
        "From this image, {image} estimate the 3D pose of the person.",
        "What is this person's 3D pose? {image}",
        "{image} Reconstruct the body pose of the person shown.",
        "Infer the 3D joint rotations of the person in {image} and output the pose.",
        "I took this photo: {image} What 3D pose is the person in?",
        "Estimate the body posture in this image as an SMPL pose. {image}",
        "{image} Give me the 3D human pose.",
        "Look at the person in this picture and generate the same pose in 3D. {image}",
        "Recover the pose of the human body shown in {image} in 3D.",
        "{image} Predict the 3D pose of the person in the image.",
    ),
    "pose_editing": (
        "Here is a pose: {pose} Modify it as follows: {instruction}",
        "{pose} Apply this instruction to the pose: {instruction}",
        "Edit the pose {pose} according to this instruction: {instruction}",
        "Starting from {pose} follow these directions and show the resulting pose. {instruction}",
        "Instruction: {instruction} Original pose: {pose} Edited pose:",
        "I am in this pose: {pose} My coach says: {instruction} What pose will I be in?",
        "Change the pose {pose} so that it follows this correction. {instruction}",
        "{instruction} Apply this to {pose} and generate the new pose.",
        "Take the pose {pose} and do the following: {instruction}",
        "Here is the current pose. {pose} Here is the requested change. {instruction} Generate the result.",
        "Modify the body pose {pose} as described: {instruction}",
        "{pose} What does this pose become after the following change? {instruction}",
        'Given the pose {pose} and the instruction "{instruction}" generate the modified pose.',
        "Edit this pose: {pose} Edit: {instruction}",
        "Update the pose {pose} following the instruction below. {instruction}",
        "Original pose: {pose} Change request: {instruction} Produce the edited pose.",
        "{instruction} The pose to change is {pose}",
        "Please adjust {pose} according to this feedback: {instruction}",
        "Apply the correction to the pose and output the result. Pose: {pose} Correction: {instruction}",
        '{pose} Someone in this pose hears: "{instruction}" Show the pose they end up in.',
        "Apply the following change to the pose {pose} and generate the result. {instruction}",
        "Follow the instruction to transform the pose. {pose} {instruction}",
        "Here is a body pose {pose} and an instruction to change it: {instruction} What is the new pose?",
        "Revise the pose {pose} so that it satisfies this instruction. {instruction}",
        "{pose} {instruction} Generate the edited pose.",
        "Pose to edit: {pose} Instruction: {instruction}",
        "Imagine the person in {pose} follows this advice: {instruction} Generate the resulting pose.",
        "Starting pose {pose} modification: {instruction} Output the modified pose.",
        "Correct the pose {pose} using this feedback. {instruction}",
        "How does the pose {pose} look after this edit? {instruction}",
        "Transform {pose} according to the following text and output the result. {instruction}",
        "{instruction} Starting from the pose {pose} generate what the body looks like afterwards.",
    ),
}


def templates_for(task: str, style: str) -> tuple[str, ...]:
    """The templates of `task` in `style` (`"simple"`: one fixed template; `"instruction"`: all phrasings)."""
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}, got {task!r}.")
    if style == "simple":
        return (SIMPLE_TEMPLATES[task],)
    if style == "instruction":
        return INSTRUCTION_TEMPLATES[task]
    raise ValueError(f"`style` must be one of {TEMPLATE_STYLES}, got {style!r}.")


def template_slots(template: str) -> list[str]:
    """The slots of `template` in order of appearance."""
    return _SLOT_PATTERN.findall(template)


def render_template(template: str, text: str | None = None) -> tuple[list[dict], list[str]]:
    """
    Turns a template into the content of a user chat message.

    Args:
        template (`str`):
            A template with pose / image slots and at most one text slot (`{caption}` or `{instruction}`).
        text (`str`, *optional*):
            The text written into the text slot; required when the template has one.

    Returns:
        `tuple[list[dict], list[str]]`: the content items (`{"type": "text", "text": ...}`, `{"type":
        "pose"}`, `{"type": "image"}`, each with a `text` key, `None` for media) and the media slots in order
        of appearance, which is the order the poses / images must be given in.
    """
    slots = template_slots(template)
    text_slots = [slot for slot in slots if slot in TEXT_SLOTS]
    if len(text_slots) > 1:
        raise ValueError(f"A template holds at most one text slot, got {text_slots} in {template!r}.")
    if text_slots and text is None:
        raise ValueError(f"The template {template!r} has the slot {{{text_slots[0]}}}: pass its `text`.")
    if not text_slots and text is not None:
        raise ValueError(
            f"`text` was given but the template {template!r} has no caption or instruction slot."
        )
    content, media, pending, last = [], [], "", 0
    for match in _SLOT_PATTERN.finditer(template):
        slot = match.group(1)
        pending += template[last : match.start()]
        last = match.end()
        if slot in TEXT_SLOTS:
            # Written into the surrounding text, never parsed: a caption may hold braces of its own.
            pending += text.strip()
            continue
        _append_text(content, pending)
        content.append({"type": "pose" if slot in POSE_SLOTS else "image", "text": None})
        media.append(slot)
        pending = ""
    _append_text(content, pending + template[last:])
    return content, media


def _append_text(content: list[dict], text: str):
    # The chat template joins content items with single spaces.
    text = text.strip()
    if text:
        content.append({"type": "text", "text": text})


@dataclass(frozen=True)
class TaskSpec:
    """
    How a task reads its record.

    Args:
        kind (`str`): the record kind it reads.
        media (`dict[str, str]`): template slot -> record column of each input pose or image.
        text_slot (`str`, *optional*): the template slot that receives one of the record's texts.
        target (`str`, *optional*): record column of the pose the answer produces; `None` for a text answer
            (then the answer is one of the record's texts).
    """

    kind: str
    media: dict
    text_slot: str | None = None
    target: str | None = None

    @property
    def needs_text(self) -> bool:
        return self.text_slot is not None or self.target is None


TASK_SPECS = {
    "pose_to_text": TaskSpec("pose_text", {"pose": "pose"}),
    "text_to_pose": TaskSpec("pose_text", {}, text_slot="caption", target="pose"),
    "pose_diff": TaskSpec("pose_pair", {"pose_a": "pose_a", "pose_b": "pose_b"}),
    "pose_editing": TaskSpec("pose_pair", {"pose": "pose_a"}, text_slot="instruction", target="pose_b"),
    "image_to_text": TaskSpec("image_pose", {"image": "image"}),
    "pose_estimation": TaskSpec("image_pose", {"image": "image"}, target="pose"),
    "image_diff": TaskSpec("image_pair", {"image_a": "image_a", "image_b": "image_b"}),
}
TASKS_BY_KIND = {
    kind: tuple(task for task in TASKS if TASK_SPECS[task].kind == kind)
    for kind in ("pose_text", "pose_pair", "image_pose", "image_pair")
}
TEXT_OUTPUT_TASKS = tuple(task for task in TASKS if TASK_SPECS[task].target is None)
# Text in, text out: the tasks the stock `trl sft` command can train once poses are written as code tokens.
TEXT_ONLY_TASKS = tuple(
    task for task in TEXT_OUTPUT_TASKS if not any(slot in IMAGE_SLOTS for slot in TASK_SPECS[task].media)
)



__all__ = [
    "IMAGE_SLOTS",
    "INSTRUCTION_TEMPLATES",
    "POSE_SLOTS",
    "SIMPLE_TEMPLATES",
    "TASKS",
    "TASKS_BY_KIND",
    "TASK_SLOTS",
    "TASK_SPECS",
    "TEXT_ONLY_TASKS",
    "TEXT_OUTPUT_TASKS",
    "TaskSpec",
    "TEMPLATE_STYLES",
    "TEXT_SLOTS",
    "render_template",
    "template_slots",
    "templates_for",
]
