"""The bundled model's published evaluation and card: the card's table is what the generator makes of the committed
`results.json`, the committed intervals follow from the committed per-item values, and a slice of the test split
scored again with the bundled model and the retrieval models shipped with it gives the committed per-item values.

The slice (`tests/fixtures/unipose_tiny_test_slice`) holds the first 16 test records of each kind of the synthetic
corpus the bundled model was evaluated on (`unipose data synth --num 20000 --num-images 6000 --image-size 128
--seed 0`), written by `tests/fixtures/make_unipose_tiny_test_slice.py`."""

import argparse
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from unipose.demo import DEFAULT_MODEL
from unipose.evaluation.runner import TASKS, headline_significance
from unipose.evaluation.summary import evaluation_caveats, evaluation_table

REPO = Path(__file__).resolve().parents[1]
MODEL = Path(DEFAULT_MODEL)
EVALUATION = MODEL / "evaluation"
SLICE = REPO / "tests" / "fixtures" / "unipose_tiny_test_slice"
SLICE_SIZE = 16  # one batch of the published run (`--batch-size 16`), so that the padding is the same

pytestmark = pytest.mark.skipif(
    not (EVALUATION / "results.json").exists(), reason="no bundled model evaluation in this checkout"
)


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads((EVALUATION / "results.json").read_text())


def load_build_script():
    spec = importlib.util.spec_from_file_location("build_unipose_tiny", REPO / "train" / "build_unipose_tiny.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_card_is_what_the_generator_makes_of_the_committed_files(tmp_path, results):
    """`python train/build_unipose_tiny.py --steps card` would write the committed card, byte for byte."""
    folder = tmp_path / "unipose-tiny"
    (folder / "evaluation").mkdir(parents=True)
    shutil.copy(MODEL / "config.json", folder / "config.json")
    shutil.copytree(MODEL / "training", folder / "training")
    for name in ("results.json", "corpus.json"):
        shutil.copy(EVALUATION / name, folder / "evaluation" / name)
    load_build_script().write_card(folder)
    committed = (MODEL / "README.md").read_text()
    assert (folder / "README.md").read_text() == committed
    assert evaluation_table(results) in committed
    for caveat in evaluation_caveats(results):
        assert caveat in committed


def test_the_readme_shows_the_table_of_the_committed_results(results):
    readme = (REPO / "README.md").read_text()
    assert evaluation_table(results) in readme
    assert "beats every baseline" not in readme


def test_the_card_names_every_task_with_its_baseline_and_verdict(results):
    table = evaluation_table(results)
    for task, result in results["tasks"].items():
        assert TASKS[task].title in table
        assert result["baseline"]["name"] in table
        for entry in result["significance"].values():
            assert entry["verdict"] in ("better", "worse", "no significant difference")
    assert "beats every baseline" not in (MODEL / "README.md").read_text()


def test_committed_intervals_follow_from_the_committed_per_item_values(results):
    seed = results["settings"]["seed"]
    for task, result in results["tasks"].items():
        per_item = {
            system: {
                name: {position: value for position, value in enumerate(values) if value is not None}
                for name, values in lists.items()
            }
            for system, lists in result["per_item"].items()
        }
        assert headline_significance(per_item["ours"], per_item["baseline"], seed) == result["significance"], task
        for name, values in result["per_item"]["ours"].items():
            assert len(values) == result["num_items"]


def test_a_slice_of_the_test_split_scored_again_gives_the_committed_per_item_values(tmp_path, results):
    """The bundled model (and the retrieval models shipped with it, where the published run names them), through
    `unipose evaluate` with the published settings, on the first batch of every task: the same answers, hence the same ROUGE-L, MPJPE and PA-MPJPE item by item.
    (R-precision is not compared: each text's pools are drawn from all 300 items of the published run.)"""
    from unipose.commands import evaluate

    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    settings = results["settings"]
    judges = []
    # The retrieval models shipped with the model, when the published run was judged by them.
    for option, key in (("--retrieval-model", "retrieval_model"), ("--pair-retrieval-model", "pair_retrieval_model")):
        if results[key] is not None:
            assert (REPO / results[key] / "config.json").exists(), f"{results[key]} is not shipped"
            judges += [option, str(REPO / results[key])]
    args = parser.parse_args(
        [
            "--model", str(MODEL), "--task", "all", "--data", str(SLICE), "--output", str(tmp_path), *judges,
            "--batch-size", str(settings["batch_size"]), "--max-samples", str(SLICE_SIZE),
            "--num-examples", "0", "--device", "cpu", "--no-progress",
        ]
    )
    evaluate.run(args)
    again = json.loads((tmp_path / "results.json").read_text())
    assert set(again["tasks"]) == set(results["tasks"])
    for task, result in again["tasks"].items():
        assert result["num_items"] == SLICE_SIZE
        committed = results["tasks"][task]["per_item"]["ours"]
        assert result["per_item"]["ours"], task
        for name, values in result["per_item"]["ours"].items():
            expected = committed[name][:SLICE_SIZE]
            assert [value is None for value in values] == [value is None for value in expected], (task, name)
            assert [value for value in values if value is not None] == pytest.approx(
                [value for value in expected if value is not None], rel=1e-4, abs=1e-3
            ), (task, name)
