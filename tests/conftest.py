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
