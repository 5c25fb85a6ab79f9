"""Extracting untrusted tar archives safely.

A member with an absolute path or a `..` component is refused outright (tarfile would quietly strip a
leading '/'); then tarfile's `data` filter refuses links pointing outside the destination and device
files, and drops setuid bits. A refused member raises UserError naming it; nothing lands outside `dest`.
"""

import tarfile
from pathlib import Path, PurePosixPath

from thesislab.errors import UserError

OUTSIDE = "archives may not write outside their folder"
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def is_tar(path) -> bool:
    return str(path).lower().endswith(TAR_SUFFIXES)


def extract(archive, dest):
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts or member.name.startswith("\\"):
                    raise UserError(f"{archive}: member {member.name!r} refused: {OUTSIDE}")
            tar.extractall(dest, filter="data")
    except tarfile.FilterError as err:
        member = getattr(err, "tarinfo", None)
        name = member.name if member is not None else "?"
        raise UserError(f"{archive}: member {name!r} refused ({err.__class__.__name__}): {OUTSIDE}") from None
    except (tarfile.TarError, EOFError, OSError) as err:
        raise UserError(f"{archive}: not a readable tar archive ({err})") from None
