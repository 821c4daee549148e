"""Errors raised on bad input, with the stable codes of src/protocol/errors.ts (NDP.md §9)."""


class NdpError(Exception):
    """An error with a stable ``code`` (``NDP_ERR_*``) callers and the TypeScript side match on."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
