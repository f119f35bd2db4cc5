"""``python -m fastdecode``: the command, as the ``fastdecode`` console script runs it."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while the command's modules are imported
    try:
        sys.stderr.write("fastdecode: interrupted\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    sys.exit(130)

sys.exit(main())
