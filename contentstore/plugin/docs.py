"""Write the hook reference (``docs/hooks.md``) from :mod:`contentstore.plugin.spec`.

    python -m contentstore.plugin.docs > docs/hooks.md

A test checks that the committed file is what this prints, so the reference never
drifts from the specifications.
"""

from __future__ import annotations

import inspect
import sys

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
        "marked with `contentstore.plugin.hookimpl`; take only the arguments you need.",
        "",
    ]
    module_doc = inspect.getdoc(hookspecs) or ""
    out += [module_doc, ""]
    for function in hooks():
        options = getattr(function, "contentstore_spec", {}) or {}
        signature = str(inspect.signature(function)).replace("'", "")
        out.append(f"## `{function.__name__}{signature}`")
        out.append("")
        if options.get("firstresult"):
            out.append("*First result:* the first plugin to return something other than `None` answers.")
        else:
            out.append("*Every plugin is called;* the results are collected in a list.")
        out.append("")
        out.append(inspect.getdoc(function) or "")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
