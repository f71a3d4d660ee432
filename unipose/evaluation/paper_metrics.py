# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
The metrics of the paper's tables that only the evaluation computes (R-precision, FID, BLEU-4, ROUGE-L, METEOR), as
pure functions over embeddings and strings.

Retrieval metrics take two matched sets of embeddings: `queries[i]` and `candidates[i]` belong together
(a text and its pose, or a pose and its text). Two R-precision protocols are in use in the literature and
give different numbers; every result names the one it comes from:

- `"posescript"` (PoseScript's evaluation code): for each query, `num_repetitions` times draw a pool of its
  true candidate and `pool_size - 1` other candidates at random, score the pool by cosine similarity, and
  take the 0-based rank of the true candidate; average the rank over the draws. Top-k is the share of
  queries whose average rank is below k.
- `"grouped"` (the UniPose paper's text, and MotionGPT's code): shuffle the items once, cut them into
  consecutive groups of `pool_size` (the remainder is left out), rank the true candidate within its group
  by Euclidean distance. Top-k is the share of items (in full groups) whose rank is below k.

Scores are computed in float32, the precision of the retrieval models. Ties between the true candidate
and others (scores equal up to `TIE_TOLERANCE`) are broken at random: the true candidate takes a uniformly
random place among the candidates it ties with, so a model that gives every item the same embedding cannot
score 100: it scores at chance under the grouped protocol and Recall@K, and close to 0 under PoseScript's,
whose average of independently broken ties is rarely below 1.

FID is the Frechet distance between Gaussians fitted to two sets of features. Text metrics (BLEU-4, ROUGE-L,
METEOR) score each prediction against the references given for its item (`unipose evaluate` gives the first
caption, as the paper does, unless `--text-references all`); see [`text_metric_sources`] for the packages that
compute them. Recall@K (`R^T2P`, `R^P2T`, mRecall: `recall_at_k`, `text_pose_recalls`), which the
training of the retrieval models scores too, and MPJPE and PA-MPJPE come from `unipose.metrics`, with the
input checks and the tie breaking used here.

All scores are percentages (0-100) except FID and the joint errors (millimetres).
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers.utils import logging

from ..checks import check_positive_int, check_same
from ..metrics import (
    PERCENT,
    EmbeddingLike,
    _as_embeddings,
    _check_top_k,
    _matched_pair,
    _similarity_chunks,
    _tie_broken_rank,
)
from .paper_results import PAPER_BIBTEX, PAPER_URL

logger = logging.get_logger(__name__)

R_PRECISION_PROTOCOLS = ("posescript", "grouped")
R_PRECISION_PROTOCOL_DESCRIPTIONS = {
    "posescript": (
        "PoseScript protocol: per query, {num_repetitions} random pools of the true candidate and "
        "{distractors} others, cosine similarity, 0-based rank averaged over the pools; top-k = share of "
        "queries with average rank < k"
    ),
    "grouped": (
        "grouped protocol (UniPose paper text, MotionGPT code): one shuffle, consecutive groups of "
        "{pool_size}, Euclidean distance; top-k = share of items ranked < k within their group"
    ),
}
DEFAULT_POOL_SIZE = 32
DEFAULT_NUM_REPETITIONS = 10
R_PRECISION_TOP_K = (1, 2, 3)


# ----------------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------
# R-precision
# ----------------------------------------------------------------------------------------------------


def _random_distractors(
    num_items: int, num_rows: int, count: int, generator: torch.Generator
) -> torch.LongTensor:
    """
    `count` distinct indices in `[0, num_items - 1)` per row, uniformly over subsets, by Floyd's algorithm
    (R. W. Floyd, "A sample of brilliance", CACM 1987): `count` draws per row instead of a permutation of
    all items, vectorised over rows.

    Returns:
        `torch.LongTensor` of shape `(num_rows, count)`.
    """
    population = num_items - 1
    chosen = torch.empty((num_rows, count), dtype=torch.long)
    for step, upper in enumerate(range(population - count, population)):
        draw = torch.randint(0, upper + 1, (num_rows,), generator=generator)
        taken = (chosen[:, :step] == draw[:, None]).any(dim=1)
        chosen[:, step] = torch.where(taken, torch.full_like(draw, upper), draw)
    return chosen


def r_precision_posescript(
    queries: EmbeddingLike,
    candidates: EmbeddingLike,
    top_k: Sequence[int] = R_PRECISION_TOP_K,
    pool_size: int = DEFAULT_POOL_SIZE,
    num_repetitions: int = DEFAULT_NUM_REPETITIONS,
    seed: int = 0,
) -> dict[str, float]:
    """
    R-precision under PoseScript's protocol (see the module docstring).

    Args:
        queries (`torch.Tensor` or `np.ndarray` of shape `(N, D)`):
            Query embeddings, e.g. of texts.
        candidates (`torch.Tensor` or `np.ndarray` of shape `(N, D)`):
            Candidate embeddings; `candidates[i]` is the true match of `queries[i]`.
        top_k (`Sequence[int]`, *optional*, defaults to `(1, 2, 3)`):
            The k of the reported top-k shares.
        pool_size (`int`, *optional*, defaults to 32):
            Candidates per pool, the true one included; needs `N >= pool_size`.
        num_repetitions (`int`, *optional*, defaults to 10):
            Pools drawn per query.
        seed (`int`, *optional*, defaults to 0):
            Seed of the pool draws and of the tie breaking.

    Returns:
        `dict[str, float]`: `"top{k}"` -> percentage of queries whose mean rank is below k.
    """
    top_k = _check_top_k(top_k, pool_size, "top_k")
    mean_ranks = posescript_mean_ranks(queries, candidates, pool_size, num_repetitions, seed)
    return {f"top{k}": float((mean_ranks < k).double().mean()) * PERCENT for k in top_k}


def posescript_mean_ranks(
    queries: EmbeddingLike,
    candidates: EmbeddingLike,
    pool_size: int = DEFAULT_POOL_SIZE,
    num_repetitions: int = DEFAULT_NUM_REPETITIONS,
    seed: int = 0,
) -> torch.Tensor:
    """Each query's rank (0 = first) of its true candidate under PoseScript's protocol, averaged over the
    repetitions: `(N,)` float64. [`r_precision_posescript`] is the share of these below k."""
    queries, candidates = _matched_pair(queries, candidates)
    pool_size = check_positive_int(pool_size, "pool_size", minimum=2)
    num_repetitions = check_positive_int(num_repetitions, "num_repetitions")
    num_items = queries.shape[0]
    if num_items < pool_size:
        raise ValueError(
            f"R-precision with pools of {pool_size} (`pool_size`) needs at least {pool_size} items, got "
            f"{num_items}."
        )
    generator = torch.Generator().manual_seed(seed)
    mean_ranks = torch.empty(num_items, dtype=torch.float64)
    # One product against all candidates, then a gather, costs less than gathering the pools' embeddings
    # (R * (P - 1) vectors per query) once the set is a few times larger than a pool.
    for rows, similarity, true_score in _similarity_chunks(queries, candidates):
        # Distractor indices skip the query's own candidate: draw from N - 1 and shift past it.
        distractors = _random_distractors(num_items, len(rows) * num_repetitions, pool_size - 1, generator)
        distractors = distractors.view(len(rows), num_repetitions, pool_size - 1)
        distractors = distractors + (distractors >= rows[:, None, None]).long()
        scores = torch.gather(similarity, 1, distractors.flatten(1)).view_as(distractors)  # (chunk, R, P - 1)
        ranks = _tie_broken_rank(
            scores, true_score[:, None].expand(-1, num_repetitions), generator
        )  # (chunk, R)
        mean_ranks[rows] = ranks.double().mean(dim=1)
    return mean_ranks


def r_precision_grouped(
    queries: EmbeddingLike,
    candidates: EmbeddingLike,
    top_k: Sequence[int] = R_PRECISION_TOP_K,
    pool_size: int = DEFAULT_POOL_SIZE,
    seed: int = 0,
) -> dict[str, float]:
    """
    R-precision under the grouped protocol (see the module docstring).

    Args:
        queries (`torch.Tensor` or `np.ndarray` of shape `(N, D)`):
            Query embeddings.
        candidates (`torch.Tensor` or `np.ndarray` of shape `(N, D)`):
            Candidate embeddings; `candidates[i]` is the true match of `queries[i]`.
        top_k (`Sequence[int]`, *optional*, defaults to `(1, 2, 3)`):
            The k of the reported top-k shares.
        pool_size (`int`, *optional*, defaults to 32):
            Items per group; the last `N % pool_size` items of the shuffle are left out.
        seed (`int`, *optional*, defaults to 0):
            Seed of the shuffle and of the tie breaking.

    Returns:
        `dict[str, float]`: `"top{k}"` -> percentage of the items in full groups ranked below k.
    """
    queries, candidates = _matched_pair(queries, candidates)
    pool_size = check_positive_int(pool_size, "pool_size", minimum=2)
    top_k = _check_top_k(top_k, pool_size, "top_k")
    num_items = queries.shape[0]
    num_groups = num_items // pool_size
    if num_groups == 0:
        raise ValueError(
            f"R-precision with groups of {pool_size} (`pool_size`) needs at least {pool_size} items, got "
            f"{num_items}."
        )
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(num_items, generator=generator)[: num_groups * pool_size].view(
        num_groups, pool_size
    )
    distances = torch.cdist(queries[order], candidates[order])  # (G, P, P): query i of a group vs candidate j
    true_distance = distances.diagonal(dim1=1, dim2=2)  # (G, P)
    # The true candidate is left out of the comparison (it would tie with itself).
    others = ~torch.eye(pool_size, dtype=torch.bool)
    other_distances = distances[:, others].view(num_groups, pool_size, pool_size - 1)
    ranks = _tie_broken_rank(other_distances, true_distance, generator, higher_is_better=False)
    return {f"top{k}": float((ranks < k).double().mean()) * PERCENT for k in top_k}


def r_precision(
    queries: EmbeddingLike,
    candidates: EmbeddingLike,
    protocol: str = "posescript",
    top_k: Sequence[int] = R_PRECISION_TOP_K,
    pool_size: int = DEFAULT_POOL_SIZE,
    num_repetitions: int = DEFAULT_NUM_REPETITIONS,
    seed: int = 0,
) -> dict[str, float]:
    """
    R-precision under `protocol` (`"posescript"` or `"grouped"`); see [`r_precision_posescript`] and
    [`r_precision_grouped`]. `num_repetitions` only applies to `"posescript"`.
    """
    if protocol == "posescript":
        return r_precision_posescript(queries, candidates, top_k, pool_size, num_repetitions, seed)
    if protocol == "grouped":
        return r_precision_grouped(queries, candidates, top_k, pool_size, seed)
    raise ValueError(f"`protocol` must be one of {R_PRECISION_PROTOCOLS}, got {protocol!r}.")


EVALUATE_MODULES = ("pose_error", "pose_text_retrieval")


def evaluate_module(name: str) -> str:
    """The path of one of UniPose's `evaluate` modules, for `evaluate.load`: `"pose_error"` (MPJPE, PA-MPJPE) or
    `"pose_text_retrieval"` (R-precision, Recall@K; configurations `text_to_pose` and `pose_to_text`). They compute
    with the functions of this module, as `unipose evaluate` does.

    Example: `evaluate.load(evaluate_module("pose_error")).compute(predictions=..., references=...)`.
    """
    if name not in EVALUATE_MODULES:
        raise ValueError(f"`name` must be one of {EVALUATE_MODULES}, got {name!r}.")
    return str(Path(__file__).parent / "modules" / name)


def evaluate_module_info(description: str, inputs_description: str, features):
    """The `evaluate.MetricInfo` of one of the [`evaluate_module`] modules: their texts and features, citing the
    paper."""
    import evaluate  # the `eval` extra, which the modules that call this import themselves

    return evaluate.MetricInfo(
        description=description,
        citation=PAPER_BIBTEX,
        inputs_description=inputs_description,
        features=features,
        reference_urls=[PAPER_URL],
    )


def r_precision_all_protocols(
    queries: EmbeddingLike,
    candidates: EmbeddingLike,
    pool_size: int = DEFAULT_POOL_SIZE,
    num_repetitions: int = DEFAULT_NUM_REPETITIONS,
    seed: int = 0,
) -> dict[str, float]:
    """R-Precision@1/2/3 under both protocols in use, keyed `"R-Precision@{k} ({protocol})"` (as in reports)."""
    results = {}
    for protocol in R_PRECISION_PROTOCOLS:
        scores = r_precision(queries, candidates, protocol, R_PRECISION_TOP_K, pool_size, num_repetitions, seed)
        results.update({f"R-Precision@{name[3:]} ({protocol})": value for name, value in scores.items()})
    return results


def describe_r_precision_protocol(
    protocol: str, pool_size: int = DEFAULT_POOL_SIZE, num_repetitions: int = DEFAULT_NUM_REPETITIONS
) -> str:
    """A one-line description of an R-precision protocol and its settings, for reports."""
    if protocol not in R_PRECISION_PROTOCOL_DESCRIPTIONS:
        raise ValueError(f"`protocol` must be one of {R_PRECISION_PROTOCOLS}, got {protocol!r}.")
    return R_PRECISION_PROTOCOL_DESCRIPTIONS[protocol].format(
        pool_size=pool_size, distractors=pool_size - 1, num_repetitions=num_repetitions
    )


# ----------------------------------------------------------------------------------------------------
# FID
# ----------------------------------------------------------------------------------------------------


def feature_statistics(features: EmbeddingLike, name: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """
    Mean and (unbiased) covariance of a set of features.

    Args:
        features (`torch.Tensor` or `np.ndarray` of shape `(N, D)`): N >= 2 feature vectors.

    Returns:
        `tuple[np.ndarray, np.ndarray]`: the mean `(D,)` and the covariance `(D, D)`, float64.
    """
    values = _as_embeddings(features, name, torch.float64).numpy()
    if values.shape[0] < 2:
        raise ValueError(
            f"`{name}` needs at least 2 vectors to estimate a covariance, got {values.shape[0]}."
        )
    return values.mean(axis=0), np.cov(values, rowvar=False).reshape(values.shape[1], values.shape[1])


def _symmetric_square_root(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix; round-off negative eigenvalues count as 0."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance_from_statistics(
    mean_a: np.ndarray, covariance_a: np.ndarray, mean_b: np.ndarray, covariance_b: np.ndarray
) -> float:
    """
    Frechet distance between the Gaussians N(mean_a, covariance_a) and N(mean_b, covariance_b):
    `|mean_a - mean_b|^2 + Tr(covariance_a + covariance_b - 2 (covariance_a covariance_b)^(1/2))`
    (Dowson and Landau, 1982; the FID of Heusel et al., NeurIPS 2017).

    The trace of the square root is computed as `Tr((A^(1/2) B A^(1/2))^(1/2))`, which equals
    `Tr((A B)^(1/2))` for positive semi-definite A and B: two symmetric eigendecompositions instead of the
    general matrix square root of `A B` (scipy's `sqrtm`, as the reference FID code uses). It is faster, stays
    real, and needs no offset when the covariances are singular (fewer samples than dimensions).

    Args:
        mean_a, mean_b (`np.ndarray` of shape `(D,)`): the means.
        covariance_a, covariance_b (`np.ndarray` of shape `(D, D)`): symmetric positive semi-definite covariances.

    Returns:
        `float`: the distance (squared units of the features).
    """
    mean_a, mean_b = np.asarray(mean_a, dtype=np.float64), np.asarray(mean_b, dtype=np.float64)
    covariance_a = np.asarray(covariance_a, dtype=np.float64)
    covariance_b = np.asarray(covariance_b, dtype=np.float64)
    if mean_a.ndim != 1:
        raise ValueError(f"`mean_a` must have shape (D,), got {mean_a.shape}.")
    dim = mean_a.shape[0]
    for name, value, shape in (
        ("mean_b", mean_b, (dim,)),
        ("covariance_a", covariance_a, (dim, dim)),
        ("covariance_b", covariance_b, (dim, dim)),
    ):
        if value.shape != shape:
            raise ValueError(
                f"`{name}` must have shape {shape} to match `mean_a` of shape {mean_a.shape}, got {value.shape}."
            )
    for name, value in (("covariance_a", covariance_a), ("covariance_b", covariance_b)):
        if not np.isfinite(value).all() or not np.allclose(value, value.T, rtol=1e-6, atol=1e-10):
            raise ValueError(f"`{name}` must be a finite symmetric matrix.")
    root_a = _symmetric_square_root(covariance_a)
    middle = root_a @ covariance_b @ root_a
    # Symmetrise: the products above are symmetric up to round-off.
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_root = float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())
    difference = mean_a - mean_b
    return float(difference @ difference + np.trace(covariance_a) + np.trace(covariance_b) - 2 * trace_root)


def frechet_distance(real_features: EmbeddingLike, generated_features: EmbeddingLike) -> float:
    """
    FID between two sets of features (e.g. the retrieval model's 512-d pose features of real and generated
    poses).

    Args:
        real_features (`torch.Tensor` or `np.ndarray` of shape `(N, D)`): N >= 2 reference features.
        generated_features (`torch.Tensor` or `np.ndarray` of shape `(M, D)`): M >= 2 features to compare.

    Returns:
        `float`: the Frechet distance between the two fitted Gaussians.
    """
    mean_a, covariance_a = feature_statistics(real_features, "real_features")
    mean_b, covariance_b = feature_statistics(generated_features, "generated_features")
    check_same(mean_a.shape[0], mean_b.shape[0], ("real_features", "generated_features"), "dimension")
    return frechet_distance_from_statistics(mean_a, covariance_a, mean_b, covariance_b)


# ----------------------------------------------------------------------------------------------------
# Joint errors
# ----------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------
# Text metrics
# ----------------------------------------------------------------------------------------------------

class _NoSynonyms:
    """Stands in for nltk's WordNet reader when WordNet is not installed: no word has synonyms, so METEOR's
    synonym stage matches nothing and only the exact and stem stages count."""

    @staticmethod
    def synsets(word: str) -> list:
        return []


@functools.lru_cache(maxsize=1)
def _sentence_splitter():
    """nltk's English Punkt model, which `word_tokenize` splits sentences with, or an untrained Punkt splitter
    where that model's data is not installed (it then also splits after abbreviations such as "e.g.")."""
    from nltk.tokenize.punkt import PunktSentenceTokenizer, PunktTokenizer

    try:
        return PunktTokenizer("english")
    except (LookupError, OSError):
        return PunktSentenceTokenizer()


@functools.lru_cache(maxsize=1)
def _word_tokenizer():
    """nltk's Treebank word tokenizer, the one `word_tokenize` splits each sentence with."""
    from nltk.tokenize import NLTKWordTokenizer

    return NLTKWordTokenizer()


def punkt_available() -> bool:
    """Whether nltk's English Punkt model (the sentence splitting of `word_tokenize`) is installed."""
    from nltk.tokenize.punkt import PunktTokenizer

    return isinstance(_sentence_splitter(), PunktTokenizer)


@functools.lru_cache(maxsize=1)
def wordnet_available() -> bool:
    """Whether nltk can load WordNet (METEOR's synonym stage)."""
    try:
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
    except (LookupError, OSError, ImportError):
        return False
    return True


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def text_metric_sources() -> dict[str, str]:
    """Which package computes each text metric here, with its version and settings (for reports)."""
    meteor_stages = (
        "exact, Porter stem and WordNet synonym matching"
        if wordnet_available()
        else "exact and Porter stem matching only: WordNet is not installed, so the synonym stage is off "
        "(scores are at most those of full METEOR)"
    )
    sentences = (
        "nltk's English Punkt sentences"
        if punkt_available()
        else "untrained Punkt sentences (nltk's English Punkt data is not installed)"
    )
    return {
        "BLEU-4": (
            f"sacrebleu {_package_version('sacrebleu')}: corpus BLEU, n-grams 1-4, 13a tokenisation, "
            "case-sensitive, no smoothing, brevity penalty from the closest reference length (the BLEU of the "
            "`evaluate` library, used by PoseScript's and UniPose's code, takes the shortest reference length "
            "instead: the same with one reference)"
        ),
        "ROUGE-L": (
            f"rouge-score {_package_version('rouge-score')}: ROUGE-L F-measure, best reference per item, "
            "mean over items, no stemming"
        ),
        "METEOR": (
            f"nltk {_package_version('nltk')} meteor_score (alpha 0.9, beta 3, gamma 0.5), best reference per "
            f"item, mean over items, words of nltk's `word_tokenize` ({sentences}, Treebank words) compared "
            f"lowercased, as the `evaluate` library scores it; {meteor_stages}"
        ),
    }


def _check_text_inputs(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> list[list[str]]:
    if isinstance(predictions, str) or not all(isinstance(text, str) for text in predictions):
        raise TypeError("`predictions` must be a sequence of strings, one per item.")
    if isinstance(references, str) or len(references) != len(predictions):
        got = "a string" if isinstance(references, str) else f"{len(references)} entries"
        raise ValueError(
            f"`references` must hold one list of reference strings per prediction ({len(predictions)}), got {got}."
        )
    checked = []
    for index, refs in enumerate(references):
        if isinstance(refs, str):
            refs = [refs]
        refs = list(refs)
        if not refs or not all(isinstance(text, str) for text in refs):
            raise ValueError(f"`references[{index}]` must be a non-empty list of strings, got {refs!r}.")
        checked.append(refs)
    if not checked:
        raise ValueError("`predictions` is empty: there is nothing to score.")
    return checked


def bleu4(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """
    Corpus BLEU-4 (Papineni et al., ACL 2002) with every reference of each item, in percent (sacrebleu).

    Args:
        predictions (`Sequence[str]`): one generated text per item.
        references (`Sequence[Sequence[str]]`): the reference texts of each item (any number >= 1).

    Returns:
        `float`: BLEU-4 in [0, 100].
    """
    from sacrebleu.metrics import BLEU

    references = _check_text_inputs(predictions, references)
    # sacrebleu wants reference streams (stream s holds the s-th reference of every item); items with
    # fewer references are padded with None, which sacrebleu skips.
    num_streams = max(len(refs) for refs in references)
    streams = [[refs[s] if s < len(refs) else None for refs in references] for s in range(num_streams)]
    # Case-sensitive, as the `evaluate` library's BLEU (tensorflow/nmt's over 13a tokens) that PoseScript's and
    # UniPose's evaluations call.
    metric = BLEU(lowercase=False, tokenize="13a", smooth_method="none", max_ngram_order=4)
    return float(metric.corpus_score(list(predictions), streams).score)


def rouge_l_per_item(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
    """
    ROUGE-L F-measure (Lin, 2004) of each item, best over its references, in percent (rouge-score).

    Args:
        predictions (`Sequence[str]`): one generated text per item.
        references (`Sequence[Sequence[str]]`): the reference texts of each item.

    Returns:
        `np.ndarray` of shape `(N,)`: ROUGE-L in [0, 100] per item.
    """
    from rouge_score import rouge_scorer, tokenizers

    references = _check_text_inputs(predictions, references)
    # The default tokenizer given explicitly: without one, rouge-score logs through the root logger, which
    # installs a root handler in the caller's process.
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=tokenizers.DefaultTokenizer(use_stemmer=False))
    scores = [
        scorer.score_multi(refs, prediction)["rougeL"].fmeasure
        for prediction, refs in zip(predictions, references)
    ]
    return np.asarray(scores, dtype=np.float64) * PERCENT


def rouge_l(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """ROUGE-L averaged over items, in percent: the mean of [`rouge_l_per_item`]."""
    return float(np.mean(rouge_l_per_item(predictions, references)))


def meteor_tokenize(text: str) -> list[str]:
    """The words of `text` as nltk's `word_tokenize` gives them to METEOR in the `evaluate` library: Punkt
    sentences (see [`punkt_available`]), each split by nltk's Treebank word tokenizer. METEOR lowercases them."""
    words = _word_tokenizer()
    return [word for sentence in _sentence_splitter().tokenize(text) for word in words.tokenize(sentence)]


def meteor(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """
    METEOR (Banerjee and Lavie, 2005) as computed by nltk, best over the references of each item, averaged
    over items, in percent. Without WordNet installed the synonym stage is off (see
    [`text_metric_sources`]).

    Args:
        predictions (`Sequence[str]`): one generated text per item.
        references (`Sequence[Sequence[str]]`): the reference texts of each item.

    Returns:
        `float`: METEOR in [0, 100].
    """
    from nltk.translate.meteor_score import meteor_score

    references = _check_text_inputs(predictions, references)
    extra = {} if wordnet_available() else {"wordnet": _NoSynonyms()}
    scores = [
        meteor_score([meteor_tokenize(ref) for ref in refs], meteor_tokenize(prediction), **extra)
        for prediction, refs in zip(predictions, references)
    ]
    return float(np.mean(scores)) * PERCENT


def text_metrics(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """BLEU-4, ROUGE-L and METEOR of `predictions` against all `references` of each item, in percent."""
    return {
        "BLEU-4": bleu4(predictions, references),
        "ROUGE-L": rouge_l(predictions, references),
        "METEOR": meteor(predictions, references),
    }


__all__ = [
    "R_PRECISION_PROTOCOLS",
    "R_PRECISION_TOP_K",
    "bleu4",
    "describe_r_precision_protocol",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "meteor",
    "meteor_tokenize",
    "punkt_available",
    "r_precision",
    "r_precision_grouped",
    "r_precision_posescript",
    "rouge_l",
    "text_metric_sources",
    "text_metrics",
    "wordnet_available",
]
