"""Strict schema validation of the resources deploy/k8s builds, offline.

`kubectl apply --validate=strict` needs an API server; these schemas are vendored instead:

- tests/schemas/kubernetes-1.30-strict.json: the built-in kinds deploy/k8s uses (Deployment,
  StatefulSet, Service, ...) and the definitions they reach, from kubernetes-validate's strict
  Kubernetes 1.30 schemas (every object closed to fields it does not name);
- tests/schemas/prometheus-operator-crds.json: the v1 openAPIV3Schema of prometheus-operator's
  ServiceMonitor, PodMonitor and PrometheusRule CRDs, made strict here (a field the schema does
  not name is an error, where the API server would silently prune it).

Each file records its source. The validator covers the keywords those schemas use.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).resolve().parent / "schemas"

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


@cache
def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return doc


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind not in ("boolean",):
        return False
    return isinstance(value, _TYPES[kind])


class _Checker:
    """One schema family: `defs` resolves `$ref`s; `closed` closes objects that name fields."""

    def __init__(self, defs: dict[str, Any], closed: bool) -> None:
        self.defs, self.closed = defs, closed

    def errors(self, value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
        """Every way `value` breaks `schema`, each as "path: what"."""
        at = path or "."
        if "$ref" in schema:
            return self.errors(value, self.defs[schema["$ref"]], path)
        if schema.get("x-kubernetes-int-or-string"):
            ok = isinstance(value, (int, str)) and not isinstance(value, bool)
            return [] if ok else [f"{at}: not an int or a string"]
        if "anyOf" in schema and all(self.errors(value, s, path) for s in schema["anyOf"]):
            return [f"{at}: matches none of anyOf"]
        if "oneOf" in schema:
            matched = sum(not self.errors(value, s, path) for s in schema["oneOf"])
            if matched != 1:
                return [f"{at}: matches {matched} of oneOf, not 1"]
        kind = schema.get("type")
        if kind is not None:
            kinds = kind if isinstance(kind, list) else [kind]
            if not any(_is(value, k) for k in kinds):
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
                found += self.errors(item, schema["items"], f"{path}[{i}]")
        if isinstance(value, dict):
            found += self._object(value, schema, path)
        return found

    def _object(self, value: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
        at = path or "."
        props: dict[str, Any] = schema.get("properties", {})
        found = [f"{at}: {n} is required" for n in schema.get("required", []) if n not in value]
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            if name in props:
                found += self.errors(item, props[name], f"{path}.{name}")
            elif isinstance(extra, dict):
                found += self.errors(item, extra, f"{path}.{name}")
            elif extra is False or (self.closed and props and extra is not True):
                found.append(f"{at}: unknown field {name}")
        return found


def validate(doc: dict[str, Any]) -> list[str]:
    """The errors of one resource built by kustomize; KeyError for a kind with no schema."""
    if doc["apiVersion"].startswith("monitoring.coreos.com/"):
        # metadata is the API server's ObjectMeta, not part of the CRD's schema.
        schema = _load("prometheus-operator-crds.json")["kinds"][doc["kind"]]
        props = {k: v for k, v in schema["properties"].items() if k != "metadata"}
        body = {k: v for k, v in doc.items() if k != "metadata"}
        return _Checker({}, closed=True).errors(body, {**schema, "properties": props})
    k8s = _load("kubernetes-1.30-strict.json")
    return _Checker(k8s["definitions"], closed=False).errors(doc, k8s["kinds"][doc["kind"]])
