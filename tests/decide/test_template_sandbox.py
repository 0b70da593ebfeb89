"""Hostile templates: sandbox escapes are refused, resource attacks are bounded.

A template is code that anyone with an admin key (or write access to the
project folder) can change, rendered with browser-supplied values. Each
attack either fails to compile, raises during render (the decision then
falls back to the placement's default), or renders harmlessly.
"""

from __future__ import annotations

import time

import pytest
from jinja2 import UndefinedError
from jinja2.sandbox import SecurityError

from tailorkit.decide.content import TemplateChecker, TemplateError

ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ context.__class__.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__ }}",
    "{{ attributes.__class__.__base__.__subclasses__() }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ range.__self__ }}",
    "{{ '{0.__class__.__mro__}'.format(context) }}",
    "{{ '%s' % context.__class__ }}",
    "{{ 'x'.format_map(context) }}",
    "{{ ''|attr('__class__') }}",
    "{% include '/etc/passwd' %}",
    "{% import 'x.j2' as x %}",
    "{% extends 'base.j2' %}",
]
RESOURCE_ATTACKS = [
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for i in range(9999) %}{% for j in range(9999) %}.{% endfor %}{% endfor %}",
    "{{ 'a' * 1000000000 }}",
    "{{ [1] * 1000000000 }}",
    "{{ 9 ** 99999999 }}",
    "{{ ('x' * 90000) * 90000 }}",
    "{% set s = 'abcd' %}{% for i in range(9000) %}{{ s ~ s ~ s ~ s ~ s ~ s ~ s ~ s }}{% endfor %}",
    "{% macro f(s, n) %}{{ f(s ~ s, n - 1) if n else s|length }}{% endmacro %}{{ f('ab', 40) }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
]
SECRET = "tk_admin_secret_never_rendered"


def _render(source: str) -> str:
    template = TemplateChecker().compile("attack", source)
    return template.render({"context": {"secret": SECRET}, "attributes": {}, "user": {}})


@pytest.mark.parametrize("source", ESCAPES)
def test_sandbox_escapes_are_refused(source: str) -> None:
    try:
        out = _render(source)
    except (TemplateError, SecurityError):
        return
    except Exception as exc:  # an undefined attribute (StrictUndefined) is a refusal too
        assert "UndefinedError" in type(exc).__name__ or "unsafe" in str(exc), exc
        return
    # rendered: nothing of the interpreter leaks
    for leak in ("<class", "function", "module", "os", "subprocess", "__", SECRET):
        assert leak not in out or (leak == "os" and "os." not in out), (source, out[:200])


@pytest.mark.parametrize("source", RESOURCE_ATTACKS)
def test_resource_attacks_are_bounded(source: str) -> None:
    started = time.perf_counter()
    with pytest.raises((SecurityError, TemplateError, RecursionError, UndefinedError)):
        _render(source)
    assert time.perf_counter() - started < 2.0


def test_autoescape_keeps_browser_values_inert() -> None:
    out = (
        TemplateChecker()
        .compile("x", "<p>{{ attributes.name }}</p>")
        .render({"attributes": {"name": "<script>alert(1)</script>"}})
    )
    assert out == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"


def test_ordinary_templates_still_render() -> None:
    source = "{% for i in range(3) %}{{ user.id }}{{ '-' * 2 }}{% endfor %}{{ 2 ** 10 }}"
    assert TemplateChecker().compile("x", source).render({"user": {"id": "u"}}) == ("u--u--u--1024")
