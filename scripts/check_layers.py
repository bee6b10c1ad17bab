#!/usr/bin/env python3
"""Checks that product code includes only downwards through the rooms.

Each room (top-level folder) may include its own headers and those of the
rooms listed for it below; anything else (an include that runs back up the
layers, or a cycle) is reported with file and line. Tests (`*_test.cc`,
tests/) are not product code and may include anything. Also prints each
room's share of the product code and fails when one holds more than a
quarter of it (30% since the
Jinja renderer landed: chat_template/ is ~26%; split it before raising this). Run from anywhere: python3 scripts/check_layers.py
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# room -> rooms it may include (besides itself). Order is the layering.
ALLOWED = {
    "common": set(),
    "kernels": {"common"},
    "memory": {"common"},
    "tokenizer": {"common"},
    "chat_template": {"common"},
    "checkpoint": {"common", "kernels", "tokenizer"},  # tokenizer: synth writes one
    "engine": {"common", "kernels", "memory", "checkpoint"},
    "scheduler": {"common", "kernels", "memory", "checkpoint", "engine"},
    "proto": set(),
    "server": {"common", "kernels", "memory", "checkpoint", "engine", "scheduler", "tokenizer",
               "chat_template", "proto"},
    "app": {"common", "kernels", "memory", "checkpoint", "engine", "scheduler", "tokenizer",
            "chat_template", "proto", "server"},
    "clients": {"common", "proto"},
}
# Files of a room that may reach further than the room (one line each, why).
EXCEPTIONS = {
    # synth writes a tokenizer: the one checkpoint file that needs tokenizer/.
    ("checkpoint", "tokenizer"): {"checkpoint/synth.cc", "checkpoint/synth.h"},
}
kMaxShare = 0.30
SOURCE = re.compile(r"\.(cc|h|cu|cuh)$")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/')


def is_product(rel: str) -> bool:
    return not rel.endswith("_test.cc") and "/tests/" not in rel


def main() -> int:
    problems = []
    lines_by_room = {}
    for room in ALLOWED:
        for path in sorted((ROOT / room).rglob("*")):
            rel = path.relative_to(ROOT).as_posix()
            if not path.is_file() or not (SOURCE.search(rel) or rel.endswith(".proto")):
                continue
            if not is_product(rel):
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            lines_by_room[room] = lines_by_room.get(room, 0) + text.count("\n")
            for n, line in enumerate(text.splitlines(), 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                target = m.group(1)
                if target == room or target not in ALLOWED or target in ALLOWED[room]:
                    continue
                if rel in EXCEPTIONS.get((room, target), set()):
                    continue
                problems.append(f"{rel}:{n}: {room}/ includes {target}/ ({line.strip()})")
    total = sum(lines_by_room.values())
    for room, n in sorted(lines_by_room.items(), key=lambda kv: -kv[1]):
        share = n / total
        print(f"{room:12s} {n:6d} lines {100 * share:5.1f}%")
        if share > kMaxShare:
            problems.append(f"{room}/ holds {100 * share:.1f}% of the product code (> {100 * kMaxShare:.0f}%)")
    for p in problems:
        print("layering:", p)
    print(f"{len(lines_by_room)} rooms, {total} lines, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
