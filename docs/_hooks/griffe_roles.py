"""Griffe extension: show the Sphinx roles of the docstrings as code in the API reference.

The docstrings name other objects the Sphinx way (``:class:`~webex_tokens.token.Token```,
``:func:`open_store```); the reference is Markdown, where those roles would show as
raw text. Each becomes inline code with the object's short name.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|const):`~?(?P<target>[^`]+)`")


def _short(match: re.Match[str]) -> str:
    target = match.group("target")
    if match.group(0).split("`", 1)[1].startswith("~"):
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


class SphinxRolesToCode(Extension):
    """Rewrite ``:role:`target``` in every docstring as ``target`` in code."""

    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        """Rewrite the docstring of ``obj``, if it has one."""
        if obj.docstring is not None and ":`" in obj.docstring.value:
            obj.docstring.value = _ROLE.sub(_short, obj.docstring.value)
