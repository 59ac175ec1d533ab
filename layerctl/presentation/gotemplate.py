"""The part of Go's text/template that `docker ... --format` users write, so the same
format strings work on layerctl's images, ps, history and inspect.

Supported: literal text, `{{.Field}}`, `{{.A.B}}`, `{{.}}`, pipelines (`{{.X | upper}}`),
string/number arguments, trim markers (`{{-`, `-}}`), Docker's functions (json, upper,
lower, title, join, split, pad, truncate, println) and Go's print/printf/len/index, and
Docker's `table` prefix (a header row, columns aligned like Docker's tabwriter).
Control structures (if/range/with) are refused with one clear line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from layerctl.errors import BadInput
from layerctl.words import one_line


class TemplateError(BadInput):
    """A format string that does not parse or cannot be applied (Docker's wording)."""


_NO_VALUE = object()  # Go's invalid reflect.Value: prints as "<no value>"


@dataclass
class _Arg:
    kind: str  # "field", "dot", "str", "num", "ident"
    value: object
    text: str  # the source, for error messages (Go's "at <.Foo>")


_Command = list  # list[_Arg]: a function and its arguments, or one value
_Node = str | list  # literal text, or a pipeline: list[_Command]


def go_text(value: object, top: bool = True) -> str:
    """A value the way Go's fmt %v prints it inside a template."""
    if value is _NO_VALUE or (value is None and top):
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_text(v, False) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_text(value[k], False)}" for k in sorted(value)) + "]"
    return str(value)


def go_json(value: object) -> str:
    """Go's json.Marshal: compact, map keys sorted, <, > and & escaped."""
    if value is _NO_VALUE:
        value = None
    if isinstance(value, dict):  # methods taking arguments are not data (Docker's too)
        value = {k: v for k, v in value.items() if not callable(v)}
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _need_str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TemplateError(f"template: error calling {name}: expected a string, "
                            f"got {go_text(value)}")
    return value


def _join(items: object, sep: object) -> str:
    if not isinstance(items, list | tuple):
        raise TemplateError(f"template: error calling join: expected a list, got {go_text(items)}")
    return _need_str("join", sep).join(go_text(v, False) for v in items)


def _truncate(s: object, n: object) -> str:
    return _need_str("truncate", s)[: int(n)]


def _pad(s: object, before: object, after: object) -> str:
    s = _need_str("pad", s)
    return " " * int(before) + s + " " * int(after) if s else s


def _title(s: object) -> str:
    # Go's strings.Title: upper-case each letter that follows a non-word character.
    return re.sub(r"(^|\W)(\w)", lambda m: m.group(1) + m.group(2).upper(), _need_str("title", s))


def _index(obj: object, *keys: object) -> object:
    for key in keys:
        try:
            obj = obj[key]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            if isinstance(obj, dict):
                return _NO_VALUE
            raise TemplateError(f"template: error calling index: cannot index "
                                f"{go_text(obj)} with {go_text(key)}") from None
    return obj


def _printf(fmt: object, *args: object) -> str:
    # Go verbs %v %s %d %q map onto Python's; anything else is passed through as text.
    values = iter(args)

    def one(m: re.Match) -> str:
        verb = m.group(1)
        if verb == "%":
            return "%"
        v = next(values, _NO_VALUE)
        return json.dumps(v) if verb == "q" else go_text(v)

    return re.sub(r"%[-+ #0-9.]*([vsdq%])", one, _need_str("printf", fmt))


_FUNCS: dict[str, Callable[..., object]] = {
    "json": go_json,
    "upper": lambda s: _need_str("upper", s).upper(),
    "lower": lambda s: _need_str("lower", s).lower(),
    "title": _title,
    "join": _join,
    "split": lambda s, sep: _need_str("split", s).split(_need_str("split", sep)),
    "pad": _pad,
    "truncate": _truncate,
    "println": lambda *a: " ".join(go_text(v) for v in a) + "\n",
    "print": lambda *a: "".join(go_text(v) for v in a),
    "printf": _printf,
    "len": lambda v: len(v),  # type: ignore[arg-type]
    "index": _index,
}
_REFUSED = {"if", "else", "end", "range", "with", "define", "template", "block", "break",
            "continue"}

_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<raw>`[^`]*`)|(?P<num>-?\d+)'
                    r"|(?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)|(?P<dot>\.)"
                    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<pipe>\|)|(?P<open>\()|(?P<close>\)))")


def _tokens(src: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    src = src.strip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"template: :1: unexpected {src[pos:].strip()[:20]!r} in command")
        pos = m.end()
        out.append((m.lastgroup, m.group(m.lastgroup).strip()))
    return out


def _parse_action(src: str) -> list[_Command]:
    tokens = _tokens(src)
    pipeline, rest = _parse_pipeline(tokens)
    if rest:
        raise TemplateError("template: :1: unexpected \")\" in operand")
    return pipeline


def _parse_pipeline(tokens: list[tuple[str, str]]) -> tuple[list[_Command], list]:
    """A pipeline up to the end or to the `)` closing it; returns it and what follows."""
    pipeline: list[_Command] = [[]]
    while tokens:
        (kind, text), tokens = tokens[0], tokens[1:]
        if kind == "close":
            if not any(pipeline):
                raise TemplateError("template: :1: missing value for command")
            return pipeline, [("close", text), *tokens]
        if kind == "pipe":
            pipeline.append([])
            continue
        if kind == "open":
            sub, tokens = _parse_pipeline(tokens)
            if not tokens or tokens[0][0] != "close":
                raise TemplateError("template: :1: unclosed left paren")
            tokens = tokens[1:]
            pipeline[-1].append(_Arg("sub", sub, "(...)"))
            continue
        pipeline[-1].append(_token_arg(kind, text))
    if any(not cmd for cmd in pipeline):
        raise TemplateError("template: :1: missing value for command")
    return pipeline, []


def _token_arg(kind: str, text: str) -> _Arg:
    if kind == "str":
        return _Arg("str", json.loads(text), text)
    if kind == "raw":
        return _Arg("str", text[1:-1], text)
    if kind == "num":
        return _Arg("num", int(text), text)
    if kind == "field":
        return _Arg("field", text[1:].split("."), text)
    if kind == "dot":
        return _Arg("dot", None, text)
    if text in _REFUSED:
        raise TemplateError(f"template: :1: {{{{{text}}}}} is not supported by "
                            "layerctl's --format (fields and functions only)")
    if text not in _FUNCS and text not in ("true", "false", "nil"):
        raise TemplateError(f'template: :1: function "{text}" not defined')
    return _Arg("ident", text, text)


def parse(text: str) -> list[_Node]:
    """Split a template into literal text and parsed actions; bad syntax raises
    TemplateError with Go's wording."""
    nodes: list[_Node] = []
    pos = 0
    while True:
        start = text.find("{{", pos)
        if start < 0:
            nodes.append(text[pos:])
            return [n for n in nodes if n != ""]
        end = text.find("}}", start + 2)
        if end < 0:
            raise TemplateError("template: :1: unclosed action")
        literal = text[pos:start]
        inner = text[start + 2:end]
        if inner.startswith("- ") or inner == "-":
            literal = literal.rstrip()
            inner = inner[1:]
        pos = end + 2
        if inner.endswith(" -"):
            inner = inner[:-1]
            while pos < len(text) and text[pos].isspace():
                pos += 1
        nodes.append(literal)
        if inner.strip().startswith("/*"):
            continue  # a comment
        if not inner.strip():
            raise TemplateError("template: :1: missing value for command")
        nodes.append(_parse_action(inner))


class Template:
    """A parsed format; `type_name` is what an unknown field is reported against."""

    def __init__(self, text: str, type_name: str | None = None) -> None:
        self.nodes = parse(text)
        self.type_name = type_name

    def render(self, data: object) -> str:
        out = []
        for node in self.nodes:
            if isinstance(node, str):
                out.append(node)
            else:
                value = go_text(self._pipeline(node, data))
                # a field's own text (a created-by, a message) can never forge a line;
                # what a function makes (println, json) is the user's choice
                last = node[-1]
                if len(last) == 1 and last[0].kind in ("field", "dot"):
                    value = one_line(value)
                out.append(value)
        return "".join(out)

    def _pipeline(self, pipeline: list[_Command], data: object) -> object:
        value: object = _NO_VALUE
        for i, cmd in enumerate(pipeline):
            extra = [value] if i else []
            value = self._command(cmd, data, extra)
        return value

    def _command(self, cmd: _Command, data: object, extra: list) -> object:
        head = cmd[0]
        if head.kind == "sub" and len(cmd) == 1 and not extra:
            return self._arg(head, data)
        if head.kind == "ident" and head.value in _FUNCS:
            args = [self._arg(a, data) for a in cmd[1:]] + extra
            try:
                return _FUNCS[head.value](*args)
            except TypeError:
                raise TemplateError(f"template: :1: wrong number of args for {head.value}: "
                                    f"got {len(args)}") from None
        value = self._arg(head, data)
        if callable(value):  # a method field such as ps's {{.Label "key"}}
            args = [self._arg(a, data) for a in cmd[1:]] + extra
            try:
                return value(*args)
            except TypeError:
                raise TemplateError(f"template: :1: wrong number of args for {head.text}: "
                                    f"got {len(args)}") from None
        if len(cmd) > 1 or extra:
            raise TemplateError(f"template: :1: can't give argument to non-function {head.text}")
        return value

    def _arg(self, arg: _Arg, data: object) -> object:
        if arg.kind == "dot":
            return data
        if arg.kind == "sub":
            return self._pipeline(arg.value, data)
        if arg.kind == "ident":
            if arg.value in _FUNCS:
                return _FUNCS[arg.value]()  # e.g. {{println}}
            return {"true": True, "false": False, "nil": None}[arg.value]
        if arg.kind != "field":
            return arg.value
        value = data
        for i, name in enumerate(arg.value):
            if isinstance(value, dict) and name in value:
                value = value[name]
                continue
            where = f'template: :1: executing "" at <{arg.text}>'
            if isinstance(value, dict) and (self.type_name is None or i > 0):
                raise TemplateError(f'{where}: map has no entry for key "{name}"')
            kind = self.type_name if isinstance(value, dict) else _go_type(value)
            raise TemplateError(f"{where}: can't evaluate field {name} in type {kind}")
        return value


def _go_type(value: object) -> str:
    if value is None or value is _NO_VALUE:
        return "interface {}"
    return {str: "string", bool: "bool", int: "int", float: "float64", list: "[]interface {}"
            }.get(type(value), type(value).__name__)


def tabwriter(lines: list[str], minwidth: int = 10, padding: int = 3) -> list[str]:
    """Align tab-separated cells like Go's tabwriter as Docker configures it
    (minwidth 10, padding 3, spaces): each tab-terminated cell is padded to its
    column's width; the last cell of a line is left as it is."""
    split = [line.split("\t") for line in lines]
    widths: list[int] = []
    for cells in split:
        for i, cell in enumerate(cells[:-1]):
            w = max(len(cell) + padding, minwidth)
            if i < len(widths):
                widths[i] = max(widths[i], w)
            else:
                widths.append(w)
    return ["".join(c.ljust(widths[i]) for i, c in enumerate(cells[:-1])) + cells[-1]
            for cells in split]


def format_rows(fmt: str, rows: list[dict], headers: dict[str, str],
                type_name: str | None = None) -> str:
    """Docker's --format: `\\t`/`\\n` written as two characters become tab/newline; each
    row is the template's text and a newline; a `table` prefix adds a header row (each
    field's header, other text as is) and aligns the columns."""
    fmt = fmt.replace("\\t", "\t").replace("\\n", "\n")
    is_table = fmt.startswith("table")
    if is_table:
        fmt = fmt[len("table"):].lstrip(" ")
    template = Template(fmt, type_name)
    out = [template.render(row) for row in rows]
    if is_table:
        out.insert(0, template.render(headers))
        return "\n".join(tabwriter("\n".join(out).split("\n"))) + "\n"
    return "".join(text + "\n" for text in out)
