"""The v1 event contract holds together: schemas, examples and docs/events.md agree.

Why: the C validator, the producers and every consumer read these files; a schema that is not
valid 2020-12, an example that no longer matches, a pattern POSIX regcomp reads differently, or a
reference page that drifts from the schema each break someone downstream silently.

Run: python3 -m pytest -q tests/integration/test_schemas.py
"""

import ctypes
import ctypes.util
import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
VALID = SCHEMAS / "examples" / "valid"
INVALID = SCHEMAS / "examples" / "invalid"
EXPECTED = INVALID / "expected.json"
EVENTS_MD = ROOT / "docs" / "events.md"

DIALECT = "https://json-schema.org/draft/2020-12/schema"
ENVELOPE_ID = "urn:firehose:v1:envelope"
EVENT_ID = "urn:firehose:v1:event"
CONTEXT_REF = ENVELOPE_ID + "#/$defs/context"
DATA_PREFIX = "urn:firehose:v1:data:"

# docs/CONVENTIONS-DRAFT.md: the only keywords the C validator implements.
SUPPORTED_KEYWORDS = {
    "type", "enum", "const", "properties", "required", "additionalProperties",
    "patternProperties", "propertyNames", "items", "prefixItems", "minItems", "maxItems",
    "uniqueItems", "minLength", "maxLength", "pattern", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minProperties", "maxProperties",
    "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "$ref", "$defs", "$id", "$schema",
    "title", "description", "examples", "$comment", "default", "format",
}
SCHEMA_MAP_KEYWORDS = {"properties", "patternProperties", "$defs"}  # name -> schema
SCHEMA_KEYWORDS = {"items", "additionalProperties", "propertyNames", "not", "if", "then", "else"}
SCHEMA_LIST_KEYWORDS = {"prefixItems", "allOf", "anyOf", "oneOf"}

# Regex syntax outside the common subset of POSIX ERE and ECMA-262.
FORBIDDEN_REGEX = ["\\d", "\\D", "\\w", "\\W", "\\s", "\\S", "\\b", "\\B",
                   "(?", "*?", "+?", "??", "}?"]

# Valid examples that deliberately carry data fields no schema defines (forward compatibility).
# Types the broker derives (topics.derived), never sent by a master.
DERIVED_TYPES = {"builder.broken", "builder.fixed", "lkgr.advanced", "request.stale", "test.flaky"}

DELIBERATE_EXTRA_DATA = {"build-finished-extensions.json": {"flaky_tests"}}


# ---------------------------------------------------------------- loading


def _load_schemas():
    by_id, by_file = {}, {}
    for path in sorted(SCHEMAS.rglob("*.schema.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        sid = schema.get("$id")
        assert sid, f"{path} has no $id"
        assert sid not in by_id, f"$id {sid} used by {path} and {by_file[sid]}"
        by_id[sid] = schema
        by_file[sid] = path
    return by_id, by_file


SCHEMA_BY_ID, SCHEMA_FILE = _load_schemas()
REGISTRY = Registry().with_resources(
    (sid, DRAFT202012.create_resource(schema)) for sid, schema in SCHEMA_BY_ID.items()
)
RESOLVER = REGISTRY.resolver()
TYPES = SCHEMA_BY_ID[ENVELOPE_ID]["properties"]["type"]["enum"]
EVENT_VALIDATOR = Draft202012Validator(SCHEMA_BY_ID[EVENT_ID], registry=REGISTRY)


def resolve(schema):
    """Follow $ref chains; local keywords win over the referenced ones (2020-12 siblings)."""
    seen = 0
    while "$ref" in schema:
        target = RESOLVER.lookup(schema["$ref"]).contents
        merged = dict(target)
        merged.update({k: v for k, v in schema.items() if k != "$ref"})
        if "$ref" not in target:
            merged.pop("$ref", None)
        else:
            merged["$ref"] = target["$ref"]
        schema = merged
        seen += 1
        assert seen < 10, "reference loop"
    return schema


def fields_of(schema):
    """(properties, required) a schema defines, through allOf and $ref (not if/then/anyOf)."""
    schema = resolve(schema)
    props = dict(schema.get("properties", {}))
    required = set(schema.get("required", []))
    for sub in schema.get("allOf", []):
        p, r = fields_of(sub)
        for name, s in p.items():
            props.setdefault(name, s)
        required |= r
    return props, required


def data_schema(t):
    return SCHEMA_BY_ID[DATA_PREFIX + t]


def type_label(schema):
    """How docs/events.md writes a field's type: "integer", "number or null", "array of string"."""
    schema = resolve(schema)
    types = schema.get("type")
    if types is None and "enum" in schema:
        types = sorted({type(v).__name__ for v in schema["enum"]})
        types = [{"str": "string", "int": "integer", "bool": "boolean"}.get(t, t) for t in types]
    if types is None:
        return "any"
    if isinstance(types, str):
        types = [types]
    parts = []
    for t in types:
        if t == "array" and "items" in schema:
            parts.append("array of " + type_label(schema["items"]))
        else:
            parts.append(t)
    return " or ".join(parts)


def dotted(path):
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def error_paths(instance):
    """Dotted paths of every error; a missing required member is reported at its own path."""
    paths = set()
    for err in EVENT_VALIDATOR.iter_errors(instance):
        assert err.validator not in ("anyOf", "oneOf"), "paths under anyOf/oneOf are ambiguous"
        base = list(err.absolute_path)
        if err.validator == "required" and isinstance(err.instance, dict):
            missing = [m for m in err.validator_value if m not in err.instance]
            assert missing, err
            paths.update(dotted(base + [m]) for m in missing)
        else:
            paths.add(dotted(base))
    return paths


def walk_schemas(schema, where):
    """Yield (where, subschema) for every schema object nested in a schema document."""
    if isinstance(schema, bool):
        return
    assert isinstance(schema, dict), f"{where}: a schema must be an object or boolean"
    yield where, schema
    for k, v in schema.items():
        if k in SCHEMA_MAP_KEYWORDS:
            for name, sub in v.items():
                yield from walk_schemas(sub, f"{where}/{k}/{name}")
        elif k in SCHEMA_KEYWORDS:
            yield from walk_schemas(v, f"{where}/{k}")
        elif k in SCHEMA_LIST_KEYWORDS:
            for i, sub in enumerate(v):
                yield from walk_schemas(sub, f"{where}/{k}/{i}")


def all_subschemas():
    for sid, schema in SCHEMA_BY_ID.items():
        yield from walk_schemas(schema, sid + "#")


def one_line(path):
    raw = path.read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1, f"{path.name}: not exactly one line"
    assert b"\r" not in raw, f"{path.name}: carriage return"
    return raw[:-1].decode("utf-8")


VALID_FILES = sorted(VALID.glob("*.json"))
INVALID_FILES = sorted(p for p in INVALID.glob("*.json") if p.name != "expected.json")
EXPECTED_PATHS = json.loads(EXPECTED.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- the schemas


def test_schema_files_are_where_conventions_say():
    assert SCHEMA_FILE[ENVELOPE_ID] == SCHEMAS / "envelope.schema.json"
    assert SCHEMA_FILE[EVENT_ID] == SCHEMAS / "event.schema.json"
    for sid, path in SCHEMA_FILE.items():
        if sid.startswith(DATA_PREFIX):
            assert path == SCHEMAS / "data" / (sid[len(DATA_PREFIX):] + ".schema.json"), sid
        else:
            assert sid in (ENVELOPE_ID, EVENT_ID), f"unexpected schema {sid} in {path}"


@pytest.mark.parametrize("sid", sorted(SCHEMA_BY_ID))
def test_schema_is_valid_draft_2020_12(sid):
    schema = SCHEMA_BY_ID[sid]
    assert schema.get("$schema") == DIALECT
    Draft202012Validator.check_schema(schema)


def test_schemas_use_only_keywords_the_c_validator_supports():
    bad = [(where, k) for where, s in all_subschemas() for k in s if k not in SUPPORTED_KEYWORDS]
    assert not bad, f"unsupported keywords: {bad}"


def test_refs_are_full_urns_or_local_and_resolve():
    refs = [(where, s["$ref"]) for where, s in all_subschemas() if "$ref" in s]
    assert refs
    for where, ref in refs:
        assert ref.startswith("urn:firehose:v1:") or ref.startswith("#/"), f"{where}: {ref}"
        base = where.split("#", 1)[0]
        target = ref if not ref.startswith("#") else base + ref
        RESOLVER.lookup(target)  # raises when unresolvable


def test_format_is_never_the_only_check():
    # format is annotation only for the C validator: a string with a format needs a pattern.
    for where, s in all_subschemas():
        if "format" in s:
            assert "pattern" in s, f"{where}: format without pattern validates nothing"


def _patterns():
    return [(where, s["pattern"]) for where, s in all_subschemas() if "pattern" in s]


ERE_ESCAPABLE = set(".[]()*+?{}|^$\\")


def _escape_problems(pat):
    """Backslashes the two dialects read differently: inside [...] ERE takes "\\" literally,
    and outside it only escapes of special characters mean the same thing in both."""
    problems, i, n = [], 0, len(pat)
    while i < n:
        c = pat[i]
        if c == "\\":
            if i + 1 >= n or pat[i + 1] not in ERE_ESCAPABLE:
                problems.append(pat[i:i + 2])
            i += 2
        elif c == "[":
            j = i + 1
            if j < n and pat[j] == "^":
                j += 1
            if j < n and pat[j] == "]":
                j += 1
            while j < n and pat[j] != "]":
                if pat[j] == "\\":
                    problems.append("backslash in " + pat[i:])
                j += 1
            i = j + 1
        else:
            i += 1
    return problems


def test_patterns_are_portable_between_python_and_posix_ere():
    pats = _patterns()
    assert pats, "expected at least the time and source patterns"
    for where, pat in pats:
        re.compile(pat)
        for tok in FORBIDDEN_REGEX:
            assert tok not in pat, f"{where}: {tok!r} is not POSIX ERE: {pat}"
        assert not _escape_problems(pat), f"{where}: {_escape_problems(pat)} in {pat}"


def test_the_pattern_portability_check_itself_catches_known_traps():
    assert _escape_problems(r"^[0-9]{4}\.[0-9]$") == []
    assert _escape_problems(r"[\.]") and _escape_problems(r"a\-b") and _escape_problems("a\\")


class _RegexT(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_char * 256)]  # larger than any libc's regex_t


def _libc_regex():
    name = ctypes.util.find_library("c")
    if not name:
        pytest.skip("no libc for regcomp")
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "regcomp"):
        pytest.skip("libc has no regcomp")
    return libc


def _strings_in(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings_in(v)


def test_patterns_match_the_same_under_regcomp_reg_extended():
    """The C side matches with regcomp(REG_EXTENDED): it must agree with ECMA/Python semantics."""
    libc = _libc_regex()
    reg_extended, reg_nosub = 1, 8
    samples = {"2026-11-22T05:00:00.123Z", "2026-11-22T05:00:00Z", "2026-02-31T24:00:00.000Z",
               "buildbot://master-1", "master-1", ":x", "a:", "x+y.z-w:rest", "a\\:b", "\\", "",
               "x2026-11-22T05:00:00.123Z", "2026-11-22T05:00:00.1234Z"}
    for path in VALID_FILES + INVALID_FILES:
        try:
            samples.update(s for s in _strings_in(json.loads(path.read_text("utf-8"))) if len(s) < 300)
        except json.JSONDecodeError:
            pass
    # Newlines are left out: Python's $ also matches before a final "\n" and ERE's . matches
    # "\n" (ECMA's does neither). The schemas do not rely on either: time also has maxLength 24.
    samples = {s for s in samples if s.isascii() and "\0" not in s and "\n" not in s}
    for where, pat in _patterns():
        reg = _RegexT()
        rc = libc.regcomp(ctypes.byref(reg), pat.encode(), reg_extended | reg_nosub)
        assert rc == 0, f"{where}: regcomp rejects {pat!r} (rc {rc})"
        try:
            for s in samples:
                posix = libc.regexec(ctypes.byref(reg), s.encode(), 0, None, 0) == 0
                assert posix == bool(re.search(pat, s)), f"{where}: {pat!r} disagrees on {s!r}"
        finally:
            libc.regfree(ctypes.byref(reg))


def test_every_type_has_a_data_schema_and_an_event_branch():
    assert len(TYPES) == len(set(TYPES)) == 20 + len(DERIVED_TYPES)
    data_types = {sid[len(DATA_PREFIX):] for sid in SCHEMA_BY_ID if sid.startswith(DATA_PREFIX)}
    assert data_types == set(TYPES)
    branches = {}
    entries = SCHEMA_BY_ID[EVENT_ID]["allOf"]
    assert entries[0] == {"$ref": ENVELOPE_ID}
    for e in entries[1:]:
        t = e["if"]["properties"]["type"]["const"]
        assert e["if"]["required"] == ["type"], t
        assert e["then"] == {"properties": {"data": {"$ref": DATA_PREFIX + t}}}, t
        assert t not in branches, f"two branches for {t}"
        branches[t] = e
    assert set(branches) == set(TYPES)


@pytest.mark.parametrize("t", TYPES)
def test_data_schema_types_every_field_and_requires_only_known_ones(t):
    schema = data_schema(t)
    assert schema.get("type") == "object"
    assert "additionalProperties" not in schema, "unknown data fields must stay allowed"
    props, required = fields_of(schema)
    assert props and required
    assert required <= set(props), f"required but not typed: {required - set(props)}"
    for name, s in props.items():
        assert "type" in resolve(s), f"{t}.{name} has no type"


BUILD_SCOPED_WITH_BUILD = [t for t in TYPES if t.split(".")[0] in ("build", "step", "log", "test")] + ["property.set"]
# Bulk types on the logs topic (docs/events.md, "Topics and keys").
LOGS_TOPIC_TYPES = {t for t in TYPES if t.startswith("log.")} | {"test.results"}
REQUEST_SCOPED = [t for t in TYPES if t.startswith("buildrequest.")]


def test_context_is_shared_and_required_where_the_design_says():
    ctx_props, ctx_req = fields_of({"$ref": CONTEXT_REF})
    assert set(ctx_props) == {"buildrequestid", "buildid", "builder", "builderid", "branch",
                              "revision", "repository", "project", "codebase", "owner"}
    assert ctx_req == set(ctx_props) - {"buildid"}
    for t in TYPES:
        refs = [s.get("$ref") for s in data_schema(t).get("allOf", [])]
        props, required = fields_of(data_schema(t))
        if t in BUILD_SCOPED_WITH_BUILD:
            assert CONTEXT_REF in refs, t
            assert ctx_req | {"buildid"} <= required, t
        elif t in REQUEST_SCOPED:
            assert CONTEXT_REF in refs, t
            assert ctx_req <= required and "buildid" not in required, t
        elif t in DERIVED_TYPES:  # the context of the build or request they derive from
            assert CONTEXT_REF in refs, t
            assert ctx_req <= required, t
        else:
            assert CONTEXT_REF not in refs, t
            assert "buildrequestid" not in props, t


def test_log_chunk_content_limit_is_65536():
    props, _ = fields_of(data_schema("log.chunk"))
    content = resolve(props["content"])
    assert content["type"] == "string" and content["maxLength"] == 65536


# ---------------------------------------------------------------- the examples


@pytest.mark.parametrize("path", VALID_FILES, ids=lambda p: p.name)
def test_valid_example_validates(path):
    event = json.loads(one_line(path))
    errors = sorted(error_paths(event))
    assert not errors, f"{path.name}: errors at {errors}"
    props, _ = fields_of(data_schema(event["type"]))
    extra = set(event["data"]) - set(props) - DELIBERATE_EXTRA_DATA.get(path.name, set())
    assert not extra, f"{path.name}: data fields no schema defines (typo?): {extra}"


def test_valid_examples_cover_every_type():
    seen = {json.loads(one_line(p))["type"] for p in VALID_FILES}
    assert seen == set(TYPES), f"no valid example for {set(TYPES) - seen}"


@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda p: p.name)
def test_invalid_example_fails_at_its_expected_path_only(path):
    assert path.name in EXPECTED_PATHS, f"{path.name} has no entry in expected.json"
    want = EXPECTED_PATHS[path.name]
    line = one_line(path)
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        assert want == "", f"{path.name} is not JSON, so its path must be the root"
        return
    got = error_paths(event)
    assert got, f"{path.name} validates but should fail at {want!r}"
    # exactly one reason per file, so "the first error" is the same for every validator
    assert got == {want}, f"{path.name}: expected errors only at {want!r}, got {sorted(got)}"


def test_expected_json_lists_exactly_the_invalid_files():
    names = {p.name for p in INVALID_FILES}
    assert set(EXPECTED_PATHS) == names
    assert len(names) >= 15
    assert all(isinstance(v, str) for v in EXPECTED_PATHS.values())


def test_invalid_examples_include_the_hard_cases():
    raw_fail = [p.name for p in INVALID_FILES if not _parses(p)]
    assert len(raw_fail) >= 2, "need garbage and truncated JSON"
    wanted_paths = {"", "id", "type", "time", "seq", "specversion", "data", "data.results",
                    "data.content", "data.type", "data.buildid"}
    assert wanted_paths <= set(EXPECTED_PATHS.values())
    chunk = json.loads(one_line(INVALID / "log-chunk-oversized.json"))
    assert len(chunk["data"]["content"]) == 65537
    # the largest valid chunk has 65536 characters but more bytes: the limit counts characters
    biggest = json.loads(one_line(VALID / "log-chunk-max.json"))["data"]["content"]
    assert len(biggest) == 65536 and len(biggest.encode("utf-8")) > 65536


def _parses(path):
    try:
        json.loads(path.read_text("utf-8"))
        return True
    except json.JSONDecodeError:
        return False


# ---------------------------------------------------------------- docs/events.md


def _md_sections():
    """{heading text: body lines} for every ##/### heading."""
    sections, current = {}, None
    for line in EVENTS_MD.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^(#{1,6}) (.*?)\s*$", line)
        if m:
            current = m.group(2)
            assert current not in sections, f"duplicate heading {current!r}"
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return sections


def _md_table(lines, header):
    """Rows of the first table in lines, as dicts; its header must be exactly `header`."""
    rows = [l for l in lines if l.startswith("|")]
    assert rows, "no table"
    start = lines.index(rows[0])
    table = []
    for l in lines[start:]:
        if not l.startswith("|"):
            break
        table.append([c.strip() for c in l.strip().strip("|").split("|")])
    assert [c.lower() for c in table[0]] == header, f"table header {table[0]}"
    assert set("".join(table[1])) <= set("-: "), "second row must be the separator"
    out = []
    for cells in table[2:]:
        assert len(cells) == len(header), f"row {cells}"
        row = dict(zip(header, cells))
        row[header[0]] = row[header[0]].strip("`")
        out.append(row)
    return out


SECTIONS = _md_sections() if EVENTS_MD.exists() else {}


def test_events_md_exists_with_a_section_per_type_and_no_other_type_sections():
    assert EVENTS_MD.exists()
    type_like = {h for h in SECTIONS if re.fullmatch(r"[a-z]+\.[a-z_]+", h)}
    assert type_like == set(TYPES)


def _check_rows(rows, props, required, what):
    names = [r["field"] if "field" in r else r["attribute"] for r in rows]
    assert len(names) == len(set(names)), f"{what}: duplicate rows"
    assert set(names) == set(props), (
        f"{what}: docs-only {set(names) - set(props)}, schema-only {set(props) - set(names)}")
    for r in rows:
        name = r.get("field", r.get("attribute"))
        assert r["required"] in ("yes", "no"), f"{what}.{name}: required must be yes or no"
        assert (r["required"] == "yes") == (name in required), f"{what}.{name}: required-ness"
        assert r["type"] == type_label(props[name]), (
            f"{what}.{name}: docs say {r['type']!r}, schema says {type_label(props[name])!r}")
        assert r["description"], f"{what}.{name}: empty description"


@pytest.mark.parametrize("t", TYPES)
def test_events_md_table_matches_the_data_schema(t):
    """Rule: every type's table lists every data field, context fields included, one row each."""
    rows = _md_table(SECTIONS[t], ["field", "type", "required", "description"])
    props, required = fields_of(data_schema(t))
    _check_rows(rows, props, required, t)


def test_events_md_envelope_table_matches_the_envelope():
    rows = _md_table(SECTIONS["Envelope"], ["attribute", "type", "required", "description"])
    env = SCHEMA_BY_ID[ENVELOPE_ID]
    _check_rows(rows, env["properties"], set(env["required"]), "envelope")


def test_events_md_context_table_matches_the_context():
    rows = _md_table(SECTIONS["Context"], ["field", "type", "required", "description"])
    props, required = fields_of({"$ref": CONTEXT_REF})
    # buildid's requiredness depends on the type; the per-type tables check it exactly
    for r in rows:
        if r["field"] == "buildid":
            r["required"] = "no"
    _check_rows(rows, props, required, "context")


def _expected_key(t):
    props, required = fields_of(data_schema(t))
    if "buildrequestid" in required:
        return "buildrequest/<buildrequestid>"
    return {"change": "change/<changeid>", "worker": "worker/<workerid>",
            "master": "master/<name>"}[t.split(".")[0]]


@pytest.mark.parametrize("t", TYPES)
def test_events_md_section_names_topic_key_and_a_valid_example(t):
    body = "\n".join(SECTIONS[t])
    m = re.search(r"Topic `([^`]+)`, key `([^`]+)`", body)
    assert m, f"{t}: no 'Topic `...`, key `...`' line"
    assert m.group(1) == ("firehose.logs" if t in LOGS_TOPIC_TYPES else
                          "firehose.derived" if t in DERIVED_TYPES else "firehose.events")
    assert m.group(2) == _expected_key(t)
    links = re.findall(r"\]\((\.\./schemas/examples/valid/[^)]+)\)", body)
    assert links, f"{t}: no link to a valid example"
    for link in links:
        target = (EVENTS_MD.parent / link).resolve()
        assert target.exists(), f"{t}: broken link {link}"
        assert json.loads(one_line(target))["type"] == t, f"{t}: {link} is another type"


def test_events_md_states_results_codes_and_the_chunk_limit():
    rows = _md_table(SECTIONS["Results codes"], ["code", "name", "green"])
    codes = {int(r["code"]): (r["name"], r["green"]) for r in rows}
    results = resolve({"$ref": ENVELOPE_ID + "#/$defs/results"})
    assert sorted(codes) == list(range(results["minimum"], results["maximum"] + 1))
    assert [codes[i][0] for i in range(7)] == ["SUCCESS", "WARNINGS", "FAILURE", "SKIPPED",
                                                "EXCEPTION", "RETRY", "CANCELLED"]
    assert [c for c in codes if codes[c][1] == "yes"] == [0, 1]
    assert "65536" in "\n".join(SECTIONS["log.chunk"])


def test_events_md_full_example_is_the_build_finished_example():
    blocks = re.findall(r"```json\n(.*?)```", EVENTS_MD.read_text(encoding="utf-8"), re.S)
    assert blocks, "no ```json example"
    assert json.loads(blocks[0]) == json.loads(one_line(VALID / "build-finished.json"))


def test_every_link_in_events_md_resolves():
    text = EVENTS_MD.read_text(encoding="utf-8")
    for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (EVENTS_MD.parent / link).exists(), f"broken link {link}"
