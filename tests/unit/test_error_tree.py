"""One error tree, one way to fail: every error a module reports is a QhubPrefectError, failed through
fail_from_exception, with the result keys each module has always returned."""

import pytest

from ansible_collections.qhub.prefect.plugins.module_utils._common.errors import QhubPrefectError, short
from ansible_collections.qhub.prefect.plugins.module_utils._kube.client import KubeError
from ansible_collections.qhub.prefect.plugins.module_utils._kube.kubeconfig import KubeconfigError
from ansible_collections.qhub.prefect.plugins.module_utils._kube.lock import LockError
from ansible_collections.qhub.prefect.plugins.module_utils._prefect.http import PrefectApiError
from ansible_collections.qhub.prefect.plugins.module_utils._prefect.v1 import GraphQLError
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError
from ansible_collections.qhub.prefect.plugins.module_utils._runners.failure import fail_from_exception


class Failed(Exception):
    pass


class Module:
    def fail_json(self, msg, **result):
        raise Failed(dict(result, msg=msg))


class Http:
    requests = 3


def failed(exc, **kwargs):
    with pytest.raises(Failed) as caught:
        fail_from_exception(Module(), exc, **kwargs)
    return caught.value.args[0]


@pytest.mark.parametrize("error", [
    ConfigError("a.b", "wrong"), KubeError("no", 404), LockError("held", 409), KubeconfigError("no context"),
    PrefectApiError("refused", 401), GraphQLError("bad query", ["x"]),
])
def test_every_error_is_one_of_the_tree(error):
    assert isinstance(error, QhubPrefectError)


def test_a_config_error_keeps_its_text_and_names_its_key():
    error = ConfigError("prefect.image", "not an image")
    assert isinstance(error, ValueError) and str(error) == "prefect.image: not an image"
    assert error.message == "not an image"
    assert failed(error) == {"msg": "prefect.image: not an image", "key": "prefect.image"}
    assert failed(error, prefix="invalid QHub config: ", changed=False) == {
        "msg": "invalid QHub config: prefect.image: not an image", "key": "prefect.image", "changed": False}
    assert failed(error, report_key=False) == {"msg": "prefect.image: not an image"}


def test_a_prefect_error_reports_its_status_and_the_requests_never_its_body():
    error = PrefectApiError("refused", status=401, body={"detail": "secret-ish"})
    assert failed(error, http=Http(), changed=False) == {"msg": "refused", "status": 401, "requests": 3,
                                                         "changed": False}
    assert failed(PrefectApiError("api_url is not set"), changed=False) == {"msg": "api_url is not set",
                                                                            "changed": False}


def test_a_kubernetes_error_reports_its_message_only():
    assert failed(KubeError("forbidden", 403, {"message": "x"}), objects=[]) == {"msg": "forbidden", "objects": []}


def test_short_quotes_a_value_or_folds_a_text():
    assert short("x" * 70) == repr("x" * 70)[:60] + "...'"
    assert short("a\n  b") == repr("a\n  b")
    assert short("a\n  b " * 100, 10, one_line=True) == "a b a b a ..."
