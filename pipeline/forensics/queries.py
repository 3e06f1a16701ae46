"""The forensic query library: named, parameterized SQL files in `pipeline/forensics/query_library/`.

Each file holds one read-only statement, preceded by a header of `--` comment lines:

    -- description: what the query answers (may continue on following `--` lines)
    -- @param account String -- seller account id
    -- @param limit UInt32 = 10000 -- at most this many rows

A parameter without `= default` is required. The SQL uses ClickHouse's server-side parameters
(`{account:String}`), never string formatting, so a value is data whatever it contains; the
header must declare exactly the parameters the SQL uses, with the same types (checked on load).
Values are passed in ClickHouse's text format (`bind` normalizes times to UTC milliseconds), which
chDB takes as is and clickhouse-driver sends quoted for the server to read back as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

#: The library's files, package data of `pipeline.forensics` (read with importlib.resources, so an
#: installed wheel has them as a checkout does).
QUERIES: Traversable = resources.files("pipeline.forensics") / "query_library"

_PARAM_LINE = re.compile(r"^--\s*@param\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s+(?P<rest>.+)$")
_PLACEHOLDER = re.compile(r"\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([^{}]+?)\s*\}")
_NAME = re.compile(r"[a-z][a-z0-9_]*")


class QueryLibraryError(ValueError):
    """A query file is malformed, or a call names an unknown query or bad parameters."""


@dataclass(frozen=True)
class QueryParam:
    name: str
    type: str
    default: str | None
    description: str

    @property
    def required(self) -> bool:
        return self.default is None


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    params: tuple[QueryParam, ...]
    sql: str  # the statement without its header

    def bind(self, given: dict[str, str]) -> dict[str, str]:
        """Every parameter's text value: given ones normalized for their type, defaults for the rest."""
        known = {p.name for p in self.params}
        extra = sorted(set(given) - known)
        if extra:
            raise QueryLibraryError(
                f"query {self.name} has no parameter {', '.join(extra)}; it takes: {self.signature()}"
            )
        missing = [p.name for p in self.params if p.required and p.name not in given]
        if missing:
            raise QueryLibraryError(
                f"query {self.name} needs parameter {', '.join(missing)}; it takes: {self.signature()}"
            )
        out: dict[str, str] = {}
        for p in self.params:
            raw = given.get(p.name, p.default)
            if raw is None:  # required ones were checked above
                raise QueryLibraryError(f"query {self.name} needs parameter {p.name}")
            out[p.name] = normalize_value(p, raw) if p.name in given else raw
        return out

    def signature(self) -> str:
        return " ".join(
            f"{p.name}:{p.type}" if p.required else f"[{p.name}:{p.type}={p.default!r}]"
            for p in self.params
        )


def normalize_value(param: QueryParam, value: str) -> str:
    """`value` in ClickHouse's text format for the parameter's type, or a clear error.

    Times accept a date, `YYYY-MM-DD HH:MM:SS[.fff]` (UTC) or RFC 3339 with an offset.
    """
    base = param.type[len("Nullable(") : -1] if param.type.startswith("Nullable(") else param.type
    if base.startswith(("DateTime", "Date")):
        from pipeline.forensics.chain_check import ch_ms, parse_when

        try:
            return ch_ms(parse_when(value.replace(" ", "T", 1)))
        except ValueError:
            raise QueryLibraryError(
                f"parameter {param.name} takes a date or a time (2026-11-02, 2026-11-02T06:00:00Z), got {value!r}"
            ) from None
    if re.fullmatch(r"U?Int(8|16|32|64)", base):
        pattern = r"[0-9]+" if base.startswith("U") else r"-?[0-9]+"
        if not re.fullmatch(pattern, value.strip()):
            raise QueryLibraryError(
                f"parameter {param.name} takes an integer ({base}), got {value!r}"
            )
        return value.strip()
    return value


def parse(name: str, text: str) -> NamedQuery:
    """One query file's text -> `NamedQuery`; raise `QueryLibraryError` naming what is wrong."""
    lines = text.splitlines()
    header: list[str] = []
    while lines and (lines[0].startswith("--") or not lines[0].strip()):
        header.append(lines.pop(0).strip())
    sql = "\n".join(lines).strip()
    if not sql:
        raise QueryLibraryError(f"query {name}: no SQL after the header")
    if ";" in sql:
        raise QueryLibraryError(f"query {name}: one statement, without `;`")
    description: list[str] = []
    params: list[QueryParam] = []
    in_description = False
    for line in header:
        match = _PARAM_LINE.match(line)
        if match:
            params.append(_param(name, match.group("name"), match.group("rest")))
            in_description = False
        elif line.startswith("-- description:"):
            description.append(line.removeprefix("-- description:").strip())
            in_description = True
        elif in_description and line.startswith("--") and line.strip("- "):
            description.append(line.removeprefix("--").strip())
        else:
            in_description = False
    if not description:
        raise QueryLibraryError(f"query {name}: the header has no `-- description:` line")
    _check_placeholders(name, sql, params)
    return NamedQuery(name, " ".join(description), tuple(params), sql)


def _param(query: str, name: str, rest: str) -> QueryParam:
    spec, _, help_text = rest.partition(" -- ")
    type_, eq, default = spec.partition(" = ")
    default_value = _literal(default.strip()) if eq else None
    if not type_.strip() or not help_text.strip():
        raise QueryLibraryError(f"query {query}: `@param {name}` needs a type and `-- description`")
    return QueryParam(name, type_.strip(), default_value, help_text.strip())


def _literal(text: str) -> str:
    """A default as written in the header: `''`, `'x'` or a bare value."""
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1]
    return text


def _check_placeholders(name: str, sql: str, params: list[QueryParam]) -> None:
    declared = {p.name: _squash(p.type) for p in params}
    used: dict[str, str] = {}
    for param, type_ in _PLACEHOLDER.findall(sql):
        if used.setdefault(param, _squash(type_)) != _squash(type_):
            raise QueryLibraryError(f"query {name}: {{{param}}} is used with two types")
    if set(used) != set(declared):
        raise QueryLibraryError(
            f"query {name}: header declares {sorted(declared)}, SQL uses {sorted(used)}"
        )
    for param, type_ in used.items():
        if declared[param] != type_:
            raise QueryLibraryError(
                f"query {name}: {param} is declared {declared[param]} but used as {type_}"
            )


def _squash(type_: str) -> str:
    return re.sub(r"\s+", "", type_)


def load(directory: Traversable = QUERIES) -> dict[str, NamedQuery]:
    """Every `*.sql` of the library, by name (the file's stem), in name order."""
    if not directory.is_dir():
        raise QueryLibraryError(f"no query library at {directory}: is the package data installed?")
    library = {}
    for path in sorted(
        (f for f in directory.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name
    ):
        stem = path.name.removesuffix(".sql")
        if not _NAME.fullmatch(stem):
            raise QueryLibraryError(f"query file {path.name}: names are lower_snake_case")
        library[stem] = parse(stem, path.read_text(encoding="utf-8"))
    return library


def get(name: str, directory: Traversable = QUERIES) -> NamedQuery:
    library = load(directory)
    if name not in library:
        raise QueryLibraryError(f"no query named {name!r}; known: {', '.join(library)}")
    return library[name]
