"""Training beyond one process: the launch configurations of `train/accelerate/` and the trainer's lockstep.

Fast: the configurations pass accelerate's and DeepSpeed's own checks and name modules the model has; the
trainer's guards (vocabulary rows before sharding, FSDP 1 with frozen and trainable parameters flattened
together); the zero-weighted terms that keep processes in lockstep change neither the loss nor a gradient, run
the towers on a blank image for a batch without images and leave the frozen towers without gradients.

Slow: two CPU processes under each engine (`accelerate launch` of `train/train_unipose.py`, gloo) train stage 1
and stage 3 (with images) of the tiny model for four steps, log the losses of one process with the same global
batch, save a merged model that loads through `AutoModel` with its frozen parts bit-identical, and resume from a
checkpoint to the same losses and weights. Stage 3 is laid out so that in every step one process has images and
the other none, one has pose queries and the other none (`STAGE3_LAYOUT`): without the lockstep terms ZeRO-2
and ZeRO-3 fail there with a gloo collective mismatch (on NCCL, a hang), hence a timeout on every launch. DDP's
stage 1 is `test_training_slow.py`'s. FSDP does not run through `accelerate launch` on CPU processes (accelerate sets it up only on
accelerators): its test shows the refusal and skips, `benchmarks/gpu_check.py --engines fsdp` runs it on GPUs, and
torch's FSDP2 (`fully_shard`) shards the model across two CPU processes directly (`tests/fsdp2_steps.py`), training
stage 3 with the trainer's loss to the losses and weights of one process. transformers' tensor parallelism shards
the bundled model across two CPU processes (`tests/tensor_parallel_answers.py`), which give its pinned answers.

GPUs are hidden from the launches (`CUDA_VISIBLE_DEVICES=""`), so the runs are the same on any machine. The first
DeepSpeed launch on a machine compiles DeepSpeed's shared-memory op with the system C++ compiler (about two
minutes, cached in `~/.cache/torch_extensions`); each launch then takes 15-35 s on two cores.
"""

import copy
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_bundled_model_outputs import PINS, assert_pinned

from unipose.testing import tiny_model_and_processor, tiny_unipose_config
from unipose.training.sft import (
    UniPoseSFTTrainer,
    check_fsdp_plugin,
    check_vocabulary_rows,
    new_token_ids,
    prepare_model_for_stage,
    stage_peft_config,
)
from unipose.training.stages import tiny_model_for_training

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "train" / "train_unipose.py"
ACCELERATE = REPO / "train" / "accelerate"
# Losses of two processes against one with the same global batch (absolute, on losses of 4-7). Measured: at most
# 9.5e-7 (float32 sums in another order) for every engine and stage.
LOSS_TOLERANCE = 1e-5
STEPS = 4
SAVE_STEPS = 2
# The tiny model's language model is a Llama; the FSDP configuration names Mistral's decoder layer.
TINY_FSDP_WRAP = "LlamaDecoderLayer,CLIPEncoderLayer,VitPoseBackboneLayer,PoseVQVAE"
# Per engine: the configuration and what a CPU launch adds (accelerate flags, script flags).
ENGINES = {
    "ddp": ("ddp.yaml", ["--mixed_precision", "no"], []),
    "zero2": (
        "deepspeed_zero2.yaml",
        ["--mixed_precision", "no"],
        ["--use_cpu", "false", "--ddp_backend", "gloo"],
    ),
    "zero3": ("deepspeed_zero3.yaml", [], ["--use_cpu", "false", "--ddp_backend", "gloo"]),
    "fsdp": (
        "fsdp.yaml",
        ["--mixed_precision", "no", "--fsdp_transformer_layer_cls_to_wrap", TINY_FSDP_WRAP],
        [],
    ),
}
# Stage 3 as the two processes meet it (sequential sampling, two examples per process and step): each step sets a
# batch with images against one without, pose queries against none, input poses against none, in both orders.
STAGE3_LAYOUT = (
    ("image_pose", "image_to_text"),  # step 1, process 0: images
    ("pose_text", "pose_to_text"),  # step 1, process 1: text only
    ("pose_text", "text_to_pose"),  # step 2, process 0: pose queries
    ("image_pose", "image_to_text"),  # step 2, process 1: images
    ("pose_pair", "pose_editing"),  # step 3, process 0: an input pose and pose queries
    ("image_pose", "pose_estimation"),  # step 3, process 1: images and pose queries
    ("pose_pair", "pose_diff"),  # step 4, process 0: two input poses
    ("image_pair", "image_diff"),  # step 4, process 1: two images
)


# ----------------------------------------------------------------------------------------------------------
# The configurations, checked by the engines' own code
# ----------------------------------------------------------------------------------------------------------


def accelerate_config(name: str):
    from accelerate.commands.config.config_args import load_config_from_file

    return load_config_from_file(str(ACCELERATE / name))


@pytest.mark.parametrize("name", ["deepspeed_zero2.yaml", "deepspeed_zero3.yaml"])
def test_deepspeed_configurations_pass_deepspeeds_own_check(name):
    pytest.importorskip("deepspeed")
    from accelerate.utils import DeepSpeedPlugin
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig, unset_hf_deepspeed_config
    from trl import SFTConfig

    settings = dict(accelerate_config(name).deepspeed_config)
    if "deepspeed_config_file" in settings:  # a path from the repository root, where launches run
        settings["hf_ds_config"] = str(REPO / settings.pop("deepspeed_config_file"))
    plugin = DeepSpeedPlugin(**settings)
    assert not plugin.zero3_init_flag  # the model is built whole, then sharded
    # The paper's recipes: bf16, 3 examples per GPU. Accelerate's state passes the trainer's precision on.
    args = SFTConfig(
        output_dir="unused", per_device_train_batch_size=3, bf16=True, use_cpu=True, report_to="none"
    )
    plugin.set_mixed_precision("bf16")
    # As Trainer does: fill the "auto" values from the arguments and the model, then DeepSpeed's own parser.
    hf_config = HfTrainerDeepSpeedConfig(copy.deepcopy(plugin.deepspeed_config))
    try:
        hf_config.trainer_config_process(args)
        hf_config.trainer_config_finalize(args, types.SimpleNamespace(config=tiny_unipose_config()), 100)
    finally:
        unset_hf_deepspeed_config()  # the config registers itself globally: later models must not be sharded
    config = DeepSpeedConfig(hf_config.config)
    assert config.zero_optimization_stage == int(name[len("deepspeed_zero")])
    assert config.bfloat16_config.enabled and config.train_micro_batch_size_per_gpu == 3
    if config.zero_optimization_stage == 3:
        # Weights under 10 x the language model's width stay whole (the tiny model's: 320 elements), and
        # the whole model is gathered for saving.
        assert config.zero_config.param_persistence_threshold == 10 * 32
        assert config.zero_config.gather_16bit_weights_on_model_save


def test_fsdp_configuration_passes_accelerates_check_and_wraps_modules_of_the_model(monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin

    settings = accelerate_config("fsdp.yaml").fsdp_config
    # The environment `accelerate launch` gives the processes (`FSDP_<key>`, the layer classes as CLS_TO_WRAP).
    for key, value in settings.items():
        name = key.removeprefix("fsdp_").upper().replace("TRANSFORMER_LAYER_CLS", "TRANSFORMER_CLS")
        monkeypatch.setenv(f"FSDP_{name}", str(value).lower() if isinstance(value, bool) else str(value))
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.state_dict_type.name == "FULL_STATE_DICT"
    # Each wrapped class exists in a UniPose model with a Mistral language model (the paper's).
    from unipose.modeling_unipose import UniPoseForConditionalGeneration

    config = tiny_unipose_config(text_config={"model_type": "mistral", "sliding_window": None})
    with torch.device("meta"):
        model = UniPoseForConditionalGeneration(config)
    classes = {type(module).__name__ for module in model.modules()}
    assert set(plugin.transformer_cls_names_to_wrap) <= classes, (
        set(plugin.transformer_cls_names_to_wrap) - classes
    )
    model = prepare_model_for_stage(model, 1, stage_peft_config(config, 1, r=4, lora_alpha=8))
    check_fsdp_plugin(model, plugin)  # FSDP 2 keeps frozen and trainable parameters apart


def test_fsdp_one_refuses_frozen_and_trainable_parameters_flattened_together():
    model, _ = tiny_model_and_processor()
    model = prepare_model_for_stage(model, 1, stage_peft_config(model.config, 1, r=4, lora_alpha=8))
    fsdp_one = types.SimpleNamespace(fsdp_version=1, use_orig_params=False)
    with pytest.raises(ValueError, match="fsdp_use_orig_params: true"):
        check_fsdp_plugin(model, fsdp_one)
    check_fsdp_plugin(model, types.SimpleNamespace(fsdp_version=1, use_orig_params=True))


def test_vocabulary_rows_must_exist_before_sharding():
    model, processor = tiny_model_and_processor()
    check_vocabulary_rows(model, processor.tokenizer)
    tokenizer = copy.deepcopy(processor.tokenizer)
    tokenizer.add_tokens(["<one_more_token>"])
    with pytest.raises(ValueError, match="add the rows before training"):
        check_vocabulary_rows(model, tokenizer)
    # A model built already sharded (DeepSpeed's `zero.Init` marks its parameters) cannot gain rows either.
    model.lm_head.weight.ds_id = 0
    with pytest.raises(ValueError, match="zero3_init_flag: false"):
        check_vocabulary_rows(model, processor.tokenizer)


# ----------------------------------------------------------------------------------------------------------
# The lockstep terms, in one process
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    from test_training import make_records

    root = tmp_path_factory.mktemp("small_corpus")
    for index, kind in enumerate(("pose_text", "pose_pair", "image_pose", "image_pair")):
        make_records(kind, 2, seed=10 + index).save_to_disk(str(root / kind))
    return root


@pytest.fixture(scope="module")
def stage3_examples(small_corpus):
    from unipose.training.tasks import build_task_mixture

    components = [{"path": str(small_corpus / kind), "tasks": [task]} for kind, task in STAGE3_LAYOUT]
    return build_task_mixture(components, style="instruction", seed=42)


def stage3_trainer(examples, tmp_path):
    from test_training import sft_config

    model, processor = tiny_model_and_processor(seed=0)
    peft_config = stage_peft_config(model.config, 3, r=4, lora_alpha=8, lora_dropout=0.0)
    model = prepare_model_for_stage(model, 3, peft_config)
    trainer = UniPoseSFTTrainer(
        model=model, args=sft_config(tmp_path), train_dataset=examples, processing_class=processor
    )
    return trainer


def test_a_batch_without_images_or_queries_runs_them_at_zero_weight(stage3_examples, tmp_path):
    trainer = stage3_trainer(stage3_examples, tmp_path)
    model, backbone = trainer.model, trainer.model.get_base_model().model
    # Pose-to-text: no image, no pose query.
    text_only = trainer.data_collator([stage3_examples[2], stage3_examples[3]])
    assert "pixel_values" not in text_only
    tower_calls = []
    backbone.vision_tower.register_forward_hook(lambda *args: tower_calls.append("clip"))
    backbone.pose_vision_tower.register_forward_hook(lambda *args: tower_calls.append("pose_vit"))
    model.train()
    loss = trainer.compute_loss(model, dict(text_only))
    assert tower_calls == ["clip", "pose_vit"]  # on a blank image, before the language model
    with torch.no_grad():
        own = model(**text_only, use_cache=False).loss
    assert torch.equal(loss.detach(), own)  # the zero-weighted terms leave the loss bit-identical
    loss.backward()
    # Every trainable part has a gradient; those the batch does not use have zeros; frozen towers have none.
    projector = [p for n, p in model.named_parameters() if "multi_modal_projector" in n and p.requires_grad]
    assert projector and all(p.grad is not None and not p.grad.any() for p in projector)
    assert backbone.pose_queries.grad is not None and not backbone.pose_queries.grad.any()
    towers = [*backbone.vision_tower.parameters(), *backbone.pose_vision_tower.parameters()]
    assert all(not p.requires_grad and p.grad is None for p in towers)
    # The same batch with an image: the towers run once, on the real image only.
    tower_calls.clear()
    with_image = trainer.data_collator([stage3_examples[0]])
    trainer.compute_loss(model, dict(with_image))
    assert tower_calls == ["clip", "pose_vit"]
    # A model whose config answers tuples (`return_dict=False`) still runs them.
    tower_calls.clear()
    backbone.config.return_dict = False
    assert torch.equal(trainer.compute_loss(model, dict(text_only)).detach(), own)
    assert tower_calls == ["clip", "pose_vit"]


def test_input_poses_encoded_in_the_data_pipeline_are_the_models_codes(stage3_examples):
    from unipose.training.collator import UniPoseDataCollator
    from unipose.training.sft import _InputPosesAsCodes

    model, processor = tiny_model_and_processor(seed=0)
    collator = UniPoseDataCollator.from_model(model, processor, max_length=512)
    pipeline = _InputPosesAsCodes(collator, collator.pose_tokenizer, model.config)
    examples = [stage3_examples[i] for i in (8, 9, 12, 13)]  # pose editing, pose diff: input poses
    batch, encoded = collator(examples), pipeline(examples)
    assert "pose_values" in batch and "pose_values" not in encoded
    codes = model.model.encode_poses(batch["pose_values"])
    mask = batch["input_ids"] == model.config.pose_token_id
    assert torch.equal(encoded["input_ids"][mask], codes.flatten())
    with torch.no_grad():
        assert torch.equal(model(**batch).loss, model(**encoded).loss)


# ----------------------------------------------------------------------------------------------------------
# Two processes against one
# ----------------------------------------------------------------------------------------------------------


def environment() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false")
    # Two processes on two cores, CPU only on any machine, DeepSpeed's CPU accelerator (gloo).
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", DS_ACCELERATOR="cpu")
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(command: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `command` in its own process group; a run past `timeout` (a hang) is killed whole and fails."""
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"`{' '.join(command[:8])} ...` hung for {timeout} s:\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def run_processes(script: str, processes: int, tmp_path: Path, *arguments: str) -> dict:
    """The report (JSON at `--out`) of `tests/<script>` run by `torchrun` on `processes` CPU processes."""
    out = tmp_path / f"{Path(script).stem}-{processes}.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
    command += ["--master_port", str(free_port()), str(REPO / "tests" / script), "--out", str(out), *arguments]
    result = launch(command)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def write_recipe(path: Path, stage: int, corpus: Path, small_corpus: Path) -> Path:
    """The CPU recipe of `stage` from the tiny model: four steps, a checkpoint every two."""
    recipe = yaml.safe_load((REPO / "train" / "recipes" / f"stage{stage}_cpu.yaml").read_text())
    recipe.pop("model_name_or_path", None)
    recipe.update(
        tiny_model_seed=0,
        max_steps=STEPS,
        save_steps=SAVE_STEPS,
        logging_steps=1,
        lora_dropout=0.0,
        dataloader_num_workers=0,
    )
    if stage == 1:
        for component in recipe["datasets"]:
            component["path"] = str(corpus / Path(component["path"]).name)
    else:
        recipe["datasets"] = [
            {"path": str(small_corpus / kind), "tasks": [task]} for kind, task in STAGE3_LAYOUT
        ]
        recipe["train_sampling_strategy"] = "sequential"
    path.write_text(yaml.safe_dump(recipe))
    return path


def training_log(output_dir: Path) -> list[dict]:
    last = max(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    state = json.loads((last / "trainer_state.json").read_text())
    return [entry for entry in state["log_history"] if "loss" in entry]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from test_training import make_records

    root = tmp_path_factory.mktemp("corpus")
    for index, kind in enumerate(("pose_text", "pose_pair")):
        make_records(kind, 12, seed=index).save_to_disk(str(root / kind))
    return root


class Runs:
    """The training runs of this module, each launched once: `one` (one process, 4 examples a step) and the
    engines (two processes, 2 examples each)."""

    def __init__(self, root: Path, corpus: Path, small_corpus: Path):
        self.root, self.corpus, self.small_corpus = root, corpus, small_corpus
        self.results = {}

    def recipe(self, stage: int) -> Path:
        return write_recipe(self.root / f"stage{stage}.yaml", stage, self.corpus, self.small_corpus)

    def __call__(self, engine: str, stage: int, resume_from: Path | None = None):
        key = (engine, stage, resume_from)
        refused = [
            result for (name, *_), result in self.results.items() if name == engine and result[0].returncode
        ]
        if refused and "was not applied" in refused[0][0].stderr:
            return refused[0]  # the engine cannot run here: launching it again would say the same
        if key not in self.results:
            output = self.root / f"{engine}-stage{stage}{'-resumed' if resume_from else ''}"
            script = [str(SCRIPT), "--config", str(self.recipe(stage)), "--output_dir", str(output)]
            if resume_from is not None:  # a fresh folder with only the checkpoint, as a killed run leaves it
                output.mkdir(parents=True)
                shutil.copytree(resume_from, output / resume_from.name)
                script += ["--resume_from_checkpoint", "latest"]
            if engine == "one":
                command = [sys.executable, *script, "--per_device_train_batch_size", "4"]
            else:
                config, launch_flags, script_flags = ENGINES[engine]
                command = [
                    sys.executable,
                    "-m",
                    "accelerate.commands.launch",
                    "--config_file",
                    str(ACCELERATE / config),
                    "--num_processes",
                    "2",
                    "--main_process_port",
                    str(free_port()),
                    *launch_flags,
                    *script,
                    "--per_device_train_batch_size",
                    "2",
                    *script_flags,
                ]
            self.results[key] = (launch(command), output)
        return self.results[key]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, corpus, small_corpus):
    return Runs(tmp_path_factory.mktemp("runs"), corpus, small_corpus)


def completed(result: subprocess.CompletedProcess, engine: str):
    if engine.startswith("zero") and importlib.util.find_spec("deepspeed") is None:
        pytest.skip("DeepSpeed is not installed: pip install 'unipose[distributed]'")
    if result.returncode != 0 and engine == "fsdp" and "FSDP was not applied" in result.stderr:
        refusal = next(line for line in result.stderr.splitlines() if "FSDP was not applied" in line)
        pytest.skip(f"FSDP cannot run on CPU processes: {refusal.split('ValueError: ')[-1]}")
    assert result.returncode == 0, result.stderr[-4000:]


def test_stage3_layout_sets_batches_with_and_without_images_and_queries_against_each_other(stage3_examples):
    # (images, pose queries, input poses) of each process's batch, step by step.
    batches = [stage3_examples[start : start + 2] for start in range(0, len(stage3_examples), 2)]
    uses = [
        tuple(any(len(row) for row in batch[column]) for column in ("images", "target_poses", "poses"))
        for batch in batches
    ]
    yes, no = True, False
    assert list(zip(uses[0::2], uses[1::2])) == [
        ((yes, no, no), (no, no, yes)),  # images on process 0 only
        ((no, yes, no), (yes, no, no)),  # queries on process 0 only, images on process 1 only
        ((no, yes, yes), (yes, yes, no)),  # input poses on process 0 only, images on process 1 only
        ((no, no, yes), (yes, no, no)),  # no queries anywhere
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("engine", "stage"),
    [("ddp", 3), ("zero2", 1), ("zero2", 3), ("zero3", 1), ("zero3", 3), ("fsdp", 1), ("fsdp", 3)],
)
def test_two_processes_train_like_one(runs, engine, stage):
    result, output = runs(engine, stage)
    completed(result, engine)
    reference, _ = runs("one", stage)
    completed(reference, "one")
    one, two = training_log(runs.root / f"one-stage{stage}"), training_log(output)
    assert len(one) == len(two) == STEPS
    differences = [abs(a["loss"] - b["loss"]) for a, b in zip(one, two)]
    assert max(differences) <= LOSS_TOLERANCE, (one, two)
    assert [entry["num_tokens"] for entry in one] == [entry["num_tokens"] for entry in two]
    assert "find_unused_parameters=True" not in result.stderr  # DDP's warning when nothing is unused

    # The merged model loads through AutoModel; what the stage freezes is bit-identical to the start, including
    # the old vocabulary rows (the new ones exist and train: they were added before sharding).
    from transformers import AutoModel

    merged = AutoModel.from_pretrained(output, trust_remote_code=True)
    assert type(merged).__name__ == "UniPoseForConditionalGeneration"
    initial = tiny_model_for_training(0).state_dict()
    trained = load_file(output / "model.safetensors")
    frozen = ("model.vision_tower.", "model.pose_vision_tower.", "model.pose_tokenizer.")
    assert all(torch.equal(trained[name], initial[name]) for name in trained if name.startswith(frozen))
    new_rows = torch.zeros(len(initial["lm_head.weight"]), dtype=torch.bool)
    new_rows[new_token_ids(merged.config)] = True
    for name in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        changed = (trained[name] != initial[name]).any(-1)
        assert not changed[~new_rows].any() and changed[new_rows].any(), name
    projector = [name for name in trained if name.startswith("model.multi_modal_projector.")]
    assert all(torch.equal(trained[n], initial[n]) != (stage == 3) for n in projector)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["ddp", "zero2", "zero3", "fsdp"])
def test_a_run_resumed_from_a_checkpoint_matches_the_uninterrupted_run(runs, engine):
    result, output = runs(engine, 3)
    completed(result, engine)
    resumed_result, resumed = runs(engine, 3, resume_from=output / f"checkpoint-{SAVE_STEPS}")
    completed(resumed_result, engine)
    straight = {entry["step"]: entry["loss"] for entry in training_log(output)}
    again = {entry["step"]: entry["loss"] for entry in training_log(resumed)}
    assert sorted(again) == list(range(1, STEPS + 1))  # the checkpoint's log, then the steps run again
    assert all(again[step] == straight[step] for step in again), (straight, again)
    weights, resumed_weights = (
        load_file(output / "model.safetensors"),
        load_file(resumed / "model.safetensors"),
    )
    assert sorted(weights) == sorted(resumed_weights)
    assert not [name for name in weights if not torch.equal(weights[name], resumed_weights[name])]


@pytest.mark.slow
def test_fsdp2_shards_unipose_across_cpu_processes_and_trains_like_one_process(small_corpus, tmp_path):
    # accelerate will not set FSDP up on CPU processes (above), so torch's `fully_shard` shards the model directly
    # (`tests/fsdp2_steps.py`), with a process with images against one without, as in `STAGE3_LAYOUT`.
    one = run_processes("fsdp2_steps.py", 1, tmp_path, "--corpus", str(small_corpus))
    two = run_processes("fsdp2_steps.py", 2, tmp_path, "--corpus", str(small_corpus))
    assert (one["processes"], two["processes"]) == (1, 2) and len(one["losses"]) == len(two["losses"]) == STEPS
    assert one["held_fraction"] == 1 and two["held_fraction"] < 0.6  # each process holds about half the weights
    assert max(abs(a - b) for a, b in zip(one["losses"], two["losses"])) <= LOSS_TOLERANCE, (one, two)
    assert two["checksum"] == pytest.approx(one["checksum"], rel=1e-6)  # the same trained weights


@pytest.mark.slow
def test_tensor_parallel_bundled_model_gives_its_pinned_answers(tmp_path):
    # transformers' tensor parallelism (`DistributedConfig(tp_size=2)`) on two CPU processes shards the language
    # model by its config's plan and `lm_head` by UniPose's; the seven answers stay those one process gives.
    two = run_processes("tensor_parallel_answers.py", 2, tmp_path)
    assert two["processes"] == 2
    # Each process holds half the rows (the vocabulary's 1,671 split 836 + 835).
    assert two["held"]["q_proj"] == 0.5 and two["held"]["lm_head"] == pytest.approx(0.5, abs=1e-3)
    assert_pinned(two["answers"], json.loads(PINS.read_text()), batched=True)


@pytest.mark.slow
def test_evaluation_metrics_count_each_example_once_across_processes(tmp_path):
    # Two processes, one example each per step, three examples: the last step repeats one (`tests/ddp_eval_metrics.py`).
    # The metrics are those of one process with two examples per step, which groups them alike without the repeat.
    one = run_processes("ddp_eval_metrics.py", 1, tmp_path, "--batch-size", "2")
    two = run_processes("ddp_eval_metrics.py", 2, tmp_path, "--batch-size", "1")
    assert (one["processes"], two["processes"]) == (1, 2)
    one, two = one["metrics"], two["metrics"]
    names = ["eval_mean_token_accuracy", "eval_pose_code_accuracy", "eval_text_loss", "eval_pose_loss"]
    assert set(names) <= set(one)
    for name in names:
        assert two[name] == pytest.approx(one[name], rel=1e-5), name


# ----------------------------------------------------------------------------------------------------------
# The GPU check, in its CPU dry run
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_gpu_check_dry_run_reports_training_and_the_pose_step(tmp_path):
    out = tmp_path / "gpu_check.json"
    result = launch(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry-run", "--out", str(out)]
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] and report["dtype"] == "bfloat16" and report["attn_implementation"] == "sdpa"
    assert [run["stage"] for run in report["training"]] == [1, 3]
    for run in report["training"]:
        assert run["tokens_per_second"] > 0 and len(run["losses"]) == 2  # one warm-up step, one measured
        assert all(0 < loss < 20 for loss in run["losses"])
    generation = report["generation"]
    assert generation["new_tokens"] == 81 and generation["poses_decoded"] == 1  # 80 codes and `</p>`
    for timing in (generation["pose_step_generate_s"], generation["single_forward_same_length_s"]):
        assert timing["repeats"] >= 5 and 0 < timing["min"] <= timing["median"] <= timing["max"]
    assert report["engines"].startswith("not run")
