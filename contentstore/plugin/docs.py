"""Write the hook reference (``docs/hooks.md``) from :mod:`contentstore.plugin.spec`.

    python -m contentstore.plugin.docs > docs/hooks.md

A test checks that the committed file is what this prints, so the reference never
drifts from the specifications.
"""

from __future__ import annotations

import inspect
import sys

from contentstore import errors
from contentstore.plugin import spec as hookspecs


def hooks() -> list:
    """The hook specifications, in the order the module defines them."""
    found = [
        obj for name, obj in vars(hookspecs).items()
        if name.startswith("contentstore_") and inspect.isfunction(obj)
    ]
    return sorted(found, key=lambda f: f.__code__.co_firstlineno)


def render() -> str:
    out = [
        "# contentstore hook reference",
        "",
        "Generated from `contentstore/plugin/spec.py` by `python -m contentstore.plugin.docs`;",
        "do not edit by hand. Implement a hook by defining a function of the same name",
        "(marked with `contentstore.plugin.hookimpl`); take only the arguments you need.",
        "Writing a plugin, with worked examples: [plugins.md](plugins.md).",
        "",
    ]
    module_doc = inspect.getdoc(hookspecs) or ""
    out += [module_doc, ""]
    out += ["## Contents", ""]
    out += [f"- [`{f.__name__}`](#{f.__name__})" for f in hooks()]
    out += ["- [The types in the signatures](#the-types-in-the-signatures)",
            "- [Errors](#errors)", ""]
    for function in hooks():
        options = getattr(function, "contentstore_spec", {}) or {}
        signature = str(inspect.signature(function)).replace("'", "")
        out.append(f'<a id="{function.__name__}"></a>')
        out.append("")
        out.append(f"## `{function.__name__}{signature}`")
        out.append("")
        if options.get("firstresult"):
            out.append("*First result:* the first plugin to return something other than `None` answers.")
        else:
            out.append("*Every plugin is called;* the results are collected in a list.")
        out.append("")
        out.append(inspect.getdoc(function) or "")
        out.append("")
    out += types_section() + errors_section()
    return "\n".join(out).rstrip() + "\n"


def types_section() -> list[str]:
    out = ["## The types in the signatures", "",
           "Import them from these modules (annotations name only the class).", ""]
    for name, (path, what) in hookspecs.TYPES.items():
        out.append(f"- `{name}`: `{path}`: {what}.")
    return out + [""]


def error_classes() -> list[type]:
    """Every exception class of :mod:`contentstore.errors`, in the order it defines them."""
    found = [obj for obj in vars(errors).values()
             if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__]
    return sorted(found, key=lambda cls: inspect.getsourcelines(cls)[1])


def errors_section() -> list[str]:
    out = ["## Errors", "",
           "Every error contentstore raises on purpose, all in `contentstore.errors`; a plugin",
           "refuses by raising one of them (or a subclass of its own): the message is the one",
           "line `contentstore: error: ...` prints. The bases are in parentheses.", ""]
    for cls in error_classes():
        bases = ", ".join(base.__name__ for base in cls.__bases__)
        summary = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
        out.append(f"- `{cls.__name__}` ({bases}): {summary}")
    return out + [""]


if __name__ == "__main__":
    sys.stdout.write(render())
