"""Content variants: Jinja2 templates compiled and checked once, rendered in a sandbox.

Templates come from the project's ``templates/`` folder or inline in
``placements.yaml``. They run in Jinja2's :class:`SandboxedEnvironment`
(no attribute access to Python internals, bounded ``range``) with HTML
autoescaping, because ``context`` and ``attributes`` come straight from the
browser. Undefined values raise (:class:`StrictUndefined`), so a template
that needs data the request does not have fails to render and the decision
falls back to the placement's default instead of showing half a sentence.

What a template may read (anything else is refused when definitions load):

``profile``          profile features (every declared feature, ``None`` when unknown)
``segments``         the user's targetable segments
``attributes``       the request's attributes merged over profile and context
``context``          the request's context (device, url, referrer, hour, ...)
``user``             ``{"id", "user_id", "anonymous_id"}``
``flags``            feature flag values
``recommendations``  ranked items of the rule's recommendation list
``placement``        the placement key
``variant``          the variant key

>>> check = TemplateChecker(profile_features={"first_name"})
>>> t = check.compile("home:vip", "Hi {{ profile.first_name | default('there') }}!")
>>> t.render({"profile": {"first_name": "Ada"}})
'Hi Ada!'
>>> t.user_specific
True
>>> check.compile("home:bad", "Hi {{ profle.name }}")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
tailorkit.decide.content.TemplateError: unknown variable 'profle' (known: attributes, ...)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import StrictUndefined, meta, nodes
from jinja2.sandbox import SandboxedEnvironment, SecurityError

__all__ = ["KNOWN_NAMES", "USER_NAMES", "Template", "TemplateChecker", "TemplateError"]

#: Top-level names a template may use.
KNOWN_NAMES = frozenset(
    {
        "profile",
        "segments",
        "attributes",
        "context",
        "user",
        "flags",
        "recommendations",
        "placement",
        "variant",
    }
)
#: Names whose values differ between users: templates using them are not cached.
USER_NAMES = frozenset({"profile", "segments", "attributes", "user", "flags", "recommendations"})


#: Bounds on one render (a template is code an admin key can change): output characters,
#: wall time, ``range`` items summed over the render, and the size of ``*``/``**`` results.
MAX_OUTPUT_CHARS = 256 * 1024
MAX_RENDER_SECONDS = 0.25
MAX_RANGE_ITEMS = 10_000
MAX_PRODUCT = 100_000

# [range items left, deadline] of the render in progress
_budget: ContextVar[list[float]] = ContextVar("tailorkit_render_budget")


class TemplateError(ValueError):
    """A template that does not compile or reads something it may not."""


def _bounded_range(*args: int) -> range:
    """``range`` whose items, over one render, may not exceed :data:`MAX_RANGE_ITEMS`."""
    items = range(*args)
    budget = _budget.get(None)
    left = MAX_RANGE_ITEMS if budget is None else int(budget[0])
    if len(items) > left:
        raise SecurityError(f"range: more than {MAX_RANGE_ITEMS} items in one render")
    if budget is not None:
        budget[0] -= len(items)
    return items


class _BoundedEnvironment(SandboxedEnvironment):
    """The sandbox, with ``*`` and ``**`` unable to build huge values (``'a' * 10**9``)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > 64:
            raise SecurityError("**: exponent over 64")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if sized and len(seq) * times > MAX_PRODUCT:
                    raise SecurityError(f"*: result over {MAX_PRODUCT} items")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Every call (filters, macros, methods): within the render's time; no huge strings
        (a macro that doubles its argument recursively)."""
        budget = _budget.get(None)
        if budget is not None and time.perf_counter() > budget[1]:
            raise SecurityError(f"rendering took over {MAX_RENDER_SECONDS} s")
        for value in (*args, *kwargs.values()):
            if isinstance(value, str) and len(value) > MAX_OUTPUT_CHARS:
                raise SecurityError(f"argument over {MAX_OUTPUT_CHARS} characters")
        return super().call(__context, __obj, *args, **kwargs)


def _environment(loader: jinja2.BaseLoader | None) -> SandboxedEnvironment:
    env = _BoundedEnvironment(
        loader=loader,
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.globals["range"] = _bounded_range
    # namespace() is the one way to grow a value across loop iterations (s = s ~ s)
    del env.globals["namespace"]
    return env


@dataclass(frozen=True)
class Template:
    """A compiled, checked template.

    ``names`` are the top-level variables it reads; ``user_specific`` says
    whether any of them differs between users (the others can be cached).
    """

    key: str
    source: str
    compiled: jinja2.Template
    names: frozenset[str]
    #: False when the output may differ between two renders with the same variables
    deterministic: bool = True

    @cached_property  # read for every placement of every request
    def user_specific(self) -> bool:
        """Whether the output can differ between two users with the same context."""
        return bool(self.names & USER_NAMES)

    @cached_property
    def user_names(self) -> tuple[str, ...]:
        """The variables that key a cached rendering of a user-specific template (the
        placement and variant are in the key; recommendations count as their list).

        >>> TemplateChecker().compile("x", "{{ user.id }} {{ variant }}").user_names
        ('user',)
        """
        return tuple(sorted(self.names - {"placement", "variant", "recommendations"}))

    @cached_property
    def constant(self) -> bool:
        """Whether the output is the same for every request (renders once at load).

        >>> TemplateChecker().compile("x", "<b>Sale</b>").constant
        True
        """
        return not (self.names - {"placement", "variant"})

    def render(self, variables: Mapping[str, Any]) -> str:
        """Render with ``variables`` (raises on any error; callers fall back).

        Bounded: at most :data:`MAX_OUTPUT_CHARS` characters, :data:`MAX_RENDER_SECONDS`
        (checked as output is produced), :data:`MAX_RANGE_ITEMS` ``range`` items.

        >>> TemplateChecker().compile("x", "{% for i in range(10**6) %}.{% endfor %}").render({})
        Traceback (most recent call last):
        ...
        jinja2.exceptions.SecurityError: range: more than 10000 items in one render
        """
        token = _budget.set([MAX_RANGE_ITEMS, time.perf_counter() + MAX_RENDER_SECONDS])
        try:
            return "".join(_bounded(self.compiled.generate(variables)))
        finally:
            _budget.reset(token)


def _bounded(chunks: Iterator[str]) -> Iterator[str]:
    deadline = time.perf_counter() + MAX_RENDER_SECONDS
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            raise SecurityError(f"output over {MAX_OUTPUT_CHARS} characters")
        if time.perf_counter() > deadline:
            raise SecurityError(f"rendering took over {MAX_RENDER_SECONDS} s")
        yield chunk


class TemplateChecker:
    """Compiles templates and checks them against what the decision context holds.

    ``profile_features`` are the declared profile features (``segments.yaml``):
    ``profile.<name>`` with another name is refused, which catches typos
    before they reach a user.
    """

    def __init__(
        self, templates_dir: Path | None = None, profile_features: Iterable[str] = ()
    ) -> None:
        self.templates_dir = templates_dir
        loader = jinja2.FileSystemLoader(str(templates_dir)) if templates_dir else None
        self.env = _environment(loader)
        self.profile_features = frozenset(profile_features)

    def load(self, key: str, name: str) -> Template:
        """Compile the template file ``templates/<name>``."""
        if self.env.loader is None or self.templates_dir is None:
            raise TemplateError(f"template {name!r}: the project has no templates/ folder")
        try:
            source, _, _ = self.env.loader.get_source(self.env, name)
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"template file templates/{name} not found") from exc
        return self.compile(key, source, name)

    def compile(self, key: str, source: str, name: str | None = None) -> Template:
        """Parse, check and compile ``source``; raise :class:`TemplateError` naming the problem."""
        try:
            tree = self.env.parse(source, name=name)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"syntax error at line {exc.lineno}: {exc.message}") from exc
        if _has_file_access(tree):
            raise TemplateError("templates may not include, import or extend other files")
        names = frozenset(meta.find_undeclared_variables(tree))
        unknown = sorted(names - KNOWN_NAMES)
        if unknown:
            known = ", ".join(sorted(KNOWN_NAMES))
            raise TemplateError(f"unknown variable {unknown[0]!r} (known: {known})")
        self._check_profile_fields(tree)
        compiled = self.env.from_string(source)
        return Template(key, source, compiled, names, not _has_random(tree))

    def _check_profile_fields(self, tree: nodes.Template) -> None:
        """Refuse ``profile.x`` / ``profile['x']`` when ``x`` is not a declared feature."""
        for field in _profile_fields(tree):
            if field not in self.profile_features:
                declared = ", ".join(sorted(self.profile_features)) or "none declared"
                raise TemplateError(f"unknown profile feature {field!r} ({declared})")


def _profile_fields(tree: nodes.Template) -> Iterable[str]:
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = getattr(node, "node", None)
        if not (isinstance(target, nodes.Name) and target.name == "profile"):
            continue
        if isinstance(node, nodes.Getattr):
            yield node.attr
        elif isinstance(node, nodes.Getitem):
            arg = node.arg
            if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
                yield arg.value


def _has_random(tree: nodes.Template) -> bool:
    """Whether the template uses the ``random`` filter (its output is not a function
    of its variables)."""
    return any(node.name == "random" for node in tree.find_all(nodes.Filter))


def _has_file_access(tree: nodes.Template) -> bool:
    # Inline templates must not reach into the file system through the loader.
    kinds = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
    return any(True for _ in tree.find_all(kinds))
