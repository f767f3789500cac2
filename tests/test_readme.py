"""The README's test command and .ci/run must stay the same command."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _test_command_in_readme():
    blocks = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    commands = [b.strip() for b in blocks if "pytest" in b]
    assert len(commands) == 1, f"README must hold exactly one test command; found {commands}"
    return commands[0]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert _test_command_in_readme() in ci.splitlines()


def test_readme_has_exactly_two_setup_commands():
    blocks = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(blocks) == 2
    assert any("moetheory reproduce" in b for b in blocks)
