"""Fixtures shared by the test modules."""

import pytest

from unipose.testing import tiny_model_and_processor


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random UniPose saved with its processor (and its remote code), as a folder."""
    path = tmp_path_factory.mktemp("tiny")
    model, processor = tiny_model_and_processor(seed=3)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model_and_processor():
    """A tiny random UniPose and its processor (a module may override this fixture with another seed)."""
    return tiny_model_and_processor(seed=0)


@pytest.fixture(scope="module")
def model(model_and_processor):
    return model_and_processor[0]


@pytest.fixture(scope="module")
def processor(model_and_processor):
    return model_and_processor[1]


@pytest.fixture
def kill_while_saving(monkeypatch):
    """`kill_while_saving(trainer_class, step)` makes the trainer raise `KeyboardInterrupt` halfway through writing
    its checkpoint of `step` (after the weights, before the random states), as a run killed while saving; it
    returns a function that undoes it."""

    def arm(trainer_class, step):
        original = trainer_class._save_rng_state

        def save_rng_state(self, output_dir):
            if self.state.global_step == step:
                raise KeyboardInterrupt("killed while saving")
            original(self, output_dir)

        monkeypatch.setattr(trainer_class, "_save_rng_state", save_rng_state)
        return lambda: monkeypatch.setattr(trainer_class, "_save_rng_state", original)

    return arm
