"""The API's request parsers.

Kept apart from `core.api`: DRF reads DEFAULT_PARSER_CLASSES while `rest_framework.views`
is first imported, so a module that imports `rest_framework.views` cannot also be the one the
setting names (importing it first would find itself half-initialised).
"""

from collections.abc import Mapping
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser; JSON nested deeper than Python's decoder can follow is a 400 too."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply") from exc
