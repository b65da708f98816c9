"""The KZG structured reference string (SRS): a cached development one, or a trusted file.

A KZG SRS holds powers of a secret tau; whoever knows tau can forge proofs. ``gen_srs``
makes one locally, from randomness this machine saw: fine for development, worthless as a
guarantee to anyone else. Production deployments pass a file from a public ceremony
(``trusted_srs``), made for exactly the circuit's logrows; verinfer checks its header and
size before use. EZKL's ``get_srs`` (which downloads one) is not used: it needs the network,
and pointed at a file made by ``gen_srs`` it fails its hash check and deletes the file.

File layout (halo2 ``ParamsKZG``, raw bytes, as ``gen_srs`` writes it): ``k`` as u32
little-endian, then 2^k G1 points, 2^k Lagrange-basis G1 points (64 bytes each), then the
two G2 points (128 bytes each).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import structlog

from verinfer.home import home_dir
from verinfer.verify.backend import SrsKind
from verinfer.verify.errors import SrsError
from verinfer.verify.zk_jobs import run_job

log = structlog.get_logger(__name__)

SRS_DIR_ENV = "VERINFER_SRS_DIR"
MIN_LOGROWS, MAX_LOGROWS = 1, 26
GEN_SRS_TIMEOUT_PER_ROW_S = 0.01  # gen_srs measured ~0.35 ms per row (2 cores); 30x margin
GEN_SRS_MIN_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Srs:
    path: Path
    logrows: int
    kind: SrsKind
    sha256: str


def expected_size(logrows: int) -> int:
    return 4 + 2 * (1 << logrows) * 64 + 2 * 128


def srs_dir() -> Path:
    """Where development SRS files are cached: ``$VERINFER_SRS_DIR`` or ``$VERINFER_HOME/srs``."""
    env = os.environ.get(SRS_DIR_ENV)
    return Path(env).expanduser() if env else home_dir() / "srs"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_srs_file(path: Path, logrows: int) -> None:
    """Raise ``SrsError`` unless ``path`` is a raw KZG SRS for exactly ``logrows``."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            header = f.read(4)
    except OSError as exc:
        raise SrsError(f"cannot read the SRS file {path}: {exc}") from exc
    if len(header) < 4:
        raise SrsError(f"{path} is not an SRS file (too short)")
    k = int.from_bytes(header, "little")
    if k != logrows:
        raise SrsError(
            f"{path} is an SRS for logrows {k}, but this circuit needs logrows {logrows}",
            hint=f"pass the ceremony's file for k={logrows} (a larger one makes setup ~9x slower "
            "and is refused)",
        )
    if size != expected_size(logrows):
        raise SrsError(
            f"{path} has {size} bytes; a raw SRS for logrows {logrows} has "
            f"{expected_size(logrows)}",
            hint="the file is truncated or in another serialization; re-download it",
        )


def development_srs(logrows: int, *, cache_dir: Path | None = None, warn: bool = True) -> Srs:
    """The cached development SRS for ``logrows``, generated on first use. NOT for production.

    ``warn`` logs the loud warning (setup does; each later prove and verify only at debug).
    """
    if not MIN_LOGROWS <= logrows <= MAX_LOGROWS:
        raise SrsError(f"logrows {logrows} is outside {MIN_LOGROWS}..{MAX_LOGROWS}")
    directory = cache_dir or srs_dir()
    path = directory / f"kzg{logrows}.dev.srs"
    if not path.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".kzg{logrows}.{os.getpid()}.tmp"
        timeout = max(GEN_SRS_MIN_TIMEOUT_S, GEN_SRS_TIMEOUT_PER_ROW_S * (1 << logrows))
        log.info("zk.srs.generating", logrows=logrows, path=str(path))
        try:
            run_job(
                "gen_srs",
                {"srs": str(tmp), "logrows": logrows},
                workdir=directory,
                timeout=timeout,
            )
            check_srs_file(tmp, logrows)
            os.replace(tmp, path)  # atomic: concurrent generators each write a complete file
        finally:
            tmp.unlink(missing_ok=True)
    else:
        check_srs_file(path, logrows)
    (log.warning if warn else log.debug)(
        "zk.srs.DEVELOPMENT_ONLY",
        logrows=logrows,
        path=str(path),
        warning="this SRS was generated locally by gen_srs; proofs made with it convince no one "
        "who did not make it. Pass a trusted ceremony SRS (trusted_srs=...) in production.",
    )
    return Srs(path=path, logrows=logrows, kind="development", sha256=file_sha256(path))


def trusted_srs(path: Path, logrows: int) -> Srs:
    """A user-supplied SRS file (from a public ceremony), checked to be for ``logrows``."""
    path = path.expanduser().resolve()
    check_srs_file(path, logrows)
    log.info("zk.srs.trusted", logrows=logrows, path=str(path))
    return Srs(path=path, logrows=logrows, kind="trusted", sha256=file_sha256(path))
