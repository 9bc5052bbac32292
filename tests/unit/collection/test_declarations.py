"""docs/configuration.md's key lists are held equal to the tables they describe (issue 18).

``JOB_OPTIONS`` (QHub's own override keys) and ``CHART_KEYS``/``OWNED_ELSEWHERE`` (the prefect-worker chart's
values) are declared once; the docs' tables are generated from them by the functions below. When a test here
fails, its message holds the table to paste into docs/configuration.md.
"""

import re
from pathlib import Path

import yaml

from ansible_collections.qhub.prefect.plugins.module_utils._qhub.chart_values import (
    CHART_KEYS, KEY_BY_PATH, OWNED_ELSEWHERE, TARGET_DOCS,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.job_options import (
    FLAT_OVERRIDES, JOB_OPTIONS, NESTED_OVERRIDES,
)

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"

JOB_HEADER = "| Field | Flat key | Nested keys | Chart key | Type and validation |"
WORKER_HEADER = "| Key | Generations | Default | Renders |"
OWNED_HEADER = "| Key | The QHub config sets it at |"
GENERATIONS = {True: "Prefect 2/3 only", False: "Prefect 1 and 2/3"}
NONE = "—"


def code(text):
    return "`%s`" % text


def default_text(value):
    """A key's default as a values.yaml would spell it (flow style), or a dash for none."""
    if value is None:
        return NONE
    return code(yaml.safe_dump([value], default_flow_style=True, sort_keys=False, width=10 ** 6).strip()[1:-1])


def renders(key):
    place, field = key.target
    return TARGET_DOCS[place] % field


def table(header, rows):
    separator = "|" + " --- |" * header.count(" | ") + " --- |"
    return "\n".join([header, separator] + ["| %s |" % " | ".join(row) for row in rows])


def job_settings_table():
    return table(JOB_HEADER, [
        (option.title, code(option.flat), ", ".join(code(".".join(path)) for path in option.nested),
         code(option.chart) if option.chart else NONE, option.kind)
        for option in JOB_OPTIONS])


def worker_keys_table():
    return table(WORKER_HEADER, [(code(key.path), GENERATIONS[key.worker_only], default_text(key.default),
                                  renders(key)) for key in CHART_KEYS])


def owned_elsewhere_table():
    return table(OWNED_HEADER, [(code(path), where) for path, where in OWNED_ELSEWHERE.items()])


def docs_table(header):
    """The table of docs/configuration.md that starts with ``header``, as its lines joined."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    starts = [index for index, line in enumerate(lines) if line.strip() == header]
    assert len(starts) == 1, "docs/configuration.md should have one table headed %s" % header
    found = []
    for line in lines[starts[0]:]:
        if not line.startswith("|"):
            break
        found.append(line.rstrip())
    return "\n".join(found)


def rows(text):
    """The cells of a markdown table's body rows."""
    return [[cell.strip() for cell in line.strip()[1:-1].split(" | ")] for line in text.splitlines()[2:]]


def codes(cell):
    return re.findall(r"`([^`]+)`", cell)


def paste(expected):
    return "docs/configuration.md should have this table (generated from the declarations):\n\n" + expected


# --- the worker pod's keys (chart_values.CHART_KEYS) -----------------------------------------------------------

def test_the_worker_key_table_lists_every_chart_key():
    found = rows(docs_table(WORKER_HEADER))
    assert [codes(row[0])[0] for row in found if codes(row[0])] == [key.path for key in CHART_KEYS], \
        paste(worker_keys_table())
    assert set(codes(row[0])[0] for row in found) == set(KEY_BY_PATH)


def test_the_worker_key_table_says_what_each_key_renders_and_for_which_generations():
    for row in rows(docs_table(WORKER_HEADER)):
        key = KEY_BY_PATH[codes(row[0])[0]]
        assert row[3] == renders(key), paste(worker_keys_table())
        assert row[1] == GENERATIONS[key.worker_only], paste(worker_keys_table())
        assert row[2] == default_text(key.default), paste(worker_keys_table())


def test_the_worker_key_table_is_the_generated_one():
    assert docs_table(WORKER_HEADER) == worker_keys_table(), paste(worker_keys_table())


def test_every_target_place_is_described():
    assert set(key.target[0] for key in CHART_KEYS) <= set(TARGET_DOCS)


def test_the_owned_elsewhere_table_is_the_declared_one():
    found = rows(docs_table(OWNED_HEADER))
    assert dict((codes(row[0])[0], row[1]) for row in found) == OWNED_ELSEWHERE, paste(owned_elsewhere_table())
    assert docs_table(OWNED_HEADER) == owned_elsewhere_table(), paste(owned_elsewhere_table())


# --- QHub's own keys (job_options.JOB_OPTIONS) -----------------------------------------------------------------

def test_the_job_settings_table_lists_every_spelling():
    found = rows(docs_table(JOB_HEADER))
    message = paste(job_settings_table())
    assert set(key for row in found for key in codes(row[1])) == set(FLAT_OVERRIDES), message
    assert set(tuple(key.split(".")) for row in found for key in codes(row[2])) == set(NESTED_OVERRIDES), message
    assert set(key for row in found for key in codes(row[3])) == set(
        option.chart for option in JOB_OPTIONS if option.chart), message
    assert docs_table(JOB_HEADER) == job_settings_table(), message


def test_a_chart_spelling_of_a_job_setting_is_a_chart_key():
    """worker.config.workQueues is both: one of CHART_KEYS (where it lands) and the labels' third spelling."""
    for option in JOB_OPTIONS:
        if option.chart:
            assert option.chart in KEY_BY_PATH
