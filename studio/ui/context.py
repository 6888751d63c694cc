"""What every tab module gets: the Studio, the language, the label registry, and the error guard."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from studio.ui.i18n import t

log = logging.getLogger("zaoxiang.ui")


@dataclass
class Context:
    """Shared by the tabs of one app; `last_request_id` feeds the monitor's balance figure."""

    studio: Any
    lang: str
    labelled: dict[int, tuple[Any, list[Callable[[str], dict[str, Any]]]]] = field(default_factory=dict)
    last_request_id: str | None = None
    tabs: Any = None  # the gr.Tabs, so a restore can switch to Generate

    def t(self, key: str, **fmt: object) -> str:
        return t(key, self.lang, **fmt)

    def label(self, component: Any, key: str, attr: str = "label") -> Any:
        """Register `component` so a language switch sets its `attr` to label `key`; returns it."""
        return self.localize(component, lambda lang: {attr: t(key, lang)})

    def localize(self, component: Any, make: Callable[[str], dict[str, Any]]) -> Any:
        """Register any language-dependent properties of `component` (choices, placeholders...)."""
        self.labelled.setdefault(id(component), (component, []))[1].append(make)
        return component

    def relabel(self, lang: str) -> list[Any]:
        """One update per registered component, in `lang`."""
        out = []
        for _component, makers in self.labelled.values():
            props: dict[str, Any] = {}
            for make in makers:
                props.update(make(lang))
            out.append(gr.update(**props))
        return out

    @property
    def labelled_components(self) -> list[Any]:
        return [c for c, _m in self.labelled.values()]


def _fail(exc: Exception, lang: str) -> gr.Error:
    log.exception("UI handler failed")
    return gr.Error(t("err.unexpected", lang, message=f"{type(exc).__name__}: {exc}"), title=t("err.title", lang),
                    print_exception=False)


def guard(ctx: Context):
    """Wrap a handler so that a surprise becomes one readable message, never a traceback."""

    def wrap(fn):
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def gen(*args, **kwargs):
                try:
                    yield from fn(*args, **kwargs)
                except gr.Error:
                    raise
                except Exception as exc:
                    raise _fail(exc, ctx.lang) from None
            return gen

        @functools.wraps(fn)
        def plain(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:
                raise _fail(exc, ctx.lang) from None
        return plain

    return wrap
