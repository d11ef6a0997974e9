"""Every command the README shows works as written from a clone.

The README's code blocks and inline code are parsed (nothing is run):

* ``pip install`` installs this project from the clone (``.``, ``".[extra,...]"``) with
  extras that ``pyproject.toml`` defines, never a package named ``jaxlatent`` (none is
  published: pip would find nothing, or someone else's code);
* every ``jaxlatent ...`` command line of a code block parses with the CLI's own parser
  (subcommand, positionals, flags; ``train --model`` names a registered model), and every
  subcommand and ``--flag`` named in the text exists;
* every repository path (``benchmarks/X.py``, ``tests/...``, ``jaxlatent/data/...``) exists,
  ``python -m`` names a module of the repository that exists, and Python code (code blocks,
  ``python -c``) compiles and imports only names that exist.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import io
import pathlib
import re
import shlex
import tomllib

import pytest

from jaxlatent import cli

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
EXTRAS = set(
    tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
)
REPO_PACKAGES = ("jaxlatent", "converters", "tests", "benchmarks")
REPO_PATH = re.compile(r"(?:jaxlatent|converters|tests|benchmarks|\.ci)/[\w./-]*")
#: Commands the README may show that are not this project's (nothing of ours to check).
FOREIGN = {"curl", "git", "cd", "export"}

#: `pip install TARGET` in a message: the clone (``.``, ``.[extras]``) or a package name.
HINT = re.compile(r"pip install ['\"]?(\.(?:\[[\w,-]+\])?|[A-Za-z][\w-]*(?:\[[\w,-]+\])?)")

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def _code_blocks(lang: str) -> list[str]:
    return [body for kind, body in _FENCE.findall(README) if kind == lang]


def _inline_code() -> list[str]:
    prose = _FENCE.sub("", README)
    return [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]


def _commands(script: str):
    """The simple commands of a shell script: continuations joined, comments dropped, split
    at ``&&``, ``||``, ``;`` and ``|``, leading ``VAR=value`` assignments and redirections
    removed."""
    for line in script.replace("\\\n", " ").splitlines():
        command: list[str] = []
        words = iter(shlex.split(line, comments=True))
        for word in words:
            if word in ("&&", "||", ";", "|"):
                yield command
                command = []
            elif word in ("<", ">", ">>", "2>"):
                next(words, None)
            elif command or not re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", word):
                command.append(word)
        if command:
            yield command


def _parse(argv: list[str]) -> tuple[int, str]:
    """(exit status, output) of the CLI parser on `argv`: 0 and "" when it parses."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            cli.build_parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0), out.getvalue()
    return 0, ""


def _check_jaxlatent(args: list[str], *, complete: bool) -> list[str]:
    """Problems with ``jaxlatent ARGS``: a whole command line (`complete`) must parse; a
    mention in the text must name a subcommand whose ``--help`` lists each of its flags."""
    if not args or args[0].isupper():  # `jaxlatent COMMAND --help`: a placeholder
        return []
    if complete:
        code, out = _parse(args)
        if code != 0:
            return [f"`jaxlatent {shlex.join(args)}` does not parse: {out.strip()}"]
        if args[0] == "train":
            from jaxlatent.apps.registry import MODELS

            model = args[args.index("--model") + 1]
            if model not in MODELS:
                return [f"`jaxlatent {shlex.join(args)}`: no model {model!r}"]
        return []
    code, help_text = _parse([args[0], "--help"])
    if code != 0:
        return [f"`jaxlatent {args[0]}` is not a subcommand: {help_text.strip()}"]
    return [
        f"`jaxlatent {shlex.join(args)}`: {flag} is not an option of `jaxlatent {args[0]}`"
        for flag in args[1:]
        if flag.startswith("--") and not re.search(rf"{re.escape(flag)}\b", help_text)
    ]


def _check_pip(args: list[str]) -> list[str]:
    if args[:1] != ["install"]:
        return [f"`pip {shlex.join(args)}`: only `pip install` is checked"]
    problems = []
    for arg in args[1:]:
        local = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", arg)
        if local:
            unknown = set((local.group(1) or "").split(",")) - EXTRAS - {""}
            if unknown:
                problems.append(f"`pip install {arg}`: no extra {sorted(unknown)} in pyproject")
        elif re.match(r"jaxlatent\b", arg):
            problems.append(
                f"`pip install {arg}`: jaxlatent is not published; install the clone "
                '(`pip install .`, `pip install ".[torch]"`)'
            )
    return problems


def _missing_names(code: str, where: str) -> list[str]:
    """Python `code` must compile; the repository names it imports, and the attributes it
    reads from imported repository modules, must exist."""
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        return [f"{where}: {e}"]
    modules: dict[str, object] = {}
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module.split(".")[0] in REPO_PACKAGES:
            module = importlib.import_module(node.module)
            for alias in node.names:
                name = alias.name
                try:
                    value = getattr(module, name)
                except AttributeError:
                    if importlib.util.find_spec(f"{node.module}.{name}") is None:
                        problems.append(f"{where}: no {node.module}.{name}")
                        continue
                    value = importlib.import_module(f"{node.module}.{name}")
                modules[alias.asname or name] = value
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and not hasattr(modules[node.value.id], node.attr)
        ):
            problems.append(f"{where}: {node.value.id}.{node.attr} does not exist")
    return problems


def _check_python(args: list[str], where: str) -> list[str]:
    if args[:1] == ["-c"]:
        return _missing_names(args[1], where)
    if args[:1] == ["-m"]:
        module = args[1]
        if module == "pip":
            return _check_pip(args[2:])
        if module.split(".")[0] in REPO_PACKAGES and importlib.util.find_spec(module) is None:
            return [f"{where}: no module {module}"]
        return []
    if args and args[0].endswith(".py") and not (ROOT / args[0]).is_file():
        return [f"{where}: no file {args[0]}"]
    return []


def _check_command(words: list[str], *, complete: bool) -> list[str]:
    where = f"`{shlex.join(words)}`"
    problems = [
        f"{where}: no {word} in the repository"
        for word in words
        if REPO_PATH.fullmatch(word) and not (ROOT / word).exists()
    ]
    program = pathlib.PurePosixPath(words[0]).name
    if program == "jaxlatent":
        problems += _check_jaxlatent(words[1:], complete=complete)
    elif program == "pip":
        problems += _check_pip(words[1:])
    elif re.fullmatch(r"python(3(\.\d+)?)?", program):
        problems += _check_python(words[1:], where)
    elif program == "bash":
        problems += [] if (ROOT / words[1]).is_file() else [f"{where}: no {words[1]}"]
    elif complete and program not in FOREIGN | {"pytest"}:
        problems.append(f"{where}: unknown command {program!r} (check it here, or FOREIGN)")
    return problems


def test_the_readme_shows_commands():
    """The parsing finds what it checks (a test that cannot fail is a defect)."""
    commands = [c for block in _code_blocks("bash") for c in _commands(block)]
    programs = {pathlib.PurePosixPath(c[0]).name for c in commands}
    assert {"jaxlatent", "pip", "bash"} <= programs, programs
    assert len(commands) > 15 and _code_blocks("python")


def test_code_block_commands_work_from_a_clone():
    problems = [
        problem
        for block in _code_blocks("bash")
        for command in _commands(block)
        for problem in _check_command(command, complete=True)
    ]
    assert not problems, "\n".join(problems)


def test_commands_and_paths_in_the_text_exist():
    problems = []
    for span in _inline_code():
        if REPO_PATH.fullmatch(span) and not (ROOT / span).exists():
            problems.append(f"`{span}`: no such path in the repository")
        if re.match(r"(\S*/)?(jaxlatent|pip|python3?|bash) ", span):
            if span.startswith("jaxlatent ") and " | " in span:  # `jaxlatent demo | train`
                for sub in span.removeprefix("jaxlatent ").split(" | "):
                    problems += _check_jaxlatent(sub.split(), complete=False)
                continue
            problems += _check_command(shlex.split(span), complete=False)
    assert not problems, "\n".join(problems)


def test_python_code_blocks_import_existing_names():
    problems = []
    for i, block in enumerate(_code_blocks("python")):
        problems += _missing_names(block, f"python block {i + 1}")
    assert not problems, "\n".join(problems)


def test_install_hints_in_the_code_install_from_the_clone():
    """Error messages that tell the user what to `pip install` follow the same rules."""
    problems, hints = [], 0
    for folder in ("jaxlatent", "converters", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for match in re.finditer(HINT, path.read_text()):
                hints += 1
                target = match.group(1)
                problems += [
                    f"{path.relative_to(ROOT)}: {p}" for p in _check_pip(["install", target])
                ]
    assert hints and not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("snippet", "problem"),
    [
        ("pip install jaxlatent", "not published"),
        ('pip install "jaxlatent[torch]"', "not published"),
        ('pip install ".[torch,nosuchextra]"', "nosuchextra"),
        (".venv/bin/jaxlatent encode --model m", "does not parse"),
        ("jaxlatent nosuchcommand", "does not parse"),
        ("jaxlatent train --model nosuchmodel --steps 1 --batch-size 1 --out o", "no model"),
        ("python benchmarks/nosuch.py", "no file"),
        ("python -m jaxlatent.nosuch", "no module"),
        ("python -c 'from jaxlatent import nosuch'", "no jaxlatent.nosuch"),
        ("python -c 'from jaxlatent import cli; cli.nosuch()'", "cli.nosuch does not exist"),
        ("bash .ci/nosuch", "no .ci/nosuch"),
        ("make all", "unknown command"),
    ],
)
def test_the_checks_catch_broken_commands(snippet, problem):
    (command,) = list(_commands(snippet))
    problems = _check_command(command, complete=True)
    assert any(problem in p for p in problems), problems


def test_the_text_checks_catch_unknown_flags():
    assert _check_jaxlatent(["train", "--model", "x"], complete=False) == []
    (problem,) = _check_jaxlatent(["train", "--nosuch"], complete=False)
    assert "--nosuch is not an option" in problem
    (problem,) = _check_jaxlatent(["nosuch"], complete=False)
    assert "not a subcommand" in problem
