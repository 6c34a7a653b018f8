"""Opening a location from its settings: a folder (:mod:`archive.storage.replica`) or an S3
bucket (:mod:`archive.storage.s3`, which builds on the first: this module sits above both)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from archive.storage.replica import LocalFolderLocation, ReplicaLocation

if TYPE_CHECKING:
    from archive.config import LocationSettings


def open_location(name: str, entry: LocationSettings) -> ReplicaLocation:
    """The location described by ``[locations.<name>]``; nothing is contacted until used
    (call ``ensure()`` first). boto3 is imported only when an S3 location is opened."""
    # Imported here: the fixity reader's helper process imports the storage modules and no
    # settings (pydantic alone took most of its start-up).
    from archive.config import LocalLocationSettings

    if isinstance(entry, LocalLocationSettings):
        return LocalFolderLocation(name, entry.path, fsync=entry.fsync)
    from archive.storage.s3 import S3Location

    return S3Location.from_settings(name, entry)
