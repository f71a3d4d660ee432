"""The package's imports run one way, read from the source (imports inside functions included):

model files (the remote-code closure) <- library (data, body, metrics, task formats, files) <- training and
evaluation <- commands (`cli`, `app`, `demo`). Training and evaluation share what they share through the library,
never through each other, and no package imports back into a layer above it.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "unipose"

# The remote-code closure: what a saved checkpoint carries and imports relatively.
MODEL_FILES = {
    "configuration_pose_vqvae",
    "configuration_unipose",
    "modeling_pose_vqvae",
    "modeling_unipose",
    "pipeline_unipose",
    "processing_inputs",
    "processing_poses",
    "processing_text",
    "processing_unipose",
    "rotations",
    "skeleton",
}
# The command line (`unipose.commands`, one module per subcommand, listed by `cli`) and the two applications
# built on the library, the web demo and the demo report.
COMMANDS = {"cli", "commands", "app", "demo"}
TRAINING = {"training"}


def module_name(path: Path) -> str:
    parts = ["unipose", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every `unipose` module `path` imports, anywhere in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t == "unipose" or t.startswith("unipose."))
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    if top in MODEL_FILES:
        return "model"
    if top in TRAINING:
        return "training"
    if top == "evaluation":
        return "evaluation"
    if top in COMMANDS:
        return "commands"
    return "library"


# Which layers each layer may import.
ALLOWED = {
    "model": {"model"},
    "library": {"model", "library"},
    "training": {"model", "library", "training"},
    "evaluation": {"model", "library", "evaluation"},
    "commands": {"model", "library", "training", "evaluation", "commands"},
}

EDGES = {
    (module_name(path), target)
    for path in PACKAGE.rglob("*.py")
    for target in imported_modules(path)
    if target != "unipose" and target.split(".")[1] != "__init__"
}


def test_the_walk_sees_the_packages_imports():
    # A check that reads nothing passes everything: the walk must find edges known to exist, in both forms
    # (`from .task_formats import X` names the module; `from . import cli` names it through its package).
    assert ("unipose.evaluation.runner", "unipose.task_formats") in EDGES
    assert ("unipose.training.tasks", "unipose.task_formats") in EDGES
    assert ("unipose.commands.evaluate", "unipose.checkpoints") in EDGES
    assert len(EDGES) > 150


@pytest.mark.parametrize("source", sorted(ALLOWED))
def test_imports_run_one_way(source):
    wrong = sorted(
        f"{module} -> {target}"
        for module, target in EDGES
        if layer(module) == source and layer(target) not in ALLOWED[source]
    )
    assert not wrong, f"{source} modules import a layer above them or beside them: {wrong}"


# Library modules that still parse arguments, and why.
ARGPARSE_ALLOWED = {
    # Reads which options a `trl sft` run was given (with TRL's own parser) to describe the run in its card.
    "unipose.training.model_cards",
    # The parser of the training scripts.
    "unipose.arguments",
}


def _library_modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if layer(name) != "commands":
            yield name, ast.parse(path.read_text(encoding="utf-8"))


def test_library_modules_neither_parse_the_command_line_nor_print():
    parsing, printing = [], []
    for name, tree in _library_modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(alias.name == "argparse" for alias in node.names):
                if name not in ARGPARSE_ALLOWED:
                    parsing.append(name)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                printing.append(f"{name}:{node.lineno}")
    assert not parsing, f"argument parsing outside unipose.commands: {parsing}"
    assert not printing, f"print() outside unipose.commands: {printing}"


# What may be imported inside a function, and why: the optional extras (`pip install unipose[eval]`, `[train]`,
# `[demo]`, `[app]`), which the rest of the package must work without, and smplx, imported after the
# compatibility shim that lets it load with current numpy. Everything else is imported at the top of its module.
DEFERRED_IMPORTS = {"evaluate", "nltk", "sacrebleu", "rouge_score", "trl", "peft", "matplotlib", "gradio", "smplx"}


def test_only_optional_extras_are_imported_inside_functions():
    deferred = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for function in functions:
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom):
                    packages = ["unipose" if node.level else node.module.split(".")[0]]
                elif isinstance(node, ast.Import):
                    packages = [alias.name.split(".")[0] for alias in node.names]
                else:
                    continue
                deferred += [
                    f"{module_name(path)}:{node.lineno} imports {package}"
                    for package in packages
                    if package not in DEFERRED_IMPORTS
                ]
    assert not deferred, f"imports inside functions that belong at the top of their module: {sorted(set(deferred))}"
