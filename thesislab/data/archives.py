"""Extracting untrusted tar archives safely.

tarfile's `data` filter refuses members with absolute paths, `..` components, links pointing outside the
destination, and device files, and drops setuid bits; a refused member raises UserError naming it.
"""

import tarfile
from pathlib import Path

from thesislab.errors import UserError

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def is_tar(path) -> bool:
    return str(path).lower().endswith(TAR_SUFFIXES)


def extract(archive, dest):
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    except tarfile.FilterError as err:
        member = getattr(err, "tarinfo", None)
        name = member.name if member is not None else "?"
        raise UserError(f"{archive}: member {name!r} refused ({err.__class__.__name__}): archives may not write outside their folder") from None
    except (tarfile.TarError, EOFError, OSError) as err:
        raise UserError(f"{archive}: not a readable tar archive ({err})") from None
