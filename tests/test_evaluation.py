# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""Tests of the evaluation suite: every metric against an independent computation, the retrieval models, and
`unipose evaluate` end to end on the tiny model (with resuming). The retrieval models' training is tested in
`test_retrieval_training.py`."""

import argparse
import json
import math
import shutil

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict

from unipose import retrieval_models as R
from unipose.commands import evaluate as evaluate_command
from unipose.data.schema import FEATURES
from unipose.evaluation import paper_metrics as M
from unipose.metrics import pose_errors, recall_at_k, text_pose_recalls

TINY_RETRIEVAL = {
    "word_embedding_dim": 16,
    "text_hidden_size": 16,
    "embed_dim": 32,
    "pose_encoder_config": {"hidden_size": 16, "code_dim": 16},
}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The metrics are many small tensor operations: on a busy machine, thread hand-offs cost more than they
    save (x10 here), so this file runs single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def text_tokenizer():
    from unipose.tokenization import build_tiny_tokenizer

    return build_tiny_tokenizer()


def _random_poses(n, seed):
    generator = torch.Generator().manual_seed(seed)
    return (0.4 * torch.randn(n, 22, 3, generator=generator)).numpy()


# ----------------------------------------------------------------------------------------------------
# R-precision and Recall@K
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", M.R_PRECISION_PROTOCOLS)
def test_r_precision_of_a_perfect_model_is_100(protocol):
    embeddings = torch.randn(96, 8, generator=torch.Generator().manual_seed(0))
    scores = M.r_precision(embeddings, embeddings.clone(), protocol)
    assert scores == {"top1": 100.0, "top2": 100.0, "top3": 100.0}


def test_r_precision_of_a_random_model_is_at_chance():
    generator = torch.Generator().manual_seed(1)
    queries, candidates = (
        torch.randn(3200, 16, generator=generator),
        torch.randn(3200, 16, generator=generator),
    )
    grouped = M.r_precision_grouped(queries, candidates)
    posescript = M.r_precision_posescript(queries, candidates)
    for k in (1, 2, 3):
        # Grouped: the true item is uniformly placed among 32.
        assert grouped[f"top{k}"] == pytest.approx(100 * k / 32, abs=1.3)
        # PoseScript: given the true score's quantile u, the 10 x 31 distractor comparisons are Bernoulli(1 - u),
        # so the summed rank is Binomial(310, 1 - u) with u uniform: each sum 0..310 has probability 1/311, and
        # mean rank < k means sum < 10k.
        assert posescript[f"top{k}"] == pytest.approx(100 * 10 * k / 311, abs=1.3)


def test_r_precision_gives_no_credit_for_ties():
    constant = torch.ones(320, 4)
    grouped = M.r_precision_grouped(constant, constant)
    assert grouped["top1"] == pytest.approx(100 / 32, abs=2.0)
    # Every rank is uniform on 0..31; an average below 1 over 10 draws is very rare.
    assert M.r_precision_posescript(constant, constant)["top1"] < 1.0


def test_r_precision_grouped_matches_a_brute_force_ranking():
    # With exactly one group the shuffle cannot change the ranks.
    generator = torch.Generator().manual_seed(2)
    queries, candidates = torch.randn(32, 5, generator=generator), torch.randn(32, 5, generator=generator)
    distances = [[math.dist(q.tolist(), c.tolist()) for c in candidates] for q in queries]
    ranks = [sum(d < row[i] for d in row) for i, row in enumerate(distances)]
    expected = {f"top{k}": 100 * sum(r < k for r in ranks) / 32 for k in (1, 2, 3)}
    assert M.r_precision_grouped(queries, candidates) == pytest.approx(expected)


def test_r_precision_posescript_matches_a_brute_force_ranking():
    # A pool as large as the set holds every candidate, whatever the draws.
    generator = torch.Generator().manual_seed(3)
    queries, candidates = torch.randn(20, 6, generator=generator), torch.randn(20, 6, generator=generator)

    def cosine(a, b):
        return float(a @ b / (a.norm() * b.norm()))

    ranks = [sum(cosine(q, c) > cosine(q, candidates[i]) for c in candidates) for i, q in enumerate(queries)]
    expected = {f"top{k}": 100 * sum(r < k for r in ranks) / 20 for k in (1, 2, 3)}
    assert M.r_precision_posescript(queries, candidates, pool_size=20, num_repetitions=3) == pytest.approx(
        expected
    )


def test_r_precision_draws_distinct_distractors_never_the_query():
    generator = torch.Generator().manual_seed(4)
    draws = M._random_distractors(40, 500, 31, generator)
    assert draws.min() >= 0 and draws.max() < 39
    assert all(len(set(row)) == 31 for row in draws.tolist())
    # Floyd's algorithm samples subsets uniformly: every index appears about equally often.
    counts = torch.bincount(draws.flatten(), minlength=39).double()
    assert counts.std() / counts.mean() < 0.1


def test_recall_at_k_matches_a_brute_force_ranking():
    generator = torch.Generator().manual_seed(5)
    queries, candidates = torch.randn(50, 7, generator=generator), torch.randn(50, 7, generator=generator)
    similarity = (
        torch.nn.functional.normalize(queries, dim=1) @ torch.nn.functional.normalize(candidates, dim=1).T
    )
    ranks = [sorted(row.tolist(), reverse=True).index(row[i].item()) for i, row in enumerate(similarity)]
    expected = {f"R@{k}": 100 * sum(r < k for r in ranks) / 50 for k in (1, 5, 10)}
    assert recall_at_k(queries, candidates, (1, 5, 10)) == pytest.approx(expected)
    both = text_pose_recalls(queries, candidates, (1, 5, 10))
    assert both["mRecall"] == pytest.approx(np.mean([v for k, v in both.items() if k != "mRecall"]))
    assert both["R^T2P@5"] == pytest.approx(expected["R@5"])
    # By default, the authors' evaluation code's mRecall: the mean of Recall@1, 5, 10 and 20 in both directions
    # (their tables print only 5, 10 and 20).
    default = text_pose_recalls(queries, candidates)
    directions = [recall_at_k(queries, candidates, (1, 5, 10, 20)), recall_at_k(candidates, queries, (1, 5, 10, 20))]
    assert default["mRecall"] == pytest.approx(np.mean([v for recalls in directions for v in recalls.values()]))


def test_retrieval_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="matched one to one"):
        M.r_precision(torch.zeros(40, 3), torch.zeros(41, 3))
    with pytest.raises(ValueError, match="at least 32 items"):
        M.r_precision(torch.zeros(10, 3), torch.zeros(10, 3))
    with pytest.raises(ValueError, match="protocol"):
        M.r_precision(torch.zeros(40, 3), torch.zeros(40, 3), protocol="motiongpt")
    with pytest.raises(ValueError, match="NaN"):
        recall_at_k(torch.full((5, 3), float("nan")), torch.zeros(5, 3), (1,))
    with pytest.raises(ValueError, match="k_values"):
        recall_at_k(torch.zeros(5, 3), torch.zeros(5, 3), (10,))


# ----------------------------------------------------------------------------------------------------
# FID and joint errors
# ----------------------------------------------------------------------------------------------------


def _gaussian_closed_form(mean_a, cov_a, mean_b, cov_b):
    """Frechet distance with scipy's general matrix square root of the covariance product."""
    from scipy.linalg import sqrtm

    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * sqrtm(cov_a @ cov_b).real))


def test_fid_of_two_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(6)
    dim = 6
    factors = rng.normal(size=(2, dim, dim))
    cov_a, cov_b = (f @ f.T / dim + 0.1 * np.eye(dim) for f in factors)
    mean_a, mean_b = rng.normal(size=dim), rng.normal(size=dim)
    exact = _gaussian_closed_form(mean_a, cov_a, mean_b, cov_b)
    assert M.frechet_distance_from_statistics(mean_a, cov_a, mean_b, cov_b) == pytest.approx(exact, rel=1e-8)
    # From samples, the estimate converges to the closed form.
    samples_a = rng.multivariate_normal(mean_a, cov_a, size=100_000)
    samples_b = rng.multivariate_normal(mean_b, cov_b, size=100_000)
    assert M.frechet_distance(samples_a, samples_b) == pytest.approx(exact, rel=0.03)
    assert M.frechet_distance(samples_a, samples_a) == pytest.approx(0.0, abs=1e-6)
    # Fewer samples than dimensions (singular covariances) still give a finite, non-negative distance.
    assert 0.0 <= M.frechet_distance(samples_a[:4], samples_b[:4]) < math.inf


def test_fid_rejects_mismatched_features():
    with pytest.raises(ValueError, match="same dimension"):
        M.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        M.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


def test_pa_mpjpe_of_a_similarity_transformed_copy_is_zero():
    from unipose.body_model import pose_to_joints
    from unipose.metrics import mpjpe, pa_mpjpe
    from unipose.rotations import axis_angle_to_matrix

    joints = pose_to_joints(torch.from_numpy(_random_poses(4, 7)))
    rotation = axis_angle_to_matrix(torch.tensor([0.3, -1.1, 0.7]))
    moved = 1.7 * joints @ rotation.T + torch.tensor([0.5, -0.2, 2.0])
    assert float(pa_mpjpe(moved, joints)) == pytest.approx(0.0, abs=1e-3)
    assert float(mpjpe(moved, joints)) > 100.0
    errors = pose_errors(_random_poses(4, 7), _random_poses(4, 7))
    assert errors == {"MPJPE": pytest.approx(0.0, abs=1e-4), "PA-MPJPE": pytest.approx(0.0, abs=1e-3)}
    assert pose_errors(_random_poses(4, 7), _random_poses(4, 8))["MPJPE"] > 10.0


# ----------------------------------------------------------------------------------------------------
# Text metrics
# ----------------------------------------------------------------------------------------------------


def test_bleu_of_a_hand_worked_example():
    # 6 words, one wrong at the end: n-gram precisions 5/6, 4/5, 3/4, 2/3, equal lengths (no penalty).
    score = M.bleu4(["a b c d e f"], [["a b c d e g"]])
    assert score == pytest.approx(100 * (5 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25)
    # A shorter hypothesis pays the brevity penalty exp(1 - r/c) against the closest reference (5, not 9).
    short = M.bleu4(["a b c d"], [["a b c d e", "a b c d e f g h i"]])
    assert short == pytest.approx(100 * math.exp(1 - 5 / 4))


def test_bleu_is_case_sensitive_as_the_papers_evaluation():
    # PoseScript's and UniPose's evaluations score with the `evaluate` library's BLEU (tensorflow/nmt's over 13a
    # tokens), which keeps case: "The" and "the" are different words.
    prediction = "The person is standing with the left arm raised above the head."
    assert M.bleu4([prediction], [[prediction.lower()]]) == pytest.approx(91.21679090703874, rel=1e-9)
    assert M.bleu4([prediction], [[prediction]]) == pytest.approx(100.0)


def test_bleu_matches_nltk_with_several_references():
    from nltk.translate.bleu_score import corpus_bleu
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    predictions = [
        "the person stands with both arms raised above the head",
        "a man is kneeling on his left knee, hands on the hips",
        "bend your right elbow and lift the left leg",
    ]
    references = [
        [
            "the person is standing with the arms raised above the head",
            "someone stands, both arms up above the head",
        ],
        ["the man kneels on the left knee with his hands on the hips"],
        [
            "bend the right elbow and raise your left leg",
            "lift your left leg and bend your right elbow",
            "right elbow bent",
        ],
    ]
    tokenize = Tokenizer13a()
    expected = 100 * corpus_bleu(
        [[tokenize(ref).split() for ref in refs] for refs in references],
        [tokenize(text).split() for text in predictions],
    )
    assert M.bleu4(predictions, references) == pytest.approx(expected, rel=1e-9)


def _lcs(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def test_rouge_l_matches_a_longest_common_subsequence():
    predictions = ["the left arm is raised high", "kneel down"]
    references = [["the right arm is raised", "left arm raised high"], ["stand up straight"]]

    def f_measure(prediction, reference):
        p, r = prediction.split(), reference.split()
        common = _lcs(p, r)
        return 0.0 if common == 0 else 2 * common / (len(p) + len(r))

    expected = 100 * np.mean([max(f_measure(p, r) for r in refs) for p, refs in zip(predictions, references)])
    assert M.rouge_l(predictions, references) == pytest.approx(expected)


def test_meteor_exact_and_stem_stages():
    # Identical 4-word texts: F-mean 1, one chunk, fragmentation penalty 0.5 * (1/4)^3.
    assert M.meteor(["Raise your left arm"], [["raise your left arm"]]) == pytest.approx(100 * (1 - 0.5 / 64))
    # "raising" and "raise" share the Porter stem "rais": matched by the stem stage, not the exact one.
    stemmed = M.meteor(["raising your left arm"], [["raise your left arm"]])
    assert stemmed == pytest.approx(100 * (1 - 0.5 / 64))
    assert M.meteor(["sit"], [["raise your left arm"]]) == 0.0
    sources = M.text_metric_sources()
    assert ("synonym stage is off" in sources["METEOR"]) != M.wordnet_available()
    assert "sacrebleu" in sources["BLEU-4"] and "rouge-score" in sources["ROUGE-L"]


def test_meteor_reads_the_words_of_nltks_word_tokenize():
    # The `evaluate` library's METEOR, which the paper's evaluation calls, scores nltk's `word_tokenize` words:
    # Treebank words in Punkt sentences. Hyphenated words and decimals stay whole; "'s" is a word of its own.
    from nltk.tokenize import NLTKWordTokenizer
    from nltk.translate.meteor_score import single_meteor_score

    text = "The person's left-hand is at 90.5 degrees. Their right knee is bent."
    assert M.meteor_tokenize(text) == [
        "The", "person", "'s", "left-hand", "is", "at", "90.5", "degrees", ".",
        "Their", "right", "knee", "is", "bent", ".",
    ]
    words = NLTKWordTokenizer()
    pairs = [
        ("The left-hand fingers touch the thigh.", "The left hand touches the left thigh."),
        ("The person's right knee is bent.", "The person's knees are bent."),
        ("They bend forward 90.5 degrees.", "The person bends forward."),
    ]
    for prediction, reference in pairs:
        extra = {} if M.wordnet_available() else {"wordnet": M._NoSynonyms()}
        expected = 100 * single_meteor_score(words.tokenize(reference), words.tokenize(prediction), **extra)
        assert M.meteor([prediction], [[reference]]) == pytest.approx(expected, rel=1e-12)
    if not M.wordnet_available():  # the first pair, as the `evaluate` library scores it without WordNet
        assert M.meteor([pairs[0][0]], [[pairs[0][1]]]) == pytest.approx(56.45569620253165, rel=1e-9)


def test_meteor_tokenize_is_nltks_word_tokenize_where_punkt_is_installed():
    import nltk

    if not M.punkt_available():
        pytest.skip("nltk's English Punkt data is not installed")
    text = "The person's left-hand is raised, e.g. above the head. Their right knee is bent."
    assert M.meteor_tokenize(text) == nltk.word_tokenize(text)


def test_text_metrics_reject_bad_references():
    with pytest.raises(ValueError, match="one list of reference"):
        M.text_metrics(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="non-empty"):
        M.bleu4(["a"], [[]])


# ----------------------------------------------------------------------------------------------------
# Retrieval models
# ----------------------------------------------------------------------------------------------------


def _tiny_pose_model(tokenizer, pair=False, seed=0):
    torch.manual_seed(seed)
    config_class = R.PosePairTextRetrievalConfig if pair else R.PoseTextRetrievalConfig
    model_class = R.PosePairTextRetrievalModel if pair else R.PoseTextRetrievalModel
    return model_class(config_class.for_tokenizer(tokenizer, **TINY_RETRIEVAL))


def test_retrieval_model_embeds_to_the_unit_sphere_and_round_trips(text_tokenizer, tmp_path):
    model = _tiny_pose_model(text_tokenizer).eval()
    assert model.temperature.item() == 10.0
    poses, texts = _random_poses(3, 9), ["arms up", "kneeling on the left knee", "sitting"]
    pose_embeds, text_embeds = R.embed_poses(model, poses), R.embed_texts(model, text_tokenizer, texts)
    assert pose_embeds.shape == text_embeds.shape == (3, 32)
    torch.testing.assert_close(pose_embeds.norm(dim=1), torch.ones(3))
    model.save_pretrained(tmp_path)
    text_tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded, tokenizer = R.load_retrieval_model(tmp_path)
    assert type(loaded) is R.PoseTextRetrievalModel
    torch.testing.assert_close(R.embed_poses(loaded, poses), pose_embeds)
    torch.testing.assert_close(R.embed_texts(loaded, tokenizer, texts), text_embeds)


def test_loss_is_the_batch_classification_loss(text_tokenizer):
    from unipose.rotations import to_rotation_6d

    model = _tiny_pose_model(text_tokenizer)
    inputs = R.tokenize_texts(text_tokenizer, ["arms up", "kneeling", "lying down", "a squat"], 32)
    output = model(poses_6d=to_rotation_6d(_random_poses(4, 10)), **inputs)
    similarity = output.text_embeds @ output.pose_embeds.T
    log_softmax_rows = torch.log_softmax(10 * similarity, dim=1).diagonal()
    log_softmax_columns = torch.log_softmax(10 * similarity, dim=0).diagonal()
    expected = -(log_softmax_rows.mean() + log_softmax_columns.mean()) / 2
    torch.testing.assert_close(output.loss, expected)


def test_training_step_moves_trainable_weights_and_keeps_word_embeddings(text_tokenizer):
    from unipose.rotations import to_rotation_6d

    model = _tiny_pose_model(text_tokenizer).train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    inputs = R.tokenize_texts(text_tokenizer, ["arms up", "kneeling", "lying down", "a squat"], 32)
    model(poses_6d=to_rotation_6d(_random_poses(4, 11)), **inputs).loss.backward()
    optimizer.step()
    for name, parameter in model.named_parameters():
        changed = not torch.equal(parameter, before[name])
        assert changed == (name != "text_encoder.word_embeddings.weight"), name


def test_pair_model_depends_on_both_poses_and_their_order(text_tokenizer):
    model = _tiny_pose_model(text_tokenizer, pair=True).eval()
    a, b, c = _random_poses(2, 12), _random_poses(2, 13), _random_poses(2, 14)
    reference = R.embed_pose_pairs(model, a, b)
    assert not torch.allclose(reference, R.embed_pose_pairs(model, a, c))
    assert not torch.allclose(reference, R.embed_pose_pairs(model, c, b))
    assert not torch.allclose(reference, R.embed_pose_pairs(model, b, a))
    with pytest.raises(TypeError, match="pose-pair model"):
        R.embed_pose_pairs(_tiny_pose_model(text_tokenizer), a, b)


def test_text_encoder_rejects_left_padding_and_bad_poses(text_tokenizer):
    model = _tiny_pose_model(text_tokenizer)
    inputs = text_tokenizer(
        ["arms up", "kneeling on the left knee"], padding=True, padding_side="left", return_tensors="pt"
    )
    with pytest.raises(ValueError, match="padding on the right"):
        model.get_text_features(inputs["input_ids"], inputs["attention_mask"])
    with pytest.raises(ValueError, match="6D joint rotations"):
        model.get_pose_features(torch.zeros(2, 22, 3))


def _pose_text_records(n, seed, num_texts=2):
    words = "left right arm leg raised bent straight knee elbow forward backward kneeling standing".split()
    rng = np.random.default_rng(seed)
    texts = [[" ".join(rng.choice(words, 5)) for _ in range(num_texts)] for _ in range(n)]
    columns = {
        "id": [f"{seed}-{i}" for i in range(n)],
        "pose": _random_poses(n, seed),
        "texts": texts,
        "source": ["test"] * n,
    }
    return Dataset.from_dict(columns, features=FEATURES["pose_text"])


# ----------------------------------------------------------------------------------------------------
# `unipose evaluate`
# ----------------------------------------------------------------------------------------------------


def _images(n, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (40, 32, 3), dtype=np.uint8)) for _ in range(n)]


def _write_corpus(root, n):
    """A small test split of every record kind, as `unipose data synth` lays it out."""
    texts = [["raise the left arm", "the left arm is up"]] * n
    common = {"id": [str(i) for i in range(n)], "texts": texts, "source": ["test"] * n}
    columns = {
        "pose_text": {"pose": _random_poses(n, 20)},
        "pose_pair": {"pose_a": _random_poses(n, 21), "pose_b": _random_poses(n, 22)},
        "image_pose": {"image": _images(n, 23), "pose": _random_poses(n, 24)},
        "image_pair": {
            "image_a": _images(n, 25),
            "image_b": _images(n, 26),
            "pose_a": _random_poses(n, 27),
            "pose_b": _random_poses(n, 28),
        },
    }
    for kind, specific in columns.items():
        records = Dataset.from_dict({**common, **specific}, features=FEATURES[kind])
        DatasetDict({"test": records}).save_to_disk(root / kind)


@pytest.fixture(scope="module")
def tiny_unipose():
    from unipose.testing import tiny_model_and_processor

    return tiny_model_and_processor(seed=0)


def test_unipose_evaluate_runs_every_task_and_writes_the_report(tmp_path, tiny_unipose, text_tokenizer):
    from unipose.evaluation import runner

    model, processor = tiny_unipose
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    for name, pair in (("pose_retrieval", False), ("pair_retrieval", True)):
        _tiny_pose_model(text_tokenizer, pair=pair).save_pretrained(tmp_path / name)
        text_tokenizer.save_pretrained(tmp_path / name)
    _write_corpus(tmp_path / "corpus", n=8)

    parser = argparse.ArgumentParser()
    evaluate_command.add_arguments(parser)
    args = parser.parse_args(
        [
            "--model",
            str(tmp_path / "model"),
            "--task",
            "all",
            "--data",
            str(tmp_path / "corpus"),
            "--retrieval-model",
            str(tmp_path / "pose_retrieval"),
            "--pair-retrieval-model",
            str(tmp_path / "pair_retrieval"),
            "--output",
            str(tmp_path / "out"),
            "--batch-size",
            "4",
            "--max-new-tokens",
            "4",
            "--pool-size",
            "4",
            "--recall-k",
            "1",
            "5",
            "--num-examples",
            "1",
            "--no-progress",
        ]
    )
    summary = json.loads(evaluate_command.run(args))
    assert set(summary) == set(runner.TASKS)

    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["tasks"]) == set(runner.TASKS)
    for task in ("pose-to-text", "pose-diff", "image-to-text", "image-diff"):
        metrics = results["tasks"][task]["metrics"]
        assert {
            "BLEU-4",
            "ROUGE-L",
            "METEOR",
            "R-Precision@1 (posescript)",
            "R-Precision@3 (grouped)",
        } <= set(metrics)
    for task in ("text-to-pose", "pose-editing"):
        metrics = results["tasks"][task]["metrics"]
        assert {"R^T2P@1", "R^P2T@5", "mRecall", "FID", "MPJPE", "PA-MPJPE"} <= set(metrics)
        assert metrics["pose rate (%)"] == 100.0
    assert set(results["tasks"]["pose-estimation"]["metrics"]) == {"pose rate (%)", "MPJPE", "PA-MPJPE"}
    assert "protocol" in results["r_precision_protocols"]["grouped"]

    report = (tmp_path / "out" / "report.md").read_text()
    assert "| metric | ours | paper |" in report and "arXiv:2411.16781" in report
    assert "`posescript`" in report and "`grouped`" in report and "WordNet" in report
    assert "R^T2P@5" in report  # the paper's columns appear even where ours were not computed
    assert "| PA-MPJPE | " in report and "| 59.1 |" in report  # pose estimation beside the paper's 3DPW row
    assert "Paper, Table 3 (PoseScript):" in report and "| PoseScript | 73.3 |" in report
    assert "the retrieval model's ceiling here" in report
    for task in runner.TASKS:
        assert list((tmp_path / "out" / "examples").glob(f"{task}-0-*.png")), task
        lines = (tmp_path / "out" / task / "predictions.jsonl").read_text().splitlines()
        assert sorted(json.loads(line)["batch"] for line in lines) == [0, 1]
    # A rerun reuses these predictions only for the same model files, dtype and corpus: a checkpoint written again
    # in place, or another dtype, is refused (before anything is generated).
    # Every task is checked before anything is written: with the first task's folder gone, the refused rerun
    # neither starts that task nor replaces the report of the run before.
    report_before = (tmp_path / "out" / "results.json").read_bytes()
    first = next(iter(runner.TASKS))
    shutil.rmtree(tmp_path / "out" / first)
    model.save_pretrained(tmp_path / "model")
    with pytest.raises(ValueError, match=r"holds predictions of another run \(it differs in \['model_files'\]\)"):
        evaluate_command.run(args)
    assert (tmp_path / "out" / "results.json").read_bytes() == report_before
    assert not (tmp_path / "out" / first).exists()
    args.dtype = "bfloat16"
    with pytest.raises(ValueError, match=r"it differs in \['dtype', 'model_files'\]"):
        evaluate_command.run(args)


class _CountingModel:
    """Wraps a model to count `generate` calls, and to fail on a chosen call."""

    def __init__(self, model, fail_on_call=None):
        self.model, self.calls, self.fail_on_call = model, 0, fail_on_call

    def __getattr__(self, name):
        return getattr(self.model, name)

    def generate(self, **kwargs):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("simulated crash")
        return self.model.generate(**kwargs)


def test_evaluation_resumes_without_redoing_finished_batches(tmp_path, tiny_unipose):
    from unipose.evaluation.runner import EvaluationSettings, evaluate_task

    model, processor = tiny_unipose
    dataset = _pose_text_records(10, 30)
    settings = EvaluationSettings(batch_size=3, num_examples=0)  # 4 batches

    reference = evaluate_task(
        "text-to-pose", model, processor, dataset, tmp_path / "reference", settings, progress=False
    )

    crashing = _CountingModel(model, fail_on_call=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        evaluate_task(
            "text-to-pose", crashing, processor, dataset, tmp_path / "run", settings, progress=False
        )
    predictions = tmp_path / "run" / "text-to-pose" / "predictions.jsonl"
    assert len(predictions.read_text().splitlines()) == 2
    # A crash in the middle of writing a line leaves a partial one: it is dropped and its batch redone.
    with open(predictions, "a") as handle:
        handle.write('{"batch": 2, "predictions": [{"pose"')

    resumed_model = _CountingModel(model)
    resumed = evaluate_task(
        "text-to-pose", resumed_model, processor, dataset, tmp_path / "run", settings, progress=False
    )
    assert resumed_model.calls == 2
    assert resumed["metrics"] == reference["metrics"]
    assert (
        predictions.read_text() == (tmp_path / "reference" / "text-to-pose" / "predictions.jsonl").read_text()
    )


def test_evaluation_refuses_predictions_of_another_run(tmp_path, tiny_unipose):
    from unipose.evaluation.runner import EvaluationSettings, evaluate_task

    model, processor = tiny_unipose
    dataset = _pose_text_records(4, 31)

    def evaluate(batch_size):
        settings = EvaluationSettings(batch_size=batch_size, num_examples=0)
        evaluate_task("text-to-pose", model, processor, dataset, tmp_path, settings, progress=False)

    evaluate(batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(batch_size=4)
    again = evaluate_task(
        "text-to-pose",
        model,
        processor,
        dataset,
        tmp_path,
        EvaluationSettings(batch_size=4, num_examples=0),
        overwrite=True,
        progress=False,
    )
    assert again["num_items"] == 4


def test_paper_tables_and_the_unipose_rows_the_reports_use():
    from unipose.evaluation.paper_results import (
        PAPER_ABLATIONS,
        PAPER_RESULTS,
        PAPER_TABLES,
        UNIPOSE,
        paper_value,
    )
    from unipose.evaluation.runner import TASKS

    assert set(PAPER_RESULTS) == set(TASKS)
    for spec in PAPER_TABLES.values():
        for section in spec["tasks"].values():
            assert UNIPOSE in section["rows"]
            assert all(len(values) == len(spec["columns"]) for values in section["rows"].values())
    # Every reported metric name is one the evaluation computes.
    computed = {"BLEU-4", "ROUGE-L", "METEOR", "MPJPE", "PA-MPJPE", "FID"}
    computed |= {f"R-Precision@{k} (grouped)" for k in (1, 2, 3)}
    computed |= {f"R^{d}@{k}" for d in ("T2P", "P2T") for k in (5, 10, 20)}
    assert all(set(result["metrics"]) <= computed for result in PAPER_RESULTS.values())
    # Spot checks, one per table; pose estimation reports the 3DPW columns.
    assert paper_value("pose-to-text", "R-Precision@1 (grouped)") == 85.6
    assert paper_value("pose-to-text", "BLEU-4") == 12.1
    assert paper_value("text-to-pose", "FID") == 0.038
    estimation = (paper_value("pose-estimation", "MPJPE"), paper_value("pose-estimation", "PA-MPJPE"))
    assert estimation == (94.7, 59.1)
    assert paper_value("pose-editing", "MPJPE") == 270.3
    assert paper_value("pose-editing", "R^T2P@5") is None  # Table 5 has no retrieval columns
    ablation = PAPER_ABLATIONS["mixed-attention"]["results"]
    assert [ablation["mixed attention"][f"R^T2P@{k}"] for k in (5, 10, 20)] == [13.8, 20.3, 28.8]
    assert PAPER_ABLATIONS["pose-tokenizer"]["results"]["AMASS test, with orientation noise"] == {
        "MPJPE": 6.2,
        "PA-MPJPE": 3.7,
    }


def test_mean_pose_is_the_chordal_mean():
    from unipose.rotations import mean_pose

    pose = _random_poses(1, 40)[0]
    np.testing.assert_allclose(mean_pose(np.stack([pose, pose, pose])), pose, atol=1e-5)
    # +30 and -30 degrees about the same axis average to no rotation.
    turn = np.zeros((2, 22, 3), dtype=np.float32)
    turn[0, :, 0], turn[1, :, 0] = np.pi / 6, -np.pi / 6
    np.testing.assert_allclose(mean_pose(turn), 0.0, atol=1e-6)


def test_evaluate_scores_the_baselines_with_the_same_metrics(tmp_path, tiny_unipose):
    from unipose.body_model import pose_to_joints
    from unipose.metrics import mpjpe
    from unipose.rotations import mean_pose

    model, processor = tiny_unipose
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    n = 6
    texts = [["the left arm is up", "raise the left arm"], ["kneel down"]] * (n // 2)
    splits = {}
    for split, seed in (("train", 50), ("test", 60)):
        splits[split] = {
            "pose_text": {"pose": _random_poses(n, seed)},
            "pose_pair": {"pose_a": _random_poses(n, seed + 1), "pose_b": _random_poses(n, seed + 2)},
        }
    for kind in ("pose_text", "pose_pair"):
        DatasetDict(
            {
                split: Dataset.from_dict(
                    {"id": [str(i) for i in range(n)], "texts": texts, "source": ["t"] * n, **columns[kind]},
                    features=FEATURES[kind],
                )
                for split, columns in splits.items()
            }
        ).save_to_disk(tmp_path / "corpus" / kind)
    parser = argparse.ArgumentParser()
    evaluate_command.add_arguments(parser)
    args = parser.parse_args(
        ["--model", str(tmp_path / "model"), "--task", "pose-to-text", "text-to-pose", "pose-editing", "--data",
         str(tmp_path / "corpus"), "--output", str(tmp_path / "out"), "--max-new-tokens", "3", "--num-examples", "0",
         "--no-progress", "--baselines", "--captions", "first"]
    )
    evaluate_command.run(args)
    results = json.loads((tmp_path / "out" / "results.json").read_text())["tasks"]
    test = splits["test"]
    editing = results["pose-editing"]["baseline"]
    assert editing["name"] == "unchanged pose A"
    expected = mpjpe(pose_to_joints(test["pose_pair"]["pose_a"]), pose_to_joints(test["pose_pair"]["pose_b"]))
    assert editing["metrics"]["MPJPE"] == pytest.approx(float(expected), rel=1e-4)
    mean = mean_pose(splits["train"]["pose_text"]["pose"])
    expected = mpjpe(pose_to_joints(np.repeat(mean[None], n, 0)), pose_to_joints(test["pose_text"]["pose"]))
    assert results["text-to-pose"]["baseline"]["metrics"]["MPJPE"] == pytest.approx(float(expected), rel=1e-4)
    assert results["pose-to-text"]["baseline"]["name"].startswith("constant answer (the left arm is up")
    assert "| metric | ours | baseline | paper |" in (tmp_path / "out" / "report.md").read_text()


def test_the_answer_length_defaults_to_the_models_generation_config(tmp_path, tiny_unipose):
    # A converted release's says 512, the published program's length; without one, 128.
    from unipose.evaluation.runner import DEFAULT_MAX_NEW_TOKENS

    model, processor = tiny_unipose
    n = 4
    DatasetDict(
        {
            "test": Dataset.from_dict(
                {"id": [str(i) for i in range(n)], "texts": [["kneel down"]] * n, "source": ["t"] * n,
                 "pose": _random_poses(n, 70)},
                features=FEATURES["pose_text"],
            )
        }
    ).save_to_disk(tmp_path / "corpus" / "pose_text")
    parser = argparse.ArgumentParser()
    evaluate_command.add_arguments(parser)
    for length, given in ((None, []), (5, []), (5, ["--max-new-tokens", "3"])):
        folder = tmp_path / f"model-{length}-{len(given)}"
        model.generation_config.max_new_tokens = length
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        out = folder / "out"
        args = parser.parse_args(
            ["--model", str(folder), "--task", "pose-to-text", "--data", str(tmp_path / "corpus"), "--output",
             str(out), "--num-examples", "0", "--no-progress", *given]
        )
        evaluate_command.run(args)
        results = json.loads((out / "results.json").read_text())
        assert results["settings"]["max_new_tokens"] == (3 if given else length or DEFAULT_MAX_NEW_TOKENS)
        # The body of the joint errors is recorded and named in the report (the stand-in, without SMPL-H).
        assert results["body_model"].startswith("the generated stand-in body")
        assert "the 22 body joints of the generated stand-in body" in (out / "report.md").read_text()
    model.generation_config.max_new_tokens = None


def test_text_answers_are_scored_against_the_first_caption_as_the_paper_unless_all_are_asked_for():
    from unipose.evaluation.paper_metrics import text_metrics
    from unipose.evaluation.runner import EvaluationSettings, RetrievalJudges, compute_task_metrics

    captions = [["the left arm is raised high", "both knees are bent", "the person sits"]] * 4
    dataset = Dataset.from_dict(
        {"id": [f"r{i}" for i in range(4)], "texts": captions, "source": ["t"] * 4, "pose": _random_poses(4, 90)},
        features=FEATURES["pose_text"],
    )
    predictions = [{"text": "both knees are bent"}] * 4  # the second caption, word for word
    items = [(index, None) for index in range(4)]

    def scores(references):
        settings = EvaluationSettings(text_references=references)
        return compute_task_metrics("pose-to-text", dataset, items, predictions, RetrievalJudges(), settings)[0]

    first, every = scores("first"), scores("all")
    expected_first = text_metrics([p["text"] for p in predictions], [texts[:1] for texts in captions])
    assert {name: first[name] for name in expected_first} == expected_first
    assert every["BLEU-4"] == pytest.approx(100.0) and first["BLEU-4"] < 50.0
    with pytest.raises(ValueError, match="`text_references` must be 'first' or 'all'"):
        EvaluationSettings(text_references="best")


def test_a_record_with_a_nan_pose_is_refused_before_anything_is_generated(tiny_unipose):
    from unipose.evaluation.runner import EvaluationSettings, task_run

    poses = _random_poses(4, 80)
    poses[2, 5, 1] = np.nan
    dataset = Dataset.from_dict(
        {"id": [f"r{i}" for i in range(4)], "texts": [["kneel"]] * 4, "source": ["t"] * 4, "pose": poses},
        features=FEATURES["pose_text"],
    )
    with pytest.raises(ValueError, match=r"Record 2 \(id 'r2'\) of the `pose_text` records holds NaN .* in `pose`"):
        task_run("text-to-pose", dataset, EvaluationSettings())
    assert len(task_run("text-to-pose", dataset.select([0, 1, 3]), EvaluationSettings())[0]) == 3
    # Predictions depend on the answer length only where the answer is text: a pose is always its 80 codes.
    short, long = EvaluationSettings(max_new_tokens=4), EvaluationSettings(max_new_tokens=512)
    clean = dataset.select([0, 1, 3])
    assert task_run("text-to-pose", clean, short)[1] == task_run("text-to-pose", clean, long)[1]
    assert task_run("pose-to-text", clean, short)[1] != task_run("pose-to-text", clean, long)[1]


# ----------------------------------------------------------------------------------------------------
# The `evaluate` modules
# ----------------------------------------------------------------------------------------------------


def test_evaluate_modules_give_the_numbers_of_unipose_evaluate(tmp_path, tiny_unipose, text_tokenizer):
    import evaluate
    from datasets import load_from_disk

    from unipose.evaluation import evaluate_module

    model, processor = tiny_unipose
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    _tiny_pose_model(text_tokenizer).save_pretrained(tmp_path / "retrieval")
    text_tokenizer.save_pretrained(tmp_path / "retrieval")
    _write_corpus(tmp_path / "corpus", n=8)
    parser = argparse.ArgumentParser()
    evaluate_command.add_arguments(parser)
    args = parser.parse_args([
        "--model", str(tmp_path / "model"), "--task", "text-to-pose", "--data", str(tmp_path / "corpus"),
        "--retrieval-model", str(tmp_path / "retrieval"), "--output", str(tmp_path / "out"), "--batch-size", "4",
        "--max-new-tokens", "4", "--pool-size", "4", "--recall-k", "1", "5", "--num-examples", "0", "--no-progress",
    ])
    evaluate_command.run(args)
    ours = json.loads((tmp_path / "out" / "results.json").read_text())["tasks"]["text-to-pose"]["metrics"]
    assert ours["pose rate (%)"] == 100.0

    lines = [json.loads(line) for line in (tmp_path / "out" / "text-to-pose" / "predictions.jsonl").read_text().splitlines()]
    generated = [item["pose"] for line in sorted(lines, key=lambda l: l["batch"]) for item in line["predictions"]]
    records = load_from_disk(str(tmp_path / "corpus" / "pose_text"))["test"]
    flat = lambda poses: [np.asarray(p, dtype=np.float32).reshape(-1).tolist() for p in poses]  # noqa: E731

    errors = evaluate.load(evaluate_module("pose_error")).compute(
        predictions=flat(generated), references=flat(records["pose"])
    )
    assert errors["MPJPE"] == pytest.approx(ours["MPJPE"], rel=1e-6)
    assert errors["PA-MPJPE"] == pytest.approx(ours["PA-MPJPE"], rel=1e-6)

    retrieval = evaluate.load(evaluate_module("pose_text_retrieval"), "text_to_pose").compute(
        predictions=flat(generated), references=[texts[0] for texts in records["texts"]],
        retrieval_model=str(tmp_path / "retrieval"), pool_size=4, recall_k=[1, 5],
    )
    shared = [key for key in retrieval if key.startswith(("R-Precision", "R^", "mRecall"))]
    assert len(shared) == len(retrieval) >= 10
    for key in shared:
        assert retrieval[key] == pytest.approx(ours[key], abs=1e-9), key


def test_evaluate_modules_refuse_what_they_cannot_compute(tmp_path):
    import evaluate

    from unipose.evaluation import evaluate_module

    with pytest.raises(ValueError, match="`name` must be one of"):
        evaluate_module("bleu")
    with pytest.raises(ValueError, match="`text_to_pose` or `pose_to_text`"):
        evaluate.load(evaluate_module("pose_text_retrieval"))
    metric = evaluate.load(evaluate_module("pose_text_retrieval"), "pose_to_text")
    with pytest.raises(ValueError, match="retrieval_model="):
        metric.compute(predictions=["a"], references=[[0.0] * 66])


# ----------------------------------------------------------------------------------------------------
# Significance
# ----------------------------------------------------------------------------------------------------


def test_bootstrap_interval_agrees_with_scipys_percentile_bootstrap():
    from scipy.stats import bootstrap

    from unipose.evaluation.significance import bootstrap_interval

    values = np.random.default_rng(3).gamma(2.0, 30.0, size=300)  # skewed, like per-pose errors
    ours = bootstrap_interval(values, num_resamples=4000, seed=1)
    theirs = bootstrap(
        (values,), np.mean, n_resamples=4000, confidence_level=0.95, method="percentile", random_state=1
    ).confidence_interval
    width = theirs.high - theirs.low
    assert ours.mean == pytest.approx(values.mean())
    assert abs(ours.low - theirs.low) < 0.05 * width and abs(ours.high - theirs.high) < 0.05 * width
    assert bootstrap_interval(values, seed=1) == bootstrap_interval(values, seed=1)


def test_a_verdict_needs_the_paired_interval_to_exclude_zero():
    from unipose.evaluation.significance import paired_difference, verdict

    rng = np.random.default_rng(0)
    baseline = rng.normal(150.0, 40.0, size=300)
    clearly_lower = baseline - 20.0 + rng.normal(0, 5.0, size=300)
    same = baseline + rng.normal(0, 5.0, size=300)
    assert verdict(paired_difference(clearly_lower, baseline), lower_is_better=True) == "better"
    assert verdict(paired_difference(clearly_lower, baseline), lower_is_better=False) == "worse"
    assert verdict(paired_difference(same, baseline), lower_is_better=True) == "no significant difference"
    with pytest.raises(ValueError, match="same items"):
        paired_difference(same[:10], baseline)
    # A percentile bootstrap's interval is too narrow on few items (on 2 items it misses a zero difference half
    # the time): below MIN_ITEMS_FOR_VERDICT independent items there is no verdict.
    assert verdict(paired_difference(clearly_lower[:29], baseline[:29]), lower_is_better=True) == "too few items"
    assert verdict(paired_difference(clearly_lower[:30], baseline[:30]), lower_is_better=True) == "better"


def test_items_of_one_record_are_resampled_together():
    # With `--captions all` a record gives one item per caption; its items are not independent. Resampling
    # records (a cluster bootstrap) gives a record's values repeated the interval of the record's value alone,
    # where resampling the items would narrow it by about the square root of the repeats.
    from unipose.evaluation.runner import headline_significance
    from unipose.evaluation.significance import bootstrap_interval

    values = np.random.default_rng(1).gamma(2.0, 30.0, size=100)
    alone = bootstrap_interval(values, seed=2)
    repeated, records = np.repeat(values, 3), np.repeat(np.arange(100), 3)
    grouped = bootstrap_interval(repeated, seed=2, groups=records)
    assert (grouped.low, grouped.high, grouped.mean) == pytest.approx((alone.low, alone.high, alone.mean))
    assert (grouped.num_items, grouped.num_groups) == (300, 100)
    naive = bootstrap_interval(repeated, seed=2)
    assert naive.high - naive.low < 0.7 * (alone.high - alone.low)
    # The evaluation's headline intervals do so when records repeat, and a verdict counts records.
    ours = {"MPJPE": dict(enumerate(repeated))}
    baseline = {"MPJPE": dict(enumerate(repeated + 5.0 + np.random.default_rng(3).normal(0, 1, 300)))}
    entry = headline_significance(ours, baseline, seed=2, records=records.tolist())["MPJPE"]
    assert entry["ours"]["num_groups"] == entry["difference"]["num_groups"] == 100
    assert entry["ours"]["high"] == pytest.approx(alone.high) and entry["verdict"] == "better"
    few = headline_significance(ours, baseline, seed=2, records=(records // 5).tolist())["MPJPE"]
    assert few["difference"]["num_groups"] == 20 and few["verdict"] == "too few items"
    from unipose.evaluation.summary import evaluation_caveats

    results = {"tasks": {"text-to-pose": {
        "baseline": {"name": "mean training pose", "metrics": {}}, "significance": {"MPJPE": few}
    }}}  # fmt: skip
    (caveat,) = evaluation_caveats(results)
    assert caveat.startswith("Text-to-Pose, MPJPE: too few items for a verdict (fewer than 30 independent ones)")


def test_evaluation_reports_intervals_and_paired_differences_with_the_baseline(tmp_path, tiny_unipose):
    from unipose.evaluation.runner import EvaluationSettings, _task_section, evaluate_task

    model, processor = tiny_unipose
    test, train = _pose_text_records(6, 40), _pose_text_records(10, 41)
    result = evaluate_task(
        "text-to-pose", model, processor, test, tmp_path, EvaluationSettings(batch_size=3, num_examples=0),
        progress=False, train_dataset=train,
    )
    entry = result["significance"]["MPJPE"]
    assert entry["lower_is_better"] and entry["ours"]["num_items"] == 6
    assert entry["ours"]["low"] <= result["metrics"]["MPJPE"] <= entry["ours"]["high"]
    assert entry["baseline"]["mean"] == pytest.approx(result["baseline"]["metrics"]["MPJPE"])
    assert entry["difference"]["mean"] == pytest.approx(result["metrics"]["MPJPE"] - entry["baseline"]["mean"])
    assert entry["verdict"] == "too few items"  # 6 items: no verdict
    section = "\n".join(_task_section("text-to-pose", {**result, "split": "test"}))
    assert "| MPJPE (lower is better) |" in section and entry["verdict"] in section
    # The per-item values are kept, in item order, and give the intervals again.
    from unipose.evaluation.runner import headline_significance

    per_item = {
        system: {name: {i: v for i, v in enumerate(values) if v is not None} for name, values in lists.items()}
        for system, lists in result["per_item"].items()
    }
    assert len(result["per_item"]["ours"]["MPJPE"]) == 6
    assert sum(per_item["ours"]["MPJPE"].values()) / len(per_item["ours"]["MPJPE"]) == pytest.approx(
        result["metrics"]["MPJPE"]
    )
    assert headline_significance(per_item["ours"], per_item["baseline"]) == result["significance"]


def test_the_summary_table_says_better_or_worse_only_where_the_difference_excludes_zero():
    from unipose.evaluation.summary import evaluation_caveats, evaluation_section, evaluation_table

    def interval(mean, low, high):
        return {"mean": mean, "low": low, "high": high, "num_items": 300}

    def task(metric, lower_is_better, ours, baseline, difference, verdict):
        entry = {"ours": ours, "baseline": baseline, "difference": difference, "verdict": verdict,
                 "lower_is_better": lower_is_better}
        return {"split": "test", "num_items": 300, "baseline": {"name": "mean training pose", "metrics": {}},
                "significance": {metric: entry}}

    results = {"settings": {"seed": 0}, "tasks": {
        "pose-editing": task("MPJPE", True, interval(154.9, 142.0, 169.0), interval(156.4, 140.0, 175.0),
                             interval(-1.5, -18.9, 14.8), "no significant difference"),
        "text-to-pose": task("MPJPE", True, interval(178.3, 161.6, 197.0), interval(260.6, 244.1, 277.7),
                             interval(-82.3, -96.5, -68.0), "better"),
        "pose-to-text": task("ROUGE-L", False, interval(30.0, 29.0, 31.0), interval(33.3, 32.6, 34.0),
                             interval(-3.3, -4.1, -2.5), "worse"),
    }}
    table = evaluation_table(results)
    rows = [line for line in table.splitlines() if line.startswith("| Pose") or line.startswith("| Text")]
    # In the order of the tasks of `unipose evaluate`, with units and signed differences.
    assert [row.split(" | ")[0] for row in rows] == ["| Pose-to-Text", "| Text-to-Pose", "| Pose Editing"]
    assert rows[1].endswith("| mean training pose | -82.3 [-96.5, -68.0] | **better** |")
    assert rows[2].endswith("| -1.5 [-18.9, +14.8] | not significant |") and "| mm |" in rows[2]
    assert rows[0].endswith("| **worse** |")
    caveats = evaluation_caveats(results)
    assert len(caveats) == 2 and caveats[0].startswith("Pose-to-Text, ROUGE-L: the baseline is better")
    assert "no significant difference" in caveats[1] and "-1.5 [-18.9, +14.8]" in caveats[1]
    section = evaluation_section(results, {"pose_pair": {"test": 1000}}, details="More in results.json.")
    assert "- Pose Editing: 300 items from the 1,000 `test` records of `pose_pair`." in section
    assert "- Text-to-Pose: 300 items from the `test` records of `pose_text`." in section  # its size not given
    assert section.endswith("More in results.json.")
    assert "no intervals" in evaluation_table({"tasks": {"pose-editing": {"num_items": 3, "significance": {}}}})
    with pytest.raises(ValueError, match="results.json"):
        evaluation_table([1, 2])


def test_evaluation_without_matplotlib_scores_everything_and_renders_no_examples(tmp_path, tiny_unipose, monkeypatch):
    from unipose import visualization
    from unipose.evaluation.runner import EvaluationSettings, evaluate_task

    def missing():
        raise ImportError("Rendering poses needs matplotlib, which is not installed: `pip install unipose[demo]`.")

    monkeypatch.setattr(visualization, "_import_matplotlib", missing)
    model, processor = tiny_unipose
    result = evaluate_task(
        "pose-to-text", model, processor, _pose_text_records(4, 42), tmp_path,
        EvaluationSettings(batch_size=2, num_examples=2), progress=False,
    )  # fmt: skip
    assert result["examples"] == [] and result["num_items"] == 4
    assert "BLEU-4" in result["metrics"]
    assert not (tmp_path / "examples").exists()


def test_unanswered_items_leave_both_sides_of_the_comparison_and_are_named():
    from unipose.evaluation.runner import headline_significance
    from unipose.evaluation.summary import evaluation_caveats

    rng = np.random.default_rng(0)
    baseline = {"MPJPE": {i: float(v) for i, v in enumerate(rng.normal(350.0, 30.0, 20))}}
    ours = {"MPJPE": {i: float(v) for i, v in enumerate(rng.normal(100.0, 10.0, 20)) if i in (2, 7, 11)}}
    entry = headline_significance(ours, baseline)["MPJPE"]
    shared = [2, 7, 11]
    assert entry["baseline"]["num_items"] == entry["ours"]["num_items"] == 3 and entry["unanswered"] == 17
    assert entry["baseline"]["mean"] == pytest.approx(np.mean([baseline["MPJPE"][i] for i in shared]))
    assert entry["difference"]["mean"] == pytest.approx(entry["ours"]["mean"] - entry["baseline"]["mean"])
    results = {
        "tasks": {
            "text-to-pose": {
                "metrics": {"MPJPE": entry["ours"]["mean"]},
                "baseline": {"name": "mean training pose", "metrics": {"MPJPE": entry["baseline"]["mean"]}},
                "significance": {"MPJPE": entry},
            }
        }
    }
    assert any("no pose for 17 of 20 items" in caveat and "compare the 3 it answered" in caveat
               for caveat in evaluation_caveats(results))  # fmt: skip
