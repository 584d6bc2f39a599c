"""The reproduce blocks of a page: find them (markers well formed), replace one block's
content, write the page (or a figure it shows) atomically (a temporary file, then os.replace)."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

OPEN = "<!-- reproduce: {} -->"
CLOSE = "<!-- /reproduce: {} -->"
MARKER = re.compile(r"<!-- (/?)reproduce: ([a-z0-9-]+) -->")


def find_blocks(text: str) -> dict[str, tuple[int, int]]:
    """{name: (end of the open marker, start of the close marker)}; raises on a block that
    is not one open marker followed by its close marker (no nesting, no repeats)."""
    blocks, open_name, open_end = {}, None, 0
    for m in MARKER.finditer(text):
        closing, name = m.group(1) == "/", m.group(2)
        if not closing:
            if open_name is not None:
                raise ValueError(f"reproduce block '{open_name}' is not closed before '{name}' opens")
            if name in blocks:
                raise ValueError(f"reproduce block '{name}' appears twice")
            open_name, open_end = name, m.end()
        else:
            if open_name != name:
                raise ValueError(f"'/reproduce: {name}' closes no open block")
            blocks[name] = (open_end, m.start())
            open_name = None
    if open_name is not None:
        raise ValueError(f"reproduce block '{open_name}' is never closed")
    return blocks


def rewrite_block(text: str, name: str, body: str) -> str:
    """`text` with block `name`'s content replaced by `body`; everything else unchanged."""
    blocks = find_blocks(text)
    if name not in blocks:
        raise ValueError(f"no reproduce block '{name}'")
    start, end = blocks[name]
    return text[:start] + "\n" + body.strip("\n") + "\n" + text[end:]


def write_atomically(path: Path, content: str | bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rewrite_page(path: Path, name: str, body: str) -> None:
    write_atomically(path, rewrite_block(path.read_text(), name, body))
