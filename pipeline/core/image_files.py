"""Opening a picture file a person named: every way it can fail is one sentence naming the file. Imports no torch."""
from __future__ import annotations

import contextlib

from .errors import UserError


@contextlib.contextmanager
def opened_image(path, name: str = ""):
    """A picture file opened with Pillow, for the body of the ``with`` to read (``load()``, ``verify()``, its text);
    whatever goes wrong, there or in the body, is one sentence naming the file (``name``: how the command calls it,
    e.g. ``--mask``): it does not exist, it is not an image file Pillow can read, it is truncated or corrupt, or its
    header claims more pixels than is safe to decode (a decompression bomb)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    label = f"{name} {path}" if name else str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                yield image
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"{label} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{label} is a folder, not an image file") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UserError(f"{label} has too many pixels to be safe to decode "
                        f"(more than {Image.MAX_IMAGE_PIXELS} pixels)") from None
    except UnidentifiedImageError:
        raise UserError(f"{label} is not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as err:
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{label} is truncated or corrupt ({why})") from None
