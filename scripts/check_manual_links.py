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
Exits 1 listing every broken link.
"""
import pathlib
import re
import sys

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


def main():
    problems = []
    tests = gtest_names()
    cases = breakit_cases(tests, problems)
    pages = sorted(MANUAL.glob("*.md"))
    rules = 0
    for page in pages:
        for cells in table_rows(page.read_text()):
            if not re.match(r"^[A-H]\.[0-9]+$", cells[0]):
                continue
            rules += 1
            check_enforced(page.name, cells[0], cells[2], problems)
            check_proven(page.name, cells[0], cells[3], cases, tests, problems)
    if rules == 0:
        problems.append("docs/manual has no rule rows")
    for problem in problems:
        print("manual link:", problem)
    print(f"check_manual_links: {len(pages)} pages, {rules} rules, {len(cases)} break-it cases, "
          f"{len(problems)} broken")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
