"""
Model cards of trained UniPose checkpoints: the card of `unipose.model_card` with a Training section that
says what the run trained, from which model, on which data and with which recipe.

- [`TrainingRun`]: what a training script knows about its run (stage, base model, data, command, recipe).
- [`trained_parts`]: what trains in a prepared model, read from its trainable parameters.
- [`write_training_card`]: `README.md` of a trained model, of its adapter folder or of a checkpoint.
  [`~unipose.training.sft.UniPoseSFTTrainer`] writes it wherever TRL would write its generic card.
- [`write_trl_sft_card`]: the card of a run of the stock `trl sft` command, which cannot take custom code and
  writes TRL's generic card (`unipose training-card -- ARGS` runs it).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..arguments import recipe_argv
from ..configuration_unipose import UniPoseConfig
from ..model_card import write_model_card

# A PEFT model's parameter names start with this; the rest is the name in the base model.
PEFT_PREFIX = "base_model.model."
# Marks the options that a command line does not give (see `recipe_settings`).
_UNSET = object()
# The parts of a UniPose model, by the module name under `model.` (or at the top), in words.
PART_NAMES = {
    "multi_modal_projector": "the projector",
    "pose_queries": "the pose queries",
    "language_model": "the whole language model",
    "lm_head": "the whole `lm_head`",
    "vision_tower": "the CLIP tower",
    "pose_vision_tower": "the pose ViT",
    "pose_tokenizer": "the pose tokenizer",
}


@dataclass(frozen=True)
class TrainingRun:
    """
    What a training run was, for the Training section of its model card.

    Args:
        stage (`str`):
            What the run is, in words: `"Stage 1 (pose-text alignment)"`.
        base_model (`str`):
            The checkpoint it started from (a folder or a Hub id), or a description of the model.
        datasets (`tuple[dict, ...]`):
            The corpora, each a mapping with `path` and optionally `split`, `tasks` and `weight`.
        script (`str`, *optional*):
            The program that trained, e.g. `"train/train_unipose.py"`.
        command (`str`, *optional*):
            The command line of the run.
        recipe (`dict`, *optional*):
            The settings the run was given (its recipe file and command-line options, by field name): written as
            a YAML file that `--config` takes back.

    Example:

    ```python
    >>> run = TrainingRun(stage="Stage 2 (visual projector)", base_model="runs/stage1",
    ...                   datasets=({"path": "data/synthetic/image_pose", "tasks": ["image_to_text"]},))
    ```
    """

    stage: str
    base_model: str
    datasets: tuple[Mapping, ...] = ()
    script: str | None = None
    command: str | None = None
    recipe: Mapping | None = None

    def __post_init__(self):
        if isinstance(self.datasets, (str, Mapping)) or not all(
            isinstance(entry, Mapping) and "path" in entry for entry in self.datasets
        ):
            raise ValueError(
                f"`datasets` must be a sequence of mappings with a `path`, got {self.datasets!r}."
            )
        object.__setattr__(self, "datasets", tuple(self.datasets))

    @property
    def dataset_paths(self) -> list[str]:
        return [str(entry["path"]) for entry in self.datasets]


def describe_parameters(names) -> list[str]:
    """The parts of a UniPose model that parameters `names` (in the base model) belong to, in words, in order:
    `["model.pose_queries", "model.multi_modal_projector.linear_1.weight"]` -> `["the pose queries",
    "the projector"]`."""
    described = []
    for name in names:
        # `model.multi_modal_projector.modules_to_save.default.linear_1.weight` -> `multi_modal_projector`
        parts = name.removeprefix(PEFT_PREFIX).split(".modules_to_save.")[0].split(".")
        module = parts[1] if parts[0] == "model" and len(parts) > 1 else parts[0]
        words = PART_NAMES.get(module, f"`{module}`")
        if words not in described:
            described.append(words)
    return described


def trained_parts(model) -> list[str]:
    """
    What trains in `model` (a UniPose model, wrapped by PEFT or not), in words, read from its parameters that
    require gradients: `["LoRA on the language model (rank 16, alpha 32)", "the pose queries", ...]`.
    """
    adapter_config = getattr(model, "peft_config", {}).get("default")
    trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    lora = any(".lora_" in name for name in trainable)
    tokens = any("trainable_tokens_" in name for name in trainable)
    described = []
    if lora:
        described.append(
            f"LoRA on the language model (rank {adapter_config.r}, alpha {adapter_config.lora_alpha})"
        )
    if tokens:
        indices = adapter_config.trainable_token_indices
        rows = len(next(iter(indices.values()))) if isinstance(indices, Mapping) else len(indices)
        layers = (
            " and ".join(f"`{layer}`" for layer in indices)
            if isinstance(indices, Mapping)
            else "the embeddings"
        )
        described.append(f"the {rows} new vocabulary rows of {layers} (PEFT trainable tokens)")
    described += describe_parameters(
        name for name in trainable if ".lora_" not in name and "trainable_tokens_" not in name
    )
    return described


def recipe_settings(parser, argv: Sequence[str]) -> dict:
    """
    The settings that a command line gives a `TrlParser`: the `--config` file's (as written, without its
    `env` block) updated with the options on the command line, by field name. Values that a YAML recipe cannot
    hold (enums, paths) are written as strings.

    Args:
        parser (`trl.TrlParser`): a fresh parser of the script; it is changed (its defaults become the
            recipe's), so not the one that runs.
        argv (sequence of `str`): the command line, without the program name.
    """
    argv = recipe_argv(argv)
    settings = {}
    if "--config" in argv:
        index = argv.index("--config")
        if index + 1 >= len(argv):
            raise ValueError(f"`--config` needs a recipe file after it, got the command line {argv!r}.")
        path = argv[index + 1]
        del argv[index : index + 2]
        recipe = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(recipe, Mapping):
            raise ValueError(f"The recipe {path} must hold a YAML mapping, got {type(recipe).__name__}.")
        settings.update({key: value for key, value in recipe.items() if key != "env"})
        # As `TrlParser.parse_args_and_config`: the recipe's values become the defaults (and satisfy the
        # required options), so that what differs from them below came from the command line.
        parser.set_defaults_with_config(**settings)
    # argparse fills in a default only for names that the namespace lacks: starting from a namespace where every
    # name is already set to `_UNSET`, what changes is what the command line gives.
    names = vars(parser.parse_known_args(argv)[0])
    given, _ = parser.parse_known_args(argv, namespace=argparse.Namespace(**dict.fromkeys(names, _UNSET)))
    settings.update({key: value for key, value in vars(given).items() if value is not _UNSET})
    return {key: _plain(value) for key, value in settings.items()}


def _plain(value):
    """`value` as plain YAML data."""
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _code(text) -> str:
    return f"`{text}`"


def _datasets_table(datasets: Sequence[Mapping]) -> str:
    rows = ["| corpus | split | tasks | weight |", "| --- | --- | --- | --- |"]
    for entry in datasets:
        # A UniPose corpus without `tasks` serves every task it can; a conversation dataset names none.
        tasks = ", ".join(entry["tasks"] or ["all it serves"]) if "tasks" in entry else "-"
        weight = entry.get("weight", 1.0)
        rows.append(f"| {_code(entry['path'])} | {entry.get('split') or 'train'} | {tasks} | {weight:g} |")
    return "\n".join(rows)


def training_section(
    run: TrainingRun,
    trained: Sequence[str] = (),
    schedule: str | None = None,
    artifact: str | None = None,
) -> str:
    """
    The Markdown of the card's Training section.

    Args:
        run ([`TrainingRun`]): the run.
        trained (sequence of `str`): what trained, in words (see [`trained_parts`]).
        schedule (`str`, *optional*): steps, batch, learning rate, in words.
        artifact (`str`, *optional*): what the folder holds and how to load it, in Markdown.
    """
    script = f", with {_code(run.script)}" if run.script else ""
    lines = [f"**{run.stage}**{script}.", ""]
    base = (
        _code(run.base_model) if "/" in run.base_model or os.path.exists(run.base_model) else run.base_model
    )
    lines.append(f"- Base model: {base}")
    if trained:
        lines.append(f"- Trained: {'; '.join(trained)}")
    if schedule:
        lines.append(f"- Schedule: {schedule}")
    if run.datasets:
        lines += ["", "Data:", "", _datasets_table(run.datasets)]
    if artifact:
        lines += ["", artifact]
    if run.command:
        lines += ["", "Command:", "", "```bash", run.command, "```"]
    if run.recipe:
        recipe = yaml.safe_dump(dict(run.recipe), sort_keys=False, allow_unicode=True).rstrip()
        lines += ["", "Recipe (the settings given to the run; `--config` takes this file back):", ""]
        lines += ["```yaml", recipe, "```"]
    return "\n".join(lines)


def write_training_card(
    directory: str | os.PathLike,
    config,
    run: TrainingRun,
    trained: Sequence[str] = (),
    schedule: str | None = None,
    artifact: str | None = None,
    adapter: bool = False,
    repo_id: str | None = None,
    model_name: str | None = None,
    tags: Sequence[str] = (),
) -> Path:
    """
    Write the UniPose model card of a trained checkpoint (or adapter folder) into `directory/README.md`,
    replacing what was there (TRL's or PEFT's generic card). Arguments as [`training_section`]; `adapter`
    marks a PEFT adapter folder; `repo_id` is where the Usage section loads the model from (`directory`
    by default); `model_name` is the title (the folder's name by default); `tags` are added to UniPose's.

    Returns:
        `Path` of the card.
    """
    return write_model_card(
        directory,
        config,
        source="trained",
        repo_id=repo_id or os.fspath(directory),
        model_name=model_name or Path(directory).resolve().name,
        training=training_section(run, trained, schedule, artifact),
        summary=f"{run.stage}, trained with the UniPose training code"
        + (": a PEFT adapter of the base model below." if adapter else "."),
        base_model=run.base_model,
        datasets=run.dataset_paths,
        adapter=adapter,
        tags=tags,
    )


# ----------------------------------------------------------------------------------------------------------
# The card of a `trl sft` run
# ----------------------------------------------------------------------------------------------------------


def trl_sft_run(argv: Sequence[str]):
    """
    Read the arguments of a `trl sft` run (the same list that `trl sft` was given).

    Returns:
        `(run, training_args, trained)`: the [`TrainingRun`], the run's `trl.SFTConfig` (its `output_dir`,
        `hub_model_id`), and what it trained in words.
    """
    from trl.scripts.sft import make_parser

    # `trl sft` itself ignores unknown arguments; so does this.
    script_args, training_args, model_args, dataset_args = make_parser().parse_args_and_config(
        list(argv), fail_with_unknown_args=False
    )
    if model_args.model_name_or_path is None:
        raise ValueError(f"The `trl sft` arguments name no `--model_name_or_path`: {list(argv)!r}.")
    if dataset_args.datasets:
        datasets = tuple({"path": entry.path, "split": entry.split} for entry in dataset_args.datasets)
    elif script_args.dataset_name:
        datasets = ({"path": script_args.dataset_name, "split": script_args.dataset_train_split},)
    else:
        raise ValueError(f"The `trl sft` arguments name no `--dataset_name` nor `datasets`: {list(argv)!r}.")
    if model_args.use_peft:
        targets = (
            ", ".join(f"`{name}`" for name in model_args.lora_target_modules or ()) or "TRL's default modules"
        )
        trained = [f"LoRA (rank {model_args.lora_r}, alpha {model_args.lora_alpha}) on {targets}"]
    else:
        trained = ["every weight that requires gradients (TRL's full fine-tuning)"]
    run = TrainingRun(
        stage="Text-output tasks with the stock `trl sft` command (poses written as code tokens)",
        base_model=model_args.model_name_or_path,
        datasets=datasets,
        script="trl sft",
        command=shlex.join(["trl", "sft", *argv]),
        recipe=recipe_settings(make_parser(), argv),
    )
    return run, training_args, trained


def write_trl_sft_card(argv: Sequence[str]) -> Path:
    """Replace the generic card that `trl sft ARGV` wrote in its output folder by the UniPose card."""
    run, training_args, trained = trl_sft_run(argv)
    output_dir = Path(training_args.output_dir)
    adapter = (output_dir / "adapter_config.json").is_file()
    if not adapter and not (output_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"{output_dir} (`--output_dir`) holds neither a model (`config.json`) nor an adapter "
            "(`adapter_config.json`): run `trl sft` with these arguments first."
        )
    # An adapter folder has no UniPose config: the base model's describes it.
    config = UniPoseConfig.from_pretrained(run.base_model if adapter else output_dir)
    artifact = (
        "This folder is a PEFT adapter: `PeftModel.from_pretrained(base, this_folder)` applies it to the base "
        "model above (loaded with `trust_remote_code=True`)."
        if adapter
        else None
    )
    repo_id = training_args.hub_model_id or os.fspath(output_dir)
    return write_training_card(
        output_dir, config, run, trained, artifact=artifact, adapter=adapter, repo_id=repo_id
    )


__all__ = [
    "PART_NAMES",
    "TrainingRun",
    "describe_parameters",
    "recipe_settings",
    "trained_parts",
    "training_section",
    "trl_sft_run",
    "write_training_card",
    "write_trl_sft_card",
]

