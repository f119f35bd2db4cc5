"""Output files written whole or not at all: single files, sets of files, an output folder.

:func:`atomic_path` writes one file beside its destination and moves it in when the writer is
done; :func:`atomic_paths` does the same for several files that must appear together (the
``decode --save/--out`` pair). :class:`OutputDirectory` stages the files of a run in a hidden
folder inside the output directory and moves them in together at the end, or removes them (and
any directory made for them) when the run fails or is interrupted. :func:`check_output_file` and
:func:`check_output_dir` refuse a destination that cannot be used before any work is done.
:func:`staged_directory` builds a whole output folder (the atlas) beside its destination and
renames it into place at the end, replacing an earlier output of the same command
(:func:`check_replaceable_dir` refuses anything else).
"""

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import stat

__all__ = ["atomic_path", "atomic_paths", "check_output_file", "check_output_dir",
           "safe_file_name", "OutputDirectory", "check_replaceable_dir", "staged_directory",
           "open_regular"]


def _with_article(what):
    return ("an " if what[:1].lower() in "aeiou" else "a ") + what


def open_regular(path, what, error):
    """``path`` opened for binary reading, refusing what is not a regular file without blocking
    on it (a FIFO opened for reading waits for a writer; a device never ends). ``what`` names
    the kind of file in messages ("MAT file"); ``error`` is the exception class raised, with
    the path, for a FIFO, socket or device. FileNotFoundError, IsADirectoryError and
    PermissionError come from the file system."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "%s not found" % what, path) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory, not %s" % _with_article(what),
                                    path)
        if not stat.S_ISREG(mode):
            raise error("%s: not a regular file (a FIFO, socket or device); %s is read only "
                        "from a regular file" % (path, _with_article(what)))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def fresh_name(directory, prefix, suffix=""):
    """A new path in ``directory`` for a temporary file or folder, not yet created.

    The caller keeps the name before creating it (with ``O_EXCL`` or ``os.mkdir``), so that an
    interrupt (SIGINT, SIGTERM) at any moment leaves nothing its cleanup does not know of, as
    ``tempfile.mkstemp`` and ``mkdtemp`` cannot promise; 128 random bits make a clash with
    another file as good as impossible.
    """
    return os.path.join(directory, "%s%s%s" % (prefix, secrets.token_hex(16), suffix))


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, else it is removed.

    Writers (savefig, np.save, savemat) write to the yielded path, so an error midway never leaves
    a partial file at ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    suffix : str, optional
        The temporary file's extension (some writers add theirs to a name without it); by
        default that of ``path``.

    Yields
    ------
    str
        The temporary path to write to.

    Raises
    ------
    FileNotFoundError
        When the directory of ``path`` does not exist.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError("output directory does not exist: %s" % directory)
    ext = suffix if suffix is not None else os.path.splitext(path)[1]
    tmp = fresh_name(directory, ".tmp-", ext)  # known before the file exists (see fresh_name)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # made private; give it the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_paths(files):
    """Yield temporary paths for several files that appear together, or not at all.

    Parameters
    ----------
    files : sequence of (path, suffix)
        The files to write and the extension of each one's temporary file (see
        :func:`atomic_path`).

    Yields
    ------
    list of str
        The temporary paths, in the order of ``files``; they replace their files when the block
        ends without an error, and are all removed when it raises.
    """
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_path(path, suffix)) for path, suffix in files]


def check_output_file(path, flag):
    """Refuse an output file that cannot be written, before any work is done.

    Parameters
    ----------
    path : str or os.PathLike
        The file to be written.
    flag : str
        The option that named it (e.g. ``"--save"``), for the messages.

    Raises
    ------
    ValueError
        When ``path`` is empty.
    IsADirectoryError
        When ``path`` is a directory.
    FileNotFoundError
        When the directory of ``path`` does not exist.
    PermissionError
        When files cannot be created in that directory.
    """
    path = os.fspath(path)
    if not path:
        raise ValueError("%s must name a file, got an empty string" % flag)
    if os.path.isdir(path):
        raise IsADirectoryError("output path is a directory: %s" % path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError("output directory does not exist: %s" % parent)
    _check_writable(parent, flag)


def check_output_dir(out, flag="--out"):
    """Refuse an output directory that cannot be made or used, before any work is done.

    A missing directory is fine (it is made when the first file is written) as long as its
    nearest existing ancestor is a directory where files can be created.

    Parameters
    ----------
    out : str or os.PathLike
        The output directory.
    flag : str, optional
        The option that named it, for the messages.

    Raises
    ------
    ValueError
        When ``out`` is empty.
    NotADirectoryError
        When ``out`` is a file, or lies under one.
    PermissionError
        When files cannot be created in ``out`` (or, for a missing ``out``, in its nearest
        existing ancestor).
    """
    out = os.fspath(out)
    if not out:
        raise ValueError("%s must name a directory, got an empty string" % flag)
    if os.path.exists(out) and not os.path.isdir(out):
        raise NotADirectoryError("%s is not a directory: %s" % (flag, out))
    ancestor = os.path.dirname(os.path.abspath(out))  # created with the directory when missing
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise NotADirectoryError("%s %s lies under a file: %s" % (flag, out, ancestor))
    _check_writable(out if os.path.isdir(out) else ancestor, flag)


def _check_writable(directory, flag):
    """PermissionError when files cannot be created in ``directory``."""
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError("%s: cannot create files in %s (permission denied or a read-only "
                              "file system)" % (flag, directory))


def safe_file_name(name):
    """A file name from a layer's name: characters other than letters, digits, '.', '_' and '-'
    (slashes, control characters from real files) become '_'.

    Parameters
    ----------
    name : str
        Any text.

    Returns
    -------
    str
        ``name`` with every other character replaced by ``'_'``.
    """
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


class OutputDirectory:
    """An output directory filled all or nothing.

    Files are written to a hidden staging directory inside it and moved into place together by
    :meth:`commit`; :meth:`discard` removes them and any directory made for them, so a run that
    fails leaves nothing behind. Used as a context manager it commits when the block succeeds and
    discards when it raises (including ``KeyboardInterrupt``).

    Parameters
    ----------
    out : str or os.PathLike or None
        The directory; None for a run without output files (:meth:`path` then returns None).
    flag : str, optional
        The option that named it, for the messages.

    Attributes
    ----------
    out : str or None
        The directory.
    written : list of str
        The final paths of the files written so far, in order.
    """

    def __init__(self, out, flag="--out"):
        self.out = None if out is None else os.fspath(out)
        self.flag = flag
        self.written = []   # final paths, in the order written
        self._stage = None
        self._made = []     # directories created for the output, deepest first

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is None:
            try:
                self.commit()
            except BaseException:
                self.discard()
                raise
        else:
            self.discard()

    def _open_stage(self):
        if os.path.exists(self.out) and not os.path.isdir(self.out):
            raise NotADirectoryError("%s is not a directory: %s" % (self.flag, self.out))
        missing, d = [], os.path.abspath(self.out)
        while not os.path.exists(d):
            missing.append(d)
            d = os.path.dirname(d)
        self._made = missing  # known before the folders exist (see fresh_name)
        os.makedirs(self.out, exist_ok=True)
        self._stage = fresh_name(self.out, ".fastdecode-")
        os.mkdir(self._stage, 0o700)

    def path(self, name):
        """Where to write the file ``name`` now, in the staging directory.

        Parameters
        ----------
        name : str
            The file's name; made safe by :func:`safe_file_name`, and given a ``-2``, ``-3``, ...
            suffix when an earlier file of this run took the same name.

        Returns
        -------
        str or None
            The staged path to write, or None for a run without an output directory.
        """
        if self.out is None:
            return None
        if self._stage is None:
            self._open_stage()
        name = safe_file_name(name)
        stem, ext = os.path.splitext(name)
        n = 1
        while os.path.join(self.out, name) in self.written:  # names that became the same
            n += 1
            name = "%s-%d%s" % (stem, n, ext)
        self.written.append(os.path.join(self.out, name))
        return os.path.join(self._stage, name)

    def text(self, name, text):
        """Write ``text`` to the file ``name`` (nothing without an output directory).

        Parameters
        ----------
        name : str
            The file's name, as for :meth:`path`.
        text : str
            The file's contents.
        """
        path = self.path(name)
        if path is not None:
            with open(path, "w") as f:
                f.write(text)

    def commit(self):
        """Move the staged files into the output directory and remove the staging directory."""
        if self._stage is None:
            return
        for path in self.written:
            os.replace(os.path.join(self._stage, os.path.basename(path)), path)
        os.rmdir(self._stage)
        self._stage = None

    def discard(self):
        """Remove the staged files, and the directories made for the output when left empty."""
        if self._stage is not None:
            shutil.rmtree(self._stage, ignore_errors=True)
            self._stage = None
        for d in self._made:
            with contextlib.suppress(OSError):
                os.rmdir(d)
        self.written = []


# --- a whole output folder, replaced at once ---------------------------------------------------

def check_replaceable_dir(out, marker, what="output"):
    """Refuse an output folder that cannot be written or would replace something else than
    an earlier output of the same kind (a folder holding the file ``marker``), before any
    work (``what`` names that output in messages). Returns the absolute path."""
    out = os.fspath(out)
    if not out:
        raise ValueError("the output folder must be named, got an empty string")
    path = os.path.abspath(out)
    if os.path.lexists(path):
        if not os.path.isdir(path) or os.path.islink(path):
            raise FileExistsError("%s exists and is not a folder; the %s would replace it"
                                  % (out, what))
        if os.listdir(path) and not os.path.isfile(os.path.join(path, marker)):
            raise FileExistsError("%s exists and is not an earlier %s (no %s file in it); "
                                  "refusing to replace it: choose a new or empty folder"
                                  % (out, what, marker))
    ancestor = os.path.dirname(path)
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise NotADirectoryError("the output folder %s lies under a file: %s" % (out, ancestor))
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError("cannot write into %s" % ancestor)
    return path


@contextlib.contextmanager
def staged_directory(out, marker, content, what="output"):
    """Yield a staging folder beside ``out``; on success it becomes ``out`` (an earlier output
    there, one holding the file ``marker``, is replaced), else it is removed with any parent
    folders made for it: ``out`` is complete or absent, never half-written.

    content: a dict written as JSON to the file ``marker`` in the new folder; what: the
    output's name in messages.
    """
    path = check_replaceable_dir(out, marker, what)
    parent = os.path.dirname(path)
    made = []
    d = parent
    while not os.path.exists(d):
        made.append(d)
        d = os.path.dirname(d)
    stage = None
    try:
        os.makedirs(parent, exist_ok=True)
        stage = fresh_name(parent, ".%s.staging-" % os.path.basename(path))
        os.mkdir(stage, 0o700)
        yield stage
        with open(os.path.join(stage, marker), "w") as f:
            json.dump(content, f, indent=1)
            f.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(stage, 0o777 & ~umask)  # mkdtemp makes the folder private
        check_replaceable_dir(out, marker, what)  # nothing else appeared there meanwhile
        old = None
        if os.path.isdir(path):
            old = fresh_name(parent, ".%s.old-" % os.path.basename(path))  # named first
        try:
            if old is not None:
                os.mkdir(old, 0o700)
                os.replace(path, os.path.join(old, "previous"))
            os.replace(stage, path)
        except BaseException:
            if old is not None:  # put the earlier output back
                if os.path.isdir(os.path.join(old, "previous")):
                    os.replace(os.path.join(old, "previous"), path)
                with contextlib.suppress(OSError):
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
