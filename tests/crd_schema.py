"""Strict validation of custom resources against the OpenAPI v3 schemas of their CRDs.

kubernetes-validate knows the built-in kinds only; prometheus-operator's ServiceMonitor,
PodMonitor and PrometheusRule are checked here against the schemas of its CRDs
(tests/schemas/prometheus-operator-crds.json, with its source). Strict as `kubectl
--validate=strict` is: a field the schema does not name is an error, where the API server
would silently prune it. Covers the keywords those schemas use.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).resolve().parent / "schemas" / "prometheus-operator-crds.json"

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def crd_schemas() -> dict[str, dict[str, Any]]:
    """The openAPIV3Schema of each kind, by kind."""
    kinds: dict[str, dict[str, Any]] = json.loads(SCHEMAS.read_text(encoding="utf-8"))["kinds"]
    return kinds


def errors(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Every way `value` breaks `schema`, each as "path: what"."""
    at = path or "."
    if schema.get("x-kubernetes-int-or-string"):
        ok = isinstance(value, (int, str)) and not isinstance(value, bool)
        return [] if ok else [f"{at}: not an int or a string"]
    if "anyOf" in schema and all(errors(value, alt, path) for alt in schema["anyOf"]):
        return [f"{at}: matches none of anyOf"]
    kind = schema.get("type")
    if kind is not None:
        allowed = _TYPES[kind]
        if not isinstance(value, allowed) or (kind != "boolean" and isinstance(value, bool)):
            return [f"{at}: {value!r} is not of type {kind}"]
    found: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{at}: {value!r} not one of {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            found.append(f"{at}: {value!r} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            found.append(f"{at}: shorter than {schema['minLength']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            found.append(f"{at}: below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            found.append(f"{at}: above {schema['maximum']}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += errors(item, schema["items"], f"{path}[{i}]")
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                found.append(f"{at}: {name} is required")
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            if name in props:
                found += errors(item, props[name], f"{path}.{name}")
            elif isinstance(extra, dict):
                found += errors(item, extra, f"{path}.{name}")
            elif props and extra is not True:
                found.append(f"{at}: unknown field {name}")
    return found


def validate(doc: dict[str, Any]) -> list[str]:
    """The errors of one custom resource (metadata is the API server's, not the CRD's)."""
    schema = crd_schemas()[doc["kind"]]
    body = {k: v for k, v in doc.items() if k != "metadata"}
    props = {k: v for k, v in schema["properties"].items() if k != "metadata"}
    return errors(body, {**schema, "properties": props})
