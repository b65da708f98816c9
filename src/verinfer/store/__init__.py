"""Content-addressed blobs: CIDv1 (sha2-256) identical to kubo's, local or on IPFS.

``open_store()`` picks the backend (``$VERINFER_STORE``, else the local store);
``store.put(data)`` returns the CID that ``ipfs add --cid-version=1`` gives the same bytes,
and ``store.get(cid)`` returns the bytes, verified against the CID on every read.
"""

from verinfer.store.cid import CID, DAG_PB, RAW
from verinfer.store.ipfs import STORE_ENV, IpfsStore, open_store
from verinfer.store.local import LocalStore, Store
from verinfer.store.unixfs import CHUNK_SIZE, MAX_LINKS, FileBuilder, file_cid

__all__ = [
    "CHUNK_SIZE",
    "CID",
    "DAG_PB",
    "MAX_LINKS",
    "RAW",
    "STORE_ENV",
    "FileBuilder",
    "IpfsStore",
    "LocalStore",
    "Store",
    "file_cid",
    "open_store",
]
