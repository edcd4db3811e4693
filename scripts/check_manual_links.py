#!/usr/bin/env python3
"""Checks that every rule of the operator manual still points at real code and tests.

Each manual page (docs/manual/*.md) holds rule tables whose rows look like
  | A.3 | Preflight before the header | `src/wire/preflight.cc` `preflight_envelope` | A1 A3 `WirePreflight.RejectsNestedTensor` |
Columns: rule id, rule, enforced by, proven by.
- enforced by: backticked repository paths (must exist); a backticked identifier
  after a path must occur in that file.
- proven by: break-it case ids (must be rows of tests/breakit/CASES.md, whose
  test must exist) and backticked gtest names Suite.Name (must be a TEST/TEST_F/
  TEST_P in tests/).
- a row whose first cell is a rule id but that lacks a column is an error,
  not skipped.
- with --cli PATH: every backticked `lockstep <command> ...` in the manual
  names a real subcommand, and each --option it uses is one that command's
  --help lists (options after a bare `--` belong to the user's program).
--self-test mutates copies of the manual (a missing test, a missing path, a
malformed row, an unknown option) and fails unless each mutation is caught.
Exits 1 listing every broken link.
"""
import argparse
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
MANUAL = ROOT / "docs" / "manual"
CASES = ROOT / "tests" / "breakit" / "CASES.md"
CASE_ID = re.compile(r"^[A-H][0-9]$")
TEST_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_/]*$")


def gtest_names():
    names = set()
    pattern = re.compile(r"\bTEST(?:_F|_P)?\(\s*(\w+)\s*,\s*(\w+)\s*\)")
    for path in (ROOT / "tests").rglob("*.cc"):
        for suite, name in pattern.findall(path.read_text(errors="replace")):
            names.add(f"{suite}.{name}")
    return names


def table_rows(text):
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and len(cells) >= 4 and not set(cells[0]) <= set("-: "):
            yield cells


def ctest_names():
    names = set()
    for path in (ROOT / "tests").rglob("CMakeLists.txt"):
        text = path.read_text(errors="replace")
        names.update(re.findall(r"lockstep_test\(\s*(\w+)", text))
        names.update(re.findall(r"add_test\(NAME\s+(\w+)", text))
        for ids in re.findall(r"set\(_failure_cases([^)]*)\)", text):
            names.update(f"breakit_{i}" for i in ids.split())
        for ids in re.findall(r"set\(_success_cases([^)]*)\)", text):
            names.update(f"breakit_{i}" for i in ids.split() if CASE_ID.match(i))
    return names


def breakit_cases(tests, problems):
    cases = {}
    if not CASES.exists():
        problems.append(f"{CASES.relative_to(ROOT)} is missing")
        return cases
    for cells in table_rows(CASES.read_text()):
        if not CASE_ID.match(cells[0]):
            continue
        test = cells[2].strip("`")
        if test not in tests and test not in ctest_names():
            problems.append(f"CASES.md: case {cells[0]} names test {test}, which does not exist")
        cases[cells[0]] = test
    return cases


def check_enforced(page, rule, cell, problems):
    current = None
    tokens = re.findall(r"`([^`]+)`", cell)
    if not tokens:
        problems.append(f"{page}: rule {rule} names no enforcing code")
    for token in tokens:
        if "/" in token or token.endswith((".cc", ".h", ".py", ".sh", ".cu")):
            current = ROOT / token
            if not current.exists():
                problems.append(f"{page}: rule {rule}: {token} does not exist")
                current = None
        elif current is None:
            problems.append(f"{page}: rule {rule}: identifier {token} follows no valid path")
        elif token not in current.read_text(errors="replace"):
            problems.append(f"{page}: rule {rule}: {token} not found in {current.relative_to(ROOT)}")


def check_proven(page, rule, cell, cases, tests, problems):
    words = re.findall(r"`([^`]+)`|\b([A-H][0-9])\b", cell)
    if not words:
        problems.append(f"{page}: rule {rule} names no test")
    for test, case in words:
        if case and case not in cases:
            problems.append(f"{page}: rule {rule}: case {case} is not in tests/breakit/CASES.md")
        if test and (not TEST_NAME.match(test) or test not in tests):
            problems.append(f"{page}: rule {rule}: test {test} does not exist")


class Cli:
    """The real command line's subcommands and their long options, from --help."""

    def __init__(self, path):
        self.path = path
        self._options = {}
        top = self._help([])
        # CLI11 lists subcommands under "SUBCOMMANDS:" as "  name   description".
        parts = re.split(r"^subcommands:\s*$", top, maxsplit=1, flags=re.M | re.I)
        section = parts[1] if len(parts) == 2 else ""
        self.commands = set(re.findall(r"^\s{2}([a-z][a-z0-9-]*)\b", section, re.M))

    def _help(self, args):
        out = subprocess.run([str(self.path), *args, "--help"], capture_output=True, text=True, timeout=30)
        return out.stdout + out.stderr

    def options(self, command):
        if command not in self._options:
            self._options[command] = set(re.findall(r"(--[a-z0-9][a-z0-9-]*)", self._help([command])))
        return self._options[command]


COMMAND = re.compile(r"(?:^|[\s/])lockstep\s+([a-z][a-z0-9-]*)(.*)$")


def command_lines(text):
    """Backticked spans on one line, and every line of fenced code blocks."""
    fenced = re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)
    outside = re.sub(r"^```[a-z]*\n.*?^```", "", text, flags=re.M | re.S)
    return re.findall(r"`([^`\n]+)`", outside) + [line for block in fenced for line in block.splitlines()]


def check_commands(page, text, cli, problems):
    for span in command_lines(text):
        found = COMMAND.search(span)
        if not found:
            continue
        command, rest = found.group(1), found.group(2).split()
        if command not in cli.commands:
            problems.append(f"{page}: `{span}`: lockstep has no command '{command}'")
            continue
        for word in rest:
            if word == "--":
                break  # the user's program and its own options follow
            if word.startswith("--") and word.split("=", 1)[0] not in cli.options(command):
                problems.append(f"{page}: `{span}`: lockstep {command} has no option {word.split('=', 1)[0]}")


def check(manual, cli):
    """Every problem of the manual in `manual` (a directory), and the counts."""
    problems = []
    tests = gtest_names()
    cases = breakit_cases(tests, problems)
    pages = sorted(manual.glob("*.md"))
    rules = 0
    for page in pages:
        text = page.read_text()
        for line in text.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.lstrip().startswith("|") and re.match(r"^[A-H]\.[0-9]+$", cells[0]) and len(cells) < 4:
                problems.append(f"{page.name}: rule {cells[0]}: row has {len(cells)} of 4 columns")
        for cells in table_rows(text):
            if not re.match(r"^[A-H]\.[0-9]+$", cells[0]):
                continue
            rules += 1
            check_enforced(page.name, cells[0], cells[2], problems)
            check_proven(page.name, cells[0], cells[3], cases, tests, problems)
        if cli is not None:
            check_commands(page.name, text, cli, problems)
    if rules == 0:
        problems.append("docs/manual has no rule rows")
    return problems, len(pages), rules, len(cases)


# Each mutation: (page, text to find, replacement, what the checker must report).
MUTATIONS = [
    ("A-wire-protocol.md", "`Decode.TruncatedAtEveryLength`", "`Decode.NoSuchTest`", "does not exist"),
    ("A-wire-protocol.md", "`src/wire/frame.cc`", "`src/wire/no_such_file.cc`", "does not exist"),
    ("C-failure-shutdown.md", "| C.2 |", "| C.2 | a rule with no columns |\n| C.99 |", "of 4 columns"),
    ("E-backpressure-overlap.md", "--chunks 8 --decode-ms 30`", "--chunks 8 --decode-ms 30 --no-such-option 1`",
     "has no option"),
    ("runbook.md", "lockstep doctor <job_dir>", "lockstep doktor <job_dir>", "has no command"),
]


def self_test(cli):
    failures = []
    for page, find, replace, expect in MUTATIONS:
        with tempfile.TemporaryDirectory() as tmp:
            copy = pathlib.Path(tmp) / "manual"
            shutil.copytree(MANUAL, copy)
            text = (copy / page).read_text()
            if find not in text:
                failures.append(f"mutation of {page}: '{find}' is no longer in the page")
                continue
            (copy / page).write_text(text.replace(find, replace, 1))
            problems = check(copy, cli)[0]
            if not any(expect in p for p in problems):
                failures.append(f"mutation of {page} ('{find}' -> '{replace}') was not caught")
    for failure in failures:
        print("check_manual_links self-test:", failure)
    print(f"check_manual_links self-test: {len(MUTATIONS)} mutations, {len(failures)} missed")
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", type=pathlib.Path, help="the lockstep binary whose commands the manual must match")
    parser.add_argument("--self-test", action="store_true", help="check that mutated manuals fail")
    args = parser.parse_args()
    cli = Cli(args.cli) if args.cli else None
    if args.self_test:
        if cli is None:
            parser.error("--self-test needs --cli")
        return self_test(cli)
    problems, pages, rules, cases = check(MANUAL, cli)
    for problem in problems:
        print("manual link:", problem)
    print(f"check_manual_links: {pages} pages, {rules} rules, {cases} break-it cases, "
          f"{'commands checked against ' + str(args.cli) + ', ' if cli else ''}{len(problems)} broken")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
