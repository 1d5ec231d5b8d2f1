"""The README's Python API example runs as written."""

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(minilm_dir, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # the example names ../shared relative to the repository
    readme = (REPO_ROOT / "README.md").read_text()
    example = re.findall(r"```python\n(.*?)```", readme, re.S)[0]
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["small"].num_encoder_params() < namespace["model"].num_encoder_params()
