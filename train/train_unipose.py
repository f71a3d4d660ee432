# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
Stages 1-3 of UniPose: supervised fine-tuning with TRL's `SFTTrainer`.

Each stage is a recipe (`train/recipes/stage{1,2,3}.yaml`); its keys are the fields of
`UniPoseScriptArguments` (`unipose.training.stages`), of `trl.SFTConfig` and of `trl.ModelConfig`, and unknown
keys are refused. Every stage starts from the previous stage's output directory, where the merged model and
its processor are saved. The LoRA adapter goes to `OUTPUT/adapter`, with everything else the stage trained
(the pose queries too), so that `PeftModel.from_pretrained(base, OUTPUT/adapter)` gives the trained model.
Each folder has the UniPose model card (`README.md`: base model, stage, data, what trained, the recipe), not
TRL's. The README's Training section has the other engines, several processes on one CPU machine, and the
stock `trl sft` command.

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

# Resume a killed run from its last complete checkpoint
```bash
python train/train_unipose.py --config train/recipes/stage1_cpu.yaml --resume_from_checkpoint latest
```
"""

import argparse
import sys

from transformers import set_seed

from unipose.checkpoints import check_resumable, resolve_trainer_checkpoint
from unipose.training.sft import (
    UniPoseSFTTrainer,
    prepare_model_for_stage,
    save_stage_outputs,
    whole_model_init,
)
from unipose.training.stages import (
    check_stage_arguments,
    load_model_and_processor,
    mixture_seed,
    stage_argument_parser,
    stage_dataclass_types,
    stage_input_model,
    stage_lora_config,
    stage_run_signature,
    training_run,
)
from unipose.training.tasks import build_task_mixture


def main(script_args, training_args, model_args, command_line: list[str] | None = None):
    """Run a stage; `command_line` (the script's arguments) goes into the model card as the recipe."""
    # A wrong `use_peft` or model folder is reported before anything is built.
    trains_adapter = check_stage_arguments(script_args, model_args)
    set_seed(training_args.seed)
    # The data first: a wrong corpus path is reported before minutes of model loading.
    with training_args.main_process_first(desc="building the task mixture"):
        train_dataset = build_task_mixture(
            script_args.datasets, style=script_args.template_style, seed=mixture_seed(script_args, training_args)
        )

    with whole_model_init(training_args):  # DeepSpeed ZeRO-3 shards it when training starts
        model, processor = load_model_and_processor(script_args, model_args)
    peft_config = stage_lora_config(model.config, script_args, model_args) if trains_adapter else None
    with whole_model_init(training_args):
        model = prepare_model_for_stage(
            model,
            script_args.stage,
            peft_config,
            train_language_model=script_args.train_language_model,
            train_vision_towers=script_args.train_vision_towers,
        )

    signature = stage_run_signature(script_args, training_args, len(train_dataset))
    trainer = UniPoseSFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        processing_class=processor,
        training_run=training_run(script_args, model_args, command_line),
        callbacks=[signature],
    )
    checkpoint = resolve_trainer_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    if checkpoint is not None:  # only the run that wrote it continues from it
        check_resumable(checkpoint, signature)
    trainer.train(resume_from_checkpoint=checkpoint)
    # Under ZeRO-3 / FSDP the adapter is merged into a fresh copy of the stage's input model.
    paths = save_stage_outputs(
        trainer, training_args.output_dir, base_model_path=stage_input_model(script_args, model_args)
    )
    trainer.accelerator.print(f"Stage {script_args.stage} saved to {', '.join(map(str, paths.values()))}.")


def make_parser(subparsers: argparse._SubParsersAction | None = None):
    if subparsers is not None:
        return subparsers.add_parser(
            "train", help="Run a UniPose training stage", dataclass_types=stage_dataclass_types()
        )
    return stage_argument_parser()


if __name__ == "__main__":
    parser = make_parser()
    # Unknown keys, in the recipe or on the command line, are errors.
    script_args, training_args, model_args = parser.parse()
    main(script_args, training_args, model_args, command_line=sys.argv[1:])
