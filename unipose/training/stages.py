# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
A run of stage 1, 2 or 3 as `train/train_unipose.py` sets it up: its arguments ([`UniPoseScriptArguments`],
read beside TRL's `SFTConfig` and `ModelConfig` by [`stage_argument_parser`]), the checks made before anything
is built ([`check_stage_arguments`]), the model and processor it starts from ([`load_model_and_processor`]:
the previous stage's output, or the tiny random model of the CPU recipes), its LoRA configuration
([`stage_lora_config`]), what its model card says about it ([`training_run`]) and the model its adapter is
merged into ([`stage_input_model`]). The trainer and the saved outputs are `unipose.training.sft`'s.
"""

import functools
import shlex
from dataclasses import asdict, dataclass, field, fields

import torch
from trl import ModelConfig, SFTConfig

from ..arguments import ScriptArgumentParser
from ..checkpoints import RunSignature
from ..files import resolve_model_path
from ..modeling_unipose import UniPoseForConditionalGeneration
from ..pose_sampler import sample_poses
from ..processing_unipose import UniPoseProcessor
from ..rotations import to_rotation_6d
from ..testing import tiny_model_and_processor
from .model_cards import TrainingRun, recipe_settings
from .sft import STAGE_PLANS, STAGES, stage_peft_config
from .tasks import TaskMixtureComponent

# The script as the model cards name it.
SCRIPT = "train/train_unipose.py"
# Procedural poses whose encoder outputs give the tiny model's codebook (CPU recipes).
TINY_CODEBOOK_POSES = 256


@dataclass
class UniPoseScriptArguments:
    """
    Arguments of the UniPose training stages.

    Args:
        stage (`int`):
            1 (pose-text alignment: LoRA, new token rows, pose queries), 2 (the projector) or 3 (instruction
            tuning: projector, LoRA, new token rows, pose queries).
        datasets (`list[TaskMixtureComponent]`):
            The corpora of the mixture: `path`, `split`, `tasks`, `weight` (see `unipose.training.tasks`).
        template_style (`str`, *optional*):
            `"simple"` (one prompt per task) or `"instruction"` (many phrasings); stages 1-2 use `"simple"`
            and stage 3 `"instruction"` unless set.
        mixture_seed (`int`, *optional*):
            Seed of the examples' draws (records, templates, captions); the training `seed` when unset.
        tiny_model_seed (`int`, *optional*):
            Start from the tiny random model of `unipose.testing` built with this seed instead of
            `model_name_or_path` (CPU recipes and tests).
        train_language_model (`bool`, *optional*, defaults to `False`):
            In stages 1 and 3, train every weight of the language model (with `use_peft: false`) instead of a
            LoRA adapter: for a language model trained from scratch, such as UniPose-Tiny's.
        train_vision_towers (`list[str]`, *optional*):
            In stages 2 and 3, train these towers too (`vision_tower`: CLIP, `pose_vision_tower`: the pose
            ViT): for towers without pretraining.
    """

    stage: int = field(metadata={"help": "Training stage: 1, 2 or 3.", "choices": list(STAGES)})
    datasets: list[TaskMixtureComponent] = field(
        default_factory=list, metadata={"help": "Corpora of the task mixture (path, split, tasks, weight)."}
    )
    template_style: str | None = field(
        default=None,
        metadata={
            "help": "Prompt templates: 'simple' or 'instruction'.",
            "choices": ["simple", "instruction"],
        },
    )
    mixture_seed: int | None = field(default=None, metadata={"help": "Seed of the mixture's draws."})
    tiny_model_seed: int | None = field(
        default=None, metadata={"help": "Start from the tiny model with this seed."}
    )
    train_language_model: bool = field(
        default=False, metadata={"help": "Stages 1 and 3: train the whole language model instead of LoRA."}
    )
    train_vision_towers: list[str] = field(
        default_factory=list,
        metadata={"help": "Stages 2 and 3: also train these towers ('vision_tower', 'pose_vision_tower')."},
    )

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"`stage` must be one of {STAGES}, got {self.stage!r}.")
        if not self.datasets:
            raise ValueError("`datasets` is empty: list the corpora of the task mixture (see the recipes).")
        self.datasets = [
            TaskMixtureComponent(**entry) if isinstance(entry, dict) else entry for entry in self.datasets
        ]
        if self.template_style is None:
            self.template_style = "instruction" if self.stage == 3 else "simple"


def stage_dataclass_types() -> tuple[type, ...]:
    """The argument dataclasses of a stage: [`UniPoseScriptArguments`], `trl.SFTConfig`, `trl.ModelConfig`."""
    return (UniPoseScriptArguments, SFTConfig, ModelConfig)


def stage_argument_parser(prog: str | None = None) -> ScriptArgumentParser:
    """The parser of a stage's recipe (`--config`) and command line: unknown keys are errors."""
    return ScriptArgumentParser(stage_dataclass_types(), prog=prog)


# `trl.ModelConfig` settings that a stage does not apply: the stage's plan decides what trains and how the adapter
# is made (`stage_peft_config`), and the model loads unquantised.
UNAPPLIED_MODEL_SETTINGS = (
    "lora_target_parameters",
    "lora_modules_to_save",
    "lora_task_type",
    "load_in_8bit",
    "load_in_4bit",
    "bnb_4bit_quant_type",
    "use_bnb_nested_quant",
    "bnb_4bit_quant_storage",
)


def check_stage_arguments(script_args: UniPoseScriptArguments, model_args) -> bool:
    """Whether the stage trains a LoRA adapter, after refusing a `use_peft` that says otherwise, settings of
    `trl.ModelConfig` that a stage does not apply, and a `model_name_or_path` folder that does not exist (before
    anything is built)."""
    defaults = {field.name: field.default for field in fields(ModelConfig)}
    changed = {
        name: getattr(model_args, name)
        for name in UNAPPLIED_MODEL_SETTINGS
        if getattr(model_args, name) != defaults[name]
    }
    if changed:
        raise ValueError(
            f"UniPose's stages do not apply {changed}: the stage decides what trains and builds its adapter, and "
            f"the model loads unquantised. Remove these keys (their defaults: "
            f"{ {name: defaults[name] for name in changed} })."
        )
    trains_adapter = STAGE_PLANS[script_args.stage].lora and not script_args.train_language_model
    if model_args.use_peft != trains_adapter:
        raise ValueError(
            f"Stage {script_args.stage} {'trains' if trains_adapter else 'does not train'} a LoRA adapter: "
            f"set `use_peft: {str(trains_adapter).lower()}` (got {model_args.use_peft})."
        )
    if model_args.model_name_or_path is not None:
        resolve_model_path(model_args.model_name_or_path, "model_name_or_path")
    return trains_adapter


def tiny_model_and_processor_for_training(seed: int):
    """The tiny random model of `unipose.testing`, with a codebook drawn from encoder outputs of procedural
    poses (as a VQ-VAE initialises its codebook from its first batch). Its random codebook sends every pose to
    the same code, which would leave the pose outputs nothing to learn."""
    model, processor = tiny_model_and_processor(seed=seed)
    pose_tokenizer = model.model.pose_tokenizer
    with torch.no_grad():
        latents = pose_tokenizer.encoder(to_rotation_6d(sample_poses(TINY_CODEBOOK_POSES, seed=seed)))
    latents = latents.reshape(-1, latents.shape[-1])  # (poses * num_pose_tokens, code_dim)
    chosen = torch.randperm(len(latents), generator=torch.Generator().manual_seed(seed))
    pose_tokenizer.quantizer.set_codebook(latents[chosen[: pose_tokenizer.config.codebook_size]].clone())
    return model, processor


def tiny_model_for_training(seed: int):
    """The model of [`tiny_model_and_processor_for_training`] alone."""
    return tiny_model_and_processor_for_training(seed)[0]


def load_model_and_processor(script_args: UniPoseScriptArguments, model_args):
    """The model and processor the stage starts from: `model_name_or_path` (the previous stage's output) or
    the tiny model of `tiny_model_seed`, exactly one of them."""
    if script_args.tiny_model_seed is not None and model_args.model_name_or_path is not None:
        raise ValueError(
            f"Set either `model_name_or_path` ({model_args.model_name_or_path!r}) or `tiny_model_seed` "
            f"({script_args.tiny_model_seed}), not both."
        )
    if script_args.tiny_model_seed is not None:
        return tiny_model_and_processor_for_training(script_args.tiny_model_seed)
    if model_args.model_name_or_path is None:
        raise ValueError("Set `model_name_or_path` (the previous stage's output) or `tiny_model_seed`.")
    name_or_path = resolve_model_path(model_args.model_name_or_path, "model_name_or_path")
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    revision = model_args.model_revision
    model = UniPoseForConditionalGeneration.from_pretrained(
        name_or_path, dtype=dtype, attn_implementation=model_args.attn_implementation, revision=revision
    )
    processor = UniPoseProcessor.from_pretrained(name_or_path, revision=revision)
    return model, processor


def stage_lora_config(model_config, script_args: UniPoseScriptArguments, model_args):
    """The stage's LoRA configuration ([`stage_peft_config`]) with the LoRA settings of `trl.ModelConfig`."""
    return stage_peft_config(
        model_config,
        script_args.stage,
        r=model_args.lora_r,
        target_modules=model_args.lora_target_modules,
        **{name: getattr(model_args, name) for name in ("lora_alpha", "lora_dropout", "use_rslora", "use_dora")},
    )


def training_run(script_args: UniPoseScriptArguments, model_args, command_line: list[str] | None = None):
    """What the model card says about this run ([`TrainingRun`]); the recipe is read back from `command_line`
    (the script's arguments) when given."""
    if script_args.tiny_model_seed is not None:
        base_model = f"the tiny random model of `unipose.testing` (seed {script_args.tiny_model_seed})"
    else:
        base_model = model_args.model_name_or_path
    return TrainingRun(
        stage=f"Stage {script_args.stage} ({STAGE_PLANS[script_args.stage].title})",
        base_model=base_model,
        datasets=tuple(asdict(component) for component in script_args.datasets),
        script=SCRIPT,
        command=None if command_line is None else shlex.join(["python", SCRIPT, *command_line]),
        recipe=None if command_line is None else recipe_settings(stage_argument_parser(), command_line),
    )


def mixture_seed(script_args: UniPoseScriptArguments, training_args) -> int:
    """The seed of the task mixture's draws: `mixture_seed`, or the training seed."""
    return training_args.seed if script_args.mixture_seed is None else script_args.mixture_seed


def stage_run_signature(script_args: UniPoseScriptArguments, training_args, num_examples: int) -> RunSignature:
    """What fixes a stage run's data, batches and steps, kept in its checkpoints so that resuming another run
    is refused ([`unipose.checkpoints.check_resumable`])."""
    return RunSignature(
        stage=script_args.stage,
        seed=training_args.seed,
        data_seed=training_args.data_seed,
        mixture_seed=mixture_seed(script_args, training_args),
        datasets=[asdict(component) for component in script_args.datasets],
        template_style=script_args.template_style,
        train_batch_size=training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * training_args.world_size,
        num_train_examples=num_examples,
        max_steps=training_args.max_steps,
        num_train_epochs=training_args.num_train_epochs,
    )


def stage_input_model(script_args: UniPoseScriptArguments, model_args):
    """The stage's input model for `save_stage_outputs(base_model_path=...)`, which under ZeRO-3 / FSDP merges
    the adapter into a fresh copy of it: a function that loads it again as training loaded it (its revision
    too), or that builds the tiny model again."""
    if script_args.tiny_model_seed is not None:
        return functools.partial(tiny_model_for_training, script_args.tiny_model_seed)
    return functools.partial(
        UniPoseForConditionalGeneration.from_pretrained,
        resolve_model_path(model_args.model_name_or_path, "model_name_or_path"),
        dtype=torch.float32,
        revision=model_args.model_revision,
    )


__all__ = [
    "SCRIPT",
    "TINY_CODEBOOK_POSES",
    "UniPoseScriptArguments",
    "check_stage_arguments",
    "load_model_and_processor",
    "mixture_seed",
    "stage_argument_parser",
    "stage_dataclass_types",
    "stage_input_model",
    "stage_lora_config",
    "stage_run_signature",
    "tiny_model_and_processor_for_training",
    "tiny_model_for_training",
    "training_run",
]
