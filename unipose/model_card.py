"""Hub model cards for UniPose checkpoints (the bundled model, converted checkpoints, trained ones)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from .files import write_text_atomically

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"
# Every UniPose card carries these; `custom_code` tells the Hub that loading needs `trust_remote_code=True`.
_TAGS = ("unipose", "human-pose", "smpl", "multimodal", "3d-human-pose", "custom_code")
# A Hub repository id: `name` or `owner/name`.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")

_SOURCES = {
    "converted": {
        "summary": "Converted from the published UniPose weights with `unipose convert`.",
        "training": "Trained by the UniPose authors (stages 0–3 of the paper); converted, not retrained.",
        "limitations": "Outputs follow the published model; the conversion report lists every weight mapped "
        "or dropped (`conversion_report.json`).",
        # The weights are the release's, LLaVA-1.6 / Mistral-7B's, CLIP's and TokenHMR's, under their licences,
        # which the `LICENSE` file written beside the card names.
        "license": "other",
        "license_name": "unipose-release-components",
        "license_link": "LICENSE",
    },
    "trained": {
        "summary": "Trained with the UniPose training scripts.",
        "training": "See the recipes and logs next to the weights.",
        "limitations": "Quality depends on the training data named above.",
    },
}


# The `datasets` builders that read local files (`load_dataset("json", data_files=...)`): names, not datasets.
_PACKAGED_BUILDERS = frozenset(
    {"json", "csv", "parquet", "text", "arrow", "pandas", "sql", "webdataset", "imagefolder", "audiofolder",
     "videofolder", "xml"}
)  # fmt: skip


def _is_hub_id(name: str) -> bool:
    """Whether `name` reads as a Hub repository id rather than a local folder or one of `datasets`' file
    builders (`json`, `parquet`, ...): the metadata takes only ids."""
    return bool(_HUB_ID.fullmatch(name)) and name not in _PACKAGED_BUILDERS and not os.path.exists(name)


def _markdown_table(results: dict) -> str:
    if not results:
        return "No evaluation was run for this checkpoint."
    rows = ["| metric | value |", "| --- | --- |"]
    rows += [f"| {name} | {value:.4g} |" if isinstance(value, float) else f"| {name} | {value} |" for name, value in results.items()]
    return "\n".join(rows)


def render_model_card(
    config,
    source: str = "trained",
    repo_id: str = "path/to/this/checkpoint",
    model_name: str = "UniPose",
    training: str | None = None,
    evaluation: dict | str | None = None,
    limitations: str | None = None,
    conversion_report: dict | None = None,
    license: str | None = None,
    summary: str | None = None,
    base_model: str | None = None,
    datasets: Sequence[str] = (),
    adapter: bool = False,
    tags: Sequence[str] = (),
) -> ModelCard:
    """The model card of a checkpoint whose `UniPoseConfig` is `config`.

    Args:
        source (`str`): `"converted"` (from the published weights) or `"trained"` (with our scripts).
        training (`str`, *optional*): Markdown describing the data and recipe (overrides the default).
        evaluation (`dict` or `str`, *optional*): metric name -> value, shown as a table; or the evaluation
            section's Markdown as is, e.g. the headline table of a `unipose evaluate` run with intervals and
            baselines ([`unipose.evaluation.summary.evaluation_section`]).
        limitations (`str`, *optional*): one more limitation in Markdown.
        license (`str`, *optional*): the metadata's licence; by default `apache-2.0` for trained checkpoints and
            `other` for converted ones, whose weights keep the licences of the published release and its parts.
        summary (`str`, *optional*): the card's first paragraph (overrides the default of `source`).
        base_model (`str`, *optional*): the checkpoint this one was trained from; written into the metadata
            when it is a Hub id (`owner/name`, not a local folder).
        datasets (sequence of `str`): the training corpora; the Hub ids among them go into the metadata.
        adapter (`bool`, *optional*, defaults to `False`): the folder holds a PEFT adapter of `base_model`
            rather than a whole model (`library_name: peft`, tagged `peft` and `lora`).
        tags (sequence of `str`): more tags, after UniPose's own (which include `custom_code`).
    """
    if source not in _SOURCES:
        raise ValueError(f"`source` must be one of {sorted(_SOURCES)}, got {source!r}.")
    if isinstance(datasets, str) or isinstance(tags, str):
        raise TypeError(
            f"`datasets` and `tags` must be sequences of strings, got {datasets!r} and {tags!r}: wrap a single "
            "name in a list."
        )
    defaults = _SOURCES[source]
    text_config = config.text_config
    all_tags = [*_TAGS, *(("peft", "lora") if adapter else ()), *tags]
    hub_datasets = [name for name in datasets if _is_hub_id(name)]
    # A licence given by the caller replaces the source's, with its name and link.
    licence_names = {} if license else {k: defaults[k] for k in ("license_name", "license_link") if k in defaults}
    card_data = ModelCardData(
        license=license or defaults.get("license", "apache-2.0"),
        **licence_names,
        library_name="peft" if adapter else "transformers",
        pipeline_tag="image-text-to-text",
        tags=list(dict.fromkeys(all_tags)),  # in order, without repeats
        base_model=base_model if base_model is not None and _is_hub_id(base_model) else None,
        datasets=hub_datasets or None,
    )
    training_text = training or defaults["training"]
    if conversion_report:
        training_text += f"\n\nConversion: {conversion_report.get('num_mapped', 0)} weights mapped, LoRA merged into " \
            f"{len(conversion_report.get('merged_lora_modules', []))} modules."
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=model_name,
        repo_id=repo_id,
        summary=summary or defaults["summary"],
        text_model=text_config.model_type,
        text_layers=text_config.num_hidden_layers,
        text_width=text_config.hidden_size,
        clip_width=config.vision_config.hidden_size,
        image_tokens=config.image_seq_length,
        pose_vit_width=config.pose_vision_config.hidden_size,
        num_pose_tokens=config.num_pose_tokens,
        codebook_size=config.pose_codebook_size,
        num_joints=config.num_joints,
        training=training_text,
        evaluation=evaluation if isinstance(evaluation, str) else _markdown_table(evaluation or {}),
        limitations=limitations or defaults["limitations"],
    )


# The `LICENSE` of a converted checkpoint, which its card's `license_link` points to.
CONVERTED_LICENSE = """\
These weights were converted from the UniPose release (https://github.com/liyiheng23/UniPose,
https://huggingface.co/L-yiheng/UniPose). They contain, and were trained from, the weights of LLaVA-1.6-Mistral-7B
(https://huggingface.co/liuhaotian/llava-v1.6-mistral-7b), CLIP ViT-L/14-336
(https://huggingface.co/openai/clip-vit-large-patch14-336) and TokenHMR (https://github.com/saidwivedi/TokenHMR),
each under its own licence. Their use is bound by all of these licences: read each before using or sharing these
weights. The conversion adds no weights of its own.
"""


def write_model_card(output_dir: str | os.PathLike, config, **kwargs) -> Path:
    """Write `README.md` (the model card) into `output_dir`, atomically, and for a converted checkpoint the
    `LICENSE` its card links to; returns the card's path."""
    path = Path(output_dir) / "README.md"
    card = render_model_card(config, **kwargs)
    if card.data.license_link == "LICENSE":
        write_text_atomically(Path(output_dir) / "LICENSE", CONVERTED_LICENSE)
    write_text_atomically(path, str(card))
    return path


__all__ = ["render_model_card", "write_model_card"]
