"""MkDocs hook: publishes the management API's OpenAPI document (python/clipper/management/openapi.json,
the one the running API serves) with the site as `openapi.json`, and renders its operations as a table
where a page says <!-- openapi-operations -->. Runs inside `mkdocs build` and `mkdocs serve`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "python/clipper/management/openapi.json"
MARKER = "<!-- openapi-operations -->"


def on_files(files: Any, config: Any) -> Any:
    files.append(File.generated(config, "openapi.json", abs_src_path=str(OPENAPI_PATH)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, operations_table(json.loads(OPENAPI_PATH.read_text())))


def operations_table(document: dict[str, Any]) -> str:
    rows = ["| method | path | what it does |", "| --- | --- | --- |"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            summary = " ".join(str(operation.get("summary", "")).split()).replace("|", "\\|")
            rows.append(f"| {method.upper()} | `{path}` | {summary} |")
    return "\n".join(rows)
