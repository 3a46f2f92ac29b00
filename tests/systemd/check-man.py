#!/usr/bin/env python3
"""Checks man/fifo-broker.8 and man/fifo-broker.toml.5 against the program.

The man pages are the hand-written source of truth for the manuals; this
check keeps them honest against what the program and its other docs say:

- both pages format without a warning (groff -man -ww -z, man --warnings);
- every option, signal and exit status in `fifo-broker --help` is in
  fifo-broker(8);
- every command `--help` lists has an OPTIONS entry and a SYNOPSIS line,
  and for `fifo-broker status --help` and `fifo-broker completions --help`:
  every option has an OPTIONS entry, every option the command adds to the
  top-level ones is in its SYNOPSIS line, and every possible value of an
  argument (the shells) is named in the command's entry;
- every key of config/fifo-broker.toml (commented-out ones included) and of
  README.md's config table has an entry in fifo-broker.toml(5), and the page
  documents no key that neither knows;
- every default that `fifo-broker --check` prints for a minimal config, and
  every single-value default in README.md's table, is the "Default:" of that
  key's entry in the right section.

Usage: check-man.py [BINARY]   (default target/release/fifo-broker)
Prints one line per problem and a summary; exits 1 if there was a problem.
"""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/fifo-broker")
MAN8 = os.path.join(ROOT, "man/fifo-broker.8")
MAN5 = os.path.join(ROOT, "man/fifo-broker.toml.5")
CONFIG = os.path.join(ROOT, "config/fifo-broker.toml")
README = os.path.join(ROOT, "README.md")

problems = []
checks = 0


def check(ok, message):
    global checks
    checks += 1
    if not ok:
        problems.append(message)


def run(*args):
    return subprocess.run(args, capture_output=True, text=True)


def plain(troff):
    """Troff source -> plain text: requests dropped, macro arguments kept."""
    out = []
    for line in troff.splitlines():
        if line.startswith(".\\\""):
            continue
        if line.startswith("."):
            parts = line.split(None, 1)
            if parts[0] in (".B", ".I", ".BR", ".IR", ".RB", ".RI", ".BI", ".IB", ".OP", ".SY", ".SH", ".TP", ".TQ"):
                line = parts[1] if len(parts) > 1 else ""
                # alternating-font macros join their arguments without spaces
                if parts[0] in (".BR", ".IR", ".RB", ".RI", ".BI", ".IB"):
                    line = "".join(a.strip('"') for a in re.findall(r'"[^"]*"|\S+', line))
                else:
                    line = line.strip('"') if line.count('"') == 2 and line.startswith('"') else line
            else:
                continue
        line = re.sub(r"\\f[BIRP]", "", line)
        line = line.replace("\\-", "-").replace("\\(dq", '"').replace("\\(->", "->").replace("\\&", "")
        line = line.replace("\\(em", "--").replace("\\ ", " ").replace("\\e", "\\")
        out.append(line)
    return "\n".join(out)


def sections(troff):
    """{section title: [(tag, body)]} from .SH / .TP structure."""
    result = {}
    title = None
    for chunk in re.split(r"^\.SH ", troff, flags=re.M)[1:]:
        head, _, rest = chunk.partition("\n")
        title = head.strip().strip('"')
        entries = []
        for item in re.split(r"^\.TP\n", rest, flags=re.M)[1:]:
            tag, _, body = item.partition("\n")
            entries.append((plain(tag).strip(), plain(body)))
        result[title] = entries
    return result


# 1. formatting
for page in (MAN8, MAN5):
    r = run("groff", "-man", "-ww", "-z", page)
    check(r.returncode == 0 and not r.stderr.strip(), f"groff -man -ww -z {page}: {r.stderr.strip()}")
    r = subprocess.run(["man", "--warnings", "-l", page], capture_output=True, text=True,
                       env=dict(os.environ, MANWIDTH="80", LANG="C.UTF-8"))
    check(r.returncode == 0 and not r.stderr.strip(), f"man --warnings -l {page}: {r.stderr.strip()}")

man8_src = open(MAN8).read()
man5_src = open(MAN5).read()
man8 = plain(man8_src)
man8_sections = sections(man8_src)
man5_sections = sections(man5_src)

# 2. --help against fifo-broker(8)
help_run = run(BIN, "--help")
check(help_run.returncode == 0, f"{BIN} --help exited {help_run.returncode}")
help_text = help_run.stdout
options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+|-[A-Za-z])\b", help_text))
check(len(options) >= 6, f"found only {sorted(options)} in --help")
option_tags = " ".join(tag for tag, _ in man8_sections.get("OPTIONS", []))
for opt in sorted(options):
    check(re.search(r"(?<![\w-])" + re.escape(opt) + r"(?![\w-])", option_tags) is not None,
          f"fifo-broker(8) OPTIONS has no entry for {opt} (from --help)")
for sig in sorted(set(re.findall(r"\bSIG[A-Z0-9]+\b", help_text))):
    tags = " ".join(tag for tag, _ in man8_sections.get("SIGNALS", []))
    check(sig in tags, f"fifo-broker(8) SIGNALS has no entry for {sig} (from --help)")
exit_part = help_text[help_text.find("Exit status"):]
codes = set(re.findall(r"\b(\d+) [a-z]", exit_part))
check(len(codes) >= 5, f"found only exit codes {sorted(codes)} in --help")
man_codes = {tag for tag, _ in man8_sections.get("EXIT STATUS", [])}
for code in sorted(codes):
    check(code in man_codes, f"fifo-broker(8) EXIT STATUS has no entry for {code} (from --help)")
for code in sorted(man_codes - codes):
    check(False, f"fifo-broker(8) documents exit status {code}, which --help does not list")


def listed_options(text):
    """The options in the "Options:" part of a clap --help text."""
    part = text[text.find("Options:"):] if "Options:" in text else text
    part = part.split("\n\n")[0]
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+|-[A-Za-z])\b", part))


def has_option(opt, text):
    return re.search(r"(?<![\w-])" + re.escape(opt) + r"(?![\w-])", text) is not None


# The synopsis lines, by what follows "fifo-broker" (a command, or "").
synopses = {}
for block in re.findall(r"^\.SY .*?^\.YS$", man8_src, flags=re.M | re.S):
    words = " ".join(plain(block).split()).split()
    command = words[1] if len(words) > 1 and re.fullmatch(r"[a-z]+", words[1]) else ""
    synopses[command] = synopses.get(command, "") + " " + " ".join(words)
option_entries = man8_sections.get("OPTIONS", [])

commands_part = help_text[help_text.find("Commands:"):help_text.find("Options:")]
commands = re.findall(r"^  ([a-z][a-z-]*)\s", commands_part, flags=re.M)
check(len(commands) >= 2, f"found only commands {commands} in --help")
top_options = listed_options(help_text)
for command in commands:
    check(command in synopses, f"fifo-broker(8) SYNOPSIS has no line for {command} (from --help)")
    entry = [body for tag, body in option_entries if tag.split()[0] == command]
    check(bool(entry), f"fifo-broker(8) OPTIONS has no entry for {command} (from --help)")
for command in ("status", "completions"):
    r = run(BIN, command, "--help")
    check(r.returncode == 0, f"{BIN} {command} --help exited {r.returncode}")
    sub_help = r.stdout
    sub_options = listed_options(sub_help)
    check(len(sub_options) >= 3, f"found only {sorted(sub_options)} in {command} --help")
    for opt in sorted(sub_options):
        check(has_option(opt, option_tags),
              f"fifo-broker(8) OPTIONS has no entry for {opt} (from {command} --help)")
    for opt in sorted(o for o in sub_options - top_options if o.startswith("--")):
        check(has_option(opt, synopses.get(command, "")),
              f"fifo-broker(8) SYNOPSIS of {command} lacks {opt} (from {command} --help)")
    entry = " ".join(tag + " " + body for tag, body in option_entries if tag.split()[0] == command)
    for values in re.findall(r"\[possible values: ([^\]]*)\]", sub_help):
        for value in values.split(", "):
            check(re.search(r"\b" + re.escape(value) + r"\b", entry) is not None,
                  f"fifo-broker(8) OPTIONS entry of {command} does not name {value} (from {command} --help)")

default_config = re.search(r"default: (/\S+?)\)", help_text)
if default_config:
    check(default_config.group(1) in man8, f"fifo-broker(8) does not name the default config {default_config.group(1)}")
version = run(BIN, "--version").stdout.split()
if len(version) >= 2:
    check(f"fifo-broker {version[1]}" in man8_src and f"fifo-broker {version[1]}" in man5_src,
          f".TH of the man pages does not say fifo-broker {version[1]} (--version)")

# 3. keys: config file and README table against fifo-broker.toml(5)
SECTION_OF = {"broker": "[broker]", "inputs": "[inputs.NAME]",
              "subscribers": "[subscribers.NAME]", "sinks": "[sinks.NAME]",
              "forwards": "[forwards.NAME]"}
documented = {}  # (section title, key) -> body
for title, entries in man5_sections.items():
    for tag, body in entries:
        documented[(title, tag)] = body

config_keys = set()
table = None
for line in open(CONFIG):
    # Commented-out tables (`# [forwards.central]`) hold commented-out keys.
    m = re.match(r"^\s*#?\s*\[\s*(\w+)(?:\.\S+)?\s*\]", line)
    if m:
        table = m.group(1)
        continue
    m = re.match(r"^\s*#?\s*([a-z_]+)\s*=", line)
    if m and table in SECTION_OF:
        config_keys.add((SECTION_OF[table], m.group(1)))
check(len(config_keys) >= 15, f"found only {len(config_keys)} keys in {CONFIG}")

readme_keys = set()
readme_defaults = {}
for line in open(README):
    m = re.match(r"^\|\s*(`[^|]*`)\s*\|\s*([^|]*)\|", line)
    if not m:
        continue
    names = re.findall(r"`([a-z_]+(?:\.[A-Z_]+)?(?:\.[a-z_]+)?)`", m.group(1))
    first = re.match(r"`(\w+)", m.group(1)).group(1)
    if first not in SECTION_OF:
        continue
    for name in names:
        key = name.split(".")[-1]
        readme_keys.add((SECTION_OF[first], key))
        d = re.fullmatch(r"`?([0-9]+|0o[0-7]+|\"[^\"`]*\")`?", m.group(2).strip())
        if d and len(names) == 1:
            readme_defaults[(SECTION_OF[first], key)] = d.group(1)
check(len(readme_keys) >= 15, f"found only {len(readme_keys)} keys in README.md's table")

for section, key in sorted(config_keys | readme_keys):
    where = "config/fifo-broker.toml" if (section, key) in config_keys else "README.md"
    check((section, key) in documented, f"fifo-broker.toml(5) {section} has no entry for {key} (from {where})")
for (section, key) in sorted(documented):
    if section in SECTION_OF.values():
        check((section, key) in config_keys | readme_keys,
              f"fifo-broker.toml(5) documents {section} {key}, which neither config/fifo-broker.toml nor README.md knows")


def default_of(section, key):
    body = documented.get((section, key), "")
    m = re.search(r"Default:\s*(.*?)(?:\.\s|\.$|\s\(|$)", " ".join(body.split()))
    return m.group(1).strip() if m else None


def expect_default(section, key, value, source):
    got = default_of(section, key)
    check(got == value, f"fifo-broker.toml(5) {section} {key}: Default is {got!r}, {source} says {value!r}")


# 4. defaults printed by --check for a minimal config
with tempfile.TemporaryDirectory() as tmp:
    cfg = os.path.join(tmp, "min.toml")
    with open(cfg, "w") as f:
        f.write('[inputs.i]\n[subscribers.s]\nfrom = ["i"]\n[sinks.k]\npath = "k.log"\nfrom = ["i"]\n')
    r = run(BIN, "--check", "--config", cfg)
    check(r.returncode == 0, f"--check on a minimal config exited {r.returncode}: {r.stderr.strip()}")
    out = r.stdout
m = re.search(r"^max_line_bytes: (\d+)$", out, re.M)
check(m is not None, "--check printed no max_line_bytes")
if m:
    expect_default("[broker]", "max_line_bytes", m.group(1), "--check")
m = re.search(r"^input i: \S+ mode 0?([0-7]{3})$", out, re.M)
check(m is not None, "--check printed no input line")
if m:
    expect_default("[inputs.NAME]", "mode", "0o" + m.group(1), "--check")
for kind, section in (("subscriber s", "[subscribers.NAME]"), ("sink k", "[sinks.NAME]")):
    m = re.search(rf"^{kind}: (.*)$", out, re.M)
    check(m is not None, f"--check printed no '{kind}' line")
    if not m:
        continue
    line = m.group(1)
    for key, pattern in (("buffer_bytes", r"buffer_bytes (\d+)"), ("when_full", r"when_full (\S+)"),
                         ("format", r'format ("[^"]*")'), ("max_bytes", r"max_bytes (\d+)"),
                         ("keep", r"keep (\d+)"), ("mode", r"mode 0?([0-7]{3})")):
        v = re.search(pattern, line)
        if not v:
            continue
        value = v.group(1)
        if key == "when_full":
            value = f'"{value}"'
        if key == "mode":
            if kind.startswith("sink"):  # sinks have no mode key; the page says "created with mode 0640"
                check(f"mode 0{value}" in " ".join(man5_src.split()), f"fifo-broker.toml(5) does not say sinks are created with mode 0{value}")
                continue
            value = "0o" + value
        expect_default(section, key, value, "--check")

# 5. single-value defaults in README.md's table
for (section, key), value in sorted(readme_defaults.items()):
    expect_default(section, key, value, "README.md")

for p in problems:
    print("check-man: " + p)
print(f"check-man: {checks - len(problems)} of {checks} checks passed")
sys.exit(1 if problems else 0)
