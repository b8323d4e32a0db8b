"""Grafana dashboards in Chinese, generated from the English ones and one catalogue."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agent.commands.deploy import deploy
from agent.grafana import Catalogue, readable_strings, translate, untranslated

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
ENGLISH = ("cti-supervisor", "cti-wallboard")
HAN = re.compile(r"[\u4e00-\u9fff]")


def english(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((GRAFANA / "dashboards" / f"{name}.json").read_text(encoding="utf-8"))
    return result


@pytest.fixture(scope="module")
def zh() -> Catalogue:
    return Catalogue.from_json(json.loads((GRAFANA / "i18n" / "zh-CN.json").read_text(encoding="utf-8")))


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return list(board["panels"])


@pytest.mark.parametrize("name", ENGLISH)
def test_the_catalogue_has_every_text_a_person_reads(name: str, zh: Catalogue) -> None:
    assert untranslated(english(name), zh) == []


@pytest.mark.parametrize("name", ENGLISH)
def test_the_committed_chinese_dashboard_is_the_generated_one(name: str, zh: Catalogue) -> None:
    committed = json.loads((GRAFANA / "dashboards" / f"{name}.zh-CN.json").read_text(encoding="utf-8"))
    assert committed == translate(english(name), zh)


def test_the_check_fails_when_a_dashboard_gains_a_text_the_catalogue_lacks(tmp_path: Path) -> None:
    board = english("cti-wallboard")
    (tmp_path / "cti-wallboard.json").write_text(json.dumps(board), encoding="utf-8")
    runner = CliRunner()
    catalogue = ["--catalogue", str(GRAFANA / "i18n" / "zh-CN.json")]
    written = runner.invoke(deploy, ["grafana-dashboards", "--dashboards", str(tmp_path), *catalogue])
    assert written.exit_code == 0, written.output
    assert (tmp_path / "cti-wallboard.zh-CN.json").is_file()
    checked = runner.invoke(
        deploy, ["grafana-dashboards", "--dashboards", str(tmp_path), "--check", *catalogue]
    )
    assert checked.exit_code == 0, checked.output

    board["panels"][0]["title"] = "Calls before lunch"
    (tmp_path / "cti-wallboard.json").write_text(json.dumps(board), encoding="utf-8")
    checked = runner.invoke(
        deploy, ["grafana-dashboards", "--dashboards", str(tmp_path), "--check", *catalogue]
    )
    assert checked.exit_code == 1
    assert "no zh-CN for 'Calls before lunch'" in checked.output
    assert "cti-wallboard.zh-CN.json is out of date" in checked.output


def test_the_repositorys_dashboards_are_up_to_date() -> None:
    result = CliRunner().invoke(deploy, ["grafana-dashboards", "--check"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", ENGLISH)
def test_only_what_a_person_reads_changes(name: str, zh: Catalogue) -> None:
    source = english(name)
    chinese = translate(source, zh)
    assert source == english(name)  # the English document is left as it was
    assert chinese["uid"] == f"{name}-zh-cn" != source["uid"]
    assert "zh-CN" in chinese["tags"]
    assert [v["name"] for v in chinese["templating"]["list"]] == [
        v["name"] for v in source["templating"]["list"]
    ]
    assert [v["query"] for v in chinese["templating"]["list"]] == [
        v["query"] for v in source["templating"]["list"]
    ]
    for before, after in zip(panels(source), panels(chinese), strict=True):
        assert (after["id"], after["type"], after["gridPos"]) == (
            before["id"],
            before["type"],
            before["gridPos"],
        )
        assert [t["expr"] for t in after["targets"]] == [t["expr"] for t in before["targets"]]
        assert [t["refId"] for t in after["targets"]] == [t["refId"] for t in before["targets"]]
        assert after["fieldConfig"]["defaults"].get("unit") == before["fieldConfig"]["defaults"].get("unit")
    # Every text a person reads is Chinese now (names of settings and metrics may stay in it).
    for text in readable_strings(chinese):
        assert HAN.search(text), text


def test_direction_series_are_named_in_chinese_without_touching_the_query(zh: Catalogue) -> None:
    chinese = translate(english("cti-supervisor"), zh)
    panel = next(p for p in chinese["panels"] if p["title"] == "每小时通次（按呼入/呼出）")
    assert panel["targets"][0]["legendFormat"] == "{{direction}}"
    shown = {
        o["matcher"]["options"]: o["properties"][0]["value"]
        for o in panel["fieldConfig"]["overrides"]
        if o["matcher"]["id"] == "byName"
    }
    assert shown == {"in": "呼入", "out": "呼出"}


def test_table_columns_are_renamed_and_the_sort_follows(zh: Catalogue) -> None:
    wall = translate(english("cti-wallboard"), zh)
    on_call = next(p for p in wall["panels"] if p["title"] == "正在通话")
    organize = next(t for t in on_call["transformations"] if t["id"] == "organize")
    assert organize["options"]["renameByName"]["Value"] == "通话时长"
    assert organize["options"]["renameByName"]["rep"] == "坐席"
    assert on_call["options"]["sortBy"] == [{"displayName": "通话时长", "desc": True}]
    health = next(p for p in translate(english("cti-supervisor"), zh)["panels"] if p["title"] == "设备状态")
    names = next(t for t in health["transformations"] if t["id"] == "organize")["options"]["renameByName"]
    assert (names["Value #A"], names["Value #B"], names["seat"]) == ("在线", "重连次数", "工位")


def test_a_legend_of_label_references_only_is_not_a_text() -> None:
    board = {
        "title": "Board",
        "panels": [
            {"title": "P", "targets": [{"legendFormat": "{{rep}}"}, {"legendFormat": "{{team}} calls"}]}
        ],
    }
    assert readable_strings(board) == ["Board", "P", "{{team}} calls"]


def test_a_text_the_catalogue_lacks_stays_english() -> None:
    book = Catalogue.from_json({"language": "zh-CN", "strings": {"Board": "看板"}})
    done = translate({"uid": "b", "title": "Board", "panels": [{"title": "New panel"}]}, book)
    assert (done["title"], done["panels"][0]["title"], done["uid"]) == ("看板", "New panel", "b-zh-cn")
    assert untranslated({"title": "Board", "panels": [{"title": "New panel"}]}, book) == ["New panel"]


@pytest.mark.parametrize(
    ("data", "said"),
    [
        ({"strings": {}}, "needs 'language' and 'strings'"),
        ({"language": "zh-CN"}, "needs 'language' and 'strings'"),
        ({"language": "zh-CN", "strings": {"Board": ""}}, "'Board' is empty"),
    ],
)
def test_a_broken_catalogue_is_refused(data: dict[str, Any], said: str) -> None:
    with pytest.raises(ValueError, match=said):
        Catalogue.from_json(data)
