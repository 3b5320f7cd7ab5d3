"""Watch sources are untrusted: schemes, hosts, private addresses and local files are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import ApiError, InvalidSource, SourceNotAllowed
from service.watch.policy import SourcePolicy
from watchbuy.settings import Settings


def policy(**settings: object) -> SourcePolicy:
    return SourcePolicy.from_settings(Settings(**settings))  # type: ignore[arg-type]


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/live.m3u8", "https://10.1.2.3/a.m3u8", "http://169.254.169.254/latest/meta-data",
    "rtsp://192.168.0.10/cam", "http://[::1]:8080/x.m3u8", "http://localhost/x.m3u8", "http://0.0.0.0/x",
])
def test_private_and_loopback_addresses_are_refused(url: str) -> None:
    with pytest.raises(SourceNotAllowed, match="non-public"):
        policy().check(url)


def test_public_addresses_pass_and_private_ones_pass_when_allowed() -> None:
    assert policy().check("https://93.184.216.34/live/index.m3u8") == "https://93.184.216.34/live/index.m3u8"
    assert policy(watch_allow_private=True).check("http://127.0.0.1:9/x.m3u8") == "http://127.0.0.1:9/x.m3u8"


@pytest.mark.parametrize("url", ["ftp://93.184.216.34/a.mp4", "gopher://93.184.216.34/", "concat:a.mp4|b.mp4",
                                 "data:video/mp4;base64,AAAA", "subfile,,start,0,end,0,,:a.mp4"])
def test_other_schemes_and_ffmpeg_protocols_are_refused(url: str) -> None:
    with pytest.raises(ApiError) as caught:
        policy().check(url)
    assert caught.value.status in (403, 422)


def test_the_host_allow_list() -> None:
    allowing = policy(watch_hosts=["93.184.216.34"])
    assert allowing.check("https://93.184.216.34/x.m3u8")
    with pytest.raises(SourceNotAllowed, match="WATCHBUY_WATCH_HOSTS"):
        allowing.check("https://1.1.1.1/x.m3u8")


def test_local_files_only_under_the_configured_folder(tmp_path: Path) -> None:
    inside = tmp_path / "videos" / "a.mp4"
    inside.parent.mkdir()
    inside.write_bytes(b"x")
    with pytest.raises(SourceNotAllowed, match="not set"):
        policy().check(str(inside))
    scoped = policy(watch_local_root=inside.parent)
    assert scoped.check(str(inside)) == str(inside.resolve())
    assert scoped.check(f"file://{inside}") == str(inside.resolve())
    with pytest.raises(SourceNotAllowed, match="must be under"):
        scoped.check(str(inside.parent / ".." / "elsewhere.mp4"))
    with pytest.raises(InvalidSource, match="no such file"):
        scoped.check(str(inside.parent / "missing.mp4"))


@pytest.mark.parametrize("url", ["", "http://a b/", "http://x/\n", "h" * 3000])
def test_malformed_sources_are_422(url: str) -> None:
    with pytest.raises(InvalidSource):
        policy().check(url)


def test_ffmpeg_may_open_only_the_sources_own_kind_of_protocol() -> None:
    from service.watch.source import protocols

    assert "file" not in protocols("https://93.184.216.34/live/index.m3u8")
    assert protocols("rtmp://93.184.216.34/live/room") == "rtmp,rtmps,tcp,tls"
    assert protocols("/videos/replay.mp4") == protocols("file:///videos/replay.mp4") == "file,crypto"
