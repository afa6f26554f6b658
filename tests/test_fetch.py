"""fetch: checksum checking and unpacking, with the network replaced by fakes (tests never download)."""

import io
import urllib.request
import zipfile

import pytest

from stjax.data import fetch as fetch_module
from stjax.data.errors import DataError


def test_grouplens_checksum_mismatch_is_an_error(tmp_path, monkeypatch):
    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(b"not the archive"))
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch_module.fetch("ml-100k", tmp_path, source="grouplens", log=lambda m: None)


def test_grouplens_archive_is_unpacked(tmp_path):
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w") as archive:
        archive.writestr("ml-100k/u.data", "1\t2\t3\t4\n")
    fetch_module._unpack_grouplens(payload.getvalue(), tmp_path / "ml-100k")
    assert (tmp_path / "ml-100k" / "u.data").read_text() == "1\t2\t3\t4\n"


def test_ml1m_wheel_copy_user_prefix_is_stripped():
    data = b"user_id:token\titem_id:token\r\n1m_1\tToy Story (1995)\r\n1m_22\tJumanji (1995)\r\n"
    assert fetch_module._strip_user_prefix(data, ".inter") == (
        b"user_id:token\titem_id:token\n1\tToy Story (1995)\n22\tJumanji (1995)\n")


def test_unknown_data_set(tmp_path):
    with pytest.raises(DataError, match="unknown data set 'ml-20m'"):
        fetch_module.fetch("ml-20m", tmp_path)
