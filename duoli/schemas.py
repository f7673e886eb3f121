"""Write the JSON Schema of every input event type to ``schemas/`` (``make schemas``)."""

from __future__ import annotations

import json
from pathlib import Path

from duoli.events import json_schemas

__all__ = ["SCHEMA_DIR", "render_schemas", "write_schemas"]

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


def render_schemas() -> dict[str, str]:
    """File name -> file text, exactly as committed."""
    return {
        f"{name}.schema.json": json.dumps(schema, indent=2, sort_keys=True) + "\n"
        for name, schema in json_schemas().items()
    }


def write_schemas(folder: Path = SCHEMA_DIR) -> None:
    folder.mkdir(exist_ok=True)
    for name, text in render_schemas().items():
        (folder / name).write_text(text)


if __name__ == "__main__":
    write_schemas()
