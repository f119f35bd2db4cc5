"""The ``fastdecode`` command's entry point, outside the package.

Importing :mod:`fastdecode` takes a second or more (numpy, scipy, the compiled kernels): an
interrupt (Ctrl-C) then must not print a traceback. An entry point inside the package cannot
catch it, since the package is imported before any of its code runs; this module imports the
package itself, inside the handler, and then runs :func:`fastdecode.cli.main`.
"""

import sys


def main(argv=None):
    """Run ``fastdecode``: :func:`fastdecode.cli.main`, and exit status 130 without a traceback
    when interrupted while the package is imported."""
    try:
        from fastdecode.cli import main as run
        return run(argv)
    except KeyboardInterrupt:
        try:
            sys.stderr.write("fastdecode: interrupted\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # stderr closed: the status says it
            pass
        return 130


if __name__ == "__main__":
    sys.exit(main())
