"""The documentation says what the code does: README.md and docs/ checked against the repository.

* Every `micn ...` command line shown in README.md and docs/ (fenced code blocks and inline code)
  is parsed by the real `micn` argument parser (flows/cli.py) and must parse.
* docs/commands.md documents every subcommand and every one of its flags.
* Every relative link points at a file or folder of the repository (present and not git-ignored).
* The README stays a short newcomer's guide: under 250 lines, no reference outside the clone,
  no results numbers that go stale, its sections in the reading order.
* No issue numbers or history words in the user documentation.

Only parsing: no command is run, so these tests need no Prefect server and no data.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import HISTORY_IN_DOCS, OUTSIDE_THE_CLONE, REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
# docs/findings/<date>-<topic>/ are dated research notes, kept as they were written (with the commands
# and placeholders of their day, e.g. `micn generate --kappa K`): they are not checked here.
DATED_FINDINGS = DOCS / "findings"


def user_docs() -> list[Path]:
    """README.md and the docs written for users: docs/*.md and docs/findings/README.md."""
    docs = sorted(DOCS.glob("*.md"))
    index = DATED_FINDINGS / "README.md"
    return [README, *docs, *([index] if index.is_file() else [])]


# --- finding the command lines ---------------------------------------------------------------------

FENCE = re.compile(r"^(```|~~~)")
INLINE = re.compile(r"(`+)(.+?)\1")
# A placeholder a reader replaces (`<run>`, `<dataset>`): a sample value that parses.
PLACEHOLDER = re.compile(r"<([A-Za-z][A-Za-z0-9_ .-]*)>")
SAMPLES = {"run": "models/synthetic/din-micn-phi0.3-len20-seed1", "dataset": "synthetic", "max_len": "20",
           "L": "20", "reviewerID": "A2SUAM1J3GNN3B", "user": "A2SUAM1J3GNN3B", "name": "electronics"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _split_markdown(text: str) -> tuple[list[str], list[str]]:
    """(lines inside fenced code blocks, with backslash continuations joined; prose lines)."""
    code: list[str] = []
    prose: list[str] = []
    in_fence = False
    pending = ""
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            in_fence = not in_fence
            continue
        if not in_fence:
            prose.append(line)
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        code.append(pending + line)
        pending = ""
    return code, prose


def _prose_without_code(prose: list[str]) -> str:
    return INLINE.sub("", "\n".join(prose))


def micn_argvs(snippet: str) -> list[list[str]]:
    """The argument lists of every `micn` invocation in one shell line (after `&&`, `|`, `;` too)."""
    text = PLACEHOLDER.sub(lambda m: SAMPLES.get(m.group(1), "x"), snippet.strip())
    text = re.sub(r"^\$\s+", "", text)  # a shell prompt
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: not a shell line
        return []
    found, current = [], []
    for token in [*tokens, ";"]:
        if token and set(token) <= set("();<>|&"):
            while current and ASSIGNMENT.match(current[0]):
                current.pop(0)
            # `micn grid: error: ...` is what micn prints, not a command line
            if (current and (current[0] == "micn" or current[0].endswith("/micn")) and len(current) > 1
                    and not current[1].endswith(":")):
                found.append(current[1:])
            current = []
        else:
            current.append(token)
    return found


def _shown(path: Path) -> tuple[list[str], list[str]]:
    """(code block lines, inline code spans) of a markdown file."""
    code, prose = _split_markdown(path.read_text(encoding="utf-8"))
    return code, [m.group(2) for line in prose for m in INLINE.finditer(line)]


def command_lines(path: Path) -> list[tuple[str, list[str]]]:
    """(the line as shown, its argv) for every `micn` command line of a markdown file: every one in a
    code block, and every inline one that says more than a command's name (`micn train` in prose
    names the command; `micn train --help` or `micn grid --params params.yaml` is a command line)."""
    code, inline = _shown(path)
    lines = [(line.strip(), argv) for line in code for argv in micn_argvs(line)]
    return lines + [(span.strip(), argv) for span in inline for argv in micn_argvs(span) if not _is_name(argv)]


def command_names(path: Path) -> list[str]:
    """The commands named in prose (`micn train`, `micn --debug`)."""
    _, inline = _shown(path)
    return [argv[0] for span in inline for argv in micn_argvs(span) if _is_name(argv)]


def _is_name(argv: list[str]) -> bool:
    return len(argv) == 1 and not argv[0].startswith("-")


def parse_error(argv: list[str]) -> str | None:
    """argparse's message when `micn <argv>` does not parse with the real parser; None when it does."""
    from flows import cli

    # the parser `micn` itself builds for this command line (flows/cli.py `_dispatch`): the top-level
    # parser with the chosen command's flags; nothing runs, Prefect is not started
    parser, _ = cli._parser(cli._chosen(argv))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(argv)
        except SystemExit as e:  # argparse exits 2 on an error, 0 after --help
            if e.code not in (0, None):
                return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {e.code}"
    return None


def all_command_lines() -> list[tuple[Path, str, list[str]]]:
    return [(path, line, argv) for path in user_docs() for line, argv in command_lines(path)]


def test_the_command_line_finder_sees_what_a_reader_sees():
    assert micn_argvs(".venv/bin/micn serve --repo . --cron \"0 3 * * *\" --timezone UTC   # Ctrl-C stops") == [
        ["serve", "--repo", ".", "--cron", "0 3 * * *", "--timezone", "UTC"]]
    assert micn_argvs("MICN_PREFECT_SERVER=temporary micn grid --params params.yaml && dvc push") == [
        ["grid", "--params", "params.yaml"]]
    assert micn_argvs("micn interests --run <run> --user <reviewerID>") == [
        ["interests", "--run", SAMPLES["run"], "--user", SAMPLES["reviewerID"]]]
    assert micn_argvs("dvc repro") == [] and micn_argvs("micn/train.py") == []
    assert micn_argvs("micn <command>: error: internal error: ...") == [] and micn_argvs("micn: interrupted") == []
    code, _ = _split_markdown("```bash\nmicn samples --dataset d \\\n    --db w.duckdb --out s\n```\n")
    assert [line.split() for line in code] == [["micn", "samples", "--dataset", "d", "--db", "w.duckdb", "--out", "s"]]


def test_the_parser_check_rejects_what_micn_rejects():
    assert parse_error(["grid", "--params", "params.yaml"]) is None
    assert parse_error(["train", "--help"]) is None
    assert "--micn" in (parse_error(["train", "--dataset", "d", "--samples", "s", "--backbone", "din", "--seed", "1",
                                     "--out", "o", "--micn"]) or "")
    assert "--out" in (parse_error(["generate", "--profile", "tiny"]) or "")  # a required flag left out
    assert parse_error(["train", "--backbone", "deepfm"]) is not None  # a value outside the choices
    assert parse_error(["evaluate"]) is not None  # no such command


def test_every_micn_command_line_in_the_docs_parses():
    lines = all_command_lines()
    # the docs show every command; a finder that silently found nothing would pass vacuously
    assert len(lines) >= 30, f"only {len(lines)} micn command lines found in README.md and docs/"
    assert {argv[argv[0] == "--debug"] for _, _, argv in lines} >= {c.name for c in _commands()}
    bad = [f"{path.relative_to(REPO)}: `{line}`: {error}" for path, line, argv in lines
           if (error := parse_error(argv)) is not None]
    assert not bad, "command lines that `micn` rejects:\n" + "\n".join(bad)


def test_every_command_named_in_the_docs_exists():
    names = {c.name for c in _commands()}
    unknown = [f"{path.relative_to(REPO)}: micn {name}" for path in user_docs() for name in command_names(path)
               if name not in names]
    assert not unknown, "the docs name commands `micn` does not have:\n" + "\n".join(unknown)


# --- the command reference covers the parser -----------------------------------------------------

def _commands():
    from flows import cli

    return cli.COMMANDS


def _flags(command) -> list[str]:
    """Every option string of a command, from its stage module's `add_arguments` (flows/cli.py's protocol)."""
    parser = argparse.ArgumentParser(prog=f"micn {command.name}")
    importlib.import_module(command.module).add_arguments(parser, command.name)
    return [s for action in parser._actions for s in action.option_strings if s not in ("-h", "--help")]


def _headings(lines: list[str]) -> list[tuple[int, int, str]]:
    """(line index, level, text) of each markdown heading; lines inside code blocks are not headings."""
    headings, in_fence = [], False
    for i, line in enumerate(lines):
        if FENCE.match(line.strip()):
            in_fence = not in_fence
        elif not in_fence and (m := re.match(r"^(#+)\s+(.*)", line)):
            headings.append((i, len(m.group(1)), m.group(2).strip()))
    return headings


def _sections(path: Path) -> dict[str, str]:
    """Markdown sections by heading text, each with its subsections (up to the next heading of its
    level or above)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    headings = _headings(lines)
    sections = {}
    for n, (start, level, text) in enumerate(headings):
        end = next((i for i, lv, _ in headings[n + 1:] if lv <= level), len(lines))
        sections[text] = "\n".join(lines[start:end])
    return sections


@pytest.mark.parametrize("name", [c.name for c in _commands()])
def test_the_command_reference_documents_every_flag(name):
    command = next(c for c in _commands() if c.name == name)
    sections = _sections(DOCS / "commands.md")
    heading = next((h for h in sections if f"`micn {name}`" in h), None)
    assert heading is not None, f"docs/commands.md has no section headed `micn {name}`"
    body = sections[heading]
    missing = [flag for flag in _flags(command) if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", body)]
    assert not missing, f"docs/commands.md, section {heading!r}, does not mention {missing}"


def test_the_command_reference_covers_every_command():
    text = (DOCS / "commands.md").read_text(encoding="utf-8")
    assert "--debug" in text
    assert not [c.name for c in _commands() if f"`micn {c.name}`" not in text]


# --- links ------------------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)


def relative_links(path: Path) -> list[str]:
    _, prose = _split_markdown(path.read_text(encoding="utf-8"))
    text = _prose_without_code(prose)
    targets = [*LINK.findall(text), *REFERENCE.findall(text)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def _ignored(paths: list[Path]) -> set[Path]:
    """The paths git ignores (generated files a clone does not have); empty without git."""
    if shutil.which("git") is None or not paths:
        return set()
    out = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=REPO, capture_output=True, text=True,
                         input="\n".join(str(p.relative_to(REPO)) for p in paths))
    return {REPO / line for line in out.stdout.splitlines() if line}


def test_the_link_finder_sees_links_and_only_links():
    assert LINK.findall("see [the report](reports/report.md#table-2) and ![plot](figures/a.png \"t\")") == [
        "reports/report.md#table-2", "figures/a.png"]
    assert _prose_without_code(["`[x](nowhere.md)` is code"]) == " is code"


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a markdown file's headings: lower case, punctuation dropped, spaces
    to hyphens, a repeated heading suffixed -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    for _, _, heading in _headings(path.read_text(encoding="utf-8").splitlines()):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return out


def test_anchors_are_the_ones_github_makes(tmp_path):
    doc = tmp_path / "a.md"
    doc.write_text("# Title\n## `micn ingest`\n## Where MICN can help: the κ sweep (mechanism)\n## Title\n"
                   "```\n# not a heading\n```\n")
    assert anchors(doc) == {"title", "micn-ingest", "where-micn-can-help-the-κ-sweep-mechanism", "title-1"}


def test_every_relative_link_points_at_a_file_of_the_repository():
    checked, broken = [], []
    for doc in user_docs():
        for target in relative_links(doc):
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve() if file else doc
            checked.append((doc, target, path))
            if not path.is_relative_to(REPO):
                broken.append(f"{doc.relative_to(REPO)}: {target} leaves the repository")
            elif not path.exists():
                broken.append(f"{doc.relative_to(REPO)}: {target} does not exist")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{doc.relative_to(REPO)}: {target}: {path.name} has no heading #{anchor}")
    ignored = _ignored([p for _, _, p in checked if p.is_relative_to(REPO) and p.exists()])
    broken += [f"{d.relative_to(REPO)}: {t} is git-ignored (a clone does not have it)" for d, t, p in checked
               if p in ignored]
    assert len(checked) >= 20, "the README and docs link to the docs, the reports and the findings"
    assert not broken, "\n".join(broken)


# --- what the README is ------------------------------------------------------------------------------

def test_readme_is_a_short_guide_that_stays_inside_the_clone():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 250
    for outside in OUTSIDE_THE_CLONE:
        assert outside not in text, f"README.md refers to {outside}, which a clone does not have"


def test_readme_carries_no_results_numbers():
    """Results live in reports/report.md, metrics/metrics.duckdb and `dvc metrics show`; a copy goes stale."""
    numbers = [line for line in README.read_text(encoding="utf-8").splitlines()
               if re.search(r"(?<![\w.=])[+−-]?0\.\d{3,}", line)]
    assert not numbers, "README.md lines with result-like numbers:\n" + "\n".join(numbers)


def test_readme_sections_come_in_reading_order():
    headings = [line.lstrip("#").strip().lower() for line in README.read_text(encoding="utf-8").splitlines()
                if line.startswith("## ")]
    order = ["quickstart", "pipeline", "results", "amazon", "paper", "gpu", "documentation"]
    positions = [next((i for i, h in enumerate(headings) if word in h), None) for word in order]
    assert None not in positions, f"README.md sections {headings} miss one of {order}"
    assert positions == sorted(positions), f"README.md sections {headings} are not in the order {order}"


HISTORY = HISTORY_IN_DOCS


def test_the_docs_describe_what_is_without_issue_numbers_or_history():
    found = [f"{doc.relative_to(REPO)}:{n}: {line.strip()}" for doc in user_docs()
             for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1) if HISTORY.search(line)]
    makefile = REPO / "Makefile"
    found += [f"Makefile:{n}: {line.strip()}" for n, line in enumerate(makefile.read_text().splitlines(), 1)
              if line.lstrip().startswith("#") and re.search(r"\bissues?\s+#?\d+", line, re.IGNORECASE)]
    assert not found, "\n".join(found)
