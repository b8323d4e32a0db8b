"""Grafana dashboards in another language, generated from the English ones and a catalogue.

The English dashboards in ``deploy/grafana/dashboards`` are the one source; a catalogue
(``deploy/grafana/i18n/zh-CN.json``) says what each of their words reads as in a language,
and :func:`translate` makes that language's dashboard from the two. Nothing a query needs
changes: the PromQL, the variables' names and the panels' layout stay as they are, so a
panel proven against Prometheus in English is the same panel in Chinese. What changes is
what a person reads: titles, descriptions, legends, variable labels, display names, and
label values and table columns that come from the metrics (``in`` → 呼入), which Grafana
is told to rename (field overrides, an ``organize`` transformation) rather than the
queries being touched.

A catalogue is JSON::

    {"language": "zh-CN", "title_suffix": "", "uid_suffix": "-zh-cn",
     "strings": {"Calls today": "今日通次", ...},
     "label_values": {"direction": {"in": "呼入", "out": "呼出"}},
     "columns": {"*": {"seat": "坐席"}, "On a call now": {"Value": "通话时长"}}}

``columns`` is per table, by the table's English title, over ``"*"`` for every table
(a table's ``Value`` column is a different figure in each).

Pure (no files): :func:`translate` takes and gives parsed JSON, :func:`untranslated` lists
what a catalogue lacks, so a test fails when a dashboard gains words the catalogue does not have.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Catalogue", "readable_strings", "translate", "untranslated"]

# A legend that is only label references ("{{rep}}", "{{team}} {{le}}") has no words of its own.
_ONLY_LABELS = re.compile(r"^(\s*\{\{\s*\w+\s*\}\}\s*)*$")
_ONE_LABEL = re.compile(r"^\{\{\s*(\w+)\s*\}\}$")


@dataclass(frozen=True)
class Catalogue:
    """What the dashboards' words read as in one language."""

    language: str
    strings: Mapping[str, str]
    #: Per label, what its values read as where a legend shows only that label.
    label_values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: Per table (its English title, ``*`` for all): columns (label names, ``Value #A``) as headed.
    columns: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    uid_suffix: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Catalogue:
        """A catalogue from its parsed JSON.

        :raises ValueError: a required key is missing or a value is not text.
        """
        try:
            language = str(data["language"])
            strings = dict(data["strings"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"a catalogue needs 'language' and 'strings' ({exc})") from None
        for key, value in strings.items():
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"the translation of {key!r} is empty or not text")
        return cls(
            language=language,
            strings=strings,
            label_values={k: dict(v) for k, v in dict(data.get("label_values", {})).items()},
            columns={k: dict(v) for k, v in dict(data.get("columns", {})).items()},
            uid_suffix=str(data.get("uid_suffix") or "-" + language.lower()),
        )


def _panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside rows too."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def _has_words(text: str) -> bool:
    return bool(text.strip()) and not _ONLY_LABELS.match(text)


def readable_strings(dashboard: Mapping[str, Any]) -> list[str]:
    """The texts of ``dashboard`` a person reads, in the order they appear (each once)."""
    seen: dict[str, None] = {}

    def add(text: Any) -> None:
        if isinstance(text, str) and _has_words(text):
            seen.setdefault(text.strip(), None)

    add(dashboard.get("title"))
    add(dashboard.get("description"))
    for variable in dashboard.get("templating", {}).get("list", []):
        add(variable.get("label"))
    for link in dashboard.get("links", []):
        add(link.get("title"))
        add(link.get("tooltip"))
    for panel in _panels(dashboard):
        add(panel.get("title"))
        add(panel.get("description"))
        for target in panel.get("targets", []):
            add(target.get("legendFormat"))
        config = panel.get("fieldConfig", {})
        add(config.get("defaults", {}).get("displayName"))
        for override in config.get("overrides", []):
            for prop in override.get("properties", []):
                if prop.get("id") == "displayName":
                    add(prop.get("value"))
        if panel.get("type") == "text":
            add(panel.get("options", {}).get("content"))
    return list(seen)


def untranslated(dashboard: Mapping[str, Any], catalogue: Catalogue) -> list[str]:
    """The readable texts of ``dashboard`` the catalogue has no translation for."""
    return [text for text in readable_strings(dashboard) if text not in catalogue.strings]


def translate(dashboard: Mapping[str, Any], catalogue: Catalogue) -> dict[str, Any]:
    """``dashboard`` in the catalogue's language (a new document; the English one is left as it is).

    Its uid gains the catalogue's suffix so both provision side by side, and it is tagged
    with the language. A text the catalogue lacks stays English (see :func:`untranslated`).
    """
    doc: dict[str, Any] = copy.deepcopy(dict(dashboard))

    def say(text: Any) -> Any:
        if not isinstance(text, str) or not _has_words(text):
            return text
        said = catalogue.strings.get(text.strip())
        return text if said is None else said

    doc["uid"] = f"{doc.get('uid', 'dashboard')}{catalogue.uid_suffix}"
    for key in ("title", "description"):
        if key in doc:
            doc[key] = say(doc[key])
    tags = list(doc.get("tags", []))
    if catalogue.language not in tags:
        tags.append(catalogue.language)
    doc["tags"] = tags
    for variable in doc.get("templating", {}).get("list", []):
        if "label" in variable:
            variable["label"] = say(variable["label"])
    for link in doc.get("links", []):
        for key in ("title", "tooltip"):
            if key in link:
                link[key] = say(link[key])
    for panel in _panels(doc):
        _translate_panel(panel, catalogue, say)
    return doc


def _translate_panel(panel: dict[str, Any], catalogue: Catalogue, say: Callable[[Any], Any]) -> None:
    english_title = panel.get("title", "")
    for key in ("title", "description"):
        if key in panel:
            panel[key] = say(panel[key])
    config = panel.setdefault("fieldConfig", {})
    defaults = config.setdefault("defaults", {})
    if "displayName" in defaults:
        defaults["displayName"] = say(defaults["displayName"])
    overrides = config.setdefault("overrides", [])
    for override in overrides:
        for prop in override.get("properties", []):
            if prop.get("id") == "displayName":
                prop["value"] = say(prop.get("value"))
    renamed: dict[str, str] = {}
    for target in panel.get("targets", []):
        legend = target.get("legendFormat")
        if isinstance(legend, str):
            target["legendFormat"] = say(legend)
            one = _ONE_LABEL.match(legend.strip())
            if one:
                renamed.update(catalogue.label_values.get(one.group(1), {}))
    _rename_series(overrides, renamed)
    columns = {**catalogue.columns.get("*", {}), **catalogue.columns.get(english_title, {})}
    if panel.get("type") == "table" and columns:
        _rename_columns(panel, columns)
    if panel.get("type") == "text":
        options = panel.get("options", {})
        if "content" in options:
            options["content"] = say(options["content"])


def _rename_series(overrides: list[dict[str, Any]], renamed: Mapping[str, str]) -> None:
    """Name the series that one label's value names ("in") where Grafana draws them.

    The value stays what the query returns, so the series still matches its other overrides.
    """
    named = {
        o.get("matcher", {}).get("options") for o in overrides if o.get("matcher", {}).get("id") == "byName"
    }
    for value, shown in renamed.items():
        if value not in named:
            overrides.append(
                {
                    "matcher": {"id": "byName", "options": value},
                    "properties": [{"id": "displayName", "value": shown}],
                }
            )


def _rename_columns(panel: dict[str, Any], columns: Mapping[str, str]) -> None:
    """Head a table's columns in the language (an ``organize`` transformation), its sort following."""
    transformations = panel.setdefault("transformations", [])
    organize = next((t for t in transformations if t.get("id") == "organize"), None)
    if organize is None:
        organize = {"id": "organize", "options": {}}
        transformations.append(organize)
    names = organize.setdefault("options", {}).setdefault("renameByName", {})
    for column, shown in columns.items():
        names.setdefault(column, shown)
    # The table sorts by a column's shown name, which is now the renamed one.
    for sort in panel.get("options", {}).get("sortBy", []):
        sort["displayName"] = names.get(sort.get("displayName"), sort.get("displayName"))
