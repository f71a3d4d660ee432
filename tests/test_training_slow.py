"""End-to-end runs of the training script in subprocesses: two processes against one, a killed run resumed,
the stages chained through their saved outputs, and the stock `trl sft` command on a tiny saved model.

Each test takes well under two minutes on two CPU cores."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from unipose.testing import tiny_model_and_processor

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "train" / "train_unipose.py"
# Loss curves of a 2-process run and of a 1-process run with the same global batch agree to this (absolute,
# on losses of about 4-7); the measured difference is about 5e-7 (float32 reductions in another order).
LOSS_CURVE_TOLERANCE = 1e-4


def environment():
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false")
    env["OMP_NUM_THREADS"] = "1"  # two processes on two cores
    return env


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from test_training import make_records

    root = tmp_path_factory.mktemp("corpus")
    for index, kind in enumerate(("pose_text", "pose_pair", "image_pose", "image_pair")):
        make_records(kind, 12, seed=index).save_to_disk(str(root / kind))
    return root


def write_recipe(path: Path, corpus: Path, stage: int, **settings) -> Path:
    """The CPU recipe of `stage` with the test corpus and shorter settings."""
    import yaml

    recipe = yaml.safe_load((REPO / "train" / "recipes" / f"stage{stage}_cpu.yaml").read_text())
    for component in recipe["datasets"]:
        component["path"] = str(corpus / Path(component["path"]).name)
    recipe.update(logging_steps=1, dataloader_num_workers=0, **settings)
    path.write_text(yaml.safe_dump(recipe))
    return path


def run(command, timeout=240):
    result = subprocess.run(
        command, check=False, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def training_log(output_dir: Path) -> list[dict]:
    """The per-step log entries of a run, from its last checkpoint."""
    last = max(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    state = json.loads((last / "trainer_state.json").read_text())
    return [entry for entry in state["log_history"] if "loss" in entry]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_follow_the_loss_curve_of_one(corpus, tmp_path):
    steps = 6
    recipe = write_recipe(
        tmp_path / "recipe.yaml", corpus, 1, max_steps=steps, save_steps=steps, lora_dropout=0.0
    )
    run(
        [
            sys.executable,
            str(SCRIPT),
            "--config",
            str(recipe),
            "--output_dir",
            str(tmp_path / "one"),
            "--per_device_train_batch_size",
            "4",
        ]
    )
    run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(REPO / "train/accelerate/ddp.yaml"),
            "--num_processes",
            "2",
            "--mixed_precision",
            "no",
            "--main_process_port",
            str(free_port()),
            str(SCRIPT),
            "--config",
            str(recipe),
            "--output_dir",
            str(tmp_path / "two"),
            "--per_device_train_batch_size",
            "2",
        ]
    )
    one, two = training_log(tmp_path / "one"), training_log(tmp_path / "two")
    assert len(one) == len(two) == steps
    differences = [abs(a["loss"] - b["loss"]) for a, b in zip(one, two)]
    assert max(differences) <= LOSS_CURVE_TOLERANCE, (one, two)
    # Same examples in each global batch: the token counts agree exactly.
    assert [entry["num_tokens"] for entry in one] == [entry["num_tokens"] for entry in two]


def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(corpus, tmp_path):
    recipe = write_recipe(
        tmp_path / "recipe.yaml", corpus, 1, max_steps=12, save_steps=4, per_device_train_batch_size=4
    )
    run([sys.executable, str(SCRIPT), "--config", str(recipe), "--output_dir", str(tmp_path / "straight")])

    killed = tmp_path / "killed"
    command = [sys.executable, str(SCRIPT), "--config", str(recipe), "--output_dir", str(killed)]
    process = subprocess.Popen(
        command, cwd=REPO, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 180
    while not (killed / "checkpoint-4").is_dir():  # appears complete: checkpoints are renamed into place
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "model.safetensors").exists()

    # Only the run that wrote the checkpoint continues from it: another mixture is refused, naming the difference.
    other = subprocess.run(
        command + ["--resume_from_checkpoint", "latest", "--mixture_seed", "7"],
        cwd=REPO, env=environment(), capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert other.returncode != 0 and "mixture_seed: checkpoint" in other.stderr, other.stderr[-3000:]
    run(command + ["--resume_from_checkpoint", "latest"])
    straight, resumed = (
        load_file(tmp_path / "straight" / "model.safetensors"),
        load_file(killed / "model.safetensors"),
    )
    assert sorted(straight) == sorted(resumed)
    different = [name for name in straight if not torch.equal(straight[name], resumed[name])]
    assert not different, different


def test_each_stage_starts_from_the_previous_output(corpus, tmp_path):
    previous = None
    for stage in (1, 2, 3):
        output = tmp_path / f"stage{stage}"
        settings = {"max_steps": 2, "save_steps": 2, "per_device_train_batch_size": 2}
        if previous is not None:
            settings["model_name_or_path"] = str(previous)
        recipe = write_recipe(tmp_path / f"stage{stage}.yaml", corpus, stage, **settings)
        run([sys.executable, str(SCRIPT), "--config", str(recipe), "--output_dir", str(output)])
        assert (output / "config.json").is_file() and (output / "model.safetensors").is_file()
        assert (output / "adapter" / "adapter_config.json").is_file() == (stage != 2)
        if previous is not None:
            before, after = load_file(previous / "model.safetensors"), load_file(output / "model.safetensors")
            projector = [name for name in after if "multi_modal_projector" in name]
            assert all(not torch.equal(before[name], after[name]) for name in projector)
            # Stage 2 leaves everything but the projector as stage 1 wrote it.
            if stage == 2:
                assert all(torch.equal(before[name], after[name]) for name in after if name not in projector)
        previous = output

    # The last output loads as a remote-code checkpoint in a process without the `unipose` package.
    check = (
        "import sys; sys.modules['unipose'] = None\n"
        "from transformers import AutoModel, AutoProcessor\n"
        f"model = AutoModel.from_pretrained({str(previous)!r}, trust_remote_code=True)\n"
        f"processor = AutoProcessor.from_pretrained({str(previous)!r}, trust_remote_code=True)\n"
        "assert type(model).__name__ == 'UniPoseForConditionalGeneration'\n"
    )
    run([sys.executable, "-c", check], timeout=120)


def test_stock_trl_sft_trains_text_tasks_with_poses_written_as_tokens(corpus, tmp_path):
    model, processor = tiny_model_and_processor(seed=0)
    model.save_pretrained(tmp_path / "tiny")
    processor.save_pretrained(tmp_path / "tiny")
    run(
        [
            sys.executable,
            "-m",
            "unipose.cli",
            "conversations",
            "--records",
            str(corpus / "pose_text"),
            str(corpus / "pose_pair"),
            "--pose_tokenizer",
            str(tmp_path / "tiny"),
            "--output",
            str(tmp_path / "text"),
        ]
    )
    lines = (tmp_path / "text" / "train.jsonl").read_text().splitlines()
    assert len(lines) == 24 and all(
        "<p><pose_" in json.loads(line)["messages"][0]["content"] for line in lines
    )
    # The exact command of the runbook, with a short run.
    run(
        [
            str(Path(sys.executable).parent / "trl"),
            "sft",
            "--model_name_or_path",
            str(tmp_path / "tiny"),
            "--trust_remote_code",
            "--dataset_name",
            str(tmp_path / "text"),
            "--assistant_only_loss",
            "--output_dir",
            str(tmp_path / "sft"),
            "--max_steps",
            "3",
            "--per_device_train_batch_size",
            "2",
            "--learning_rate",
            "1e-3",
            "--logging_steps",
            "1",
            "--bf16",
            "false",
            "--use_cpu",
            "--activation_checkpointing",
            "false",
            "--report_to",
            "none",
            "--save_strategy",
            "no",
        ]
    )
    trained = load_file(tmp_path / "sft" / "model.safetensors")
    initial = load_file(tmp_path / "tiny" / "model.safetensors")
    assert not torch.equal(trained["lm_head.weight"], initial["lm_head.weight"])
    # The pose queries never see a target in text-only training.
    assert torch.equal(trained["model.pose_queries"], initial["model.pose_queries"])
