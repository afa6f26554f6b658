"""The README's layer example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_layers_example_runs():
    text = README.read_text()
    match = re.search(r"<!-- layers-example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "the layers example block is missing from the README"
    namespace: dict = {}
    exec(compile(match.group(1), "README.md", "exec"), namespace)
    assert float(namespace["distance"]) > 3900
