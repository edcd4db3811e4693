#!/usr/bin/env python3
"""Checks that every rule of the operator manual still points at real code and tests.

Each manual page (docs/manual/*.md) holds rule tables whose rows look like
  | A.3 | the rule in a PyTorch job | the rule in lockstep | `src/wire/preflight.cc` `preflight_envelope` | A1 A3 `WirePreflight.RejectsNestedTensor` |
Columns: rule id, the rule as a PyTorch user applies it, the rule as lockstep
enforces it, enforced by, proven by.
- enforced by: backticked repository paths (must exist); a backticked identifier
  after a path must occur in that file.
- proven by: break-it case ids (must be rows of tests/breakit/CASES.md, whose
  test must exist) and backticked gtest names Suite.Name (must be a TEST/TEST_F/
  TEST_P in tests/).
- a row whose first cell is a rule id but that lacks a column is an error,
  not skipped; every category holds 5-12 rules over all its pages (a
  checklist a reader can paste into their own notes).
- with --cli PATH: every backticked `lockstep <command> ...` in the manual
  names a real subcommand, and each --option it uses is one that command's
  --help lists (options after a bare `--` belong to the user's program).
- an identifier (a C++/Python name) after a path must be *defined* there — a
  declaration or definition, not a use or a substring; a name the repository
  does not define (NCCL's, POSIX's) must occur there as a whole word; text
  with spaces or inside a string literal there is message text, found as written.
- the runbook's verdict table lists exactly the verdicts of
  include/lockstep/doctor.h with their exit statuses, each with a section.
- case ids are A1..H9, PT-<id> (the case in a PyTorch program) and R-<id> (a
  recovery case under --on-fault restart); CASES.md
  names a ctest entry, a gtest or a tests/python module.Class.test_method.
--self-test mutates copies of the manual (a missing test, a missing path, a
malformed row, a category of 13 rules, an unknown option, an identifier only
used or a substring, a verdict row missing or wrong, a verdict without its
section) and fails unless
each mutation is caught.
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
RULE_COLUMNS = 5  # rule, in your PyTorch job, in lockstep, enforced by, proven by
RULES_PER_CATEGORY = (5, 12)  # a category's checklist, over all its pages (issue 17)
# SPEC §7's break-it cases are A1..H9; PT-<id> is the same case in a PyTorch
# program (tests/python/test_torch_breakit.py), proven through the Python package.
CASE_ID = re.compile(r"^(?:(?:PT-|R-)?[A-H][0-9]|R-[a-z][a-z-]*[a-z])$")
PYTHON_TEST = re.compile(r"^(test_\w+)\.(\w+)\.(test_\w+)$")
TEST_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_/]*$")


def gtest_names():
    names = set()
    pattern = re.compile(r"\bTEST(?:_F|_P)?\(\s*(\w+)\s*,\s*(\w+)\s*\)")
    for path in (ROOT / "tests").rglob("*.cc"):
        for suite, name in pattern.findall(path.read_text(errors="replace")):
            names.add(f"{suite}.{name}")
    return names


def split_row(line):
    """A markdown table row's cells; `\\|` inside a cell is not a separator."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def table_rows(text):
    for line in text.splitlines():
        cells = split_row(line)
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
        for pairs in re.findall(r"set\(_recovery_cases([^)]*)\)", text):
            words = pairs.split()
            names.update(f"recovery_R-{i}" for i in words[0::2])
    return names


def python_test_exists(test):
    """module.Class.test_method of tests/python/, defined as written."""
    found = PYTHON_TEST.match(test)
    if not found:
        return False
    module = ROOT / "tests" / "python" / f"{found.group(1)}.py"
    if not module.exists():
        return False
    text = module.read_text(errors="replace")
    return (re.search(rf"^class {found.group(2)}\b", text, re.M) is not None and
            re.search(rf"^\s+def {found.group(3)}\(", text, re.M) is not None)


def breakit_cases(tests, problems):
    cases = {}
    if not CASES.exists():
        problems.append(f"{CASES.relative_to(ROOT)} is missing")
        return cases
    for cells in table_rows(CASES.read_text()):
        if not CASE_ID.match(cells[0]):
            continue
        test = cells[2].strip("`")
        if not (test in tests or test in ctest_names() or python_test_exists(test)):
            problems.append(f"CASES.md: case {cells[0]} names test {test}, which does not exist")
        cases[cells[0]] = test
    return cases


IDENTIFIER = re.compile(r"^~?[A-Za-z_][A-Za-z0-9_]*(?:::~?[A-Za-z_][A-Za-z0-9_]*)*$")
# A word before a name that makes it a use, not a declaration.
NOT_A_TYPE = {"return", "throw", "else", "case", "new", "delete", "sizeof", "co_return", "co_await", "goto",
              "and", "or", "not", "in", "if", "while", "for", "switch", "assert", "import", "from"}


def defines(text, name, path):
    """Whether `text` (the file at `path`) defines or declares `name`, not merely uses it.

    C++/CUDA: `Type name(`, `Type name =`, `Type name{`, `Type name;`, `Type name[`, `Class::name(`
    (any qualifier), a class/struct/enum/union/namespace/using/concept name, a #define, an
    enumerator `kName = ...,` or `kName,` inside an enum, a `case` label value is a use. Python:
    `def name`, `class name`, `name = ...` at any indent. CMake/shell/other: `set(name`, `name()`,
    `function(name`, or the whole word (these files have no other form of definition)."""
    escaped = re.escape(name)
    tail = name.split("::")[-1]
    if path.suffix == ".py":
        pattern = rf"^\s*(?:def|class)\s+{escaped}\b|^\s*(?:self\.)?{escaped}\s*(?::[^=]+)?=[^=]"
        return re.search(pattern, text, re.M) is not None
    if path.suffix not in (".cc", ".h", ".cu", ".hpp"):
        return re.search(rf"(?<![A-Za-z0-9_]){escaped}(?![A-Za-z0-9_])", text) is not None
    text = re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.S)  # a comment defines nothing
    if re.search(rf"\b(?:class|struct|enum(?:\s+class)?|union|namespace|using|concept)\s+{re.escape(tail)}\b", text):
        return True
    if re.search(rf"#\s*define\s+{escaped}\b", text):
        return True
    if re.search(rf"\b{re.escape(tail)}::~?{re.escape(tail)}\s*\(", text):  # a class's constructor
        return True
    qualified = escaped if "::" in name else rf"(?:\w+::)*{escaped}"
    for found in re.finditer(rf"(?<![A-Za-z0-9_:.>-]){qualified}\s*(\(|=(?!=)|\{{|;|\[|,|\))", text):
        before = text[:found.start()].rstrip()
        word = re.search(r"([A-Za-z_][A-Za-z0-9_]*|[>&*\]])$", before)
        enumerator = found.group(1) in ("=", ",") and re.search(r"enum(?:\s+class)?\s+\w+[^{};]*\{[^}]*$", before, re.S)
        if enumerator:
            return True
        if word and word.group(1) not in NOT_A_TYPE and found.group(1) not in (",", ")"):
            return True
    return False


SOURCE_FILES = None


def repository_sources():
    global SOURCE_FILES
    if SOURCE_FILES is None:
        SOURCE_FILES = [(path, path.read_text(errors="replace"))
                        for top in ("src", "include", "python", "tools", "scripts")
                        for path in sorted((ROOT / top).rglob("*"))
                        if path.suffix in (".cc", ".h", ".cu", ".py", ".sh") and path.is_file()]
    return SOURCE_FILES


def check_identifier(token, path):
    """None when `token` is defined in `path`; else what is wrong. An identifier
    the repository does not define (NCCL's, POSIX's) must be used in `path` as a
    whole word; one inside a string literal there is the message or name text
    to search for (a commit point, a flight-recorder op)."""
    text = path.read_text(errors="replace")
    if defines(text, token, path):
        return None
    word = rf"(?<![A-Za-z0-9_]){re.escape(token)}(?![A-Za-z0-9_])"
    if re.search(rf'"[^"\n]*{word}[^"\n]*"', text):
        return None
    defined_in = [other for other, other_text in repository_sources() if defines(other_text, token, other)]
    if not defined_in:
        if re.search(word, text):
            return None
        return f"{token} is not in {path.relative_to(ROOT)}"
    where = ", ".join(str(other.relative_to(ROOT)) for other in defined_in[:3])
    return f"{token} is not defined in {path.relative_to(ROOT)} (defined in {where})"


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
        elif IDENTIFIER.match(token):
            problem = check_identifier(token, current)
            if problem:
                problems.append(f"{page}: rule {rule}: {problem}")
        elif token not in current.read_text(errors="replace"):  # message text: found as written
            problems.append(f"{page}: rule {rule}: {token} not found in {current.relative_to(ROOT)}")


def check_proven(page, rule, cell, cases, tests, problems):
    words = re.findall(r"`([^`]+)`|(?<![\w-])((?:PT-|R-)?[A-H][0-9]|R-[a-z][a-z-]*[a-z])\b", cell)
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


def code_verdicts(problems):
    """{name: exit status} of every verdict the doctor can give, read from the code."""
    header = (ROOT / "include" / "lockstep" / "doctor.h").read_text()
    enum = re.search(r"enum class Verdict[^{]*\{(.*?)\};", header, re.S)
    names = dict(re.findall(r'case Verdict::k(\w+):\s*return "(\w+)";',
                            (ROOT / "src" / "doctor" / "doctor.cc").read_text()))
    verdicts = {}
    for enumerator, status in re.findall(r"\bk(\w+)\s*=\s*(\d+)", enum.group(1) if enum else ""):
        if enumerator not in names:
            problems.append(f"doctor.cc: verdict_name has no name for Verdict::k{enumerator}")
            continue
        verdicts[names[enumerator]] = int(status)
    if not verdicts:
        problems.append("include/lockstep/doctor.h: no Verdict enumerators found")
    return verdicts


def check_verdicts(manual, problems):
    """The runbook's verdict table lists exactly the code's verdicts, with their
    statuses, and every verdict has its own section."""
    text = (manual / "runbook.md").read_text()
    rows = dict((name, int(status)) for status, name in re.findall(r"^\|\s*(\d+)\s*\|\s*`(\w+)`\s*\|", text, re.M))
    sections = set(re.findall(r"^## (\w+)\s*$", text, re.M))
    for name, status in code_verdicts(problems).items():
        if name not in rows:
            problems.append(f"runbook.md: the verdict table has no row for verdict {name} (status {status})")
        elif rows[name] != status:
            problems.append(f"runbook.md: verdict {name} has status {rows[name]} in the table, {status} in the code")
        if name not in sections:
            problems.append(f"runbook.md: verdict {name} has no section '## {name}'")
        rows.pop(name, None)
    for name in rows:
        problems.append(f"runbook.md: the verdict table lists {name}, which the doctor never gives")


def check_sources(manual, problems):
    """sources.md: 2..5 sources per category A..H, each with a URL, a reason, and
    its use (resource card or topic synthesis claim) naming a rule of the manual."""
    text = (manual / "sources.md").read_text()
    for letter in "ABCDEFGH":
        found = re.search(rf"^## {letter}\..*?(?=^## [A-H]\.|\Z)", text, re.S | re.M)
        if not found:
            problems.append(f"sources.md: no section for category {letter}")
            continue
        entries = re.split(r"\n(?=\d\. \*\*)", found.group(0))[1:]
        if not 2 <= len(entries) <= 5:
            problems.append(f"sources.md: category {letter} has {len(entries)} sources, not 2 to 5")
        for number, entry in enumerate(entries, 1):
            where = f"sources.md: {letter}-{number}"
            title_line = entry.split("\n", 1)[0]
            if not re.search(r"https?://\S+", title_line):
                problems.append(f"{where} has no URL on its title line")
            if "Why load-bearing:" not in entry:
                problems.append(f"{where} says not why it is load-bearing")
            use = re.search(r"Use: (resource card|topic synthesis claim)\b(.*)", entry)
            if not use:
                problems.append(f"{where} is neither a resource card nor a topic synthesis claim")
            elif not re.search(r"\b[A-H]\.[0-9]+\b", use.group(2)):
                problems.append(f"{where} names no rule it backs")


def check(manual, cli):
    """Every problem of the manual in `manual` (a directory), and the counts."""
    problems = []
    tests = gtest_names()
    cases = breakit_cases(tests, problems)
    pages = sorted(manual.glob("*.md"))
    rules = 0
    per_category = {}
    for page in pages:
        text = page.read_text()
        for line in text.splitlines():
            cells = split_row(line)
            if line.lstrip().startswith("|") and re.match(r"^[A-H]\.[0-9]+$", cells[0]) and len(cells) != RULE_COLUMNS:
                problems.append(f"{page.name}: rule {cells[0]}: row has {len(cells)} of {RULE_COLUMNS} columns")
        for cells in table_rows(text):
            if not re.match(r"^[A-H]\.[0-9]+$", cells[0]) or len(cells) != RULE_COLUMNS:
                continue
            rules += 1
            per_category[cells[0][0]] = per_category.get(cells[0][0], 0) + 1
            if len(cells[1]) < 20:
                problems.append(f"{page.name}: rule {cells[0]}: no rule for a PyTorch job")
            check_enforced(page.name, cells[0], cells[3], problems)
            check_proven(page.name, cells[0], cells[4], cases, tests, problems)
        if cli is not None:
            check_commands(page.name, text, cli, problems)
    if rules == 0:
        problems.append("docs/manual has no rule rows")
    for category, count in sorted(per_category.items()):
        if not RULES_PER_CATEGORY[0] <= count <= RULES_PER_CATEGORY[1]:
            problems.append(f"category {category}: {count} rules over its pages; a checklist a reader can paste "
                            f"holds {RULES_PER_CATEGORY[0]}-{RULES_PER_CATEGORY[1]}")
    check_verdicts(manual, problems)
    check_sources(manual, problems)
    return problems, len(pages), rules, len(cases)


# Each mutation: (page, text to find, replacement, what the checker must report).
MUTATIONS = [
    ("A-wire-protocol.md", "`Decode.TruncatedAtEveryLength`", "`Decode.NoSuchTest`", "does not exist"),
    ("A-wire-protocol.md", "`src/wire/frame.cc`", "`src/wire/no_such_file.cc`", "does not exist"),
    ("C-failure-shutdown.md", "| C.2 |", "| C.2 | a rule with no columns |\n| C.99 |", "of 5 columns"),
    ("G-execution-parity.md", "| G.1 |", "| G.1 |" + " x | y | z | w |\n| G.1 |" * 6, "rules over its pages"),
    ("D-idempotency-replay.md", "| D.3 | A result can arrive twice (a retried send); drop duplicates by id, count them |",
     "| D.3 | - |", "no rule for a PyTorch job"),
    ("E-backpressure-overlap.md", "--chunks 8 --decode-ms 30`", "--chunks 8 --decode-ms 30 --no-such-option 1`",
     "has no option"),
    ("runbook.md", "lockstep doctor <job_dir>", "lockstep doktor <job_dir>", "has no command"),
    # An identifier the file only uses, or only contains as a substring, is not where the rule lives.
    ("B-groups-collectives.md", "`src/runtime/mesh_loop.cc` `broadcast_error`",
     "`src/runtime/mesh_loop.cc` `decode_mesh_frame`", "is not defined in"),
    ("B-groups-collectives.md", "`src/runtime/mesh_loop.cc` `broadcast_error`",
     "`src/runtime/mesh_loop.cc` `broadcast_err`", "is not in"),
    ("runbook.md", "| 12 | `missing_participant` | [missing_participant](#missing_participant) |\n", "",
     "no row for verdict missing_participant"),
    ("runbook.md", "| 13 | `wrong_group` |", "| 31 | `wrong_group` |", "status 31 in the table"),
    ("runbook.md", "## stranded_commit\n", "## stranded commitment\n", "has no section"),
    ("sources.md", "https://netlib.org/mpi/mpi-report/node86.html", "the MPI report", "has no URL"),
    ("sources.md", "   Use: resource card — backs B.6/B.7 (every call ledgered",
     "   Use: a card — backs B.6/B.7 (every call ledgered", "neither a resource card"),
    ("sources.md", "topic synthesis claim — backs D.2 (epochs drawn", "topic synthesis claim — backs the cut (epochs drawn",
     "names no rule it backs"),
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
