"""Training benchmarks of UniPose stages 1-3 on a CPU.

1. Throughput (samples/s and tokens/s, tokens = non-padding positions; medians over steps) of
   `UniPoseSFTTrainer` for each stage on the tiny test model and on a small one, with batches of the synthetic
   corpus, against a baseline measured in the same run: a bare PyTorch loop (forward, backward, AdamW step)
   over the same model, prepared the same way, on batches collated beforehand. Their ratio is the share of
   time left to the model by the trainer, the collator (rendering, tokenising, image preprocessing, target
   encoding) and logging.
2. With `--parts loss_curves`: the CPU recipes (`train/recipes/stage{1,2,3}_cpu.yaml`) run end to end, each
   stage from the previous one's output, and their loss curves (total, text and pose targets) are plotted.

    python benchmarks/bench_training.py                         # -> benchmarks/results/training.json
    python benchmarks/bench_training.py --parts loss_curves --corpus data/synthetic
        # -> benchmarks/results/training_loss_curves.{json,png}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from bench_generation import CONFIGS as GENERATION_CONFIGS  # the benchmarks folder is the script's path
from transformers import TrainerCallback
from trl import SFTConfig

from unipose.files import write_json_atomically
from unipose.testing import tiny_model_and_processor
from unipose.training.collator import UniPoseDataCollator
from unipose.training.sft import UniPoseSFTTrainer, prepare_model_for_stage, stage_peft_config
from unipose.training.tasks import build_task_mixture

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
# The tiny test model and the "small" model of the generation benchmark (8 layers of width 256, 2,048 codes).
CONFIGS = {name: GENERATION_CONFIGS[name] for name in ("tiny", "small")}
STAGE_DATA = {
    1: ([("pose_text", None), ("pose_pair", None)], "simple"),
    2: ([("image_pose", None), ("image_pair", None)], "simple"),
    3: (
        [("pose_text", None), ("pose_pair", None), ("image_pose", None), ("image_pair", None)],
        "instruction",
    ),
}


class StepTimer(TrainerCallback):
    """Time stamps of the ends of the optimizer steps: the time between two includes fetching and collating
    the batch, which `Trainer` does before `on_step_begin`."""

    def __init__(self):
        self.ends = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


class CountingCollator:
    """Wraps a collator and records the samples and tokens of each batch."""

    def __init__(self, collator):
        self.collator, self.samples, self.tokens = collator, [], []

    def __call__(self, examples):
        batch = self.collator(examples)
        self.samples.append(len(examples))
        self.tokens.append(int(batch["attention_mask"].sum()))
        return batch


def ensure_corpus(path: Path, num: int) -> Path:
    if not (path / "pose_text").is_dir():
        from unipose.data.synthetic import build_synthetic_corpus

        build_synthetic_corpus(path, num=num, seed=0, image_size=64, contact_sheet=False)
    return path


def mixture(corpus: Path, stage: int, seed: int = 0):
    components, style = STAGE_DATA[stage]
    return build_task_mixture(
        [{"path": str(corpus / kind), "tasks": tasks} for kind, tasks in components], style, seed
    )


def prepared_model(config_name: str, stage: int):
    model, processor = tiny_model_and_processor(seed=0, **CONFIGS[config_name])
    peft_config = stage_peft_config(model.config, stage, r=16, lora_alpha=32, lora_dropout=0.0)
    return prepare_model_for_stage(model, stage, peft_config), processor


def benchmark_sft_config(output_dir, batch_size: int, max_steps: int, **overrides) -> SFTConfig:
    """The trainer settings of a timed run: no saving, no progress bar, no workers (CPU float32 by default)."""
    settings = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": batch_size,
        "max_steps": max_steps,
        "learning_rate": 1e-3,
        "bf16": False,
        "use_cpu": True,
        "activation_checkpointing": False,
        "report_to": "none",
        "logging_steps": 10**6,
        "save_strategy": "no",
        "max_length": 1024,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "seed": 0,
    }
    return SFTConfig(**{**settings, **overrides})


def trainer_throughput(config_name, stage, dataset, batch_size, warmup, steps, output_dir) -> dict:
    model, processor = prepared_model(config_name, stage)
    collator = CountingCollator(UniPoseDataCollator.from_model(model, processor, max_length=1024))
    timer = StepTimer()
    args = benchmark_sft_config(output_dir, batch_size, warmup + steps)
    trainer = UniPoseSFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        data_collator=collator,
        callbacks=[timer],
    )
    trainer.train()
    # Step i lasts from the end of step i - 1 to its own end, which includes collating its batch. Medians,
    # because other work on a shared machine stretches single steps by large factors.
    durations = [end - previous for previous, end in zip(timer.ends[warmup - 1 :], timer.ends[warmup:])]
    return summarize(
        durations, collator.samples[warmup : warmup + steps], collator.tokens[warmup : warmup + steps]
    )


def summarize(durations, samples, tokens) -> dict:
    return {
        "samples_per_second": statistics.median(n / t for n, t in zip(samples, durations)),
        "tokens_per_second": statistics.median(n / t for n, t in zip(tokens, durations)),
        "seconds_per_step": statistics.median(durations),
    }


def bare_loop_throughput(config_name, stage, dataset, batch_size, warmup, steps) -> dict:
    model, processor = prepared_model(config_name, stage)
    collator = UniPoseDataCollator.from_model(model, processor, max_length=1024)
    batches = [
        collator([dataset[i] for i in range(start, start + batch_size)])
        for start in range(0, (warmup + steps) * batch_size, batch_size)
    ]
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    times = []
    for batch in batches:
        start = time.perf_counter()
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    tokens = [int(batch["attention_mask"].sum()) for batch in batches[warmup:]]
    return summarize(times[warmup:], [batch_size] * steps, tokens)


def throughput(corpus: Path, batch_size: int, warmup: int, steps: int) -> dict:
    results = {"threads": torch.get_num_threads(), "batch_size": batch_size, "steps": steps, "runs": []}
    with tempfile.TemporaryDirectory() as scratch:
        for stage in (1, 2, 3):
            dataset = mixture(corpus, stage).shuffle(seed=0)
            for config_name in CONFIGS:
                trained = trainer_throughput(
                    config_name, stage, dataset, batch_size, warmup, steps, Path(scratch)
                )
                bare = bare_loop_throughput(config_name, stage, dataset, batch_size, warmup, steps)
                run = {"config": config_name, "stage": stage, "trainer": trained, "bare_loop": bare}
                run["trainer_over_bare_loop"] = trained["samples_per_second"] / bare["samples_per_second"]
                results["runs"].append(run)
                print(json.dumps(run))
    return results


# ----------------------------------------------------------------------------------------------------------
# Loss curves of the CPU recipes
# ----------------------------------------------------------------------------------------------------------


def run_cpu_recipes(corpus: Path, runs: Path) -> dict:
    runs.mkdir(parents=True, exist_ok=True)
    curves, previous = {}, None
    for stage in (1, 2, 3):
        recipe = yaml.safe_load((REPO / "train" / "recipes" / f"stage{stage}_cpu.yaml").read_text())
        for component in recipe["datasets"]:
            component["path"] = str(corpus / Path(component["path"]).name)
        recipe["output_dir"] = str(runs / f"stage{stage}_cpu")
        if previous is not None:
            recipe["model_name_or_path"] = str(previous)
        path = runs / f"stage{stage}_cpu.yaml"
        path.write_text(yaml.safe_dump(recipe))
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, str(REPO / "train" / "train_unipose.py"), "--config", str(path)],
            cwd=REPO,
            env=dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(torch.get_num_threads())),
            check=True,
        )
        minutes = (time.perf_counter() - start) / 60
        last = max((runs / f"stage{stage}_cpu").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        history = json.loads((last / "trainer_state.json").read_text())["log_history"]
        entries = [entry for entry in history if "loss" in entry]
        keys = ("loss", "text_loss", "pose_loss", "mean_token_accuracy", "pose_code_accuracy")
        curves[f"stage{stage}"] = {
            "minutes": minutes,
            "steps": [entry["step"] for entry in entries],
            **{key: [entry.get(key) for entry in entries] for key in keys},
        }
        print(
            f"stage {stage}: {minutes:.1f} min, loss {curves[f'stage{stage}']['loss'][0]:.3f} -> "
            f"{curves[f'stage{stage}']['loss'][-1]:.3f}"
        )
        previous = runs / f"stage{stage}_cpu"
    return curves


def plot_curves(curves: dict, path: Path):
    """Losses (top) and accuracies (bottom) of each stage; thin lines are the logged values, thick ones their
    running mean over 10 logs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, len(curves), figsize=(5 * len(curves), 6.4), sharex="col", sharey="row")
    rows = (
        (("loss", "total"), ("text_loss", "text targets"), ("pose_loss", "pose codes")),
        (("mean_token_accuracy", "text tokens"), ("pose_code_accuracy", "pose codes")),
    )
    for column, (name, curve) in enumerate(curves.items()):
        for row, series in enumerate(rows):
            axis = axes[row, column]
            for color, (key, label) in zip(("C0", "C1", "C2"), series):
                points = [
                    (step, value) for step, value in zip(curve["steps"], curve[key]) if value is not None
                ]
                if not points:
                    continue
                steps, values = (np.asarray(part, dtype=float) for part in zip(*points))
                window = min(10, len(values))
                smooth = np.convolve(values, np.ones(window) / window, mode="valid")
                axis.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
                axis.plot(steps[window - 1 :], smooth, color=color, label=label)
            axis.grid(alpha=0.3)
        axes[0, column].set_title(f"{name} (CPU recipe, {curve['minutes']:.1f} min)")
        axes[1, column].set_xlabel("step")
    axes[0, 0].set_ylabel("cross-entropy (nats)")
    axes[1, 0].set_ylabel("accuracy")
    axes[0, 0].legend()
    axes[1, 0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", type=Path, default=REPO / "data" / "synthetic", help="Synthetic corpus (made if absent)."
    )
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2, help="Untimed steps first (at least 1).")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="Torch threads (one: shared machines stall oversubscribed threads).",
    )
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["throughput"],
        choices=["throughput", "loss_curves"],
        help="What to measure: trainer throughput, and/or the loss curves of the CPU recipes (minutes).",
    )
    parser.add_argument(
        "--runs", type=Path, default=REPO / "runs" / "bench", help="Output of the recipe runs."
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    corpus = ensure_corpus(args.corpus, num=1000 if "loss_curves" in args.parts else 64)
    if "throughput" in args.parts:
        write_json_atomically(
            RESULTS / "training.json", throughput(corpus, args.batch_size, args.warmup, args.steps), sort_keys=False
        )
    if "loss_curves" in args.parts:
        curves = run_cpu_recipes(corpus, args.runs)
        write_json_atomically(RESULTS / "training_loss_curves.json", curves, sort_keys=False)
        plot_curves(curves, RESULTS / "training_loss_curves.png")


if __name__ == "__main__":
    main()
