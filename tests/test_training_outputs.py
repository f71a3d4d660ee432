"""What training writes: adapter folders that `PeftModel.from_pretrained` turns back into the trained model (pose
queries and every other weight trained outside LoRA included), and UniPose model cards, not TRL's or PEFT's
generic ones, from `train/train_unipose.py` and from the stock `trl sft` command followed by
`unipose training-card`."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch
import yaml
from datasets import Dataset
from huggingface_hub import ModelCard
from peft import PeftModel
from test_training import REPO, load_script, make_records, sft_config
from trl import SFTConfig

from unipose.model_card import render_model_card
from unipose.task_formats import TASK_SPECS, TASKS
from unipose.testing import tiny_model_and_processor
from unipose.training.model_cards import (
    TrainingRun,
    recipe_settings,
    trained_parts,
    write_trl_sft_card,
)
from unipose.training.sft import (
    UniPoseSFTTrainer,
    prepare_model_for_stage,
    save_stage_outputs,
    stage_peft_config,
)
from unipose.training.tasks import (
    CONVERSATION_FEATURES,
    task_examples,
    text_only_conversations,
    write_json_lines,
)

GENERIC_CARD_MARKERS = ("fine-tuned version of", "# Model Card for Model ID", "[More Information Needed]")


@pytest.fixture(scope="module")
def examples():
    """One example of each task."""
    records = {kind: make_records(kind, 6, seed=index) for index, kind in enumerate(CORPUS_KINDS)}
    rows = [task_examples(records[TASK_SPECS[task].kind], task, weight=1 / 6, seed=0)[0] for task in TASKS]
    return Dataset.from_list(rows, features=CONVERSATION_FEATURES)


CORPUS_KINDS = ("pose_text", "pose_pair", "image_pose", "image_pair")


def pose_codes(model, batch, config) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of `batch` and the code that each pose query writes (`(num_queries,)`), in eval mode."""
    with torch.no_grad():
        logits = model(**batch).logits
    queries = batch["input_ids"] == config.pose_query_token_id
    offset, size = config.pose_code_token_offset, config.pose_codebook_size
    return logits, logits[queries][:, offset : offset + size].argmax(-1)


def generated_codes(model, processor) -> torch.Tensor:
    """The codes of the pose that `model` writes for a Text-to-Pose prompt (greedy)."""
    batch = processor(text=["[INST] Generate the pose: raise both arms. [/INST] <p>"])
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=90, do_sample=False, return_dict_in_generate=True)
    return out.pose_codes[0]


# ----------------------------------------------------------------------------------------------------------
# The adapter folder is the trained model
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "towers"),
    [(1, ()), (3, ("vision_tower",))],
    ids=["stage1", "stage3-with-a-vision-tower"],
)
def test_peft_from_pretrained_on_the_adapter_gives_the_trained_model(stage, towers, examples, tmp_path):
    # Stage 1: LoRA, token rows, pose queries. Stage 3 adds the projector (a PEFT `modules_to_save` copy) and
    # here a vision tower trained in place, like the pose queries.
    model, processor = tiny_model_and_processor(seed=0)
    model = prepare_model_for_stage(
        model, stage, stage_peft_config(model.config, stage, r=4, lora_alpha=8), train_vision_towers=towers
    )
    # Three steps at a large learning rate: the pose queries move far enough to change most codes.
    trainer = UniPoseSFTTrainer(
        model=model,
        args=sft_config(tmp_path / "run", max_steps=3),
        train_dataset=examples,
        processing_class=processor,
    )
    trainer.train()
    trainer.model.eval()
    config = trainer.model.get_base_model().config
    batch = trainer.data_collator(list(examples))
    trained_logits, trained_codes = pose_codes(trainer.model, batch, config)
    trained_generated = generated_codes(trainer.model, processor)
    paths = save_stage_outputs(trainer, tmp_path / "run")

    base, _ = tiny_model_and_processor(seed=0)
    reloaded = PeftModel.from_pretrained(base, str(paths["adapter"])).eval()
    logits, codes = pose_codes(reloaded, batch, config)
    assert len(codes) == 3 * config.num_pose_tokens  # Text-to-Pose, Pose Estimation, Pose Editing
    agreement = float((codes == trained_codes).float().mean())
    assert agreement == 1.0, f"{agreement:.1%} of the pose codes agree"
    torch.testing.assert_close(logits, trained_logits, rtol=0, atol=0)
    torch.testing.assert_close(generated_codes(reloaded, processor), trained_generated, rtol=0, atol=0)


def test_a_run_resumed_from_a_checkpoint_continues_from_its_pose_queries(examples, tmp_path):
    # The pose queries come back through the checkpoint's adapter (PEFT's `load_adapter`): were they left at
    # their initial values, the resumed run would end elsewhere.
    def train(output_dir, resume_from_checkpoint=None):
        model, processor = tiny_model_and_processor(seed=0)
        model = prepare_model_for_stage(model, 1, stage_peft_config(model.config, 1, r=4, lora_alpha=8))
        args = sft_config(output_dir, max_steps=2, save_strategy="steps", save_steps=1)
        trainer = UniPoseSFTTrainer(
            model=model, args=args, train_dataset=examples, processing_class=processor
        )
        trainer.train(resume_from_checkpoint=resume_from_checkpoint)
        return trainer.model.get_base_model().model.pose_queries.detach().clone()

    straight = train(tmp_path / "straight")
    resumed = train(tmp_path / "resumed", resume_from_checkpoint=str(tmp_path / "straight" / "checkpoint-1"))
    # One Adam step moves every query by about the learning rate (1e-2); float noise stays below 1e-8.
    torch.testing.assert_close(resumed, straight, rtol=0, atol=1e-6)


def test_a_finished_run_resumed_from_its_last_checkpoint_takes_no_step_and_holds_its_weights(examples, tmp_path):
    # `Trainer` alone would take a third step (it steps before it checks `max_steps`), at every rerun.
    def trainer():
        model, processor = tiny_model_and_processor(seed=0)
        model = prepare_model_for_stage(model, 1, stage_peft_config(model.config, 1, r=4, lora_alpha=8))
        args = sft_config(tmp_path, max_steps=2, save_strategy="steps", save_steps=1)
        return UniPoseSFTTrainer(model=model, args=args, train_dataset=examples, processing_class=processor)

    first = trainer()
    first.train()
    trained = {name: value.detach().clone() for name, value in first.model.named_parameters() if value.requires_grad}
    again = trainer()
    output = again.train(resume_from_checkpoint=True)  # `Trainer`'s own "the newest checkpoint"
    assert output.global_step == again.state.global_step == 2 and output.training_loss is None
    assert sorted(path.name for path in tmp_path.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    reloaded = {name: value for name, value in again.model.named_parameters() if value.requires_grad}
    assert reloaded.keys() == trained.keys() and len(trained) > 0
    assert [name for name in trained if not torch.equal(reloaded[name], trained[name])] == []


def test_the_adapter_refuses_a_base_model_without_its_weights(examples, tmp_path):
    from unipose.training.sft import load_adapter

    model, processor = tiny_model_and_processor(seed=0)
    model = prepare_model_for_stage(model, 1, stage_peft_config(model.config, 1, r=4, lora_alpha=8))
    trainer = UniPoseSFTTrainer(
        model=model, args=sft_config(tmp_path / "run"), train_dataset=examples, processing_class=processor
    )
    trainer.train()
    adapter = save_stage_outputs(trainer, tmp_path / "run")["adapter"]
    other, _ = tiny_model_and_processor(seed=0)
    del other.model.pose_queries
    with pytest.raises(ValueError, match=r"does not have: \['model.pose_queries'\]"):
        load_adapter(other, adapter)


# ----------------------------------------------------------------------------------------------------------
# Model cards
# ----------------------------------------------------------------------------------------------------------


def read_card(path) -> tuple[dict, str]:
    card = ModelCard.load(path)
    return card.data.to_dict(), card.text


def assert_unipose_card(path, adapter=False):
    metadata, text = read_card(path)
    assert "custom_code" in metadata["tags"] and "unipose" in metadata["tags"]
    assert metadata["library_name"] == ("peft" if adapter else "transformers")
    assert not any(marker in text for marker in GENERIC_CARD_MARKERS), text[:500]
    return metadata, text


def recipe_of(text: str) -> dict:
    """The YAML recipe block of a card's Training section."""
    return yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    for index, kind in enumerate(CORPUS_KINDS):
        make_records(kind, 4, seed=index).save_to_disk(str(root / kind))
    return root


def write_recipe(path, corpus, stage, **settings):
    recipe = yaml.safe_load((REPO / "train" / "recipes" / f"stage{stage}_cpu.yaml").read_text())
    for component in recipe["datasets"]:
        component["path"] = str(corpus / component["path"].rsplit("/", 1)[1])
    recipe.pop("model_name_or_path", None)  # stages 2 and 3 start from the previous output
    recipe.update(
        max_steps=2,
        save_steps=1,
        per_device_train_batch_size=2,
        logging_steps=1,
        dataloader_num_workers=0,
        **settings,
    )
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.parametrize("stage", [1, 2])
def test_training_script_writes_unipose_cards_with_stage_data_and_recipe(stage, corpus, tmp_path):
    script = load_script()
    recipe = write_recipe(tmp_path / "recipe.yaml", corpus, stage, tiny_model_seed=0)
    output = tmp_path / "out"
    command_line = ["--config", str(recipe), "--output_dir", str(output), "--learning_rate", "0.01"]
    script_args, training_args, model_args = script.make_parser().parse_args_and_config(list(command_line))
    script.main(script_args, training_args, model_args, command_line=command_line)

    metadata, text = assert_unipose_card(output / "README.md")
    title = {1: "Stage 1 (pose-text alignment)", 2: "Stage 2 (visual projector)"}[stage]
    assert f"**{title}**, with `train/train_unipose.py`" in text
    assert "the tiny random model of `unipose.testing` (seed 0)" in text
    assert "2 optimizer steps (of 2), global batch 2, learning rate 0.01" in text
    for component in script_args.datasets:
        assert f"| `{component.path}` | train | {', '.join(component.tasks)} | 1 |" in text
    trained = "the pose queries" if stage == 1 else "the projector"
    assert trained in text.split("- Trained:", 1)[1].splitlines()[0]
    # The recipe in the card runs the same stage again: `--config` takes it back.
    assert recipe_of(text)["learning_rate"] == 0.01 and recipe_of(text)["output_dir"] == str(output)
    (tmp_path / "again.yaml").write_text(yaml.safe_dump(recipe_of(text)))
    again = script.make_parser().parse_args_and_config(["--config", str(tmp_path / "again.yaml")])
    assert again[0] == script_args and again[1].learning_rate == 0.01 and again[1].max_steps == 2
    # The cards of the checkpoints (TRL and PEFT write theirs there) are UniPose's too.
    checkpoint = output / "checkpoint-2"
    assert_unipose_card(checkpoint / "README.md", adapter=stage == 1)
    if stage == 1:
        metadata, text = assert_unipose_card(output / "adapter" / "README.md", adapter=True)
        assert {"peft", "lora"} <= set(metadata["tags"])
        assert "`PeftModel.from_pretrained(" in text and "(the pose queries)" in text
        assert "This folder holds the merged model" in read_card(output / "README.md")[1]


def test_push_to_hub_card_is_the_unipose_card(examples, tmp_path):
    # `push_to_hub` calls `create_model_card` (TRL's writes its generic card) before uploading.
    model, processor = tiny_model_and_processor(seed=0)
    model = prepare_model_for_stage(model, 2)
    run = TrainingRun(
        stage="Stage 2 (visual projector)", base_model="owner/unipose-base", datasets=({"path": "a/b"},)
    )
    trainer = UniPoseSFTTrainer(
        model=model,
        args=sft_config(tmp_path, hub_model_id="owner/unipose-stage2"),
        train_dataset=examples,
        processing_class=processor,
        training_run=run,
    )
    trainer.create_model_card(model_name="unipose-stage2", dataset_name="owner/poses", tags=["extra"])
    metadata, text = assert_unipose_card(tmp_path / "README.md")
    assert metadata["base_model"] == "owner/unipose-base" and metadata["datasets"] == ["a/b", "owner/poses"]
    assert "extra" in metadata["tags"] and text.lstrip().startswith("# unipose-stage2")
    assert 'AutoModel.from_pretrained("owner/unipose-stage2"' in text
    assert trained_parts(trainer.model) == ["the projector"]


def test_stock_trl_sft_card_is_replaced_by_the_unipose_card(examples, tmp_path):
    from trl.scripts import sft as trl_sft

    model, processor = tiny_model_and_processor(seed=0)
    model.save_pretrained(tmp_path / "tiny")
    processor.save_pretrained(tmp_path / "tiny")
    conversations = text_only_conversations(examples, model.model.pose_tokenizer)
    write_json_lines(
        Dataset.from_list([conversations[i] for i in (0, 1, 0, 1)]), tmp_path / "text" / "train.jsonl"
    )
    # The runbook's command (train/train_unipose.py), shortened; a checkpoint makes TRL write its card.
    argv = [
        "--model_name_or_path", str(tmp_path / "tiny"), "--trust_remote_code", "--dataset_name",
        str(tmp_path / "text"), "--assistant_only_loss", "--output_dir", str(tmp_path / "sft"), "--bf16", "false",
        "--use_cpu", "--activation_checkpointing", "false", "--max_steps", "1", "--per_device_train_batch_size",
        "2", "--report_to", "none", "--save_strategy", "steps", "--save_steps", "1",
    ]  # fmt: skip
    trl_sft.main(*trl_sft.make_parser().parse_args_and_config(list(argv), fail_with_unknown_args=False))
    generic = (tmp_path / "sft" / "README.md").read_text()
    assert "fine-tuned version of" in generic and "custom_code" not in generic

    # The runbook's second command, as written.
    subprocess.run(
        [sys.executable, "-m", "unipose.cli", "training-card", "--", *argv],
        check=True,
        cwd=REPO,
        env=dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1"),
        capture_output=True,
    )
    metadata, text = assert_unipose_card(tmp_path / "sft" / "README.md")
    assert "base_model" not in metadata  # a local folder: named in the text only
    assert "**Text-output tasks with the stock `trl sft` command (poses written as code tokens)**" in text
    assert f"- Base model: `{tmp_path / 'tiny'}`" in text
    assert f"| `{tmp_path / 'text'}` | train |" in text
    assert "trl sft --model_name_or_path" in text
    recipe = recipe_of(text)
    assert recipe["assistant_only_loss"] is True and recipe["max_steps"] == 1
    assert recipe["output_dir"] == str(tmp_path / "sft")


def test_conversations_command_writes_text_tasks_with_poses_as_codes(corpus, checkpoint, tmp_path, capsys):
    from unipose.cli import main as cli_main

    # The runbook's command, on two record kinds: 4 pose_text and 4 pose_pair records, one example per task.
    records = [str(corpus / "pose_text"), str(corpus / "pose_pair")]
    output = ["--pose_tokenizer", str(checkpoint), "--output", str(tmp_path)]
    assert cli_main(["conversations", "--records", *records, *output]) == 0
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert f"Wrote {len(rows)} conversations to {tmp_path / 'train.jsonl'}" in capsys.readouterr().out
    # The text-only tasks: Pose-to-Text on each pose_text record, Pose-Diff on each pose_pair record.
    assert len(rows) == 4 + 4
    spans = [re.findall(r"<p>(.*?)</p>", row["messages"][0]["content"]) for row in rows]
    assert sorted(len(found) for found in spans) == [1] * 4 + [2] * 4
    assert all(re.fullmatch(r"(<pose_\d+>){80}", span) for found in spans for span in found)
    assert all(row["messages"][-1]["role"] == "assistant" for row in rows)
    assert not any("<p>" in row["messages"][-1]["content"] for row in rows)
    # Another draw into the same folder replaces the conversations only when asked.
    written = (tmp_path / "train.jsonl").read_bytes()
    assert cli_main(["conversations", "--records", *records, *output, "--seed", "5"]) == 1
    assert "already holds train.jsonl: pass `--overwrite`" in capsys.readouterr().err
    assert (tmp_path / "train.jsonl").read_bytes() == written
    assert cli_main(["conversations", "--records", *records, *output, "--seed", "5", "--overwrite"]) == 0


def test_trl_sft_card_needs_the_run_output(tmp_path):
    argv = ["--model_name_or_path", "x", "--dataset_name", "y", "--output_dir", str(tmp_path / "none")]
    argv += ["--use_cpu", "--bf16", "false", "--report_to", "none"]
    with pytest.raises(FileNotFoundError, match="`--output_dir`"):
        write_trl_sft_card(argv)


# ----------------------------------------------------------------------------------------------------------
# Pieces of the cards
# ----------------------------------------------------------------------------------------------------------


def test_recipe_settings_are_the_recipe_updated_by_the_command_line(tmp_path):
    parser = load_script().make_parser
    recipe = REPO / "train" / "recipes" / "stage1_cpu.yaml"
    settings = recipe_settings(
        parser(),
        ["--config", str(recipe), "--lora_r", "8", "--lr_scheduler_type", "linear", "--bf16", "false"],
    )
    expected = yaml.safe_load(recipe.read_text()) | {
        "lora_r": 8,
        "lr_scheduler_type": "linear",
        "bf16": False,
    }
    assert settings == expected
    # The recipe alone, as the scripts take it (`train_unipose.py recipe.yaml`).
    assert recipe_settings(parser(), [str(recipe)]) == yaml.safe_load(recipe.read_text())
    # Without a recipe file: only the options given.
    given = recipe_settings(parser(), ["--stage", "2", "--template_style", "instruction", "--max_steps", "5"])
    assert given == {"stage": 2, "template_style": "instruction", "max_steps": 5}
    json.dumps(settings)  # plain data


def test_card_metadata_names_hub_ids_only(tmp_path):
    model, _ = tiny_model_and_processor()
    local = tmp_path / "stage1"
    local.mkdir()
    card = render_model_card(
        model.config, base_model=str(local), datasets=[str(tmp_path), "owner/data", "json", "parquet", "posescript"]
    )
    # Local folders and the `datasets` file builders (`load_dataset("json", data_files=...)`) are not datasets.
    assert card.data.base_model is None and card.data.datasets == ["owner/data", "posescript"]
    assert "custom_code" in card.data.tags
    card = render_model_card(model.config, base_model="owner/base", adapter=True, tags=["stage-1", "lora"])
    assert card.data.base_model == "owner/base" and card.data.library_name == "peft"
    assert card.data.tags.count("lora") == 1 and card.data.tags[-1] == "stage-1"
    with pytest.raises(TypeError, match="`datasets` and `tags` must be sequences"):
        render_model_card(model.config, datasets="owner/data")
    # A trained checkpoint is the project's licence; a converted one keeps the published parts' licences.
    assert render_model_card(model.config).data.license == "apache-2.0"
    assert render_model_card(model.config, source="converted").data.license == "other"
    assert render_model_card(model.config, source="converted", license="mit").data.license_link is None


def test_training_run_refuses_datasets_without_a_path():
    with pytest.raises(ValueError, match="`datasets` must be a sequence of mappings with a `path`"):
        TrainingRun(stage="Stage 1", base_model="b", datasets=("data/x",))
    with pytest.raises(TypeError, match="`training_run` must be a TrainingRun"):
        UniPoseSFTTrainer(
            model=tiny_model_and_processor()[0],
            args=SFTConfig(output_dir="unused", use_cpu=True, bf16=False, report_to="none"),
            processing_class=tiny_model_and_processor()[1],
            training_run={"stage": 1},
        )


def test_a_training_run_of_the_bundled_model_warns_of_nothing(examples, tmp_path, caplog):
    import logging
    import warnings

    from transformers.utils import logging as transformers_logging

    from unipose import UniPoseForConditionalGeneration, UniPoseProcessor
    from unipose.demo import DEFAULT_MODEL

    transformers_logging.enable_propagation()
    try:
        with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
            warnings.simplefilter("always")
            model = UniPoseForConditionalGeneration.from_pretrained(DEFAULT_MODEL)
            processor = UniPoseProcessor.from_pretrained(DEFAULT_MODEL)
            model = prepare_model_for_stage(model, 3, stage_peft_config(model.config, 3, r=4, lora_alpha=8))
            args = sft_config(tmp_path, max_steps=2, per_device_train_batch_size=2, disable_tqdm=True)
            trainer = UniPoseSFTTrainer(model=model, args=args, train_dataset=examples, processing_class=processor)
            trainer.train()
    finally:
        transformers_logging.disable_propagation()
    assert not [f"{w.category.__name__}: {w.message}" for w in caught]
    # DeepSpeed, when installed, says on import that it found no GPU: its own notice, not this run's.
    records = [r for r in caplog.records if not r.getMessage().startswith("Setting accelerator to CPU")]
    assert not [f"{r.name}: {r.getMessage()}" for r in records]
