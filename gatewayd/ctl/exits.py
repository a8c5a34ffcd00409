"""gatewayctl's exit codes: 0 on success, 2 for a bad configuration or usage, 1 for
anything else (a refused command included)."""

from typing import Final

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
