"""Shared helpers for the AMI tests: the real captures live in tests/data."""

from __future__ import annotations

import gzip
from pathlib import Path

from asttapi_server.ami.message import Message
from asttapi_server.ami.parser import AMIParser

DATA = Path(__file__).resolve().parent.parent / "data" / "ami"
LEGACY = Path(__file__).resolve().parent.parent / "data" / "ami-legacy"


def load(path: Path | str) -> bytes:
    path = Path(path)
    if not path.is_absolute():
        path = DATA / path
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def captures(suffix: str) -> list[Path]:
    return sorted(p for p in DATA.iterdir() if p.name.endswith(suffix))


def parse_all(data: bytes) -> tuple[AMIParser, list[Message]]:
    parser = AMIParser()
    return parser, parser.feed(data)


def sent_actions(name: str) -> list[bytes]:
    """The action blocks a capture's client sent, each with its blank line."""
    data = load(name)
    blocks = []
    for block in data.replace(b"\n\n", b"\r\n\r\n").split(b"\r\n\r\n"):
        if block.strip():
            blocks.append(block + b"\r\n\r\n")
    return blocks


def signature(messages: list[Message]) -> list[tuple]:
    """Everything a message exposes, for whole-vs-chunked comparisons."""
    return [(m.kind, m.name, m.items(), m.lines, m.output, m.action_id) for m in messages]
