"""Checking a generation's options the way ``generate`` does before any weights load, for forms and wizards."""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import OptionError
from .messages import Message

if TYPE_CHECKING:  # pragma: no cover
    from .generation import Plan
    from .options import GenerateOptions


def check_generate_options(options: "GenerateOptions") -> "Plan":
    """Every check ``generate`` runs before loading the model's weights (files, ranges, the model's own
    vocabulary); raises a MapperatorError naming the problem. The plan returned carries the model's tokenizer
    and version preset."""
    from .generation import prepare

    return prepare(options)


def check_output_folder(folder: Path) -> None:
    """Raises OptionError unless ``folder`` takes files or can be made (it is only made when the outputs are
    written, so a job that fails leaves no empty folder behind). Generation, the app and the wizard ask this."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, Message("error.generation.output_is_file",
                                                            "{path} is a file, not a folder", path=str(existing)))
        if existing != folder:
            if not os.access(existing, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, Message("error.generation.cannot_create_folders", "cannot create "
                                                            "folders in {path}", path=str(existing)))
            return
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".mapperator-write-test-"):
            pass
    except OSError as e:
        from .beatmap.files import os_reason

        raise OptionError(Message("error.generation.output_not_writable", "cannot write to the output folder {folder}: "
                                  "{reason}", folder=str(folder), reason=os_reason(e))) from None
