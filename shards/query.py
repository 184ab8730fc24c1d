"""A tiny SQL-ish filter language compiled to a ``pyarrow.compute`` expression.

Grammar (case-insensitive keywords)::

    expr    := term (OR term)*
    term    := factor (AND factor)*
    factor  := NOT factor | '(' expr ')' | pred
    pred    := NAME op literal | NAME [NOT] BETWEEN literal AND literal
             | NAME [NOT] IN '(' literal (',' literal)* ')' | NAME IS [NOT] NULL
    op      := = | == | != | <> | < | <= | > | >=
    literal := number | 'string' | "string" | true | false

Kept in-house so selecting a subset needs no SQL engine at run time (duckdb stays a dev dependency).
"""
from __future__ import annotations

import re

import pyarrow.compute as pc

_TOKEN = re.compile(r"""\s*(?:(?P<num>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|(?P<str>'[^']*'|"[^"]*")
                     |(?P<op><=|>=|==|!=|<>|=|<|>)|(?P<punct>[(),])|(?P<name>[A-Za-z_][A-Za-z0-9_.]*))""", re.X)
_KEYWORDS = {"and", "or", "not", "between", "in", "is", "null", "true", "false"}


class QueryError(ValueError):
    """The filter text does not parse or names an unknown column."""


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise QueryError(f"cannot parse filter at position {pos}: {text[pos:pos + 20]!r}")
        kind = m.lastgroup
        value = m.group(kind)
        if kind == "name" and value.lower() in _KEYWORDS:
            kind, value = "kw", value.lower()
        tokens.append((kind, value))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str, columns: set[str] | None):
        self.tokens = _tokenize(text)
        self.i = 0
        self.columns = columns

    def peek(self, kind: str, value: str | None = None) -> bool:
        if self.i >= len(self.tokens):
            return False
        k, v = self.tokens[self.i]
        return k == kind and (value is None or v == value)

    def take(self, kind: str, value: str | None = None) -> str:
        if not self.peek(kind, value):
            got = self.tokens[self.i][1] if self.i < len(self.tokens) else "end of filter"
            raise QueryError(f"expected {value or kind}, got {got!r}")
        self.i += 1
        return self.tokens[self.i - 1][1]

    def parse(self) -> pc.Expression:
        expr = self.expr()
        if self.i != len(self.tokens):
            raise QueryError(f"unexpected {self.tokens[self.i][1]!r} after a complete filter")
        return expr

    def expr(self) -> pc.Expression:
        out = self.term()
        while self.peek("kw", "or"):
            self.i += 1
            out = out | self.term()
        return out

    def term(self) -> pc.Expression:
        out = self.factor()
        while self.peek("kw", "and"):
            self.i += 1
            out = out & self.factor()
        return out

    def factor(self) -> pc.Expression:
        if self.peek("kw", "not"):
            self.i += 1
            return ~self.factor()
        if self.peek("punct", "("):
            self.i += 1
            out = self.expr()
            self.take("punct", ")")
            return out
        return self.pred()

    def literal(self):
        if self.peek("num"):
            v = self.take("num")
            return float(v) if any(c in v for c in ".eE") else int(v)
        if self.peek("str"):
            return self.take("str")[1:-1]
        if self.peek("kw", "true") or self.peek("kw", "false"):
            return self.take("kw") == "true"
        got = self.tokens[self.i][1] if self.i < len(self.tokens) else "end of filter"
        raise QueryError(f"expected a literal, got {got!r}")

    def pred(self) -> pc.Expression:
        name = self.take("name")
        if self.columns is not None and name not in self.columns:
            raise QueryError(f"unknown column {name!r} in filter (columns: {', '.join(sorted(self.columns))})")
        col = pc.field(name)
        if self.peek("kw", "is"):
            self.i += 1
            negate = self.peek("kw", "not")
            self.i += negate
            self.take("kw", "null")
            return col.is_valid() if negate else col.is_null()
        negate = self.peek("kw", "not")
        self.i += negate
        if self.peek("kw", "between"):
            self.i += 1
            lo = self.literal()
            self.take("kw", "and")
            hi = self.literal()
            out = (col >= lo) & (col <= hi)
        elif self.peek("kw", "in"):
            self.i += 1
            self.take("punct", "(")
            values = [self.literal()]
            while self.peek("punct", ","):
                self.i += 1
                values.append(self.literal())
            self.take("punct", ")")
            out = col.isin(values)
        else:
            if negate:
                raise QueryError(f"NOT after {name!r} must be followed by BETWEEN or IN")
            op = self.take("op")
            value = self.literal()
            return {"=": col == value, "==": col == value, "!=": col != value, "<>": col != value,
                    "<": col < value, "<=": col <= value, ">": col > value, ">=": col >= value}[op]
        return ~out if negate else out


def parse_where(text: str, columns: set[str] | None = None) -> pc.Expression:
    """Compile ``text`` (e.g. ``"aesthetic >= 5 AND duration_s BETWEEN 2 AND 8"``) to an expression.

    ``columns`` (when given) makes an unknown column name a ``QueryError`` instead of a late failure.
    """
    if not text or not text.strip():
        raise QueryError("empty filter")
    return _Parser(text, columns).parse()
