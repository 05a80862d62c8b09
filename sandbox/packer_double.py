"""The Packer double: a stand-in for HashiCorp Packer's CLI against the sandbox cloud. **Not Packer.**

``sandbox/bin/packer`` runs :func:`main`. It exists so that the bake stage (``PackerHook``,
``PackerBuildOperator``) runs end to end on a machine without Packer, without real AWS and without
booting anything, while talking to the very same CLI surface it uses against the real Packer:

* subcommands ``init``, ``validate``, ``build``, ``version`` with Packer's flags (``-machine-readable``,
  ``-color=false``, ``-var k=v`` / ``-var=k=v``, ``-var-file``, ``-force``, ``-on-error``, ...);
* Packer's machine-readable output, line for line in shape: ``timestamp,target,type,data...`` with commas
  in data written as ``%!(PACKER_COMMA)`` and newlines as ``\\n``; ``ui`` lines (``say``/``message``/
  ``error``) carry the human text, then ``artifact-count``, ``artifact,0,builder-id|id|string|
  files-count|end``, ``error-count`` and ``error``;
* the template is the real one (``include/packer/*.pkr.hcl``), read with python-hcl2 and evaluated by a
  small HCL expression evaluator (variables, ``var.*``/``path.root``/``build.*``, string interpolation,
  ``length``/``slice``/``regex``/``can``/... and comparisons). Undeclared ``-var`` names, unset required
  variables and failed ``validation`` blocks are rejected with Packer's error text and exit code 1;
* ``build`` does in the sandbox (``AWS_ENDPOINT_URL``) what the ``amazon-ebs`` builder does in AWS:
  resolve the base AMI with the template's ``source_ami_filter`` (name + owners, most recent), refuse an
  AMI name that is taken (unless ``-force``), create a temporary key pair and security group, launch the
  builder instance with the template's run tags, IMDSv2 options and root volume, wait for it to run,
  "provision" it (prints what the provisioners would print; the package list is generated, see below),
  stop it, create the AMI (the run tags on the new image and its snapshot, in CreateImage, as the amazon plugin
  does unless ``skip_ami_run_tags``), wait for it to be ``available``, copy it to the other ``ami_regions``, tag the
  AMI and its snapshots with the template's ``tags``/``snapshot_tags`` (``{{ .SourceAMI }}`` rendered),
  terminate the builder, delete the key pair and security group, and run the ``manifest``
  post-processor (Packer's manifest JSON, appended to an existing file as Packer does);
* SIGINT/SIGTERM cancel the build like Packer: the steps' cleanups run (builder terminated, key pair and
  security group deleted, an AMI in the making deregistered), ``Build '...' errored after ...: build was
  cancelled`` and ``Cleanly cancelled builds after being interrupted.``, exit 1.

What it does not do: no SSH, no instance ever boots, no provisioner script is executed (the scripts are
listed and their typical output is printed), no plugin is downloaded (``init`` records the pinned plugin
under ``PACKER_PLUGIN_PATH`` or ``~/.config/packer/plugins``; ``build`` refuses to run before ``init``,
as Packer does), only the ``amazon-ebs`` source, ``file``/``shell`` provisioners and the ``manifest``
post-processor are understood.

The package list that the template's download provisioner fetches (``packages-<role>-<version>.tsv``) is a
plausible Debian 12 list, deterministic per (role, version): release versions ``YYYY.MM.DD-N`` map to a
week, and a few packages get a security update every few weeks, so two weekly images differ by a few
upgrades (release notes have content). ``PHOENIX_PACKER_DOUBLE_PACKAGES=<file>`` uses that file instead.

Environment (all optional):

``PHOENIX_PACKER_DOUBLE_FAIL=<stage>[:<detail>]``
    inject a failure: ``init``, ``source_ami``, ``launch``, ``ssh``, ``provision`` (the image test suite
    fails; detail: the failing check, e.g. ``test_ssh.py::test_sshd_setting[permitrootlogin]``),
    ``ami`` (the AMI ends ``failed`` and is deregistered). The build cleans up, then exits 1.
``PHOENIX_PACKER_DOUBLE_DELAY=<seconds>``
    linger that long while "provisioning" (the builder instance and key pair exist): for SIGINT tests.
``PHOENIX_PACKER_DOUBLE_ARGV_LOG=<file>``
    append one JSON line per invocation: ``{"argv": [...], "cwd": ..., "pid": ..., "env": {...}}`` (the
    environment it was started with: tests check what reached Packer). Test use only: it writes credentials.
``PHOENIX_PACKER_DOUBLE_PACKAGES=<file>``
    the package list to "download" instead of the generated one.
``PHOENIX_PACKER_DOUBLE_POLL_MAX=<seconds>``
    longest pause between two polls of the sandbox (default 1.0; polls start at 0.05 s).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKER_VERSION = "1.11.2"
PACKER_COMMIT = "8c3e1d4a9b2f6e7d5c0a1b2c3d4e5f6a7b8c9d0e"
AMAZON_PLUGIN = "github.com/hashicorp/amazon"
AMAZON_PLUGIN_BINARY = "packer-plugin-amazon_v{version}_x5.0_linux_amd64"
BUILDER_ID = "mitchellh.amazonebs"
FAIL_ENV = "PHOENIX_PACKER_DOUBLE_FAIL"
DELAY_ENV = "PHOENIX_PACKER_DOUBLE_DELAY"
ARGV_LOG_ENV = "PHOENIX_PACKER_DOUBLE_ARGV_LOG"
PACKAGES_ENV = "PHOENIX_PACKER_DOUBLE_PACKAGES"
POLL_MAX_ENV = "PHOENIX_PACKER_DOUBLE_POLL_MAX"
WAIT_TIMEOUT_S = 1800.0


# =============================================================================================== errors


class PackerError(Exception):
    """A diagnostic Packer would print as ``Error: <summary>\\n\\n<detail>`` before exiting 1."""

    def __init__(self, summary: str, detail: str = "") -> None:
        super().__init__(summary)
        self.summary = summary
        self.detail = detail

    def render(self) -> str:
        return f"Error: {self.summary}" + (f"\n\n{self.detail}" if self.detail else "")


class HclError(Exception):
    pass


class Cancelled(Exception):
    def __init__(self) -> None:
        super().__init__("build was cancelled")


class StepError(Exception):
    """A build step failed: the message is what Packer reports as the build's error."""


# ===================================================================================== HCL expressions

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>\d+(?:\.\d+)?)
  | (?P<op>==|!=|>=|<=|&&|\|\||[-+*/%<>!?:\[\](),.{}=])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_-]*)
  | (?P<str>")
    """,
    re.VERBOSE,
)


@dataclass
class _Node:
    kind: str
    value: Any = None
    children: list[Any] = field(default_factory=list)


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            n = text[i + 1]
            mapping = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
            if n in mapping:
                out.append(mapping[n])
                i += 2
                continue
            if n == "u" and i + 5 < len(text) + 1:
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
        out.append(c)
        i += 1
    return "".join(out)


class _Parser:
    """Recursive descent over the HCL expression subset Packer templates use."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.pos = 0

    # -- lexing -------------------------------------------------------------------------------------
    def _skip_ws(self) -> None:
        while self.pos < len(self.src) and self.src[self.pos].isspace():
            self.pos += 1

    def _peek(self) -> tuple[str, str] | None:
        self._skip_ws()
        if self.pos >= len(self.src):
            return None
        m = _TOKEN_RE.match(self.src, self.pos)
        if not m:
            raise HclError(f"Invalid character {self.src[self.pos]!r} in expression {self.src!r}")
        kind = m.lastgroup or ""
        return kind, m.group(kind)

    def _next(self) -> tuple[str, str]:
        tok = self._peek()
        if tok is None:
            raise HclError(f"Unexpected end of expression {self.src!r}")
        self.pos += len(tok[1])
        return tok

    def _accept(self, op: str) -> bool:
        tok = self._peek()
        if tok and tok[0] == "op" and tok[1] == op:
            self.pos += len(op)
            return True
        return False

    def _expect(self, op: str) -> None:
        if not self._accept(op):
            raise HclError(f"Expected {op!r} at {self.src[self.pos:self.pos + 20]!r} in {self.src!r}")

    # -- strings --------------------------------------------------------------------------------------
    def parse_template(self, closing: str | None = '"') -> _Node:
        """A template body: literal parts and ``${expr}`` interpolations, up to ``closing`` (or the end)."""
        parts: list[Any] = []
        buf: list[str] = []
        while True:
            if self.pos >= len(self.src):
                if closing is not None:
                    raise HclError(f"Unterminated string in {self.src!r}")
                break
            c = self.src[self.pos]
            if closing is not None and c == closing:
                self.pos += 1
                break
            if c == "\\" and self.pos + 1 < len(self.src):
                buf.append(self.src[self.pos : self.pos + 2])
                self.pos += 2
                continue
            if self.src.startswith("$${", self.pos):
                buf.append("${")
                self.pos += 3
                continue
            if self.src.startswith("%%{", self.pos):
                buf.append("%{")
                self.pos += 3
                continue
            if self.src.startswith("${", self.pos):
                if buf:
                    parts.append(_unescape("".join(buf)))
                    buf = []
                self.pos += 2
                expr = self.parse_expr()
                self._skip_ws()
                self._expect("}")
                parts.append(expr)
                continue
            buf.append(c)
            self.pos += 1
        if buf:
            parts.append(_unescape("".join(buf)))
        return _Node("template", children=parts)

    # -- expressions ----------------------------------------------------------------------------------
    def parse_expr(self) -> _Node:
        cond = self._parse_or()
        if self._accept("?"):
            a = self.parse_expr()
            self._expect(":")
            b = self.parse_expr()
            return _Node("cond", children=[cond, a, b])
        return cond

    def _parse_or(self) -> _Node:
        left = self._parse_and()
        while self._accept("||"):
            left = _Node("binop", "||", [left, self._parse_and()])
        return left

    def _parse_and(self) -> _Node:
        left = self._parse_cmp()
        while self._accept("&&"):
            left = _Node("binop", "&&", [left, self._parse_cmp()])
        return left

    def _parse_cmp(self) -> _Node:
        left = self._parse_add()
        for op in ("==", "!=", ">=", "<=", ">", "<"):
            if self._accept(op):
                return _Node("binop", op, [left, self._parse_add()])
        return left

    def _parse_add(self) -> _Node:
        left = self._parse_mul()
        while True:
            if self._accept("+"):
                left = _Node("binop", "+", [left, self._parse_mul()])
            elif self._accept("-"):
                left = _Node("binop", "-", [left, self._parse_mul()])
            else:
                return left

    def _parse_mul(self) -> _Node:
        left = self._parse_unary()
        while True:
            tok = self._peek()
            if tok and tok[0] == "op" and tok[1] in ("*", "/", "%"):
                self._next()
                left = _Node("binop", tok[1], [left, self._parse_unary()])
            else:
                return left

    def _parse_unary(self) -> _Node:
        if self._accept("!"):
            return _Node("not", children=[self._parse_unary()])
        if self._accept("-"):
            return _Node("neg", children=[self._parse_unary()])
        return self._parse_postfix()

    def _parse_postfix(self) -> _Node:
        node = self._parse_primary()
        while True:
            if self._accept("["):
                idx = self.parse_expr()
                self._expect("]")
                node = _Node("index", children=[node, idx])
            elif self._accept("."):
                kind, name = self._next()
                if kind not in ("ident", "num"):
                    raise HclError(f"Invalid attribute access in {self.src!r}")
                node = _Node("attr", name, [node])
            else:
                return node

    def _parse_primary(self) -> _Node:
        kind, text = self._next()
        if kind == "num":
            return _Node("lit", float(text) if "." in text else int(text))
        if kind == "str":
            return self.parse_template('"')
        if kind == "op" and text == "(":
            e = self.parse_expr()
            self._expect(")")
            return e
        if kind == "op" and text == "[":
            items: list[_Node] = []
            if not self._accept("]"):
                while True:
                    items.append(self.parse_expr())
                    if self._accept("]"):
                        break
                    self._expect(",")
                    if self._accept("]"):
                        break
            return _Node("list", children=items)
        if kind == "op" and text == "{":
            pairs: list[_Node] = []
            while not self._accept("}"):
                key = self.parse_expr()
                if not (self._accept("=") or self._accept(":")):
                    raise HclError(f"Expected '=' in object in {self.src!r}")
                pairs.append(_Node("pair", children=[key, self.parse_expr()]))
                self._accept(",")
            return _Node("object", children=pairs)
        if kind == "ident":
            if text in ("true", "false"):
                return _Node("lit", text == "true")
            if text == "null":
                return _Node("lit", None)
            if self._accept("("):
                args: list[_Node] = []
                if not self._accept(")"):
                    while True:
                        args.append(self.parse_expr())
                        if self._accept(")"):
                            break
                        self._expect(",")
                return _Node("call", text, args)
            return _Node("name", text)
        raise HclError(f"Unexpected {text!r} in expression {self.src!r}")


def _hcl_length(v: Any) -> int:
    if isinstance(v, (str, list, dict)):
        return len(v)
    raise HclError("Invalid function argument: length() needs a string, list or map")


def _hcl_regex(pattern: str, text: str) -> Any:
    m = re.search(pattern, text)
    if not m:
        raise HclError("Invalid function argument: pattern did not match any part of the given string")
    if m.groupdict():
        return m.groupdict()
    if m.groups():
        return list(m.groups())
    return m.group(0)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "length": _hcl_length,
    "slice": lambda lst, a, b: list(lst)[int(a) : int(b)],
    "regex": _hcl_regex,
    "lower": lambda s: str(s).lower(),
    "upper": lambda s: str(s).upper(),
    "trimspace": lambda s: str(s).strip(),
    "join": lambda sep, lst: str(sep).join(str(x) for x in lst),
    "split": lambda sep, s: str(s).split(str(sep)),
    "replace": lambda s, a, b: str(s).replace(str(a), str(b)),
    "concat": lambda *ls: [x for lst in ls for x in lst],
    "contains": lambda lst, v: v in lst,
    "element": lambda lst, i: list(lst)[int(i) % len(lst)],
    "coalesce": lambda *vs: next((v for v in vs if v not in (None, "")), None),
    "tostring": lambda v: str(v),
    "tonumber": lambda v: float(v) if "." in str(v) else int(v),
    "min": lambda *vs: min(vs),
    "max": lambda *vs: max(vs),
    "abs": lambda v: abs(v),
    "keys": lambda m: sorted(m),
    "values": lambda m: [m[k] for k in sorted(m)],
    "lookup": lambda m, k, d=None: m.get(k, d),
    "format": lambda f, *a: re.sub(r"%[sdv]", "{}", str(f)).format(*a),
    "timestamp": lambda: dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "list": lambda *a: list(a),
}


class HclContext:
    """Names an expression can see: ``var``, ``local``, ``path``, ``build``, ``source``."""

    def __init__(self, **scopes: Mapping[str, Any]) -> None:
        self.scopes = {k: dict(v) for k, v in scopes.items()}

    def eval_node(self, node: _Node) -> Any:
        k = node.kind
        if k == "lit":
            return node.value
        if k == "template":
            if len(node.children) == 1 and isinstance(node.children[0], _Node):
                return self.eval_node(node.children[0])
            return "".join(c if isinstance(c, str) else _to_str(self.eval_node(c)) for c in node.children)
        if k == "list":
            return [self.eval_node(c) for c in node.children]
        if k == "object":
            return {str(self.eval_node(p.children[0])): self.eval_node(p.children[1]) for p in node.children}
        if k == "name":
            if node.value in self.scopes:
                return self.scopes[node.value]
            if node.value in ("string", "number", "bool", "any"):  # type keywords
                return node.value
            raise HclError(f'Unknown variable: there is no variable named "{node.value}"')
        if k == "attr":
            base = self.eval_node(node.children[0])
            if isinstance(base, Mapping):
                if node.value not in base:
                    raise HclError(f'Unsupported attribute: this object does not have an attribute named "{node.value}"')
                return base[node.value]
            raise HclError(f"Unsupported attribute {node.value!r}")
        if k == "index":
            base = self.eval_node(node.children[0])
            idx = self.eval_node(node.children[1])
            try:
                return base[int(idx)] if isinstance(base, list) else base[idx]
            except (IndexError, KeyError, TypeError, ValueError):
                raise HclError(f"Invalid index: the given key {idx!r} does not identify an element") from None
        if k == "call":
            if node.value == "can":
                try:
                    self.eval_node(node.children[0])
                    return True
                except HclError:
                    return False
            if node.value == "try":
                for c in node.children:
                    try:
                        return self.eval_node(c)
                    except HclError:
                        continue
                raise HclError("Error in function call: no expression succeeded")
            fn = _FUNCTIONS.get(node.value)
            if fn is None:
                raise HclError(f'Call to unknown function: there is no function named "{node.value}"')
            args = [self.eval_node(c) for c in node.children]
            try:
                return fn(*args)
            except HclError:
                raise
            except Exception as exc:  # a wrong argument type, ...
                raise HclError(f"Error in function call {node.value}(): {exc}") from None
        if k == "not":
            return not self.eval_node(node.children[0])
        if k == "neg":
            return -self.eval_node(node.children[0])
        if k == "cond":
            return self.eval_node(node.children[1] if self.eval_node(node.children[0]) else node.children[2])
        if k == "binop":
            op = node.value
            if op == "&&":
                return bool(self.eval_node(node.children[0])) and bool(self.eval_node(node.children[1]))
            if op == "||":
                return bool(self.eval_node(node.children[0])) or bool(self.eval_node(node.children[1]))
            a, b = self.eval_node(node.children[0]), self.eval_node(node.children[1])
            ops: dict[str, Callable[[Any, Any], Any]] = {
                "==": lambda x, y: x == y,
                "!=": lambda x, y: x != y,
                ">": lambda x, y: x > y,
                "<": lambda x, y: x < y,
                ">=": lambda x, y: x >= y,
                "<=": lambda x, y: x <= y,
                "+": lambda x, y: x + y,
                "-": lambda x, y: x - y,
                "*": lambda x, y: x * y,
                "/": lambda x, y: x / y,
                "%": lambda x, y: x % y,
            }
            try:
                return ops[op](a, b)
            except TypeError:
                raise HclError(f"Invalid operand for {op}: {a!r}, {b!r}") from None
        raise HclError(f"cannot evaluate {k}")

    def eval_expr(self, text: str) -> Any:
        p = _Parser(text)
        node = p.parse_expr()
        p._skip_ws()
        if p.pos != len(text):
            raise HclError(f"Extra characters after expression: {text[p.pos:]!r}")
        return self.eval_node(node)

    def eval_string(self, text: str) -> Any:
        """A string as python-hcl2 hands it over: ``"quoted ${interp}"``, ``${expr}`` or a bare word."""
        if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
            p = _Parser(text)
            p.pos = 1
            return self.eval_node(p.parse_template('"'))
        if text.startswith("${") and text.endswith("}"):
            p = _Parser(text)
            p.pos = 0
            node = p.parse_template(None)
            return self.eval_node(node)
        return text

    def value(self, raw: Any) -> Any:
        """Evaluate a python-hcl2 value (strings, numbers, lists, maps) in this context."""
        if isinstance(raw, str):
            return self.eval_string(raw)
        if isinstance(raw, list):
            return [self.value(x) for x in raw]
        if isinstance(raw, dict):
            return {unquote(k): self.value(v) for k, v in raw.items() if not k.startswith("__")}
        return raw


def _to_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    if isinstance(v, (list, dict)):
        raise HclError("Invalid template interpolation value: cannot include a list or map in a string")
    return str(v)


def unquote(key: str) -> str:
    if len(key) >= 2 and key[0] == '"' and key[-1] == '"':
        return _unescape(key[1:-1])
    return key


_GO_TEMPLATE_RE = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")


def render_go_template(text: str, data: Mapping[str, str]) -> str:
    """``{{ .SourceAMI }}``-style build variables in the amazon builder's tag values."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in data:
            raise PackerError(
                "Failed preparing the template",
                f'template: root:1:3: executing "root" at <.{m.group(1)}>: can\'t evaluate field {m.group(1)}',
            )
        return data[m.group(1)]

    return _GO_TEMPLATE_RE.sub(sub, text)


# ============================================================================================= template


@dataclass
class Variable:
    name: str
    type: str
    default: Any
    has_default: bool
    validations: list[tuple[str, str]]  # (condition expression, error message)
    description: str = ""


@dataclass
class Template:
    path: Path  # the file or directory given on the command line
    root: Path  # path.root
    files: list[Path]
    variables: dict[str, Variable]
    blocks: dict[str, list[Any]]

    def line_of(self, pattern: str) -> tuple[str, int, str]:
        """(file name, line number, line text) of the first line matching ``pattern``."""
        rx = re.compile(pattern)
        for f in self.files:
            for i, line in enumerate(f.read_text().splitlines(), 1):
                if rx.search(line):
                    return f.name, i, line.rstrip()
        return self.files[0].name, 1, ""


def _type_name(raw: Any) -> str:
    text = raw if isinstance(raw, str) else "any"
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1]
    return text.strip()


def load_template(path: Path) -> Template:
    import hcl2

    path = path.resolve()
    if path.is_dir():
        files = sorted(path.glob("*.pkr.hcl"))
        root = path
        if not files:
            raise PackerError(
                "Could not find any config file in " + str(path),
                "A config file must be suffixed with `.pkr.hcl` or `.pkr.json`.",
            )
    elif path.is_file():
        files = [path]
        root = path.parent
    else:
        raise PackerError(f"Failed to read {path}", f"stat {path}: no such file or directory")
    blocks: dict[str, list[Any]] = {}
    for f in files:
        try:
            with f.open() as fh:
                data = hcl2.load(fh)
        except Exception as exc:  # lark errors
            raise PackerError("Invalid HCL syntax", f"{f.name}: {exc}") from None
        for k, v in data.items():
            blocks.setdefault(k, []).extend(v if isinstance(v, list) else [v])
    variables: dict[str, Variable] = {}
    for entry in blocks.get("variable", []):
        for qname, body in entry.items():
            name = unquote(qname)
            validations = []
            for val in body.get("validation", []) or []:
                validations.append((val.get("condition", "true"), unquote(str(val.get("error_message", '""')))))
            variables[name] = Variable(
                name=name,
                type=_type_name(body.get("type", "any")),
                default=body.get("default"),
                has_default="default" in body,
                validations=validations,
                description=unquote(str(body.get("description", '""'))),
            )
    return Template(path=path, root=root, files=files, variables=variables, blocks=blocks)


def parse_var_value(var: Variable, raw: str) -> Any:
    """A ``-var`` value: literal for ``string`` variables, an HCL expression for every other type."""
    if var.type == "string":
        return raw
    try:
        value = HclContext().eval_expr(raw)
    except HclError as exc:
        raise PackerError("Invalid expression", f'Expected the start of an expression for variable "{var.name}": {exc}') from None
    if var.type == "number" and not isinstance(value, (int, float)):
        raise PackerError("Invalid value for input variable", f'The value for variable "{var.name}": a number is required.')
    if var.type.startswith("list") and not isinstance(value, list):
        raise PackerError("Invalid value for input variable", f'The value for variable "{var.name}": list of string required.')
    return value


def resolve_variables(
    tpl: Template, cli_vars: list[tuple[str, str]], var_files: list[Path], environ: Mapping[str, str]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    const = HclContext()
    for name, var in tpl.variables.items():
        if var.has_default:
            values[name] = const.value(var.default)
    for name, var in tpl.variables.items():
        env_value = environ.get(f"PKR_VAR_{name}")
        if env_value is not None:
            values[name] = parse_var_value(var, env_value)
    for vf in var_files:
        import hcl2

        try:
            with vf.open() as fh:
                data = hcl2.load(fh)
        except OSError as exc:
            raise PackerError("Failed to read variable file", f"{vf}: {exc.strerror}") from None
        for key, raw in data.items():
            if key not in tpl.variables:
                raise PackerError(
                    "Undefined variable",
                    f'A "{key}" variable was set but was not declared. To declare variable "{key}", '
                    "place this block in one of your .pkr.hcl files, such as variables.pkr.hcl",
                )
            values[key] = const.value(raw)
    for name, raw in cli_vars:
        var = tpl.variables.get(name)
        if var is None:
            raise PackerError(
                "Undefined -var variable",
                f'A "{name}" variable was passed in but was not found in known variables. To declare\n'
                f'variable "{name}", place this block in one of your .pkr.hcl files, such as\n'
                "variables.pkr.hcl",
            )
        values[name] = parse_var_value(var, raw)
    for name in tpl.variables:
        if name not in values:
            raise PackerError(
                f'Unset variable "{name}"',
                "A used variable must be set or have a default value; see\n"
                "https://packer.io/docs/templates/hcl_templates/syntax for details.",
            )
    ctx = HclContext(var=values)
    for name, var in tpl.variables.items():
        for condition, message in var.validations:
            try:
                ok = ctx.value(condition)
            except HclError as exc:
                raise PackerError("Invalid validation condition", f'variable "{name}": {exc}') from None
            if ok is not True:
                fname, lineno, line = tpl.line_of(rf'^\s*variable\s+"{re.escape(name)}"')
                vfile, vline, _ = tpl.line_of(r"^\s*validation\s*\{")
                raise PackerError(
                    "Invalid value for variable",
                    f"  on {fname} line {lineno}:\n  {lineno}: {line.strip()}\n\n{message}\n\n"
                    f"This was checked by the validation rule at {fname}:{_validation_line(tpl, name)}.",
                )
    return values


def _validation_line(tpl: Template, name: str) -> str:
    fname, lineno, _ = tpl.line_of(rf'^\s*variable\s+"{re.escape(name)}"')
    lines = next(f for f in tpl.files if f.name == fname).read_text().splitlines()
    for i in range(lineno, min(lineno + 30, len(lines))):
        if re.match(r"^\s*validation\s*\{", lines[i]):
            col = len(lines[i]) - len(lines[i].lstrip()) + 1
            return f"{i + 1},{col}-{col + 10}"
    return f"{lineno},1-2"


def check_required_version(tpl: Template) -> None:
    for block in tpl.blocks.get("packer", []):
        raw = block.get("required_version")
        if not raw:
            continue
        constraint = HclContext().value(raw)
        for part in str(constraint).split(","):
            m = re.match(r"^\s*(>=|<=|!=|=|>|<|~>)?\s*([\d.]+)\s*$", part)
            if not m:
                continue
            op, want = m.group(1) or "=", _vtuple(m.group(2))
            have = _vtuple(PACKER_VERSION)
            ok = {
                ">=": have >= want,
                "<=": have <= want,
                ">": have > want,
                "<": have < want,
                "=": have == want,
                "!=": have != want,
                "~>": have >= want and have[: len(want) - 1] == want[: len(want) - 1],
            }[op]
            if not ok:
                raise PackerError(
                    "Unsupported Packer Core version",
                    f"This configuration does not support Packer version {PACKER_VERSION}. To proceed, either "
                    "choose another supported Packer version or update the root module's version constraint.",
                )


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".") if x.isdigit())


def required_plugins(tpl: Template) -> dict[str, str]:
    """``{source: version}`` from ``packer { required_plugins { ... } }``."""
    out: dict[str, str] = {}
    const = HclContext()
    for block in tpl.blocks.get("packer", []):
        for rp in block.get("required_plugins", []) or []:
            for _name, spec in rp.items():
                if _name.startswith("__"):
                    continue
                spec = const.value(spec)
                version = re.sub(r"^[=~>< ]+", "", str(spec.get("version", ""))).strip()
                out[str(spec.get("source", ""))] = version
    return out


def plugin_dir(environ: Mapping[str, str]) -> Path:
    if environ.get("PACKER_PLUGIN_PATH"):
        return Path(environ["PACKER_PLUGIN_PATH"])
    home = Path(environ.get("HOME") or Path.home())
    return home / ".config" / "packer" / "plugins"


def plugin_path(environ: Mapping[str, str], source: str, version: str) -> Path:
    return plugin_dir(environ) / source / AMAZON_PLUGIN_BINARY.format(version=version)


# ========================================================================================== output (UI)


class UI:
    """Packer's UI: human lines, or machine-readable ``timestamp,target,type,data...`` lines."""

    def __init__(self, machine: bool, stream: Any = None) -> None:
        self.machine_readable = machine
        self.stream = stream or sys.stdout
        self.lock = threading.Lock()

    @staticmethod
    def escape(value: str) -> str:
        return value.replace(",", "%!(PACKER_COMMA)").replace("\r", "\\r").replace("\n", "\\n")

    def _write(self, line: str) -> None:
        with self.lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except BrokenPipeError:  # the reader went away; keep cleaning up regardless
                pass

    def machine(self, target: str, kind: str, *data: str) -> None:
        if self.machine_readable:
            parts = [str(int(time.time())), target, kind, *(self.escape(str(d)) for d in data)]
            self._write(",".join(parts))

    def _ui(self, sub: str, text: str) -> None:
        if self.machine_readable:
            self.machine("", "ui", sub, text)
        else:
            self._write(text)

    def say(self, text: str) -> None:
        self._ui("say", text)

    def message(self, text: str) -> None:
        self._ui("message", text)

    def error(self, text: str) -> None:
        self._ui("error", text)


class TargetedUI:
    """The UI of one build: ``==> <build>: `` for say/error, ``    <build>: `` for message."""

    def __init__(self, ui: UI, target: str) -> None:
        self.ui = ui
        self.target = target

    def say(self, text: str) -> None:
        self.ui.say("\n".join(f"==> {self.target}: {line}" for line in text.split("\n")))

    def message(self, text: str) -> None:
        self.ui.message("\n".join(f"    {self.target}: {line}" for line in text.split("\n")))

    def error(self, text: str) -> None:
        self.ui.error("\n".join(f"==> {self.target}: {line}" for line in text.split("\n")))

    def machine(self, kind: str, *data: str) -> None:
        self.ui.machine(self.target, kind, *data)


def human_duration(seconds: float) -> str:
    """Go's duration as Packer prints it: ``2 minutes 3 seconds``, ``12 seconds 41 milliseconds``."""
    total_ms = int(round(seconds * 1000))
    h, rem = divmod(total_ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    parts = []
    for n, unit in ((h, "hour"), (m, "minute"), (s, "second")):
        if n:
            parts.append(f"{n} {unit}{'s' if n != 1 else ''}")
    if not h and not m:
        parts.append(f"{ms} millisecond{'s' if ms != 1 else ''}")
    return " ".join(parts) or "0 milliseconds"


# ======================================================================================= package list

_DEBIAN_BASE: list[tuple[str, str, int]] = [
    # (name, version prefix, security-update period in weeks; 0: never updated in the stable release)
    ("adduser", "3.134", 0),
    ("apt", "2.6.1", 0),
    ("apt-utils", "2.6.1", 0),
    ("base-files", "12.4+deb12u", 9),
    ("base-passwd", "3.6.1", 0),
    ("bash", "5.2.15-2+b", 17),
    ("bsdutils", "1:2.38.1-5+deb12u", 13),
    ("ca-certificates", "20230311+deb12u", 21),
    ("chrony", "4.3-2+deb12u", 26),
    ("cloud-init", "22.4.2-1+deb12u", 15),
    ("coreutils", "9.1-1", 0),
    ("cron", "3.0pl1-162", 0),
    ("curl", "7.88.1-10+deb12u", 5),
    ("dash", "0.5.12-2", 0),
    ("dbus", "1.14.10-1~deb12u", 19),
    ("debconf", "1.5.82", 0),
    ("debian-archive-keyring", "2023.3+deb12u", 31),
    ("diffutils", "1:3.8-4", 0),
    ("distro-info-data", "0.58+deb12u", 11),
    ("dpkg", "1.21.22", 0),
    ("e2fsprogs", "1.47.0-2", 0),
    ("findutils", "4.9.0-4", 0),
    ("gcc-12-base", "12.2.0-14+deb12u", 29),
    ("gpgv", "2.2.40-1.1+deb12u", 23),
    ("grep", "3.8-5", 0),
    ("grub-common", "2.06-13+deb12u", 27),
    ("gzip", "1.12-1", 0),
    ("hostname", "3.23+nmu1", 0),
    ("ifupdown", "0.8.41", 0),
    ("init-system-helpers", "1.65.2", 0),
    ("iproute2", "6.1.0-3", 0),
    ("iputils-ping", "3:20221126-1+deb12u", 33),
    ("less", "590-2.1~deb12u", 24),
    ("libaudit1", "1:3.0.9-1", 0),
    ("libc-bin", "2.36-9+deb12u", 6),
    ("libc6", "2.36-9+deb12u", 6),
    ("libcap2", "1:2.66-4+deb12u", 35),
    ("libcurl4", "7.88.1-10+deb12u", 5),
    ("libexpat1", "2.5.0-1+deb12u", 8),
    ("libgcrypt20", "1.10.1-3", 0),
    ("libglib2.0-0", "2.74.6-2+deb12u", 10),
    ("libgnutls30", "3.7.9-2+deb12u", 7),
    ("libgssapi-krb5-2", "1.20.1-2+deb12u", 12),
    ("libk5crypto3", "1.20.1-2+deb12u", 12),
    ("libkrb5-3", "1.20.1-2+deb12u", 12),
    ("libkrb5support0", "1.20.1-2+deb12u", 12),
    ("liblzma5", "5.4.1-0.2", 0),
    ("libncursesw6", "6.4-4", 0),
    ("libnghttp2-14", "1.52.0-1+deb12u", 14),
    ("libpam-modules", "1.5.2-6+deb12u", 22),
    ("libpam-runtime", "1.5.2-6+deb12u", 22),
    ("libpam0g", "1.5.2-6+deb12u", 22),
    ("libpcre2-8-0", "10.42-1", 0),
    ("libpython3.11-minimal", "3.11.2-6+deb12u", 9),
    ("libpython3.11-stdlib", "3.11.2-6+deb12u", 9),
    ("libselinux1", "3.4-1+b6", 0),
    ("libsqlite3-0", "3.40.1-2+deb12u", 16),
    ("libssh2-1", "1.10.0-3+b1", 0),
    ("libssl3", "3.0.15-1~deb12u", 4),
    ("libsystemd0", "252.33-1~deb12u", 7),
    ("libtasn1-6", "4.19.0-2+deb12u", 25),
    ("libudev1", "252.33-1~deb12u", 7),
    ("libxml2", "2.9.14+dfsg-1.3~deb12u", 6),
    ("libzstd1", "1.5.4+dfsg2-5", 0),
    ("linux-image-cloud-amd64", "6.1.128-1+deb12u", 3),
    ("locales", "2.36-9+deb12u", 6),
    ("login", "1:4.13+dfsg1-1+deb12u", 28),
    ("logrotate", "3.21.0-1", 0),
    ("mawk", "1.3.4.20200120-3.1", 0),
    ("mount", "2.38.1-5+deb12u", 13),
    ("ncurses-base", "6.4-4", 0),
    ("netbase", "6.4", 0),
    ("openssh-client", "1:9.2p1-2+deb12u", 8),
    ("openssh-server", "1:9.2p1-2+deb12u", 8),
    ("openssh-sftp-server", "1:9.2p1-2+deb12u", 8),
    ("openssl", "3.0.15-1~deb12u", 4),
    ("passwd", "1:4.13+dfsg1-1+deb12u", 28),
    ("perl-base", "5.36.0-7+deb12u", 18),
    ("procps", "2:4.0.2-3", 0),
    ("python3", "3.11.2-1+b1", 0),
    ("python3-minimal", "3.11.2-1+b1", 0),
    ("python3-pytest", "7.2.1-2", 0),
    ("python3-testinfra", "7.0.0-1", 0),
    ("python3.11", "3.11.2-6+deb12u", 9),
    ("python3.11-minimal", "3.11.2-6+deb12u", 9),
    ("sed", "4.9-1", 0),
    ("sensible-utils", "0.0.17+nmu1", 0),
    ("sudo", "1.9.13p3-1+deb12u", 20),
    ("systemd", "252.33-1~deb12u", 7),
    ("systemd-sysv", "252.33-1~deb12u", 7),
    ("systemd-timesyncd", "252.33-1~deb12u", 7),
    ("tar", "1.34+dfsg-1.2+deb12u", 30),
    ("tzdata", "2024b-0+deb12u", 5),
    ("udev", "252.33-1~deb12u", 7),
    ("unattended-upgrades", "2.9.1+nmu3", 0),
    ("util-linux", "2.38.1-5+deb12u", 13),
    ("vim-tiny", "2:9.0.1378-2+deb12u", 11),
    ("wget", "1.21.3-1+deb12u", 32),
    ("zlib1g", "1:1.2.13.dfsg-1", 0),
]
_ROLE_PACKAGES: dict[str, list[tuple[str, str, int]]] = {
    "web": [
        ("libnginx-mod-http-geoip", "1.22.1-9+deb12u", 10),
        ("nginx", "1.22.1-9+deb12u", 10),
        ("nginx-common", "1.22.1-9+deb12u", 10),
    ],
    "worker": [
        ("python3-requests", "2.28.1+dfsg-1+deb12u", 12),
        ("python3-urllib3", "1.26.12-1+deb12u", 9),
    ],
}
_EPOCH = dt.date(2025, 1, 6)  # a Monday: week 0 of the generated package history


def _week_of(version: str) -> int:
    m = re.match(r"^(\d{4})\.(\d{2})\.(\d{2})-\d+$", version)
    if m:
        try:
            return max(0, (dt.date(int(m[1]), int(m[2]), int(m[3])) - _EPOCH).days // 7)
        except ValueError:
            pass
    return int(hashlib.sha256(version.encode()).hexdigest(), 16) % 100


def package_list(role: str, version: str) -> str:
    """``name<TAB>version`` lines (sorted, as dpkg-query | sort -u) for an image of ``role`` at ``version``."""
    week = _week_of(version)
    entries = list(_DEBIAN_BASE) + _ROLE_PACKAGES.get(role, [])
    lines = []
    for name, prefix, period in sorted(entries):
        if period:
            offset = int(hashlib.sha256(name.encode()).hexdigest(), 16) % period
            lines.append(f"{name}\t{prefix}{1 + (week + offset) // period}")
        else:
            lines.append(f"{name}\t{prefix}")
    return "\n".join(lines) + "\n"


# ================================================================================================ build


@dataclass
class Settings:
    machine_readable: bool = False
    color: bool = True
    force: bool = False
    on_error: str = "cleanup"
    only: list[str] = field(default_factory=list)
    except_: list[str] = field(default_factory=list)
    cli_vars: list[tuple[str, str]] = field(default_factory=list)
    var_files: list[Path] = field(default_factory=list)
    target: Path | None = None


class Canceller:
    """SIGINT/SIGTERM → cancel the build once (Packer ignores further interrupts while cleaning up)."""

    def __init__(self, ui: UI) -> None:
        self.ui = ui
        self.event = threading.Event()
        self.signal_name = ""

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handler)
        signal.signal(signal.SIGTERM, self._handler)

    def _handler(self, signum: int, _frame: Any) -> None:
        if self.event.is_set():
            return
        self.signal_name = {signal.SIGINT: "interrupt", signal.SIGTERM: "terminated"}.get(signum, str(signum))
        self.ui.error(f"Cancelling build after receiving {self.signal_name}")
        self.event.set()

    @property
    def cancelled(self) -> bool:
        return self.event.is_set()

    def check(self) -> None:
        if self.event.is_set():
            raise Cancelled()

    def sleep(self, seconds: float) -> None:
        if self.event.wait(max(0.0, seconds)):
            raise Cancelled()


@dataclass
class Injection:
    stage: str = ""
    detail: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Injection:
        raw = environ.get(FAIL_ENV, "").strip()
        stage, _, detail = raw.partition(":")
        return cls(stage.strip().lower().replace("-", "_"), detail.strip())

    def at(self, stage: str) -> bool:
        return self.stage == stage


class AmazonEbsBuild:
    """The ``amazon-ebs`` builder's steps against the sandbox, with Packer's cleanup on error or cancel."""

    def __init__(
        self,
        tpl: Template,
        values: dict[str, Any],
        source_name: str,
        source_body: dict[str, Any],
        build_body: dict[str, Any],
        build_name: str,
        settings: Settings,
        ui: UI,
        canceller: Canceller,
        environ: Mapping[str, str],
    ) -> None:
        self.tpl = tpl
        self.values = values
        self.source_name = source_name
        self.raw_source = source_body
        self.build_body = build_body
        self.name = f"{build_name}.amazon-ebs.{source_name}" if build_name else f"amazon-ebs.{source_name}"
        self.settings = settings
        self.ui = TargetedUI(ui, self.name)
        self.root_ui = ui
        self.canceller = canceller
        self.environ = environ
        self.injection = Injection.from_env(environ)
        self.cleanups: list[tuple[str, Callable[[], None]]] = []
        self.generated: dict[str, str] = {}
        self.poll_max = float(environ.get(POLL_MAX_ENV, "1.0") or 1.0)
        self.ctx = HclContext(var=values, path={"root": str(tpl.root), "cwd": os.getcwd()})
        self.src = self.ctx.value({k: v for k, v in source_body.items() if k not in _LATE_KEYS})
        self.region = str(self.src.get("region") or "")
        self.artifacts: dict[str, str] = {}

    # -- aws ------------------------------------------------------------------------------------------
    def client(self, service: str, region: str | None = None) -> Any:
        import boto3
        from botocore.config import Config
        from botocore.credentials import RefreshableCredentials

        session = boto3.session.Session()
        creds = session.get_credentials()
        if isinstance(creds, RefreshableCredentials):
            # as the AWS SDK for Go (Packer's) does with process or assumed-role credentials: renew them when they
            # expire (its credentials cache), not 10-15 minutes ahead as botocore does
            creds._advisory_refresh_timeout = creds._mandatory_refresh_timeout = 0
        return session.client(
            service,
            region_name=region or self.region,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60),
        )

    def poll(self, probe: Callable[[], str], done: Iterable[str], failed: Iterable[str], what: str) -> str:
        done, failed = set(done), set(failed)
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        delay = 0.05
        while True:
            self.canceller.check()
            state = probe()
            if state in done:
                return state
            if state in failed:
                raise StepError(f"{what}: unexpected state {state!r}")
            if time.monotonic() > deadline:
                raise StepError(f"{what}: timeout while waiting for state to become {sorted(done)}")
            self.canceller.sleep(delay)
            delay = min(delay * 2, self.poll_max)

    # -- the build ------------------------------------------------------------------------------------
    def run(self) -> tuple[str | None, str | None]:
        """Run every step; returns (artifact id, error). Cleanups always run (Packer's -on-error=cleanup)."""
        error: str | None = None
        try:
            self.steps()
        except Cancelled as exc:
            error = str(exc)
        except StepError as exc:
            error = str(exc)
            self.ui.error(error)
        except PackerError as exc:
            error = exc.summary
            self.ui.error(exc.render())
        except Exception as exc:  # an AWS error the real builder would also report verbatim
            error = f"{type(exc).__name__}: {exc}"
            self.ui.error(error)
        if error is not None and self.settings.on_error == "abort":
            self.ui.error("Step failed with -on-error=abort: leaving everything as it is")
            return None, error
        self.run_cleanups()
        if error is not None:
            return None, error
        return ",".join(f"{r}:{a}" for r, a in sorted(self.artifacts.items())), None

    def run_cleanups(self) -> None:
        for _what, fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as exc:  # keep cleaning up; Packer reports and goes on
                self.ui.error(f"Error during cleanup ({_what}): {exc}")
        self.cleanups.clear()

    def steps(self) -> None:
        ec2 = self.client("ec2")
        ui = self.ui
        ami_name = str(self.src.get("ami_name") or "")
        if not ami_name:
            raise PackerError("Failed preparing the template", "ami_name must be specified")
        ui.say("Prevalidating any provided VPC information")
        ui.say(f"Prevalidating AMI Name: {ami_name}")
        taken = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [ami_name]}])["Images"]
        if taken:
            if self.settings.force or self.src.get("force_deregister"):
                for image in taken:
                    ui.say(f"Deregistered AMI id: {image['ImageId']}")
                    self._deregister(ec2, image["ImageId"], delete_snapshots=True)
            else:
                raise StepError(f"Error: AMI Name: '{ami_name}' is used by an existing AMI: {taken[0]['ImageId']}")
        self.canceller.check()

        # --- source AMI -------------------------------------------------------------------------------
        source = self.find_source_ami(ec2)
        ui.message(f"Found Image ID: {source['ImageId']}")
        self.generated = {
            "SourceAMI": source["ImageId"],
            "SourceAMIName": source.get("Name", ""),
            "SourceAMIOwner": source.get("OwnerId", ""),
            "SourceAMIOwnerName": source.get("ImageOwnerAlias", ""),
            "SourceAMICreationDate": source.get("CreationDate", ""),
            "BuildRegion": self.region,
        }
        self.ctx.scopes["build"] = {**self.generated, "ID": "", "name": self.source_name}

        # --- temporary key pair and security group ---------------------------------------------------
        key_name = f"packer_{uuid.uuid4().hex[:24]}"
        key_type = str(self.src.get("temporary_key_pair_type") or "rsa")
        ui.say(f"Creating temporary keypair: {key_name}")
        ec2.create_key_pair(KeyName=key_name, KeyType=key_type)
        self.cleanups.append(("key pair", lambda: self._delete_key_pair(ec2, key_name)))
        self.canceller.check()

        subnet_id = str(self.src.get("subnet_id") or "")
        vpc_id = self._vpc_of(ec2, subnet_id)
        sg_name = f"packer_{uuid.uuid4().hex[:24]}"
        ui.say("Creating temporary security group for this instance: " + sg_name)
        sg_args: dict[str, Any] = {"GroupName": sg_name, "Description": "Temporary group for Packer"}
        if vpc_id:
            sg_args["VpcId"] = vpc_id
        sg_id = ec2.create_security_group(**sg_args)["GroupId"]
        self.cleanups.append(("security group", lambda: self._delete_security_group(ec2, sg_id)))
        ui.say("Authorizing access to port 22 from [0.0.0.0/0] in the temporary security groups...")
        ec2.authorize_security_group_ingress(
            GroupId=sg_id,
            IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
        )
        self.canceller.check()

        # --- the builder instance ----------------------------------------------------------------------
        ui.say("Launching a source AWS instance...")
        if self.injection.at("launch"):
            raise StepError(
                "Error launching source instance: InsufficientInstanceCapacity: We currently do not have "
                f"sufficient {self.src.get('instance_type')} capacity in the Availability Zone you requested "
                "(phoenix packer double: injected failure)."
            )
        run_args = self._run_instances_args(source, key_name, sg_id, subnet_id)
        instance = ec2.run_instances(**run_args)["Instances"][0]
        instance_id = instance["InstanceId"]
        self.cleanups.append(("source instance", lambda: self._terminate(ec2, instance_id)))
        ui.message(f"Instance ID: {instance_id}")
        ui.say(f"Waiting for instance ({instance_id}) to become ready...")
        self.poll(
            lambda: self._instance_state(ec2, instance_id),
            ("running",),
            ("terminated", "shutting-down", "stopped"),
            f"Error waiting for instance ({instance_id}) to become ready",
        )
        private_ip = self._instance(ec2, instance_id).get("PrivateIpAddress", "10.0.0.10")

        # --- "SSH" and provisioning ------------------------------------------------------------------
        ui.say(f"Using SSH communicator to connect: {private_ip}")
        ui.say("Waiting for SSH to become available...")
        if self.injection.at("ssh"):
            raise StepError("Timeout waiting for SSH. (phoenix packer double: injected failure)")
        ui.say("Connected to SSH!")
        self.provision()

        # --- the image ---------------------------------------------------------------------------------
        ui.say("Stopping the source instance...")
        ec2.stop_instances(InstanceIds=[instance_id])
        ui.say("Waiting for the instance to stop...")
        self.poll(
            lambda: self._instance_state(ec2, instance_id),
            ("stopped",),
            ("terminated",),
            "Error waiting for instance to stop",
        )
        ui.say(f"Creating AMI {ami_name} from instance {instance_id}")
        image_args: dict[str, Any] = {"InstanceId": instance_id, "Name": ami_name}
        if self.src.get("ami_description"):
            image_args["Description"] = str(self.src["ami_description"])
        # as the amazon plugin does since 1.0.2 (builder/ebs/step_create_ami.go; skip_ami_run_tags turns it off): the run tags go on the new image and its
        # snapshot in CreateImage itself, so an image whose build fails before the final tags still carries them
        if self.src.get("skip_ami_run_tags"):
            ui.say("Skipping attaching run tags to AMI...")
        else:
            ui.say("Attaching run tags to AMI...")
            run_tags = [{"Key": k, "Value": v} for k, v in self._rendered_tags("run_tags").items()]
            if run_tags:
                image_args["TagSpecifications"] = [
                    {"ResourceType": kind, "Tags": run_tags} for kind in ("image", "snapshot")
                ]
        image_id = ec2.create_image(**image_args)["ImageId"]
        ui.message(f"AMI: {image_id}")
        self.cleanups.append(("AMI", lambda: self._deregister_on_failure(ec2, image_id)))
        if self.injection.at("ami"):
            ec2.create_tags(Resources=[image_id], Tags=[{"Key": "phoenix-sandbox:fail", "Value": "true"}])
        ui.say("Waiting for AMI to become ready...")
        try:
            self.poll(
                lambda: self._image_state(ec2, image_id),
                ("available",),
                ("failed", "error", "invalid", "deregistered"),
                "Error waiting for AMI",
            )
        except StepError:
            reason = self._image(ec2, image_id).get("StateReason", {}).get("Message", "unknown")
            raise StepError(f"Error waiting for AMI: Failed with ResourceNotReady error, which can occur when "
                            f"the AMI is in a failed state. StateReason: {reason}") from None
        if self.injection.at("ami"):
            raise StepError(
                "Error waiting for AMI: Failed with ResourceNotReady error (phoenix packer double: injected failure)"
            )
        if self.src.get("imds_support"):
            try:
                ec2.modify_image_attribute(ImageId=image_id, ImdsSupport={"Value": str(self.src["imds_support"])})
            except Exception:  # the sandbox may not know the attribute; Packer sets it at registration
                pass
        self.artifacts[self.region] = image_id

        # --- copies to the other regions -------------------------------------------------------------
        copy_regions = [r for r in (self.src.get("ami_regions") or []) if r != self.region]
        if copy_regions:
            ui.say(f"Copying/Encrypting AMI ({image_id}) to other regions...")
            for region in copy_regions:
                ui.message(f"Copying to: {region}")
                regional = self.client("ec2", region)
                copy_id = regional.copy_image(
                    SourceRegion=self.region, SourceImageId=image_id, Name=ami_name,
                    Description=str(self.src.get("ami_description") or ""),
                )["ImageId"]
                self.artifacts[region] = copy_id
                self.cleanups.append((f"AMI copy {region}", lambda c=regional, i=copy_id: self._deregister_on_failure(c, i)))
            ui.message("Waiting for all copies to complete...")
            for region in copy_regions:
                regional = self.client("ec2", region)
                copy_id = self.artifacts[region]
                self.poll(
                    lambda c=regional, i=copy_id: self._image_state(c, i),
                    ("available",),
                    ("failed", "error", "invalid", "deregistered"),
                    f"Error waiting for AMI ({copy_id}) in region ({region})",
                )

        # --- tags --------------------------------------------------------------------------------------
        tags = self._rendered_tags("tags")
        snapshot_tags = self._rendered_tags("snapshot_tags")
        for region, ami in sorted(self.artifacts.items()):
            regional = ec2 if region == self.region else self.client("ec2", region)
            ui.say(f"Adding tags to AMI ({ami})...")
            ui.message(f"Tagging AMI: {ami}")
            if tags:
                regional.create_tags(Resources=[ami], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
            snapshots = [
                bdm["Ebs"]["SnapshotId"]
                for bdm in self._image(regional, ami).get("BlockDeviceMappings", [])
                if bdm.get("Ebs", {}).get("SnapshotId")
            ]
            for snap in snapshots:
                ui.message(f"Tagging snapshot: {snap}")
            ui.message("Creating AMI tags")
            for k, v in tags.items():
                ui.message(f'Adding tag: "{k}": "{v}"')
            ui.message("Creating snapshot tags")
            for k, v in snapshot_tags.items():
                ui.message(f'Adding tag: "{k}": "{v}"')
            if snapshots and snapshot_tags:
                regional.create_tags(Resources=snapshots, Tags=[{"Key": k, "Value": v} for k, v in snapshot_tags.items()])
        self.canceller.check()
        # Past this point the AMI is the build's artifact: cleanups must not deregister it.
        self.cleanups = [(w, fn) for (w, fn) in self.cleanups if not w.startswith("AMI")]

    # -- steps' helpers -------------------------------------------------------------------------------
    def find_source_ami(self, ec2: Any) -> dict[str, Any]:
        if self.src.get("source_ami"):
            images = ec2.describe_images(ImageIds=[str(self.src["source_ami"])])["Images"]
            if not images:
                raise StepError(f"Error querying AMI: source AMI {self.src['source_ami']} not found")
            return images[0]
        blocks = self.src.get("source_ami_filter") or []
        if not blocks:
            raise PackerError("Failed preparing the template", "A source_ami or source_ami_filter must be specified")
        flt = blocks[0]
        owners = [str(o) for o in (flt.get("owners") or [])]
        if not owners:
            raise PackerError(
                "Failed preparing the template",
                "For security reasons, you must declare an owner using the Owners field of source_ami_filter; "
                "for reference, see the AWS documentation on DescribeImages.",
            )
        filters = {str(k): v for k, v in (flt.get("filters") or {}).items()}
        # moto gives images made by CreateImage RootDeviceType "standard" (AWS: "ebs"): filter that one here.
        root_type = filters.pop("root-device-type", None)
        aws_filters = [{"Name": k, "Values": v if isinstance(v, list) else [str(v)]} for k, v in filters.items()]
        if self.injection.at("source_ami"):
            images: list[dict[str, Any]] = []
        else:
            images = ec2.describe_images(Owners=owners, Filters=aws_filters)["Images"]
        if root_type is not None:
            wanted = {str(root_type)} | ({"standard"} if str(root_type) == "ebs" else set())
            images = [i for i in images if i.get("RootDeviceType", "ebs") in wanted]
        if not images:
            raise StepError(
                "Error querying AMI: No AMI was found matching filters: "
                + json.dumps({"Filters": aws_filters, "Owners": owners}, separators=(",", ":"))
            )
        if len(images) > 1 and not flt.get("most_recent"):
            raise StepError(
                "Error querying AMI: Your query returned more than one result. Please try a more specific "
                "search, or set most_recent to true."
            )
        return max(images, key=lambda i: (i.get("CreationDate", ""), i["ImageId"]))

    def _run_instances_args(self, source: dict[str, Any], key_name: str, sg_id: str, subnet_id: str) -> dict[str, Any]:
        args: dict[str, Any] = {
            "ImageId": source["ImageId"],
            "MinCount": 1,
            "MaxCount": 1,
            "InstanceType": str(self.src.get("instance_type") or "t3.small"),
            "KeyName": key_name,
            "SecurityGroupIds": [sg_id],
            "InstanceInitiatedShutdownBehavior": "stop",
        }
        if subnet_id:
            args["SubnetId"] = subnet_id
        if self.src.get("iam_instance_profile"):
            args["IamInstanceProfile"] = {"Name": str(self.src["iam_instance_profile"])}
        for mo in self.src.get("metadata_options") or []:
            opts: dict[str, Any] = {}
            if mo.get("http_endpoint"):
                opts["HttpEndpoint"] = str(mo["http_endpoint"])
            if mo.get("http_tokens"):
                opts["HttpTokens"] = str(mo["http_tokens"])
            if mo.get("http_put_response_hop_limit") is not None:
                opts["HttpPutResponseHopLimit"] = int(mo["http_put_response_hop_limit"])
            if opts:
                args["MetadataOptions"] = opts
        bdms = []
        for b in self.src.get("launch_block_device_mappings") or []:
            ebs: dict[str, Any] = {}
            if b.get("volume_type"):
                ebs["VolumeType"] = str(b["volume_type"])
            if b.get("volume_size") is not None:
                ebs["VolumeSize"] = int(b["volume_size"])
            if b.get("encrypted") is not None:
                ebs["Encrypted"] = bool(b["encrypted"])
            if b.get("kms_key_id"):
                ebs["KmsKeyId"] = str(b["kms_key_id"])
            if b.get("delete_on_termination") is not None:
                ebs["DeleteOnTermination"] = bool(b["delete_on_termination"])
            bdms.append({"DeviceName": str(b.get("device_name") or "/dev/xvda"), "Ebs": ebs})
        if bdms:
            args["BlockDeviceMappings"] = bdms
        run_tags = self._rendered_tags("run_tags")
        if run_tags:
            args["TagSpecifications"] = [
                {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in run_tags.items()]}
            ]
        return args

    def _rendered_tags(self, key: str) -> dict[str, str]:
        raw = self.raw_source.get(key)
        if not raw:
            return {}
        values = self.ctx.value(raw)
        return {str(k): render_go_template(_to_str(v), self.generated) for k, v in values.items()}

    def provision(self) -> None:
        ui = self.ui
        delay = float(self.environ.get(DELAY_ENV, "0") or 0)
        provisioners = self.build_body.get("provisioner", []) or []
        delayed = False
        for entry in provisioners:
            for qkind, raw in entry.items():
                kind = unquote(qkind)
                body = self.ctx.value({k: v for k, v in raw.items() if not k.startswith("__")})
                self.canceller.check()
                if kind == "file":
                    self._file_provisioner(body)
                elif kind == "shell":
                    for script in body.get("scripts") or ([body["script"]] if body.get("script") else []):
                        ui.say(f"Provisioning with shell script: {script}")
                        if not delayed and delay > 0:
                            delayed = True
                            ui.message(f"(phoenix packer double: lingering {delay:g}s in this provisioner)")
                            self.canceller.sleep(delay)
                        self._script_output(Path(str(script)).name)
                    for _line in body.get("inline") or []:
                        ui.say("Provisioning with shell script: /tmp/packer-shell" + uuid.uuid4().hex[:9])
                elif kind == "breakpoint":
                    continue
                else:
                    raise PackerError(
                        "Failed preparing provisioner-block",
                        f'The phoenix packer double does not emulate the "{kind}" provisioner.',
                    )
        if delay > 0 and not delayed:
            self.canceller.sleep(delay)

    def _file_provisioner(self, body: Mapping[str, Any]) -> None:
        ui = self.ui
        src, dest = str(body.get("source", "")), str(body.get("destination", ""))
        if body.get("direction") == "download":
            ui.say(f"Downloading {src} => {dest}")
            target = Path(dest)
            if not target.is_absolute():
                target = Path.cwd() / target
            target.parent.mkdir(parents=True, exist_ok=True)
            custom = self.environ.get(PACKAGES_ENV)
            if custom:
                content = Path(custom).read_text()
            else:
                content = package_list(str(self.values.get("role", "")), str(self.values.get("version", "")))
            target.write_text(content)
            return
        ui.say(f"Uploading {src} => {dest}")
        if not Path(src).exists():
            raise StepError(f"Error uploading file: stat {src}: no such file or directory")

    def _script_output(self, script: str) -> None:
        ui = self.ui
        role = str(self.values.get("role", ""))
        if script.startswith("10-"):
            ui.message("10-security-updates: apt-get update (Debian GNU/Linux 12 (bookworm))")
            ui.message("10-security-updates: apt-get full-upgrade")
            ui.message("10-security-updates: all packages up to date")
        elif script.startswith("20-"):
            ui.message(f"20-role: role {role} set up")
        elif script.startswith("30-"):
            ui.message("30-harden-ssh: sshd configuration hardened and valid")
        elif script.startswith("40-"):
            ui.message('40-unattended-upgrades: APT::Periodic::Update-Package-Lists "1"; APT::Periodic::Unattended-Upgrade "1";')
        elif script.startswith("50-"):
            ui.message("50-install-tests: test files in /opt/phoenix/image-tests; runner /usr/local/bin/phoenix-image-test")
        elif script.startswith("60-"):
            self._image_tests("build", fail=self.injection.at("provision"))
        elif script.startswith("90-"):
            ui.message("90-cleanup: done")
        elif script.startswith("95-"):
            ui.message("95-package-list: packages in /var/lib/phoenix/packages.tsv")
        elif script.startswith("98-"):
            self._image_tests("final", fail=False)

    def _checks(self) -> list[str]:
        tests_dir = self.tpl.root / "tests"
        checks = []
        for f in sorted(tests_dir.glob("test_*.py")):
            for m in re.finditer(r"^def (test_\w+)\(", f.read_text(), re.M):
                checks.append(f"{f.name}::{m.group(1)}")
        return checks or ["test_image.py::test_image"]

    def _image_tests(self, stage: str, fail: bool) -> None:
        ui = self.ui
        role = str(self.values.get("role", ""))
        checks = self._checks()
        failing = self.injection.detail or next((c for c in checks if c.startswith("test_ssh.py::")), checks[0])
        if fail and failing not in checks:
            checks.append(failing)
        ui.message("============================= test session starts ==============================")
        ui.message("platform linux -- Python 3.11.2, pytest-7.2.1, pluggy-1.0.0+repack -- /usr/bin/python3")
        ui.message(f"collected {len(checks)} items")
        ui.message("")
        for c in checks:
            bad = fail and c == failing
            ui.message(f"{c}[local] {'FAILED' if bad else 'PASSED'}")
        if fail:
            ui.message("")
            ui.message("=================================== FAILURES ===================================")
            ui.message(f"_____________________________ {failing.split('::')[-1]}[local] _____________________________")
            ui.message("E   AssertionError: sshd: permitrootlogin is 'yes', expected 'no'")
            ui.message("=========================== short test summary info ============================")
            ui.message(f"FAILED {failing}[local] - AssertionError: sshd: permitrootlogin is 'yes', expected 'no'")
            ui.message(f"========================= 1 failed, {len(checks) - 1} passed in 2.41s =========================")
        else:
            ui.message(f"============================== {len(checks)} passed in 2.38s ===============================")
        for c in checks:
            ui.message(f"phoenix-check: {'FAILED' if fail and c == failing else 'PASSED'} {c}[local]")
        result = "fail" if fail else "pass"
        ui.message(
            f"phoenix-image-test: result={result} exit={1 if fail else 0} stage={stage} role={role} "
            f"junit=/var/log/phoenix/image-test-{stage}.xml"
        )
        if fail:
            raise StepError("Script exited with non-zero exit status: 1. Allowed exit codes are: [0]")

    # -- small AWS helpers ----------------------------------------------------------------------------
    @staticmethod
    def _instance(ec2: Any, instance_id: str) -> dict[str, Any]:
        res = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return res[0]["Instances"][0] if res and res[0]["Instances"] else {}

    def _instance_state(self, ec2: Any, instance_id: str) -> str:
        return str(self._instance(ec2, instance_id).get("State", {}).get("Name", "missing"))

    @staticmethod
    def _image(ec2: Any, image_id: str) -> dict[str, Any]:
        try:
            images = ec2.describe_images(ImageIds=[image_id])["Images"]
        except Exception:
            return {}
        return images[0] if images else {}

    def _image_state(self, ec2: Any, image_id: str) -> str:
        return str(self._image(ec2, image_id).get("State", "pending"))

    @staticmethod
    def _vpc_of(ec2: Any, subnet_id: str) -> str:
        if subnet_id:
            subnets = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"]
            return subnets[0]["VpcId"] if subnets else ""
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
        return vpcs[0]["VpcId"] if vpcs else ""

    def _terminate(self, ec2: Any, instance_id: str) -> None:
        self.ui.say("Terminating the source AWS instance...")
        ec2.terminate_instances(InstanceIds=[instance_id])
        deadline = time.monotonic() + 600
        delay = 0.05
        while self._instance_state(ec2, instance_id) not in ("terminated", "missing"):
            if time.monotonic() > deadline:
                raise StepError(f"Error waiting for instance ({instance_id}) to terminate")
            time.sleep(delay)  # cleanup is not cancellable
            delay = min(delay * 2, self.poll_max)
        self.ui.say("Cleaning up any extra volumes...")
        self.ui.say("No volumes to clean up, skipping")

    def _delete_security_group(self, ec2: Any, sg_id: str) -> None:
        self.ui.say("Deleting temporary security group...")
        ec2.delete_security_group(GroupId=sg_id)

    def _delete_key_pair(self, ec2: Any, key_name: str) -> None:
        self.ui.say("Deleting temporary keypair...")
        ec2.delete_key_pair(KeyName=key_name)

    def _deregister_on_failure(self, ec2: Any, image_id: str) -> None:
        self.ui.error("Deregistering the AMI and deleting associated snapshots because of cancellation, or error...")
        self._deregister(ec2, image_id, delete_snapshots=True)

    def _deregister(self, ec2: Any, image_id: str, delete_snapshots: bool) -> None:
        image = self._image(ec2, image_id)
        snapshots = [
            b["Ebs"]["SnapshotId"] for b in image.get("BlockDeviceMappings", []) if b.get("Ebs", {}).get("SnapshotId")
        ]
        ec2.deregister_image(ImageId=image_id)
        if delete_snapshots:
            for snap in snapshots:
                try:
                    ec2.delete_snapshot(SnapshotId=snap)
                except Exception:  # shared with another image (moto's default snapshots): leave it
                    pass


# the keys that need build variables (evaluated late, once the source AMI is known)
_LATE_KEYS = {"tags", "snapshot_tags", "run_tags", "run_volume_tags"}


# ============================================================================================ commands


def _parse_flags(args: list[str], allowed: set[str]) -> Settings:
    s = Settings()
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("-") or a == "-":
            rest.append(a)
            i += 1
            continue
        name, eq, val = a.lstrip("-").partition("=")
        if name not in allowed:
            raise PackerError(f"flag provided but not defined: -{name}", _usage_hint())
        bool_flags = {"machine-readable", "force", "debug", "timestamp-ui", "color", "upgrade", "syntax-only",
                      "no-warn-undeclared-var", "evaluate-datasources"}
        if name in bool_flags:
            value = val if eq else "true"
            if value not in ("true", "false", "1", "0"):
                raise PackerError(f'invalid boolean value "{value}" for -{name}', _usage_hint())
            on = value in ("true", "1")
            if name == "machine-readable":
                s.machine_readable = on
            elif name == "color":
                s.color = on
            elif name == "force":
                s.force = on
            i += 1
            continue
        if not eq:
            if i + 1 >= len(args):
                raise PackerError(f"flag needs an argument: -{name}", _usage_hint())
            val = args[i + 1]
            i += 2
        else:
            i += 1
        if name == "var":
            k, sep, v = val.partition("=")
            if not sep:
                raise PackerError(
                    "Invalid -var option",
                    f'The given -var option "{val}" is not correctly specified. It must be a variable name '
                    "and value separated an equals sign, like -var=\"key=value\".",
                )
            s.cli_vars.append((k.strip(), v))
        elif name == "var-file":
            s.var_files.append(Path(val))
        elif name == "on-error":
            if val not in ("cleanup", "abort", "ask", "run-cleanup-provisioner"):
                raise PackerError(f"invalid value {val!r} for flag -on-error", _usage_hint())
            s.on_error = val
        elif name == "only":
            s.only = [x for x in val.split(",") if x]
        elif name == "except":
            s.except_ = [x for x in val.split(",") if x]
        # parallel-builds, plugin-path...: accepted and ignored
    if len(rest) != 1:
        raise PackerError("A template path or directory is required", _usage_hint())
    s.target = Path(rest[0])
    return s


def _usage_hint() -> str:
    return "Usage: packer build [options] TEMPLATE\n\n  Will execute multiple builds in parallel as defined in the template."


_BUILD_FLAGS = {
    "machine-readable", "color", "var", "var-file", "force", "on-error", "only", "except", "debug",
    "parallel-builds", "timestamp-ui", "warn-on-undeclared-var",
}
_VALIDATE_FLAGS = {"machine-readable", "var", "var-file", "only", "except", "syntax-only", "no-warn-undeclared-var",
                   "evaluate-datasources"}
_INIT_FLAGS = {"machine-readable", "upgrade"}


def _sources(tpl: Template) -> dict[str, tuple[str, dict[str, Any]]]:
    """``{"amazon-ebs.phoenix": ("phoenix", body)}``"""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for entry in tpl.blocks.get("source", []):
        for qtype, named in entry.items():
            for qname, body in named.items():
                out[f"{unquote(qtype)}.{unquote(qname)}"] = (unquote(qname), body)
    return out


def _selected(name: str, only: list[str], except_: list[str]) -> bool:
    import fnmatch

    if only and not any(fnmatch.fnmatch(name, p) or name.endswith("." + p) or name == p for p in only):
        return False
    return not any(fnmatch.fnmatch(name, p) or name == p for p in except_)


def cmd_build(args: list[str], ui_holder: list[UI], environ: Mapping[str, str]) -> int:
    mr = any(a in ("-machine-readable", "--machine-readable", "-machine-readable=true") for a in args)
    ui = UI(machine=mr)
    ui_holder[0] = ui
    canceller = Canceller(ui)
    canceller.install()
    s = _parse_flags(args, _BUILD_FLAGS)
    assert s.target is not None
    tpl = load_template(s.target)
    check_required_version(tpl)
    for source, version in required_plugins(tpl).items():
        if not plugin_path(environ, source, version).exists():
            raise PackerError(
                "Missing plugins",
                f"The following plugins are required, but not installed:\n\n{source} = {version}\n\n"
                "Did you run packer init for this project ?",
            )
    values = resolve_variables(tpl, s.cli_vars, s.var_files, environ)
    sources = _sources(tpl)
    builds: list[AmazonEbsBuild] = []
    ctx = HclContext(var=values, path={"root": str(tpl.root), "cwd": os.getcwd()})
    for build_body in tpl.blocks.get("build", []):
        build_name = str(ctx.value(build_body.get("name", '""')) or "")
        for ref in ctx.value(build_body.get("sources", [])):
            key = str(ref).removeprefix("source.")
            if key not in sources:
                raise PackerError("Unknown source " + str(ref), f'Known: {", ".join(sorted(sources))}')
            source_name, body = sources[key]
            if not key.startswith("amazon-ebs."):
                raise PackerError("Unsupported source", f'The phoenix packer double only emulates amazon-ebs (got "{key}").')
            full = f"{build_name}.{key}" if build_name else key
            if not _selected(full, s.only, s.except_):
                continue
            builds.append(AmazonEbsBuild(tpl, values, source_name, body, build_body, build_name, s, ui, canceller, environ))

    start = time.monotonic()
    for b in builds:
        ui.say(f"{b.name}: output will be in this color.")
    ui.say("")
    results: list[tuple[AmazonEbsBuild, str | None, str | None, float]] = []
    for b in builds:  # Packer runs them in parallel; one at a time here
        t0 = time.monotonic()
        artifact, error = b.run()
        elapsed = time.monotonic() - t0
        if error is None and artifact:
            try:
                _manifest(b, tpl, artifact, ctx_values=values, force=s.force)
            except Exception as exc:  # a post-processor error fails the build
                error = f"1 error(s) occurred:\n\n* Post-processor failed: {exc}"
        if error is None:
            ui.say(f"Build '{b.name}' finished after {human_duration(elapsed)}.")
        else:
            ui.error(f"Build '{b.name}' errored after {human_duration(elapsed)}: {error}")
        results.append((b, artifact, error, elapsed))
    ui.say(f"\n==> Wait completed after {human_duration(time.monotonic() - start)}")
    if canceller.cancelled:
        ui.say("Cleanly cancelled builds after being interrupted.")
        return 1
    errors = [(b, e) for b, _a, e, _t in results if e is not None]
    if errors:
        ui.machine("", "error-count", str(len(errors)))
        ui.error("\n==> Some builds didn't complete successfully and had errors:")
        for b, e in errors:
            b.ui.machine("error", e or "")
            ui.error(f"--> {b.name}: {e}")
    ok = [(b, a) for b, a, e, _t in results if e is None and a]
    if ok:
        ui.say("\n==> Builds finished. The artifacts of successful builds are:")
        for b, artifact in ok:
            assert artifact is not None
            text = "AMIs were created:\n" + "".join(f"{p.split(':', 1)[0]}: {p.split(':', 1)[1]}\n" for p in artifact.split(","))
            b.ui.machine("artifact-count", "1")
            b.ui.machine("artifact", "0", "builder-id", BUILDER_ID)
            b.ui.machine("artifact", "0", "id", artifact)
            b.ui.machine("artifact", "0", "string", text)
            b.ui.machine("artifact", "0", "files-count", "0")
            b.ui.machine("artifact", "0", "end")
            ui.say(f"--> {b.name}: {text}")
    else:
        ui.say("\n==> Builds finished but no artifacts were created.")
    return 1 if errors else 0


def _manifest(b: AmazonEbsBuild, tpl: Template, artifact: str, ctx_values: dict[str, Any], force: bool) -> None:
    pps = b.build_body.get("post-processor", []) or []
    for entry in pps:
        for qkind, raw in entry.items():
            kind = unquote(qkind)
            if kind != "manifest":
                raise PackerError("Unsupported post-processor", f'The phoenix packer double only emulates "manifest" (got "{kind}").')
            b.ui.say("Running post-processor:  (type manifest)")
            body = b.ctx.value({k: v for k, v in raw.items() if not k.startswith("__")})
            output = Path(str(body.get("output") or "packer-manifest.json"))
            if not output.is_absolute():
                output = Path.cwd() / output
            run_uuid = os.environ.get("PACKER_RUN_UUID") or str(uuid.uuid4())
            custom = {str(k): _to_str(v) for k, v in (body.get("custom_data") or {}).items()}
            build = {
                "name": b.source_name,
                "builder_type": "amazon-ebs",
                "build_time": int(time.time()),
                "files": None,
                "artifact_id": artifact,
                "packer_run_uuid": run_uuid,
                "custom_data": custom or None,
            }
            if body.get("strip_time"):
                build.pop("build_time")
            data: dict[str, Any] = {"builds": [], "last_run_uuid": ""}
            if output.exists() and not force:
                try:
                    data = json.loads(output.read_text())
                except ValueError:
                    data = {"builds": [], "last_run_uuid": ""}
            data.setdefault("builds", []).append(build)
            data["last_run_uuid"] = run_uuid
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(json.dumps(data, indent=2) + "\n")


def cmd_validate(args: list[str], ui_holder: list[UI], environ: Mapping[str, str]) -> int:
    mr = any(a.startswith("-machine-readable") or a.startswith("--machine-readable") for a in args)
    ui = UI(machine=mr)
    ui_holder[0] = ui
    s = _parse_flags(args, _VALIDATE_FLAGS)
    assert s.target is not None
    tpl = load_template(s.target)
    check_required_version(tpl)
    values = resolve_variables(tpl, s.cli_vars, s.var_files, environ)
    ctx = HclContext(
        var=values,
        path={"root": str(tpl.root), "cwd": os.getcwd()},
        build={"SourceAMI": "", "SourceAMIName": "", "ID": "", "name": ""},
    )
    for key, (_name, body) in _sources(tpl).items():
        try:
            src = ctx.value({k: v for k, v in body.items() if k not in _LATE_KEYS})
        except HclError as exc:
            raise PackerError("Failed preparing the template", f'source "{key}": {exc}') from None
        if not src.get("source_ami") and not (src.get("source_ami_filter") or [{}])[0].get("owners"):
            raise PackerError(
                "1 error(s) occurred:",
                "* For security reasons, you must declare an owner using the Owners field of source_ami_filter",
            )
    ui.say("The configuration is valid.")
    return 0


def cmd_init(args: list[str], ui_holder: list[UI], environ: Mapping[str, str]) -> int:
    mr = any(a.startswith("-machine-readable") or a.startswith("--machine-readable") for a in args)
    ui = UI(machine=mr)
    ui_holder[0] = ui
    rest = [a for a in args if not a.startswith("-")]
    if len(rest) != 1:
        raise PackerError("A template path or directory is required", "Usage: packer init [options] [config.pkr.hcl|folder/]")
    tpl = load_template(Path(rest[0]))
    check_required_version(tpl)
    if Injection.from_env(environ).at("init"):
        raise PackerError(
            f'Failed getting the "{AMAZON_PLUGIN}" plugin',
            "could not get the list of releases: dial tcp: lookup api.github.com: no such host "
            "(phoenix packer double: injected failure)",
        )
    for source, version in required_plugins(tpl).items():
        target = plugin_path(environ, source, version)
        if target.exists() and "-upgrade" not in args:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"# phoenix packer double: stands for {source} v{version}\n")
        (target.parent / (target.name + "_SHA256SUM")).write_text(
            hashlib.sha256(target.read_bytes()).hexdigest() + "\n"
        )
        ui.say(f'Installed plugin {source} v{version} in "{target}"')
    return 0


def cmd_version(args: list[str], ui_holder: list[UI], environ: Mapping[str, str]) -> int:
    mr = any(a.startswith("-machine-readable") or a.startswith("--machine-readable") for a in args)
    ui = UI(machine=mr)
    ui_holder[0] = ui
    ui.machine("", "version", PACKER_VERSION)
    ui.machine("", "version-prelease", "")
    ui.machine("", "version-commit", PACKER_COMMIT[:8])
    ui.say(f"Packer v{PACKER_VERSION}")
    return 0


_COMMANDS: dict[str, Callable[[list[str], list[UI], Mapping[str, str]], int]] = {
    "build": cmd_build,
    "validate": cmd_validate,
    "init": cmd_init,
    "version": cmd_version,
}


def _log_argv(argv: list[str], environ: Mapping[str, str]) -> None:
    path = environ.get(ARGV_LOG_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"argv": argv, "cwd": os.getcwd(), "pid": os.getpid(), "env": dict(environ)}) + "\n")


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    _log_argv(argv, environ)
    if not argv or argv[0] in ("-h", "-help", "--help"):
        print(
            "Usage: packer [--version] [--help] <command> [<args>]\n\nAvailable commands are:\n"
            "    build       build image(s) from template\n    init        Install missing plugins or upgrade plugins\n"
            "    validate    check that a template is valid\n    version     Prints the Packer version\n\n"
            "(phoenix-fleet's Packer double, see sandbox/packer_double.py: not HashiCorp Packer)",
            file=sys.stderr,
        )
        return 127 if not argv else 0
    if argv[0] in ("-v", "-version", "--version"):
        print(PACKER_VERSION)
        return 0
    command = _COMMANDS.get(argv[0])
    if command is None:
        print(f"packer: '{argv[0]}' is not a packer command (phoenix packer double: build, init, validate, version)",
              file=sys.stderr)
        return 127
    ui_holder = [UI(machine=False)]
    try:
        return command(argv[1:], ui_holder, environ)
    except PackerError as exc:
        ui_holder[0].error(exc.render())
        return 1
    except HclError as exc:
        ui_holder[0].error(PackerError("Invalid expression", str(exc)).render())
        return 1


if __name__ == "__main__":
    sys.exit(main())
