"""The shape of the code, checked: import layers without cycles, small files and functions, one
definition per vocabulary, the feature map read through its type, and comments that explain the
code instead of its history. Everything is read with `ast` or as text; nothing is imported."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.helpers import HISTORY_IN_CODE, REPO
from tests.import_graph import closure, cycles, graph, module_name

CODE = sorted(p for package in ("micn", "flows") for p in (REPO / package).rglob("*.py"))
TESTS = sorted((REPO / "tests").rglob("*.py"))
SQL = sorted((REPO / "sql").rglob("*.sql")) + sorted((REPO / "sql").rglob("*.md"))
MAX_FILE_LINES, MAX_FUNCTION_LINES, MAX_TEST_FILE_LINES = 500, 60, 600
LONG_BY_DESIGN = "# Long by design:"  # the comment that lets one closed-form computation run longer


def rel(path: Path) -> str:
    return (path.relative_to(REPO) if path.is_relative_to(REPO) else path).as_posix()


def test_no_module_takes_part_in_an_import_cycle():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_planted_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]


def test_the_import_layers_point_one_way():
    """models <- checkpoint/evidence <- train <- grid <- flows: no module imports one of a layer above it."""
    layers = [("micn.models", "micn.nn", "micn.data.batch"), ("micn.checkpoint", "micn.evidence"), ("micn.run",),
              ("micn.train",), ("micn.grid",), ("flows",)]
    edges = graph()

    def layer(module: str) -> int | None:
        return next((i for i, names in enumerate(layers) if any(module == n or module.startswith(n + ".")
                                                                 for n in names)), None)

    wrong = [(m, d) for m, deps in edges.items() for d in deps
             if layer(m) is not None and layer(d) is not None and layer(d) > layer(m)]
    assert wrong == []


def test_the_training_path_never_imports_the_interests_command():
    """Rewording what `micn interests` prints must not change the training-code hash."""
    for entry in ("micn.train", "micn.grid", "flows.grid"):
        assert "micn/interests.py" not in closure(entry), entry


def test_the_training_code_hash_covers_everything_training_imports():
    tree = ast.parse((REPO / "micn/grid.py").read_text())
    value = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == "TRAINING_CODE" for t in node.targets))
    covered = [f"micn/{entry}" for entry in ast.literal_eval(value)]
    needed = {f for f in closure("micn.train") if not (f.endswith("__init__.py") and not (REPO / f).read_text().strip())}
    missing = sorted(f for f in needed if not any(f == c or f.startswith(c + "/") for c in covered))
    assert missing == [], f"micn.grid.TRAINING_CODE misses {missing}"
    assert "micn/interests.py" not in covered


def functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def long_functions(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    found = []
    for node in functions(ast.parse(path.read_text())):
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        length = node.end_lineno - start + 1
        excused = start >= 2 and lines[start - 2].strip().startswith(LONG_BY_DESIGN)
        if length > MAX_FUNCTION_LINES and not excused:
            found.append(f"{rel(path)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_file_over_500_lines_and_no_function_over_60():
    big = [f"{rel(p)} ({n} lines)" for p in CODE if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES]
    assert big == []
    assert [f for p in CODE for f in long_functions(p)] == []


def test_the_size_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "long.py").write_text(f"def f():\n{body}\n")
    (tmp_path / "excused.py").write_text(f"{LONG_BY_DESIGN} one closed form.\ndef f():\n{body}\n")
    assert [f.split(" ")[1] for f in long_functions(tmp_path / "long.py")] == ["f"]
    assert long_functions(tmp_path / "excused.py") == []


def test_no_test_file_over_600_lines_and_no_test_module_imports_another():
    big = [f"{rel(p)} ({n} lines)" for p in TESTS if (n := len(p.read_text().splitlines())) > MAX_TEST_FILE_LINES]
    assert big == []
    crossing = []
    for path in TESTS:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            crossing += [f"{rel(path)} imports {n}" for n in names
                         if re.match(r"tests\.(.*\.)?(test_\w+|conftest)$", n)]
    assert crossing == []


def test_every_vocabulary_is_defined_once():
    """The names of micn/names.py are assigned nowhere else at module level."""
    tree = ast.parse((REPO / "micn/names.py").read_text())
    names = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}
    assert {"VARIANTS", "PROTOCOLS", "SPLITS", "FORMATS", "DUCKDB_MAGIC", "BACKBONE_NAMES", "PADDING_ID"} <= names
    again = []
    for path in CODE:
        if path.name == "names.py" and path.parent.name == "micn":
            continue
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            again += [f"{rel(path)}: {t.id}" for t in targets if isinstance(t, ast.Name) and t.id in names]
    assert again == []


def test_the_feature_map_is_read_through_its_type():
    """No `fmap["..."]` / `feature_map["..."]` lookups outside micn/data/feature_map.py."""
    lookup = re.compile(r"\b(fmap|feature_map)(\.get\(|\[\s*[\"'])")
    found = [f"{rel(p)}:{i}" for p in CODE if p != REPO / "micn/data/feature_map.py"
             for i, line in enumerate(p.read_text().splitlines(), 1) if lookup.search(line)]
    assert found == []


def history_lines(path: Path) -> list[str]:
    """Lines that tell the code's history (the history of a line lives in git, not in a comment)."""
    return [f"{rel(path)}:{i}: {line.strip()[:80]}" for i, line in enumerate(path.read_text().splitlines(), 1)
            if HISTORY_IN_CODE.search(line)]


@pytest.mark.parametrize("folder", ["micn", "flows", "sql", "tests"])
def test_comments_explain_the_code_not_its_history(folder):
    files = {"micn": CODE, "flows": CODE, "sql": SQL, "tests": TESTS}[folder]
    found = [line for p in files if rel(p).startswith(folder + "/") for line in history_lines(p)]
    assert found == []


def test_the_history_check_sees_an_issue_number(tmp_path):
    path = tmp_path / "x.py"
    path.write_text("# added for iss" + "ue 12 after the earlier " + "runs\nx = 1  # plain\n")
    assert len(history_lines(path)) == 1


def test_module_names_follow_the_files():
    assert module_name(REPO / "micn/data/batch.py") == "micn.data.batch"
    assert module_name(REPO / "micn/models/__init__.py") == "micn.models"
