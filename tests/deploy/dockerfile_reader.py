"""A small Dockerfile reader for the container tests: stages, instructions, heredocs.

Enough of the Dockerfile syntax for our own files: comments, line
continuations, parser directives, `ARG` before the first `FROM`, and
BuildKit heredocs (`COPY <<'EOF' dest` ... `EOF`). No Docker needed.
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    keyword: str  # upper case: RUN, COPY, ...
    args: str  # the arguments, continuations joined with a space
    heredoc: str | None = None  # body of a `<<EOF` document, if any

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD, else None."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text.split(" CMD ", 1)[1] if " CMD " in f" {text}" else ""
            text = text.strip()
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, list) else None

    def flags(self) -> list[tuple[str, str]]:
        """The leading `--name=value` flags (HEALTHCHECK options, COPY --from, RUN --mount)."""
        return re.findall(r"--([a-z-]+)=(\S+)", re.match(r"(?:--[a-z-]+=\S+\s*)*", self.args).group(0))


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def resolve(self, text: str) -> str:
        """Substitute global ARG defaults (as FROM lines see them)."""
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.global_args.get(m.group(1) or m.group(2), m.group(0)), text)


def parse(path: Path) -> Dockerfile:
    lines = path.read_text().splitlines()
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        logical = line
        while logical.rstrip().endswith("\\") and i < len(lines):
            logical = logical.rstrip()[:-1] + " "
            nxt = lines[i]
            i += 1
            if nxt.lstrip().startswith("#"):
                continue
            logical += nxt.strip()
        keyword, _, args = logical.strip().partition(" ")
        keyword = keyword.upper()
        args = re.sub(r"\s+", " ", args.strip())
        heredoc = None
        marker = re.search(r"<<-?\s*'?\"?(\w+)'?\"?", args) if keyword in {"RUN", "COPY"} else None
        if marker:
            body = []
            while i < len(lines) and lines[i].strip() != marker.group(1):
                body.append(lines[i])
                i += 1
            i += 1  # the terminator
            heredoc = "\n".join(body) + "\n"
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif keyword == "ARG" and not stages:
            key, _, default = args.partition("=")
            global_args[key] = default
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, args, heredoc))
    return Dockerfile(global_args, stages)


def shell_words(text: str) -> list[str]:
    return shlex.split(text)
