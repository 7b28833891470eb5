"""contentstore.remote.transport: error mapping, unreachable messages, Backoff, sessions.

The answers mapped here are real HTTP answers: the fault proxy replies with the status,
body and headers a test asks for, and a real registry gives its own 404.
"""

import json
import pathlib
import socket
import time

import pytest
import requests

from contentstore.errors import (
    Denied,
    RegistryError,
    RegistryUnreachable,
    RemoteNotFound,
    TooManyRequests,
    Unauthorized,
)
from contentstore.remote.transport import USER_AGENT, Backoff, error_codes, make_session, raise_for_status, unreachable
from contentstore.testing import free_port


@pytest.fixture
def replier(proxy_factory):
    """``answer(status, body, headers)``: a real HTTP answer of that shape (the proxy
    replies without forwarding, so its upstream is never asked)."""
    proxy = proxy_factory(f"http://127.0.0.1:{free_port()}")

    def answer(status: int, body: str | dict = "", headers: dict | None = None) -> requests.Response:
        text = json.dumps(body) if isinstance(body, dict) else body
        proxy.faults({"match": "GET /answer", "reply": {"status": status, "body": text,
                                                         "headers": headers or {}}, "times": 1})
        return requests.get(f"{proxy.url}/answer", timeout=10)

    answer.proxy = proxy
    return answer


def oci_errors(*errors: tuple[str, str]) -> dict:
    return {"errors": [{"code": code, "message": message, "detail": None} for code, message in errors]}


def raised(response: requests.Response, what: str = "registry.test/team/app:1") -> RegistryError:
    with pytest.raises(RegistryError) as info:
        raise_for_status(response, what)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    return info.value


# -- raise_for_status --------------------------------------------------------------------------


def test_only_error_statuses_raise(replier):
    for status in (200, 201, 202, 204, 206, 307, 399):
        assert raise_for_status(replier(status, oci_errors(("UNKNOWN", "ignored"))), "anything") is None
    error = raised(replier(400, ""))
    assert type(error) is RegistryError and str(error) == "registry.test/team/app:1: 400 Bad Request"


def test_401_is_unauthorized_with_the_registry_message(replier):
    error = raised(replier(401, oci_errors(("UNAUTHORIZED", "token expired"))))
    assert type(error) is Unauthorized
    assert str(error) == "unauthorized: registry.test/team/app:1: authentication required (token expired)"
    assert error.status == 401 and error.codes == ("UNAUTHORIZED",) and error.url.endswith("/answer")
    # the usual message is not repeated in parentheses
    plain = raised(replier(401, oci_errors(("UNAUTHORIZED", "authentication required"))))
    assert str(plain) == "unauthorized: registry.test/team/app:1: authentication required"
    bare = raised(replier(401, ""))
    assert str(bare) == "unauthorized: registry.test/team/app:1: authentication required"


def test_403_and_the_denied_code_are_denied(replier):
    error = raised(replier(403, oci_errors(("DENIED", "requested access to the resource is denied"))))
    assert type(error) is Denied and error.status == 403
    assert str(error) == "denied: registry.test/team/app:1: requested access to the resource is denied"
    # some registries say DENIED with another status: the code decides
    other = raised(replier(400, oci_errors(("DENIED", "no push to this namespace"))))
    assert type(other) is Denied and other.status == 400 and other.codes == ("DENIED",)
    assert type(raised(replier(403, "<html>forbidden</html>"))) is Denied


@pytest.mark.needs("docker-registry")
def test_404_is_remote_not_found_with_the_detail(replier, registry):
    error = raised(replier(404, oci_errors(("MANIFEST_UNKNOWN", "manifest unknown"))))
    assert type(error) is RemoteNotFound and isinstance(error, LookupError)
    assert str(error) == "not found: registry.test/team/app:1: manifest unknown"
    # no message: the code, readable; no body at all: the reason phrase
    assert str(raised(replier(404, {"errors": [{"code": "NAME_UNKNOWN"}]}))) == \
        "not found: registry.test/team/app:1: name unknown"
    assert str(raised(replier(404, ""))) == "not found: registry.test/team/app:1: Not Found"
    # the real registry's own answer
    real = requests.get(f"{registry.url}/v2/no/such/manifests/latest", timeout=10)
    error = raised(real, "here")
    assert type(error) is RemoteNotFound and error.codes == ("MANIFEST_UNKNOWN",) and error.status == 404
    assert str(error).startswith("not found: here: ")


def test_429_is_too_many_requests(replier):
    error = raised(replier(429, oci_errors(("TOOMANYREQUESTS", "slow down"))))
    assert type(error) is TooManyRequests and error.status == 429
    assert str(error) == "too many requests: registry.test/team/app:1: the registry kept answering 429"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_a_plain_registry_error_with_status_and_detail(replier, status):
    error = raised(replier(status, oci_errors(("UNAVAILABLE", "backend down"))))
    assert type(error) is RegistryError and not error.endpoint_unusable
    assert str(error) == f"registry.test/team/app:1: {status} backend down"
    assert error.status == status and error.codes == ("UNAVAILABLE",)
    html = raised(replier(status, "<html><body>\n<h1>Bad things</h1>\n</body></html>"))
    assert type(html) is RegistryError and html.codes == ()
    assert str(html).startswith(f"registry.test/team/app:1: {status} ")


def test_messages_stay_on_one_line_whatever_the_registry_says(replier):
    """A registry's message may hold line breaks (a stack trace, a wrapped explanation);
    every error contentstore raises is one line."""
    body = oci_errors(("UNKNOWN", "storage backend failed:\ngoroutine 1 [running]:\nmain.main()"))
    error = raised(replier(500, body))
    assert str(error) == "registry.test/team/app:1: 500 storage backend failed:"
    assert raised(replier(401, body)).__class__ is Unauthorized  # raised() checks the one line
    assert raised(replier(404, body)).__class__ is RemoteNotFound


# -- error_codes -----------------------------------------------------------------------------


def test_error_codes_of_an_oci_error_body(replier):
    response = replier(400, oci_errors(("BLOB_UNKNOWN", ""), ("DIGEST_INVALID", "digest did not match"),
                                       ("SIZE_INVALID", "later message")))
    assert error_codes(response) == (["BLOB_UNKNOWN", "DIGEST_INVALID", "SIZE_INVALID"],
                                     "digest did not match")


@pytest.mark.parametrize("body", [
    "", "not json", "[1, 2]", '"a string"', "{}", '{"errors": null}', '{"errors": 5}',
    '{"errors": [1, "x", null]}', '{"errors": {"code": "X"}}',
])
def test_error_codes_of_bodies_that_are_not_oci_errors(replier, body):
    response = replier(500, body)
    assert error_codes(response) == ([], "")
    # and the mapping still gives a one-line RegistryError, not another exception
    assert type(raised(response)) is RegistryError


# -- unreachable ---------------------------------------------------------------------------------


def test_unreachable_for_a_refused_connection():
    port = free_port()
    with pytest.raises(requests.ConnectionError) as info:
        requests.get(f"http://127.0.0.1:{port}/v2/", timeout=5)
    error = unreachable(info.value, f"127.0.0.1:{port}")
    assert type(error) is RegistryUnreachable and error.endpoint_unusable
    message = str(error)
    assert message.startswith(f"127.0.0.1:{port}: cannot reach the registry: ")
    assert "refused" in message.lower() and "\n" not in message


def test_unreachable_for_a_server_that_never_answers():
    """A listening socket that accepts and says nothing: a read timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(requests.Timeout) as info:
            requests.get(f"http://127.0.0.1:{port}/v2/", timeout=(5, 0.3))
    message = str(unreachable(info.value, "silent"))
    assert message.startswith("silent: cannot reach the registry: ")
    assert "timed out" in message.lower() and "\n" not in message


def test_unreachable_without_detail_names_the_exception():
    assert str(unreachable(requests.ConnectionError(), "x")) == "x: cannot reach the registry: ConnectionError"


# -- Backoff ---------------------------------------------------------------------------------------


def test_backoff_paces_retries_as_urllib3_does_and_ends_them():
    """``attempts`` counts the retries after the first try, as urllib3's ``total``."""
    slept = []
    backoff = Backoff("download of sha256:abc", attempts=6, factor=0.5, maximum=3, sleep=slept.append)
    for _ in range(6):
        backoff.failed(RegistryUnreachable("cut"))
        backoff.wait()
    # none before the first retry, then factor * 2 ** (n - 1), at most `maximum`
    assert slept == [0, 1.0, 2.0, 3, 3, 3]
    with pytest.raises(RegistryUnreachable) as info:
        backoff.failed(RegistryUnreachable("connection reset"))  # the seventh try failed
    assert str(info.value) == "download of sha256:abc failed after 7 attempts: connection reset"
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_backoff_gives_up_after_its_attempts_whatever_the_error():
    backoff = Backoff("upload", attempts=1, sleep=lambda s: pytest.fail("no wait after the last try"))
    backoff.failed(OSError("first"))
    with pytest.raises(RegistryUnreachable, match=r"^upload failed after 2 attempts: second$"):
        backoff.failed(OSError("second"))
    assert backoff.failures == 2


def test_backoff_defaults_and_real_sleep():
    backoff = Backoff("x")
    assert backoff.delay() == 0
    backoff.failed(ValueError("a"))
    started = time.monotonic()
    backoff.wait()  # the first retry goes at once
    assert time.monotonic() - started < 0.1
    backoff.failed(ValueError("b"))
    assert backoff.delay() == 1.0
    for _ in range(20):
        backoff.failures += 1
    assert backoff.delay() == 30


# -- make_session ------------------------------------------------------------------------------------


@pytest.mark.needs("docker-registry")
def test_session_retries_get_on_503_then_succeeds(registry, proxy_factory):
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": "GET /v2/", "status": 503, "times": 1})
    with make_session() as session:
        response = session.get(f"{proxy.url}/v2/", timeout=10)
    assert response.status_code == 200
    assert [e["status"] for e in proxy.requests("/v2/", "GET")] == [503, 200]
    assert session.headers["User-Agent"] == USER_AGENT


@pytest.mark.needs("docker-registry")
def test_session_honours_retry_after(registry, proxy_factory):
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": "HEAD /v2/", "status": 429, "retry_after": 1, "times": 1})
    with make_session() as session:
        started = time.monotonic()
        response = session.head(f"{proxy.url}/v2/", timeout=10)
        waited = time.monotonic() - started
    assert response.status_code == 200
    assert [e["status"] for e in proxy.requests("/v2/", "HEAD")] == [429, 200]
    assert waited >= 0.95  # urllib3 would not wait at all before a first retry without Retry-After


@pytest.mark.needs("docker-registry")
def test_session_gives_up_with_the_last_answer(registry, proxy_factory):
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": "GET /v2/", "status": 502, "times": -1})
    with make_session(retries=1) as session:
        response = session.get(f"{proxy.url}/v2/", timeout=10)
    assert response.status_code == 502  # no exception: raise_for_status maps it
    assert len(proxy.requests("/v2/", "GET")) == 2


@pytest.mark.needs("docker-registry")
def test_session_never_retries_a_post_or_a_put(registry, proxy_factory):
    """Uploads are not idempotent: a retry is the caller's decision, never the session's."""
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": "POST /v2/", "status": 503, "times": 1},
                 {"match": "PUT /v2/", "status": 503, "times": 1})
    with make_session() as session:
        assert session.post(f"{proxy.url}/v2/team/x/blobs/uploads/", timeout=10).status_code == 503
        assert session.put(f"{proxy.url}/v2/team/x/manifests/1", data=b"{}", timeout=10).status_code == 503
    assert len(proxy.requests("/v2/", "POST")) == 1 and len(proxy.requests("/v2/", "PUT")) == 1


def test_unverified_session_stays_unverified_whatever_the_environment(monkeypatch, tmp_path):
    """REQUESTS_CA_BUNDLE must not turn certificate checks back on for an endpoint
    marked insecure (requests lets it override the session's verify)."""
    import certifi

    from contentstore.remote.transport import make_session

    bundle = tmp_path / "bundle.pem"
    bundle.write_text(pathlib.Path(certifi.where()).read_text())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    import requests

    request = requests.Request("GET", "https://x.example/v2/").prepare()
    for verify_tls, wanted in ((False, "CERT_NONE"), (True, "CERT_REQUIRED")):
        session = make_session(verify_tls=verify_tls)
        # what requests passes down with the variable set: the bundle's path
        verify = session.merge_environment_settings(request.url, {}, None, None, None)["verify"]
        adapter = session.get_adapter(request.url)
        _, pool = adapter.build_connection_pool_key_attributes(request, verify)
        assert pool["cert_reqs"] == wanted  # the endpoint's own TLS settings decide, not the variable
