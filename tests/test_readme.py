"""The ```python examples of the README and docs/usage.md run as written (```py blocks are fragments and
are not run)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
USAGE = ROOT / "docs" / "usage.md"


def _run_blocks(path: Path, folder: Path, monkeypatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)
    assert blocks, f"{path.name} has no ```python example"
    monkeypatch.chdir(folder)
    for code in blocks:
        exec(compile(code, str(path), "exec"), {"__name__": "__readme__"})


def test_readme_python_example_runs(tmp_path, monkeypatch):
    _run_blocks(README, tmp_path, monkeypatch)


def test_usage_python_examples_run(tmp_path, monkeypatch, capsys):
    _run_blocks(USAGE, tmp_path, monkeypatch)
    out = capsys.readouterr().out
    assert "MCC" in out
