"""
Supervised fine-tuning of UniPose with TRL: what each stage trains, the LoRA configuration, the trainer, and
the saved outputs.

| stage | trains                                                                                   |
| ----- | ---------------------------------------------------------------------------------------- |
| 1     | LoRA on the language model, the new vocabulary rows (input and output), the pose queries |
| 2     | the projector                                                                            |
| 3     | the projector, LoRA on the language model, the new vocabulary rows, the pose queries     |

The vision towers and the pose tokenizer never train (unless `train_vision_towers` names towers without
pretraining, as UniPose-Tiny's recipes do). LoRA is restricted to the language model by a regular
expression on module names (the vision towers have `q_proj` ... too). The new vocabulary rows (`<image>`,
`<pose>`, `<pose_query>`, `<p>`, `</p>` and the pose codes) train through PEFT's trainable tokens, on the
input embeddings and on `lm_head`, so the old rows stay bit-identical. The projector trains as a PEFT
`modules_to_save` copy in stage 3 and in place in stage 2 (no adapter). The pose queries are a bare
parameter, which PEFT cannot wrap (`modules_to_save` and trainable tokens wrap modules): they train in place,
and every adapter folder (the stage's `adapter/` and each checkpoint) stores them in `adapter_model.safetensors`
under their name in the base model, as PEFT stores embedding layers with `save_embedding_layers`. PEFT's loader
passes such entries through to the base model, so `PeftModel.from_pretrained(base, adapter_dir)` alone gives
the trained model, and a resumed run restores them. (Since they live in the base model, `unload()` and
`disable_adapter()` keep them.)

Why a trainer subclass: TRL's `SFTTrainer` computes the loss with a fused LM head over the whole vocabulary.
UniPose's loss at a pose query is a cross-entropy over the pose codes only (the query writes a code, never
text), so the fused loss equals the model's only on text targets (and, reading `lm_head.weight` directly, it
would miss the trained rows of `lm_head`). [`UniPoseSFTTrainer`] therefore calls the model with `labels` /
`shift_labels` and uses its own loss, normalised by `num_items_in_batch` (the targets of the whole
accumulated, all-process batch) exactly like `Trainer`. It also writes checkpoints atomically (into a staging
directory, renamed when complete), and writes the UniPose model card (`unipose.training.model_cards`)
wherever TRL or PEFT would write their generic ones.

After training, [`save_stage_outputs`] writes the adapter (`OUTPUT/adapter`) and the merged model with its
processor (`OUTPUT`), which loads with `AutoModel.from_pretrained(OUTPUT, trust_remote_code=True)` and is
the input of the next stage; each folder has its model card (`README.md`).

Several processes (`train/accelerate/*.yaml`: DDP, DeepSpeed ZeRO-2 and ZeRO-3, FSDP). Every engine reduces
gradients in a fixed order of parameters and expects the same parameters from every process, and ZeRO-3 and
FSDP also gather each module's weights with a collective call as the module runs, frozen modules included.
UniPose's graph depends on the batch: the towers and the projector run only for images, the pose queries only
for poses to write. So the trainer gives every trainable parameter a gradient at every step:

- a batch without a pose query adds `0 * pose_queries.sum()` to the input embeddings, where the queries would
  enter, when the queries train;
- a batch without an image runs both towers and the projector on a blank image just before the language model,
  where image features would enter, and adds `0 * features.sum()` there, when a tower or the projector trains;
  under ZeRO-3 / FSDP also when they are frozen but another process has images in this step (their weights are
  gathered by every process in the same order);
- under ZeRO-3 / FSDP the input poses are encoded in the data pipeline (a CPU copy of the frozen pose tokenizer,
  as for the target poses), so the sharded tokenizer never runs a number of times that differs by process.

A zero-weighted term changes neither the loss nor a gradient. One process does the same as many, so that the
optimizer sees the same gradients whatever the engine: ZeRO steps its flat partitions whole, so a part that no
example of the step used gets a zero gradient there (Adam's moments decay and still move it), where a lone
process would have skipped it. With every trainable parameter in every step, DDP runs with
`find_unused_parameters=False` (unless a vision tower trains: CLIP's last layer does not reach the loss) and
does not warn. The trainer also refuses a model whose vocabulary rows would have to be added after sharding
([`check_vocabulary_rows`]), FSDP version 1 with frozen and trainable parameters flattened together
([`check_fsdp_plugin`]) and a launch whose engine accelerate did not apply (DeepSpeed with `use_cpu: true`,
FSDP on a machine without an accelerator): each would otherwise fail later or train without sharding.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from accelerate.utils import DistributedType
from transformers.integrations import unset_hf_deepspeed_config
from transformers.utils import logging
from trl import SFTTrainer

from ..checkpoints import StagedCheckpointsMixin
from ..files import atomic_path, staged_files
from ..modeling_unipose import UniPoseForConditionalGeneration
from ..processing_poses import IGNORE_INDEX
from .collator import UniPoseDataCollator
from .model_cards import PEFT_PREFIX, TrainingRun, describe_parameters, trained_parts, write_training_card
from .tasks import CONVERSATION_FEATURES

logger = logging.get_logger(__name__)

STAGES = (1, 2, 3)
# The linear layers of Llama-family decoders (Mistral, Llama, Qwen2 ...).
LANGUAGE_MODEL_LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTER_DIR = "adapter"
VISION_TOWERS = ("vision_tower", "pose_vision_tower")
# PEFT's weights file in an adapter folder; it also holds the parameters trained in place (the pose queries).
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
ADAPTER_CONFIG_NAME = "adapter_config.json"
# Checkpoints are written here first and renamed to `checkpoint-N` when complete.
# `SFTConfig` settings with their defaults, which UniPose training does not apply (its collator, its loss).
UNAPPLIED_SFT_SETTINGS = {
    "packing": False,
    "padding_free": False,
    "loss_type": "nll",
    "use_liger_kernel": False,
    "label_smoothing_factor": 0.0,
}
# `SFTTrainer` arguments UniPose's trainer refuses, and why.
REFUSED_TRAINER_ARGUMENTS = {
    "peft_config": "wrap the model with `prepare_model_for_stage(model, stage, peft_config)` instead (PEFT would "
    "freeze the pose queries, which train outside the adapter).",
    "compute_loss_func": "the loss is the model's, over text and pose codes (`unipose_loss`).",
}
# Keys of a PEFT model's parameters that PEFT owns (saved in the adapter).
_PEFT_PARAMETER_MARKERS = ("lora_", "trainable_tokens_", "modules_to_save.")


@dataclass(frozen=True)
class StagePlan:
    """What a stage trains."""

    title: str
    lora: bool
    new_token_rows: bool
    pose_queries: bool
    projector: bool


STAGE_PLANS = {
    1: StagePlan("pose-text alignment", lora=True, new_token_rows=True, pose_queries=True, projector=False),
    2: StagePlan("visual projector", lora=False, new_token_rows=False, pose_queries=False, projector=True),
    3: StagePlan("instruction tuning", lora=True, new_token_rows=True, pose_queries=True, projector=True),
}


def _check_stage(stage) -> StagePlan:
    if stage not in STAGE_PLANS:
        raise ValueError(f"`stage` must be one of {STAGES}, got {stage!r}.")
    return STAGE_PLANS[stage]


def new_token_ids(config) -> list[int]:
    """Vocabulary ids of the UniPose tokens: `<image>`, `<pose>`, `<pose_query>`, `<p>`, `</p>` and the
    codes."""
    return sorted({*config.special_token_ids.values(), *config.pose_code_token_ids})


def language_model_target_modules(module_names=LANGUAGE_MODEL_LINEAR_MODULES) -> str:
    """A PEFT `target_modules` regex that matches `module_names` inside the language model only."""
    if isinstance(module_names, str):
        module_names = [module_names]
    names = "|".join(re.escape(name) for name in module_names)
    return rf"model\.language_model\..*\.({names})"


def stage_peft_config(
    config,
    stage: int,
    r: int = 64,
    lora_alpha: int = 16,
    lora_dropout: float = 0.05,
    target_modules=None,
    use_rslora: bool = False,
    use_dora: bool = False,
):
    """
    The PEFT configuration of a stage, or `None` for stage 2 (which trains the projector without an adapter).

    Args:
        config ([`UniPoseConfig`]): the model's config (gives the new token ids).
        stage (`int`): 1, 2 or 3.
        r, lora_alpha, lora_dropout, use_rslora, use_dora: LoRA settings (by default the authors' training
            code's, LLaVA's training defaults: rank 64, alpha 16, dropout 0.05).
        target_modules (`list[str]`, *optional*): names of the language model's linear layers to adapt; all of
            [`LANGUAGE_MODEL_LINEAR_MODULES`] by default. Layers of the vision towers are never adapted.

    Returns:
        `peft.LoraConfig` or `None`.
    """
    from peft import LoraConfig

    plan = _check_stage(stage)
    if not plan.lora:
        return None
    token_ids = new_token_ids(config)
    return LoraConfig(
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        bias="none",
        use_rslora=use_rslora,
        use_dora=use_dora,
        target_modules=language_model_target_modules(target_modules or LANGUAGE_MODEL_LINEAR_MODULES),
        modules_to_save=["multi_modal_projector"] if plan.projector else None,
        trainable_token_indices={"embed_tokens": token_ids, "lm_head": token_ids}
        if plan.new_token_rows
        else None,
        task_type="CAUSAL_LM",
    )


def prepare_model_for_stage(
    model: UniPoseForConditionalGeneration,
    stage: int,
    peft_config=None,
    train_language_model: bool = False,
    train_vision_towers: Sequence[str] = (),
):
    """
    Freeze everything, then make trainable what `stage` trains (see the module docstring).

    Args:
        model ([`UniPoseForConditionalGeneration`]): the model (not wrapped yet).
        stage (`int`): 1, 2 or 3.
        peft_config (`peft.LoraConfig`, *optional*): the stage's adapter (see [`stage_peft_config`]); required
            for stages 1 and 3 (unless `train_language_model`), refused for stage 2.
        train_language_model (`bool`): stages 1 and 3 train the whole language model instead of an adapter
            (for a language model trained from scratch).
        train_vision_towers (sequence of `str`): stages 2 and 3 also train these of `VISION_TOWERS`
            (`"vision_tower"`: CLIP, `"pose_vision_tower"`: the pose ViT), for towers without pretraining.

    Returns:
        The model, wrapped in a `peft.PeftModel` for stages 1 and 3.
    """
    plan = _check_stage(stage)
    if train_language_model and not plan.lora:
        raise ValueError(f"Stage {stage} does not train the language model: unset `train_language_model`.")
    if isinstance(train_vision_towers, str) or not all(name in VISION_TOWERS for name in train_vision_towers):
        raise ValueError(f"`train_vision_towers` must list some of {VISION_TOWERS}, got {train_vision_towers!r}.")
    if train_vision_towers and not plan.projector:
        raise ValueError(f"Stage {stage} does not train the vision side: unset `train_vision_towers`.")
    if (plan.lora and not train_language_model) != (peft_config is not None):
        raise ValueError(
            f"Stage {stage} {'trains' if plan.lora else 'does not train'} a LoRA adapter: "
            f"{'pass' if plan.lora else 'do not pass'} a `peft_config` (got {type(peft_config).__name__})."
        )
    # By name: a checkpoint loaded with `trust_remote_code=True` has its own copy of the class.
    if type(model).__name__ != UniPoseForConditionalGeneration.__name__:
        raise TypeError(f"`model` must be a UniPoseForConditionalGeneration, got {type(model).__name__}.")
    model.requires_grad_(False)
    if peft_config is not None:
        from peft import get_peft_model

        # Marks only the adapter (LoRA, token rows, modules_to_save copies) as trainable.
        with _quiet_peft():
            model = get_peft_model(model, peft_config)
    elif plan.projector:
        model.model.multi_modal_projector.requires_grad_(True)
    if train_language_model:
        model.model.language_model.requires_grad_(True)
        model.lm_head.requires_grad_(True)
    for name in train_vision_towers:
        getattr(_base_model(model).model, name).requires_grad_(True)
    if plan.pose_queries:
        _base_model(model).model.pose_queries.requires_grad_(True)
    _train_in_float32(parameter for parameter in model.parameters() if parameter.requires_grad)
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    total = sum(parameter.numel() for parameter in model.parameters())
    logger.info(f"Stage {stage}: {trainable:,} trainable parameters of {total:,}.")
    return model


def _train_in_float32(parameters) -> None:
    """What trains is kept in float32 (as PEFT keeps its adapters): in a model loaded in 16 bits (the paper recipes'
    `dtype: bfloat16`) the optimizer would otherwise round most small updates away. `bf16=True` still computes in
    bfloat16 (autocast); DeepSpeed and FSDP keep float32 copies of their own."""
    for parameter in parameters:
        if parameter.dtype in (torch.float16, torch.bfloat16):
            parameter.data = parameter.data.float()


@contextlib.contextmanager
def _quiet_peft():
    """PEFT reads `model.is_gradient_checkpointing`, which transformers 5 deprecates for
    `is_activation_checkpointing`: a warning about the two libraries that nobody training UniPose can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def _base_model(model) -> UniPoseForConditionalGeneration:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _pair(size) -> tuple[int, int]:
    """An image size from a vision config: one side or `(height, width)`."""
    return (size, size) if isinstance(size, int) else tuple(size)


def _is_peft_model(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def in_place_trainables(model) -> dict[str, torch.Tensor]:
    """The trainable parameters of a PEFT model that PEFT does not own (the pose queries, a vision tower trained
    in place), by their name in the base model."""
    return {
        name.removeprefix(PEFT_PREFIX): parameter
        for name, parameter in model.named_parameters()
        if parameter.requires_grad and not any(marker in name for marker in _PEFT_PARAMETER_MARKERS)
    }


def add_in_place_trainables_to_adapter(
    model, directory: str | os.PathLike, state_dict: dict | None = None
) -> list[str]:
    """
    Add [`in_place_trainables`] to the adapter that `model.save_pretrained(directory)` wrote, as
    `base_model.model.<name>` entries of `adapter_model.safetensors`: PEFT's loader passes entries that are no
    adapter weight through to the base model, so `PeftModel.from_pretrained(base, directory)` restores them.

    Args:
        model (`peft.PeftModel`): the trained model.
        directory (`str` or `os.PathLike`): the adapter folder.
        state_dict (`dict`, *optional*): a full state dict of `model` (as DeepSpeed gathers it), read instead of
            the parameters.

    Returns:
        `list[str]`: the names added (in the base model).
    """
    trainables = in_place_trainables(model)
    if not trainables:
        return []
    if state_dict is not None:
        missing = sorted(PEFT_PREFIX + name for name in trainables if PEFT_PREFIX + name not in state_dict)
        if missing:
            raise ValueError(
                f"`state_dict` (the gathered weights) lacks the parameters trained in place: {missing}; the "
                "adapter would not reproduce the trained model."
            )
        trainables = {name: state_dict[PEFT_PREFIX + name] for name in trainables}
    path = Path(directory) / ADAPTER_WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the parameters trained in place ({sorted(trainables)}) go into the adapter "
            "weights that `save_pretrained` writes first."
        )
    with safetensors.safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = safetensors.torch.load_file(str(path))
    tensors.update(
        {PEFT_PREFIX + name: tensor.detach().cpu().contiguous() for name, tensor in trainables.items()}
    )
    _atomic_save_file(tensors, path, metadata)
    return sorted(trainables)


def _atomic_save_file(tensors: dict, path: Path, metadata: dict | None = None):
    with atomic_path(path) as temporary:
        safetensors.torch.save_file(tensors, str(temporary), metadata=metadata or {"format": "pt"})


def load_adapter(
    model: UniPoseForConditionalGeneration, adapter_dir: str | os.PathLike, is_trainable: bool = False
):
    """
    Apply a saved stage adapter to a base model: `PeftModel.from_pretrained`, which restores everything the
    stage trained (LoRA, token rows, projector copy, and the pose queries stored with them), after checking
    that every weight the adapter stores for the base model has a place in `model`.

    With `is_trainable`, the weights stored in place (the pose queries, towers trained in place) train on too,
    in float32, as [`prepare_model_for_stage`] left them: PEFT marks only its own as trainable.

    Returns:
        `peft.PeftModel`; `merge_and_unload()` gives the merged model.
    """
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"No PEFT adapter in {adapter_dir} (`adapter_config.json` is missing).")
    in_place = []
    if (adapter_dir / ADAPTER_WEIGHTS_NAME).is_file():
        with safetensors.safe_open(str(adapter_dir / ADAPTER_WEIGHTS_NAME), framework="pt") as handle:
            keys = handle.keys()
        stored = [key.removeprefix(PEFT_PREFIX) for key in keys]
        parameters = {name for name, _ in model.named_parameters()}
        in_place = [name for name in stored if not any(marker in name for marker in _PEFT_PARAMETER_MARKERS)]
        unknown = sorted(name for name in in_place if name not in parameters)
        if unknown:
            raise ValueError(
                f"The adapter in {adapter_dir} stores weights that `model` ({type(model).__name__}) does not "
                f"have: {unknown}; pass the model the adapter was trained from."
            )
    with _quiet_peft():
        model = PeftModel.from_pretrained(model, os.fspath(adapter_dir), is_trainable=is_trainable)
    if is_trainable:
        parameters = dict(model.get_base_model().named_parameters())
        _train_in_float32(parameters[name].requires_grad_(True) for name in in_place)
    return model


# -- several processes ----------------------------------------------------------------------------------------


def parameters_are_sharded(trainer) -> bool:
    """Whether each process holds only a shard of the weights: DeepSpeed ZeRO-3 or FSDP."""
    if trainer.is_fsdp_enabled:
        return True
    return bool(trainer.is_deepspeed_enabled) and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3


def _num_rows(module: torch.nn.Module) -> int:
    weight = module.weight  # PEFT's wrappers expose the weight of the module they wrap
    return int(getattr(weight, "ds_shape", weight.shape)[0])  # `ds_shape`: the whole shape of a ZeRO-3 shard


@contextlib.contextmanager
def whole_model_init(training_args):
    """
    Build, wrap or load models whole in this block under DeepSpeed ZeRO-3 (whatever `zero3_init_flag` says).

    Once the training arguments exist, transformers builds every model already sharded under ZeRO-3 (its
    `is_deepspeed_zero3_enabled()` looks only at the stage), and PEFT then initialises the trainable token rows
    through a CUDA-only gathering path. The tiny model's codebook, the new vocabulary rows and the collator's copy
    of the pose tokenizer need whole weights; DeepSpeed shards the model when training starts. A model built on
    the main process alone (to merge the adapter at the end) must be whole too: building it sharded is a
    collective call, which the other processes never join. Costs one whole copy of the model in CPU memory per
    process while it is built.

    Example:

    ```python
    >>> with whole_model_init(training_args):
    ...     model = prepare_model_for_stage(UniPoseForConditionalGeneration.from_pretrained(path), 1, peft_config)
    ```
    """
    plugin = getattr(training_args, "deepspeed_plugin", None)
    if plugin is None or not plugin.hf_ds_config.is_zero3():
        yield
        return
    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        plugin.set_deepspeed_weakref()


def check_vocabulary_rows(model, tokenizer) -> None:
    """
    Check, before an engine shards the model, that the input embeddings and `lm_head` hold a row for every token
    of `tokenizer` and every UniPose token.

    Under DeepSpeed ZeRO-3 each process holds a slice of every weight, so rows can no longer be added:
    `resize_token_embeddings` on a sharded model sees slices, and with an untied head (Mistral's) wrapped by PEFT
    it fails. UniPose adds its tokens when the model is assembled ([`~unipose.assembly.build_unipose`] grows both
    matrices, new rows at the mean of the old ones) and training never resizes; this check refuses a model that
    would need it.

    Args:
        model ([`UniPoseForConditionalGeneration`] or its `peft.PeftModel`): the model, not sharded yet.
        tokenizer: the processor's tokenizer.

    Raises:
        `ValueError`: a token has no row, or the model is already sharded.
    """
    base = _base_model(model)
    sharded = sorted(name for name, parameter in base.named_parameters() if hasattr(parameter, "ds_id"))
    if sharded:
        raise ValueError(
            f"The model was built already sharded by DeepSpeed ZeRO-3 ({sharded[:3]} ...): build it whole and let "
            "the trainer shard it (`zero3_init_flag: false` in the accelerate config), so that its vocabulary rows "
            "and the collator's copy of the pose tokenizer are complete."
        )
    needed = max(len(tokenizer), max(new_token_ids(base.config)) + 1)
    rows = {"input embeddings": _num_rows(base.get_input_embeddings()), "lm_head": _num_rows(base.lm_head)}
    short = {name: count for name, count in rows.items() if count < needed}
    if short:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens (UniPose tokens up to id {needed - 1}) but the model has "
            f"{short} rows: add the rows before training, on the whole model (`unipose.assembly.build_unipose` "
            "adds them; or `model.resize_token_embeddings(len(tokenizer), mean_resizing=True)` and save). Rows "
            "cannot be added once DeepSpeed ZeRO-3 or FSDP has sharded the weights."
        )


def check_fsdp_plugin(model, fsdp_plugin) -> None:
    """
    Refuse FSDP version 1 with `use_orig_params=False` on a model that mixes frozen and trainable parameters.

    FSDP 1 flattens the parameters of each wrapped module into one tensor, which is either trainable or not; every
    UniPose stage has both kinds inside the same decoder layer (LoRA beside frozen weights) and in the root module
    (the pose queries beside the frozen embeddings). `use_orig_params=True` keeps the parameters apart; FSDP 2
    (`fsdp_version: 2`, `train/accelerate/fsdp.yaml`) always does.

    Raises:
        `ValueError`: FSDP 1 without `use_orig_params` on a mixed model.
    """
    if fsdp_plugin is None or getattr(fsdp_plugin, "fsdp_version", 1) != 1 or fsdp_plugin.use_orig_params:
        return
    trainable = {parameter.requires_grad for parameter in model.parameters()}
    if trainable == {True, False}:
        raise ValueError(
            "FSDP version 1 flattens the parameters of each wrapped module together, but this model mixes frozen "
            "and trainable parameters in the same modules: set `fsdp_use_orig_params: true` in the accelerate "
            "config, or `fsdp_version: 2`."
        )


# Why accelerate leaves an engine out, by the engine the launch asked for.
_ENGINE_NOT_APPLIED = {
    "DeepSpeed": "On a CPU, DeepSpeed needs `use_cpu: false` (accelerate turns DeepSpeed off under `use_cpu`), "
    "`ddp_backend: gloo` and `DS_ACCELERATOR=cpu` in the environment.",
    "FSDP": "accelerate sets up FSDP only on an accelerator (CUDA, XPU, NPU, ...), not on CPU processes.",
    "DDP": "On a CPU, DDP needs `use_cpu: true` (gloo).",
}


def _check_engine_applied(trainer) -> None:
    """Refuse a launch whose engine accelerate did not set up: it falls back silently (to plain DDP, or to
    processes that never exchange gradients); and one process that sees several GPUs (`nn.DataParallel`)."""
    if trainer.args.n_gpu > 1:
        raise ValueError(
            f"One process sees {trainer.args.n_gpu} GPUs, so `Trainer` would wrap the model in `nn.DataParallel`, "
            "which splits `pixel_values` and `pose_values` apart from the examples that hold them. Launch one "
            "process per GPU (`accelerate launch` or `torchrun`), or expose one GPU (`CUDA_VISIBLE_DEVICES`)."
        )
    state = trainer.accelerator.state
    launched = {
        "DeepSpeed": (
            os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true",
            trainer.is_deepspeed_enabled,
        ),
        "FSDP": (os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true", trainer.is_fsdp_enabled),
        "DDP": (int(os.environ.get("WORLD_SIZE", "1")) > 1, state.distributed_type != DistributedType.NO),
    }
    for engine, (requested, applied) in launched.items():
        if requested and not applied:
            raise ValueError(
                f"accelerate was launched with a {engine} config ({os.environ.get('WORLD_SIZE', '1')} processes), "
                f"but its state is {state.distributed_type} on {state.device}: {engine} was not applied. "
                + _ENGINE_NOT_APPLIED[engine]
            )


@dataclass(frozen=True)
class _LockstepPlan:
    """The parts a batch does not use that its forward pass runs on zero-weighted inputs (module docstring)."""

    pose_queries: bool
    towers: bool


class _InputPosesAsCodes:
    """
    Wraps a collator: the input poses (`pose_values`) become their codes in `input_ids`, encoded one at a time with
    a CPU float32 copy of the model's frozen pose tokenizer, exactly as [`UniPoseModel.encode_poses`] would (used
    under ZeRO-3 / FSDP, where the model's own tokenizer is sharded). Other attributes are the collator's.
    """

    def __init__(self, collator, pose_tokenizer, config):
        self.collator = collator
        self.pose_tokenizer = pose_tokenizer
        self.config = config

    def __getattr__(self, name):
        # Not set yet while unpickling (dataloader workers): no recursion.
        if name in ("collator", "pose_tokenizer", "config") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.collator, name)

    def __call__(self, examples):
        batch = self.collator(examples)
        pose_values = batch.pop("pose_values", None)
        if pose_values is None:
            return batch
        with torch.no_grad():
            codes = torch.cat([self.pose_tokenizer.encode(pose[None]) for pose in pose_values.float()])
        input_ids = batch["input_ids"]
        mask = input_ids == self.config.pose_token_id
        if int(mask.sum()) != codes.numel():
            raise ValueError(
                f"The batch holds {int(mask.sum())} `<pose>` placeholders but {len(pose_values)} input poses of "
                f"{codes.shape[1]} codes each."
            )
        batch["input_ids"] = input_ids.masked_scatter(mask, codes + self.config.pose_code_token_offset)
        return batch


class UniPoseSFTTrainer(StagedCheckpointsMixin, SFTTrainer):
    r"""
    TRL's [`~trl.SFTTrainer`] for UniPose: the model's own loss (text over the vocabulary, pose queries over
    the codes), the [`UniPoseDataCollator`] by default, the conversation columns kept, in-place trainables
    saved in every adapter folder, the UniPose model card instead of TRL's and PEFT's, and checkpoints written
    atomically.

    Takes [`~trl.SFTTrainer`]'s arguments, and `training_run` (a
    [`~unipose.training.model_cards.TrainingRun`]: stage, base model, data, recipe) for the model cards. Wrap
    the model with [`prepare_model_for_stage`] first (a `peft_config` here would freeze the pose queries).
    Dataset preparation is skipped: examples are conversations with images and poses
    ([`~unipose.training.tasks.CONVERSATION_FEATURES`]) that the collator renders.

    Besides TRL's metrics it logs `mean_token_accuracy` (text targets), `pose_code_accuracy`, `text_loss` and
    `pose_loss` (the mean cross-entropy of each kind of target), counting each example once under several
    processes.

    A `compute_metrics` gets the batch's `labels` as TRL gives them, or the columns named in `label_names` as
    `Trainer` gives them. The usual shift (`logits[:, :-1]` against `labels[:, 1:]`) is wrong at the pose queries,
    whose targets are their own codes: `label_names=["shift_labels"]` gives every position's target aligned with
    `logits`.

    Every trainable parameter gets a gradient at every step, which keeps several processes in lockstep (see the
    module docstring); DDP's `find_unused_parameters` stays off unless a vision tower trains (set
    `ddp_find_unused_parameters` to override).
    """

    def __init__(
        self,
        model,
        args=None,
        data_collator=None,
        train_dataset=None,
        processing_class=None,
        training_run: TrainingRun | None = None,
        **kwargs,
    ):
        if args is None:
            raise ValueError("`args` (an `SFTConfig`) is required.")
        if processing_class is None:
            raise ValueError("`processing_class` (the model's UniPoseProcessor) is required.")
        for name, reason in REFUSED_TRAINER_ARGUMENTS.items():
            if kwargs.get(name) is not None:
                raise ValueError(f"UniPose training does not take a `{name}`: {reason}")
        unapplied = {
            name: getattr(args, name)
            for name, default in UNAPPLIED_SFT_SETTINGS.items()
            if getattr(args, name, default) != default
        }
        if unapplied:
            raise ValueError(
                f"UniPose training does not apply {unapplied}: its collator renders, labels and pads each "
                "conversation (with its images and poses) and the loss is the model's, over text and pose codes. "
                f"Leave them at their defaults ({ {name: UNAPPLIED_SFT_SETTINGS[name] for name in unapplied} })."
            )
        if training_run is not None and not isinstance(training_run, TrainingRun):
            raise TypeError(f"`training_run` must be a TrainingRun, got {type(training_run).__name__}.")
        # The examples are conversations with images and poses, rendered by the collator.
        args.dataset_kwargs = {**(args.dataset_kwargs or {}), "skip_prepare_dataset": True}
        check_vocabulary_rows(model, processing_class.tokenizer)
        backbone = _base_model(model).model
        vision = (backbone.vision_tower, backbone.pose_vision_tower, backbone.multi_modal_projector)
        self._vision_trains = any(p.requires_grad for module in vision for p in module.parameters())
        if args.ddp_find_unused_parameters is None:
            # The lockstep terms give every trainable parameter a gradient at every step, except the parts of a
            # trained tower that do not reach the loss (CLIP's last layer and pooling head).
            args.ddp_find_unused_parameters = any(
                p.requires_grad for module in vision[:2] for p in module.parameters()
            )
        if data_collator is None:
            data_collator = UniPoseDataCollator.from_model(
                model,
                processing_class,
                max_length=args.max_length,
                pad_to_multiple_of=args.pad_to_multiple_of,
            )
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            processing_class=processing_class,
            **kwargs,
        )
        self._unipose_config = _base_model(self.model).config
        self.training_run = training_run or TrainingRun(
            stage="Supervised fine-tuning",
            base_model=self._unipose_config._name_or_path or "a UniPose model built in memory",
        )
        # Read now: merging the adapter at the end removes the LoRA parameters.
        self._trained_parts = trained_parts(self.model)
        in_place = in_place_trainables(self.model) if _is_peft_model(self.model) else {}
        self._in_place_parts = describe_parameters(in_place)

        _check_engine_applied(self)
        if self.is_fsdp_enabled:
            check_fsdp_plugin(self.model, self.accelerator.state.fsdp_plugin)
        self._sharded = parameters_are_sharded(self)
        if self._sharded:
            # Copied now, while the weights are whole (the engine shards them when training starts).
            pose_tokenizer = copy.deepcopy(backbone.pose_tokenizer).to("cpu", torch.float32).eval()
            self.data_collator = _InputPosesAsCodes(self.data_collator, pose_tokenizer, self._unipose_config)
        self._backbone = backbone
        self._lockstep_plan = None  # set by `compute_loss` for the length of one forward pass
        backbone.get_input_embeddings().register_forward_hook(self._add_unused_pose_queries)
        backbone.language_model.register_forward_pre_hook(
            self._add_unused_towers, with_kwargs=True, prepend=True
        )

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = list(CONVERSATION_FEATURES)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        inputs = {**inputs, "use_cache": False, "return_dict": True}  # whatever the model's config says
        if num_items_in_batch is not None:
            inputs["num_items_in_batch"] = num_items_in_batch
        self._lockstep_plan = self._plan_lockstep(inputs, training=model.training and torch.is_grad_enabled())
        try:
            outputs = model(**inputs)
        finally:
            self._lockstep_plan = None
        loss = outputs.loss
        # As `Trainer.compute_loss`: `num_items_in_batch` counts the targets of every process and DDP averages
        # the gradients over processes, so the per-process loss is scaled back up.
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        self._record_metrics(outputs.logits.detach(), inputs, mode)
        return (loss, outputs) if return_outputs else loss

    # -- lockstep across processes (module docstring) -----------------------------------------------------

    def _plan_lockstep(self, inputs: dict, training: bool) -> _LockstepPlan | None:
        """Which modules this batch runs on zero-weighted inputs in this forward pass; `None` for none."""
        input_ids = inputs["input_ids"]
        has_images = inputs.get("pixel_values") is not None
        has_queries = bool((input_ids == self._unipose_config.pose_query_token_id).any())
        if training and self._vision_trains:
            towers = not has_images  # a gradient for the trained parts
        elif self._sharded and self.accelerator.num_processes > 1:
            # Frozen but sharded: the weights are gathered, so run the towers if any process does. Every process
            # takes this branch, so every process joins the collective.
            any_images = self.accelerator.gather(torch.tensor([int(has_images)], device=input_ids.device))
            towers = not has_images and bool(any_images.any())
        else:
            towers = False
        pose_queries = training and not has_queries and self._backbone.pose_queries.requires_grad
        return _LockstepPlan(pose_queries, towers) if pose_queries or towers else None

    def _add_unused_pose_queries(self, module, args, inputs_embeds):
        """Forward hook of the input embeddings, where the model would substitute the queries."""
        if self._lockstep_plan is None or not self._lockstep_plan.pose_queries:
            return None
        return inputs_embeds + (self._backbone.pose_queries.sum() * 0).to(inputs_embeds.dtype)

    def _add_unused_towers(self, module, args, kwargs):
        """Forward pre-hook of the language model, run before any other so that the towers run where the
        model's image features would be computed (collectives of sharded engines come in the same order)."""
        if self._lockstep_plan is None or not self._lockstep_plan.towers:
            return None
        inputs_embeds = kwargs["inputs_embeds"]
        config = self._unipose_config
        pixel_values = inputs_embeds.new_zeros(
            (1, 3, *_pair(config.vision_config.image_size)), dtype=torch.float32
        )
        pose_pixel_values = inputs_embeds.new_zeros(
            (1, 3, *_pair(config.pose_vision_config.image_size)), dtype=torch.float32
        )
        features = self._backbone.get_image_features(pixel_values, pose_pixel_values, return_dict=True)
        kwargs["inputs_embeds"] = inputs_embeds + (features.pooler_output.sum() * 0).to(inputs_embeds.dtype)
        return args, kwargs

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """TRL's, which returns the batch's `labels`; with `label_names` set, the columns it names, as `Trainer`
        returns them (one tensor, or a tuple for several)."""
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        if labels is None or self.args.label_names is None:
            return loss, logits, labels
        labels = tuple(self._prepare_input(inputs.get(name)) for name in self.args.label_names)
        return loss, logits, labels[0] if len(labels) == 1 else labels

    @torch.no_grad()
    def _record_metrics(self, logits: torch.Tensor, inputs: dict, mode: str):
        """Accuracy and cross-entropy of text and pose-code targets, summed over the examples of every process."""
        config = self._unipose_config
        shift_labels = inputs["shift_labels"]
        valid = shift_labels != IGNORE_INDEX
        is_query = inputs["input_ids"] == config.pose_query_token_id
        codes = config.pose_code_token_ids
        logits = logits.float()

        rows = torch.arange(len(shift_labels), device=shift_labels.device)[:, None].expand_as(shift_labels)

        def per_example(positions: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> list[torch.Tensor]:
            """Targets, correct predictions and summed cross-entropy of each example at `positions`."""
            sums = logits.new_zeros((3, len(shift_labels)))
            if len(targets):
                values = torch.stack([
                    torch.ones_like(targets, dtype=logits.dtype),
                    (logits.argmax(-1) == targets).to(logits.dtype),
                    torch.nn.functional.cross_entropy(logits, targets, reduction="none"),
                ])
                sums.index_add_(1, rows[positions], values)
            return list(sums)

        text = valid & ~is_query
        query = valid & is_query
        code_logits = logits[query][:, codes.start : codes.stop]
        sums = torch.stack(
            per_example(text, logits[text], shift_labels[text])
            + per_example(query, code_logits, shift_labels[query] - codes.start),
            dim=1,
        )  # (batch, 6): one row per example
        # One row per example, so that `gather_for_metrics` drops the examples a process repeats to fill the last
        # batch of an evaluation.
        num_text, text_correct, text_loss, num_codes, code_correct, code_loss = (
            self.accelerator.gather_for_metrics(sums).sum(0).tolist()
        )
        metrics = self._metrics[mode]
        if num_text:
            metrics["mean_token_accuracy"].append(text_correct / num_text)
            metrics["text_loss"].append(text_loss / num_text)
        if num_codes:
            metrics["pose_code_accuracy"].append(code_correct / num_codes)
            metrics["pose_loss"].append(code_loss / num_codes)
        if mode == "train":
            num_tokens = self.accelerator.gather(inputs["attention_mask"].sum()[None]).sum().item()
            self._total_train_tokens += num_tokens
        metrics["num_tokens"] = [self._total_train_tokens]

    # -- saving ------------------------------------------------------------------------------------------

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict=state_dict)
        if not self.args.should_save:
            return
        output_dir = output_dir or self.args.output_dir
        if _is_peft_model(self.model):
            add_in_place_trainables_to_adapter(self.model, output_dir, state_dict)
            self.write_model_card(output_dir, artifact="adapter")
        else:
            self.write_model_card(output_dir, artifact="model")

    def create_model_card(
        self,
        model_name: str | None = None,
        dataset_name: str | None = None,
        tags: str | list[str] | None = None,
    ):
        """The UniPose card in `output_dir` instead of TRL's generic one (TRL calls this at every checkpoint,
        `push_to_hub` before uploading)."""
        if not self.is_world_process_zero():
            return
        artifact = "merged" if _is_peft_model(self.model) else "model"
        extra = [dataset_name] if dataset_name else []
        self.write_model_card(
            self.args.output_dir, artifact, model_name=model_name, datasets=extra, tags=tags
        )

    def write_model_card(
        self,
        directory: str | os.PathLike,
        artifact: str = "model",
        model_name: str | None = None,
        datasets: Sequence[str] = (),
        tags: str | Sequence[str] | None = None,
    ) -> Path:
        """
        Write the UniPose model card of this run into `directory/README.md`.

        Args:
            directory (`str` or `os.PathLike`): the folder.
            artifact (`str`): what the folder holds: `"model"` (a whole model), `"adapter"` (a PEFT adapter)
                or `"merged"` (the merged model of a run that trains an adapter, saved in `adapter/`).
            model_name (`str`, *optional*): the card's title (the folder's name by default).
            datasets (sequence of `str`): more datasets to name, besides those of `training_run`.
            tags (`str` or sequence of `str`, *optional*): more tags.
        """
        if artifact not in _ARTIFACT_NOTES:
            raise ValueError(f"`artifact` must be one of {sorted(_ARTIFACT_NOTES)}, got {artifact!r}.")
        run = self.training_run
        known = set(run.dataset_paths)
        run = dataclasses.replace(
            run, datasets=run.datasets + tuple({"path": name} for name in datasets if name not in known)
        )
        note = _ARTIFACT_NOTES[artifact].format(in_place=", ".join(self._in_place_parts) or "none")
        # The Usage section loads the run's model: a whole model from its own folder, else the run's output.
        if artifact == "model" and Path(directory).resolve() != Path(self.args.output_dir).resolve():
            repo_id = os.fspath(directory)
        else:
            repo_id = self.args.hub_model_id or os.fspath(self.args.output_dir)
        return write_training_card(
            directory,
            self._unipose_config,
            run,
            trained=self._trained_parts,
            schedule=self._schedule(),
            artifact=note,
            adapter=artifact == "adapter",
            repo_id=repo_id,
            model_name=model_name or Path(directory).name,
            tags=[tags] if isinstance(tags, str) else list(tags or ()),
        )

    def _schedule(self) -> str:
        """Steps, batch, learning rate and the last logged loss, in words."""
        args = self.args
        planned = f"{args.max_steps:,}" if args.max_steps > 0 else f"{args.num_train_epochs:g} epochs"
        batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        scheduler = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
        text = (
            f"{self.state.global_step:,} optimizer steps (of {planned}), global batch {batch}, learning rate "
            f"{args.learning_rate:g} ({scheduler}), seed {args.seed}"
        )
        losses = [entry["loss"] for entry in self.state.log_history if "loss" in entry]
        return text + (f"; last logged loss {losses[-1]:.4g}" if losses else "")


# What each kind of folder holds and how it loads, for its model card.
_ARTIFACT_NOTES = {
    "model": "This folder holds the whole trained model.",
    "adapter": "This folder is a PEFT adapter of the base model above (BASE below): "
    "`PeftModel.from_pretrained(UniPoseForConditionalGeneration.from_pretrained(BASE), this_folder)` gives the "
    "trained model. Besides LoRA and the trainable-token rows, `adapter_model.safetensors` holds the weights "
    "trained outside PEFT ({in_place}) under their names in the base model; PEFT loads them into the base "
    "model, so `unload()` and `disable_adapter()` keep them.",
    "merged": "This folder holds the merged model (the adapter merged into the base model); the adapter "
    "itself is in `adapter/`, and applied to the base model with `PeftModel.from_pretrained` it gives the "
    "same model.",
}


def save_merged_model(model, processor, output_dir: str | os.PathLike) -> Path:
    """Save a (merged) UniPose model and its processor so that `AutoModel.from_pretrained(output_dir,
    trust_remote_code=True)` and `AutoProcessor.from_pretrained(...)` load them; files are written to a
    staging directory next to them first."""
    with staged_files(output_dir) as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        # With `push_to_hub`, `Trainer` copies each checkpoint's adapter files into the output folder: beside the
        # merged weights, `from_pretrained` would apply the adapter to them a second time.
        for name in (ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, "adapter_model.bin"):
            (Path(output_dir) / name).unlink(missing_ok=True)
    return Path(output_dir)


def save_stage_outputs(
    trainer: UniPoseSFTTrainer, output_dir: str | os.PathLike | None = None, base_model_path=None
) -> dict:
    """
    Save what a stage produced.

    - stages with an adapter (1, 3): the adapter (with the parameters trained in place) and the processor in
      `output_dir/adapter`; the merged model and processor in `output_dir`. Without sharding the trainer's
      model is merged in place (the trainer is done with it); under DeepSpeed ZeRO-3 or FSDP the main process
      reloads the base model from `base_model_path` on the CPU (a folder, or a function that builds the model,
      for a model built in memory) and applies the saved adapter to it.
    - stage 2: the model and processor in `output_dir`.

    Files appear whole (each is written under a temporary name, then renamed), `config.json` last. Each
    folder gets the UniPose model card (`README.md`) of the run.

    Returns:
        `dict` with the paths written (`"model"`, and `"adapter"` for stages with one).
    """
    output_dir = Path(output_dir or trainer.args.output_dir)
    model = trainer.accelerator.unwrap_model(trainer.model)
    sharded = parameters_are_sharded(trainer)
    if not _is_peft_model(model):
        if sharded:
            trainer.save_model(os.fspath(output_dir))  # gathers the shards
        elif trainer.args.should_save:
            save_merged_model(model, trainer.processing_class, output_dir)
        if trainer.args.should_save:
            trainer.write_model_card(output_dir, artifact="model")
        trainer.accelerator.wait_for_everyone()
        return {"model": output_dir}

    adapter_dir = output_dir / ADAPTER_DIR
    # Gathers sharded adapters; `_save` adds the parameters trained in place and the card.
    trainer.save_model(os.fspath(adapter_dir))
    trainer.accelerator.wait_for_everyone()
    if trainer.args.should_save:
        with whole_model_init(trainer.args):  # on the main process alone
            if sharded:
                if base_model_path is None:
                    raise ValueError(
                        "Merging a sharded run needs `base_model_path`, the model the stage started from."
                    )
                if callable(base_model_path):
                    base = base_model_path()
                else:
                    base = UniPoseForConditionalGeneration.from_pretrained(
                        base_model_path, dtype=torch.float32
                    )
                merged = load_adapter(base, adapter_dir).merge_and_unload()
            else:
                merged = model.merge_and_unload()
            save_merged_model(merged, trainer.processing_class, output_dir)
        trainer.write_model_card(output_dir, artifact="merged")
    trainer.accelerator.wait_for_everyone()
    return {"model": output_dir, "adapter": adapter_dir}


__all__ = [
    "ADAPTER_DIR",
    "ADAPTER_WEIGHTS_NAME",
    "LANGUAGE_MODEL_LINEAR_MODULES",
    "STAGES",
    "STAGE_PLANS",
    "StagePlan",
    "UniPoseSFTTrainer",
    "add_in_place_trainables_to_adapter",
    "check_fsdp_plugin",
    "check_vocabulary_rows",
    "in_place_trainables",
    "language_model_target_modules",
    "load_adapter",
    "new_token_ids",
    "parameters_are_sharded",
    "prepare_model_for_stage",
    "save_merged_model",
    "save_stage_outputs",
    "stage_peft_config",
    "whole_model_init",
]
