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
3. `init`: the untrained UniPose-Tiny: a BPE tokenizer trained on the corpus's training captions, a random
   Llama-style language model, random CLIP and pose-ViT towers (nothing pretrained exists offline), and the
   stage-0 tokenizer, joined by `unipose.assembly.build_unipose`.
4. `stage1`, `stage2`, `stage3`: `train/train_unipose.py` with `train/recipes/tiny_stage{1,2,3}.yaml`. As
   nothing is pretrained, these recipes train the whole language model (and, from stage 2, the towers) instead
   of a LoRA adapter; otherwise they are the paper's stages.
5. `retrieval`: the pose-text and pose-pair-text retrieval models of the metrics (`train/train_retrieval.py`,
   on the corpus's automatic captions, with small widths and word embeddings trained from scratch).
   `evaluation`: `unipose evaluate --task all` on 300 items per task of the corpus's test split, with the
   baselines.
6. `publish`: the stage-3 checkpoint, the recipes, training logs, loss plots and the evaluation report,
   with a model card, into `--out`.
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
STEPS = ("stage0", "corpus", "init", "stage1", "stage2", "stage3", "retrieval", "evaluation", "publish")

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
# CLIP at 112 px with 16 px patches (7x7 = 49 tokens per image); the pose ViT at 64x48 with 8 px patches
# (8x6 patches, padded by one column per side to 8x8, resized to 7x7).
VISION_TOWER = {
    "model_type": "clip_vision_model",
    "hidden_size": 96,
    "intermediate_size": 192,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 112,
    "patch_size": 16,
}
POSE_VISION_TOWER = {
    "model_type": "vitpose_backbone",
    "hidden_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "mlp_ratio": 2,
    "image_size": (64, 48),
    "patch_size": (8, 8),
    "layer_norm_eps": 1e-6,
    "out_indices": [-1],
}
POSE_VISION_FEATURE_PADDING = 1
CORPUS = ["--num", "20000", "--num-images", "6000", "--image-size", "128", "--seed", "0"]
# At a learning rate of 1e-3 the pair model can collapse to a constant embedding (loss stuck at log 64).
RETRIEVAL = ["--word_embeddings", "tiny", "--batch_size", "64", "--max_steps", "3000", "--learning_rate", "3e-4",
             "--pose_hidden_size", "64", "--text_hidden_size", "128", "--save_steps", "500", "--disable_tqdm", "true"]
EVALUATION = ["--max-samples", "300", "--batch-size", "16", "--num-examples", "2", "--baselines", "--no-progress"]


def command(*args: str) -> None:
    print("$", " ".join(args), flush=True)
    subprocess.run(args, check=True, cwd=ROOT)


def unipose(*args: str) -> None:
    command(sys.executable, "-m", "unipose.cli", *args)


def build_init(work: Path) -> None:
    """Step 3: the untrained model, from random parts and the trained pose tokenizer."""
    from datasets import load_from_disk
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoBackbone

    from unipose.assembly import build_unipose
    from unipose.modeling_pose_vqvae import PoseVQVAE
    from unipose.tokenization import build_tiny_tokenizer

    torch.manual_seed(0)
    pose_tokenizer = PoseVQVAE.from_pretrained(work / "stage0")
    captions = []
    for kind in ("pose_text", "pose_pair"):
        for texts in load_from_disk(str(work / "corpus" / kind))["train"]["texts"]:
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
    pose_vision_tower = AutoBackbone.from_config(config(POSE_VISION_TOWER))
    model, processor = build_unipose(language_model, vision_tower, pose_vision_tower, pose_tokenizer, tokenizer)
    model.config.pose_vision_feature_padding = POSE_VISION_FEATURE_PADDING
    staging = work / "init.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    staging.rename(work / "init")


def plot_loss_curves(histories: dict, path: Path) -> None:
    """One panel per stage: the total loss and, for stages 1-3, its text and pose-code parts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(histories), figsize=(4 * len(histories), 3.2), squeeze=False)
    for axis, (stage, history) in zip(axes[0], histories.items()):
        for key in ("loss", "text_loss", "pose_loss"):
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


def publish(work: Path, out: Path) -> None:
    """Step 6: the final checkpoint with its recipes, logs, plots, evaluation and model card."""
    from unipose.model_card import write_model_card
    from unipose.modeling_unipose import UniPoseForConditionalGeneration

    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(work / "stage3", staging, ignore=shutil.ignore_patterns("checkpoint-*", "adapter", "runs"))
    (staging / "training").mkdir(exist_ok=True)
    histories = {}
    for stage in ("stage0", "stage1", "stage2", "stage3"):
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
    for recipe in ("stage0_cpu.yaml", "tiny_stage1.yaml", "tiny_stage2.yaml", "tiny_stage3.yaml"):
        shutil.copy(RECIPES / recipe, staging / "training" / recipe)
    evaluation = {}
    if (work / "evaluation").exists():
        shutil.copytree(work / "evaluation", staging / "evaluation", ignore=shutil.ignore_patterns("*.jsonl"))
        summary = work / "evaluation" / "results.json"
        if summary.exists():
            for task, result in json.loads(summary.read_text())["tasks"].items():
                evaluation.update({f"{task} {name}": value for name, value in result["metrics"].items()})
    config = UniPoseForConditionalGeneration.config_class.from_pretrained(staging)
    write_model_card(
        staging,
        config,
        source="trained",
        model_name="UniPose-Tiny",
        repo_id="models/unipose-tiny",
        training="Trained from scratch on this machine's CPU by `python train/build_unipose_tiny.py` on the "
        "project's synthetic corpus (procedural poses, automatic captions, rendered images): stage 0 "
        "(`stage0_cpu.yaml`), then stages 1-3 (`tiny_stage{1,2,3}.yaml`). Logs and loss plots are in `training/`.",
        evaluation=evaluation,
        limitations="A demonstration model: tiny, trained only on synthetic data, with random (then fine-tuned) "
        "vision towers. Its outputs show the pipeline working, not the quality of the published UniPose. On the "
        "synthetic test split it beats the simple baselines on every task but Pose Estimation, where its towers "
        "have not learnt to read the body from an image (its MPJPE is that of the mean pose).",
    )
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
    done = lambda name: (work / name / "config.json").exists() or (work / name / "synthetic_corpus.json").exists()  # noqa: E731

    if "stage0" in args.steps and not done("stage0"):
        unipose("train-tokenizer", "--config", str(RECIPES / "stage0_cpu.yaml"), "--output_dir", str(work / "stage0"))
    if "corpus" in args.steps and not done("corpus"):
        unipose("data", "synth", "--out", str(work / "corpus"), *CORPUS)
    if "init" in args.steps and not done("init"):
        build_init(work)
    previous = work / "init"
    for stage in ("stage1", "stage2", "stage3"):
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


if __name__ == "__main__":
    main()
