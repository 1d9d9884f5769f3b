#!/usr/bin/env python3
"""Runs shell blocks of README.md as written and checks what they print.

    readme_check.py NAME --block HEADING... [--sub FROM=TO...] [--dir DIR] [--show]

The ```sh blocks that follow each HEADING (a regular expression matched
against README lines) run in one bash shell, in order, in DIR, with each
FROM replaced by TO (the ports of the servers this run started). Every
command's output (stdout and stderr) is kept, and a command followed by
lines starting with "#>" must have printed what they show: their text, with
whitespace ignored and "..." standing for anything, in order. Other comment
lines are prose and not checked. The run fails on the first command that
fails (set -euo pipefail, as a reader's shell would with the same options)
and on every output that differs from what the README shows.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile


def blocks(readme, heading):
    """The text of the first ```sh block after the line matching heading."""
    lines = readme.splitlines()
    start = next((i for i, l in enumerate(lines) if re.search(heading, l)), None)
    if start is None:
        sys.exit(f"README.md has no line matching {heading!r}")
    out, inside = [], False
    for line in lines[start + 1:]:
        if not inside and line.startswith("```sh"):
            inside = True
            continue
        if inside and line.startswith("```"):
            return out
        if inside:
            out.append(line)
    sys.exit(f"no ```sh block after {heading!r}")


def complete(text):
    """Whether text is whole commands to bash (no open quote, loop, brace or
    continued line)."""
    r = subprocess.run(["bash", "-n", "-c", text], capture_output=True, text=True)
    return r.returncode == 0 and not text.endswith("\\")


def steps(lines):
    """Splits a block into (command, expected) pairs; expected is the "#>"
    lines after the command, or None."""
    out, cmd, heredoc = [], [], None
    for line in lines:
        if heredoc is not None:
            cmd.append(line)
            if line.strip() == heredoc:
                heredoc = None
                out.append([("\n".join(cmd)), None])
                cmd = []
            continue
        if not cmd:
            stripped = line.strip()
            if stripped.startswith("#>"):
                if not out:
                    sys.exit(f"an expected output before any command: {line!r}")
                prev = out[-1]
                prev[1] = (prev[1] + "\n" if prev[1] is not None else "") + stripped[2:]
                continue
            if stripped == "" or stripped.startswith("#"):
                continue
        cmd.append(line)
        m = re.search(r"<<-?\s*'?\"?([A-Za-z_]+)'?\"?", line)
        if m:
            heredoc = m.group(1)
            continue
        if complete("\n".join(cmd)):
            out.append(["\n".join(cmd), None])
            cmd = []
    if cmd or heredoc is not None:
        sys.exit("the block ends inside a command:\n" + "\n".join(cmd))
    return out


def squeeze(s):
    return re.sub(r"\s+", "", s)


def shows(expected, actual):
    """Whether actual holds expected's parts, in order, "..." between them
    standing for anything; whitespace does not count."""
    at, text = 0, squeeze(actual)
    for part in expected.split("..."):
        part = squeeze(part)
        if not part:
            continue
        i = text.find(part, at)
        if i < 0:
            return False
        at = i + len(part)
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--block", action="append", required=True)
    ap.add_argument("--sub", action="append", default=[])
    ap.add_argument("--dir", default=".")
    ap.add_argument("--show", action="store_true", help="print every command's output (to write the #> lines)")
    args = ap.parse_args()
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
    lines = []
    for h in args.block:
        lines += blocks(readme, h) + [""]
    text = "\n".join(lines)
    for s in args.sub:
        old, new = s.split("=", 1)
        text = text.replace(old, new)
    todo = steps(text.splitlines())

    outdir = tempfile.mkdtemp(prefix="readme-")
    script = ["set -euo pipefail"]
    for i, (cmd, _) in enumerate(todo):
        script.append(f"echo {i} > {outdir}/at")
        script.append("{ " + cmd + "\n} >" + f"{outdir}/{i} 2>&1")
    script.append(f"echo done > {outdir}/at")
    r = subprocess.run(["bash", "-c", "\n".join(script)], cwd=args.dir)
    at = open(f"{outdir}/at").read().strip()

    def output(i):
        try:
            return open(f"{outdir}/{i}", encoding="utf-8", errors="replace").read()
        except FileNotFoundError:
            return ""

    if r.returncode != 0 or at != "done":
        i = int(at) if at.isdigit() else len(todo) - 1
        print(f"README {args.name} examples: this command failed (exit status {r.returncode}):\n{todo[i][0]}\n--- it printed:\n{output(i)}")
        sys.exit(1)
    if args.show:
        for i, (cmd, _) in enumerate(todo):
            print(f"$ {cmd}\n{output(i)}")
    wrong, checked = 0, 0
    for i, (cmd, expected) in enumerate(todo):
        if expected is None:
            continue
        checked += 1
        if not shows(expected, output(i)):
            wrong += 1
            print(f"README {args.name} examples: this command\n{cmd}\n--- printed:\n{output(i)}--- not what the README shows:\n{expected}\n")
    if wrong:
        sys.exit(1)
    print(f"README {args.name} examples: {len(todo)} commands ran, {checked} outputs as the README shows")


if __name__ == "__main__":
    main()
