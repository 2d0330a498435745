"""Deletion by data subject in the JSONL metering file (`[ledger] events_jsonl`).

The file is rewritten beside itself and renamed over the original, so a crash leaves either the
old file or the new one, never half of each; the copy keeps the original's mode, owner and group
(`forget` run as root must leave the file to the service that appends to it). The ledger of a
running application opens the path again at its next batch once it names another file; a batch
appended while the file is being rewritten goes into the old one, so run `forget` while the
application is quiet.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

# a line another program wrote in another encoding is read and written back byte for byte (it
# names no user this can know of), not a UnicodeDecodeError after the ledger's rows are gone
KEEP = "surrogateescape"


def forget(path: str | os.PathLike[str], user: str, dry_run: bool = False) -> int:
    """Remove the lines of `user`'s events from the file (or, dry, count them). A line that is
    not a JSON object is kept as it is: it names no user this can know of. The file is streamed,
    never held in memory (a metering file nobody rotates is large): counted first, and
    rewritten only when it has lines to remove."""
    source = Path(path)
    if not source.exists():
        return 0
    # a symbolic link (logs/usage.jsonl -> a data volume): the file it points to is rewritten;
    # renaming the copy over the link left the user's lines in that file, and the link gone
    source = source.resolve()
    with source.open(encoding="utf-8", errors=KEEP) as lines:
        removed = sum(_user(line) == user for line in lines)
    if dry_run or not removed:
        return removed
    fd, temporary = tempfile.mkstemp(prefix=f".{source.name}.", dir=source.parent)
    removed = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors=KEEP) as out, \
                source.open(encoding="utf-8", errors=KEEP) as lines:
            for line in lines:
                if _user(line) == user:
                    removed += 1
                else:
                    out.write(line)
            out.flush()
            os.fsync(out.fileno())
        _same_owner(temporary, source.stat())
        os.replace(temporary, source)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return removed


def _same_owner(temporary: str, original: os.stat_result) -> None:
    """Give the rewritten copy the original's mode, owner and group: `forget` run by root (or
    another user) over a service's file left it root's, and the service, opening it again to
    append, was refused. When this user may not hand it over, the original stays as it was."""
    made = os.stat(temporary)
    if (made.st_uid, made.st_gid) != (original.st_uid, original.st_gid):
        try:
            os.chown(temporary, original.st_uid, original.st_gid)
        except PermissionError:
            if made.st_uid == original.st_uid:  # ours: only its group could not be kept
                os.chmod(temporary, original.st_mode & 0o7777)
                return
            raise PermissionError(f"cannot give the rewritten metering file back to its owner "
                                  f"(uid {original.st_uid}, gid {original.st_gid}): run forget "
                                  f"as that user or as root; the file is unchanged") from None
    os.chmod(temporary, original.st_mode & 0o7777)  # after chown, which clears set-id bits


def _user(line: str) -> object:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row.get("user") if isinstance(row, dict) else None
