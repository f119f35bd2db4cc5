"""The output folder, complete or absent: built in a staging folder beside it, renamed into
place at the end, removed on any error or interrupt."""

import contextlib
import json
import os
import shutil
import tempfile

#: File written into every atlas; an existing folder holding it is an earlier atlas and may
#: be replaced.
MARKER = ".fastdecode-atlas"


def is_atlas(path):
    return os.path.isfile(os.path.join(path, MARKER))


def check_out(out):
    """Refuse an output folder that cannot be written or would replace something else, before
    any work. Returns the absolute path."""
    out = os.fspath(out)
    if not out:
        raise ValueError("the output folder must be named, got an empty string")
    path = os.path.abspath(out)
    if os.path.lexists(path):
        if not os.path.isdir(path) or os.path.islink(path):
            raise FileExistsError("%s exists and is not a folder; the atlas would replace it"
                                  % out)
        if os.listdir(path) and not is_atlas(path):
            raise FileExistsError("%s exists and is not an earlier atlas (no %s file in it); "
                                  "refusing to replace it: choose a new or empty folder"
                                  % (out, MARKER))
    ancestor = os.path.dirname(path)
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise NotADirectoryError("the output folder %s lies under a file: %s" % (out, ancestor))
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError("cannot write into %s" % ancestor)
    return path


@contextlib.contextmanager
def staged(out, marker):
    """Yield a staging folder beside ``out``; on success it becomes ``out`` (an earlier atlas
    there is replaced), else it is removed with any parent folders made for it.

    marker: a dict written as JSON to the marker file.
    """
    path = check_out(out)
    parent = os.path.dirname(path)
    made = []
    d = parent
    while not os.path.exists(d):
        made.append(d)
        d = os.path.dirname(d)
    stage = None
    try:
        os.makedirs(parent, exist_ok=True)
        stage = tempfile.mkdtemp(prefix=".%s.staging-" % os.path.basename(path), dir=parent)
        yield stage
        with open(os.path.join(stage, MARKER), "w") as f:
            json.dump(marker, f, indent=1)
            f.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(stage, 0o777 & ~umask)  # mkdtemp makes the folder private
        check_out(out)  # nothing else appeared there meanwhile
        old = None
        if os.path.isdir(path):
            old = tempfile.mkdtemp(prefix=".%s.old-" % os.path.basename(path), dir=parent)
            os.replace(path, os.path.join(old, "atlas"))
        try:
            os.replace(stage, path)
        except BaseException:
            if old is not None:  # put the earlier atlas back
                os.replace(os.path.join(old, "atlas"), path)
                os.rmdir(old)
            raise
        stage = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
            for d in made:  # deepest first
                with contextlib.suppress(OSError):
                    os.rmdir(d)
