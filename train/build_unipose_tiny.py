# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
Build UniPose-Tiny, the model bundled in `models/unipose-tiny`, end to end with the project's own commands,
on a CPU and offline.

```bash
python train/build_unipose_tiny.py                      # everything, into runs/tiny, then models/unipose-tiny
python train/build_unipose_tiny.py --steps stage1 stage2 # only some steps (each skips work already done)
```

Steps (each writes one folder under `--work`; a step whose folder is complete is skipped, so a killed build
resumes where it stopped):

1. `stage0`: the pose tokenizer, `unipose train-tokenizer --config train/recipes/stage0_cpu.yaml`.
2. `corpus`: the synthetic corpus, `unipose data synth` (20,000 records per pose kind, 6,000 per image kind).
3. `pose_vision`: the pose ViT's pretraining, as HMR 2.0's backbone is pretrained before UniPose uses it:
   `train/train_pose_vision.py` regresses SMPL body poses from 32,400 rendered images (the corpus's and
   30,000 more of another seed, `pose_vision_corpus`), then keeps the backbone.
4. `init`: the untrained UniPose-Tiny: a BPE tokenizer trained on the corpus's training captions, a random
   Llama-style language model, a random CLIP tower (nothing pretrained exists offline), the pretrained pose
   ViT and the stage-0 tokenizer, joined by `unipose.assembly.build_unipose`.
5. `stage1`, `stage2`, `stage2_pose`, `stage3`: `train/train_unipose.py` with `train/recipes/tiny_<step>.yaml`.
   As the language model is not pretrained, these recipes train all of it (and, from stage 2, the CLIP tower)
   instead of a LoRA adapter; the pose ViT stays frozen, as in the paper's stages. `stage2_pose`, which the
   paper does not have, trains the language model on pose estimation alone before stage 3 mixes the seven tasks:
   a language model from scratch does not learn to read the pose ViT in stage 2, where it is frozen.
6. `retrieval`: the pose-text and pose-pair-text retrieval models of the metrics (`train/train_retrieval.py`,
   on the corpus's automatic captions, with small widths and word embeddings trained from scratch).
   `evaluation`: `unipose evaluate --task all` on 300 items per task of the corpus's test split, with the
   baselines.
7. `publish`: the stage-3 checkpoint, the recipes, training logs, loss plots and the evaluation report,
   with a model card, into `--out`. (`--steps card` re-renders the card of `--out` alone.)
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "train" / "recipes"
# The steps that run `train/train_unipose.py` with `train/recipes/tiny_<step>.yaml`, each from the previous output.
TRAINING_STAGES = ("stage1", "stage2", "stage2_pose", "stage3")
STEPS = ("stage0", "corpus", "pose_vision", "init", *TRAINING_STAGES, "retrieval", "evaluation", "publish", "card")

# The sizes of UniPose-Tiny (about 5M parameters, under 25 MB in float32).
LANGUAGE_MODEL = {
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 1024,
    "tie_word_embeddings": False,
}
# CLIP at 112 px with 16 px patches (7x7 = 49 tokens per image). The pose ViT (sizes in POSE_VISION) reads
# 128x96 with 8 px patches: a 16x12 grid, as HMR 2.0's at 256x192, padded by two columns per side to 16x16 and
# resized to 7x7.
VISION_TOWER = {
    "model_type": "clip_vision_model",
    "hidden_size": 96,
    "intermediate_size": 192,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 112,
    "patch_size": 16,
}
POSE_VISION_FEATURE_PADDING = 2
CORPUS = ["--num", "20000", "--num-images", "6000", "--image-size", "128", "--seed", "0"]
# More images for the pose ViT's pretraining only, from another seed (none of them is in the corpus's splits).
POSE_VISION_CORPUS = ["--num-images", "30000", "--image-size", "128", "--seed", "1", "--kinds", "image_pose",
                      "--no-contact-sheet"]
POSE_VISION = ["--hidden_size", "128", "--num_hidden_layers", "4", "--num_attention_heads", "4", "--mlp_ratio", "2",
               "--image_size", "128", "96", "--patch_size", "8", "--feature_grid", "7",
               "--feature_padding", str(POSE_VISION_FEATURE_PADDING), "--max_steps", "3000",
               "--per_device_train_batch_size", "64", "--learning_rate", "1e-3", "--weight_decay", "0.01",
               "--warmup_steps", "0.03", "--lr_scheduler_type", "cosine", "--logging_steps", "50",
               "--save_steps", "250", "--save_total_limit", "2", "--seed", "0", "--use_cpu", "true",
               "--report_to", "none", "--disable_tqdm", "true"]
# At a learning rate of 1e-3 the pair model can collapse to a constant embedding (loss stuck at log 64).
RETRIEVAL = ["--word_embeddings", "tiny", "--per_device_train_batch_size", "64", "--max_steps", "3000",
             "--learning_rate", "3e-4", "--pose_hidden_size", "64", "--text_hidden_size", "128", "--save_steps", "500",
             "--report_to", "none", "--disable_tqdm", "true"]
EVALUATION = ["--max-samples", "300", "--batch-size", "16", "--num-examples", "2", "--baselines", "--no-progress"]


def command(*args: str) -> None:
    print("$", " ".join(args), flush=True)
    subprocess.run(args, check=True, cwd=ROOT)


def unipose(*args: str) -> None:
    command(sys.executable, "-m", "unipose.cli", *args)


def build_init(work: Path) -> None:
    """Step 4: the untrained model, from random parts, the pretrained pose ViT and the trained pose tokenizer."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from unipose.assembly import build_unipose
    from unipose.data.hub import load_corpus
    from unipose.modeling_pose_vqvae import PoseVQVAE
    from unipose.tokenization import build_tiny_tokenizer
    from unipose.training.pose_vision import load_backbone

    torch.manual_seed(0)
    pose_tokenizer = PoseVQVAE.from_pretrained(work / "stage0")
    captions = []
    for kind in ("pose_text", "pose_pair"):
        for texts in load_corpus(work / "corpus", kind, split="train")["texts"]:
            captions.extend(texts)
    tokenizer = build_tiny_tokenizer(
        codebook_size=pose_tokenizer.config.codebook_size, extra_corpus=captions, vocab_size=1500, model_max_length=1024
    )

    def config(fields: dict, **extra):
        fields = {**fields, **extra}
        return AutoConfig.for_model(fields.pop("model_type"), **fields)

    base_vocab = tokenizer.convert_tokens_to_ids("<image>")
    language_model = AutoModelForCausalLM.from_config(config(LANGUAGE_MODEL, vocab_size=base_vocab))
    vision_tower = AutoModel.from_config(config(VISION_TOWER))
    pose_vision_tower = load_backbone(work / "pose_vision" / "backbone")
    model, processor = build_unipose(language_model, vision_tower, pose_vision_tower, pose_tokenizer, tokenizer)
    model.config.pose_vision_feature_padding = POSE_VISION_FEATURE_PADDING
    staging = work / "init.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    staging.rename(work / "init")


def plot_loss_curves(histories: dict, path: Path) -> None:
    """One panel per stage: the total loss and its parts (text and pose codes for stages 1-3, rotations and
    joints for the pose ViT's pretraining)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(histories), figsize=(4 * len(histories), 3.2), squeeze=False)
    for axis, (stage, history) in zip(axes[0], histories.items()):
        for key in ("loss", "text_loss", "pose_loss", "rotation_loss", "joint_loss"):
            points = [(entry["step"], entry[key]) for entry in history if key in entry and "step" in entry]
            if points:
                axis.plot(*zip(*points), label=key)
        axis.set_title(stage)
        axis.set_xlabel("step")
        axis.set_yscale("log")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_card(model_dir: Path) -> None:
    """The model card of the bundled model, from its config and its published evaluation (`evaluation/`); the `card`
    step re-renders it alone, e.g. after a change of the card template."""
    from unipose.model_card import write_model_card
    from unipose.modeling_unipose import UniPoseForConditionalGeneration

    evaluation = {}
    summary = model_dir / "evaluation" / "results.json"
    if summary.exists():
        for task, result in json.loads(summary.read_text())["tasks"].items():
            evaluation.update({f"{task} {name}": value for name, value in result["metrics"].items()})
    config = UniPoseForConditionalGeneration.config_class.from_pretrained(model_dir)
    write_model_card(
        model_dir,
        config,
        source="trained",
        model_name="UniPose-Tiny",
        repo_id="models/unipose-tiny",
        training="Trained from scratch on this machine's CPU by `python train/build_unipose_tiny.py` on the "
        "project's synthetic corpus (procedural poses, automatic captions, rendered images): stage 0 "
        "(`stage0_cpu.yaml`), the pose ViT's pretraining (`train/train_pose_vision.py`), then stage 1, stage 2, "
        "pose estimation alone and stage 3 (`tiny_stage1.yaml`, `tiny_stage2.yaml`, `tiny_stage2_pose.yaml`, "
        "`tiny_stage3.yaml`). Logs and loss plots are in `training/`.",
        evaluation=evaluation,
        limitations="A demonstration model: tiny, trained only on synthetic data, with a CLIP tower from random "
        "weights and a pose ViT pretrained on 32,400 renders. Its outputs show the pipeline working, not the "
        "quality of the published UniPose. On the synthetic test split (`evaluation/results.json`, 300 items per "
        "task) its Pose Editing is 154.9 mm from pose B against 156.4 mm for leaving pose A unchanged, a gap well "
        "inside the spread over items, and its Image-Diff texts retrieve their image pair first 4.2 % of the time "
        "(grouped protocol) against 3.1 % for a constant answer: on these two tasks it does not measurably beat "
        "the simple baselines. Its evaluation prompts carried two BOS tokens (the chat template rendered as text, "
        "then tokenized with a second one), unlike its training prompts; the figures are those of that run.",
    )


def publish(work: Path, out: Path) -> None:
    """Step 7: the final checkpoint with its recipes, logs, plots, evaluation and model card."""
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(work / "stage3", staging, ignore=shutil.ignore_patterns("checkpoint-*", "adapter", "runs"))
    # The remote code is the package's as it is now (the training stages saved the version they ran with).
    for path in staging.glob("*.py"):
        shutil.copy(ROOT / "unipose" / path.name, path)
    (staging / "training").mkdir(exist_ok=True)
    histories = {}
    for stage in ("stage0", "pose_vision", *TRAINING_STAGES):
        # Stage 0 writes its log next to the model; TRL writes it into each checkpoint (the last one is complete).
        candidates = [work / stage / "trainer_state.json"] + sorted(
            (work / stage).glob("checkpoint-*/trainer_state.json"), key=lambda path: int(path.parent.name.split("-")[1])
        )
        found = [path for path in candidates if path.exists()]
        if found:
            shutil.copy(found[-1], staging / "training" / f"{stage}_trainer_state.json")
            histories[stage] = json.loads(found[-1].read_text())["log_history"]
        if (work / stage / "eval_results.json").exists():
            shutil.copy(work / stage / "eval_results.json", staging / "training" / f"{stage}_eval_results.json")
    plot_loss_curves(histories, staging / "training" / "loss_curves.png")
    for recipe in ("stage0_cpu.yaml", *(f"tiny_{stage}.yaml" for stage in TRAINING_STAGES)):
        shutil.copy(RECIPES / recipe, staging / "training" / recipe)
    if (work / "evaluation").exists():
        shutil.copytree(work / "evaluation", staging / "evaluation", ignore=shutil.ignore_patterns("*.jsonl"))
    write_card(staging)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "tiny")
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "unipose-tiny")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    def done(name: str) -> bool:
        return any((work / name / marker).exists() for marker in ("config.json", "synthetic_corpus.json", "backbone"))

    if "stage0" in args.steps and not done("stage0"):
        unipose("train-tokenizer", "--config", str(RECIPES / "stage0_cpu.yaml"), "--output_dir", str(work / "stage0"))
    if "corpus" in args.steps and not done("corpus"):
        unipose("data", "synth", "--out", str(work / "corpus"), *CORPUS)
    if "pose_vision" in args.steps and not done("pose_vision"):
        if not done("pose_vision_corpus"):
            unipose("data", "synth", "--out", str(work / "pose_vision_corpus"), *POSE_VISION_CORPUS)
        command(
            sys.executable, str(ROOT / "train" / "train_pose_vision.py"), "--output_dir", str(work / "pose_vision"),
            "--train_data", str(work / "corpus"), str(work / "pose_vision_corpus"), "--eval_data", str(work / "corpus"),
            *POSE_VISION, "--resume_from_checkpoint", "latest",
        )
    if "init" in args.steps and not done("init"):
        build_init(work)
    previous = work / "init"
    for stage in TRAINING_STAGES:
        if stage in args.steps and not done(stage):
            command(
                sys.executable, str(ROOT / "train" / "train_unipose.py"),
                "--config", str(RECIPES / f"tiny_{stage}.yaml"),
                "--model_name_or_path", str(previous), "--output_dir", str(work / stage),
                "--resume_from_checkpoint", "latest",
            )
        previous = work / stage
    for kind, name in (("pose_text", "retrieval_pose"), ("pose_pair", "retrieval_pair")):
        if "retrieval" in args.steps and not done(name):
            command(
                sys.executable, str(ROOT / "train" / "train_retrieval.py"), "--output_dir", str(work / name),
                "--model_kind", kind, "--pretrain_data", str(work / "corpus" / kind), *RETRIEVAL,
                "--resume_from_checkpoint", "latest",
            )
    if "evaluation" in args.steps:
        unipose(
            "evaluate", "--model", str(work / "stage3"), "--task", "all", "--data", str(work / "corpus"),
            "--output", str(work / "evaluation"), "--retrieval-model", str(work / "retrieval_pose"),
            "--pair-retrieval-model", str(work / "retrieval_pair"), *EVALUATION,
        )
    if "publish" in args.steps:
        publish(work, args.out)
    elif "card" in args.steps:
        write_card(args.out)


if __name__ == "__main__":
    main()
