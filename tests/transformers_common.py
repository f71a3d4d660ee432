"""transformers' own common testers (`ModelTesterMixin`, `ConfigTester`), loaded from its source distribution.

transformers' wheel ships no tests. Its source distribution on PyPI ships `tests/test_modeling_common.py` and
`tests/test_configuration_common.py`, but not three modules they import: the export tests, the generation tests
and a table of config keywords. `scripts/setup.sh` downloads the source distribution of the installed version and
extracts the two files to `.venv/transformers-tests/<version>/`; `load` imports them as the package
`transformers_common_tests`, with the three missing modules stood in for:

- `exporters.test_export.ExportTesterMixin`, the base of `ModelTesterMixin`: a class without tests, so the
  `torch.export` tests do not run (UniPose's pose blocks in the mask and its one-step pose decoding are not
  traced by those tests).
- `generation.test_utils.GenerationTesterMixin`: a class without tests, which the tester does not inherit; it
  declares `all_generative_model_classes = ()` since UniPose's `generate` is its own decoding loop (see
  `tests/test_generation.py`).
- `utils.test_configuration_utils.config_common_kwargs`: every common `PreTrainedConfig` field with a value
  other than its default, which `ConfigTester` checks a config keeps.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import transformers

PACKAGE = "transformers_common_tests"
FILES = ("test_modeling_common.py", "test_configuration_common.py")


def source_dir() -> Path:
    """Where `scripts/setup.sh` extracts the common tests of the installed transformers."""
    return Path(sys.prefix) / "transformers-tests" / transformers.__version__


def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(f"{PACKAGE}.{name}")
    vars(module).update(attributes)
    sys.modules[module.__name__] = module
    return module


def load() -> tuple[types.ModuleType, types.ModuleType]:
    """`(test_modeling_common, test_configuration_common)` of the installed transformers.

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
                "return_dict": False,
                "dtype": "float16",
                "chunk_size_feed_forward": 5,
                "is_encoder_decoder": True,
                "id2label": {0: "first", 1: "second"},
                "label2id": {"first": 0, "second": 1},
                "problem_type": "regression",
            },
        )
    return tuple(importlib.import_module(f"{PACKAGE}.{name[:-3]}") for name in FILES)
