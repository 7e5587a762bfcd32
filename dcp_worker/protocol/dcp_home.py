"""Where DCP keeps a worker's files, and what it names them.

Kept apart from ``keystore``, so that the command line can name these in its help, and find its
own files, without loading any cryptography.
"""

from __future__ import annotations

import os
from pathlib import Path

IDENTITY_KEYSTORE = "id.keystore"
PAYMENT_KEYSTORE = "default.keystore"
# The variable a keystore's passphrase may come from (see ``keystore.passphrases``).
PASSPHRASE_VARIABLE = "DCP_WORKER_PASSPHRASE"


def resource_dir() -> Path:
    """Where DCP keeps keystores: ``$DCP_RESOURCE_DIR``, else ``$XDG_DATA_HOME/dcp``, else ``~/.dcp``."""
    if explicit := os.environ.get("DCP_RESOURCE_DIR"):
        return Path(explicit)
    if xdg := os.environ.get("XDG_DATA_HOME"):
        return Path(xdg) / "dcp"
    return Path.home() / ".dcp"
