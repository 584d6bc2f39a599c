"""The one exception type that means "the user asked for something wrong".

The CLI turns it into a single line on stderr and exit status 2; anything else is a bug
and keeps its traceback. `user_file_errors` turns what libraries raise on a malformed
user file (a truncated gzip, a CSV that is not text, an image PIL cannot identify) into
such a line, naming the file.
"""
from __future__ import annotations

import gzip
import struct
import sys
import zipfile
import zlib
from contextlib import contextmanager


class UserError(Exception):
    pass


# Messages for errors whose own text says little to someone who just handed us a file.
_REASONS = (
    (gzip.BadGzipFile, "it is not gzip-compressed (drop the .gz suffix if it is a raw file)"),
    (zipfile.BadZipFile, "it is not a zip archive, as a .npz must be (save it with numpy.savez)"),
    (EOFError, "the file is truncated (copy or download it again)"),
    (struct.error, "its header is truncated (copy or download it again)"),
    (UnicodeDecodeError, "it is not text in UTF-8 or latin-1"),
)
# A library that was never imported cannot have raised, so its errors are looked up in
# sys.modules only: reading a PNG does not import pandas just to name pandas' exceptions.
_LIBRARY_ERRORS = (
    ("pandas.errors", ("ParserError", "EmptyDataError")),
    ("pyarrow", ("ArrowException",)),
    ("PIL", ("UnidentifiedImageError",)),
    ("datasets.exceptions", ("DatasetsError",)),
)


def _library_errors() -> tuple[type[BaseException], ...]:
    found = [zlib.error]
    for module, names in _LIBRARY_ERRORS:
        if module in sys.modules:
            found += [getattr(sys.modules[module], n) for n in names if hasattr(sys.modules[module], n)]
    return tuple(found)


def one_line(error: BaseException, limit: int = 200) -> str:
    """The error's text on one line of printable characters (a quoted binary file's bytes would
    otherwise reach the terminal), cut at `limit`."""
    text = " ".join(str(error).split()) or type(error).__name__
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextmanager
def user_file_errors(subject: str, also: tuple[type[BaseException], ...] = ()):
    """Re-raise what a library throws on a malformed user file as a one-line UserError.

    `subject` names the file in the message ("CSV '/data/t.csv'"); `also` widens the net
    (OSError, ValueError) around a block that does nothing but read.
    """
    try:
        yield
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"{subject} does not exist") from None
    except tuple(cls for cls, _ in _REASONS) as error:
        reason = next(text for cls, text in _REASONS if isinstance(error, cls))
        raise UserError(f"cannot read {subject}: {reason}") from None
    except _library_errors() + tuple(also) as error:
        cause = error.__cause__ or error.__context__  # datasets wraps the reader's own error
        if "EmptyDataError" in (type(error).__name__, type(cause).__name__):
            raise UserError(f"{subject} is empty") from None
        reason = one_line(error) + (f" ({type(cause).__name__}: {one_line(cause, 120)})" if cause else "")
        raise UserError(f"cannot read {subject}: {reason}") from None
