"""The API documentation as one self-contained page (FastAPI's /docs loads its scripts from a
CDN: offline users got a blank page). Rendered from the app's OpenAPI description."""

from __future__ import annotations

from html import escape
from typing import Any


def _schema_name(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_schema_name(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list of {_schema_name(schema.get('items', {}))}"
    return str(schema.get("type", schema.get("format", "any")))


def _fields(schema: dict[str, Any], spec: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, type, description) of an object schema's properties, following one $ref."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec.get("components", {}).get("schemas", {}).get(name, {})
    required = set(schema.get("required", []))
    return [
        (
            name + ("" if name in required else " (optional)"),
            _schema_name(prop),
            prop.get("description", ""),
        )
        for name, prop in schema.get("properties", {}).items()
    ]


def render_docs(spec: dict[str, Any]) -> str:
    """An HTML page listing every operation with its body fields and answers."""
    info = spec.get("info", {})
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(info.get('title', 'API'))} — API</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:56rem;margin:2rem auto;"
        "padding:0 1rem;color:#222}code{background:#f3f3f3;padding:0 .25rem}"
        "table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.25rem .5rem;"
        "border-bottom:1px solid #ddd;vertical-align:top}h2{margin-top:2rem}</style></head><body>",
        f"<h1>{escape(info.get('title', 'API'))}</h1>",
        f"<p>{escape(info.get('description', ''))} The machine-readable description is at "
        "<a href='/openapi.json'>/openapi.json</a>.</p>",
    ]
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            parts.append(f"<h2><code>{method.upper()} {escape(path)}</code></h2>")
            if operation.get("description"):
                parts.append(f"<p>{escape(operation['description'])}</p>")
            content = operation.get("requestBody", {}).get("content", {})
            for media_type, body in content.items():
                rows = _fields(body.get("schema", {}), spec)
                parts.append(f"<p>Body: <code>{escape(media_type)}</code></p>")
                if rows:
                    parts.append("<table><tr><th>field</th><th>type</th><th>meaning</th></tr>")
                    parts += [
                        f"<tr><td><code>{escape(n)}</code></td><td>{escape(t)}</td>"
                        f"<td>{escape(d)}</td></tr>"
                        for n, t, d in rows
                    ]
                    parts.append("</table>")
            answers = ", ".join(
                f"{escape(code)} {escape(answer.get('description', ''))}"
                for code, answer in operation.get("responses", {}).items()
            )
            parts.append(f"<p>Answers: {answers}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
