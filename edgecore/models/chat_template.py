"""Chat templates rendered as transformers renders them.

A template (Jinja2, from `tokenizer_config.json`'s `chat_template`, a
`chat_template.jinja` file or GGUF `tokenizer.chat_template`) is untrusted
code from a model repository, so it runs in Jinja2's immutable sandbox. The
environment is the one transformers gives templates: trim_blocks and
lstrip_blocks, the loopcontrols extension, `{% generation %}` blocks
(rendered as their body), a `tojson` filter that does not escape HTML,
and the globals `raise_exception`, `strftime_now`, `dict` and a `namespace`
that refuses underscore-prefixed names. The variables are `messages`,
`tools`, `documents`, `add_generation_prompt`, the tokenizer's named
special tokens (`bos_token`, `eos_token`, ...) and any extra keyword.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from edgecore.models.spec import ModelError


class ChatTemplateError(ModelError):
    """The template could not be compiled, or refused the conversation."""


class ChatTemplate:
    def __init__(self, source: str, origin: str = "chat template"):
        self.source = source
        self.origin = origin
        env = _environment()
        try:
            self._template = env.from_string(source)
        except Exception as exc:  # jinja2.TemplateSyntaxError and friends
            raise ChatTemplateError(f"{origin}: the chat template does not compile ({exc})") from None

    def render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
               tools: Sequence[Mapping] | None = None, documents: Sequence[Mapping] | None = None,
               **variables) -> str:
        chat = [_message(m, i) for i, m in enumerate(messages)]
        try:
            return self._template.render(messages=chat, tools=_plain(tools), documents=_plain(documents),
                                         add_generation_prompt=bool(add_generation_prompt), **_plain(variables))
        except Exception as exc:  # raise_exception(), undefined variables, sandbox refusals
            raise ChatTemplateError(f"{self.origin}: the chat template failed ({exc})") from None


def _message(message, index: int) -> dict:
    """A message as transformers hands it to templates: a plain dict, with
    the keys whose value is None dropped."""
    if not isinstance(message, Mapping):
        raise ChatTemplateError(f"messages[{index}] must be a dict with 'role' and 'content', got "
                                f"{type(message).__name__}")
    return {k: _plain(v) for k, v in message.items() if v is not None}


def _plain(value):
    """Only JSON-like data reaches the sandbox (no objects with methods)."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, str):  # subclasses (enums, ...) lose their methods
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if type(value).__module__ == "numpy" and hasattr(value, "item"):  # NumPy scalars
        return _plain(value.item())
    return f"<{type(value).__name__}>"


def _environment():
    try:
        import jinja2
        from jinja2.ext import Extension, loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:  # a regular dependency; only a broken installation lacks it
        raise ModelError("chat templates need the `jinja2` package (pip install jinja2)") from None

    class GenerationBlock(Extension):
        """`{% generation %}...{% endgeneration %}` marks the assistant's
        tokens for training masks; rendering keeps the body unchanged."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    class Namespace(jinja2.utils.Namespace):
        """`namespace()` without underscore attributes (no way to CPython internals)."""

        def __init__(*args, **kwargs):
            self, rest = args[0], args[1:]
            attrs = dict(*rest, **kwargs)
            for name in attrs:
                Namespace._check(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            Namespace._check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(f"a namespace cannot hold {name!r} (underscore-prefixed)")

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationBlock, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now, dict=_Dict(), namespace=Namespace)
    return env


class _Dict:
    """`dict(...)` in templates, without the class's attributes."""

    def __call__(self, *args, **kwargs):
        return dict(*args, **kwargs)

    def fromkeys(self, *args, **kwargs):
        return dict.fromkeys(*args, **kwargs)
