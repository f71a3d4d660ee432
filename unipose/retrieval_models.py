# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
Text-pose retrieval models: the judges of the UniPose evaluation.

They map a text and a pose (or a pair of poses, A -> B) into one 512-d space where matching ones are close;
R-precision, Recall@K and FID are measured in that space. `unipose.training.retrieval` trains them and
`unipose.evaluation` scores with them; both import them from here.

- Pose encoder: the convolutional encoder of the pose tokenizer (`PoseVQVAEEncoder`, 6D joint rotations ->
  `num_tokens` latent vectors), then a 1-D convolution whose input channels are the tokens reduces them to
  one vector, projected to `embed_dim` and L2-normalised. The pair model encodes A and B with the same
  encoder, fuses the two token sequences with 1-D convolutions, and reduces the fused tokens the same way.
- Text encoder: word embeddings taken from a pretrained model (and frozen), a linear projection, a
  one-layer bidirectional GRU, and an MLP from its two final states to `embed_dim`, L2-normalised.
- Loss: the batch-based classification loss of PoseScript (Delmas et al., ECCV 2022): cross-entropy of the
  in-batch similarity matrix, scaled by a learnable temperature (initially 10), in both directions.

The UniPose authors' retrieval models (their weights are not released) are built the same way, with smaller
differences that are this project's: their pose encoder keeps 40 tokens (the tokenizer's `upsample_step` of 1)
and has no final projection, their pair fusion has three convolutions, their text encoder's input projection is
linear, LayerNorm, linear, its MLP's LeakyReLU slope is 0.2, and texts are cut at 196 tokens (256 here).

Example:

```python
>>> import torch
>>> from unipose.retrieval_models import (
...     PoseTextRetrievalConfig, PoseTextRetrievalModel, embed_poses, embed_texts)
>>> from unipose.tokenization import build_tiny_tokenizer
>>> tokenizer = build_tiny_tokenizer()
>>> config = PoseTextRetrievalConfig.for_tokenizer(tokenizer, word_embedding_dim=16, text_hidden_size=16,
...     embed_dim=32, pose_encoder_config={"hidden_size": 16, "code_dim": 16})
>>> model = PoseTextRetrievalModel(config).eval()
>>> pose_embeds = embed_poses(model, torch.zeros(2, 22, 3))
>>> text_embeds = embed_texts(model, tokenizer, ["arms up", "kneeling"])
>>> (pose_embeds @ text_embeds.T).shape
torch.Size([2, 2])
```
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import ModelOutput, logging

from .checks import check_same
from .configuration_pose_vqvae import PoseVQVAEConfig
from .modeling_pose_vqvae import PoseVQVAEEncoder
from .rotations import to_rotation_6d

logger = logging.get_logger(__name__)

# The pose encoder of the retrieval models: the tokenizer's architecture, with 512 channels out (the width of
# the embedding space) instead of the codebook's 256.
_POSE_ENCODER_DEFAULTS = {"hidden_size": 512, "code_dim": 512}
# Poses and texts embedded per forward pass by `embed_poses` / `embed_texts`.
DEFAULT_EMBED_BATCH_SIZE = 256


# ----------------------------------------------------------------------------------------------------
# Configurations
# ----------------------------------------------------------------------------------------------------


@strict
class PoseTextRetrievalConfig(PreTrainedConfig):
    r"""
    Configuration of [`PoseTextRetrievalModel`]: a pose encoder and a text encoder into one embedding space.

    Args:
        pose_encoder_config (`dict` or `PoseVQVAEConfig`, *optional*):
            Architecture of the pose encoder, in the fields of the pose tokenizer's config (`num_joints`,
            `num_tokens`, `hidden_size`, `code_dim`, residual stack...); only the encoder is built. Defaults to
            the tokenizer's architecture with `hidden_size=512, code_dim=512`.
        embed_dim (`int`, *optional*, defaults to 512):
            Dimension of the joint embedding space.
        vocab_size (`int`, *optional*, defaults to 30522):
            Rows of the word-embedding table (the vocabulary of the text tokenizer).
        word_embedding_dim (`int`, *optional*, defaults to 768):
            Width of the pretrained word embeddings.
        text_hidden_size (`int`, *optional*, defaults to 512):
            Hidden size of each direction of the bidirectional GRU.
        max_text_length (`int`, *optional*, defaults to 256):
            Texts are truncated to this many tokens.
        freeze_word_embeddings (`bool`, *optional*, defaults to `True`):
            Keep the pretrained word embeddings fixed in training.
        initial_temperature (`float`, *optional*, defaults to 10.0):
            Initial value of the learnable scale of the similarities in the loss.
        pad_token_id (`int`, *optional*, defaults to 0):
            Id of the padding token of the text tokenizer.
    """

    model_type = "unipose_pose_text_retrieval"
    sub_configs_defaults = {
        "pose_encoder_config": SubConfigSpec(config_class=PoseVQVAEConfig, init_kwargs=_POSE_ENCODER_DEFAULTS)
    }
    # Poses encoded per item: 1 for a pose, 2 for a pair (A, B).
    num_poses = 1

    pose_encoder_config: dict | PreTrainedConfig | None = None
    embed_dim: int = 512
    vocab_size: int = 30522
    word_embedding_dim: int = 768
    text_hidden_size: int = 512
    max_text_length: int = 256
    freeze_word_embeddings: bool = True
    initial_temperature: float | int = 10.0
    pad_token_id: int | None = 0

    def validate_architecture(self):
        """Part of `@strict`-powered validation: positive sizes and a padding id inside the vocabulary."""
        for name in ("embed_dim", "vocab_size", "word_embedding_dim", "text_hidden_size", "max_text_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)}.")
        if self.initial_temperature <= 0:
            raise ValueError(f"`initial_temperature` must be positive, got {self.initial_temperature}.")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"`pad_token_id`={self.pad_token_id} is outside the vocabulary (`vocab_size`={self.vocab_size})."
            )

    @classmethod
    def for_tokenizer(cls, tokenizer, **kwargs) -> "PoseTextRetrievalConfig":
        """A config whose vocabulary and padding id are those of `tokenizer`; `kwargs` set the other fields."""
        if tokenizer.pad_token_id is None:
            raise ValueError(
                "The text tokenizer has no padding token; set one (e.g. "
                "`tokenizer.pad_token = tokenizer.eos_token`)."
            )
        return cls(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **kwargs)


@strict
class PosePairTextRetrievalConfig(PoseTextRetrievalConfig):
    r"""
    Configuration of [`PosePairTextRetrievalModel`]: a pose-pair encoder (A -> B) and a text encoder into one
    embedding space. The fields are those of [`PoseTextRetrievalConfig`].
    """

    model_type = "unipose_pose_pair_text_retrieval"
    num_poses = 2


# ----------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------


@dataclass
class RetrievalOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*):
        Batch-based classification loss (mean of the text -> pose and pose -> text cross-entropies).
    logits_per_text (`torch.FloatTensor` of shape `(batch, batch)`):
        `temperature * text_embeds @ pose_embeds.T`: row i scores text i against every pose of the batch.
    text_embeds (`torch.FloatTensor` of shape `(batch, embed_dim)`):
        L2-normalised text embeddings.
    pose_embeds (`torch.FloatTensor` of shape `(batch, embed_dim)`):
        L2-normalised pose (or pose-pair) embeddings.
    """

    loss: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    pose_embeds: torch.FloatTensor | None = None


# ----------------------------------------------------------------------------------------------------
# Encoders
# ----------------------------------------------------------------------------------------------------


class RetrievalPoseReduction(nn.Module):
    """
    `(batch, num_tokens, code_dim)` -> `(batch, embed_dim)`: a Conv1d(k3) whose input channels are the tokens
    (sliding over the feature axis) reduces the tokens to one vector, which a linear layer projects.
    """

    def __init__(self, num_tokens: int, code_dim: int, embed_dim: int):
        super().__init__()
        self.token_reduction = nn.Conv1d(num_tokens, 1, kernel_size=3, padding=1)
        self.projection = nn.Linear(code_dim, embed_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.projection(self.token_reduction(tokens).squeeze(1))


class RetrievalPairFusion(nn.Module):
    """`(batch, T, D)` twice -> `(batch, T, D)`: 1-D convolutions over the tokens of A and B side by side."""

    def __init__(self, code_dim: int):
        super().__init__()
        self.conv_in = nn.Conv1d(2 * code_dim, code_dim, kernel_size=3, padding=1)
        self.conv_out = nn.Conv1d(code_dim, code_dim, kernel_size=3, padding=1)

    def forward(self, tokens_a: torch.Tensor, tokens_b: torch.Tensor) -> torch.Tensor:
        hidden_states = torch.cat([tokens_a, tokens_b], dim=-1).transpose(1, 2)  # (B, 2D, T)
        hidden_states = self.conv_out(F.relu(self.conv_in(hidden_states)))
        return hidden_states.transpose(1, 2)


class RetrievalTextEncoder(nn.Module):
    """
    `(batch, length)` token ids -> `(batch, embed_dim)`: word embeddings, a linear projection, a one-layer
    bidirectional GRU, and an MLP over the two final hidden states.
    """

    def __init__(self, config: PoseTextRetrievalConfig):
        super().__init__()
        hidden_size = config.text_hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, config.word_embedding_dim, config.pad_token_id)
        self.word_embeddings.weight.requires_grad_(not config.freeze_word_embeddings)
        self.input_projection = nn.Linear(config.word_embedding_dim, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, num_layers=1, batch_first=True, bidirectional=True)
        # Learned initial state of both directions (2 directions, 1 sequence, H).
        self.initial_state = nn.Parameter(torch.zeros(2, 1, hidden_size))
        self.output_mlp = nn.Sequential(
            nn.Linear(2 * hidden_size, hidden_size),
            nn.LayerNorm(hidden_size),
            nn.LeakyReLU(),
            nn.Linear(hidden_size, config.embed_dim),
        )

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor) -> torch.Tensor:
        lengths = attention_mask.sum(dim=1)
        # Packing reads the first `length` positions of each row: the padding must be on the right.
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        if not bool((attention_mask.bool() == (positions < lengths[:, None])).all()):
            raise ValueError(
                "`attention_mask` must mark a prefix of each row (padding on the right); tokenize with "
                "`padding_side='right'` (see `tokenize_texts`)."
            )
        if bool((lengths == 0).any()):
            raise ValueError("Every text must hold at least one token; got an empty row in `attention_mask`.")
        hidden_states = self.input_projection(self.word_embeddings(input_ids))  # (B, L, H)
        packed = pack_padded_sequence(hidden_states, lengths.cpu(), batch_first=True, enforce_sorted=False)
        initial_state = self.initial_state.expand(-1, input_ids.shape[0], -1).contiguous()
        _, final_states = self.gru(packed, initial_state)  # (2, B, H): forward and backward directions
        return self.output_mlp(torch.cat([final_states[0], final_states[1]], dim=-1))


# ----------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------


class RetrievalPreTrainedModel(PreTrainedModel):
    config: PoseTextRetrievalConfig
    base_model_prefix = "retrieval"
    main_input_name = "input_ids"
    input_modalities = ("pose", "text")

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, nn.Conv1d):
            # PyTorch's own convolution initialisation, as in the pose tokenizer (normalisation-free convs).
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1 / math.sqrt(module.weight.shape[1] * module.weight.shape[2])
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.GRU):
            for name, parameter in module.named_parameters():
                if "weight" in name:
                    init.xavier_uniform_(parameter)
                else:
                    init.zeros_(parameter)
        elif isinstance(module, RetrievalTextEncoder):
            init.zeros_(module.initial_state)
        elif isinstance(module, _RetrievalModelMixin):
            init.constant_(module.temperature, float(self.config.initial_temperature))
        else:
            super()._init_weights(module)


class _RetrievalModelMixin:
    """What both retrieval models share: the text encoder, the temperature, the loss and `forward`."""

    def _build_text_side(self, config: PoseTextRetrievalConfig) -> None:
        self.text_encoder = RetrievalTextEncoder(config)
        self.temperature = nn.Parameter(torch.tensor(float(config.initial_temperature)))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_encoder.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding):
        self.text_encoder.word_embeddings = value

    @torch.no_grad()
    def set_word_embeddings(self, weight: torch.Tensor) -> None:
        """
        Copies pretrained word embeddings into the text encoder (frozen if `config.freeze_word_embeddings`).

        Args:
            weight (`torch.Tensor` of shape `(vocab_size, word_embedding_dim)`):
                E.g. `AutoModel.from_pretrained(name).get_input_embeddings().weight` (see
                [`pretrained_word_embeddings`]).
        """
        table = self.text_encoder.word_embeddings.weight
        if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
            raise TypeError(f"`weight` must be a floating-point torch.Tensor, got {type(weight).__name__}.")
        if weight.shape[1] != table.shape[1] or weight.shape[0] > table.shape[0]:
            raise ValueError(
                f"`weight` must have shape (<= {table.shape[0]}, {table.shape[1]}) (`vocab_size`, "
                f"`word_embedding_dim` of the config), got {tuple(weight.shape)}."
            )
        table[: weight.shape[0]].copy_(weight.to(table.dtype))

    def get_text_features(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`(batch, length)` right-padded token ids -> `(batch, embed_dim)` L2-normalised text embeddings."""
        return F.normalize(self.text_encoder(input_ids, attention_mask), dim=-1)

    def _contrastive_output(
        self, text_embeds: torch.Tensor, pose_embeds: torch.Tensor, return_loss: bool
    ) -> RetrievalOutput:
        logits_per_text = self.temperature * text_embeds @ pose_embeds.T  # (B, B)
        loss = None
        if return_loss:
            # Batch-based classification: item i of the batch is the class of text i and of pose i.
            targets = torch.arange(logits_per_text.shape[0], device=logits_per_text.device)
            loss = (
                F.cross_entropy(logits_per_text, targets) + F.cross_entropy(logits_per_text.T, targets)
            ) / 2
        return RetrievalOutput(
            loss=loss, logits_per_text=logits_per_text, text_embeds=text_embeds, pose_embeds=pose_embeds
        )


def _check_poses_6d(poses_6d: torch.Tensor, config: PoseTextRetrievalConfig, name: str) -> None:
    expected = (config.pose_encoder_config.num_joints, config.pose_encoder_config.rotation_dim)
    if not isinstance(poses_6d, torch.Tensor) or poses_6d.ndim != 3 or tuple(poses_6d.shape[1:]) != expected:
        got = tuple(poses_6d.shape) if isinstance(poses_6d, torch.Tensor) else type(poses_6d).__name__
        raise ValueError(
            f"`{name}` must be a tensor of 6D joint rotations of shape (batch, {expected[0]}, {expected[1]}), got "
            f"{got}; convert poses with `unipose.rotations.to_rotation_6d`."
        )


class PoseTextRetrievalModel(_RetrievalModelMixin, RetrievalPreTrainedModel):
    """
    Pose-text retrieval model. `forward` takes 6D poses `(batch, 22, 6)` and right-padded token ids of their
    texts and returns both embeddings, the scaled similarity matrix and the batch-based classification loss.
    """

    config_class = PoseTextRetrievalConfig

    def __init__(self, config: PoseTextRetrievalConfig):
        super().__init__(config)
        encoder_config = config.pose_encoder_config
        self.pose_encoder = PoseVQVAEEncoder(encoder_config)
        self.pose_reduction = RetrievalPoseReduction(
            encoder_config.num_tokens, encoder_config.code_dim, config.embed_dim
        )
        self._build_text_side(config)
        self.post_init()

    def get_pose_features(self, poses_6d: torch.Tensor) -> torch.Tensor:
        """`(batch, 22, 6)` 6D poses -> `(batch, embed_dim)` L2-normalised pose embeddings."""
        _check_poses_6d(poses_6d, self.config, "poses_6d")
        return F.normalize(self.pose_reduction(self.pose_encoder(poses_6d)), dim=-1)

    def forward(
        self,
        poses_6d: torch.Tensor,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        return_loss: bool = True,
        **kwargs,
    ) -> RetrievalOutput:
        r"""
        Args:
            poses_6d (`torch.Tensor` of shape `(batch, num_joints, 6)`):
                Poses in the 6D rotation representation.
            input_ids (`torch.LongTensor` of shape `(batch, length)`):
                Token ids of the matching texts, padded on the right.
            attention_mask (`torch.Tensor` of shape `(batch, length)`):
                1 for tokens, 0 for padding.
            return_loss (`bool`, *optional*, defaults to `True`):
                Whether to compute the batch-based classification loss.
        """
        return self._contrastive_output(
            self.get_text_features(input_ids, attention_mask), self.get_pose_features(poses_6d), return_loss
        )


class PosePairTextRetrievalModel(_RetrievalModelMixin, RetrievalPreTrainedModel):
    """
    Pose-pair-text retrieval model: pose A and pose B are encoded by one encoder, their token sequences fused,
    and the fused tokens reduced to one embedding of the change A -> B, to be matched with its instruction.
    """

    config_class = PosePairTextRetrievalConfig

    def __init__(self, config: PosePairTextRetrievalConfig):
        super().__init__(config)
        encoder_config = config.pose_encoder_config
        self.pose_encoder = PoseVQVAEEncoder(encoder_config)
        self.pair_fusion = RetrievalPairFusion(encoder_config.code_dim)
        self.pose_reduction = RetrievalPoseReduction(
            encoder_config.num_tokens, encoder_config.code_dim, config.embed_dim
        )
        self._build_text_side(config)
        self.post_init()

    def get_pose_features(self, poses_a_6d: torch.Tensor, poses_b_6d: torch.Tensor) -> torch.Tensor:
        """Two `(batch, 22, 6)` 6D poses -> `(batch, embed_dim)` L2-normalised pair embeddings."""
        _check_poses_6d(poses_a_6d, self.config, "poses_a_6d")
        _check_poses_6d(poses_b_6d, self.config, "poses_b_6d")
        check_same(tuple(poses_a_6d.shape), tuple(poses_b_6d.shape), ("poses_a_6d", "poses_b_6d"), "shape")
        # One encoder pass over A and B stacked.
        tokens = self.pose_encoder(torch.cat([poses_a_6d, poses_b_6d]))
        tokens_a, tokens_b = tokens.chunk(2)
        return F.normalize(self.pose_reduction(self.pair_fusion(tokens_a, tokens_b)), dim=-1)

    def forward(
        self,
        poses_a_6d: torch.Tensor,
        poses_b_6d: torch.Tensor,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        return_loss: bool = True,
        **kwargs,
    ) -> RetrievalOutput:
        r"""
        [`PoseTextRetrievalModel.forward`] with a pair of poses, whose texts are the instructions A -> B.

        Args:
            poses_a_6d, poses_b_6d (`torch.Tensor` of shape `(batch, num_joints, 6)`):
                The source and target poses in the 6D rotation representation.
        """
        return self._contrastive_output(
            self.get_text_features(input_ids, attention_mask),
            self.get_pose_features(poses_a_6d, poses_b_6d),
            return_loss,
        )


# ----------------------------------------------------------------------------------------------------
# Helpers: word embeddings, tokenisation, batched embedding
# ----------------------------------------------------------------------------------------------------


def pretrained_word_embeddings(name_or_path: str, **kwargs) -> tuple:
    """
    The tokenizer and the input word embeddings of any Hugging Face model (e.g. `distilbert-base-uncased`,
    a sentence encoder, or a causal LM).

    Args:
        name_or_path (`str`): a Hub id or a local folder with a tokenizer and a model.
        kwargs: passed to both `from_pretrained` calls (e.g. `local_files_only=True`).

    Returns:
        `tuple[PreTrainedTokenizerBase, torch.Tensor]`: the tokenizer and the embedding table
        `(vocab, dim)` (a detached float32 copy).
    """
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    model = AutoModel.from_pretrained(name_or_path, **kwargs)
    weight = model.get_input_embeddings().weight.detach().float().clone()
    if tokenizer.pad_token_id is None:
        # The GRU never reads padding (sequences are packed); any id serves.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer, weight


def tokenize_texts(tokenizer, texts: Sequence[str], max_length: int, device=None) -> dict[str, torch.Tensor]:
    """
    Right-padded token ids of `texts` for the text encoder.

    Returns:
        `dict` with `input_ids` and `attention_mask`, `(len(texts), length)` tensors.
    """
    if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
        raise TypeError("`texts` must be a sequence of strings.")
    encoding = tokenizer(
        list(texts),
        padding=True,
        truncation=True,
        max_length=max_length,
        padding_side="right",
        return_tensors="pt",
    )
    return {name: encoding[name].to(device) for name in ("input_ids", "attention_mask")}


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def embed_texts(
    model: PoseTextRetrievalModel | PosePairTextRetrievalModel,
    tokenizer,
    texts: Sequence[str],
    batch_size: int = DEFAULT_EMBED_BATCH_SIZE,
) -> torch.Tensor:
    """
    Embeddings of `texts`, `(len(texts), embed_dim)` float32 on the CPU, computed in batches.
    """
    device = _model_device(model)
    chunks = [
        model.get_text_features(
            **tokenize_texts(
                tokenizer, texts[start : start + batch_size], model.config.max_text_length, device
            )
        ).cpu()
        for start in range(0, len(texts), batch_size)
    ]
    return torch.cat(chunks) if chunks else torch.zeros(0, model.config.embed_dim)


@torch.no_grad()
def embed_poses(
    model: PoseTextRetrievalModel, poses, batch_size: int = DEFAULT_EMBED_BATCH_SIZE
) -> torch.Tensor:
    """
    Embeddings of `poses` (any format of `unipose.rotations.to_rotation_6d`, e.g. axis-angle `(N, 22, 3)`),
    `(N, embed_dim)` float32 on the CPU.
    """
    if getattr(model.config, "num_poses", 1) != 1:
        raise TypeError(
            f"`embed_poses` needs a pose-text model, got {type(model).__name__}; use `embed_pose_pairs`."
        )
    device = _model_device(model)
    poses_6d = to_rotation_6d(
        poses, num_joints=model.config.pose_encoder_config.num_joints, name="poses"
    ).float()
    chunks = [model.get_pose_features(chunk.to(device)).cpu() for chunk in poses_6d.split(batch_size)]
    return torch.cat(chunks)


@torch.no_grad()
def embed_pose_pairs(
    model: PosePairTextRetrievalModel, poses_a, poses_b, batch_size: int = DEFAULT_EMBED_BATCH_SIZE
) -> torch.Tensor:
    """Embeddings of the pairs `(poses_a[i], poses_b[i])`, `(N, embed_dim)` float32 on the CPU."""
    if getattr(model.config, "num_poses", 1) != 2:
        raise TypeError(f"`embed_pose_pairs` needs a pose-pair model, got {type(model).__name__}.")
    device = _model_device(model)
    num_joints = model.config.pose_encoder_config.num_joints
    poses_a_6d = to_rotation_6d(poses_a, num_joints=num_joints, name="poses_a").float()
    poses_b_6d = to_rotation_6d(poses_b, num_joints=num_joints, name="poses_b").float()
    if poses_a_6d.shape != poses_b_6d.shape:
        raise ValueError(
            f"`poses_a` and `poses_b` must hold as many poses, got {poses_a_6d.shape[0]} and "
            f"{poses_b_6d.shape[0]}."
        )
    chunks = [
        model.get_pose_features(a.to(device), b.to(device)).cpu()
        for a, b in zip(poses_a_6d.split(batch_size), poses_b_6d.split(batch_size))
    ]
    return torch.cat(chunks)


def load_retrieval_model(path: str, device: str | torch.device = "cpu"):
    """
    A saved retrieval model and its text tokenizer (saved side by side in `path`), in eval mode.

    Returns:
        `tuple[PoseTextRetrievalModel | PosePairTextRetrievalModel, PreTrainedTokenizerBase]`
    """
    if not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(
            f"No retrieval model in {str(path)!r} (no config.json); train one with "
            "`python train/train_retrieval.py` or pass the folder it saved."
        )
    config = AutoConfig.from_pretrained(path)
    if config.model_type not in (PoseTextRetrievalConfig.model_type, PosePairTextRetrievalConfig.model_type):
        raise ValueError(
            f"{str(path)!r} holds a {config.model_type!r} model, not a retrieval model "
            f"({PoseTextRetrievalConfig.model_type!r} or {PosePairTextRetrievalConfig.model_type!r})."
        )
    model = AutoModel.from_pretrained(path).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer


AutoConfig.register(PoseTextRetrievalConfig.model_type, PoseTextRetrievalConfig, exist_ok=True)
AutoConfig.register(PosePairTextRetrievalConfig.model_type, PosePairTextRetrievalConfig, exist_ok=True)
AutoModel.register(PoseTextRetrievalConfig, PoseTextRetrievalModel, exist_ok=True)
AutoModel.register(PosePairTextRetrievalConfig, PosePairTextRetrievalModel, exist_ok=True)


__all__ = [
    "PosePairTextRetrievalConfig",
    "PosePairTextRetrievalModel",
    "PoseTextRetrievalConfig",
    "PoseTextRetrievalModel",
    "RetrievalOutput",
    "embed_pose_pairs",
    "embed_poses",
    "embed_texts",
    "load_retrieval_model",
    "pretrained_word_embeddings",
    "tokenize_texts",
]
