"""The bad-input table in the docs names tests that exist."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _test_names(path):
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_every_row_of_the_bad_input_table_is_a_test():
    table = (ROOT / "docs" / "bad_inputs.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "`tests/" in line]
    assert len(rows) >= 30
    for row in rows:
        reference = re.search(r"`(tests/[^`:]+)::([a-zA-Z0-9_]+)(\[[^`]*\])?`", row)
        assert reference, row
        path, name = ROOT / reference.group(1), reference.group(2)
        assert path.exists(), row
        assert name in _test_names(path), row
        if reference.group(3):  # a parametrized case: its id must be written in the file
            case = reference.group(3)[1:-1]
            assert f'"{case}"' in path.read_text(), row
