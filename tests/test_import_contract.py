"""The layer contract (`[tool.importlinter]` in pyproject.toml) holds for the package, and breaks
when a lower floor imports a higher one (checked on a copy of the package with one upward import)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([str(LINT), "--no-cache", "--config", str(root / "pyproject.toml")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    shutil.copytree(ROOT / "stjax", root / "stjax", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_package_keeps_its_layers(copy):
    done = _lint(copy)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


@pytest.mark.parametrize("module, upward", [
    ("stjax/layers/attention.py", "stjax.models.shared"),  # a layer reading a model
    ("stjax/data/batching.py", "stjax.config"),  # data reading the config (the old upward import)
    ("stjax/models/base.py", "stjax.train.state"),  # a model reading the engine
    ("stjax/runs/__init__.py", "stjax.serving.recommend"),  # the run folder reading serving
])
def test_an_upward_import_breaks_the_contract(copy, module, upward):
    path = copy / module
    original = path.read_text()
    try:
        path.write_text(original + f"\nimport {upward}  # noqa\n")
        done = _lint(copy)
    finally:
        path.write_text(original)
    assert done.returncode == 1, done.stdout[-3000:]
    importer = module.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    assert "BROKEN" in done.stdout and f"{importer} -> {upward}" in done.stdout, done.stdout[-3000:]
