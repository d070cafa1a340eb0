"""The errors a user can fix: a wrong file, parameter, option or input, each with what to do.

Every such error derives from :class:`Gan2ShapeError`. The CLI catches that class once and prints
its message as one line (``Error: ...``) with a non-zero exit code, without a traceback (``-v``
adds it); anything else is a bug and keeps its traceback. The rule for raising: a check of a
value that comes from outside the program (a file's contents or path, params.yaml, a command-line
option, an environment variable) raises a subclass below, naming the file, key or option and the
fix; a check of what the code itself passes (tensor shapes or types between library functions)
stays a ValueError / TypeError.

This module imports nothing from the package, so that every layer can use it.
"""

from __future__ import annotations

__all__ = [
    "Gan2ShapeError",
    "ConfigError",
    "InputError",
    "ImageFolderError",
    "ArtifactError",
    "CorruptArtifactError",
    "CheckpointError",
]


class Gan2ShapeError(Exception):
    """Base class of the errors a user can fix; the message says what was wrong and what to do."""


class ConfigError(Gan2ShapeError, ValueError):
    """A configuration key is unknown, has the wrong type or an invalid value.

    ``key`` is the dotted path of the offending key (relative while the error travels up the
    dataclass tree, absolute once it leaves ``config.parse_section``). Also a ValueError, which
    is what callers caught before this class existed.
    """

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)


class InputError(Gan2ShapeError, ValueError):
    """A user input other than an artifact, a checkpoint or params.yaml is unusable: an image or
    mask folder, a view distribution file, a ``--device`` value, an environment variable. Also a
    ValueError, which is what these checks raised before this class existed."""


class ImageFolderError(InputError):
    """A folder of images cannot become an image artifact (missing, empty, unreadable or mis-sized
    file); the message names the folder or the file."""


class ArtifactError(Gan2ShapeError):
    """An artifact file is missing, truncated, of the wrong kind or schema, inconsistent in
    itself, or does not fit the other inputs of a step (other instance ids, stage or mode)."""


class CorruptArtifactError(ArtifactError):
    """An artifact's bytes changed after it was written: a dataset's checksum does not match."""


class CheckpointError(Gan2ShapeError):
    """A checkpoint file (a GAN's, or a peer row's training checkpoint, gan2shape.peers) is missing,
    unreadable or does not match the requested networks."""
