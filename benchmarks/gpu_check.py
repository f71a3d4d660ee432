"""One call that checks UniPose training and generation on a GPU and writes one JSON.

1. Training: a few optimizer steps of stage 1 and stage 3 (with images) of the "small" model (the generation
   benchmark's: 8 layers of width 256, 2,048 codes) in bf16 with sdpa, through `UniPoseSFTTrainer` on a synthetic
   corpus: tokens/s (non-padding tokens of a step over the step's time, collation included; median over the
   measured steps), peak GPU memory, and every logged loss.
2. Generation with the pose step: `generate` on a prompt ending with `<p>` (prefill, then one step over `<p>` and
   the 80 queries) against one forward pass over the same total length, the physical floor; median, min and max
   over `--repeats` (>= 5) timed calls after warm-up, each synchronised.
3. Engines (`--engines fsdp zero3`, the default on a GPU): `train/train_unipose.py` under
   `train/accelerate/{fsdp,deepspeed_zero3}.yaml` with min(2, GPUs) processes, stage 1 and stage 3 of the tiny model
   in float32, against one process with the same global batch: the largest loss difference, and whether the merged
   model loads through `AutoModel`. With one GPU the engine runs with one process (its wrapping, saving and merging
   are checked, not the sharding across processes). FSDP cannot run on CPU processes
   (`tests/test_distributed.py`), hence this part.

    python benchmarks/gpu_check.py                  # on a GPU -> benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check.json   # on a CPU: tiny sizes, 1-2 steps

The dry run takes the same code path on the CPU (tiny model, one warm-up and one measured step, no engines); a test
runs it.
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

import torch
import yaml
from bench_generation import CONFIGS  # the benchmarks folder is the script's path
from bench_training import CountingCollator, StepTimer, benchmark_sft_config
from report import write_report

from unipose.testing import tiny_model_and_processor
from unipose.training.sft import UniPoseSFTTrainer, prepare_model_for_stage, stage_peft_config
from unipose.training.tasks import build_task_mixture

REPO = Path(__file__).resolve().parents[1]
STAGE_TASKS = {
    1: (("pose_text", ("pose_to_text", "text_to_pose")), ("pose_pair", ("pose_diff", "pose_editing"))),
    3: (("pose_text", None), ("pose_pair", None), ("image_pose", None), ("image_pair", None)),
}
ENGINE_CONFIGS = {"fsdp": "fsdp.yaml", "zero3": "deepspeed_zero3.yaml", "zero2": "deepspeed_zero2.yaml"}
# The tiny model's language model is a Llama; the FSDP configuration names Mistral's decoder layer.
TINY_FSDP_WRAP = "LlamaDecoderLayer,CLIPEncoderLayer,VitPoseBackboneLayer,PoseVQVAE"
# Losses of an engine against one process (float32 on a GPU: reductions in another order, cuBLAS algorithms).
ENGINE_LOSS_TOLERANCE = 1e-3


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def spread(times: list[float]) -> dict:
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "repeats": len(times)}


def small_corpus(root: Path, num: int) -> Path:
    from unipose.data.synthetic import build_synthetic_corpus

    if not (root / "pose_text").exists():
        build_synthetic_corpus(root, num=num, num_images=num, seed=0, image_size=64, contact_sheet=False)
    return root


def mixture(corpus: Path, stage: int):
    style = "instruction" if stage == 3 else "simple"
    components = [{"path": str(corpus / kind), "tasks": tasks} for kind, tasks in STAGE_TASKS[stage]]
    return build_task_mixture(components, style, seed=0).shuffle(seed=0)


# ----------------------------------------------------------------------------------------------------------
# 1. Training
# ----------------------------------------------------------------------------------------------------------


def bf16_model(config_name: str, device: torch.device):
    """The model in bf16 on `device`, its pose tokenizer kept in float32 (as `from_pretrained` keeps it)."""
    model, processor = tiny_model_and_processor(seed=0, attn_implementation="sdpa", **CONFIGS[config_name])
    model.to(device=device, dtype=torch.bfloat16)
    model.model.pose_tokenizer.float()
    return model, processor


def train_stage(config_name, stage, corpus, device, batch_size, warmup, steps, output_dir) -> dict:
    model, processor = bf16_model(config_name, device)
    peft_config = stage_peft_config(model.config, stage, r=16, lora_alpha=32, lora_dropout=0.0)
    model = prepare_model_for_stage(model, stage, peft_config)
    timer = StepTimer()
    args = benchmark_sft_config(
        output_dir, batch_size, warmup + steps, bf16=True, use_cpu=device.type == "cpu", logging_steps=1
    )
    trainer = UniPoseSFTTrainer(
        model=model,
        args=args,
        train_dataset=mixture(corpus, stage),
        processing_class=processor,
        callbacks=[timer],
    )
    collator = CountingCollator(trainer.data_collator)
    trainer.data_collator = collator
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.train()
    # Step i lasts from the end of step i - 1 to its own end (collation included).
    durations = [end - previous for previous, end in zip(timer.ends[warmup - 1 :], timer.ends[warmup:])]
    tokens = collator.tokens[warmup : warmup + steps]
    return {
        "stage": stage,
        "model": config_name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "batch_size": batch_size,
        "measured_steps": steps,
        "tokens_per_second": statistics.median(n / t for n, t in zip(tokens, durations)),
        "seconds_per_step": spread(durations),
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "losses": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
    }


# ----------------------------------------------------------------------------------------------------------
# 2. Generation with the pose step
# ----------------------------------------------------------------------------------------------------------


def timed(fn, device: torch.device, repeats: int, warmup: int = 2) -> dict:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return spread(times)


@torch.no_grad()
def pose_step_latency(config_name: str, device: torch.device, prompt_length: int, repeats: int) -> dict:
    model, _ = bf16_model(config_name, device)
    model.eval()
    config = model.config
    n = config.num_pose_tokens
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, 200, (1, prompt_length), generator=generator)
    pose_prompt = torch.cat([prompt, torch.tensor([[config.pose_start_token_id]])], dim=1).to(device)
    full = torch.cat([pose_prompt, torch.full((1, n), config.pose_query_token_id, device=device)], dim=1)
    settings = {"do_sample": False, "pad_token_id": 0, "eos_token_id": None, "max_new_tokens": n + 1}
    output = model.generate(input_ids=pose_prompt, return_dict_in_generate=True, **settings)
    pose_step = timed(lambda: model.generate(input_ids=pose_prompt, **settings), device, repeats)
    floor = timed(lambda: model(input_ids=full, logits_to_keep=n), device, repeats)
    return {
        "model": config_name,
        "prompt_length": prompt_length,
        "new_tokens": output.sequences.shape[1] - pose_prompt.shape[1],  # the codes and `</p>`
        "poses_decoded": len(output.poses[0]),
        "pose_step_generate_s": pose_step,
        "single_forward_same_length_s": floor,
        "pose_step_over_forward_median": pose_step["median"] / floor["median"],
    }


# ----------------------------------------------------------------------------------------------------------
# 3. Engines on GPUs
# ----------------------------------------------------------------------------------------------------------


def engine_recipe(path: Path, stage: int, corpus: Path) -> Path:
    """The tiny CPU recipe of `stage`, on the GPU in float32: four steps, a checkpoint at the end."""
    recipe = yaml.safe_load((REPO / "train" / "recipes" / f"stage{stage}_cpu.yaml").read_text())
    recipe.pop("model_name_or_path", None)
    recipe["datasets"] = [{"path": str(corpus / kind), "tasks": tasks} for kind, tasks in STAGE_TASKS[stage]]
    recipe.update(tiny_model_seed=0, max_steps=4, save_steps=4, logging_steps=1)
    recipe.update(lora_dropout=0.0, use_cpu=False, bf16=False)  # on the GPU, in float32, without dropout
    path.write_text(yaml.safe_dump(recipe))
    return path


def run_training(command: list[str], timeout: int) -> tuple[int, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false")
    try:
        result = subprocess.run(
            command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout} s"
    return result.returncode, result.stderr[-2000:]


def logged_losses(output_dir: Path) -> list[float]:
    last = max(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    history = json.loads((last / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def check_engines(engines, corpus: Path, scratch: Path, timeout: int) -> dict:
    from transformers import AutoModel

    processes = min(2, torch.cuda.device_count())
    script = str(REPO / "train" / "train_unipose.py")
    results = {"processes": processes, "global_batch": 4, "tolerance": ENGINE_LOSS_TOLERANCE}
    for stage in (1, 3):
        recipe = engine_recipe(scratch / f"engine_stage{stage}.yaml", stage, corpus)
        reference = scratch / f"one-stage{stage}"
        code, error = run_training(
            [
                sys.executable,
                script,
                "--config",
                str(recipe),
                "--output_dir",
                str(reference),
                "--per_device_train_batch_size",
                "4",
            ],
            timeout,
        )
        if code:
            results[f"one-stage{stage}"] = {"error": error}
            continue
        for engine in engines:
            output = scratch / f"{engine}-stage{stage}"
            launch = [
                sys.executable,
                "-m",
                "accelerate.commands.launch",
                "--config_file",
                str(REPO / "train" / "accelerate" / ENGINE_CONFIGS[engine]),
                "--num_processes",
                str(processes),
                "--main_process_port",
                "0",
            ]
            if engine == "fsdp":
                launch += ["--mixed_precision", "no", "--fsdp_transformer_layer_cls_to_wrap", TINY_FSDP_WRAP]
            elif engine == "zero2":
                launch += ["--mixed_precision", "no"]
            code, error = run_training(
                [
                    *launch,
                    script,
                    "--config",
                    str(recipe),
                    "--output_dir",
                    str(output),
                    "--per_device_train_batch_size",
                    str(4 // processes),
                ],
                timeout,
            )
            entry = {"returncode": code}
            if code:
                entry["error"] = error
            else:
                one, two = logged_losses(reference), logged_losses(output)
                entry["losses"], entry["one_process_losses"] = two, one
                entry["max_loss_difference"] = max(abs(a - b) for a, b in zip(one, two))
                entry["agrees"] = (
                    len(one) == len(two) and entry["max_loss_difference"] <= ENGINE_LOSS_TOLERANCE
                )
                loaded = AutoModel.from_pretrained(output, trust_remote_code=True)
                entry["loads_through_automodel"] = type(loaded).__name__ == "UniPoseForConditionalGeneration"
            results[f"{engine}-stage{stage}"] = entry
    return results


# ----------------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU: tiny model, 1 warm-up + 1 step, no engines."
    )
    parser.add_argument("--model", choices=sorted(CONFIGS), default=None, help="small (tiny in a dry run)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps first (at least 1)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10, help="timed generate / forward calls (at least 5)")
    parser.add_argument("--prompt-length", type=int, default=64)
    parser.add_argument(
        "--engines",
        nargs="*",
        choices=sorted(ENGINE_CONFIGS),
        default=None,
        help="engines to check with accelerate (default on a GPU: fsdp zero3; none in a dry run)",
    )
    parser.add_argument(
        "--engine-timeout", type=int, default=300, help="seconds per launch (a hang fails it)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu_check.json")
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.repeats < 5:
        parser.error(f"`--warmup` must be >= 1 and `--repeats` >= 5, got {args.warmup} and {args.repeats}.")
    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        parser.error("No GPU: run with `--dry-run` on a CPU.")
    if args.dry_run:
        args.batch_size, args.warmup, args.steps, args.repeats, args.prompt_length = 2, 1, 1, 5, 16
    model = args.model or ("tiny" if args.dry_run else "small")
    engines = (
        args.engines if args.engines is not None else ([] if args.dry_run or not cuda else ["fsdp", "zero3"])
    )
    device = torch.device("cuda" if cuda else "cpu")

    results = {
        "dry_run": args.dry_run,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "dtype": "bfloat16",
        "attn_implementation": "sdpa",
    }
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        corpus = small_corpus(scratch / "corpus", num=8 if args.dry_run else 64)
        results["training"] = [
            train_stage(
                model, stage, corpus, device, args.batch_size, args.warmup, args.steps, scratch / f"s{stage}"
            )
            for stage in (1, 3)
        ]
        results["generation"] = pose_step_latency(model, device, args.prompt_length, args.repeats)
        if engines:
            results["engines"] = check_engines(engines, corpus, scratch, args.engine_timeout)
        else:
            results["engines"] = "not run" + (
                " (needs a GPU: FSDP does not run on CPU processes)" if not cuda else ""
            )
    return write_report(args.out, results)


if __name__ == "__main__":
    raise SystemExit(main())
