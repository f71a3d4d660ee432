# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
Stages 1-3 of UniPose: supervised fine-tuning with TRL's `SFTTrainer`.

Each stage is a recipe (`train/recipes/stage{1,2,3}.yaml`); its keys are the fields of
`UniPoseScriptArguments` below, of `trl.SFTConfig` and of `trl.ModelConfig`, and unknown keys are refused.
Every stage starts from the previous stage's output directory, where the merged model and its processor are
saved. The LoRA adapter goes to `OUTPUT/adapter`, with everything else the stage trained (the pose queries
too), so that `PeftModel.from_pretrained(base, OUTPUT/adapter)` gives the trained model. Each folder has the
UniPose model card (`README.md`: base model, stage, data, what trained, the recipe), not TRL's.

# On a CPU, offline, in minutes: the tiny model and the synthetic corpus
```bash
unipose data synth --out data/synthetic --num 1000 --seed 0 --image-size 64
python train/train_unipose.py --config train/recipes/stage1_cpu.yaml   # -> runs/stage1_cpu
python train/train_unipose.py --config train/recipes/stage2_cpu.yaml   # -> runs/stage2_cpu
python train/train_unipose.py --config train/recipes/stage3_cpu.yaml   # -> runs/stage3_cpu
```

# The paper's stages on 8 GPUs (start from a model assembled with `unipose.assembly.build_unipose`)
```bash
pip install -e ".[distributed]"   # DeepSpeed
accelerate launch --config_file train/accelerate/deepspeed_zero2.yaml train/train_unipose.py \
    --config train/recipes/stage1.yaml --model_name_or_path runs/unipose-assembled --output_dir runs/stage1
accelerate launch --config_file train/accelerate/deepspeed_zero2.yaml train/train_unipose.py \
    --config train/recipes/stage2.yaml --model_name_or_path runs/stage1 --output_dir runs/stage2
accelerate launch --config_file train/accelerate/deepspeed_zero2.yaml train/train_unipose.py \
    --config train/recipes/stage3.yaml --model_name_or_path runs/stage2 --output_dir runs/stage3
```
The other engines take the same line with their configuration: `train/accelerate/ddp.yaml`,
`deepspeed_zero3.yaml` (GPUs too small for the whole model) and `fsdp.yaml` (name the language model's decoder
layer with `--fsdp_transformer_layer_cls_to_wrap` if it is not Mistral's). The recipes state the global batch they
assume; keep it when the number of GPUs changes. On several processes the trainer keeps them in lockstep (a batch
without images runs the towers at zero weight; see `unipose.training.sft`).

# Several processes on one CPU machine (gloo, global batch 8): what `tests/test_distributed.py` runs
```bash
# DDP
accelerate launch --config_file train/accelerate/ddp.yaml --num_processes 2 --mixed_precision no \
    train/train_unipose.py --config train/recipes/stage1_cpu.yaml --per_device_train_batch_size 4
# DeepSpeed ZeRO-2 and ZeRO-3: DeepSpeed's CPU accelerator, which uses gloo (no oneCCL needed); `use_cpu` off,
# since accelerate turns DeepSpeed off under `use_cpu`
DS_ACCELERATOR=cpu accelerate launch --config_file train/accelerate/deepspeed_zero2.yaml --num_processes 2 \
    --mixed_precision no train/train_unipose.py --config train/recipes/stage1_cpu.yaml \
    --per_device_train_batch_size 4 --use_cpu false --ddp_backend gloo
DS_ACCELERATOR=cpu accelerate launch --config_file train/accelerate/deepspeed_zero3.yaml --num_processes 2 \
    train/train_unipose.py --config train/recipes/stage1_cpu.yaml \
    --per_device_train_batch_size 4 --use_cpu false --ddp_backend gloo
```
FSDP does not run on CPU processes (accelerate sets it up only on accelerators; the trainer stops with "FSDP was
not applied" rather than train unsharded); `python benchmarks/gpu_check.py` runs it on GPUs.

# Resume a killed run from its last complete checkpoint
```bash
python train/train_unipose.py --config train/recipes/stage1_cpu.yaml --resume_from_checkpoint latest
```

# The text-output tasks with the stock `trl sft` command (no custom collator: poses written as code tokens)
```bash
unipose conversations --records data/synthetic/pose_text data/synthetic/pose_pair \
    --pose_tokenizer runs/stage1_cpu --output data/text_sft
ARGS="--model_name_or_path runs/stage1_cpu --trust_remote_code --dataset_name data/text_sft \
    --assistant_only_loss --output_dir runs/text_sft --bf16 false --use_cpu --activation_checkpointing false"
trl sft $ARGS
unipose training-card -- $ARGS   # the UniPose model card in place of TRL's generic one
```
`--assistant_only_loss` is required: inside a pose span the code tokens see each other, so predicting them
as next tokens would teach nothing. TRL warns that the end-of-turn token is not in the loss mask; it is (the
template puts `</s>` inside its generation block), TRL's check only looks for it among the added tokens.
`trl sft` cannot run UniPose code, so it writes TRL's card ("fine-tuned version of None", no `custom_code`);
the second command rewrites it from the same arguments. Push to the Hub after it, not with `--push_to_hub`.
"""

import argparse
import functools
import shlex
import sys
from dataclasses import asdict, dataclass, field

import torch
from transformers import set_seed

from unipose import UniPoseForConditionalGeneration, UniPoseProcessor
from unipose.arguments import ScriptArgumentParser
from unipose.checkpoints import resolve_trainer_checkpoint
from unipose.files import resolve_model_path
from unipose.training.model_cards import TrainingRun, recipe_settings
from unipose.training.sft import (
    STAGE_PLANS,
    STAGES,
    UniPoseSFTTrainer,
    prepare_model_for_stage,
    save_stage_outputs,
    stage_peft_config,
    whole_model_init,
)
from unipose.training.tasks import TaskMixtureComponent, build_task_mixture

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


def tiny_model_and_processor_for_training(seed: int):
    """The tiny random model of `unipose.testing`, with a codebook drawn from encoder outputs of procedural
    poses (as a VQ-VAE initialises its codebook from its first batch). Its random codebook sends every pose to
    the same code, which would leave the pose outputs nothing to learn."""
    from unipose.pose_sampler import sample_poses
    from unipose.rotations import to_rotation_6d
    from unipose.testing import tiny_model_and_processor

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


def load_model_and_processor(script_args, model_args):
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
    model = UniPoseForConditionalGeneration.from_pretrained(
        name_or_path, dtype=dtype, attn_implementation=model_args.attn_implementation
    )
    processor = UniPoseProcessor.from_pretrained(name_or_path)
    return model, processor


def training_run(script_args, model_args, command_line: list[str] | None = None) -> TrainingRun:
    """What the model card says about this run; the recipe is read back from `command_line` when given."""
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
        recipe=None if command_line is None else recipe_settings(make_parser(), command_line),
    )


def main(script_args, training_args, model_args, command_line: list[str] | None = None):
    """Run a stage; `command_line` (the script's arguments) goes into the model card as the recipe."""
    trains_adapter = STAGE_PLANS[script_args.stage].lora and not script_args.train_language_model
    if model_args.use_peft != trains_adapter:
        raise ValueError(
            f"Stage {script_args.stage} {'trains' if trains_adapter else 'does not train'} a LoRA adapter: "
            f"set `use_peft: {str(trains_adapter).lower()}` (got {model_args.use_peft})."
        )
    if model_args.model_name_or_path is not None:  # a wrong path is reported before anything is built
        resolve_model_path(model_args.model_name_or_path, "model_name_or_path")
    set_seed(training_args.seed)
    # The data first: a wrong corpus path is reported before minutes of model loading.
    with training_args.main_process_first(desc="building the task mixture"):
        seed = training_args.seed if script_args.mixture_seed is None else script_args.mixture_seed
        train_dataset = build_task_mixture(script_args.datasets, style=script_args.template_style, seed=seed)

    with whole_model_init(training_args):  # DeepSpeed ZeRO-3 shards it when training starts
        model, processor = load_model_and_processor(script_args, model_args)

    peft_config = None
    if trains_adapter:
        peft_config = stage_peft_config(
            model.config,
            script_args.stage,
            r=model_args.lora_r,
            lora_alpha=model_args.lora_alpha,
            lora_dropout=model_args.lora_dropout,
            target_modules=model_args.lora_target_modules,
            use_rslora=model_args.use_rslora,
            use_dora=model_args.use_dora,
        )
    with whole_model_init(training_args):
        model = prepare_model_for_stage(
            model,
            script_args.stage,
            peft_config,
            train_language_model=script_args.train_language_model,
            train_vision_towers=script_args.train_vision_towers,
        )

    trainer = UniPoseSFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        processing_class=processor,
        training_run=training_run(script_args, model_args, command_line),
    )
    trainer.train(
        resume_from_checkpoint=resolve_trainer_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    )
    # Under ZeRO-3 / FSDP the adapter is merged into a fresh copy of the stage's input model.
    base_model = model_args.model_name_or_path
    if script_args.tiny_model_seed is not None:
        base_model = functools.partial(tiny_model_for_training, script_args.tiny_model_seed)
    paths = save_stage_outputs(trainer, training_args.output_dir, base_model_path=base_model)
    trainer.accelerator.print(f"Stage {script_args.stage} saved to {', '.join(map(str, paths.values()))}.")


def make_parser(subparsers: argparse._SubParsersAction | None = None):
    from trl import ModelConfig, SFTConfig

    dataclass_types = (UniPoseScriptArguments, SFTConfig, ModelConfig)
    if subparsers is not None:
        return subparsers.add_parser(
            "train", help="Run a UniPose training stage", dataclass_types=dataclass_types
        )
    return ScriptArgumentParser(dataclass_types)


if __name__ == "__main__":
    parser = make_parser()
    # Unknown keys, in the recipe or on the command line, are errors.
    script_args, training_args, model_args = parser.parse()
    main(script_args, training_args, model_args, command_line=sys.argv[1:])
