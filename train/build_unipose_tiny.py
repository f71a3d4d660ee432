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
7. `publish`: the stage-3 checkpoint, the recipes, training logs, loss plots and the retrieval models
   (`evaluation/retrieval_pose`, `evaluation/retrieval_pair`), with a model card, into `--out`.
8. `evaluation`: `unipose evaluate --task all` of the published model in `--out`, judged by the retrieval
   models published with it, on 300 items per task of the corpus's test split, with the baselines (see
   `evaluation_command`); its `results.json`, `report.md` and examples, the corpus's manifest and a README with
   the command go to `--out/evaluation`, and the card is written again from them.
9. `card`: the model card of `--out` alone, from its `config.json`, `training/` and `evaluation/results.json`
   (nothing is trained or evaluated: `python train/build_unipose_tiny.py --steps card`).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "train" / "recipes"
# The steps that run `train/train_unipose.py` with `train/recipes/tiny_<step>.yaml`, each from the previous output.
TRAINING_STAGES = ("stage1", "stage2", "stage2_pose", "stage3")
STEPS = ("stage0", "corpus", "pose_vision", "init", *TRAINING_STAGES, "retrieval", "publish", "evaluation", "card")
# The retrieval models: the record kind each is trained on, and its folder under `--work` and `--out/evaluation`.
RETRIEVAL_MODELS = {"pose_text": "retrieval_pose", "pose_pair": "retrieval_pair"}

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
             "--learning_rate", "3e-4", "--max_grad_norm", "1.0", "--pose_hidden_size", "64", "--text_hidden_size", "128",
             "--save_steps", "500", "--report_to", "none", "--disable_tqdm", "true"]
EVALUATION = ["--max-samples", "300", "--batch-size", "16", "--num-examples", "2", "--baselines", "--no-progress"]
# What `--out/evaluation` keeps of an evaluation run (the predictions, `predictions.jsonl`, stay in the run).
EVALUATION_FILES = ("results.json", "report.md")
EVALUATION_README = "README.md"
CORPUS_MANIFEST = "corpus.json"


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
    from unipose.files import staged_directory
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
    with staged_directory(work / "init") as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)


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


def _shown(path: Path) -> str:
    """`path` as the commands show it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def evaluation_command(model_dir: Path, corpus: Path, output: Path) -> list[str]:
    """The `unipose evaluate` arguments of the published evaluation: the model in `model_dir`, judged by the
    retrieval models published with it, on `corpus`, into `output`."""
    evaluation_dir = model_dir / "evaluation"
    return [
        "evaluate", "--model", _shown(model_dir), "--task", "all", "--data", _shown(corpus),
        "--output", _shown(output), "--retrieval-model", _shown(evaluation_dir / RETRIEVAL_MODELS["pose_text"]),
        "--pair-retrieval-model", _shown(evaluation_dir / RETRIEVAL_MODELS["pose_pair"]), *EVALUATION,
    ]


def training_table(model_dir: Path) -> str:
    """The training runs of the bundled model, read from its `training/` logs: steps, batch size and recipe."""
    import yaml

    rows = ["| run | recipe | steps | batch |", "| --- | --- | ---: | ---: |"]
    recipes = {"stage0": "stage0_cpu.yaml", "pose_vision": "`train/train_pose_vision.py` (see the build script)"}
    for stage in ("stage0", "pose_vision", *TRAINING_STAGES):
        path = model_dir / "training" / f"{stage}_trainer_state.json"
        if not path.exists():
            continue
        state = json.loads(path.read_text())
        recipe = recipes.get(stage, f"tiny_{stage}.yaml")
        batch = state.get("train_batch_size")
        if batch is None and (model_dir / "training" / recipe).exists():
            batch = yaml.safe_load((model_dir / "training" / recipe).read_text()).get("per_device_train_batch_size")
        recipe_cell = f"`{recipe}`" if recipe.endswith(".yaml") else recipe
        rows.append(f"| {stage} | {recipe_cell} | {state['global_step']:,} | {batch if batch is not None else 'n/a'} |")
    return "\n".join(rows)


def evaluation_details(results: dict | None) -> str | None:
    """Where the card's readers find what its evaluation table leaves out."""
    if results is None:
        return None
    if results.get("retrieval_model") is None:
        return (
            "The other metrics (BLEU-4, METEOR), the headline metrics item by item, the paper's tables (real data, not "
            "comparable) and rendered examples are in `evaluation/results.json` and `evaluation/report.md`; "
            "`evaluation/README.md` gives the command that reproduces them. This evaluation names no retrieval "
            "models, so it has no R-precision, Recall@K or FID."
        )
    return (
        "The other metrics (BLEU-4, METEOR, R-precision under both protocols, Recall@K, FID), the headline metrics "
        "item by item, the paper's tables (real data, not comparable) and rendered examples are in "
        "`evaluation/results.json` and `evaluation/report.md`; `evaluation/README.md` gives the command that "
        "reproduces them with the retrieval models in `evaluation/retrieval_pose` and `evaluation/retrieval_pair`."
    )


def write_card(model_dir: Path) -> None:
    """The model card of the bundled model, from its config, its training logs (`training/`) and its published
    evaluation (`evaluation/results.json`, `evaluation/corpus.json`); the `card` step re-renders it alone, e.g.
    after a change of the card template."""
    from unipose.evaluation.summary import evaluation_caveats, evaluation_section
    from unipose.model_card import write_model_card
    from unipose.modeling_unipose import UniPoseForConditionalGeneration

    results = corpus_splits = None
    summary = model_dir / "evaluation" / "results.json"
    if summary.exists():
        results = json.loads(summary.read_text())
    manifest = model_dir / "evaluation" / CORPUS_MANIFEST
    if manifest.exists():
        corpus_splits = json.loads(manifest.read_text())["splits"]
    config = UniPoseForConditionalGeneration.config_class.from_pretrained(model_dir)
    caveats = evaluation_caveats(results) if results is not None else []
    limitations = (
        "A demonstration model: tiny, trained only on synthetic data, with a CLIP tower from random weights and a "
        "pose ViT pretrained on 32,400 renders. Its outputs show the pipeline working, not the quality of the "
        "published UniPose, and its figures are on synthetic data: they are not comparable with the paper's, which "
        "are on PoseScript, PoseFix and real images."
    )
    if caveats:
        limitations += " Where it does not beat the simple baselines on the synthetic test split:\n" + "\n".join(
            f"  - {caveat}" for caveat in caveats
        )
    write_model_card(
        model_dir,
        config,
        source="trained",
        model_name="UniPose-Tiny",
        repo_id="models/unipose-tiny",
        training="Trained from scratch on a CPU by `python train/build_unipose_tiny.py` on the project's synthetic "
        "corpus (`unipose data synth`, seed 0: procedural poses, automatic captions, rendered images): stage 0 "
        "(the pose tokenizer), the pose ViT's pretraining (`train/train_pose_vision.py`), then stage 1, stage 2, "
        "pose estimation alone and stage 3, each from the previous one. Logs and loss plots are in `training/`; "
        "the runs, read from their logs:\n\n" + training_table(model_dir),
        evaluation=evaluation_section(results, corpus_splits, evaluation_details(results)) if results else None,
        limitations=limitations,
    )


def ship_retrieval_models(work: Path, evaluation_dir: Path) -> None:
    """The retrieval models of `work` (their weights, config and text tokenizer, without the training phases'
    folders) into `evaluation_dir/retrieval_pose` and `evaluation_dir/retrieval_pair`."""
    for name in RETRIEVAL_MODELS.values():
        source = work / name
        if not (source / "config.json").exists():
            raise FileNotFoundError(f"{source} holds no retrieval model; run the `retrieval` step first.")
        target = evaluation_dir / name
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for path in source.iterdir():
            if path.is_file():
                shutil.copy(path, target / path.name)


def write_evaluation_readme(evaluation_dir: Path, args: list[str], minutes: float | None) -> None:
    """`evaluation_dir/README.md`: what the folder holds and the commands that reproduce it (`args`: those of the
    `unipose` command that wrote the results, `minutes`: how long it ran)."""
    rendered = " ".join(args)
    for option in ("--output", "--retrieval-model", "--pair-retrieval-model", "--max-samples"):
        rendered = rendered.replace(f" {option} ", f" \\\n    {option} ")
    where = "a CUDA GPU" if torch.cuda.is_available() else f"{os.cpu_count()} CPU cores"
    duration = f"\nThe command ran for {minutes:.1f} minutes on {where}.\n" if minutes is not None else ""
    retrieval = (
        f"`train/train_retrieval.py --word_embeddings tiny {' '.join(RETRIEVAL[2:])}` on the corpus's `pose_text` "
        "and `pose_pair` training records"
    )
    if "--retrieval-model" in args:
        judges = (
            "- `retrieval_pose/`, `retrieval_pair/`: the pose-text and pose-pair-text retrieval models that judge "
            f"R-precision, Recall@K and FID, trained by the build's `retrieval` step ({retrieval})."
        )
    else:
        judges = (
            "- This run names no retrieval models, so it has no R-precision, Recall@K or FID. The build's `retrieval` "
            f"step trains them ({retrieval}); `python train/build_unipose_tiny.py --steps retrieval evaluation` "
            "publishes them in `retrieval_pose/` and `retrieval_pair/` and runs the evaluation again with them (the "
            "predictions of a finished run are reused)."
        )
    text = f"""# Evaluation of UniPose-Tiny

`results.json` (every metric; for the headline metrics, their 95 % bootstrap intervals, the paired difference with
each task's baseline and their values item by item) and `report.md` (the same with the paper's tables and rendered
examples in `examples/`) were written by this command, from the repository's root:

```bash
unipose data synth --out runs/tiny/corpus {" ".join(CORPUS)}   # the build's `corpus` step
unipose {rendered}
```
{duration}
The model card's evaluation table is generated from `results.json` and `{CORPUS_MANIFEST}` (the evaluated corpus's
manifest: seed, sizes, splits) by `python train/build_unipose_tiny.py --steps card`.

{judges}
- `<task>/run.json`: what each task's predictions depend on (model, data, prompt template, batch size).
"""
    (evaluation_dir / EVALUATION_README).write_text(text)


def evaluate(work: Path, out: Path) -> None:
    """Step 8: the published model evaluated with the published retrieval models; the results, the corpus's
    manifest and the command into `out/evaluation`, then the card again."""
    evaluation_dir = out / "evaluation"
    # The retrieval models of `work` when it has them; otherwise those already published with the model.
    if all((work / name / "config.json").exists() for name in RETRIEVAL_MODELS.values()):
        ship_retrieval_models(work, evaluation_dir)
    run_dir = work / "evaluation"
    args = evaluation_command(out, work / "corpus", run_dir)
    start = time.monotonic()
    unipose(*args)
    publish_evaluation(run_dir, work / "corpus", out, args, (time.monotonic() - start) / 60)


def publish_evaluation(run_dir: Path, corpus: Path, out: Path, args: list[str], minutes: float | None) -> None:
    """The results of the `unipose evaluate` run in `run_dir` (made by `unipose ARGS` on `corpus`) into
    `out/evaluation`, with the corpus's manifest and a README with the command; then the card again."""
    from unipose.files import staged_files

    evaluation_dir = out / "evaluation"
    # Moved in file by file when complete (each one whole), `results.json` last.
    with staged_files(evaluation_dir, last=("results.json",)) as staging:
        for name in EVALUATION_FILES:
            shutil.copy(run_dir / name, staging / name)
        if (run_dir / "examples").exists():
            shutil.copytree(run_dir / "examples", staging / "examples")
        for run in run_dir.glob("*/run.json"):
            (staging / run.parent.name).mkdir(exist_ok=True)
            shutil.copy(run, staging / run.parent.name / run.name)
        shutil.copy(corpus / "synthetic_corpus.json", staging / CORPUS_MANIFEST)
        write_evaluation_readme(staging, args, minutes)
        shutil.rmtree(evaluation_dir / "examples", ignore_errors=True)
    write_card(out)


def publish(work: Path, out: Path) -> None:
    """Step 7: the final checkpoint with its recipes, logs, plots, evaluation and model card."""
    from unipose.files import staged_directory

    with staged_directory(out) as staging:
        shutil.copytree(
            work / "stage3",
            staging,
            ignore=shutil.ignore_patterns("checkpoint-*", "adapter", "runs"),
            dirs_exist_ok=True,
        )
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
        ship_retrieval_models(work, staging / "evaluation")
        write_card(staging)


def step_done(work: Path, name: str) -> bool:
    """Whether the step that writes `work / name` has finished, so that a rerun of the build skips it."""
    if name == "stage0":  # stopped by `max_train_minutes`, stage 0 saves a model too: rerun it to resume
        results = work / name / "eval_results.json"
        return results.is_file() and json.loads(results.read_text()).get("completed") == 1.0
    return any((work / name / marker).exists() for marker in ("config.json", "synthetic_corpus.json", "backbone"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "tiny")
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "unipose-tiny")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    def done(name: str) -> bool:
        return step_done(work, name)

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
    for kind, name in RETRIEVAL_MODELS.items():
        if "retrieval" in args.steps and not done(name):
            command(
                sys.executable, str(ROOT / "train" / "train_retrieval.py"), "--output_dir", str(work / name),
                "--model_kind", kind, "--pretrain_data", str(work / "corpus" / kind), *RETRIEVAL,
                "--resume_from_checkpoint", "latest",
            )
    if "publish" in args.steps:
        publish(work, args.out)
    if "evaluation" in args.steps:
        evaluate(work, args.out)
    elif "card" in args.steps and "publish" not in args.steps:
        write_card(args.out)


if __name__ == "__main__":
    main()
