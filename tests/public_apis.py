"""Find private uses of dependencies in Python source: the walker behind ``test_public_apis_only.py``.

A use is private when the SDK

* imports a dependency's private module or name (``from h11._receivebuffer import ...``,
  ``import httpcore2._async``, ``from httpx2 import _utils``);
* reads, writes or calls a private attribute (a name with a leading underscore, not a dunder) of a
  dependency module or of a name imported from one (``httpx2._config``, ``URL._uri_reference``), or
  bypasses a dependency class's constructor (``httpx2.URL.__new__``);
* reads or writes, on any object, an attribute whose name is private in some dependency class and
  is defined nowhere in the SDK (``response._content``, ``transport._pool``), also through
  ``getattr``/``setattr``/``hasattr``/``delattr`` with the name as a string;
* in a class derived from a dependency class, defines, reads or overrides a private member of one of
  its bases (``def _init_transport``, ``super()._assign_requests_to_connections()``);
* writes, on an object other than ``self``, an attribute that a dependency class only ever sets from
  its own methods (``response.is_stream_consumed = True``): the library's internal state.

Dependency private names are collected from the installed packages' source (every class's members,
``__slots__`` and ``self._x`` assignments), so the check follows the versions installed.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import sys
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: Packages whose classes' private names are collected (any other imported dependency is still
#: checked for private modules and for private attributes reached through its name).
INTROSPECTED = (
    "httpx2",
    "httpcore2",
    "h11",
    "anyio",
    "caio",
    "aiohttp",
    "tenacity",
    "cattrs",
    "starlette",
    "uvicorn",
    "redis",
    "click",
    "rich",
    "opentelemetry",
)
#: Packages whose classes' internal state (public names they set on themselves outside ``__init__``)
#: the SDK must not write: the HTTP stack, where a response's or a connection's bookkeeping lives.
STATEFUL = ("httpx2", "httpcore2", "h11")
_ACCESSORS = {"getattr", "setattr", "hasattr", "delattr"}
_INIT_METHODS = {"__init__", "__new__", "__post_init__", "__attrs_post_init__", "__init_subclass__", "__setstate__"}


def is_private(name: str) -> bool:
    """A leading underscore that is not a dunder (``_x`` and ``__x``, not ``__x__``)."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")) and name != "_"


@dataclass(frozen=True)
class Finding:
    """One private use: where it is and what it touches."""

    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


@dataclass
class ClassNames:
    """Names collected from class definitions: private members, and public state set from methods."""

    private: dict[str, str] = field(default_factory=dict)  # name -> one class that has it
    state: dict[str, str] = field(default_factory=dict)  # public names set on self outside __init__
    public_members: set[str] = field(default_factory=set)  # methods, properties and class attributes


def _self_name(func: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    args = func.args.posonlyargs + func.args.args
    return args[0].arg if args else None


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement in ``body``, nested blocks included (expressions are not entered: cheap)."""
    for stmt in body:
        yield stmt
        for name in ("body", "orelse", "finalbody"):
            block = getattr(stmt, name, None)
            if isinstance(block, list):
                yield from _statements(block)
        for handler in getattr(stmt, "handlers", ()):
            yield from _statements(handler.body)
        for case in getattr(stmt, "cases", ()):
            yield from _statements(case.body)


def _assigned(stmt: ast.stmt) -> list[ast.expr]:
    if isinstance(stmt, ast.Assign):
        return [t for target in stmt.targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])]
    if isinstance(stmt, ast.AnnAssign | ast.AugAssign):
        return [stmt.target]
    return []


def collect_class_names(tree: ast.Module, module: str, into: ClassNames) -> None:
    """Add the private and state names of every class in ``tree`` to ``into``."""
    for node in _statements(tree.body):
        if not isinstance(node, ast.ClassDef):
            continue
        owner = f"{module}.{node.name}"
        for item in node.body:
            for name in _defined_names(item):
                if is_private(name):
                    into.private.setdefault(name, owner)
                else:
                    into.public_members.add(name)
            if isinstance(item, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__slots__" for t in item.targets
            ):
                for const in ast.walk(item.value):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str) and is_private(const.value):
                        into.private.setdefault(const.value, owner)
            if not isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            receiver = _self_name(item)
            for stmt in _statements(item.body):
                for target in _assigned(stmt):
                    if not (
                        isinstance(target, ast.Attribute)
                        and isinstance(target.value, ast.Name)
                        and target.value.id == receiver
                    ):
                        continue
                    if is_private(target.attr):
                        into.private.setdefault(target.attr, owner)
                    elif not target.attr.startswith("__") and item.name not in _INIT_METHODS and not _is_setter(item):
                        into.state.setdefault(target.attr, owner)


def _is_setter(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(d, ast.Attribute) and d.attr in ("setter", "deleter") for d in func.decorator_list)


def _defined_names(item: ast.stmt) -> Iterator[str]:
    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        yield item.name
    elif isinstance(item, ast.Assign):
        for target in item.targets:
            yield from (n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
        yield item.target.id


def _package_files(package: str) -> Iterator[tuple[str, Path]]:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return
    if spec is None:
        return
    locations = spec.submodule_search_locations or ([spec.origin] if spec.origin else [])
    for location in locations:
        path = Path(location)
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            yield f"{package}.{file.relative_to(path).with_suffix('').as_posix().replace('/', '.')}", file


@functools.cache
def dependency_class_names() -> ClassNames:
    """Private names of every class of the installed :data:`INTROSPECTED` packages, and the state
    names of those of :data:`STATEFUL`."""
    names = ClassNames()
    for package in INTROSPECTED:
        found = ClassNames()
        for module, file in _package_files(package):
            try:
                tree = ast.parse(file.read_bytes())
            except SyntaxError:
                continue
            collect_class_names(tree, module, found)
        for name, owner in found.private.items():
            names.private.setdefault(name, owner)
        if package in STATEFUL:
            for name, owner in found.state.items():
                names.state.setdefault(name, owner)
    return names


@functools.cache
def _private_names_of_class(cls: type) -> frozenset[str]:
    """Private members of ``cls`` and of its bases outside this project (runtime and source)."""
    found: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or klass.__module__ == "builtins":
            continue
        found.update(n for n in vars(klass) if is_private(n))
        slots = vars(klass).get("__slots__", ())
        found.update(n for n in ([slots] if isinstance(slots, str) else slots) if is_private(n))
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        names = ClassNames()
        collect_class_names(ast.parse(source), klass.__module__, names)
        found.update(names.private)
    return frozenset(found)


@dataclass(frozen=True)
class Context:
    """What the walker knows: the project's own package name, and names it defines itself."""

    package: str
    own_names: frozenset[str]  # private names the project defines (classes, functions, self._x, ...)
    own_state: frozenset[str]  # public attribute names the project's classes define or set on self

    @classmethod
    def for_sources(cls, package: str, sources: Iterable[str]) -> Context:
        own = ClassNames()
        defined: set[str] = set()
        for source in sources:
            tree = ast.parse(source)
            collect_class_names(tree, package, own)
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    defined.add(node.name)
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    defined.add(node.id)
                elif isinstance(node, ast.arg):
                    defined.add(node.arg)
        private = {n for n in defined if is_private(n)} | set(own.private)
        return cls(package, frozenset(private), frozenset(set(own.state) | own.public_members | defined))


def _stdlib(name: str) -> bool:
    return name in sys.stdlib_module_names or name == "__future__"


class _Walker(ast.NodeVisitor):
    def __init__(self, path: str, context: Context) -> None:
        self.path = path
        self.context = context
        self.findings: list[Finding] = []
        self.bound: dict[str, str] = {}  # local name -> the dependency's dotted name it stands for
        self.class_bases: list[frozenset[str]] = []  # private names of the enclosing class's dependency bases

    # -- helpers ---------------------------------------------------------------------------------

    def report(self, node: ast.AST, what: str) -> None:
        self.findings.append(Finding(self.path, getattr(node, "lineno", 0), what))

    def is_dependency(self, dotted: str) -> bool:
        root = dotted.split(".", 1)[0]
        return bool(root) and root != self.context.package and not _stdlib(root)

    def dependency_root(self, node: ast.expr) -> str | None:
        """The dotted dependency name an expression chain starts from (``httpx2.URL`` -> ``httpx2.URL``)."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in self.bound:
            return ".".join([self.bound[node.id], *reversed(parts)])
        return None

    def resolve(self, node: ast.expr) -> object | None:
        dotted = self.dependency_root(node)
        if dotted is None:
            return None
        head, *rest = dotted.split(".")
        try:
            obj: object = importlib.import_module(head)
        except ImportError:
            return None
        for i, part in enumerate(rest):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                try:
                    obj = importlib.import_module(".".join([head, *rest[: i + 1]]))
                except ImportError:
                    return None
        return obj

    # -- imports ---------------------------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not self.is_dependency(alias.name):
                continue
            if any(is_private(part) for part in alias.name.split(".")):
                self.report(node, f"imports the private module {alias.name}")
            if alias.asname:
                self.bound[alias.asname] = alias.name
            else:
                root = alias.name.split(".", 1)[0]
                self.bound[root] = root

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or node.module is None or not self.is_dependency(node.module):
            return
        if any(is_private(part) for part in node.module.split(".")):
            self.report(node, f"imports from the private module {node.module}")
        for alias in node.names:
            if is_private(alias.name):
                self.report(node, f"imports the private name {alias.name} from {node.module}")
            if alias.name != "*":
                self.bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    # -- classes ---------------------------------------------------------------------------------

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        private: set[str] = set()
        for base in node.bases:
            cls = self.resolve(base)
            if isinstance(cls, type):
                private |= _private_names_of_class(cls)
            elif self.dependency_root(base) is not None:
                # A base from a dependency that is not installed here: its private members are
                # unknown, so any private member of this class may override one.
                names = [n for item in node.body for n in _defined_names(item) if is_private(n)]
                what = f"{node.name} derives from {self.dependency_root(base)}, which is not installed"
                for name in names:
                    self.report(node, f"{what}: cannot tell whether {name} overrides a private member")
        if private:
            for item in node.body:
                for name in _defined_names(item):
                    if name in private:
                        self.report(item, f"{node.name} overrides {name}, private in its base class")
        self.class_bases.append(frozenset(private))
        self.generic_visit(node)
        self.class_bases.pop()

    # -- attributes ------------------------------------------------------------------------------

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.check_access(node, node.value, node.attr, isinstance(node.ctx, ast.Store | ast.Del))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (
            isinstance(func, ast.Name)
            and func.id in _ACCESSORS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            self.check_access(node, node.args[0], node.args[1].value, func.id in ("setattr", "delattr"))
        self.generic_visit(node)

    def check_access(self, node: ast.AST, receiver: ast.expr, name: str, writes: bool) -> None:
        dotted = self.dependency_root(receiver)
        if dotted is not None:
            if is_private(name):
                self.report(node, f"uses {dotted}.{name}, private in a dependency")
            elif name == "__new__":
                self.report(node, f"calls {dotted}.__new__, bypassing a dependency's constructor")
            return
        in_class = self.class_bases[-1] if self.class_bases else frozenset()
        on_self = isinstance(receiver, ast.Name) and receiver.id in ("self", "cls")
        on_super = (
            isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Name) and receiver.func.id == "super"
        )
        if on_self or on_super:
            if name in in_class:
                self.report(node, f"uses {name}, private in a dependency base class")
            return
        deps = dependency_class_names()
        if is_private(name) and name in deps.private and name not in self.context.own_names:
            self.report(node, f"uses {name}, a private attribute of {deps.private[name]}")
        elif writes and name in deps.state and name not in self.context.own_state:
            self.report(node, f"sets {name}, state that {deps.state[name]} keeps for itself")


def find_private_uses(source: str, *, path: str = "<snippet>", context: Context) -> list[Finding]:
    """Every private use of a dependency in ``source``."""
    walker = _Walker(path, context)
    tree = ast.parse(source)
    # Bindings first (imports anywhere in the module, lazy ones included), then the checks.
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            walker.visit(node)
    walker.findings.clear()
    walker.visit(tree)
    return walker.findings
