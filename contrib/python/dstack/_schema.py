"""Validation of a provider's parameters against its schema file.

The schema is YAML holding a subset of JSON Schema: type (one name or a
list of names), properties, required, additionalProperties (a boolean or a
schema), items, enum and const, and the bounds minimum, maximum,
exclusiveMinimum, exclusiveMaximum, minLength, maxLength, pattern,
minItems, maxItems, plus anyOf, oneOf and allOf.  Other keywords (title,
description, default, $schema, ...) are ignored, as JSON Schema does.

Only the standard library is used here; PyYAML is imported when a schema
file is actually read.
"""
import json
import math
import re

__all__ = ["SchemaError", "InvalidSchema", "load_schema", "validate"]


class SchemaError(Exception):
    """The parameters do not match the schema; str() is the one-line reason."""


class InvalidSchema(Exception):
    """The schema file itself cannot be used; str() is the reason."""


YAML_MISSING = "the provider's schema needs PyYAML (Debian: python3-yaml)"

_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "object": "an object",
    "array": "a list",
    "null": "null",
}

_KNOWN_WORDS = (
    "type", "properties", "required", "additionalProperties", "items",
    "enum", "const", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems",
    "maxItems", "anyOf", "oneOf", "allOf",
)


def load_schema(path):
    """Reads the YAML schema at path.

    Raises ImportError (with YAML_MISSING as text) when PyYAML is missing,
    InvalidSchema when the file cannot be read or used.
    """
    try:
        import yaml
    except ImportError:
        raise ImportError(YAML_MISSING) from None
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        raise InvalidSchema("cannot read it: %s" % (e.strerror or e)) from None
    loader = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader
    try:
        schema = yaml.load(text, Loader=loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        if mark is not None:
            raise InvalidSchema("%d:%d: %s" % (mark.line + 1, mark.column + 1,
                                               problem)) from None
        raise InvalidSchema(problem) from None
    if schema is None:
        schema = {}
    check_schema(schema)
    return schema


def check_schema(schema, where="the schema"):
    """Raises InvalidSchema where the schema uses a keyword wrongly, so a
    mistake in it is reported as such rather than as the user's."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise InvalidSchema("%s: expected a mapping" % where)

    def sub(word):
        return "%s.%s" % (where, word) if where != "the schema" else word

    if "type" in schema:
        types = schema["type"]
        names = types if isinstance(types, list) else [types]
        if not names:
            raise InvalidSchema("%s: an empty list of types" % sub("type"))
        for name in names:
            if not isinstance(name, str) or name not in _TYPE_WORDS:
                raise InvalidSchema("%s: unknown type %s (expected one of %s)"
                                    % (sub("type"), _show(name),
                                       ", ".join(_TYPE_WORDS)))
    if "properties" in schema:
        props = schema["properties"]
        if props is None:
            props = {}
        if not isinstance(props, dict):
            raise InvalidSchema("%s: expected a mapping" % sub("properties"))
        for key, value in props.items():
            check_schema(value, "%s.%s" % (sub("properties"), key))
    if "required" in schema:
        req = schema["required"]
        if not isinstance(req, list) or not all(isinstance(r, str) for r in req):
            raise InvalidSchema("%s: expected a list of names" % sub("required"))
    if "additionalProperties" in schema:
        check_schema(schema["additionalProperties"], sub("additionalProperties"))
    if "items" in schema:
        items = schema["items"]
        if isinstance(items, list):
            for i, item in enumerate(items):
                check_schema(item, "%s[%d]" % (sub("items"), i))
        else:
            check_schema(items, sub("items"))
    if "enum" in schema and not isinstance(schema["enum"], list):
        raise InvalidSchema("%s: expected a list" % sub("enum"))
    for word in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if word in schema and not _is_number(schema[word]):
            raise InvalidSchema("%s: expected a number" % sub(word))
    for word in ("minLength", "maxLength", "minItems", "maxItems"):
        if word in schema and not (_is_integer(schema[word]) and schema[word] >= 0):
            raise InvalidSchema("%s: expected a count" % sub(word))
    if "pattern" in schema:
        try:
            re.compile(schema["pattern"])
        except (re.error, TypeError) as e:
            raise InvalidSchema("%s: not a regular expression: %s"
                                % (sub("pattern"), e)) from None
    for word in ("anyOf", "oneOf", "allOf"):
        if word in schema:
            alts = schema[word]
            if not isinstance(alts, list) or not alts:
                raise InvalidSchema("%s: expected a list of schemas" % sub(word))
            for i, alt in enumerate(alts):
                check_schema(alt, "%s[%d]" % (sub(word), i))


def validate(data, schema):
    """Raises SchemaError naming the first place where data fails schema."""
    _validate(data, schema, "")


def _is_integer(v):
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, float) and math.isfinite(v) and v.is_integer()


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_CHECKS = {
    "string": lambda v: isinstance(v, str),
    "integer": _is_integer,
    "number": _is_number,
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, (list, tuple)),
    "null": lambda v: v is None,
}


def _show(value):
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _json_equal(a, b):
    """Equality as JSON sees it: true is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _fail(path, reason):
    raise SchemaError("%s: %s" % (path, reason) if path else reason)


def _key_path(path, key):
    plain = re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", key) is not None
    name = key if plain else _show(key)
    return "%s.%s" % (path, name) if path else name


def _validate(value, schema, path):
    if schema is True or schema is None:
        return
    if schema is False:
        _fail(path, "not allowed here")

    if "type" in schema:
        types = schema["type"]
        names = types if isinstance(types, list) else [types]
        if not any(_CHECKS[name](value) for name in names):
            words = [_TYPE_WORDS[name] for name in names]
            if len(words) > 1:
                words = ", ".join(words[:-1]) + " or " + words[-1]
            else:
                words = words[0]
            _fail(path or "parameters", "expected %s" % words)

    if "enum" in schema:
        if not any(_json_equal(value, choice) for choice in schema["enum"]):
            _fail(path, "expected one of %s, not %s"
                  % (", ".join(_show(c) for c in schema["enum"]), _show(value)))
    if "const" in schema and not _json_equal(value, schema["const"]):
        _fail(path, "expected %s" % _show(schema["const"]))

    if _is_number(value):
        if "minimum" in schema and value < schema["minimum"]:
            _fail(path, "expected at least %s" % _show(schema["minimum"]))
        if "maximum" in schema and value > schema["maximum"]:
            _fail(path, "expected at most %s" % _show(schema["maximum"]))
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            _fail(path, "expected more than %s" % _show(schema["exclusiveMinimum"]))
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            _fail(path, "expected less than %s" % _show(schema["exclusiveMaximum"]))

    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            _fail(path, "expected at least %d characters" % schema["minLength"])
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            _fail(path, "expected at most %d characters" % schema["maxLength"])
        if "pattern" in schema and not re.search(schema["pattern"], value):
            _fail(path, "expected a string matching %s" % _show(schema["pattern"]))

    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for name in schema.get("required") or []:
            if name not in value:
                _fail(_key_path(path, name), "required")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            key = str(key)
            if key in props:
                _validate(item, props[key], _key_path(path, key))
            elif extra is False:
                _fail(path, "unknown parameter %s" % _quote(key))
            else:
                _validate(item, extra, _key_path(path, key))

    if isinstance(value, (list, tuple)):
        if "minItems" in schema and len(value) < schema["minItems"]:
            _fail(path, "expected at least %d items" % schema["minItems"])
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            _fail(path, "expected at most %d items" % schema["maxItems"])
        items = schema.get("items")
        if isinstance(items, list):
            for i, (item, sub) in enumerate(zip(value, items)):
                _validate(item, sub, "%s[%d]" % (path, i))
        elif items is not None:
            for i, item in enumerate(value):
                _validate(item, items, "%s[%d]" % (path, i))

    for sub in schema.get("allOf") or []:
        _validate(value, sub, path)
    if "anyOf" in schema:
        reasons = _alternatives(value, schema["anyOf"], path)
        if len(reasons) == len(schema["anyOf"]):
            _fail(path, "matches none of the allowed forms (%s)" % "; ".join(reasons))
    if "oneOf" in schema:
        reasons = _alternatives(value, schema["oneOf"], path)
        matched = len(schema["oneOf"]) - len(reasons)
        if matched == 0:
            _fail(path, "matches none of the allowed forms (%s)" % "; ".join(reasons))
        if matched > 1:
            _fail(path, "matches more than one of the allowed forms")


def _alternatives(value, alts, path):
    reasons = []
    for alt in alts:
        try:
            _validate(value, alt, path)
        except SchemaError as e:
            reasons.append(str(e))
    return reasons


def _quote(key):
    if "'" in key or not key.isprintable():
        return _show(key)
    return "'%s'" % key
