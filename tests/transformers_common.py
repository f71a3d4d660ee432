"""transformers' own common testers (`ModelTesterMixin`, `ConfigTester`, `ProcessorTesterMixin`), loaded from its
source distribution.

transformers' wheel ships no tests. Its source distribution on PyPI ships `tests/test_modeling_common.py`,
`tests/test_configuration_common.py` and `tests/test_processing_common.py`, but not four modules they import: the
export tests, the generation tests, a table of config keywords and the helper that finds the test images that CI
downloads. `scripts/setup.sh` downloads the source distribution of the installed version and extracts the three
files to `.venv/transformers-tests/<version>/`; `load` imports them as the package `transformers_common_tests`,
with the four missing modules stood in for:

- `exporters.test_export.ExportTesterMixin`, the base of `ModelTesterMixin`: a class without tests, so the
  `torch.export` tests do not run (UniPose's pose blocks in the mask and its one-step pose decoding are not
  traced by those tests).
- `generation.test_utils.GenerationTesterMixin`: a class without tests, which the tester does not inherit; it
  declares `all_generative_model_classes = ()` since UniPose's `generate` is its own decoding loop (see
  `tests/test_generation_contracts.py`).
- `utils.test_configuration_utils.config_common_kwargs`: every common `PreTrainedConfig` field with a value
  other than its default, which `ConfigTester` checks a config keeps.
- `fetch_hub_objects_for_ci.url_to_local_path`: transformers' CI downloads the test images beforehand and reads
  them from disk; here an image URL maps to a picture drawn locally (nothing is downloaded), and any other URL
  stays as it is.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import PIL.Image
import transformers

PACKAGE = "transformers_common_tests"
FILES = ("test_modeling_common.py", "test_configuration_common.py", "test_processing_common.py")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def source_dir() -> Path:
    """Where `scripts/setup.sh` extracts the common tests of the installed transformers."""
    return Path(sys.prefix) / "transformers-tests" / transformers.__version__


def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(f"{PACKAGE}.{name}")
    vars(module).update(attributes)
    sys.modules[module.__name__] = module
    return module


def _url_to_local_path(url: str, return_url_if_not_found: bool = True) -> str:
    """A local picture (640x480, drawn once per name) for an image URL; other URLs as they are."""
    name = url.rsplit("/", 1)[-1]
    if not name.lower().endswith(IMAGE_SUFFIXES):
        return url if return_url_if_not_found else name
    path = Path(tempfile.gettempdir()) / "transformers-common-test-images" / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        gradient = np.linspace(0, 255, 640, dtype=np.uint8)
        channels = [np.tile(gradient, (480, 1)), np.tile(gradient[::-1], (480, 1)), np.full((480, 640), 90, np.uint8)]
        pixels = np.stack(channels, -1)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial{path.suffix}")
        PIL.Image.fromarray(pixels).save(partial)
        os.replace(partial, path)
    return str(path)


def load() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    """`(test_modeling_common, test_configuration_common, test_processing_common)` of the installed transformers.

    Raises:
        FileNotFoundError: when the files are not extracted (run `scripts/setup.sh`).
    """
    directory = source_dir()
    missing = [name for name in FILES if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"transformers' common tests {missing} are not in {directory}: `bash scripts/setup.sh` downloads "
            f"the source distribution of transformers {transformers.__version__} and extracts them there."
        )
    if PACKAGE not in sys.modules:
        package = sys.modules[PACKAGE] = types.ModuleType(PACKAGE)
        package.__path__ = [str(directory)]
        for name in ("exporters", "generation", "utils"):
            _module(name, __path__=[])
        _module("exporters.test_export", ExportTesterMixin=type("ExportTesterMixin", (), {}))
        _module("generation.test_utils", GenerationTesterMixin=type("GenerationTesterMixin", (), {}))
        _module(
            "utils.test_configuration_utils",
            config_common_kwargs={
                "architectures": ["PoseVQVAE"],
                "output_hidden_states": True,
                "output_attentions": True,
                "return_dict": False,
                "dtype": "float16",
                "chunk_size_feed_forward": 5,
                "is_encoder_decoder": True,
                "id2label": {0: "first", 1: "second"},
                "label2id": {"first": 0, "second": 1},
                "problem_type": "regression",
            },
        )
        helper = types.ModuleType("fetch_hub_objects_for_ci")
        helper.url_to_local_path = _url_to_local_path
        sys.modules.setdefault(helper.__name__, helper)
    return tuple(importlib.import_module(f"{PACKAGE}.{name[:-3]}") for name in FILES)
