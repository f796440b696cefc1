"""Each DVC stage lists, as `deps`, every micn/ and flows/ file its command imports (read with ast,
transitively): editing code a stage runs must rerun that stage, and nothing else should.

The command `micn <command>` runs flows.cli, which imports only that command's module (the table in
flows/cli.py); the dispatcher and its helpers (flows/cli.py, flows/_errors.py, flows/_prefect*.py)
decide how errors are shown and where Prefect logs, never what a stage writes, so they are not deps.
"""

from __future__ import annotations

import shlex

import pytest
import yaml

from flows.cli import BY_NAME
from tests.helpers import REPO
from tests.import_graph import closure

DISPATCH = {"flows/cli.py", "flows/_errors.py", "flows/_prefect.py", "flows/_prefect_server.py"}


def covered(file: str, deps: list[str]) -> bool:
    return any(file == d or file.startswith(d.rstrip("/") + "/") for d in deps)


def stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def command_module(cmd: str) -> str:
    words = shlex.split(cmd)
    assert words[0] == "micn", f"stage command {cmd!r} should run `micn <command>`"
    command = next(w for w in words[1:] if not w.startswith("-"))
    return BY_NAME[command].module


@pytest.mark.parametrize("stage", sorted(stages()))
def test_stage_deps_cover_every_imported_module(stage):
    spec = stages()[stage]
    deps = [d if isinstance(d, str) else next(iter(d)) for d in spec["deps"]]
    empty_package = lambda f: f.endswith("__init__.py") and not (REPO / f).read_text().strip()  # noqa: E731
    needed = {f for f in closure(command_module(spec["cmd"])) if f not in DISPATCH and not empty_package(f)}
    missing = sorted(f for f in needed if not covered(f, deps))
    assert not missing, f"dvc.yaml stage {stage!r} imports {missing} but does not list them (or a folder above) in deps"


@pytest.mark.parametrize("stage", sorted(stages()))
def test_stages_do_not_depend_on_the_dispatcher(stage):
    deps = [d if isinstance(d, str) else next(iter(d)) for d in stages()[stage]["deps"]]
    assert not DISPATCH & set(deps), f"{stage}: editing a help string in flows/cli.py must not rerun the stage"


def test_stage_deps_name_existing_paths():
    for stage, spec in stages().items():
        for d in spec["deps"]:
            d = d if isinstance(d, str) else next(iter(d))
            if not d.startswith(("data/", "metrics/")):  # outputs of earlier stages
                assert (REPO / d).exists(), f"{stage}: dependency {d} does not exist"


def test_the_closure_follows_imports_transitively():
    files = closure("flows.grid")
    assert "flows/grid.py" in files and "micn/config.py" in files
    assert "micn/train.py" in files  # the grid trains: the trainer is part of its code
