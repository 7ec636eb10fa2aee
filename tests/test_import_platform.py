"""What platforms export: sounds, durations, author counters, abbreviated counts, several files
of one scrape, and hashtags the app ended at a space."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mishon.cli import app
from mishon.config import ImportSettings
from mishon.data.hashtags import parse_hashtag_list
from mishon.data.importers import import_dataset, parse_mapping
from mishon.data.sounds import SoundNamer, normalize_title
from mishon.data.store import read_manifest, read_posts, read_users
from mishon.data.validate import validate_dataset
from mishon.data.values import parse_count, parse_duration
from mishon.errors import FieldError, InputError, MishonError

from .conftest import SHARED_DATA

TIKTOK = SHARED_DATA / "tiktok-famous"
TIKTOK_FILES = ["top_users_vids.csv", *(f"sug_users_vids{i}.csv" for i in range(1, 5))]
TIKTOK_MAP = (
    "post_id=id,user_id=user_name,hashtags=hashtags,created_at=create_time,sound=song,"
    "duration=video_length,likes=n_likes,shares=n_shares,comments=n_comments,views=n_plays,"
    "followers=n_followers,total_likes=n_total_likes,total_posts=n_total_vids"
)
MAP = (
    "post_id=id,user_id=author,hashtags=tags,created_at=time,sound=song,duration=length,"
    "likes=likes,followers=fans,total_likes=hearts,total_posts=videos"
)
HEADER = "id,author,tags,time,song,length,likes,fans,hearts,videos\n"


def settings(**extra: object) -> ImportSettings:
    return ImportSettings(format="csv", mapping=parse_mapping(MAP), **extra)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "number"),
    [("12.7M", 12_700_000), ("274.2K", 274_200), ("1,633", 1633), ("1b", 10**9), ("3.0", 3)],
)
def test_counts_as_platforms_write_them(text: str, number: int) -> None:
    assert parse_count(text, "likes") == number


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.2345K", "not a whole number"),
        ("1,63", "like 1633, 1,633 or 12.7M"),
        ("12.7X", "like 1633, 1,633 or 12.7M"),
        ("-4K", "must be >= 0"),
    ],
)
def test_bad_counts_are_refused(text: str, message: str) -> None:
    with pytest.raises(FieldError, match=message):
        parse_count(text, "likes")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(15, 15.0), ("15", 15.0), ("0:15", 15.0), ("2:05", 125.0), ("1:02:03", 3723.0), ("9s", 9.0)],
)
def test_durations_in_seconds_or_clock_time(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["-1", "1:75", "1:61:00", "long", "999999"])
def test_bad_durations_are_refused(value: str) -> None:
    with pytest.raises(FieldError) as info:
        parse_duration(value)
    assert info.value.reason == "bad duration"


def test_original_sound_titles_become_one_sound_per_author() -> None:
    namer = SoundNamer()
    assert namer.identity("Original Sound", "ana") == "original sound@ana"
    assert namer.identity("original  sound", "bo") == "original sound@bo"
    assert namer.identity("оригинальный звук", "ivan") == "оригинальный звук@ivan"
    # a title naming its creator is one sound for whoever reuses it
    assert namer.identity("original sound - maria", "ana") == "original sound - maria"
    assert namer.identity("Adderall (Corvette Corvette)", "ana") == namer.identity(
        "adderall (corvette corvette)", "bo"
    )
    assert namer.identity("  ", "ana") is None and namer.identity(None, "ana") is None
    # invisible characters (a zero-width space in Khmer titles) do not split a sound
    assert normalize_title("ស\u200bសៀ") == normalize_title("សសៀ")
    assert SoundNamer(["Mi Sonido"]).identity("MI SONIDO", "x") == "mi sonido@x"


def test_list_items_end_at_any_unicode_space() -> None:
    parsed = parse_hashtag_list("['PaTiChallenge\\xa0on', 'fyp', 'dance\\u3000tiktok']")
    assert parsed.tags == ["patichallenge", "fyp", "dance"]
    assert parsed.cut == 2
    assert parse_hashtag_list('["a b"]').tags == ["a"]


def test_several_files_merge_repeats_and_report_conflicts(tmp_path: Path) -> None:
    first = write(
        tmp_path / "top.csv",
        HEADER
        + "1,ana,\"['fyp', 'dance']\",1604786417,Original Sound,0:15,12.7K,1.2M,30M,50\n"
        + "2,bo,[],1604786500,Savage,9,3,100,1000,10\n",
    )
    second = write(
        tmp_path / "suggested.csv",
        HEADER
        # post 1 again, collected later: other counters, same post
        + "1,ana,\"['fyp', 'dance']\",1604786417,Original Sound,0:15,13K,1.3M,31M,51\n"
        # post 2 again with other hashtags: not the same post
        + "2,bo,\"['x']\",1604786500,Savage,9,3,100,1000,10\n"
        + "3,bo,\"['savage']\",1604790000,savage,10,1,101,1001,11\n",
    )
    out = tmp_path / "ds"
    with pytest.raises(InputError) as info:
        import_dataset([first, second], out, settings())
    (problem,) = info.value.problems
    assert str(problem).startswith(f"{second}, line 3, field 'id': ")
    assert f"already used at line 3 of {first}, with another hashtags" in str(problem)

    result = import_dataset([first, second], out, settings(skip_bad=True))
    assert (result.records_read, len(result.posts), result.merged) == (5, 3, 1)
    posts = read_posts(out).set_index("post_id")
    assert posts.loc["1", "likes"] == 12_700  # the first record's counters
    assert posts.loc["1", "sound"] == "original sound@ana"
    assert posts.loc["2", "sound"] == posts.loc["3", "sound"] == "savage"
    assert posts.loc["1", "duration"] == 15.0
    users = read_users(out)
    assert users is not None
    bo = users.set_index("user_id").loc["bo"]
    # the author's counters as stated on their latest post
    assert (bo["followers"], bo["total_likes"], bo["total_posts"]) == (101, 1001, 11)
    assert read_manifest(out)["merged_repeats"] == 1
    assert validate_dataset(out) == []


def test_a_repeat_naming_another_video_is_another_post(tmp_path: Path) -> None:
    for name in ("a", "b"):  # not decoded by the import
        (tmp_path / f"{name}.mp4").write_bytes(name.encode())
    src = write(
        tmp_path / "p.csv",
        "id,author,tags,clip\n1,u,x,a.mp4\n1,u,x,a.mp4\n2,u,y,a.mp4\n2,u,y,b.mp4\n",
    )
    mapping = parse_mapping("post_id=id,user_id=author,hashtags=tags,video=clip")
    result = import_dataset(
        src, tmp_path / "ds", ImportSettings(format="csv", mapping=mapping, skip_bad=True)
    )
    assert result.merged == 1  # post 1 twice with one video
    (problem,) = result.problems
    assert problem.row == 5 and "already used at line 4, with another video" in str(problem)
    posts = read_posts(tmp_path / "ds").set_index("post_id")
    # post 2 keeps the first record's video, not the refused repeat's
    assert (tmp_path / "ds" / posts.loc["2", "video"]).read_bytes() == b"a"


def test_sources_given_twice_or_with_colliding_ids(tmp_path: Path) -> None:
    src = write(tmp_path / "a.csv", "author,tags\nu,x\n")
    (tmp_path / "b").mkdir()
    other = write(tmp_path / "b" / "a.csv", "author,tags\nu,y\n")
    plain = ImportSettings(format="csv", mapping=parse_mapping("user_id=author,hashtags=tags"))
    with pytest.raises(MishonError, match="given more than once"):
        import_dataset([src, src], tmp_path / "ds", plain)
    with pytest.raises(MishonError, match="sources must have distinct names"):
        import_dataset([src, other], tmp_path / "ds", plain)


def test_cli_imports_several_files_and_extra_original_titles(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", HEADER + "1,ana,[],1604786417,mi sonido,9,1,1,1,1\n")
    b = write(tmp_path / "b.csv", HEADER + "2,bo,['x'],1604786418,Mi Sonido,9,1,1,1,1\n")
    out = tmp_path / "ds"
    args = ["data", "import", str(a), str(b), str(out), "-f", "csv", "--map", MAP]
    result = CliRunner().invoke(app, [*args, "--original-sound", "Mi Sonido"])
    assert result.exit_code == 0, result.output
    assert "imported 2 posts of 2 records" in result.output
    assert read_posts(out)["sound"].tolist() == ["mi sonido@ana", "mi sonido@bo"]
    manifest = read_manifest(out)
    assert manifest["source"]["original_sound_titles"] == ["Mi Sonido"]


@pytest.mark.skipif(not TIKTOK.is_dir(), reason="the shared TikTok data is not here")
def test_the_tiktok_files_import_with_one_command(tmp_path: Path) -> None:
    sources = [str(TIKTOK / name) for name in TIKTOK_FILES]
    out = tmp_path / "tiktok"
    args = ["data", "import", *sources, str(out), "-f", "csv", "--map", TIKTOK_MAP]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    # every row accounted for: a post, or a repeat of one merged into it
    assert manifest["records_read"] == 54_261
    assert (manifest["posts"], manifest["merged_repeats"], manifest["skipped"]) == (
        50_124,
        4_137,
        0,
    )
    posts = read_posts(out)
    assert posts["sound"].str.endswith("@charlidamelio").any()
    assert "patichallenge" in {tag for tags in posts["hashtags"] for tag in tags}
    assert not (out / "import_report.json").exists()
    stats = json.loads(CliRunner().invoke(app, ["data", "stats", str(out), "--json"]).output)
    assert stats["user_counters"] == ["followers", "total_likes", "total_posts"]
