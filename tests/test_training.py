"""Invariants of UniPose training: instruction templates, task examples and mixtures, the collator's labels
and truncation, the trainer's loss, what each stage trains, the saved outputs, atomic checkpoints and the
recipes."""

import importlib.util
import json
import logging
import re
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import safetensors
import torch
from datasets import Dataset
from transformers import AutoModel
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig

from unipose.checkpoints import STAGING_DIR
from unipose.data.schema import FEATURES
from unipose.modeling_unipose import pose_shift_labels
from unipose.processing_poses import IGNORE_INDEX
from unipose.task_formats import (
    INSTRUCTION_TEMPLATES,
    SIMPLE_TEMPLATES,
    TASK_SLOTS,
    TASK_SPECS,
    TASKS,
    render_template,
    template_slots,
)
from unipose.testing import tiny_model_and_processor
from unipose.tokenization import TINY_CORPUS
from unipose.training.collator import UniPoseDataCollator
from unipose.training.sft import (
    ADAPTER_WEIGHTS_NAME,
    UniPoseSFTTrainer,
    load_adapter,
    new_token_ids,
    prepare_model_for_stage,
    save_stage_outputs,
    stage_peft_config,
)
from unipose.training.tasks import (
    CONVERSATION_FEATURES,
    build_example,
    build_task_mixture,
    pose_span_text,
    task_examples,
    text_only_conversations,
)

REPO = Path(__file__).resolve().parents[1]
CAPTIONS = [line for line in TINY_CORPUS if not line.startswith("[INST]")]
LONG_CAPTION = " ".join(CAPTIONS)


def make_records(kind: str, num: int, seed: int = 0, texts_per_record: int = 2, without_texts=()) -> Dataset:
    """`num` random records of `kind` in the schema of `unipose.data.schema`."""
    rng = np.random.default_rng(seed)

    def pose():
        return rng.normal(0.0, 0.4, (22, 3)).astype(np.float32)

    def image():
        return PIL.Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))

    rows = []
    for index in range(num):
        texts = [] if index in without_texts else [str(rng.choice(CAPTIONS)) for _ in range(texts_per_record)]
        row = {"id": f"{kind}-{index}", "texts": texts, "source": f"test/{kind}"}
        if kind in ("pose_text", "image_pose"):
            row["pose"] = pose()
        if kind in ("pose_pair", "image_pair"):
            row["pose_a"], row["pose_b"] = pose(), pose()
        if kind == "image_pose":
            row["image"] = image()
        if kind == "image_pair":
            row["image_a"], row["image_b"] = image(), image()
        rows.append(row)
    return Dataset.from_list(rows, features=FEATURES[kind])


@pytest.fixture(scope="module")
def records():
    return {kind: make_records(kind, 6, seed=index) for index, kind in enumerate(FEATURES)}


@pytest.fixture(scope="module")
def mixed_examples(records):
    """One example of each task, in task order."""
    examples = [task_examples(records[_kind(task)], task, weight=1 / 6, seed=0) for task in TASKS]
    rows = [example[0] for example in examples]
    return Dataset.from_list(rows, features=CONVERSATION_FEATURES)


def _kind(task):
    return TASK_SPECS[task].kind


def sft_config(tmp_path, **overrides):
    settings = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": len(TASKS),
        "max_steps": 1,
        "learning_rate": 1e-2,
        "bf16": False,
        "use_cpu": True,
        "activation_checkpointing": False,
        "report_to": "none",
        "logging_steps": 1,
        "save_strategy": "no",
        "max_length": 512,
        "seed": 0,
        "dataloader_num_workers": 0,
    }
    return SFTConfig(**{**settings, **overrides})


def make_trainer(stage, dataset, tmp_path, seed=0, trainer_kwargs=None, **overrides):
    """A trainer of `stage` on the tiny model (`overrides` of `sft_config`, `trainer_kwargs` of the trainer), and
    the model's weights before the stage's preparation."""
    model, processor = tiny_model_and_processor(seed=seed)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    model = prepare_model_for_stage(model, stage, stage_peft_config(model.config, stage, r=4, lora_alpha=8))
    trainer = UniPoseSFTTrainer(
        model=model,
        args=sft_config(tmp_path, **overrides),
        train_dataset=dataset,
        processing_class=processor,
        **(trainer_kwargs or {}),
    )
    return trainer, before


# ----------------------------------------------------------------------------------------------------------
# Instruction templates
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_every_task_has_thirty_distinct_phrasings_with_its_slots(task):
    templates = INSTRUCTION_TEMPLATES[task]
    assert len(set(templates)) == len(templates) >= 30
    for template in (*templates, SIMPLE_TEMPLATES[task]):
        assert sorted(template_slots(template)) == sorted(TASK_SLOTS[task]), template
        # No stray braces: every brace belongs to a slot.
        assert "{" not in re.sub(r"\{\w+\}", "", template) and "}" not in re.sub(r"\{\w+\}", "", template)


def test_slot_placement_varies_across_phrasings():
    for task in ("pose_to_text", "image_to_text", "text_to_pose", "pose_estimation"):
        positions = {
            ("start" if t.startswith("{") else "end" if t.endswith("}") else "middle")
            for t in INSTRUCTION_TEMPLATES[task]
        }
        assert positions == {"start", "middle", "end"}, task


def test_templates_render_through_the_chat_template_as_written():
    _, processor = tiny_model_and_processor()
    placeholders = {"pose": "<pose>", "pose_a": "<pose>", "pose_b": "<pose>", "image": "<image>"}
    placeholders |= {"image_a": "<image>", "image_b": "<image>"}
    for task in TASKS:
        for template in INSTRUCTION_TEMPLATES[task]:
            text = "Raise {both} arms." if "{caption}" in template or "{instruction}" in template else None
            content, _ = render_template(template, text)
            rendered = processor.apply_chat_template([{"role": "user", "content": content}])
            expected = template
            for slot, token in placeholders.items():
                expected = expected.replace("{" + slot + "}", token)
            expected = expected.replace("{caption}", text or "").replace("{instruction}", text or "")
            assert rendered == f"<s>[INST] {expected} [/INST]", template


def test_media_order_follows_the_template(records):
    template = next(
        t for t in INSTRUCTION_TEMPLATES["image_diff"] if t.index("{image_b}") < t.index("{image_a}")
    )
    record = records["image_pair"].cast_column("image_a", FEATURES["image_pair"]["image_a"])[0]
    example = build_example(record, "image_diff", template, "Raise your arms.")
    assert [np.asarray(image).tolist() for image in example["images"]] == [
        np.asarray(record["image_b"]).tolist(),
        np.asarray(record["image_a"]).tolist(),
    ]
    content, media = render_template("Before {pose_b} after {pose_a} ok")
    assert media == ["pose_b", "pose_a"] and [item["type"] for item in content] == [
        "text",
        "pose",
        "text",
        "pose",
        "text",
    ]


def test_render_template_refuses_missing_or_unexpected_text():
    with pytest.raises(ValueError, match="caption"):
        render_template("Make {caption}")
    with pytest.raises(ValueError, match="no caption or instruction slot"):
        render_template("Describe {pose}", "text")


# ----------------------------------------------------------------------------------------------------------
# Task examples and mixtures
# ----------------------------------------------------------------------------------------------------------


def test_task_examples_are_deterministic_and_weighted():
    records = make_records("pose_text", 10, seed=3, texts_per_record=3)
    first = task_examples(records, "pose_to_text", "instruction", weight=2.0, seed=5)
    again = task_examples(records, "pose_to_text", "instruction", weight=2.0, seed=5)
    other = task_examples(records, "pose_to_text", "instruction", weight=2.0, seed=6)
    assert list(first["messages"]) == list(again["messages"]) and list(first["id"]) == list(again["id"])
    assert list(first["messages"]) != list(other["messages"])
    # Weight 2: every record exactly twice, with its own draws of template and caption.
    assert sorted(first["id"]) == sorted(list(records["id"]) * 2)
    assert len(task_examples(records, "pose_to_text", weight=0.5, seed=0)) == 5
    assert len(set(task_examples(records, "pose_to_text", weight=0.5, seed=0)["id"])) == 5
    # Every answer is one of its record's captions, every pose the record's pose.
    by_id = {record["id"]: record for record in records}
    for example in first:
        record = by_id[example["id"]]
        assert example["messages"][1]["content"][0]["text"] in record["texts"]
        np.testing.assert_array_equal(example["poses"][0], record["pose"])


def test_records_without_text_serve_only_text_free_tasks(caplog):
    records = make_records("image_pose", 5, without_texts=(1, 3))
    with caplog.at_level(logging.WARNING):
        captions = task_examples(records, "image_to_text")
    assert "2 of 5 records have no text" in caplog.text
    assert sorted(captions["id"]) == ["image_pose-0", "image_pose-2", "image_pose-4"]
    estimation = task_examples(records, "pose_estimation")
    assert len(estimation) == 5
    assert all(
        example["messages"][1]["content"] == [{"type": "pose_query", "text": None}] for example in estimation
    )
    np.testing.assert_array_equal(
        np.asarray(estimation.sort("id")[0]["target_poses"][0]), np.asarray(records[0]["pose"])
    )


def test_mixture_over_several_corpora(tmp_path):
    paths = {}
    for kind, num in (("pose_text", 4), ("pose_pair", 6), ("image_pose", 3)):
        paths[kind] = tmp_path / kind
        make_records(kind, num).save_to_disk(str(paths[kind]))
    mixture = build_task_mixture(
        [
            {"path": str(paths["pose_text"]), "weight": 1.5},
            {"path": str(paths["pose_pair"]), "tasks": ["pose_editing"]},
            {"path": str(paths["image_pose"]), "tasks": ["pose_estimation"], "weight": 2},
        ],
        style="instruction",
        seed=1,
    )
    tasks = list(mixture["task"])
    counts = {task: tasks.count(task) for task in set(tasks)}
    assert counts == {"pose_to_text": 6, "text_to_pose": 6, "pose_editing": 6, "pose_estimation": 6}
    assert mixture.features == CONVERSATION_FEATURES
    with pytest.raises(ValueError, match="serve"):
        build_task_mixture([{"path": str(paths["pose_text"]), "tasks": ["image_diff"]}])
    with pytest.raises(ValueError, match="unknown tasks"):
        build_task_mixture([{"path": str(paths["pose_text"]), "tasks": ["dance"]}])


# ----------------------------------------------------------------------------------------------------------
# Collator
# ----------------------------------------------------------------------------------------------------------


def test_collator_labels_the_answer_and_the_codes_of_the_target(mixed_examples):
    model, processor = tiny_model_and_processor()
    collator = UniPoseDataCollator.from_model(model, processor)
    examples = list(mixed_examples)
    batch = collator(examples)
    config = model.config
    torch.testing.assert_close(
        batch["shift_labels"], pose_shift_labels(batch["input_ids"], batch["labels"], config)
    )
    assert batch["pixel_values"].shape[0] == sum(len(example["images"]) for example in examples)
    assert batch["pose_pixel_values"].shape[0] == batch["pixel_values"].shape[0]
    assert batch["pose_values"].shape == (sum(len(example["poses"]) for example in examples), 22, 6)

    tokenizer = processor.tokenizer
    for row, example in enumerate(examples):
        ids, labels = batch["input_ids"][row].tolist(), batch["labels"][row]
        # The labels cover exactly the answer: a contiguous run from just after the prompt's `[/INST]` to the
        # end.
        length = int(batch["attention_mask"][row].sum())
        labeled = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
        start = labeled[0]
        assert labeled == list(range(start, length))
        assert tokenizer.decode(ids[:start]).rstrip().endswith("[/INST]")
        answer = labels[start:length].tolist()
        if example["target_poses"]:
            codes = model.model.pose_tokenizer.encode(np.asarray(example["target_poses"][0])).flatten()
            expected = [config.pose_start_token_id, *(codes + config.pose_code_token_offset).tolist()]
            expected += [config.pose_end_token_id]
            assert answer[1 : len(expected) + 1] == expected  # after the space token that precedes `<p>`
            # Then " </s>", as the published UniPose ends every answer.
            rest = answer[len(expected) + 1 :]
            assert rest[-1] == tokenizer.eos_token_id and len(rest) > 1 and not tokenizer.decode(rest[:-1]).strip()
        else:
            text = tokenizer.decode(answer)
            assert text.strip() == example["messages"][1]["content"][0]["text"] + " " + tokenizer.eos_token
    with torch.no_grad():
        assert float(model(**batch).loss) > 0


def test_padding_does_not_change_the_loss(mixed_examples):
    model, processor = tiny_model_and_processor()
    collator = UniPoseDataCollator.from_model(model, processor)
    # Text and pose answers, input poses and images, of different lengths.
    examples = [
        example
        for example in mixed_examples
        if example["task"] in ("pose_diff", "image_to_text", "text_to_pose")
    ]
    batch = collator(examples)
    with torch.no_grad():
        total = model(**batch).loss * (batch["shift_labels"] != IGNORE_INDEX).sum()
        alone = sum(
            model(**single).loss * (single["shift_labels"] != IGNORE_INDEX).sum()
            for single in (collator([example]) for example in examples)
        )
    torch.testing.assert_close(total, alone, rtol=1e-5, atol=1e-4)


def span_token_count(ids, config):
    ids = torch.as_tensor(ids)
    offset = config.pose_code_token_offset
    special = torch.tensor(
        [
            config.image_token_id,
            config.pose_query_token_id,
            config.pose_start_token_id,
            config.pose_end_token_id,
        ]
    )
    return int(
        ((ids >= offset) & (ids < offset + config.pose_codebook_size)).sum() + torch.isin(ids, special).sum()
    )


def test_truncation_removes_answer_text_only_and_says_so(records, caplog):
    model, processor = tiny_model_and_processor()
    long_answer = build_example(
        records["image_pose"][0], "image_to_text", SIMPLE_TEMPLATES["image_to_text"], LONG_CAPTION
    )
    short = build_example(
        records["pose_text"][0], "text_to_pose", SIMPLE_TEMPLATES["text_to_pose"], "Stand up."
    )
    full = UniPoseDataCollator.from_model(model, processor)([long_answer, short])
    full_length = int(full["attention_mask"][0].sum())
    max_length = full_length - 40
    collator = UniPoseDataCollator.from_model(model, processor, max_length=max_length)
    with caplog.at_level(logging.WARNING):
        batch = collator([long_answer, short])
    assert (
        "Truncated the answers of 1 of 2 examples" in caplog.text and "40 text tokens removed" in caplog.text
    )
    assert batch["input_ids"].shape[1] == max_length
    config = model.config
    assert span_token_count(batch["input_ids"][0], config) == span_token_count(full["input_ids"][0], config)
    # The prompt is untouched: everything up to the first answer label is the same.
    first_label = int((full["labels"][0] != IGNORE_INDEX).nonzero()[0])
    torch.testing.assert_close(batch["input_ids"][0, :first_label], full["input_ids"][0, :first_label])
    # The short example is not touched at all.
    short_length = int(full["attention_mask"][1].sum())
    torch.testing.assert_close(batch["input_ids"][1, :short_length], full["input_ids"][1, :short_length])
    assert batch["pixel_values"].shape == full["pixel_values"].shape

    # A pose answer has no text to give up; an example that only fits by cutting its prompt or a span raises.
    too_short = UniPoseDataCollator.from_model(
        model, processor, max_length=int(full["attention_mask"][1].sum()) - 5
    )
    with pytest.raises(ValueError, match="cannot fit"):
        too_short([short])


def test_collator_refuses_an_example_without_its_target(records):
    model, processor = tiny_model_and_processor()
    example = build_example(
        records["pose_text"][0], "text_to_pose", SIMPLE_TEMPLATES["text_to_pose"], "Sit down."
    )
    example["target_poses"] = []
    with pytest.raises(ValueError, match="asks for 1 pose"):
        UniPoseDataCollator.from_model(model, processor)([example])


# ----------------------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------------------


def test_trainer_loss_is_the_models_and_differs_from_the_fused_loss_at_queries(mixed_examples, tmp_path):
    # Stage 2 keeps the model unwrapped, so TRL's fused head (patched onto it by `SFTTrainer`) can be called
    # too.
    trainer, _ = make_trainer(2, mixed_examples, tmp_path)
    model = trainer.model
    model.eval()
    batch = trainer.data_collator(list(mixed_examples))
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch))
        own = model(**batch).loss
        fused = model(**batch, fused_lm_head=True).loss
    torch.testing.assert_close(loss, own)
    # The fused head scores the queries over the whole vocabulary, the model over the codes only.
    assert float(fused) > float(own) + 1e-3
    text_only = trainer.data_collator([example for example in mixed_examples if not example["target_poses"]])
    with torch.no_grad():
        torch.testing.assert_close(
            model(**text_only).loss, model(**text_only, fused_lm_head=True).loss, rtol=1e-4, atol=1e-4
        )


LANGUAGE_MODEL_LINEAR = re.compile(r"model\.language_model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight")
ROW_TRAINED = ("model.language_model.embed_tokens.weight", "lm_head.weight")


def expected_to_change(name: str, stage: int) -> bool:
    lora = stage in (1, 3) and bool(LANGUAGE_MODEL_LINEAR.fullmatch(name))
    queries = stage in (1, 3) and name == "model.pose_queries"
    projector = stage in (2, 3) and name.startswith("model.multi_modal_projector.")
    return lora or queries or projector


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_one_step_trains_exactly_the_parameters_of_the_stage(stage, mixed_examples, tmp_path):
    trainer, before = make_trainer(stage, mixed_examples, tmp_path)
    trainer.train()
    model = trainer.model
    merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    after = merged.state_dict()
    assert sorted(after) == sorted(before)
    new_rows = torch.zeros(merged.config.text_config.vocab_size, dtype=torch.bool)
    new_rows[new_token_ids(merged.config)] = True
    for name, old in before.items():
        new = after[name]
        if name in ROW_TRAINED and stage in (1, 3):
            changed_rows = (new != old).any(-1)
            assert not bool(changed_rows[~new_rows].any()), f"{name}: an old vocabulary row changed"
            assert bool(changed_rows[new_rows].any()), f"{name}: no new vocabulary row changed"
        elif expected_to_change(name, stage):
            assert not torch.equal(new, old), f"{name} should have trained in stage {stage}"
        else:
            assert torch.equal(new, old), f"{name} should be frozen in stage {stage}"


@pytest.mark.parametrize("stage", [2, 3])
def test_a_16_bit_model_trains_its_weights_in_float32_under_bf16(stage, mixed_examples, tmp_path):
    # The paper recipes load the model in bfloat16: the pose queries and the projector (in place, or PEFT's copy)
    # would take their optimizer steps in bfloat16 too, which rounds small updates away (at 5e-5, many entries did not
    # move in one step). They are float32 now; the step computes in bfloat16 (autocast).
    model, processor = tiny_model_and_processor(seed=0)
    model = model.to(torch.bfloat16)
    peft_config = stage_peft_config(model.config, stage, r=4, lora_alpha=8, lora_dropout=0.0) if stage != 2 else None
    model = prepare_model_for_stage(model, stage, peft_config)
    trainable = {name: parameter for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trainable and {parameter.dtype for parameter in trainable.values()} == {torch.float32}
    before = {name: parameter.detach().clone() for name, parameter in trainable.items()}
    args = sft_config(tmp_path, bf16=True, learning_rate=5e-5, lr_scheduler_type="constant")
    UniPoseSFTTrainer(model=model, args=args, train_dataset=mixed_examples, processing_class=processor).train()
    for name in ("pose_queries", "multi_modal_projector")[3 - stage :]:  # stage 2 trains the projector alone
        moved = [(trainable[key] != before[key]).float().mean() for key in trainable if name in key]
        assert moved and min(moved) > 0.99, (name, moved)
    # Outside autocast too, the float32 projector reads the 16-bit features.
    with torch.no_grad():
        inputs = processor(text=["<image> Describe."], images=[np.zeros((32, 32, 3), dtype=np.uint8)])
        assert torch.isfinite(model(**inputs).logits).all()


def test_stage_two_trains_without_an_adapter():
    model, _ = tiny_model_and_processor()
    assert stage_peft_config(model.config, 2) is None
    with pytest.raises(ValueError, match="does not train a LoRA adapter"):
        prepare_model_for_stage(model, 2, stage_peft_config(model.config, 1))
    with pytest.raises(ValueError, match="`stage` must be one of"):
        stage_peft_config(model.config, 4)


def test_stage_two_trains_only_the_named_vision_towers():
    model, _ = tiny_model_and_processor()
    model = prepare_model_for_stage(model, 2, train_vision_towers=["vision_tower"])
    base = model.model
    assert all(parameter.requires_grad for parameter in base.vision_tower.parameters())
    assert not any(parameter.requires_grad for parameter in base.pose_vision_tower.parameters())
    assert all(parameter.requires_grad for parameter in base.multi_modal_projector.parameters())
    for towers, message in ((["clip"], "must list some of"), ("vision_tower", "must list some of")):
        with pytest.raises(ValueError, match=message):
            prepare_model_for_stage(tiny_model_and_processor()[0], 2, train_vision_towers=towers)
    with pytest.raises(ValueError, match="does not train the vision side"):
        prepare_model_for_stage(tiny_model_and_processor()[0], 1, train_language_model=True, train_vision_towers=["vision_tower"])


@pytest.mark.parametrize("step", ["stage1", "stage2", "stage2_pose", "stage3"])
def test_unipose_tiny_recipes_parse(step):
    script_args, training_args, model_args = load_script().make_parser().parse_args_and_config(
        ["--config", str(REPO / "train" / "recipes" / f"tiny_{step}.yaml")]
    )
    assert script_args.stage == {"stage1": 1, "stage2": 2}.get(step, 3)
    assert script_args.train_language_model is (step != "stage2")
    # The CLIP tower starts from random weights and trains from stage 2; the pretrained pose ViT stays frozen.
    assert script_args.train_vision_towers == ([] if step == "stage1" else ["vision_tower"])
    assert training_args.use_cpu and not model_args.use_peft
    # Each recipe starts from the previous step's output.
    previous = {"stage1": "init", "stage2": "stage1", "stage2_pose": "stage2", "stage3": "stage2_pose"}[step]
    assert Path(model_args.model_name_or_path).name == previous and Path(training_args.output_dir).name == step


def test_saved_adapter_and_merged_model_reproduce_the_trained_model(mixed_examples, tmp_path):
    trainer, _ = make_trainer(1, mixed_examples, tmp_path / "run")
    trainer.train()
    trained = {name for name, parameter in trainer.model.named_parameters() if parameter.requires_grad}
    batch = trainer.data_collator(list(mixed_examples))
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(**batch).logits
    paths = save_stage_outputs(trainer, tmp_path / "run")
    adapter = paths["adapter"]
    assert {"adapter_config.json", ADAPTER_WEIGHTS_NAME, "README.md"} <= {p.name for p in adapter.iterdir()}

    merged = AutoModel.from_pretrained(paths["model"], trust_remote_code=True).eval()
    assert (paths["model"] / "modeling_unipose.py").is_file() and (
        paths["model"] / "processor_config.json"
    ).is_file()
    base, _ = tiny_model_and_processor(seed=0)
    reloaded = load_adapter(base, adapter).eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(reloaded(**batch).logits, expected, rtol=1e-4, atol=1e-4)
    # To train on: what the stage trained trains again, the pose queries (stored in place) included.
    base, _ = tiny_model_and_processor(seed=0)
    again = load_adapter(base.to(torch.bfloat16), adapter, is_trainable=True)
    trainable = {name: parameter for name, parameter in again.named_parameters() if parameter.requires_grad}
    assert set(trainable) == trained and any(name.endswith("pose_queries") for name in trainable)
    assert {parameter.dtype for parameter in trainable.values()} == {torch.float32}


def test_a_checkpoint_interrupted_while_saving_is_never_seen(mixed_examples, tmp_path, kill_while_saving):
    trainer, _ = make_trainer(1, mixed_examples, tmp_path, max_steps=2, save_strategy="steps", save_steps=1)
    kill_while_saving(UniPoseSFTTrainer, step=2)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert (tmp_path / "checkpoint-1" / "trainer_state.json").is_file()
    # The checkpoint's adapter holds the pose queries, which train outside PEFT, so that a resumed run has them.
    with safetensors.safe_open(str(tmp_path / "checkpoint-1" / ADAPTER_WEIGHTS_NAME), framework="pt") as saved:
        assert "base_model.model.model.pose_queries" in saved.keys()
    assert not (tmp_path / "checkpoint-2").exists() and (tmp_path / STAGING_DIR / "checkpoint-2").is_dir()
    assert get_last_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-1")


def test_the_best_checkpoint_is_named_by_its_final_path_in_its_own_state(mixed_examples, tmp_path):
    model, processor = tiny_model_and_processor(seed=0)
    model = prepare_model_for_stage(model, 1, stage_peft_config(model.config, 1, r=4, lora_alpha=8))
    args = sft_config(
        tmp_path, max_steps=2, save_strategy="steps", save_steps=1, eval_strategy="steps", eval_steps=1,
        load_best_model_at_end=True, metric_for_best_model="loss", per_device_eval_batch_size=7,
    )  # fmt: skip
    trainer = UniPoseSFTTrainer(
        model=model, args=args, train_dataset=mixed_examples, eval_dataset=mixed_examples, processing_class=processor
    )
    trainer.train()
    best = trainer.state.best_model_checkpoint
    assert Path(best).parent == tmp_path and Path(best).is_dir()
    for checkpoint in ("checkpoint-1", "checkpoint-2"):
        saved = json.loads((tmp_path / checkpoint / "trainer_state.json").read_text())["best_model_checkpoint"]
        assert STAGING_DIR not in saved and Path(saved).is_dir()


@pytest.mark.parametrize("label_names", [None, ["shift_labels"], ["labels", "shift_labels"]])
def test_compute_metrics_gets_the_labels_that_label_names_names(mixed_examples, tmp_path, label_names):
    # TRL gives `labels`; with `label_names`, the named columns, as `Trainer` does. `shift_labels` are the targets
    # of each position's logits, pose queries included (their own codes, not the next position's).
    seen = []
    trainer, _ = make_trainer(
        1,
        mixed_examples,
        tmp_path,
        trainer_kwargs={"eval_dataset": mixed_examples, "compute_metrics": lambda found: seen.append(found) or {}},
        per_device_eval_batch_size=len(mixed_examples),
        label_names=label_names,
    )
    trainer.evaluate()
    batch = trainer.data_collator(list(mixed_examples))
    names = label_names or ["labels"]
    got = seen[0].label_ids if len(names) > 1 else (seen[0].label_ids,)
    assert len(got) == len(names)
    for name, label_ids in zip(names, got):
        np.testing.assert_array_equal(label_ids, batch[name].numpy())
    assert seen[0].predictions.shape[:2] == batch["input_ids"].shape


# ----------------------------------------------------------------------------------------------------------
# Text-only conversations for `trl sft`
# ----------------------------------------------------------------------------------------------------------


def test_text_only_conversations_write_poses_as_code_tokens(mixed_examples, caplog):
    model, processor = tiny_model_and_processor()
    with caplog.at_level(logging.WARNING):
        conversations = text_only_conversations(mixed_examples, model.model.pose_tokenizer)
    assert "5 of 7 examples have an image or a pose to produce" in caplog.text
    assert len(conversations) == 2  # pose_to_text and pose_diff, in their order in `mixed_examples`
    pose_diff = conversations[1]
    source = next(e for e in mixed_examples if e["task"] == "pose_diff")
    codes = torch.cat([model.model.pose_tokenizer.encode(np.asarray(pose)) for pose in source["poses"]])
    prompt = pose_diff["messages"][0]["content"]
    assert pose_span_text(codes[0].tolist()) in prompt and pose_span_text(codes[1].tolist()) in prompt
    # The processor reads them as two complete pose spans of codes.
    ids = processor.apply_chat_template(pose_diff["messages"], tokenize=True, return_dict=True)["input_ids"][
        0
    ]
    assert processor.extract_pose_codes([ids.tolist()])[0].tolist() == codes.tolist()


# ----------------------------------------------------------------------------------------------------------
# Script and recipes
# ----------------------------------------------------------------------------------------------------------


def load_script():
    spec = importlib.util.spec_from_file_location("train_unipose", REPO / "train" / "train_unipose.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The paper's learning rates, epochs and per-GPU batches (24, 8, 8), on the authors' 4 GPUs: global batches.
PAPER = {1: (1.5e-4, 24 * 4, 6, True), 2: (5e-5, 8 * 4, 2, False), 3: (5e-5, 8 * 4, 2, True)}


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_recipes_parse_with_the_papers_settings(stage):
    parser = load_script().make_parser()
    # The paper's recipes train in bf16, which this CPU machine refuses: the command line overrides the
    # recipe.
    script_args, training_args, model_args = parser.parse_args_and_config(
        ["--config", str(REPO / "train" / "recipes" / f"stage{stage}.yaml"), "--bf16", "false"]
    )
    learning_rate, global_batch, epochs, use_peft = PAPER[stage]
    assert script_args.stage == stage and model_args.use_peft is use_peft
    assert training_args.learning_rate == learning_rate and training_args.num_train_epochs == epochs
    gpus = 8
    assert (
        training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * gpus
        == global_batch
    )
    assert training_args.lr_scheduler_type == "cosine" and training_args.warmup_steps == 0.03
    if use_peft:  # the authors' code's LoRA (LLaVA's training defaults)
        assert (model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout) == (64, 16, 0.05)
    assert script_args.template_style == ("instruction" if stage == 3 else "simple")
    cpu_args = parser.parse_args_and_config(
        ["--config", str(REPO / "train" / "recipes" / f"stage{stage}_cpu.yaml")]
    )
    assert cpu_args[0].stage == stage and cpu_args[1].use_cpu and not cpu_args[1].bf16


def test_unknown_recipe_keys_are_refused(tmp_path):
    recipe = (REPO / "train" / "recipes" / "stage1_cpu.yaml").read_text() + "\nlearning_rat: 0.1\n"
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe)
    with pytest.raises(ValueError, match="learning_rat"):
        load_script().make_parser().parse_args_and_config(["--config", str(path)])


@pytest.mark.parametrize(
    "setting", ["load_in_4bit: true", "lora_modules_to_save: [lm_head]", "lora_task_type: SEQ_CLS", "loss_type: dft",
                "packing: true", "padding_free: true", "label_smoothing_factor: 0.1"],
)  # fmt: skip
def test_recipe_settings_that_training_would_not_apply_are_refused(setting, mixed_examples, tmp_path):
    from unipose.training.stages import check_stage_arguments

    path = tmp_path / "recipe.yaml"
    path.write_text((REPO / "train" / "recipes" / "stage1_cpu.yaml").read_text() + f"\n{setting}\n")
    script_args, training_args, model_args = load_script().make_parser().parse(["--config", str(path)])
    name = setting.split(":")[0]
    with pytest.raises(ValueError, match=rf"do(es)? not apply \{{'{name}'"):
        check_stage_arguments(script_args, model_args)
        model, processor = tiny_model_and_processor()
        UniPoseSFTTrainer(model=model, args=training_args, train_dataset=mixed_examples, processing_class=processor)


def test_a_loss_function_or_peft_config_of_the_callers_is_refused(mixed_examples, tmp_path):
    model, processor = tiny_model_and_processor()
    with pytest.raises(ValueError, match="does not take a `compute_loss_func`: the loss is the model"):
        UniPoseSFTTrainer(
            model=model, args=sft_config(tmp_path), train_dataset=mixed_examples, processing_class=processor,
            compute_loss_func=lambda outputs, labels, num_items_in_batch=None: outputs.loss,
        )
    with pytest.raises(ValueError, match=r"does not take a `peft_config`: wrap the model with `prepare_model_for_stage"):
        UniPoseSFTTrainer(
            model=model, args=sft_config(tmp_path), train_dataset=mixed_examples, processing_class=processor,
            peft_config=stage_peft_config(model.config, 1),
        )


def test_a_corpus_that_is_neither_here_nor_on_the_hub_is_named(tmp_path, monkeypatch):
    from unipose.training import tasks

    with pytest.raises(FileNotFoundError, match=r"The corpus '\./nowhere' does not exist"):
        tasks.load_records("./nowhere")

    def offline(path, *args, **kwargs):  # what `load_dataset` raises offline for a name it would look up
        raise ConnectionError(f"Couldn't reach {path!r} on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(tasks, "load_dataset", offline)
    # One slash reads as a Hub id (`owner/name`) as well as a relative folder, as in the paper's recipes.
    with pytest.raises(FileNotFoundError, match=r"'data/posescript-A' is neither a local folder nor a dataset the Hub"):
        tasks.load_records("data/posescript-A")


def test_input_poses_are_encoded_in_the_tokenizers_dtype_under_mixed_precision():
    # `bf16: true` runs the training step under autocast; the input poses' codes must be those inference gives.
    from unipose.pose_sampler import sample_poses
    from unipose.rotations import to_rotation_6d

    model, _ = tiny_model_and_processor()
    pose_values = to_rotation_6d(torch.as_tensor(sample_poses(64, seed=1)).float())
    expected = model.model.encode_poses(pose_values)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(model.model.encode_poses(pose_values), expected)
        # The tokenizer itself under autocast gives other codes: the guard is what keeps them equal.
        unguarded = model.model.pose_tokenizer.encode(pose_values) + model.config.pose_code_token_offset
        assert not torch.equal(unguarded, expected)


def test_the_merged_folder_holds_no_adapter_files_that_would_apply_the_adapter_again(mixed_examples, tmp_path):
    trainer, _ = make_trainer(1, mixed_examples, tmp_path, max_steps=1)
    trainer.train()
    # What `push_to_hub` leaves: each checkpoint's adapter files copied into the output folder.
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    (tmp_path / ADAPTER_WEIGHTS_NAME).write_bytes(b"")
    save_stage_outputs(trainer, tmp_path)
    assert not (tmp_path / "adapter_config.json").exists() and not (tmp_path / ADAPTER_WEIGHTS_NAME).exists()
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    AutoModel.from_pretrained(tmp_path, trust_remote_code=True)  # a plain model, no adapter applied on top


def test_one_process_that_sees_several_gpus_is_refused():
    from types import SimpleNamespace

    from unipose.training.sft import _check_engine_applied

    with pytest.raises(ValueError, match=r"sees 2 GPUs.*`nn.DataParallel`.*one process per GPU"):
        _check_engine_applied(SimpleNamespace(args=SimpleNamespace(n_gpu=2)))


def test_a_sharded_merge_loads_the_base_model_at_the_revision_training_loaded(tmp_path):
    from trl import ModelConfig

    from unipose.training.stages import UniPoseScriptArguments, stage_input_model

    model, processor = tiny_model_and_processor()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    script_args = UniPoseScriptArguments(stage=1, datasets=[{"path": "corpus"}])
    load = stage_input_model(script_args, ModelConfig(model_name_or_path=str(tmp_path), model_revision="v2"))
    assert load.keywords["revision"] == "v2" and load.args == (str(tmp_path),)
    assert load.keywords["dtype"] == torch.float32
