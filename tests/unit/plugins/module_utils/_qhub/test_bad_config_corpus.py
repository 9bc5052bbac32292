"""Every config in tests/data/bad-configs fails validation with its key path and problem (no servers here;
tests/integration/test_deploy_bad_configs.py runs the same corpus through deploy.yml and checks nothing was written)."""

import pathlib

import pytest

from ansible_collections.qhub.prefect.plugins.module_utils._qhub.config import load_yaml_strict, parse_qhub_config
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError

CORPUS = sorted((pathlib.Path(__file__).parents[4] / "data" / "bad-configs").glob("*.yml"))


def expectation(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    key = lines[0].split(":", 1)[1].strip()
    message = lines[1].split(":", 1)[1].strip()
    return (str(path) if key == "qhub-config" else key), message


def environment(path):
    """The ``# env: NAME=value`` lines: the environment the config fails in (empty values included)."""
    return dict(line.split(":", 1)[1].strip().split("=", 1) for line in path.read_text(encoding="utf-8").splitlines()
                if line.startswith("# env:"))


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_bad_config_fails_naming_key_and_problem(path):
    key, message = expectation(path)
    with pytest.raises(ConfigError) as caught:
        parse_qhub_config(load_yaml_strict(path.read_text(encoding="utf-8"), str(path)), environment(path))
    assert caught.value.path == key
    assert message in caught.value.message
