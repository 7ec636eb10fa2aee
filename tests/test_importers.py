from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mishon.cli import app
from mishon.config import ImportSettings
from mishon.data.importers import import_dataset, parse_mapping
from mishon.data.stats import dataset_stats
from mishon.data.store import read_posts, read_users
from mishon.data.validate import validate_dataset
from mishon.data.values import parse_count, parse_timestamp
from mishon.errors import FieldError, InputError, MishonError

from .conftest import SHARED_DATA

MAP = (
    "post_id=id,user_id=author,caption=text,hashtags=tags,created_at=time,likes=likes,"
    "followers=fans"
)
HEADER = "id,author,text,tags,time,likes,fans\n"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def settings(fmt: str = "csv", mapping: str = MAP, **extra: object) -> ImportSettings:
    return ImportSettings(format=fmt, mapping=parse_mapping(mapping), **extra)


def test_csv_round_trip_moves_caption_hashtags_and_keeps_unlabeled(tmp_path: Path) -> None:
    src = write(
        tmp_path / "posts.csv",
        HEADER
        + 'a1,u1,"Sunset at the #Beach, wow",travel;Beach,2026-01-02T10:00:00Z,5,100\n'
        + "a2,u1,plain text,,2026-01-03 12:00,0,120\n"
        + 'a3,u2,"multi\nline #日本",["x"],1767225600,7,\n',
    )
    out = tmp_path / "ds"
    import_dataset(src, out, settings())
    posts = read_posts(out)
    assert posts["post_id"].tolist() == ["a1", "a2", "a3"]
    assert posts["hashtags"].tolist() == [["travel", "beach"], [], ["x", "日本"]]
    assert posts["caption"].tolist() == ["Sunset at the, wow", "plain text", "multi line"]
    assert posts["likes"].tolist() == [5, 0, 7]
    assert str(posts["created_at"].iloc[2]) == "2026-01-01 00:00:00+00:00"
    users = read_users(out)
    assert users is not None
    # u1's latest post (a2, 2026-01-03) states 120 followers; u2 states none.
    followers = users.set_index("user_id")["followers"]
    assert followers["u1"] == 120 and pd.isna(followers["u2"])
    assert validate_dataset(out) == []
    stats = dataset_stats(out)
    assert stats["posts"] == 3 and stats["posts_without_hashtags"] == 1
    assert stats["hashtags"] == 4 and stats["users"] == 2


def test_tsv_and_jsonl_give_the_same_posts(tmp_path: Path) -> None:
    tsv = write(tmp_path / "p.tsv", "id\tauthor\ttags\na\tu\t#One #two\nb\tv\tthree\n")
    lines = [
        {"id": "a", "author": "u", "tags": ["#One", "two"]},
        {"id": "b", "author": "v", "tags": "three"},
    ]
    jsonl = write(tmp_path / "p.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    mapping = "post_id=id,user_id=author,hashtags=tags"
    import_dataset(tsv, tmp_path / "a", settings("tsv", mapping))
    import_dataset(jsonl, tmp_path / "b", settings("jsonl", mapping))
    pd.testing.assert_frame_equal(read_posts(tmp_path / "a"), read_posts(tmp_path / "b"))
    assert read_posts(tmp_path / "a")["hashtags"].tolist() == [["one", "two"], ["three"]]


def test_generated_post_ids_name_file_and_line(tmp_path: Path) -> None:
    src = write(tmp_path / "feed.csv", "author,tags\nu,a\nu,b\n")
    import_dataset(src, tmp_path / "ds", settings(mapping="user_id=author,hashtags=tags"))
    assert read_posts(tmp_path / "ds")["post_id"].tolist() == ["feed-2", "feed-3"]


def _problems(src: Path, out: Path, fmt: str = "csv", mapping: str = MAP) -> list[str]:
    with pytest.raises(InputError) as info:
        import_dataset(src, out, settings(fmt, mapping))
    assert not out.exists(), "a failed import must write nothing"
    return [str(p) for p in info.value.problems]


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    src = write(tmp_path / "p.csv", "id,author,text,time,likes,fans\na,u,t,2026-01-01,1,1\n")
    (problem,) = _problems(src, tmp_path / "out")
    assert problem.startswith(f"{src}, field 'tags': missing column(s) ['tags']")


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ("a1,u,t,y,2026-01-01,1,1", "id", "'a1' already used at line 2, with another hashtags"),
        ("b,u,t,\"['x', 2]\",2026-01-01,1,1", "tags", "non-string item 2"),
        ("b,u,t,[oops,2026-01-01,1,1", "tags", "cannot parse hashtag list"),
        ("b,u,t,x,2026-01-01,-3,1", "likes", "must be >= 0, got -3"),
        ("b,u,t,x,2026-01-01,12q,1", "likes", "(like 1633, 1,633 or 12.7M), got '12q'"),
        ("b,u,t,x,2026-01-01,1,1.5", "fans", "'1.5' is not a whole number"),
        ("b,u,t,x,2026-01-01,1.2345K,1", "likes", "'1.2345K' is not a whole number"),
        ("b,u,t,x,yesterday,1,1", "time", "'yesterday' is relative"),
        ("b,,t,x,2026-01-01,1,1", "author", "is empty"),
        ("b,u,t,x,2026-01-01,1", None, "has 6 cells, the header 7"),
    ],
)
def test_bad_row_names_file_line_and_field(
    tmp_path: Path, row: str, field: str | None, message: str
) -> None:
    src = write(tmp_path / "p.csv", HEADER + "a1,u,t,x,2026-01-01,1,1\n" + row + "\n")
    (problem,) = _problems(src, tmp_path / "out")
    where = f"{src}, line 3" + (f", field '{field}'" if field else "")
    assert problem.startswith(where + ": "), problem
    assert message in problem


def test_unreadable_files(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path / "absent.csv", tmp_path / "out")
    assert problem == f"{tmp_path / 'absent.csv'}: file not found"
    latin = tmp_path / "latin.csv"
    latin.write_bytes(HEADER.encode() + "a,u,caf\xe9,x,2026-01-01,1,1\n".encode("latin-1"))
    (problem,) = _problems(latin, tmp_path / "out")
    assert "line 2" in problem and "not valid text" in problem
    empty = write(tmp_path / "empty.csv", "")
    (problem,) = _problems(empty, tmp_path / "out")
    assert "empty" in problem


def test_bad_jsonl_lines(tmp_path: Path) -> None:
    src = write(tmp_path / "p.jsonl", '{"id": "a", "author": "u", "tags": "x"}\n{oops\n[1, 2]\n')
    problems = _problems(src, tmp_path / "out", "jsonl", "post_id=id,user_id=author,hashtags=tags")
    assert problems == [
        f"{src}, line 2: not valid JSON: Expecting property name enclosed in double quotes",
        f"{src}, line 3: not a JSON object",
    ]


def test_jsonl_values_of_the_wrong_type_are_errors_not_strings(tmp_path: Path) -> None:
    lines = [
        {"id": "a", "author": {"a": 1}, "tags": "x"},
        {"id": "b", "author": "u", "tags": "x", "text": ["a", "list"]},
        {"id": True, "author": "u", "tags": "x"},
        {"id": 7, "author": 12, "tags": "x"},  # numbers as ids are fine
    ]
    src = write(tmp_path / "p.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    mapping = "post_id=id,user_id=author,hashtags=tags,caption=text"
    problems = _problems(src, tmp_path / "out", "jsonl", mapping)
    assert len(problems) == 3, problems
    assert "line 1, field 'author': expected text, got an object" in problems[0]
    assert "line 2, field 'text': expected text, got a list" in problems[1]
    assert "line 3, field 'id': expected text, got true/false" in problems[2]


def test_an_import_never_replaces_the_videos_it_links_to(
    tmp_path: Path, tiny_corpus: tuple[Path, object]
) -> None:
    corpus, _ = tiny_corpus
    src = tmp_path / "src"
    (src / "clips").mkdir(parents=True)
    (src / "clips" / "one.mp4").write_bytes((corpus / "media" / "p000000.mp4").read_bytes())
    mapping = "post_id=id,user_id=author,hashtags=tags,video=vid"
    first = write(src / "one.csv", "id,author,tags,vid\na,u,x,clips/one.mp4\n")
    import_dataset(first, src / "data", settings("csv", mapping))  # a copy inside data/
    (linked,) = (src / "data" / "media").iterdir()
    again = write(src / "two.csv", f"id,author,tags,vid\na,u,x,data/media/{linked.name}\n")
    with pytest.raises(MishonError, match="lie inside the output directory"):
        import_dataset(again, src / "data", settings("csv", mapping, media="symlink"), True)
    assert linked.is_file() and not linked.is_symlink()  # the copy is still there


def test_a_symlink_loop_in_the_video_column_is_a_bad_record(tmp_path: Path) -> None:
    (tmp_path / "loop.mp4").symlink_to(tmp_path / "loop.mp4")
    src = write(tmp_path / "p.csv", "id,author,tags,clip\na,u,x,loop.mp4\n")
    mapping = "post_id=id,user_id=author,hashtags=tags,video=clip"
    (problem,) = _problems(src, tmp_path / "out", "csv", mapping)
    assert "line 2, field 'clip'" in problem and "cannot be resolved" in problem
    with pytest.raises(ValueError, match="hashtag_separator"):
        ImportSettings(format="csv", mapping={"post_id": "id"}, hashtag_separator="")


def test_media_is_checked_and_copied(tmp_path: Path, tiny_corpus: tuple[Path, object]) -> None:
    corpus, _ = tiny_corpus
    clip = corpus / "media" / "p000000.mp4"
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "one.mp4").write_bytes(clip.read_bytes())
    (tmp_path / "clips" / "notes.txt").write_text("not a video")
    mapping = "post_id=id,user_id=author,hashtags=tags,video=clip"
    header = "id,author,tags,clip\n"
    bad = write(tmp_path / "bad.csv", header + "a,u,x,clips/missing.mp4\nb,u,x,clips/notes.txt\n")
    problems = _problems(bad, tmp_path / "out", mapping=mapping)
    assert problems[0].endswith("line 2, field 'clip': 'clips/missing.mp4' is not a readable file")
    assert "line 3, field 'clip'" in problems[1] and "extension '.txt'" in problems[1]
    good = write(tmp_path / "good.csv", header + "a/1,u,x,clips/one.mp4\nb,u,y,\n")
    import_dataset(good, tmp_path / "ds", settings(mapping=mapping))
    posts = read_posts(tmp_path / "ds")
    video = posts["video"].iloc[0]
    assert video.startswith("media/a_1-") and video.endswith(".mp4")
    assert (tmp_path / "ds" / video).read_bytes() == clip.read_bytes()
    assert pd.isna(posts["video"].iloc[1])
    assert validate_dataset(tmp_path / "ds") == []


def test_media_outside_the_source_folder_is_refused(
    tmp_path: Path, tiny_corpus: tuple[Path, object]
) -> None:
    corpus, _ = tiny_corpus
    clip = corpus / "media" / "p000000.mp4"
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes(clip.read_bytes())
    source = tmp_path / "src"
    (source / "clips").mkdir(parents=True)
    (source / "clips" / "link.mp4").symlink_to(outside)
    mapping = "post_id=id,user_id=author,hashtags=tags,video=clip"
    rows = f"a,u,x,{outside}\nb,u,x,../elsewhere.mp4\nc,u,x,clips/link.mp4\n"
    src = write(source / "p.csv", "id,author,tags,clip\n" + rows)
    problems = _problems(src, tmp_path / "out", mapping=mapping)
    assert len(problems) == 3
    assert all("field 'clip'" in p and "outside" in p for p in problems)
    assert "--allow-outside-media" in problems[0]
    out = tmp_path / "ds"
    import_dataset(src, out, settings(mapping=mapping, allow_outside_media=True))
    videos = read_posts(out)["video"].tolist()
    assert all((out / v).read_bytes() == clip.read_bytes() for v in videos)


def test_skip_bad_imports_the_rest_and_reports_each_row(tmp_path: Path) -> None:
    src = write(
        tmp_path / "p.csv",
        HEADER
        + "a,u,t,x,2026-01-01,1,1\n"
        + "a,u,t,y,2026-01-01,1,1\n"
        + "b,u,t,y,2026-01-01,-1,1\n"
        + "c,u,t,y,2026-01-01,2,1\n"
        + "d,u,t,y,never,2,1\n",
    )
    out = tmp_path / "ds"
    result = import_dataset(src, out, settings(skip_bad=True))
    assert read_posts(out)["post_id"].tolist() == ["a", "c"]
    assert result.skipped_by_reason() == {
        "duplicate post_id": 1,
        "bad number": 1,
        "bad timestamp": 1,
    }
    report = json.loads((out / "import_report.json").read_text())
    assert [row["line"] for row in report["skipped"]] == [3, 4, 6]
    assert [row["field"] for row in report["skipped"]] == ["id", "likes", "time"]


def test_output_directory_guards(tmp_path: Path) -> None:
    src = write(tmp_path / "p.csv", "author,tags\nu,a\n")
    mapping = "user_id=author,hashtags=tags"
    out = tmp_path / "ds"
    import_dataset(src, out, settings(mapping=mapping))
    with pytest.raises(MishonError, match="not empty; pass --overwrite"):
        import_dataset(src, out, settings(mapping=mapping))
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(MishonError, match=r"not a dataset's \(mine.txt\)"):
        import_dataset(src, out, settings(mapping=mapping), overwrite=True)
    assert (out / "mine.txt").read_text() == "keep me" and (out / "posts.parquet").is_file()
    with pytest.raises(MishonError, match="must not lie inside the source"):
        import_dataset(tmp_path, tmp_path / "inside", settings("howyoutagtweets"))


def test_overwrite_never_replaces_the_source_folder(tmp_path: Path) -> None:
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "clip.mp4").write_bytes(b"my only copy")
    src = write(tmp_path / "p.csv", "author,tags\nu,a\n")
    for out in (tmp_path, tmp_path.parent):
        with pytest.raises(MishonError, match="must not be or hold the source"):
            import_dataset(src, out, settings(mapping="user_id=author,hashtags=tags"), True)
    assert (tmp_path / "media" / "clip.mp4").read_bytes() == b"my only copy"


def test_failed_overwrite_keeps_the_old_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mapping = "user_id=author,hashtags=tags"
    out = tmp_path / "ds"
    import_dataset(
        write(tmp_path / "old.csv", "author,tags\nu,old\n"), out, settings(mapping=mapping)
    )
    new = write(tmp_path / "new.csv", "author,tags\nu,new\n")

    def crash(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("mishon.data.importers.write_dataset", crash)
    with pytest.raises(OSError, match="disk full"):
        import_dataset(new, out, settings(mapping=mapping), overwrite=True)
    monkeypatch.undo()
    assert read_posts(out)["hashtags"].tolist() == [["old"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "new.csv", "old.csv"]
    import_dataset(new, out, settings(mapping=mapping), overwrite=True)
    assert read_posts(out)["hashtags"].tolist() == [["new"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "new.csv", "old.csv"]


def test_a_swap_killed_half_way_is_recovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where directories cannot be exchanged in one step, the old one is renamed aside first;
    a kill right then leaves it there, and the next run puts it back."""
    mapping = "user_id=author,hashtags=tags"
    out = tmp_path / "ds"
    import_dataset(
        write(tmp_path / "old.csv", "author,tags\nu,old\n"), out, settings(mapping=mapping)
    )
    monkeypatch.setattr("mishon.data.store._exchange", lambda a, b: False)
    renames = []
    real_rename = os.rename

    def killed_on_second_rename(a: object, b: object) -> None:
        renames.append(a)
        if len(renames) == 2:
            raise KeyboardInterrupt  # as a kill between the two renames
        real_rename(a, b)

    monkeypatch.setattr("mishon.data.store.os.rename", killed_on_second_rename)
    new = write(tmp_path / "new.csv", "author,tags\nu,new\n")
    with pytest.raises(KeyboardInterrupt):
        import_dataset(new, out, settings(mapping=mapping), overwrite=True)
    monkeypatch.undo()
    assert not out.exists() and (tmp_path / ".ds.old" / "posts.parquet").is_file()
    with pytest.raises(MishonError, match="not empty"):
        import_dataset(new, out, settings(mapping=mapping))  # recovers first, then refuses
    assert read_posts(out)["hashtags"].tolist() == [["old"]]
    assert not (tmp_path / ".ds.old").exists()


def test_unbalanced_quote_is_one_bad_record(tmp_path: Path) -> None:
    src = write(
        tmp_path / "p.csv",
        'id,author,text,tags\n1,u1,"hello,fun\n2,u2,second,cats\n3,u3,third "x",dogs\n'
        '4,u4,"fourth\nline two",birds\n5,u5,"never closed,fish\n',
    )
    mapping = "post_id=id,user_id=author,caption=text,hashtags=tags"
    problems = _problems(src, tmp_path / "out", mapping=mapping)
    assert problems == [
        f"{src}, line 2, field 'text': malformed CSV: ',' expected after '\"' "
        "(an unbalanced quote?)",
        f"{src}, line 7, field 'text': a quoted cell opened on this line never closes",
    ]
    out = tmp_path / "ds"
    import_dataset(src, out, settings(mapping=mapping, skip_bad=True))
    posts = read_posts(out)
    assert posts["post_id"].tolist() == ["2", "3", "4"]
    assert posts["hashtags"].tolist() == [["cats"], ["dogs"], ["birds"]]
    assert posts["caption"].tolist() == ["second", 'third "x"', "fourth line two"]


def test_oversized_cell_and_number_are_bad_records(tmp_path: Path) -> None:
    src = write(
        tmp_path / "p.csv",
        "id,author,text,tags,likes\n"
        f"1,u1,{'x' * 200_000},cats,1\n"
        "2,u2,ok,dogs,99999999999999999999999\n"
        "3,u3,fine,birds,2\n",
    )
    mapping = "post_id=id,user_id=author,caption=text,hashtags=tags,likes=likes"
    result = import_dataset(src, tmp_path / "ds", settings(mapping=mapping, skip_bad=True))
    assert result.posts["post_id"].tolist() == ["3"]
    assert [(p.row, p.field) for p in result.problems] == [(2, None), (3, "likes")]
    assert "field larger than field limit" in result.problems[0].message
    assert "out of range" in result.problems[1].message


def test_mapping_and_settings_errors() -> None:
    with pytest.raises(MishonError, match="unknown field 'author'"):
        parse_mapping("author=a")
    with pytest.raises(MishonError, match="expected FIELD=COLUMN"):
        parse_mapping("user_id")
    # what a mapping lacks is checked against the source's columns at import (test below)
    assert ImportSettings(format="csv", mapping={"user_id": "u"}).mapping == {"user_id": "u"}


def test_value_parsers() -> None:
    assert parse_count("12", "likes") == 12
    assert parse_count(3.0, "likes") == 3
    assert parse_count("", "likes") is None
    with pytest.raises(FieldError, match="integer"):
        parse_count(True, "likes")
    assert str(parse_timestamp("2026-03-01T12:00:00+02:00")) == "2026-03-01 10:00:00+00:00"
    assert parse_timestamp(1767225600000) == parse_timestamp("1767225600")  # ms and s
    assert parse_timestamp(" ") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("now", "'now' is relative"),
        ("Today", "'Today' is relative"),
        (2024, "implausible time 1970-01-01T00:33:44+00:00 read from 2024"),
        ("20240105", "implausible time 1970-08-23"),
        ("9999-12-31", "implausible time 9999-12-31"),
        ("1989-12-31T23:59:59Z", "implausible time 1989-12-31"),
    ],
)
def test_timestamps_are_read_strictly(value: object, message: str) -> None:
    with pytest.raises(FieldError, match=re.escape(message)):
        parse_timestamp(value)


def _write_hyt(
    folder: Path, train: str, valid: str = "v text\tu1\tx\n", test: str = "t text\tu1\ty\n"
) -> Path:
    folder.mkdir()
    write(folder / "train.tsv", train)
    write(folder / "valid.tsv", valid)
    write(folder / "test.tsv", test)
    return folder


def test_howyoutagtweets_layout(tmp_path: Path) -> None:
    src = _write_hyt(
        tmp_path / "hyt", "hello world\tu1\t#Tag\ttag\tOther\nno tags\tu2\t\nskip col\tu2\t\tlate\n"
    )
    import_dataset(src, tmp_path / "ds", settings("howyoutagtweets", ""))
    posts = read_posts(tmp_path / "ds")
    assert posts["post_id"].tolist() == [
        "train-00001",
        "train-00002",
        "train-00003",
        "valid-00001",
        "test-00001",
    ]
    assert posts["hashtags"].tolist() == [["tag", "other"], [], ["late"], ["x"], ["y"]]
    assert posts["split"].tolist() == ["train", "train", "train", "valid", "test"]
    bad = _write_hyt(tmp_path / "bad", "only one column\n")
    with pytest.raises(InputError) as info:
        import_dataset(bad, tmp_path / "out", settings("howyoutagtweets", ""))
    assert (
        str(info.value.problems[0])
        == f"{bad / 'train.tsv'}, line 1: expected at least 2 tab-separated columns (text, user id)"
    )


def test_cli_import_exit_code_and_message(tmp_path: Path) -> None:
    src = write(tmp_path / "p.csv", HEADER + "a,u,t,x,2026-01-01,oops,1\n")
    runner = CliRunner()
    result = runner.invoke(
        app, ["data", "import", "--format", "csv", "--map", MAP, str(src), str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert "line 2, field 'likes'" in result.output
    ok = runner.invoke(
        app,
        [
            "data",
            "import",
            "--format",
            "csv",
            "--map",
            MAP,
            "--skip-bad",
            str(src),
            str(tmp_path / "o"),
        ],
    )
    assert ok.exit_code == 1 and "no post could be imported" in ok.output


@pytest.mark.skipif(
    not (SHARED_DATA / "howyoutagtweets").is_dir(), reason="shared data not present"
)
def test_real_howyoutagtweets_counts(tmp_path: Path) -> None:
    import_dataset(
        SHARED_DATA / "howyoutagtweets", tmp_path / "hyt", settings("howyoutagtweets", "")
    )
    stats = dataset_stats(tmp_path / "hyt")
    assert (stats["posts"], stats["posts_without_hashtags"], stats["users"], stats["hashtags"]) == (
        33881,
        93,
        2571,
        22301,
    )
    assert stats["given_split"] == {"train": 21226, "valid": 6235, "test": 6420}


def test_export_and_reimport_round_trip(tmp_path: Path) -> None:
    src = write(
        tmp_path / "posts.csv",
        HEADER
        + 'a1,u1,"Sunset #Beach",travel,2026-01-02T10:00:00Z,5,100\n'
        + "a2,u2,plain,,2026-01-03T12:00:00Z,0,7\n",
    )
    import_dataset(src, tmp_path / "first", settings())
    first = read_posts(tmp_path / "first")
    lines = [
        json.dumps(
            {
                "id": row.post_id,
                "author": row.user_id,
                "text": row.caption,
                "tags": list(row.hashtags),
                "time": row.created_at.isoformat(),
                "likes": int(row.likes),
                "fans": 1,
            }
        )
        for row in first.itertuples()
    ]
    export = write(tmp_path / "export.jsonl", "\n".join(lines) + "\n")
    import_dataset(export, tmp_path / "second", settings("jsonl"))
    pd.testing.assert_frame_equal(first, read_posts(tmp_path / "second"))


def test_hardlink_across_file_systems_is_a_clear_error_and_keeps_the_old_dataset(
    tmp_path: Path, tiny_corpus: tuple[Path, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    corpus, _ = tiny_corpus
    (tmp_path / "one.mp4").write_bytes((corpus / "media" / "p000000.mp4").read_bytes())
    src = write(tmp_path / "p.csv", "id,author,tags,clip\na,u,x,one.mp4\n")
    mapping = "post_id=id,user_id=author,hashtags=tags,video=clip"
    out = tmp_path / "ds"
    import_dataset(src, out, settings(mapping=mapping))

    def cross_device(source: object, target: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    with pytest.raises(MishonError, match=r"cannot hardlink .*one.mp4.*\(try --media copy\)"):
        import_dataset(src, out, settings(mapping=mapping, media="hardlink"), overwrite=True)
    assert validate_dataset(out) == [] and read_posts(out)["post_id"].tolist() == ["a"]


def test_columns_named_like_fields_need_no_map(tmp_path: Path) -> None:
    src = write(
        tmp_path / "posts.csv",
        "post_id,user_id,hashtags,caption,likes,extra\n"
        "a,u1,beach;sun,a day out,3,x\nb,u2,cat,,12.7K,y\n",
    )
    result = CliRunner().invoke(app, ["data", "import", str(src), str(tmp_path / "out"),
                                      "--format", "csv"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "columns named like fields, read as them: post_id, user_id, caption, hashtags" in (
        " ".join(result.output.split())
    )
    posts = read_posts(tmp_path / "out").set_index("post_id")
    assert list(posts.loc["a", "hashtags"]) == ["beach", "sun"]
    assert int(posts.loc["b", "likes"]) == 12700 and "extra" not in posts
    # a mapping given for some fields: the others still map themselves
    jsonl = write(
        tmp_path / "posts.jsonl",
        '{"id": "c", "user_id": "u3", "hashtags": ["dog"], "views": 5}\n',
    )
    settings = ImportSettings(format="jsonl", mapping={"post_id": "id"})
    imported = import_dataset(jsonl, tmp_path / "out2", settings)
    assert imported.implied == ["user_id", "hashtags", "views"]
    assert read_posts(tmp_path / "out2")["post_id"].tolist() == ["c"]


def test_a_source_without_a_user_column_names_its_columns(tmp_path: Path) -> None:
    src = write(tmp_path / "p.csv", "id,author,tags\na,u,x\n")
    with pytest.raises(MishonError, match=r"no user_id column; map one with --map user_id=COLUMN"):
        import_dataset(src, tmp_path / "out", ImportSettings(format="csv"))
    with pytest.raises(MishonError, match=r"its columns: \['id', 'author', 'tags'\]"):
        import_dataset(
            src, tmp_path / "out", ImportSettings(format="csv", mapping={"post_id": "id"})
        )
    settings = ImportSettings(format="csv", mapping={"user_id": "author"})
    with pytest.raises(MishonError, match="neither a hashtags nor a caption column"):
        import_dataset(src, tmp_path / "out", settings)
