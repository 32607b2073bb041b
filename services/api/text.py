"""Text that PostgreSQL can store: no NUL characters, no lone surrogates.

JSON allows both ("\\u0000", "\\ud800"); a text column takes neither. Checking at the edge
turns what would be a database error halfway through a request into a 422 that says why.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator


def storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text may not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from err
    return value


Text = Annotated[str, AfterValidator(storable)]
